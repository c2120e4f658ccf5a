//! Benchmark harness: a gateway in front of one fixed upstream (e.g. nginx
//! returning a constant JSON-RPC body), with auth, policy, limits and metrics on.
//!
//! Usage: `bench_gateway LISTEN UPSTREAM_PORT STATE_DIR [ANVIL_PORT [LTC_PORT LTC_USER LTC_PASSWORD]]`
//! — prints one API key per instance on stdout (`bench`, `anvil`, `ltc`), then
//! serves until killed. The fixed upstream is instance `bench`; real anvil and
//! litecoind nodes, when given, are instances `anvil` and `ltc` (same policy).
//!
//! `bench_gateway ceiling LISTEN` serves a fixed JSON-RPC body with hyper and
//! nothing else: the fastest any Rust gateway could answer on this machine.
//! Used by `scripts/bench-gateway.sh`.

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
    if let [_, mode, listen] = args.as_slice() {
        if mode == "ceiling" {
            return ceiling(listen);
        }
    }
    let usage = "usage: bench_gateway LISTEN UPSTREAM_PORT STATE_DIR [ANVIL_PORT [LTC_PORT LTC_USER LTC_PASSWORD]]";
    let (listen, port, state_dir, rest) = match args.as_slice() {
        [_, listen, port, state_dir, rest @ ..] => (listen, port, state_dir, rest),
        _ => return Err(usage.into()),
    };
    let anvil_port = match rest.first() {
        Some(port) => Some(port.parse::<u16>()?),
        None => None,
    };
    let litecoin = match rest.get(1..) {
        Some([port, user, password]) => {
            Some((port.parse::<u16>()?, user.clone(), password.clone()))
        }
        Some([]) | None => None,
        Some(_) => return Err(usage.into()),
    };
    let port: u16 = port.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let node = |instance: &str, chain: Chain, port: u16| Upstream {
            status: NodeStatus {
                name: format!("{instance}-0"),
                instance: instance.into(),
                state: "healthy".into(),
                height: Some(1),
                lag: Some(0),
                rpc_port: port,
                ..NodeStatus::default()
            },
            chain,
            endpoint: Endpoint::local(port),
        };
        let mut nodes = vec![node("bench", Chain::Ethereum, port)];
        nodes.extend(anvil_port.map(|port| node("anvil", Chain::Ethereum, port)));
        if let Some((port, user, password)) = litecoin {
            let mut ltc = node("ltc", Chain::Litecoin, port);
            ltc.endpoint.basic_auth = Some((user, password));
            nodes.push(ltc);
        }
        let (_upstreams_tx, upstreams) = watch::channel(Arc::new(UpstreamSnapshot {
            generated_ms: 1,
            upstreams: nodes,
        }));
        let access = Access {
            allow: vec!["read".into()],
            deny: vec!["admin".into(), "wallet".into()],
            key_rps: 10_000_000,
            key_burst: 10_000_000,
            key_concurrency: 100_000,
            ..Access::default()
        };
        let (_access_tx, access) = watch::channel(Arc::new(HashMap::from([
            ("bench".to_string(), access.clone()),
            ("anvil".to_string(), access.clone()),
            ("ltc".to_string(), access),
        ])));
        let options = GatewayOptions::new(state_dir);
        let mut store = KeyStore::open(&options.state_dir)?;
        let mut keys = Vec::new();
        for instance in ["bench", "anvil", "ltc"] {
            let new = NewKey {
                instance: instance.into(),
                ..NewKey::default()
            };
            keys.push(store.create(new, |_| true)?.key);
        }
        let gateway = Gateway::start(options, upstreams, access)?;
        let listener = tokio::net::TcpListener::bind(listen.as_str()).await?;
        // One line per instance: `bench`, `anvil`, `ltc`.
        println!("{}", keys.join("\n"));
        let (_stop, stop) = watch::channel(false);
        gateway.serve(listener, stop).await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// Answer every request with a fixed body on the gateway's HTTP/1 settings.
fn ceiling(listen: &str) -> Result<(), Box<dyn std::error::Error>> {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":"0x7a69"}"#;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("ready");
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    let mut response =
                        hyper::Response::new(Full::new(bytes::Bytes::from_static(BODY)));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
