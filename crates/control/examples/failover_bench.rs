//! Failover benchmark and chaos run with real litecoind nodes and embedded leases.
//!
//! `failover_bench takeover ROUNDS`: kill -9 the active producer ROUNDS times;
//! report the time from the kill to the first block of the next epoch
//! (median, max) and epoch violations along the chain.
//! `failover_bench chaos ROUNDS [SEED]`: each round does a random fault: kill -9
//! or SIGSTOP (1-4 s) of the active producer, a network partition of the
//! active producer (1-4 s), kill -9 of a standby, or a promotion; then
//! reports rounds, takeover times and violations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainfleet_chains::{Adapter, RpcClient};
use chainfleet_control::{Controller, ControllerOptions};
use chainfleet_runtime::ProcessRuntime;
use chainfleet_spec::Chain;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const MANIFEST: &str = "apiVersion: chainfleet.dev/v1alpha1
kind: Fleet
settings: {probeInterval: 500ms}
producerGroups:
  ltc: {maxLag: 2}
instances:
  - name: ltc
    chain: litecoin
    replicas: 3
    role: producer
    producerGroup: ltc
    production: {blockInterval: 1s}
";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

fn active(controller: &Controller) -> Option<(String, u64)> {
    let group = controller.producer_groups().into_iter().next()?;
    let member = group.members.iter().find(|m| m.active)?;
    Some((member.name.clone(), group.epoch))
}

fn pid_of(controller: &Controller, name: &str) -> Option<u32> {
    controller
        .snapshot()
        .nodes
        .iter()
        .find(|n| n.name == name)?
        .pid
}

