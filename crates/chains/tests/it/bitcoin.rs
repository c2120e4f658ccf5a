//! The bitcoin adapter against a real `litecoind -regtest`.

use std::time::Duration;

use chainfleet_chains::{Adapter, ChainError};
use chainfleet_spec::{Chain, Network, Role};
use chainfleet_testkit::Readiness;
use serde_json::json;

use crate::support::{client, endpoint_of, layout, start_rendered};

/// Litecoin regtest P2WSH(OP_TRUE): the adapter's default reward address.
const DEFAULT_ADDRESS: &str = "rltc1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqc6h8ge";

fn ltc() -> Adapter {
    Adapter::for_chain(Chain::Litecoin)
}

fn ready() -> Readiness {
    Readiness {
        path: "/",
        method: "getblockchaininfo",
    }
}

/// The address the coinbase of block `hash` pays.
async fn coinbase_address(node: &chainfleet_testkit::Daemon, hash: &str) -> String {
    let block = node.rpc("/", "getblock", json!([hash, 2])).await;
    let script = &block["tx"][0]["vout"][0]["scriptPubKey"];
    // 0.21 lists `addresses`; newer releases have one `address`.
    script["address"]
        .as_str()
        .or_else(|| script["addresses"][0].as_str())
        .unwrap_or_else(|| panic!("coinbase has no address: {script}"))
        .to_string()
}

#[tokio::test]
async fn probe_reads_a_fresh_node() {
    let node = chainfleet_testkit::litecoind().await;
    let status = ltc()
        .probe(&client(), &endpoint_of(&node))
        .await
        .expect("probe litecoind");
    assert_eq!(status.height, 0);
    assert_eq!(
        json!(status.best_hash),
        node.rpc("/", "getbestblockhash", json!([])).await
    );
    let genesis = node
        .rpc("/", "getblockheader", json!([status.best_hash]))
        .await;
    assert_eq!(json!(status.head_time), genesis["time"]);
    assert_eq!(status.peers, 0);
    assert!(!status.syncing, "a fresh regtest node is not syncing");
    assert!(
        status.client_version.contains("LitecoinCore"),
        "{}",
        status.client_version
    );
}

#[tokio::test]
async fn produce_mines_to_the_default_address_and_probe_follows() {
    let node = chainfleet_testkit::litecoind().await;
    let (rpc, ep) = (client(), endpoint_of(&node));
    let mut hashes = Vec::new();
    for expected in 1..=2u64 {
        let block = ltc()
            .produce(&rpc, &ep, None)
            .await
            .expect("produce a block");
        assert_eq!(block.height, Some(expected));
        assert_eq!(
            json!(block.hash),
            node.rpc("/", "getblockhash", json!([expected])).await
        );
        assert_eq!(coinbase_address(&node, &block.hash).await, DEFAULT_ADDRESS);
        hashes.push(block.hash);
    }
    assert_ne!(hashes[0], hashes[1]);
    assert_eq!(node.rpc("/", "getblockcount", json!([])).await, json!(2));
    let status = ltc().probe(&rpc, &ep).await.expect("probe litecoind");
    assert_eq!(status.height, 2);
    assert_eq!(
        json!(status.best_hash),
        node.rpc("/", "getbestblockhash", json!([])).await
    );
    assert_eq!(status.best_hash, hashes[1]);
    assert!(!status.syncing);
}

#[tokio::test]
async fn produce_pays_an_operator_address_and_never_replaces_a_bad_one() {
    let node = chainfleet_testkit::litecoind().await;
    let (rpc, ep) = (client(), endpoint_of(&node));
    // P2WSH(OP_2): valid on this chain, different from the default.
    let decoded = node.rpc("/", "decodescript", json!(["52"])).await;
    let address = decoded["segwit"]["address"]
        .as_str()
        .or_else(|| decoded["segwit"]["addresses"][0].as_str())
        .expect("decodescript gives a segwit address")
        .to_string();
    let block = ltc()
        .produce(&rpc, &ep, Some(&address))
        .await
        .expect("produce");
    assert_eq!(coinbase_address(&node, &block.hash).await, address);

    let err = ltc()
        .produce(
            &rpc,
            &ep,
            Some("bcrt1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqseac85"),
        )
        .await
        .expect_err("a bitcoin address is not a litecoin address");
    assert!(matches!(err, ChainError::Rpc { code: -5, .. }), "{err}");
    assert_eq!(
        node.rpc("/", "getblockcount", json!([])).await,
        json!(1),
        "no block for a bad address"
    );
}

#[tokio::test]
async fn request_stop_makes_the_process_exit() {
    let mut node = chainfleet_testkit::litecoind().await;
    ltc()
        .request_stop(&client(), &endpoint_of(&node))
        .await
        .expect("stop over RPC");
    let status = node.wait_for_exit(Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "litecoind did not exit cleanly: {status:?}\n{}",
        node.log_tail(20)
    );
}

#[tokio::test]
async fn rendered_launch_starts_litecoind() {
    let binary = chainfleet_testkit::require_binary("litecoind");
    let dir = chainfleet_testkit::temp_dir();
    let mut l = layout(Chain::Litecoin, Network::Regtest, &binary, dir.path());
    l.role = Role::Archive;
    let spec = ltc().launch(&l).expect("render the launch");
    assert!(spec.args.iter().any(|a| a == "-nodebuglogfile"));
    let node = start_rendered(&spec, &l, dir, ready()).await;
    // The RPC port and credentials come only from the rendered config file.
    let (rpc, ep) = (client(), ltc().endpoint(&l));
    let status = ltc()
        .probe(&rpc, &ep)
        .await
        .expect("probe the rendered node");
    assert_eq!(status.height, 0);
    let block = ltc().produce(&rpc, &ep, None).await.expect("produce");
    assert_eq!(block.height, Some(1));
    let indexes = node.rpc("/", "getindexinfo", json!([])).await;
    assert!(
        indexes.get("txindex").is_some(),
        "archive role enables txindex: {indexes}"
    );
    assert!(
        !node.dir.join("regtest/debug.log").exists(),
        "-nodebuglogfile is honoured"
    );
    let mut bad = ep.clone();
    bad.basic_auth = Some((l.rpc_user.clone(), "wrong".into()));
    assert!(
        ltc().probe(&rpc, &bad).await.is_err(),
        "wrong password is refused"
    );
}

#[tokio::test]
async fn rendered_peers_sync_blocks() {
    let binary = chainfleet_testkit::require_binary("litecoind");
    let dir_a = chainfleet_testkit::temp_dir();
    let a = layout(Chain::Litecoin, Network::Regtest, &binary, dir_a.path());
    let spec_a = ltc().launch(&a).expect("render a");
    let _node_a = start_rendered(&spec_a, &a, dir_a, ready()).await;
    let dir_b = chainfleet_testkit::temp_dir();
    let mut b = layout(Chain::Litecoin, Network::Regtest, &binary, dir_b.path());
    b.peer_p2p_ports = vec![a.p2p_port];
    let spec_b = ltc().launch(&b).expect("render b");
    let _node_b = start_rendered(&spec_b, &b, dir_b, ready()).await;

    let rpc = client();
    let produced = ltc()
        .produce(&rpc, &ltc().endpoint(&a), None)
        .await
        .expect("produce on a");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = ltc()
            .probe(&rpc, &ltc().endpoint(&b))
            .await
            .expect("probe b");
        if status.best_hash == produced.hash {
            assert!(status.peers >= 1, "b is connected to a");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never saw a's block; last status {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
