//! The monero adapter against a real `monerod --regtest`.

use std::time::Duration;

use chainfleet_chains::{Adapter, ChainError};
use chainfleet_spec::{Chain, Network};
use chainfleet_testkit::Readiness;
use serde_json::json;

use crate::support::{client, endpoint_of, layout, start_rendered};

fn xmr() -> Adapter {
    Adapter::for_chain(Chain::Monero)
}

fn ready() -> Readiness {
    Readiness {
        path: "/json_rpc",
        method: "get_info",
    }
}

#[tokio::test]
async fn rendered_launch_starts_monerod_that_produces() {
    let binary = chainfleet_testkit::require_binary("monerod");
    let dir = chainfleet_testkit::temp_dir();
    let l = layout(Chain::Monero, Network::Regtest, &binary, dir.path());
    let spec = xmr().launch(&l).expect("render the launch");
    let node = start_rendered(&spec, &l, dir, ready()).await;
    let (rpc, ep) = (client(), xmr().endpoint(&l));

    let status = xmr().probe(&rpc, &ep).await.expect("probe monerod");
    assert_eq!(status.height, 0);
    assert!(!status.syncing);
    assert_eq!(status.peers, 0);
    assert!(
        status.client_version.starts_with("monerod 0."),
        "{}",
        status.client_version
    );
    let info = node.rpc("/json_rpc", "get_info", json!({})).await;
    assert_eq!(
        info["nettype"],
        json!("fakechain"),
        "rendered config selects regtest"
    );
    assert_eq!(info["offline"], json!(true), "no peers means offline");
    assert_eq!(info["difficulty"], json!(1), "fixed difficulty");

    for expected in 1..=2u64 {
        let block = xmr()
            .produce(&rpc, &ep, None)
            .await
            .expect("generateblocks");
        assert_eq!(block.height, Some(expected));
        let header = node
            .rpc(
                "/json_rpc",
                "get_block_header_by_height",
                json!({"height": expected}),
            )
            .await;
        assert_eq!(json!(block.hash), header["block_header"]["hash"]);
    }
    let status = xmr().probe(&rpc, &ep).await.expect("probe monerod");
    assert_eq!(status.height, 2);
    let height = client()
        .get_json(&ep, "/get_height")
        .await
        .expect("REST get_height");
    assert_eq!(height["height"], json!(3), "get_height counts blocks");
    assert_eq!(json!(status.best_hash), height["hash"]);
}

#[tokio::test]
async fn rendered_regtest_node_keeps_its_chain_across_restarts() {
    let binary = chainfleet_testkit::require_binary("monerod");
    let dir = chainfleet_testkit::temp_dir();
    let l = layout(Chain::Monero, Network::Devnet, &binary, dir.path());
    let spec = xmr().launch(&l).expect("render the launch");
    let node = start_rendered(&spec, &l, dir, ready()).await;
    let (rpc, ep) = (client(), xmr().endpoint(&l));
    let block = xmr()
        .produce(&rpc, &ep, None)
        .await
        .expect("generateblocks");

    let (exit, dir) = node.terminate(Duration::from_secs(60)).await;
    assert!(exit.is_some(), "monerod did not exit on SIGTERM");
    let _node = start_rendered(&spec, &l, dir, ready()).await;
    let status = xmr()
        .probe(&rpc, &ep)
        .await
        .expect("probe the restarted node");
    assert_eq!(
        (status.height, status.best_hash),
        (1, block.hash),
        "keep-fakechain keeps the chain"
    );
}

#[tokio::test]
async fn produce_refuses_a_bad_address() {
    let node = chainfleet_testkit::monerod().await;
    let (rpc, ep) = (client(), endpoint_of(&node));
    let err = xmr()
        .produce(&rpc, &ep, Some("not-an-address"))
        .await
        .expect_err("bad address");
    assert!(matches!(err, ChainError::Rpc { .. }), "{err}");
    let status = xmr().probe(&rpc, &ep).await.expect("probe");
    assert_eq!(status.height, 0, "no block was made");
}

#[tokio::test]
async fn rendered_peers_sync_blocks() {
    let binary = chainfleet_testkit::require_binary("monerod");
    let dir_a = chainfleet_testkit::temp_dir();
    let b_ports = chainfleet_testkit::free_ports();
    let mut a = layout(Chain::Monero, Network::Regtest, &binary, dir_a.path());
    a.peer_p2p_ports = vec![b_ports.1];
    let dir_b = chainfleet_testkit::temp_dir();
    let mut b = layout(Chain::Monero, Network::Regtest, &binary, dir_b.path());
    (b.rpc_port, b.p2p_port) = b_ports;
    b.peer_p2p_ports = vec![a.p2p_port];
    let spec_a = xmr().launch(&a).expect("render a");
    let spec_b = xmr().launch(&b).expect("render b");
    let _node_a = start_rendered(&spec_a, &a, dir_a, ready()).await;
    let node_b = start_rendered(&spec_b, &b, dir_b, ready()).await;

    let rpc = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    // A node with peers answers BUSY until it has synchronized with one.
    let produced = loop {
        match xmr().produce(&rpc, &xmr().endpoint(&a), None).await {
            Ok(block) => break block,
            Err(err)
                if err.to_string().contains("BUSY") && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(err) => panic!("produce on a: {err}"),
        }
    };
    loop {
        let status = xmr()
            .probe(&rpc, &xmr().endpoint(&b))
            .await
            .expect("probe b");
        if status.best_hash == produced.hash {
            assert!(status.peers >= 1, "b is connected to a");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never saw a's blocks; last status {status:?}\n{}",
            node_b.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