/// Wait for a first block of an epoch above `epoch`; return its event time (Unix ms).
async fn first_block_after(
    controller: &Controller,
    epoch: u64,
    after_id: i64,
    limit: Duration,
) -> Option<(i64, u64)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        for event in controller
            .events_after(after_id, 10_000)
            .unwrap_or_default()
        {
            if event.kind == "first-block" {
                let new_epoch = event
                    .message
                    .split("epoch ")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .and_then(|s| s.parse::<u64>().ok());
                if let Some(e) = new_epoch.filter(|e| *e > epoch) {
                    return Some((event.time_ms, e));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn all_healthy(controller: &Controller, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let snapshot = controller.snapshot();
        let heights: Vec<Option<u64>> = snapshot.nodes.iter().map(|n| n.height).collect();
        if snapshot.nodes.len() == 3
            && snapshot.nodes.iter().all(|n| n.state == "healthy")
            && heights.windows(2).all(|w| w[0] == w[1])
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn violations(controller: &Controller) -> (usize, usize) {
    let rpc = RpcClient::new(Duration::from_secs(5)).expect("client");
    let adapter = Adapter::for_chain(Chain::Litecoin);
    let upstreams = controller.upstreams().borrow().clone();
    let mut worst = 0;
    let mut blocks = 0;
    for upstream in &upstreams.upstreams {
        let Ok(status) = adapter.probe(&rpc, &upstream.endpoint).await else {
            continue;
        };
        let mut epochs = Vec::new();
        for height in 1..=status.height {
            if let Ok(Some(epoch)) = adapter.block_epoch(&rpc, &upstream.endpoint, height).await {
                epochs.push(epoch);
            }
        }
        blocks = blocks.max(epochs.len());
        worst = worst.max(epochs.windows(2).filter(|w| w[1] < w[0]).count());
    }
    (worst, blocks)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "takeover".into());
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let seed: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| now_ms() as u64 | 1);

    let dir = chainfleet_testkit::temp_dir();
    let controller = Controller::open(
        ControllerOptions::new(dir.path()),
        Arc::new(ProcessRuntime::new()),
    )
    .expect("open controller");
    controller
        .apply(chainfleet_spec::parse(MANIFEST, "bench.yaml").expect("manifest"))
        .expect("apply");
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let loops = {
        let c = controller.clone();
        tokio::spawn(async move { c.run(rx).await })
    };
    assert!(
        all_healthy(&controller, Duration::from_secs(60)).await,
        "fleet did not come up"
    );

    let mut rng = Rng(seed);
    let mut takeovers: Vec<i64> = Vec::new();
    let mut failed_rounds = 0;
    println!("mode={mode} rounds={rounds} seed={seed} ttl=3s block_interval=1s");
    for round in 1..=rounds {
        let mut current = None;
        for _ in 0..300 {
            current = active(&controller).filter(|_| {
                controller
                    .producer_groups()
                    .first()
                    .is_some_and(|g| g.blocks_produced > 0)
            });
            if current.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Some((member, epoch)) = current else {
            failed_rounds += 1;
            println!("round {round}: no active producer within 30 s");
            continue;
        };
        let after_id = controller
            .events_after(0, 1_000_000)
            .unwrap_or_default()
            .last()
            .map(|e| e.id)
            .unwrap_or(0);
        let action = if mode == "chaos" { rng.next() % 5 } else { 0 };
        let pid = pid_of(&controller, &member).unwrap_or(0);
        let t0 = now_ms();
        let description = match action {
            0 => {
                signal(pid, Signal::SIGKILL);
                format!("kill -9 active {member}")
            }
            1 => {
                let pause = 1000 + rng.next() % 3000;
                signal(pid, Signal::SIGSTOP);
                let c = controller.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    signal(pid, Signal::SIGCONT);
                    drop(c);
                });
                format!("SIGSTOP active {member} for {pause} ms")
            }
            2 => {
                let standby = ["ltc-0", "ltc-1", "ltc-2"]
                    .into_iter()
                    .find(|n| *n != member)
                    .unwrap_or("ltc-0");
                if let Some(p) = pid_of(&controller, standby) {
                    signal(p, Signal::SIGKILL);
                }
                format!("kill -9 standby {standby}")
            }
            3 => {
                // Partition the active node from its peers for 1-4 s; it keeps the lease.
                let pause = 1000 + rng.next() % 3000;
                let upstream = controller
                    .upstreams()
                    .borrow()
                    .upstreams
                    .iter()
                    .find(|u| u.status.name == member)
                    .map(|u| u.endpoint.clone());
                if let Some(endpoint) = upstream {
                    let rpc = RpcClient::new(Duration::from_secs(5)).expect("client");
                    let _ = rpc
                        .call(
                            &endpoint,
                            "/",
                            "setnetworkactive",
                            serde_json::json!([false]),
                        )
                        .await;
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                        let _ = rpc
                            .call(
                                &endpoint,
                                "/",
                                "setnetworkactive",
                                serde_json::json!([true]),
                            )
                            .await;
                    });
                }
                format!("partition active {member} for {pause} ms")
            }
            _ => {
                let target = ["ltc-0", "ltc-1", "ltc-2"][(rng.next() % 3) as usize];
                let result = controller.promote("ltc", target).await;
                format!(
                    "promote {target}: {}",
                    result
                        .map(|_| "ok".to_string())
                        .unwrap_or_else(|e| e.to_string())
                )
            }
        };
        let expects_takeover = action == 0
            || action == 1
            || description.ends_with(": ok") && !description.contains(&member);
        if expects_takeover {
            match first_block_after(&controller, epoch, after_id, Duration::from_secs(20)).await {
                Some((at, new_epoch)) => {
                    takeovers.push(at - t0);
                    println!("round {round}: {description}: epoch {epoch} -> {new_epoch}, first block after {} ms", at - t0);
                }
                None if action == 1
                    && active(&controller).is_some_and(|(m, e)| m == member && e == epoch) =>
                {
                    // The pause ended before the producer was judged down: no takeover needed.
                    println!("round {round}: {description}: rode through under epoch {epoch}");
                }
                None => {
                    failed_rounds += 1;
                    let group = controller.producer_groups().into_iter().next();
                    println!(
                        "round {round}: {description}: NO takeover within 20 s (epoch {:?}, watermark {:?}, last problem {:?})",
                        group.as_ref().map(|g| g.epoch),
                        group.as_ref().and_then(|g| g.watermark),
                        group.as_ref().and_then(|g| g.last_error.clone())
                    );
                }
            }
        } else {
            println!("round {round}: {description}");
        }
        if !all_healthy(&controller, Duration::from_secs(60)).await {
            println!("round {round}: fleet not healthy again within 60 s");
        }
    }
    // What kept the group from producing, most frequent first.
    let mut reasons: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for event in controller.events_after(0, 1_000_000).unwrap_or_default() {
        if matches!(event.kind.as_str(), "producer-error" | "step-down") {
            let reason: String = event
                .message
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .collect();
            *reasons.entry(reason).or_default() += 1;
        }
    }
    let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (reason, count) in reasons.iter().take(8) {
        println!("{count:>5} x {reason}");
    }
    let (violations, blocks) = violations(&controller).await;
    takeovers.sort();
    let median = takeovers.get(takeovers.len() / 2).copied().unwrap_or(0);
    let max = takeovers.last().copied().unwrap_or(0);
    println!(
        "rounds={rounds} takeovers={} failed_rounds={failed_rounds} takeover_ms_median={median} takeover_ms_max={max} blocks_checked={blocks} epoch_violations={violations}",
        takeovers.len()
    );
    let _ = shutdown.send(true);
    let _ = loops.await;
    let _ = controller.stop_all().await;
}
