//! JSON-RPC over WebSocket through the gateway, with real anvil nodes behind it.

use std::time::{Duration, Instant};

use chainfleet_chains::Endpoint;
use chainfleet_control::Upstream;
use chainfleet_gateway::keys::NewKey;
use chainfleet_spec::access::Access;
use chainfleet_spec::Chain;
use chainfleet_testkit::Daemon;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::harness::{access, rules, snapshot, status, upstream, TestGateway};

type Client = WebSocketStream<TcpStream>;

/// Open a WebSocket to the gateway at `path`, with an optional bearer key.
async fn open(gw: &TestGateway, path: &str, bearer: Option<&str>) -> Result<Client, WsError> {
    let mut request = format!("ws://{}{path}", gw.addr)
        .into_client_request()
        .expect("request");
    if let Some(key) = bearer {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("header"),
        );
    }
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    tokio_tungstenite::client_async(request, stream)
        .await
        .map(|(socket, _)| socket)
}

/// The next text message as JSON, or None when nothing arrives within `wait`.
async fn next_json(ws: &mut Client, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(&text).expect("gateway sends JSON"))
            }
            Ok(Some(Ok(Message::Close(frame)))) => panic!("session closed: {frame:?}"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("session ended: {other:?}"),
        }
    }
}

/// Send a text message and return the next answer that is not a notification.
async fn ask(ws: &mut Client, body: Value) -> Value {
    ws.send(Message::text(body.to_string()))
        .await
        .expect("send");
    loop {
        let message = next_json(ws, Duration::from_secs(10))
            .await
            .expect("an answer within 10 s");
        if message.get("method").is_none() {
            return message;
        }
    }
}

fn call(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Wait for a `newHeads` notification while mining blocks on `node`; returns
/// the notification and the hash of the block it should announce.
async fn notified_of_block(ws: &mut Client, node: &Daemon) -> (Value, Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        node.rpc("/", "evm_mine", json!([])).await;
        let head = node
            .rpc("/", "eth_getBlockByNumber", json!(["latest", false]))
            .await;
        while let Some(message) = next_json(ws, Duration::from_millis(400)).await {
            if message["method"] == "eth_subscription"
                && message["params"]["result"]["hash"] == head["hash"]
            {
                return (message, head["hash"].clone());
            }
        }
    }
    panic!("no notification of a block mined on {}", node.rpc_url);
}

