//! Hostile and broken requests: each gets a clear error and the gateway stays up.

use std::time::Duration;

use chainfleet_spec::access::Access;
use chainfleet_spec::Chain;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{access, upstream, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let node = chainfleet_testkit::anvil().await;
    let gw = TestGateway::start_with(
        vec![upstream("eth", 0, Chain::Ethereum, &node)],
        access(
            "eth",
            Access {
                max_body_bytes: 64 * 1024,
                max_batch: 5,
                ..Access::default()
            },
        ),
        |options| {
            options.header_read_timeout = Duration::from_millis(800);
            options.body_read_timeout = Duration::from_millis(800);
        },
    )
    .await;
    let key = gw.read_key("eth");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!(
        r#"{{"id":1,"method":"eth_chainId","params":["{}"]}}"#,
        "a".repeat(200_000)
    );
    let too_many = format!("[{}]", [r#"{"id":1,"method":"eth_chainId"}"#; 6].join(","));
    let cases: Vec<(&str, Vec<u8>, u16, i64, &str)> = vec![
        ("malformed", b"{\"id\":1,".to_vec(), 400, -32700, "not JSON"),
        (
            "not an object",
            b"\"hello\"".to_vec(),
            400,
            -32600,
            "call object",
        ),
        (
            "wrong version",
            br#"{"jsonrpc":"1.5","id":1,"method":"eth_chainId"}"#.to_vec(),
            400,
            -32600,
            "jsonrpc",
        ),
        (
            "no method",
            br#"{"jsonrpc":"2.0","id":1}"#.to_vec(),
            400,
            -32600,
            "method",
        ),
        ("empty batch", b"[]".to_vec(), 400, -32600, "empty batch"),
        (
            "deep nesting",
            deep.into_bytes(),
            400,
            -32700,
            "nested deeper",
        ),
        (
            "invalid utf-8",
            b"{\"id\":1,\"method\":\"\xff\xfe\"}".to_vec(),
            400,
            -32700,
            "UTF-8",
        ),
        ("huge body", huge.into_bytes(), 413, -32006, "maxBodyBytes"),
        (
            "batch too large",
            too_many.into_bytes(),
            413,
            -32006,
            "at most 5",
        ),
    ];
    for (what, body, status, code, needle) in cases {
        let (got, _, text) = gw.post_raw("/rpc/eth", Some(&key), body).await;
        assert_eq!(got, status, "{what}: {text}");
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
        assert_eq!(value["error"]["code"], code, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    let (status, _, text) = gw.post_raw("/rpc/nope", Some(&key), "{}").await;
    assert_eq!(status, 404);
    assert!(text.contains("no instance is named `nope`"), "{text}");
    let response = gw
        .http
        .get(format!("{}/rpc/eth", gw.url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 405);
    let response = gw
        .http
        .get(format!("{}/rpc/eth", gw.url))
        .bearer_auth(&key)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .expect("answer");
    // An upgrade without the WebSocket handshake headers.
    assert_eq!(response.status(), 400);
    let text = response.text().await.expect("body");
    assert!(text.contains("Sec-WebSocket-Key"), "{text}");

    // Slowloris: headers that never finish are cut off.
    let mut slow = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    slow.write_all(b"POST /rpc/eth HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "a slow client kept its connection"
    );
    // A body that never finishes gets a 408.
    let mut slow = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let head = format!("POST /rpc/eth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 100\r\n\r\n{{\"id\":");
    slow.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A declared 100 MB body is refused from its header, without waiting for it.
    let mut big = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let head = format!("POST /rpc/eth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 100000000\r\n\r\n{{\"id\":");
    big.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(600), big.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("100000000 bytes"), "{answer}");
    // A chunked body (no length declared) over the limit is a 413 as well.
    let mut chunked = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let mut request = format!("POST /rpc/eth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for _ in 0..4 {
        request.push_str(&format!("{:x}\r\n{}\r\n", 40 * 1024, "a".repeat(40 * 1024)));
    }
    request.push_str("0\r\n\r\n");
    chunked.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), chunked.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than 65536 bytes"), "{answer}");

    // Still serving, and nothing reached the node for any of it.
    let (status, value) = gw
        .call("eth", &key, "eth_chainId", serde_json::json!([]))
        .await;
    assert_eq!(
        (status, &value["result"]),
        (200, &serde_json::json!("0x7a69"))
    );
}
