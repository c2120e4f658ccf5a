//! The EVM adapter against a real anvil.

use std::time::Duration;

use chainfleet_chains::Adapter;
use chainfleet_spec::{Chain, Network};
use chainfleet_testkit::Readiness;
use serde_json::json;

use crate::support::{client, endpoint_of, layout, start_rendered};

fn eth() -> Adapter {
    Adapter::for_chain(Chain::Ethereum)
}

fn ready() -> Readiness {
    Readiness {
        path: "/",
        method: "eth_chainId",
    }
}

#[tokio::test]
async fn probe_reads_a_fresh_anvil() {
    let node = chainfleet_testkit::anvil().await;
    let status = eth()
        .probe(&client(), &endpoint_of(&node))
        .await
        .expect("probe anvil");
    let head = node
        .rpc("/", "eth_getBlockByNumber", json!(["latest", false]))
        .await;
    assert_eq!(status.height, 0);
    assert_eq!(json!(status.best_hash), head["hash"]);
    assert_eq!(
        status.head_time.map(|t| format!("{t:#x}")),
        head["timestamp"].as_str().map(str::to_string)
    );
    // anvil has no net_peerCount; the probe must still succeed.
    assert_eq!(status.peers, 0);
    assert!(!status.syncing);
    assert!(
        status.client_version.starts_with("anvil/"),
        "{}",
        status.client_version
    );
}

#[tokio::test]
async fn produce_increments_the_height() {
    let node = chainfleet_testkit::anvil().await;
    let (rpc, ep) = (client(), endpoint_of(&node));
    for expected in 1..=2u64 {
        let block = eth().produce(&rpc, &ep, None).await.expect("evm_mine");
        assert_eq!(block.height, Some(expected));
        let direct = node
            .rpc(
                "/",
                "eth_getBlockByNumber",
                json!([format!("{expected:#x}"), false]),
            )
            .await;
        assert_eq!(json!(block.hash), direct["hash"]);
    }
    assert_eq!(
        node.rpc("/", "eth_blockNumber", json!([])).await,
        json!("0x2")
    );
    let status = eth().probe(&rpc, &ep).await.expect("probe");
    assert_eq!(status.height, 2);
}

#[tokio::test]
async fn rendered_launch_starts_anvil_and_keeps_state_across_restarts() {
    let binary = chainfleet_testkit::require_binary("anvil");
    let dir = chainfleet_testkit::temp_dir();
    let l = layout(Chain::Ethereum, Network::Devnet, &binary, dir.path());
    let spec = eth().launch(&l).expect("render the launch");
    assert_eq!(spec.config_file, None);
    let node = start_rendered(&spec, &l, dir, ready()).await;
    let (rpc, ep) = (client(), eth().endpoint(&l));
    assert_eq!(
        node.rpc("/", "eth_chainId", json!([])).await,
        json!("0x7a69")
    );
    let mut last = None;
    for _ in 0..3 {
        last = Some(eth().produce(&rpc, &ep, None).await.expect("produce"));
    }
    let last = last.expect("three blocks");
    assert_eq!(last.height, Some(3));

    // SIGTERM is how the runtime stops EVM nodes; --state dumps on it.
    let (exit, dir) = node.terminate(Duration::from_secs(30)).await;
    assert!(exit.is_some(), "anvil did not exit on SIGTERM");
    assert!(
        dir.path().join("state.json").is_file(),
        "anvil wrote no state file"
    );
    let node = start_rendered(&spec, &l, dir, ready()).await;
    let status = eth()
        .probe(&rpc, &ep)
        .await
        .expect("probe the restarted node");
    assert_eq!(
        (status.height, status.best_hash.as_str()),
        (3, last.hash.as_str())
    );
    drop(node);
}
