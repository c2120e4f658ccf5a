//! `chainfleet`: the command line. Thin: argument parsing and wiring.

mod alerts_cmd;
mod client;
mod gateway_cmd;
mod producers_cmd;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chainfleet_control::{Controller, ControllerOptions};
use chainfleet_runtime::ProcessRuntime;
use clap::{Parser, Subcommand};
use tokio::sync::watch;

use client::ApiClient;

/// Default address of the control plane's HTTP API.
const DEFAULT_LISTEN: &str = "127.0.0.1:7780";

#[derive(Parser)]
#[command(
    name = "chainfleet",
    version,
    about = "Run, watch and serve a fleet of blockchain nodes from one manifest.",
    after_help = "Examples:\n  chainfleet validate -f examples/devnet.yaml\n  chainfleet up -f examples/devnet.yaml\n  chainfleet status\n  chainfleet logs ltc-producer-0 -f\n  chainfleet down"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the control plane's API is.
#[derive(clap::Args, Clone)]
pub struct ApiArgs {
    /// URL of the control plane's API.
    #[arg(long, env = "CHAINFLEET_API", default_value = "http://127.0.0.1:7780")]
    pub api: String,
}

#[derive(Subcommand)]
enum Command {
    /// Check a manifest and report every problem with its field, line and column.
    #[command(
        after_help = "Examples:\n  chainfleet validate -f examples/devnet.yaml\n  chainfleet validate -f fleet.yaml --json"
    )]
    Validate {
        /// The manifest file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the manifest's JSON Schema, for editors.
    #[command(after_help = "Example:\n  chainfleet schema > chainfleet.schema.json")]
    Schema,
    /// Run the control plane in the foreground; Ctrl-C stops the nodes cleanly.
    #[command(
        after_help = "Examples:\n  chainfleet up -f examples/devnet.yaml\n  chainfleet up -f fleet.yaml --state-dir /var/lib/chainfleet --listen 127.0.0.1:7780\n  chainfleet up            # resume the manifest stored in the state dir"
    )]
    Up {
        /// The manifest file (default: the one last applied in the state dir).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// State directory: database, node data and logs.
        #[arg(long, env = "CHAINFLEET_STATE_DIR", default_value = ".chainfleet")]
        state_dir: PathBuf,
        /// Address of the HTTP API.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Address of the RPC gateway, or `off`.
        #[arg(long, env = "CHAINFLEET_GATEWAY_LISTEN", default_value = gateway_cmd::DEFAULT_GATEWAY_LISTEN)]
        gateway_listen: String,
    },
    /// Change the running fleet to match a manifest.
    #[command(after_help = "Example:\n  chainfleet apply -f examples/devnet.yaml")]
    Apply {
        /// The manifest file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show every node: state, height, lag, peers, head age, pid, uptime.
    #[command(
        after_help = "Examples:\n  chainfleet status\n  chainfleet status --json | jq '.[] | {name, height}'"
    )]
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Print an array of node objects as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a node's log.
    #[command(
        after_help = "Examples:\n  chainfleet logs ltc-producer-0\n  chainfleet logs ltc-producer-0 -f --tail 20"
    )]
    Logs {
        /// Node name, as shown by `chainfleet status`.
        node: String,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Lines to show first.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show recorded events (starts, exits, adoptions, applies).
    #[command(after_help = "Examples:\n  chainfleet events\n  chainfleet events -f")]
    Events {
        /// Keep printing new events.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop every node cleanly and stop the control plane.
    #[command(
        after_help = "Examples:\n  chainfleet down\n  chainfleet down --state-dir .chainfleet   # when the control plane is not running"
    )]
    Down {
        #[command(flatten)]
        api: ApiArgs,
        /// Stop the nodes of this state dir directly when no control plane answers.
        #[arg(long, env = "CHAINFLEET_STATE_DIR", default_value = ".chainfleet")]
        state_dir: PathBuf,
    },
    #[command(flatten)]
    Gateway(gateway_cmd::Commands),
    #[command(flatten)]
    Alerts(alerts_cmd::Commands),
    #[command(flatten)]
    Producers(producers_cmd::Commands),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAINFLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(cli)) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate { file, json } => validate(&file, json),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&chainfleet_spec::json_schema())?
            );
            Ok(())
        }
        Command::Up {
            file,
            state_dir,
            listen,
            gateway_listen,
        } => up(file, state_dir, listen, &gateway_listen).await,
        Command::Apply { file, api, json } => {
            let manifest = load_manifest(&file)?;
            let summary = ApiClient::new(&api.api)?
                .apply(&manifest.source, &file.display().to_string())
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!("applied {}:", file.display());
                for (word, key) in [
                    ("added", "added"),
                    ("removed", "removed"),
                    ("changed (rolling restart)", "changed"),
                    ("unchanged", "unchanged"),
                ] {
                    let names: Vec<&str> = summary[key]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                        .unwrap_or_default();
                    println!(
                        "  {word}: {}",
                        if names.is_empty() {
                            "-".to_string()
                        } else {
                            names.join(", ")
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Status { api, json } => {
            let nodes = ApiClient::new(&api.api)?.nodes().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&nodes)?);
            } else {
                print!("{}", table::status(&nodes));
            }
            Ok(())
        }
        Command::Logs {
            node,
            follow,
            tail,
            api,
        } => {
            let client = ApiClient::new(&api.api)?;
            let (text, mut offset) = client.log_tail(&node, tail).await?;
            print!("{text}");
            if !follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let (text, next) = client.log_from(&node, offset).await?;
                print!("{text}");
                offset = next;
            }
        }
        Command::Events { follow, json, api } => {
            let client = ApiClient::new(&api.api)?;
            let print = |event: &chainfleet_control::Event| -> Result<()> {
                use std::io::Write;
                let line = if json {
                    serde_json::to_string(event)?
                } else {
                    table::event_line(event)
                };
                match writeln!(std::io::stdout().lock(), "{line}") {
                    // The reader is gone (e.g. `| head`): stop quietly.
                    Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                        std::process::exit(0)
                    }
                    other => Ok(other?),
                }
            };
            let mut after = 0;
            for event in client.events(0).await? {
                after = after.max(event.id);
                print(&event)?;
            }
            if follow {
                // New events arrive as the control plane records them (SSE).
                client.follow_events(after, print).await?;
            }
            Ok(())
        }
        Command::Down { api, state_dir } => down(&api.api, state_dir).await,
        Command::Gateway(command) => gateway_cmd::run(command).await,
        Command::Alerts(command) => alerts_cmd::run(command).await,
        Command::Producers(command) => producers_cmd::run(command).await,
    }
}

