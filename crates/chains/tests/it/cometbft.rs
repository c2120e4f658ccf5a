//! The CometBFT probe against recorded real `/status` and `/net_info` answers.

use std::collections::HashMap;

use chainfleet_chains::{Adapter, ChainError};
use chainfleet_spec::Chain;
use serde_json::json;

use crate::support::{client, fixture, replay};

fn cosmos() -> Adapter {
    Adapter::for_chain(Chain::Cosmos)
}

#[tokio::test]
async fn probe_reads_a_recorded_kvstore_node() {
    let ep = replay(
        HashMap::from([
            ("/status", fixture("cometbft/status_v0_38_kvstore.json")),
            ("/net_info", fixture("cometbft/net_info_v0_38_kvstore.json")),
        ]),
        HashMap::new(),
    )
    .await;
    let status = cosmos().probe(&client(), &ep).await.expect("probe");
    assert_eq!(status.height, 232);
    assert_eq!(
        status.best_hash,
        "B647CF507155BADAC86FADD00E38B065C63A84953A847AA9FA99DB1CEE6C4DA9"
    );
    // 2023-05-17T14:14:48.530153458Z
    assert_eq!(status.head_time, Some(1_684_332_888));
    assert_eq!(status.peers, 0);
    assert!(!status.syncing);
    assert_eq!(status.client_version, "cometbft 0.38.0-alpha.1");
}

#[tokio::test]
async fn probe_reads_peers_and_catching_up() {
    let mut syncing = fixture("cometbft/status_v0_38_6_ignite.json");
    syncing["result"]["sync_info"]["catching_up"] = json!(true);
    let ep = replay(
        HashMap::from([
            ("/status", syncing),
            ("/net_info", fixture("cometbft/net_info_cosmoshub_2.json")),
        ]),
        HashMap::new(),
    )
    .await;
    let status = cosmos().probe(&client(), &ep).await.expect("probe");
    assert_eq!(status.height, 26083);
    assert_eq!(status.head_time, Some(1_718_114_877));
    assert_eq!(status.peers, 2);
    assert!(status.syncing);
}

#[tokio::test]
async fn a_node_without_net_info_fails_the_probe() {
    let ep = replay(
        HashMap::from([("/status", fixture("cometbft/status_v0_38_kvstore.json"))]),
        HashMap::new(),
    )
    .await;
    let err = cosmos()
        .probe(&client(), &ep)
        .await
        .expect_err("404 on /net_info");
    assert!(matches!(err, ChainError::BadResponse { .. }), "{err}");
}
