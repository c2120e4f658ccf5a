//! Producer failover with real litecoind nodes and embedded leases.

use std::time::{Duration, Instant};

use chainfleet_chains::{Adapter, RpcClient};
use chainfleet_spec::Chain;

use crate::fleet::{kill9, node, TestFleet};

const GROUP: &str = "instances:
  - name: ltc
    chain: litecoin
    replicas: 3
    role: producer
    production: {blockInterval: 300ms}
    producerGroup: ltc
producerGroups:
  ltc: {leaseTtl: 1500ms, maxLag: 2}
";

/// The active member and epoch, once a block of that epoch exists.
async fn active(fleet: &TestFleet, not: Option<&str>, min_epoch: u64) -> (String, u64) {
    let start = Instant::now();
    loop {
        let groups = fleet.controller.producer_groups();
        if let Some(group) = groups.first() {
            let member = group
                .members
                .iter()
                .find(|m| m.active)
                .map(|m| m.name.clone());
            if let Some(member) = member.filter(|m| Some(m.as_str()) != not) {
                if group.epoch >= min_epoch
                    && group.blocks_produced > 0
                    && group.watermark.is_some_and(|w| w.epoch == group.epoch)
                {
                    return (member, group.epoch);
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no active producer; groups: {groups:#?}\nevents: {:#?}",
            fleet.controller.events_after(0, 1000).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Epoch of every block from 1 to the tip, read from `reader`.
async fn epochs_along_chain(fleet: &TestFleet, reader: &str) -> Vec<u64> {
    let upstream = fleet
        .controller
        .upstreams()
        .borrow()
        .upstreams
        .iter()
        .find(|u| u.status.name == reader)
        .map(|u| u.endpoint.clone())
        .expect("reader endpoint");
    let rpc = RpcClient::new(Duration::from_secs(5)).expect("client");
    let adapter = Adapter::for_chain(Chain::Litecoin);
    let tip = adapter
        .probe(&rpc, &upstream)
        .await
        .expect("probe reader")
        .height;
    let mut epochs = Vec::new();
    for height in 1..=tip {
        let epoch = adapter
            .block_epoch(&rpc, &upstream, height)
            .await
            .expect("read block")
            .unwrap_or_else(|| panic!("block {height} carries no epoch"));
        epochs.push(epoch);
    }
    epochs
}

fn violations(epochs: &[u64]) -> usize {
    epochs.windows(2).filter(|w| w[1] < w[0]).count()
}

async fn wait_synced(fleet: &TestFleet, names: &[&str], above: u64) {
    fleet
        .wait_for("members synced", Duration::from_secs(60), |s| {
            let heights: Vec<Option<u64>> = names
                .iter()
                .map(|n| s.nodes.iter().find(|x| x.name == *n).and_then(|x| x.height))
                .collect();
            heights.iter().all(|h| h.is_some_and(|h| h > above))
                && heights.windows(2).all(|w| w[0] == w[1])
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_active_producer_hands_over_without_epoch_going_back() {
    let fleet = TestFleet::start(GROUP).await;
    let (first, epoch) = active(&fleet, None, 1).await;
    fleet
        .wait_for("a few blocks", Duration::from_secs(30), |s| {
            s.nodes.iter().all(|n| n.height.unwrap_or(0) >= 4)
        })
        .await;
    let pid = node(&fleet.controller.snapshot(), &first).pid.expect("pid");
    kill9(pid);
    let (second, new_epoch) = active(&fleet, Some(&first), epoch + 1).await;
    assert_ne!(second, first);
    assert!(new_epoch > epoch);
    let tip = node(&fleet.controller.snapshot(), &second)
        .height
        .unwrap_or(0);
    let others: Vec<&str> = ["ltc-0", "ltc-1", "ltc-2"]
        .into_iter()
        .filter(|n| *n != first)
        .collect();
    wait_synced(&fleet, &others, tip + 3).await;
    let reader = others
        .iter()
        .find(|n| **n != second)
        .copied()
        .unwrap_or(others[0]);
    let epochs = epochs_along_chain(&fleet, reader).await;
    assert_eq!(violations(&epochs), 0, "epochs went back: {epochs:?}");
    assert!(
        epochs.contains(&epoch) && epochs.contains(&new_epoch),
        "{epochs:?}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_producer_never_produces_again_after_it_wakes() {
    let fleet = TestFleet::start(GROUP).await;
    let (first, epoch) = active(&fleet, None, 1).await;
    fleet
        .wait_for("a few blocks", Duration::from_secs(30), |s| {
            s.nodes.iter().all(|n| n.height.unwrap_or(0) >= 4)
        })
        .await;
    let pid = node(&fleet.controller.snapshot(), &first).pid.expect("pid");
    let nix_pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(nix_pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let (second, new_epoch) = active(&fleet, Some(&first), epoch + 1).await;
    // Stay stopped for longer than the lease TTL, then wake.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    nix::sys::signal::kill(nix_pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let tip = node(&fleet.controller.snapshot(), &second)
        .height
        .unwrap_or(0);
    wait_synced(&fleet, &["ltc-0", "ltc-1", "ltc-2"], tip + 3).await;
    let epochs = epochs_along_chain(&fleet, &first).await;
    assert_eq!(violations(&epochs), 0, "epochs went back: {epochs:?}");
    let last_old = epochs
        .iter()
        .rposition(|e| *e == epoch)
        .expect("old epoch on chain");
    let first_new = epochs
        .iter()
        .position(|e| *e == new_epoch)
        .expect("new epoch on chain");
    assert!(
        last_old < first_new,
        "old epoch produced after the new one began: {epochs:?}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_fence_and_unfence() {
    let fleet = TestFleet::start(GROUP).await;
    let (first, epoch) = active(&fleet, None, 1).await;
    fleet
        .wait_for("members healthy", Duration::from_secs(30), |s| {
            s.nodes.iter().all(|n| n.state == "healthy")
        })
        .await;
    let target = ["ltc-0", "ltc-1", "ltc-2"]
        .into_iter()
        .find(|n| *n != first)
        .expect("another member");
    fleet
        .controller
        .promote("ltc", target)
        .await
        .expect("promote");
    let (now_active, new_epoch) = active(&fleet, Some(&first), epoch + 1).await;
    assert_eq!(now_active, target);
    assert_eq!(
        new_epoch,
        epoch + 1,
        "the handover takes exactly the next epoch"
    );

    let err = fleet
        .controller
        .promote("ltx", target)
        .await
        .expect_err("unknown group");
    assert!(err.to_string().contains("did you mean `ltc`?"), "{err}");

    fleet.controller.fence("ltc", true).await.expect("fence");
    fleet
        .wait_for("nobody active", Duration::from_secs(10), |_| {
            fleet
                .controller
                .producer_groups()
                .first()
                .is_some_and(|g| g.fenced && g.active.is_none())
        })
        .await;
    let height = node(&fleet.controller.snapshot(), target)
        .height
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = fleet.controller.snapshot();
    assert_eq!(
        node(&later, target).height.unwrap_or(0),
        height,
        "a fenced group produced"
    );
    fleet.controller.fence("ltc", false).await.expect("unfence");
    active(&fleet, None, new_epoch + 1).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_without_an_active_member_raises_an_alert_but_a_fenced_one_does_not() {
    let fleet = TestFleet::start(
        "instances:
  - name: dead
    chain: litecoin
    role: producer
    client: {binary: no-such-litecoind}
",
    )
    .await;
    let firing = |s: &chainfleet_control::FleetSnapshot| {
        s.alerts.iter().any(|a| {
            a.rule == "producerGroupInactive"
                && a.group.as_deref() == Some("dead")
                && format!("{:?}", a.status).eq_ignore_ascii_case("firing")
        })
    };
    fleet
        .wait_for("the inactive-group alert", Duration::from_secs(30), firing)
        .await;
    fleet.controller.fence("dead", true).await.expect("fence");
    fleet
        .wait_for(
            "the alert to resolve once fenced",
            Duration::from_secs(30),
            |s| !firing(s),
        )
        .await;
    fleet.stop().await;
}
