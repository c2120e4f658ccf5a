//! litecoind behind the gateway: answers, denials, batches, keys and limits.

use std::time::{Duration, Instant};

use chainfleet_gateway::keys::NewKey;
use chainfleet_spec::access::Access;
use chainfleet_spec::Chain;
use serde_json::{json, Value};

use crate::harness::{access, rules, upstream, TestGateway};

/// RPC methods litecoind logged with `-debug=rpc` (node-side evidence of what reached it).
fn methods_seen(daemon: &chainfleet_testkit::Daemon) -> String {
    std::fs::read_to_string(daemon.dir.join("daemon.log")).unwrap_or_default()
}

fn seen(log: &str, method: &str) -> bool {
    log.contains(&format!("method={method} "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_calls_match_direct_calls_and_denied_calls_never_reach_the_node() {
    let node = chainfleet_testkit::litecoind_with(&["-debug=rpc".into()]).await;
    let gw = TestGateway::start(
        vec![upstream("ltc", 0, Chain::Litecoin, &node)],
        access("ltc", rules(&["read", "mining"], &["admin"])),
    )
    .await;
    let key = gw.read_key("ltc");

    for (method, params) in [
        ("getblockhash", json!([0])),
        ("getblockcount", json!([])),
        (
            "getblockheader",
            json!([node.rpc("/", "getblockhash", json!([0])).await]),
        ),
    ] {
        let direct = node.rpc("/", method, params.clone()).await;
        let (status, answer) = gw.call("ltc", &key, method, params).await;
        assert_eq!(status, 200, "{method}: {answer}");
        assert_eq!(answer["result"], direct, "{method}");
        assert_eq!(answer["id"], 1);
    }
    // The evidence mechanism works: allowed calls show up in the node's log.
    assert!(seen(&methods_seen(&node), "getblockheader"));

    // Denied by the instance (admin), and by the key (mining is allowed by the
    // instance but the key is read-only).
    let (status, answer) = gw.call("ltc", &key, "stop", json!([])).await;
    assert_eq!(status, 200);
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    assert_eq!(answer["error"]["data"]["rule"], "deny: admin");
    assert_eq!(answer["error"]["data"]["scope"], "instance");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("stop") && message.contains("deny: admin"),
        "{message}"
    );

    let (_, answer) = gw
        .call("ltc", &key, "generatetodescriptor", json!([1, "raw(51)"]))
        .await;
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    assert_eq!(answer["error"]["data"]["scope"], "key");
    assert_eq!(answer["error"]["data"]["rule"], "allow: [read]");

    // Never reached the node: it is still up, produced nothing, and never logged them.
    assert_eq!(node.rpc("/", "getblockcount", json!([])).await, json!(0));
    let log = methods_seen(&node);
    assert!(!seen(&log, "stop"), "stop reached the node");
    assert!(
        !seen(&log, "generatetodescriptor"),
        "generatetodescriptor reached the node"
    );
    assert_eq!(
        gw.metric("chainfleet_gateway_calls_total{instance=\"ltc\",method=\"stop\"")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_is_answered_element_by_element() {
    let node = chainfleet_testkit::litecoind_with(&["-debug=rpc".into()]).await;
    let gw = TestGateway::start(
        vec![upstream("ltc", 0, Chain::Litecoin, &node)],
        access("ltc", Access::default()),
    )
    .await;
    let key = gw.read_key("ltc");
    let genesis = node.rpc("/", "getblockhash", json!([0])).await;
    let (status, answer) = gw
        .post(
            "ltc",
            &key,
            json!([
                {"jsonrpc": "2.0", "id": 1, "method": "getblockcount", "params": []},
                {"jsonrpc": "2.0", "id": "s", "method": "sendrawtransaction", "params": ["00"]},
                {"jsonrpc": "2.0", "id": 3},
                {"jsonrpc": "2.0", "id": 4, "method": "getblockhash", "params": [0]},
                {"jsonrpc": "2.0", "method": "getblockcount", "params": []},
                {"jsonrpc": "2.0", "id": 5, "method": "getblockhash", "params": [99]},
            ]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let items = answer.as_array().expect("a list");
    assert_eq!(items.len(), 5, "the notification gets no answer: {answer}");
    assert_eq!(
        (&items[0]["id"], &items[0]["result"]),
        (&json!(1), &json!(0))
    );
    assert_eq!(items[1]["id"], "s");
    assert_eq!(items[1]["error"]["code"], -32003);
    assert!(items[1]["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("sendrawtransaction")));
    assert_eq!(
        (&items[2]["id"], &items[2]["error"]["code"]),
        (&json!(3), &json!(-32600))
    );
    assert_eq!(
        (&items[3]["id"], &items[3]["result"]),
        (&json!(4), &genesis)
    );
    // A node error stays in its own slot.
    assert_eq!(items[4]["id"], 5);
    assert!(items[4]["error"]["code"].is_i64(), "{}", items[4]);
    assert!(!seen(&methods_seen(&node), "sendrawtransaction"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_work_in_every_form_and_a_revoked_key_stops_within_a_second() {
    let node = chainfleet_testkit::litecoind().await;
    let gw = TestGateway::start(
        vec![upstream("ltc", 0, Chain::Litecoin, &node)],
        access("ltc", Access::default()),
    )
    .await;
    let (key, id) = gw.key(NewKey {
        instance: "ltc".into(),
        ..NewKey::default()
    });
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "getblockcount"}).to_string();
    let forms = [
        gw.http
            .post(format!("{}/rpc/ltc", gw.url))
            .bearer_auth(&key),
        gw.http
            .post(format!("{}/rpc/ltc", gw.url))
            .header("x-api-key", &key),
        gw.http.post(format!("{}/rpc/ltc/{key}", gw.url)),
    ];
    for form in forms {
        let response = form.body(body.clone()).send().await.expect("answer");
        assert_eq!(response.status(), 200);
        let value: Value = response.json().await.expect("json");
        assert_eq!(value["result"], 0);
    }

    gw.revoke(&id);
    let revoked = Instant::now();
    loop {
        let (status, answer) = gw.call("ltc", &key, "getblockcount", json!([])).await;
        if status == 401 {
            assert_eq!(answer["error"]["code"], -32001);
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "the revoked key still works after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(revoked.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_for_instance_expiry_and_address() {
    let node = chainfleet_testkit::litecoind().await;
    let gw = TestGateway::start(
        vec![upstream("ltc", 0, Chain::Litecoin, &node)],
        access("ltc", Access::default()),
    )
    .await;
    let (status, answer) = gw
        .post(
            "ltc",
            "cfk_nope_0000",
            json!({"id": 1, "method": "getblockcount"}),
        )
        .await;
    assert_eq!((status, &answer["error"]["code"]), (401, &json!(-32001)));
    let (status, _, text) = gw
        .post_raw("/rpc/ltc", None, r#"{"id":1,"method":"getblockcount"}"#)
        .await;
    assert_eq!(status, 401);
    assert!(text.contains("Bearer"), "{text}");

    let (other, _) = gw.key(NewKey {
        instance: "eth".into(),
        ..NewKey::default()
    });
    let (status, answer) = gw.call("ltc", &other, "getblockcount", json!([])).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("`eth`"));

    let (expired, _) = gw.key(NewKey {
        instance: "ltc".into(),
        expires_in_seconds: Some(0),
        ..NewKey::default()
    });
    let (status, answer) = gw.call("ltc", &expired, "getblockcount", json!([])).await;
    assert_eq!(status, 401);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("expired"));

    let (elsewhere, _) = gw.key(NewKey {
        instance: "ltc".into(),
        cidrs: vec!["10.0.0.0/8".into()],
        ..NewKey::default()
    });
    let (status, _) = gw.call("ltc", &elsewhere, "getblockcount", json!([])).await;
    assert_eq!(status, 403);
    let (here, _) = gw.key(NewKey {
        instance: "ltc".into(),
        cidrs: vec!["127.0.0.0/8".into()],
        ..NewKey::default()
    });
    let (status, _) = gw.call("ltc", &here, "getblockcount", json!([])).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_over_the_rate_gives_429_with_retry_after() {
    let node = chainfleet_testkit::litecoind().await;
    let gw = TestGateway::start(
        vec![upstream("ltc", 0, Chain::Litecoin, &node)],
        access("ltc", Access::default()),
    )
    .await;
    let (key, _) = gw.key(NewKey {
        instance: "ltc".into(),
        rps: Some(1),
        burst: Some(3),
        ..NewKey::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, headers, _) = gw
            .post_raw(
                "/rpc/ltc",
                Some(&key),
                r#"{"id":1,"method":"getblockcount"}"#,
            )
            .await;
        if status == 429 {
            let after = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            assert!(
                after.is_some_and(|s| s >= 1),
                "Retry-After missing: {headers:?}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    // A batch costs one token per call.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let batch = json!([{"id": 1, "method": "getblockcount"}, {"id": 2, "method": "getblockcount"}, {"id": 3, "method": "getblockcount"}]);
    let (status, _, text) = gw.post_raw("/rpc/ltc", Some(&key), batch.to_string()).await;
    assert_eq!(status, 429, "{text}");
    assert!(
        gw.metric("chainfleet_gateway_calls_total{instance=\"ltc\",method=\"-\",key_id=")
            .await
            >= 3.0
    );
}
