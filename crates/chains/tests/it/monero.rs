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
