//! CPU cost of health evaluation and alerting per probe round, over
//! synthetic snapshots of N nodes (default 1,000) in groups of 10.
//!
//! Run: `cargo run --release -p chainfleet-control --example alerts_bench -- 1000 200`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chainfleet_chains::ProbeStatus;
use chainfleet_control::alerts::{conditions, AlertEngine, NodeFacts};
use chainfleet_control::health::{HealthEngine, NodeInput};
use chainfleet_spec::alerting::Alerting;
use chainfleet_spec::{Chain, Network};

fn cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    match usage {
        Ok(u) => {
            let user = Duration::from_micros(
                u.user_time().tv_sec() as u64 * 1_000_000 + u.user_time().tv_usec() as u64,
            );
            let system = Duration::from_micros(
                u.system_time().tv_sec() as u64 * 1_000_000 + u.system_time().tv_usec() as u64,
            );
            user + system
        }
        Err(_) => Duration::ZERO,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let hash = |h: u64, fork: bool| format!("{:064x}", h * 2 + u64::from(fork));
    let mut health = HealthEngine::new();
    let mut alerts = AlertEngine::new();
    let alerting = Alerting::default();
    let groups = BTreeMap::new();
    let start = Instant::now();
    let mut per_round = Vec::new();
    let mut firing = 0;
    for round in 0..rounds {
        let height = 1000 + round / 3;
        let nodes: Vec<NodeInput> = (0..count)
            .map(|i| {
                // Every 10th node lags by 5, every 50th is forked, every 100th is down.
                let lag = if i % 10 == 3 { 5 } else { 0 };
                let down = i % 100 == 7;
                NodeInput {
                    name: format!("n{i}-0"),
                    instance: format!("n{i}"),
                    chain: Chain::Litecoin,
                    network: Network::Regtest,
                    group: i / 10,
                    state: if down { "unreachable" } else { "healthy" }.into(),
                    probe: (!down).then(|| ProbeStatus {
                        height: height - lag,
                        best_hash: hash(height - lag, i % 50 == 5),
                        head_time: None,
                        peers: 8,
                        syncing: false,
                        client_version: "bench".into(),
                    }),
                    local_interval: Some(Duration::from_secs(5)),
                    data_dir: None,
                }
            })
            .collect();
        let cpu = cpu_time();
        // Synthetic answers for the hash queries (same chain unless forked).
        let queries = health.fork_queries(&nodes, &[]);
        let answers: Vec<_> = queries
            .into_iter()
            .map(|q| {
                let fork =
                    matches!(q.source, chainfleet_control::health::Source::Node(i) if i % 50 == 5);
                let h = hash(q.height, fork);
                (q, h)
            })
            .collect();
        health.remember_hashes(&nodes, &[], answers);
        let assessed = health.assess(&nodes, &[], Instant::now());
        let facts: Vec<NodeFacts<'_>> = nodes
            .iter()
            .zip(&assessed)
            .map(|(n, h)| NodeFacts {
                name: &n.name,
                instance: &n.instance,
                chain: n.chain.as_str(),
                local: true,
                health: h,
            })
            .collect();
        let found = conditions(&facts, &groups, &alerting);
        let out = alerts.evaluate(found, Instant::now(), 0);
        firing += out.changed.len();
        per_round.push(cpu_time().saturating_sub(cpu));
    }
    per_round.sort();
    let total: Duration = per_round.iter().sum();
    let median = per_round[per_round.len() / 2];
    let p99 = per_round[(per_round.len() * 99 / 100).min(per_round.len() - 1)];
    println!(
        "nodes={count} rounds={rounds} cpu_per_round_mean_ms={:.3} median_ms={:.3} p99_ms={:.3} per_node_us={:.2} alert_transitions={firing} wall_s={:.1}",
        total.as_secs_f64() * 1000.0 / rounds as f64,
        median.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        total.as_secs_f64() * 1e6 / rounds as f64 / count as f64,
        start.elapsed().as_secs_f64()
    );
}
