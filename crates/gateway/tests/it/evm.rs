//! anvil behind the gateway: answers, denials that would change state, cache.

use chainfleet_spec::Chain;
use serde_json::json;

use crate::harness::{access, rules, upstream, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_reads_match_and_state_changing_calls_are_stopped() {
    let node = chainfleet_testkit::anvil().await;
    let gw = TestGateway::start(
        vec![upstream("eth", 0, Chain::Ethereum, &node)],
        access("eth", rules(&["read"], &["wallet", "mining"])),
    )
    .await;
    let key = gw.read_key("eth");
    let accounts = node.rpc("/", "eth_accounts", json!([])).await;
    let from = accounts[0].clone();
    for (method, params) in [
        ("eth_chainId", json!([])),
        ("eth_blockNumber", json!([])),
        ("eth_getBalance", json!([from, "latest"])),
        ("eth_getBlockByNumber", json!(["0x0", false])),
    ] {
        let direct = node.rpc("/", method, params.clone()).await;
        let (status, answer) = gw.call("eth", &key, method, params).await;
        assert_eq!(status, 200, "{method}: {answer}");
        assert_eq!(answer["result"], direct, "{method}");
    }
    let height = node.rpc("/", "eth_blockNumber", json!([])).await;
    let balance = node
        .rpc("/", "eth_getBalance", json!([from, "latest"]))
        .await;

    // Each of these would mine a block or move funds if it reached anvil.
    let (_, answer) = gw.call("eth", &key, "evm_mine", json!([])).await;
    assert_eq!(answer["error"]["data"]["rule"], "deny: mining", "{answer}");
    let (_, answer) = gw
        .call(
            "eth",
            &key,
            "eth_sendTransaction",
            json!([{"from": from, "to": accounts[1], "value": "0xde0b6b3a7640000"}]),
        )
        .await;
    assert_eq!(answer["error"]["data"]["rule"], "deny: wallet", "{answer}");
    let (_, answer) = gw
        .call("eth", &key, "eth_sendRawTransaction", json!(["0x00"]))
        .await;
    assert_eq!(answer["error"]["data"]["rule"], "allow: [read]", "{answer}");

    assert_eq!(node.rpc("/", "eth_blockNumber", json!([])).await, height);
    assert_eq!(
        node.rpc("/", "eth_getBalance", json!([from, "latest"]))
            .await,
        balance
    );
    assert_eq!(
        gw.metric("chainfleet_gateway_calls_total{instance=\"eth\",method=\"evm_mine\"")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_answers_are_cached_and_latest_never_is() {
    let node = chainfleet_testkit::anvil().await;
    let gw = TestGateway::start(
        vec![upstream("eth", 0, Chain::Ethereum, &node)],
        access("eth", rules(&["read"], &[])),
    )
    .await;
    let key = gw.read_key("eth");
    let genesis = node
        .rpc("/", "eth_getBlockByNumber", json!(["0x0", false]))
        .await;
    let hash = genesis["hash"].clone();
    let (_, first) = gw
        .call("eth", &key, "eth_getBlockByHash", json!([hash, false]))
        .await;
    let (_, second) = gw
        .call("eth", &key, "eth_getBlockByHash", json!([hash, false]))
        .await;
    assert_eq!(first["result"], genesis);
    assert_eq!(second, first);
    assert_eq!(
        gw.metric("chainfleet_gateway_cache_hits_total{instance=\"eth\"}")
            .await,
        1.0
    );

    // eth_blockNumber depends on the head: after a block it must change.
    let (_, before) = gw.call("eth", &key, "eth_blockNumber", json!([])).await;
    node.rpc("/", "evm_mine", json!([])).await;
    let (_, after) = gw.call("eth", &key, "eth_blockNumber", json!([])).await;
    assert_ne!(before["result"], after["result"]);
    assert_eq!(
        after["result"],
        node.rpc("/", "eth_blockNumber", json!([])).await
    );
    assert_eq!(
        gw.metric("chainfleet_gateway_cache_hits_total{instance=\"eth\"}")
            .await,
        1.0
    );
    assert_eq!(gw.gateway.instances(), vec!["eth".to_string()]);

    // A policy change (an applied manifest) takes effect without a restart.
    gw.access
        .send(std::sync::Arc::new(access(
            "eth",
            rules(&["read"], &["eth_getBlockByHash"]),
        )))
        .expect("send");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let (_, answer) = gw
            .call("eth", &key, "eth_getBlockByHash", json!([hash, false]))
            .await;
        if answer["error"]["data"]["rule"] == "deny: eth_getBlockByHash" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "policy change not applied: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_written_in_this_process_work_without_waiting_for_the_poll() {
    use chainfleet_gateway::keys::{KeyStore, NewKey};
    use std::time::Duration;

    let node = chainfleet_testkit::anvil().await;
    // A poll so slow that only the in-process signal can explain a quick reload.
    let gw = TestGateway::start_with(
        vec![upstream("eth", 0, Chain::Ethereum, &node)],
        access("eth", rules(&["read"], &[])),
        |options| options.key_poll = Duration::from_secs(60),
    )
    .await;
    let mut store = KeyStore::open(gw.dir.path()).expect("key store");
    let created = store
        .create(
            NewKey {
                instance: "eth".into(),
                ..NewKey::default()
            },
            |_| true,
        )
        .expect("create");
    assert!(
        answers_within(&gw, &created.key, 200).await,
        "a new key was not live within 5 s"
    );
    assert!(store.revoke(&created.info.id).expect("revoke"));
    assert!(
        answers_within(&gw, &created.key, 401).await,
        "a revoked key still worked after 5 s"
    );
}

/// Whether a call with `key` gets HTTP `status` within 5 s.
async fn answers_within(gw: &TestGateway, key: &str, status: u16) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if gw.call("eth", key, "eth_chainId", json!([])).await.0 == status {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}
