//! Probe-cost benchmark: one probe round over N registered endpoints, all
//! served by one real anvil (each endpoint on its own loopback address, so
//! each has its own keep-alive connection, as distinct nodes would).
//!
//! Run: `cargo run --release -p chainfleet-control --example probe_bench -- 1000 10`
//! Prints CPU time per probe (this process only) and each round's latency.

use std::time::{Duration, Instant};

use chainfleet_chains::{Adapter, Endpoint, RpcClient};
use chainfleet_spec::Chain;
use nix::sys::resource::{getrusage, UsageWho};

fn cpu_micros() -> i64 {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let total = |t: nix::sys::time::TimeVal| t.tv_sec() * 1_000_000 + t.tv_usec();
    total(usage.user_time()) + total(usage.system_time())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let endpoints: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    // Listen on all interfaces so 127.0.x.y all reach it; the machine has no other network.
    let port = chainfleet_testkit::free_port();
    let anvil = chainfleet_testkit::start(chainfleet_testkit::DaemonSpec {
        name: "anvil".into(),
        program: chainfleet_testkit::require_binary("anvil"),
        args: ["--host", "0.0.0.0", "--port", &port.to_string(), "--silent"]
            .map(String::from)
            .to_vec(),
        dir: chainfleet_testkit::temp_dir(),
        rpc_port: port,
        p2p_port: 0,
        rpc_user: String::new(),
        rpc_password: String::new(),
        ready: chainfleet_testkit::Readiness {
            path: "/",
            method: "eth_chainId",
        },
    })
    .await;
    let targets: Vec<Endpoint> = (0..endpoints)
        .map(|i| Endpoint {
            url: format!(
                "http://127.0.{}.{}:{}",
                i / 250,
                i % 250 + 1,
                anvil.rpc_port
            ),
            basic_auth: None,
        })
        .collect();
    let rpc = RpcClient::new(Duration::from_secs(5)).expect("client");
    let adapter = Adapter::for_chain(Chain::Ethereum);

    let round = |targets: Vec<Endpoint>| {
        let rpc = rpc.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for endpoint in targets {
                let rpc = rpc.clone();
                tasks.spawn(async move { adapter.probe(&rpc, &endpoint).await });
            }
            let mut failures = 0;
            while let Some(result) = tasks.join_next().await {
                if !matches!(result, Ok(Ok(_))) {
                    failures += 1;
                }
            }
            failures
        }
    };
    // Warm-up: open the connections once, as a long-running control plane has them open.
    let warm_failures = round(targets.clone()).await;
    println!("warm-up round: {warm_failures} failures of {endpoints}");

    let mut latencies = Vec::new();
    let cpu_before = cpu_micros();
    let mut failures = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        failures += round(targets.clone()).await;
        latencies.push(start.elapsed());
    }
    let cpu = cpu_micros() - cpu_before;
    latencies.sort();
    let probes = (endpoints * rounds) as f64;
    println!("endpoints={endpoints} rounds={rounds} failures={failures}");
    println!("cpu_per_probe_us={:.1}", cpu as f64 / probes);
    println!(
        "round_latency_ms median={:.1} max={:.1}",
        latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0
    );
}