fn load_manifest(file: &std::path::Path) -> Result<chainfleet_spec::Manifest> {
    let manifest = chainfleet_spec::load_file(file)?;
    manifest.reject_if_any(chainfleet_chains::check_fleet(&manifest.fleet))?;
    Ok(manifest)
}

fn validate(file: &std::path::Path, json: bool) -> Result<()> {
    let result = load_manifest(file);
    if json {
        let value = match &result {
            Ok(manifest) => {
                serde_json::json!({"valid": true, "file": file, "instances": manifest.fleet.instances.len(),
                "nodes": manifest.fleet.instances.iter().map(|i| i.replicas).sum::<u32>()})
            }
            Err(err) => match err.downcast_ref::<chainfleet_spec::SpecError>() {
                Some(chainfleet_spec::SpecError::Invalid { problems, .. }) => serde_json::json!({
                    "valid": false, "file": file,
                    "problems": problems.iter().map(|p| serde_json::json!({
                        "path": p.path, "message": p.message,
                        "line": p.position.map(|x| x.line), "column": p.position.map(|x| x.column),
                    })).collect::<Vec<_>>(),
                }),
                _ => {
                    serde_json::json!({"valid": false, "file": file, "problems": [{"path": "", "message": format!("{err:#}")}]})
                }
            },
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
        if result.is_err() {
            std::process::exit(1);
        }
        return Ok(());
    }
    let manifest = result?;
    let nodes: u32 = manifest.fleet.instances.iter().map(|i| i.replicas).sum();
    println!(
        "{}: valid ({} instances, {} nodes)",
        file.display(),
        manifest.fleet.instances.len(),
        nodes
    );
    Ok(())
}

async fn up(
    file: Option<PathBuf>,
    state_dir: PathBuf,
    listen: SocketAddr,
    gateway_listen: &str,
) -> Result<()> {
    let manifest = file.as_deref().map(load_manifest).transpose()?;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            let holder = chainfleet_runtime::ports::holder(listen.port())
                .map(|h| format!(" (held by {h})"))
                .unwrap_or_default();
            bail!("cannot listen on {listen}{holder}: {err}; pick another with --listen");
        }
    };
    let controller = Controller::open(
        ControllerOptions::new(&state_dir),
        Arc::new(ProcessRuntime::new()),
    )?;
    if let Some(manifest) = manifest {
        controller.apply(manifest)?;
    } else if !controller.has_manifest() {
        bail!(
            "no manifest: pass one with -f FILE (state dir {} has none stored)",
            state_dir.display()
        );
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    let app = chainfleet_api::router(controller.clone(), shutdown_tx.clone());
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });
    eprintln!(
        "chainfleet: fleet `{}` is up; API on http://{listen} (state dir {}). Ctrl-C stops it.",
        controller.fleet_name(),
        state_dir.display()
    );
    gateway_cmd::start_with_controller(&controller, gateway_listen, shutdown_rx.clone()).await;
    let loops = {
        let controller = controller.clone();
        let rx = shutdown_rx.clone();
        tokio::spawn(async move { controller.run(rx).await })
    };
    let mut api_shutdown = shutdown_rx.clone();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("chainfleet: stopping the nodes...");
            let stopped = controller.stop_all().await?;
            eprintln!("chainfleet: stopped {stopped} nodes");
        }
        _ = terminate.recv() => {
            eprintln!("chainfleet: SIGTERM; stopping the nodes...");
            let stopped = controller.stop_all().await?;
            eprintln!("chainfleet: stopped {stopped} nodes");
        }
        _ = api_shutdown.wait_for(|stop| *stop) => {
            eprintln!("chainfleet: `down` requested; nodes stopped");
        }
    }
    let _ = shutdown_tx.send(true);
    let _ = loops.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

async fn down(api: &str, state_dir: PathBuf) -> Result<()> {
    let client = ApiClient::new(api)?;
    match client.shutdown().await {
        Ok(stopped) => {
            println!("stopped {stopped} nodes; the control plane is exiting");
            Ok(())
        }
        Err(err) if client::is_unreachable(&err) => {
            // No control plane answers: stop what the state dir knows directly.
            if !state_dir.join("state.db").exists() {
                bail!(
                    "no control plane answers at {api} and {} holds no fleet",
                    state_dir.display()
                );
            }
            let controller = Controller::open(
                ControllerOptions::new(&state_dir),
                Arc::new(ProcessRuntime::new()),
            )
            .with_context(|| format!("no control plane answers at {api}"))?;
            let stopped = controller.stop_all().await?;
            println!(
                "no control plane answered at {api}; stopped {stopped} nodes of {} directly",
                state_dir.display()
            );
            Ok(())
        }
        Err(err) => Err(err),
    }
}
