//! The Solana probe against recorded answers from Solana's RPC documentation.

use std::collections::HashMap;

use chainfleet_chains::Adapter;
use chainfleet_spec::Chain;

use crate::support::{client, fixture, replay};

fn sol() -> Adapter {
    Adapter::for_chain(Chain::Solana)
}

fn calls(health: &str) -> HashMap<&'static str, serde_json::Value> {
    HashMap::from([
        (
            "getLatestBlockhash",
            fixture("solana/getLatestBlockhash.json"),
        ),
        ("getHealth", fixture(health)),
        ("getVersion", fixture("solana/getVersion.json")),
        ("getBlockTime", fixture("solana/getBlockTime.json")),
    ])
}

#[tokio::test]
async fn probe_reads_a_healthy_node() {
    let ep = replay(HashMap::new(), calls("solana/getHealth_ok.json")).await;
    let status = sol().probe(&client(), &ep).await.expect("probe");
    assert_eq!(status.height, 320_148_671);
    assert_eq!(
        status.best_hash,
        "HBVZtYyJnpeWNo3uDL5RfqAjdu5TWrRTcmaVk7sUDc2C"
    );
    assert_eq!(status.head_time, Some(1_574_721_591));
    assert_eq!(status.peers, 0);
    assert!(!status.syncing);
    assert_eq!(status.client_version, "solana-core 3.0.6");
}

#[tokio::test]
async fn a_node_behind_is_syncing() {
    let ep = replay(HashMap::new(), calls("solana/getHealth_behind.json")).await;
    let status = sol().probe(&client(), &ep).await.expect("probe");
    assert!(status.syncing);
    assert_eq!(status.height, 320_148_671);
}

#[tokio::test]
async fn a_missing_block_time_is_not_an_error() {
    let mut calls = calls("solana/getHealth_ok.json");
    calls.remove("getBlockTime");
    let ep = replay(HashMap::new(), calls).await;
    let status = sol().probe(&client(), &ep).await.expect("probe");
    assert_eq!(status.head_time, None);
}
