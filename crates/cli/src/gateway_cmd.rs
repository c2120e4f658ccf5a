//! `chainfleet gateway` (the RPC gateway alone) and `chainfleet keys ...`
//! (API keys of the gateway), plus the gateway `up` starts beside the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chainfleet_control::Controller;
use chainfleet_gateway::keys::{CreatedKey, KeyInfo, KeyStore, NewKey};
use chainfleet_gateway::{Gateway, GatewayOptions};
use clap::Subcommand;
use tokio::sync::watch;

use crate::table;

/// Default address of the gateway.
pub const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:7781";

/// gateway subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Run the RPC gateway alone, in front of the fleet a control plane keeps in a state dir.
    #[command(
        after_help = "Examples:\n  chainfleet gateway --state-dir .chainfleet\n  chainfleet gateway --listen 127.0.0.1:8545 --cache-mb 256\n\nClients call POST http://LISTEN/rpc/INSTANCE with `Authorization: Bearer KEY`\n(or `X-Api-Key: KEY`, or /rpc/INSTANCE/KEY). EVM instances also take a WebSocket\non ws://LISTEN/rpc/INSTANCE/KEY for eth_subscribe. Metrics: GET http://LISTEN/metrics.\n`chainfleet up` already runs a gateway on 127.0.0.1:7781 (CHAINFLEET_GATEWAY_LISTEN, `off` to disable)."
    )]
    Gateway {
        /// State directory of the control plane (its upstreams, manifest and keys).
        #[arg(long, env = "CHAINFLEET_STATE_DIR", default_value = ".chainfleet")]
        state_dir: PathBuf,
        /// Address to serve on.
        #[arg(long, default_value = DEFAULT_GATEWAY_LISTEN)]
        listen: SocketAddr,
        /// Size of the cache of immutable answers, in MiB (0 disables it).
        #[arg(long, default_value_t = 64)]
        cache_mb: u64,
        /// Most open client connections.
        #[arg(long, default_value_t = 10_000)]
        max_connections: usize,
        /// How long a node may take to answer, e.g. `10s`.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        upstream_timeout: Duration,
    },
    /// Create, list and revoke the gateway's API keys.
    #[command(
        after_help = "Examples:\n  chainfleet keys create --instance ltc --allow read --deny wallet --rps 50\n  chainfleet keys list\n  chainfleet keys revoke 1a2b3c4d"
    )]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// Where key commands act.
#[derive(clap::Args, Clone)]
pub struct KeyTarget {
    /// URL of the control plane's API.
    #[arg(long, env = "CHAINFLEET_API", default_value = "http://127.0.0.1:7780")]
    api: String,
    /// Act on this state dir's key database directly instead of through the API.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// `keys` subcommands.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and never again.
    #[command(
        after_help = "Examples:\n  chainfleet keys create --instance ltc\n  chainfleet keys create --instance eth --allow read --allow eth_sendRawTransaction --deny debug_traceTransaction --rps 50 --burst 100\n  chainfleet keys create --instance ltc --cidr 10.0.0.0/8 --expires 30d --label alice"
    )]
    Create {
        /// The instance the key is for.
        #[arg(long)]
        instance: String,
        /// Allowed method class (read, write, admin, wallet, mining, network) or method name; repeatable. Default: read.
        #[arg(long)]
        allow: Vec<String>,
        /// Denied method class or name; repeatable. Deny wins.
        #[arg(long)]
        deny: Vec<String>,
        /// Requests per second (default: the instance's access.keyRps).
        #[arg(long)]
        rps: Option<u32>,
        /// Burst (default: the instance's access.keyBurst).
        #[arg(long)]
        burst: Option<u32>,
        /// Concurrent requests (default: the instance's access.keyConcurrency).
        #[arg(long)]
        concurrency: Option<u32>,
        /// Client network allowed to use the key, e.g. 10.0.0.0/8; repeatable. Default: any.
        #[arg(long)]
        cidr: Vec<String>,
        /// Lifetime, e.g. `30d` or `12h`. Default: no expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// Who the key is for.
        #[arg(long, default_value = "")]
        label: String,
        /// Print the key and its settings as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: KeyTarget,
    },
    /// List keys (never the keys themselves).
    #[command(after_help = "Examples:\n  chainfleet keys list\n  chainfleet keys list --json")]
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Revoke a key by id; gateways stop accepting it within a second.
    #[command(after_help = "Example:\n  chainfleet keys revoke 1a2b3c4d")]
    Revoke {
        /// The key's id (from `keys list`).
        id: String,
        #[command(flatten)]
        target: KeyTarget,
    },
}

/// Run one gateway subcommand.
pub async fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Gateway {
            state_dir,
            listen,
            cache_mb,
            max_connections,
            upstream_timeout,
        } => {
            let mut options = GatewayOptions::new(&state_dir);
            options.cache_mb = cache_mb;
            options.max_connections = max_connections;
            options.upstream_timeout = upstream_timeout;
            serve_standalone(options, listen).await
        }
        Commands::Keys { command } => keys(command).await,
    }
}