/// An upstream of a real node in state `state`.
fn as_state(mut upstream: Upstream, state: &str) -> Upstream {
    upstream.status.state = state.into();
    upstream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_calls_are_judged_and_subscriptions_survive_a_replica_kill() {
    let first = chainfleet_testkit::anvil().await;
    let second = chainfleet_testkit::anvil().await;
    // Only the first replica is healthy, so the session starts there.
    let gw = TestGateway::start(
        vec![
            upstream("eth", 0, Chain::Ethereum, &first),
            as_state(upstream("eth", 1, Chain::Ethereum, &second), "unreachable"),
        ],
        access("eth", rules(&["read"], &["mining"])),
    )
    .await;
    let key = gw.read_key("eth");
    let mut ws = open(&gw, &format!("/rpc/eth/{key}"), None)
        .await
        .expect("upgrade with the key in the path");

    let chain_id = first.rpc("/", "eth_chainId", json!([])).await;
    let answer = ask(&mut ws, call(7, "eth_chainId", json!([]))).await;
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["result"], chain_id);

    // A batch is judged element by element; the denied call never reaches anvil.
    let height = first.rpc("/", "eth_blockNumber", json!([])).await;
    let answer = ask(
        &mut ws,
        json!([
            call(1, "eth_chainId", json!([])),
            call(2, "evm_mine", json!([])),
            {"jsonrpc": "2.0", "id": "three", "method": "eth_blockNumber"},
        ]),
    )
    .await;
    assert_eq!(answer[0]["result"], chain_id, "{answer}");
    assert_eq!(answer[1]["error"]["code"], -32003, "{answer}");
    assert_eq!(
        answer[1]["error"]["data"]["rule"], "deny: mining",
        "{answer}"
    );
    assert_eq!(answer[2]["id"], "three", "{answer}");
    assert_eq!(answer[2]["result"], height, "{answer}");
    assert_eq!(first.rpc("/", "eth_blockNumber", json!([])).await, height);
    // Notifications in a batch get no slot in its answer; a batch of only
    // notifications gets no answer at all.
    let answer = ask(
        &mut ws,
        json!([
            {"jsonrpc": "2.0", "method": "eth_chainId"},
            call(4, "eth_chainId", json!([])),
        ]),
    )
    .await;
    assert_eq!(answer.as_array().map(Vec::len), Some(1), "{answer}");
    assert_eq!(answer[0]["id"], 4, "{answer}");
    ws.send(Message::text(
        json!([{"jsonrpc": "2.0", "method": "eth_chainId"}]).to_string(),
    ))
    .await
    .expect("send");
    assert_eq!(next_json(&mut ws, Duration::from_millis(500)).await, None);

    let answer = ask(&mut ws, call(8, "eth_subscribe", json!(["newHeads"]))).await;
    let subscription = answer["result"].clone();
    assert!(subscription.is_string(), "{answer}");
    let (note, _) = notified_of_block(&mut ws, &first).await;
    assert_eq!(note["params"]["subscription"], subscription);

    // The second replica turns healthy, then the first one dies.
    gw.upstreams
        .send(snapshot(vec![
            upstream("eth", 0, Chain::Ethereum, &first),
            upstream("eth", 1, Chain::Ethereum, &second),
        ]))
        .expect("snapshot");
    drop(first);
    let (note, hash) = notified_of_block(&mut ws, &second).await;
    assert_eq!(
        note["params"]["subscription"], subscription,
        "the client keeps its subscription id across the failover"
    );
    assert_eq!(note["params"]["result"]["hash"], hash);
    assert_eq!(
        gw.metric("chainfleet_gateway_ws_failovers_total{instance=\"eth\"}")
            .await,
        1.0
    );
    assert_eq!(
        gw.metric("chainfleet_gateway_ws_open{instance=\"eth\"}")
            .await,
        1.0
    );

    // Unsubscribing with the client's id closes it on the new replica.
    let answer = ask(&mut ws, call(9, "eth_unsubscribe", json!([subscription]))).await;
    assert_eq!(answer["result"], true, "{answer}");
    second.rpc("/", "evm_mine", json!([])).await;
    assert_eq!(next_json(&mut ws, Duration::from_millis(800)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_replica_loses_its_sessions_and_revocation_closes_them() {
    let first = chainfleet_testkit::anvil().await;
    let second = chainfleet_testkit::anvil().await;
    let gw = TestGateway::start(
        vec![
            upstream("eth", 0, Chain::Ethereum, &first),
            as_state(upstream("eth", 1, Chain::Ethereum, &second), "syncing"),
        ],
        access("eth", rules(&["read"], &[])),
    )
    .await;
    let (key, key_id) = gw.key(NewKey {
        instance: "eth".into(),
        ..NewKey::default()
    });
    let mut ws = open(&gw, "/rpc/eth", Some(&key)).await.expect("upgrade");
    let answer = ask(&mut ws, call(1, "eth_subscribe", json!(["newHeads"]))).await;
    let subscription = answer["result"].clone();
    notified_of_block(&mut ws, &first).await;

    // The first replica stalls (still running); the session moves without a failure.
    gw.upstreams
        .send(snapshot(vec![
            as_state(upstream("eth", 0, Chain::Ethereum, &first), "stalled"),
            upstream("eth", 1, Chain::Ethereum, &second),
        ]))
        .expect("snapshot");
    let (note, _) = notified_of_block(&mut ws, &second).await;
    assert_eq!(note["params"]["subscription"], subscription);

    assert_eq!(
        gw.metric("chainfleet_gateway_ws_open{").await,
        1.0,
        "the session counts as open"
    );
    gw.revoke(&key_id);
    let revoked = Instant::now();
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame = frame.expect("a close frame with a reason");
    assert_eq!(frame.code, CloseCode::Policy);
    assert!(frame.reason.contains("revoked"), "{}", frame.reason);
    assert!(
        revoked.elapsed() < Duration::from_secs(2),
        "revocation took {:?}",
        revoked.elapsed()
    );
    // The session is gone from the open-sessions gauge.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.metric("chainfleet_gateway_ws_open{").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the closed session still counts as open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_bad_input_gets_clear_errors() {
    let node = chainfleet_testkit::anvil().await;
    let dead_port = chainfleet_testkit::free_port();
    let litecoin = Upstream {
        status: status("ltc", 0, "healthy", dead_port),
        chain: Chain::Litecoin,
        endpoint: Endpoint::local(dead_port),
    };
    let mut policies = access(
        "eth",
        Access {
            max_body_bytes: 2048,
            ..rules(&["read"], &[])
        },
    );
    policies.insert("ltc".into(), Access::default());
    let gw = TestGateway::start(
        vec![upstream("eth", 0, Chain::Ethereum, &node), litecoin],
        policies,
    )
    .await;
    let key = gw.read_key("eth");

    // No key, or a chain without WebSocket RPC: refused before the upgrade.
    match open(&gw, "/rpc/eth", None).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let ltc_key = gw.read_key("ltc");
    match open(&gw, "/rpc/ltc", Some(&ltc_key)).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("no JSON-RPC over WebSocket"), "{body}");
        }
        other => panic!("expected 400, got {other:?}"),
    }

    let mut ws = open(&gw, "/rpc/eth", Some(&key)).await.expect("upgrade");
    ws.send(Message::text("{not json")).await.expect("send");
    let answer = next_json(&mut ws, Duration::from_secs(5))
        .await
        .expect("answer");
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    ws.send(Message::text(
        r#"{"jsonrpc":"3.0","id":1,"method":"eth_chainId"}"#,
    ))
    .await
    .expect("send");
    let answer = next_json(&mut ws, Duration::from_secs(5))
        .await
        .expect("answer");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    ws.send(Message::binary(vec![0u8, 1, 2]))
        .await
        .expect("send");
    let answer = next_json(&mut ws, Duration::from_secs(5))
        .await
        .expect("answer");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("binary")),
        "{answer}"
    );
    // Still usable after all that.
    let answer = ask(&mut ws, call(3, "eth_chainId", json!([]))).await;
    assert_eq!(
        answer["result"],
        node.rpc("/", "eth_chainId", json!([])).await
    );

    // Over access.maxBodyBytes: the session is closed with 1009 (message too big).
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["{}"]}}"#,
        "x".repeat(4096)
    );
    let _ = ws.send(Message::text(big)).await;
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::Size));

    // Per-key rate limits apply to the upgrade and to each call of a session.
    let (slow, _) = gw.key(NewKey {
        instance: "eth".into(),
        rps: Some(1),
        burst: Some(2),
        ..NewKey::default()
    });
    let mut ws = open(&gw, "/rpc/eth", Some(&slow)).await.expect("upgrade");
    let answer = ask(&mut ws, call(1, "eth_chainId", json!([]))).await;
    assert!(answer.get("result").is_some(), "{answer}");
    let answer = ask(&mut ws, call(2, "eth_chainId", json!([]))).await;
    assert_eq!(answer["error"]["code"], -32005, "{answer}");
    assert_eq!(answer["id"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_count_against_the_connection_limit() {
    let node = chainfleet_testkit::anvil().await;
    // Two slots: one session, plus the HTTP connection that asks for another.
    let gw = TestGateway::start_with(
        vec![upstream("eth", 0, Chain::Ethereum, &node)],
        access("eth", rules(&["read"], &[])),
        |options| options.max_connections = 2,
    )
    .await;
    let key = gw.read_key("eth");
    let mut first = open(&gw, "/rpc/eth", Some(&key))
        .await
        .expect("first session");
    let answer = ask(&mut first, call(1, "eth_chainId", json!([]))).await;
    assert!(answer.get("result").is_some(), "{answer}");
    match open(&gw, "/rpc/eth", Some(&key)).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503 with every slot taken, got {other:?}"),
    }
    // Closing the first session frees its slot.
    first.close(None).await.expect("close");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut second = loop {
        match open(&gw, "/rpc/eth", Some(&key)).await {
            Ok(session) => break session,
            Err(err) => {
                assert!(Instant::now() < deadline, "the slot never came back: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let answer = ask(&mut second, call(2, "eth_chainId", json!([]))).await;
    assert!(answer.get("result").is_some(), "{answer}");
}

/// Send `signal` (e.g. `-STOP`) to a daemon with kill(1).
fn signal(node: &Daemon, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &node.pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {} failed", node.pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_node_never_answers_gets_an_error_after_the_upstream_timeout() {
    let node = chainfleet_testkit::anvil().await;
    let gw = TestGateway::start_with(
        vec![upstream("eth", 0, Chain::Ethereum, &node)],
        access("eth", rules(&["read"], &[])),
        |options| options.upstream_timeout = Duration::from_secs(1),
    )
    .await;
    let key = gw.read_key("eth");
    let mut ws = open(&gw, "/rpc/eth", Some(&key)).await.expect("upgrade");
    signal(&node, "-STOP");
    let answer = ask(&mut ws, call(1, "eth_chainId", json!([]))).await;
    signal(&node, "-CONT");
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(answer["error"]["code"], -32011, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not answer within")),
        "{answer}"
    );
    // The node is back: the late answer to the expired call is dropped and
    // the session goes on.
    let answer = ask(&mut ws, call(2, "eth_chainId", json!([]))).await;
    assert_eq!(answer["id"], 2, "{answer}");
    assert!(answer.get("result").is_some(), "{answer}");
}
