//! The answer cache against real nodes: answers are kept once deep enough,
//! never while they can change, and identical reads in flight are merged.

use std::time::Duration;

use chainfleet_gateway::keys::NewKey;
use chainfleet_spec::access::Access;
use chainfleet_spec::Chain;
use chainfleet_testkit::Daemon;
use serde_json::{json, Value};

use crate::harness::{access, at_height, rules, upstream, TestGateway};

/// A `0x` quantity as a number.
fn quantity(value: &Value) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a quantity: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .unwrap_or_else(|err| panic!("not a quantity ({err}): {value}"))
}

async fn head(node: &Daemon) -> u64 {
    quantity(&node.rpc("/", "eth_blockNumber", json!([])).await)
}

async fn mine(node: &Daemon, blocks: u64) {
    node.rpc("/", "anvil_mine", json!([blocks])).await;
}

/// Call through the gateway and return the `result`, checking the call succeeded.
async fn result(gw: &TestGateway, instance: &str, key: &str, method: &str, params: Value) -> Value {
    let (status, answer) = gw.call(instance, key, method, params).await;
    assert_eq!(status, 200, "{method}: {answer}");
    assert!(answer.get("error").is_none(), "{method}: {answer}");
    answer["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evm_answers_are_cached_once_deep_and_latest_never() {
    let node = chainfleet_testkit::anvil().await;
    let up = |height: u64| {
        vec![at_height(
            upstream("eth", 0, Chain::Ethereum, &node),
            height,
        )]
    };
    let gw = TestGateway::start(up(0), access("eth", rules(&["read"], &[]))).await;
    let key = gw.read_key("eth");
    let hits = || gw.metric("chainfleet_gateway_cache_hits_total{instance=\"eth\"}");
    let misses = || gw.metric("chainfleet_gateway_cache_misses_total{instance=\"eth\"}");
    mine(&node, 20).await;
    assert_eq!(head(&node).await, 20);
    gw.publish(up(20), "eth", 20).await;

    // (a) Block 2 is 18 deep (12 needed): the second call is a cache hit.
    let deep = json!(["0x2", false]);
    let direct = node.rpc("/", "eth_getBlockByNumber", deep.clone()).await;
    let first = result(&gw, "eth", &key, "eth_getBlockByNumber", deep.clone()).await;
    assert_eq!(first, direct);
    assert_eq!((hits().await, misses().await), (0.0, 1.0));
    let second = result(&gw, "eth", &key, "eth_getBlockByNumber", deep.clone()).await;
    assert_eq!(second, direct);
    assert_eq!((hits().await, misses().await), (1.0, 1.0));

    // (c) Block 16 is 4 deep: not kept until the best height is 28 or more.
    let near = json!(["0x10", false]);
    for _ in 0..2 {
        result(&gw, "eth", &key, "eth_getBlockByNumber", near.clone()).await;
    }
    assert_eq!(hits().await, 1.0, "a block 4 deep was cached");
    mine(&node, 10).await;
    gw.publish(up(30), "eth", 30).await;
    result(&gw, "eth", &key, "eth_getBlockByNumber", near.clone()).await;
    assert_eq!(hits().await, 1.0);
    let cached = result(&gw, "eth", &key, "eth_getBlockByNumber", near.clone()).await;
    assert_eq!(
        hits().await,
        2.0,
        "block 16 was not cached at best height 30"
    );
    assert_eq!(cached["number"], "0x10");

    // (b) `latest` is never cached: a new block shows through the gateway.
    let latest = json!(["latest", false]);
    let before = result(&gw, "eth", &key, "eth_getBlockByNumber", latest.clone()).await;
    assert_eq!(quantity(&before["number"]), 30);
    mine(&node, 1).await;
    let after = result(&gw, "eth", &key, "eth_getBlockByNumber", latest.clone()).await;
    assert_eq!(quantity(&after["number"]), 31);
    assert_eq!(hits().await, 2.0);

    // (d) A mined transaction is cached only once its block is 12 deep.
    let accounts = node.rpc("/", "eth_accounts", json!([])).await;
    let transfer = json!([{"from": accounts[0], "to": accounts[1], "value": "0x1"}]);
    let tx = node.rpc("/", "eth_sendTransaction", transfer.clone()).await;
    let receipt = node
        .rpc("/", "eth_getTransactionReceipt", json!([tx]))
        .await;
    let mined_in = quantity(&receipt["blockNumber"]);
    assert_eq!(mined_in, head(&node).await, "anvil mines each transaction");
    gw.publish(up(mined_in), "eth", mined_in).await;
    let by_hash = json!([tx]);
    for _ in 0..2 {
        let answer = result(
            &gw,
            "eth",
            &key,
            "eth_getTransactionByHash",
            by_hash.clone(),
        )
        .await;
        assert_eq!(answer["hash"], tx);
    }
    assert_eq!(hits().await, 2.0, "a transaction 0 deep was cached");
    mine(&node, 12).await;
    gw.publish(up(mined_in + 12), "eth", mined_in + 12).await;
    let fetched = result(
        &gw,
        "eth",
        &key,
        "eth_getTransactionByHash",
        by_hash.clone(),
    )
    .await;
    let cached_tx = result(
        &gw,
        "eth",
        &key,
        "eth_getTransactionByHash",
        by_hash.clone(),
    )
    .await;
    assert_eq!(hits().await, 3.0, "a transaction 12 deep was not cached");
    assert_eq!(cached_tx, fetched);
    assert_eq!(quantity(&cached_tx["blockNumber"]), mined_in);

    // A pending transaction has no block: never cached, however high the best height.
    node.rpc("/", "evm_setAutomine", json!([false])).await;
    let pending = node.rpc("/", "eth_sendTransaction", transfer).await;
    gw.publish(up(1_000_000), "eth", 1_000_000).await;
    for _ in 0..2 {
        let answer = result(
            &gw,
            "eth",
            &key,
            "eth_getTransactionByHash",
            json!([pending]),
        )
        .await;
        assert!(answer["blockNumber"].is_null(), "{answer}");
    }
    assert_eq!(hits().await, 3.0, "a pending transaction was cached");

    // With the node gone, only what was cached still answers.
    drop(node);
    assert_eq!(
        result(&gw, "eth", &key, "eth_getBlockByNumber", deep).await,
        direct
    );
    assert_eq!(
        result(&gw, "eth", &key, "eth_getTransactionByHash", by_hash).await,
        cached_tx
    );
    let (status, answer) = gw.call("eth", &key, "eth_getBlockByNumber", latest).await;
    assert!(status >= 500, "latest answered without a node: {answer}");
    assert_eq!(hits().await, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoin_block_hashes_are_cached_once_deep_and_growing_confirmations_never() {
    let node = chainfleet_testkit::litecoind().await;
    let up = |height: u64| {
        vec![at_height(
            upstream("ltc", 0, Chain::Litecoin, &node),
            height,
        )]
    };
    let gw = TestGateway::start(up(0), access("ltc", Access::default())).await;
    let key = gw.read_key("ltc");
    let hits = || gw.metric("chainfleet_gateway_cache_hits_total{instance=\"ltc\"}");
    node.rpc("/", "generatetodescriptor", json!([10, "raw(51)"]))
        .await;
    gw.publish(up(10), "ltc", 10).await;

    // Height 2 is 8 deep (6 needed); height 8 is 2 deep.
    let hash = result(&gw, "ltc", &key, "getblockhash", json!([2])).await;
    assert_eq!(hash, node.rpc("/", "getblockhash", json!([2])).await);
    assert_eq!(
        result(&gw, "ltc", &key, "getblockhash", json!([2])).await,
        hash
    );
    assert_eq!(hits().await, 1.0);
    for _ in 0..2 {
        result(&gw, "ltc", &key, "getblockhash", json!([8])).await;
    }
    assert_eq!(hits().await, 1.0, "a block hash 2 deep was cached");

    // A verbose block carries confirmations, which grow: never cached.
    let verbose = json!([hash, 1]);
    let before = result(&gw, "ltc", &key, "getblock", verbose.clone()).await;
    assert_eq!(before["confirmations"], 9);
    node.rpc("/", "generatetodescriptor", json!([1, "raw(51)"]))
        .await;
    gw.publish(up(11), "ltc", 11).await;
    let after = result(&gw, "ltc", &key, "getblock", verbose).await;
    assert_eq!(after["confirmations"], 10);
    assert_eq!(hits().await, 1.0);

    // The raw block is content-addressed: cached at once.
    let raw = json!([hash, 0]);
    let direct = node.rpc("/", "getblock", raw.clone()).await;
    assert_eq!(
        result(&gw, "ltc", &key, "getblock", raw.clone()).await,
        direct
    );
    assert_eq!(result(&gw, "ltc", &key, "getblock", raw).await, direct);
    assert_eq!(hits().await, 2.0);

    // An error (no block at that height yet) is never cached.
    for _ in 0..2 {
        let (_, answer) = gw.call("ltc", &key, "getblockhash", json!([99])).await;
        assert!(answer["error"]["code"].is_i64(), "{answer}");
    }
    assert_eq!(hits().await, 2.0);
}

/// RPC requests litecoind logged for `method` (with `-debug=rpc`).
fn node_saw(node: &Daemon, method: &str) -> usize {
    std::fs::read_to_string(node.dir.join("daemon.log"))
        .unwrap_or_default()
        .matches(&format!("method={method} "))
        .count()
}

/// Send SIGSTOP or SIGCONT to a daemon this test started.
fn signal(node: &Daemon, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &node.pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {} failed", node.pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_reads_in_flight_reach_the_node_once() {
    const CALLS: usize = 50;
    let node = chainfleet_testkit::litecoind_with(&["-debug=rpc".into()]).await;
    node.rpc("/", "generatetodescriptor", json!([3, "raw(51)"]))
        .await;
    let gw = TestGateway::start(
        vec![upstream("ltc", 0, Chain::Litecoin, &node)],
        access("ltc", Access::default()),
    )
    .await;
    let (key, _) = gw.key(NewKey {
        instance: "ltc".into(),
        rps: Some(1000),
        burst: Some(1000),
        concurrency: Some(100),
        ..NewKey::default()
    });
    let seen_before = node_saw(&node, "getblockcount");

    // A stopped node holds the first call in flight while the others arrive.
    signal(&node, "-STOP");
    let calls = (0..CALLS).map(|_| gw.call("ltc", &key, "getblockcount", json!([])));
    let all = futures_util::future::join_all(calls);
    let resume = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        signal(&node, "-CONT");
    };
    let (answers, ()) = tokio::join!(all, resume);

    for (status, answer) in &answers {
        assert_eq!((*status, &answer["result"]), (200, &json!(3)), "{answer}");
    }
    let seen = node_saw(&node, "getblockcount") - seen_before;
    let coalesced = gw
        .metric("chainfleet_gateway_coalesced_total{instance=\"ltc\"}")
        .await;
    assert!(
        seen < CALLS,
        "the node saw all {seen} calls: none were merged"
    );
    assert!(coalesced >= 1.0, "no call was merged");
    assert_eq!(
        seen as f64 + coalesced,
        CALLS as f64,
        "every call either reached the node or was merged"
    );
}
