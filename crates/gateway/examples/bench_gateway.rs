//! Benchmark harness: a gateway in front of one fixed upstream (e.g. nginx
//! returning a constant JSON-RPC body), with auth, policy, limits and metrics on.
//!
//! Usage: `bench_gateway LISTEN UPSTREAM_PORT STATE_DIR` — prints one API key on
//! stdout, then serves until killed. Used by `scripts/bench-gateway.sh`.

use std::collections::HashMap;
use std::sync::Arc;

use chainfleet_chains::Endpoint;
use chainfleet_control::{NodeStatus, Upstream, UpstreamSnapshot};
use chainfleet_gateway::keys::{KeyStore, NewKey};
use chainfleet_gateway::{Gateway, GatewayOptions};
use chainfleet_spec::access::Access;
use chainfleet_spec::Chain;
use tokio::sync::watch;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, port, state_dir] = args.as_slice() else {
        return Err("usage: bench_gateway LISTEN UPSTREAM_PORT STATE_DIR".into());
    };
    let port: u16 = port.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let upstream = Upstream {
            status: NodeStatus {
                name: "bench-0".into(),
                instance: "bench".into(),
                state: "healthy".into(),
                height: Some(1),
                lag: Some(0),
                rpc_port: port,
                ..NodeStatus::default()
            },
            chain: Chain::Ethereum,
            endpoint: Endpoint::local(port),
        };
        let (_upstreams_tx, upstreams) = watch::channel(Arc::new(UpstreamSnapshot {
            generated_ms: 1,
            upstreams: vec![upstream],
        }));
        let access = Access {
            allow: vec!["read".into()],
            deny: vec!["admin".into(), "wallet".into()],
            key_rps: 10_000_000,
            key_burst: 10_000_000,
            key_concurrency: 100_000,
            ..Access::default()
        };
        let (_access_tx, access) =
            watch::channel(Arc::new(HashMap::from([("bench".to_string(), access)])));
        let options = GatewayOptions::new(state_dir);
        let mut store = KeyStore::open(&options.state_dir)?;
        let created = store.create(
            NewKey {
                instance: "bench".into(),
                ..NewKey::default()
            },
            |_| true,
        )?;
        let gateway = Gateway::start(options, upstreams, access)?;
        let listener = tokio::net::TcpListener::bind(listen.as_str()).await?;
        println!("{}", created.key);
        let (_stop, stop) = watch::channel(false);
        gateway.serve(listener, stop).await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