async fn serve_standalone(options: GatewayOptions, listen: SocketAddr) -> Result<()> {
    let (upstreams, access) =
        chainfleet_gateway::watch_state_dir(&options.state_dir, Duration::from_secs(1))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; pick another with --listen"))?;
    let gateway = Gateway::start(options.clone(), upstreams, access)?;
    eprintln!(
        "chainfleet: gateway on http://{listen}/rpc/INSTANCE for state dir {} (instances: {}). Ctrl-C stops it.",
        options.state_dir.display(),
        gateway.instances().join(", ")
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let server = {
        let gateway = gateway.clone();
        tokio::spawn(async move { gateway.serve(listener, shutdown_rx).await })
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

/// Start the gateway beside a control plane (`chainfleet up`). It listens on
/// `CHAINFLEET_GATEWAY_LISTEN` (default 127.0.0.1:7781; `off` disables it).
/// A gateway that cannot start is reported and skipped: the fleet still runs.
pub async fn start_with_controller(
    controller: &Controller,
    setting: &str,
    shutdown: watch::Receiver<bool>,
) {
    if setting == "off" {
        return;
    }
    let listen: SocketAddr = match setting.parse() {
        Ok(listen) => listen,
        Err(err) => {
            eprintln!("chainfleet: --gateway-listen `{setting}` is not an address ({err}); the gateway is off");
            return;
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("chainfleet: the gateway cannot listen on {listen} ({err}); it is off. Pick another with --gateway-listen");
            return;
        }
    };
    let access = {
        let controller = controller.clone();
        chainfleet_gateway::watch_manifest(
            move || controller.manifest_text(),
            Duration::from_secs(1),
        )
    };
    let options = GatewayOptions::new(controller.state_dir());
    match Gateway::start(options, controller.upstreams(), access) {
        Ok(gateway) => {
            eprintln!("chainfleet: RPC gateway on http://{listen}/rpc/INSTANCE (keys: `chainfleet keys create --instance NAME`)");
            tokio::spawn(async move { gateway.serve(listener, shutdown).await });
        }
        Err(err) => eprintln!("chainfleet: the gateway did not start: {err}"),
    }
}

async fn keys(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Create {
            instance,
            allow,
            deny,
            rps,
            burst,
            concurrency,
            cidr,
            expires,
            label,
            json,
            target,
        } => {
            let new = NewKey {
                instance,
                label,
                allow,
                deny,
                rps,
                burst,
                concurrency,
                cidrs: cidr,
                expires_in_seconds: expires.map(|d| d.as_secs().max(1)),
            };
            let created: CreatedKey = match &target.state_dir {
                Some(dir) => {
                    let mut store = KeyStore::open(dir)?;
                    store.create(new, |_| true)?
                }
                None => {
                    let response = http()?
                        .post(format!("{}/v1/keys", base(&target)))
                        .json(&new)
                        .send()
                        .await
                        .map_err(|err| unreachable(&target, err))?;
                    parse(response).await?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!("{}", created.key);
                eprintln!(
                    "key {} for instance `{}` (allow: {}; deny: {}). This is the only time the key is shown.",
                    created.info.id,
                    created.info.instance,
                    created.info.allow.join(", "),
                    if created.info.deny.is_empty() { "-".to_string() } else { created.info.deny.join(", ") }
                );
            }
            Ok(())
        }
        KeysCommand::List { json, target } => {
            let list: Vec<KeyInfo> = match &target.state_dir {
                Some(dir) => KeyStore::open(dir)?.list()?,
                None => {
                    let response = http()?
                        .get(format!("{}/v1/keys", base(&target)))
                        .send()
                        .await
                        .map_err(|err| unreachable(&target, err))?;
                    parse(response).await?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list.iter().map(row).collect();
            print!(
                "{}",
                render_table(
                    &[
                        "ID", "INSTANCE", "LABEL", "ALLOW", "DENY", "RPS", "CIDR", "EXPIRES",
                        "STATE"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        KeysCommand::Revoke { id, target } => {
            let revoked = match &target.state_dir {
                Some(dir) => KeyStore::open(dir)?.revoke(&id)?,
                None => {
                    let response = http()?
                        .delete(format!("{}/v1/keys/{id}", base(&target)))
                        .send()
                        .await
                        .map_err(|err| unreachable(&target, err))?;
                    if response.status() == reqwest::StatusCode::NOT_FOUND {
                        false
                    } else {
                        let _: serde_json::Value = parse(response).await?;
                        true
                    }
                }
            };
            if !revoked {
                bail!("no active key has id `{id}`; `chainfleet keys list` shows them");
            }
            println!("revoked key {id}");
            Ok(())
        }
    }
}

fn row(key: &KeyInfo) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let state = match (key.revoked_ms, key.expires_ms) {
        (Some(_), _) => "revoked",
        (None, Some(at)) if at <= now => "expired",
        _ => "active",
    };
    let or_dash = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    vec![
        key.id.clone(),
        key.instance.clone(),
        if key.label.is_empty() {
            "-".into()
        } else {
            key.label.clone()
        },
        or_dash(&key.allow),
        or_dash(&key.deny),
        key.rps
            .map(|r| r.to_string())
            .unwrap_or_else(|| "default".into()),
        or_dash(&key.cidrs),
        key.expires_ms
            .map(|at| {
                let seconds = (at - now) / 1000;
                if seconds <= 0 {
                    "past".into()
                } else {
                    format!("in {}", table::human_duration(seconds.unsigned_abs()))
                }
            })
            .unwrap_or_else(|| "never".into()),
        state.into(),
    ]
}

/// Columns padded to their widest cell.
fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .context("build the HTTP client")
}

fn base(target: &KeyTarget) -> String {
    target.api.trim_end_matches('/').to_string()
}

fn unreachable(target: &KeyTarget, err: reqwest::Error) -> anyhow::Error {
    if err.is_connect() {
        anyhow!(
            "no Chainfleet control plane answers at {}; start one with `chainfleet up`, or act on the key database directly with --state-dir DIR",
            target.api
        )
    } else {
        anyhow!(err).context("the key request failed")
    }
}

async fn parse<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let status = response.status();
    let text = response.text().await.context("read the API's answer")?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        bail!("{message}");
    }
    serde_json::from_str(&text).with_context(|| format!("unexpected answer from the API: {text}"))
}
