//! monerod's REST-style paths behind the gateway, against a real `monerod --regtest --offline`.

use std::time::Duration;

use chainfleet_spec::access::Access;
use chainfleet_spec::Chain;
use serde_json::Value;

use crate::harness::{access, upstream, TestGateway};

/// An empty epee (portable storage) object: signatures, version 1, no fields.
const EMPTY_EPEE: &[u8] = &[0x01, 0x11, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00];

/// POST `body` to `url`; returns status, content type and raw body.
async fn post_bytes(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &'static [u8],
) -> (u16, String, Vec<u8>) {
    let mut request = http.post(url).body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = response.bytes().await.expect("a body").to_vec();
    (status, content_type, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monerod_rest_paths_are_judged_and_passed_through() {
    let mut node = chainfleet_testkit::monerod().await;
    let gw = TestGateway::start(
        vec![upstream("xmr", 0, Chain::Monero, &node)],
        access("xmr", Access::default()),
    )
    .await;
    let key = gw.read_key("xmr");
    let through = |path: &str| format!("{}/rpc/xmr/{path}", gw.url);
    let direct = |path: &str| format!("{}/{path}", node.rpc_url);

    // A JSON REST path answers as the node does.
    let (status, content_type, body) =
        post_bytes(&gw.http, &through("get_height"), Some(&key), b"{}").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/json");
    let (_, _, expected) = post_bytes(&gw.http, &direct("get_height"), None, b"{}").await;
    let got: Value = serde_json::from_slice(&body).expect("JSON");
    let expected: Value = serde_json::from_slice(&expected).expect("JSON");
    assert_eq!(got, expected);
    assert!(got["height"].is_u64(), "{got}");

    // A `.bin` path answers monero's binary format, byte for byte.
    let (status, content_type, body) =
        post_bytes(&gw.http, &through("get_hashes.bin"), Some(&key), EMPTY_EPEE).await;
    let (direct_status, _, expected) =
        post_bytes(&gw.http, &direct("get_hashes.bin"), None, EMPTY_EPEE).await;
    assert_eq!((status, direct_status), (200, 200));
    assert_eq!(content_type, "application/octet-stream");
    assert_eq!(body, expected);
    assert!(!body.is_empty());

    // An unknown path is a clear 404.
    let (status, _, body) = post_bytes(&gw.http, &through("nope"), Some(&key), b"{}").await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 404, "{text}");
    assert!(
        text.contains("`/nope` is not a REST path of this chain"),
        "{text}"
    );

    // A denied admin path is refused and never reaches the node, which keeps running.
    let (status, _, body) = post_bytes(&gw.http, &through("stop_daemon"), Some(&key), b"{}").await;
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("/stop_daemon")),
        "{answer}"
    );
    // monerod exits about 2 s after a stop_daemon that reaches it.
    assert!(
        node.wait_for_exit(Duration::from_secs(4)).await.is_none(),
        "monerod stopped"
    );
    let (status, _, _) = post_bytes(&gw.http, &through("get_height"), Some(&key), b"{}").await;
    assert_eq!(status, 200);
}
