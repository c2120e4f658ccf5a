//! Time to detect each fault kind with real litecoind nodes at the default
//! settings (probe interval 2 s, producer block interval 5 s): median over
//! N runs (default 10) of down (SIGSTOP), stalled (follower cut off from
//! the network) and forked (a node cut off mines its own block).
//!
//! Run: `scripts/bench-alerts.sh` (or `cargo run --release -p chainfleet-control --example alerts_detect_bench -- 10`)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainfleet_control::alerts::AlertStatus;
use chainfleet_control::{Controller, ControllerOptions, FleetSnapshot};
use chainfleet_runtime::ProcessRuntime;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const MANIFEST: &str = "apiVersion: chainfleet.dev/v1alpha1
kind: Fleet
instances:
  - name: prod
    chain: litecoin
    role: producer
    production: {blockInterval: 5s}
    client: {args: ['-maxtipage=1000000000']}
  - name: fa
    chain: litecoin
    peers: [prod]
    client: {args: ['-maxtipage=1000000000']}
  - name: fb
    chain: litecoin
    peers: [prod, fa]
    client: {args: ['-maxtipage=1000000000']}
";

fn cli(state: &Path, node: &str, args: &[&str]) -> String {
    let dir = state.join("nodes").join(node);
    let output = std::process::Command::new("litecoin-cli")
        .arg(format!("-conf={}", dir.join("litecoin.conf").display()))
        .arg(format!("-datadir={}", dir.display()))
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("litecoin-cli: {err}"));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

async fn wait(
    controller: &Controller,
    limit: Duration,
    check: impl Fn(&FleetSnapshot) -> bool,
) -> Option<Instant> {
    let start = Instant::now();
    let mut rx = controller.snapshots();
    loop {
        if check(&rx.borrow_and_update()) {
            return Some(Instant::now());
        }
        if start.elapsed() > limit {
            return None;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
    }
}

fn firing(s: &FleetSnapshot, id: &str) -> bool {
    s.alerts
        .iter()
        .any(|a| a.id == id && a.status == AlertStatus::Firing)
}

fn height(s: &FleetSnapshot, node: &str) -> Option<u64> {
    s.nodes
        .iter()
        .find(|n| n.name == node)
        .and_then(|n| n.height)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let controller = Controller::open(
        ControllerOptions::new(&state),
        Arc::new(ProcessRuntime::new()),
    )
    .expect("open controller");
    controller
        .apply(chainfleet_spec::parse(MANIFEST, "bench.yaml").expect("manifest"))
        .expect("apply");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let loops = {
        let c = controller.clone();
        tokio::spawn(async move { c.run(rx).await })
    };
    wait(&controller, Duration::from_secs(120), |s| {
        s.nodes.len() == 3
            && s.nodes
                .iter()
                .all(|n| n.health == "healthy" && n.height.unwrap_or(0) >= 2)
    })
    .await
    .expect("fleet healthy");

    let (mut down, mut stalled, mut stalled_due, mut forked) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        // Down: freeze the producer.
        let pid = controller
            .snapshot()
            .nodes
            .iter()
            .find(|n| n.name == "prod-0")
            .and_then(|n| n.pid)
            .expect("pid");
        let t0 = Instant::now();
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
        let seen = wait(&controller, Duration::from_secs(30), |s| {
            firing(s, "nodeDown/prod-0")
        })
        .await;
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        if let Some(seen) = seen {
            down.push(seen.duration_since(t0).as_secs_f64());
        }
        wait(&controller, Duration::from_secs(30), |s| {
            !s.alerts.iter().any(|a| a.status == AlertStatus::Firing)
        })
        .await;

        // Stalled: right after fa's head moves, cut it off; its next block was due 5 s later.
        let before = height(&controller.snapshot(), "fa-0");
        let moved = wait(&controller, Duration::from_secs(30), |s| {
            height(s, "fa-0") != before
        })
        .await;
        cli(&state, "fa-0", &["setnetworkactive", "false"]);
        let t0 = moved.unwrap_or_else(Instant::now);
        if let Some(seen) = wait(&controller, Duration::from_secs(60), |s| {
            firing(s, "stalled/fa-0")
        })
        .await
        {
            stalled.push(seen.duration_since(t0).as_secs_f64());
            stalled_due.push(
                seen.duration_since(t0 + Duration::from_secs(5))
                    .as_secs_f64(),
            );
        }
        cli(&state, "fa-0", &["setnetworkactive", "true"]);
        wait(&controller, Duration::from_secs(60), |s| {
            !s.alerts.iter().any(|a| a.status == AlertStatus::Firing)
        })
        .await;

        // Start the fork from a steady state: fa connected to the producer
        // itself (not only through fb, which is about to leave; litecoind can
        // take a minute to retry an addnode peer on its own) and all at one height.
        if let Some(port) = controller
            .snapshot()
            .nodes
            .iter()
            .find(|n| n.name == "prod-0")
            .map(|n| n.p2p_port)
        {
            cli(
                &state,
                "fa-0",
                &["addnode", &format!("127.0.0.1:{port}"), "onetry"],
            );
        }
        wait(&controller, Duration::from_secs(120), |s| {
            let heights: Vec<Option<u64>> = s.nodes.iter().map(|n| n.height).collect();
            s.nodes
                .iter()
                .all(|n| n.peers.unwrap_or(0) >= if n.name == "fa-0" { 2 } else { 1 })
                && heights.windows(2).all(|w| w[0] == w[1])
        })
        .await;
        // Forked: fb leaves and mines its own block while the majority mines another.
        cli(&state, "fb-0", &["setnetworkactive", "false"]);
        wait(&controller, Duration::from_secs(30), |s| {
            s.nodes
                .iter()
                .find(|n| n.name == "fb-0")
                .and_then(|n| n.peers)
                == Some(0)
        })
        .await;
        let t0 = Instant::now();
        cli(&state, "fb-0", &["generatetodescriptor", "1", "raw(52)"]);
        cli(&state, "prod-0", &["generatetodescriptor", "2", "raw(51)"]);
        if let Some(seen) = wait(&controller, Duration::from_secs(30), |s| {
            firing(s, "forked/fb-0")
        })
        .await
        {
            forked.push(seen.duration_since(t0).as_secs_f64());
        }
        cli(&state, "fb-0", &["setnetworkactive", "true"]);
        wait(&controller, Duration::from_secs(60), |s| {
            !s.alerts.iter().any(|a| a.status == AlertStatus::Firing)
        })
        .await;
        eprintln!(
            "run {run}: down {:?} stalled {:?} forked {:?}",
            down.last(),
            stalled.last(),
            forked.last()
        );
    }
    println!(
        "runs={runs} down_median_s={:.2} (n={}) stalled_median_s={:.2} from head change, {:.2} from the missed block (n={}) forked_median_s={:.2} (n={})",
        median(down.clone()), down.len(), median(stalled.clone()), median(stalled_due.clone()), stalled.len(), median(forked.clone()), forked.len()
    );
    let _ = stop.send(true);
    let _ = loops.await;
    let _ = controller.stop_all().await;
}
