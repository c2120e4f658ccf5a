//! Routing: healthy replicas only, retries of reads, no retries of writes, failover under load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainfleet_chains::Endpoint;
use chainfleet_control::Upstream;
use chainfleet_gateway::keys::NewKey;
use chainfleet_spec::access::Access;
use chainfleet_spec::Chain;
use serde_json::json;

use crate::harness::{access, rules, snapshot, status, upstream, TestGateway};

/// An upstream on a port where nothing listens, but reported as `state`.
fn dead(instance: &str, replica: u32, state: &str, lag: u64) -> Upstream {
    let port = chainfleet_testkit::free_port();
    let mut status = status(instance, replica, state, port);
    status.lag = Some(lag);
    Upstream {
        status,
        chain: Chain::Litecoin,
        endpoint: Endpoint::local(port),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_healthy_is_a_503_json_rpc_error() {
    let gw = TestGateway::start(
        vec![
            dead("ltc", 0, "unreachable", 0),
            dead("ltc", 1, "syncing", 0),
        ],
        access("ltc", Access::default()),
    )
    .await;
    let key = gw.read_key("ltc");
    let (status, headers, text) = gw
        .post_raw(
            "/rpc/ltc",
            Some(&key),
            r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#,
        )
        .await;
    assert_eq!(status, 503, "{text}");
    assert!(headers.contains_key("retry-after"));
    let answer: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["error"]["code"], -32010);
    assert!(text.contains("no healthy replica of `ltc`"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_nodes_yet_is_a_503_not_an_unknown_instance() {
    let mut sections = access("ltc", Access::default());
    sections.insert("fresh".into(), Access::default());
    let gw = TestGateway::start(vec![dead("ltc", 0, "healthy", 0)], sections).await;
    let key = gw.read_key("fresh");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#;
    let (status, headers, text) = gw.post_raw("/rpc/fresh", Some(&key), body).await;
    assert_eq!(status, 503, "{text}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["error"]["code"], -32010, "{answer}");
    assert!(text.contains("`fresh` has no replicas yet"), "{text}");

    // A name in no manifest is still unknown.
    let (status, _, text) = gw.post_raw("/rpc/nope", Some(&key), body).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("no instance is named `nope`"), "{text}");

    // Once its nodes appear it is routed like any other.
    gw.upstreams
        .send(snapshot(vec![
            dead("ltc", 0, "healthy", 0),
            dead("fresh", 0, "starting", 0),
        ]))
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !gw.gateway.instances().contains(&"fresh".to_string()) {
        assert!(Instant::now() < deadline, "`fresh` was never routed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _, text) = gw.post_raw("/rpc/fresh", Some(&key), body).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("no healthy replica of `fresh`"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replicas_get_nothing_and_reads_are_retried_on_another_replica() {
    let node = chainfleet_testkit::litecoind().await;
    // A lagging replica (never used) and a "healthy" one that is really down.
    let gw = TestGateway::start(
        vec![
            dead("ltc", 0, "healthy", 50),
            dead("ltc", 1, "healthy", 0),
            upstream("ltc", 2, Chain::Litecoin, &node),
        ],
        access("ltc", Access::default()),
    )
    .await;
    let key = gw.read_key("ltc");
    for _ in 0..6 {
        let (status, answer) = gw.call("ltc", &key, "getblockcount", json!([])).await;
        assert_eq!((status, &answer["result"]), (200, &json!(0)), "{answer}");
    }
    let errors_of = |node: &'static str| {
        format!("chainfleet_gateway_upstream_errors_total{{instance=\"ltc\",node=\"{node}\"")
    };
    assert_eq!(
        gw.metric(&errors_of("ltc-0")).await,
        0.0,
        "a lagging replica was used"
    );
    let failures = gw.metric(&errors_of("ltc-1")).await;
    assert!(failures >= 1.0, "the dead replica was never tried");
    // The circuit opened after 3 failures, so it stopped being tried.
    assert!(
        failures <= 3.0,
        "{failures} failures: the circuit never opened"
    );
    assert!(gw.metric("chainfleet_gateway_retries_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_not_retried_blindly() {
    let node = chainfleet_testkit::litecoind_with(&["-debug=rpc".into()]).await;
    let gw = TestGateway::start(
        vec![
            dead("ltc", 0, "healthy", 0),
            upstream("ltc", 1, Chain::Litecoin, &node),
        ],
        access("ltc", rules(&["read", "write"], &[])),
    )
    .await;
    let (key, _) = gw.key(NewKey {
        instance: "ltc".into(),
        allow: vec!["read".into(), "write".into()],
        ..NewKey::default()
    });
    let mut refused = 0;
    let mut reached = 0;
    for _ in 0..4 {
        let (status, answer) = gw
            .call("ltc", &key, "sendrawtransaction", json!(["00"]))
            .await;
        if status == 502 {
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not retried"),
                "{answer}"
            );
            refused += 1;
        } else {
            // litecoind rejects the bogus transaction: an answer from the node.
            assert_eq!(status, 200, "{answer}");
            assert!(answer["error"]["code"].is_i64(), "{answer}");
            reached += 1;
        }
    }
    assert!(refused >= 1, "the dead replica was never picked");
    let log = std::fs::read_to_string(node.dir.join("daemon.log")).unwrap_or_default();
    let arrived = log.matches("method=sendrawtransaction ").count();
    assert_eq!(
        arrived, reached,
        "a failed write was retried on the live replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_under_load_gives_no_5xx() {
    let a = chainfleet_testkit::litecoind().await;
    let b = chainfleet_testkit::litecoind().await;
    let genesis = a.rpc("/", "getblockhash", json!([0])).await;
    let gw = Arc::new(
        TestGateway::start(
            vec![
                upstream("ltc", 0, Chain::Litecoin, &a),
                upstream("ltc", 1, Chain::Litecoin, &b),
            ],
            access(
                "ltc",
                Access {
                    key_rps: 100_000,
                    key_burst: 100_000,
                    key_concurrency: 1000,
                    ..Access::default()
                },
            ),
        )
        .await,
    );
    let key = gw.read_key("ltc");
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (gw, key, ok, bad, genesis) = (
            gw.clone(),
            key.clone(),
            ok.clone(),
            bad.clone(),
            genesis.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while Instant::now() < deadline {
                let (status, answer) = gw.call("ltc", &key, "getblockhash", json!([0])).await;
                if status == 200 && answer["result"] == genesis {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                    failures.push(format!("{status}: {answer}"));
                }
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = ok.load(Ordering::Relaxed);
    drop(a); // SIGKILL
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.expect("worker"));
    }
    let after_kill = ok.load(Ordering::Relaxed) - before_kill;
    assert!(
        failures.is_empty(),
        "{} failed calls, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        before_kill > 50 && after_kill > 50,
        "too little load: {before_kill} then {after_kill}"
    );
    assert!(
        gw.metric("chainfleet_gateway_upstream_errors_total{instance=\"ltc\",node=\"ltc-0\"")
            .await
            >= 1.0,
        "the killed replica was never hit, so the test proved nothing"
    );
    // Once the control plane marks it down, it is out of the routes entirely.
    let mut down = upstream("ltc", 1, Chain::Litecoin, &b);
    down.status.name = "ltc-1".into();
    let mut gone = dead("ltc", 0, "unreachable", 0);
    gone.status.name = "ltc-0".into();
    gw.upstreams.send(snapshot(vec![gone, down])).expect("send");
    let (status, _) = gw.call("ltc", &key, "getblockcount", json!([])).await;
    assert_eq!(status, 200);
    let _ = bad;
}
