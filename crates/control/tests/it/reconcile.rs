use std::time::Duration;

use crate::fleet::{kill9, litecoin_cli, mine, node, TestFleet};

const TWO_LITECOIN: &str = "instances:
  - name: ltc
    chain: litecoin
    replicas: 2
";

fn all_healthy_at(snapshot: &chainfleet_control::FleetSnapshot, height: u64) -> bool {
    !snapshot.nodes.is_empty()
        && snapshot
            .nodes
            .iter()
            .all(|n| n.state == "healthy" && n.height == Some(height))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_peer_share_blocks_and_report_true_heights() {
    let fleet = TestFleet::start(TWO_LITECOIN).await;
    let state = fleet.state_dir();
    fleet
        .wait_for(
            "both replicas up with a peer",
            Duration::from_secs(60),
            |s| s.nodes.len() == 2 && s.nodes.iter().all(|n| n.peers.unwrap_or(0) >= 1),
        )
        .await;
    mine(&state, "ltc-0", 3);
    let snapshot = fleet
        .wait_for("both at height 3", Duration::from_secs(30), |s| {
            all_healthy_at(s, 3)
        })
        .await;
    for name in ["ltc-0", "ltc-1"] {
        let status = node(&snapshot, name);
        assert_eq!(litecoin_cli(&state, name, &["getblockcount"]), "3");
        assert_eq!(
            status.best_hash.as_deref(),
            Some(litecoin_cli(&state, name, &["getbestblockhash"]).as_str())
        );
        assert_eq!(status.lag, Some(0));
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_restarted_and_catches_up() {
    let fleet = TestFleet::start(TWO_LITECOIN).await;
    let state = fleet.state_dir();
    let before = fleet
        .wait_for("both healthy", Duration::from_secs(60), |s| {
            s.nodes.len() == 2 && s.nodes.iter().all(|n| n.peers.unwrap_or(0) >= 1)
        })
        .await;
    let old_pid = node(&before, "ltc-1").pid.expect("pid");
    kill9(old_pid);
    fleet
        .wait_for("ltc-1 restarted", Duration::from_secs(30), |s| {
            let n = node(s, "ltc-1");
            n.pid.is_some_and(|p| p != old_pid) && n.restarts == 1
        })
        .await;
    mine(&state, "ltc-0", 2);
    let after = fleet
        .wait_for("ltc-1 back in sync", Duration::from_secs(60), |s| {
            all_healthy_at(s, 2)
        })
        .await;
    assert_eq!(
        node(&after, "ltc-1").best_hash,
        node(&after, "ltc-0").best_hash
    );
    let events = fleet.controller.events_after(0, 1000).expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "exited" && e.node.as_deref() == Some("ltc-1")),
        "no exit event: {events:#?}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_rolls_replicas_one_at_a_time_and_scales() {
    let fleet = TestFleet::start(TWO_LITECOIN).await;
    let before = fleet
        .wait_for("both healthy", Duration::from_secs(60), |s| {
            s.nodes.len() == 2 && s.nodes.iter().all(|n| n.state == "healthy")
        })
        .await;
    let old_pids: Vec<u32> = before.nodes.iter().filter_map(|n| n.pid).collect();
    let summary = fleet.apply(
        "instances:
  - name: ltc
    chain: litecoin
    replicas: 2
    client: {config: {maxconnections: \"20\"}}
  - name: extra
    chain: litecoin
",
    );
    assert_eq!(summary.changed, vec!["ltc-0", "ltc-1"]);
    assert_eq!(summary.added, vec!["extra-0"]);
    fleet
        .wait_for(
            "both restarted and healthy, extra up",
            Duration::from_secs(90),
            |s| {
                s.nodes.len() == 3
                    && s.nodes.iter().all(|n| n.state == "healthy")
                    && s.nodes
                        .iter()
                        .filter_map(|n| n.pid)
                        .all(|p| !old_pids.contains(&p))
            },
        )
        .await;
    // One at a time: the second update starts only after the first is healthy again.
    let events = fleet.controller.events_after(0, 1000).expect("events");
    let order: Vec<(String, String)> = events
        .iter()
        .filter(|e| {
            e.kind == "updating" || (e.kind == "healthy" && e.message.contains("after update"))
        })
        .map(|e| (e.kind.clone(), e.node.clone().unwrap_or_default()))
        .collect();
    assert_eq!(order.len(), 4, "{order:?}");
    assert_eq!(order[0].0, "updating");
    assert_eq!(
        order[1],
        ("healthy".to_string(), order[0].1.clone()),
        "{order:?}"
    );
    assert_eq!(order[2].0, "updating");
    assert_ne!(order[2].1, order[0].1);
    assert_eq!(
        order[3],
        ("healthy".to_string(), order[2].1.clone()),
        "{order:?}"
    );

    let summary = fleet.apply(
        "instances:
  - name: ltc
    chain: litecoin
    replicas: 1
    client: {config: {maxconnections: \"20\"}}
",
    );
    assert_eq!(summary.removed, vec!["extra-0", "ltc-1"]);
    fleet
        .wait_for("scaled down to one", Duration::from_secs(60), |s| {
            s.nodes.len() == 1
        })
        .await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nodes_show_why_in_status_and_events() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    let fleet = TestFleet::start(&format!(
        "instances:
  - name: nobin
    chain: litecoin
    client: {{binary: no-such-litecoind}}
  - name: badarg
    chain: litecoin
    client: {{args: [\"-no-such-option-xyz\"]}}
  - name: busy
    chain: litecoin
    ports: {{rpc: {busy_port}}}
"
    ))
    .await;
    let snapshot = fleet
        .wait_for("three failures explained", Duration::from_secs(60), |s| {
            if s.nodes.len() != 3 {
                return false;
            }
            let crashed = node(s, "badarg-0");
            node(s, "nobin-0").state == "failed"
                && node(s, "busy-0").state == "failed"
                && matches!(crashed.state.as_str(), "restarting" | "crash-looping")
                && !crashed.log_tail.is_empty()
        })
        .await;
    let nobin = node(&snapshot, "nobin-0")
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        nobin.contains("`no-such-litecoind` was not found"),
        "{nobin}"
    );
    let busy_error = node(&snapshot, "busy-0")
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        busy_error.contains(&format!(
            "rpc port {busy_port} is already in use by pid {}",
            std::process::id()
        )),
        "{busy_error}"
    );
    let tail = node(&snapshot, "badarg-0").log_tail.join("\n");
    assert!(
        tail.contains("no-such-option-xyz"),
        "log tail lacks the cause: {tail}"
    );
    drop(busy);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_producers_make_blocks_on_litecoin_and_anvil() {
    let anvil = chainfleet_testkit::require_binary("anvil");
    let fleet = TestFleet::start(&format!(
        "instances:
  - name: ltc
    chain: litecoin
    role: producer
    production: {{blockInterval: 500ms}}
  - name: eth
    chain: ethereum
    network: devnet
    client: {{binary: {}}}
    role: producer
    production: {{blockInterval: 500ms}}
",
        anvil.display()
    ))
    .await;
    fleet
        .wait_for("both chains grow", Duration::from_secs(60), |s| {
            s.nodes.len() == 2 && s.nodes.iter().all(|n| n.height.unwrap_or(0) >= 3)
        })
        .await;
    fleet.stop().await;
}
