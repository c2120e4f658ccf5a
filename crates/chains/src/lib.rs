//! Chain family adapters. Everything chain-specific lives here: how to
//! render a client's config and args, probe its status, produce a devnet
//! block, stop it gracefully, and which RPC methods it has.
//!
//! The rest of Chainfleet asks an [`Adapter`] and never matches on a chain.

mod bitcoin;
mod catalog;
mod cometbft;
mod evm;
mod monero;
pub mod rpc;
mod solana;

use std::path::PathBuf;

use chainfleet_spec::{Chain, Client, Family, Finding, Instance, Network, Role};
use serde::{Deserialize, Serialize};

pub use catalog::{Cacheability, MethodClass, MethodInfo, Settles};
pub use rpc::{Endpoint, RpcClient};

/// A family's JSON-RPC over WebSocket: where it is served and how subscriptions work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketRpc {
    /// URL path of the WebSocket endpoint on the node's RPC port.
    pub path: &'static str,
    /// The method that opens a subscription; its result is the subscription id.
    pub subscribe: &'static str,
    /// The method that closes one; its first param is the subscription id.
    pub unsubscribe: &'static str,
    /// The method of the notifications the node pushes; `params.subscription` names the subscription.
    pub notification: &'static str,
}

/// Errors from talking to or configuring a node.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {source}")]
    Client {
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The node did not answer (connection refused, timeout).
    #[error("node at {url} did not answer: {source}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered something that is not what its RPC promises.
    #[error("unexpected answer from node {url}: {detail}")]
    BadResponse {
        /// The URL called (may be empty when unknown).
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("`{method}` failed with code {code}: {message}")]
    Rpc {
        /// The method called.
        method: String,
        /// JSON-RPC error code.
        code: i64,
        /// Error message from the node.
        message: String,
    },
    /// The adapter cannot do this for this family.
    #[error("{family:?} nodes cannot {what} in this release")]
    Unsupported {
        /// The family.
        family: Family,
        /// What was asked.
        what: &'static str,
    },
}

/// Everything an adapter needs to render one node's launch.
#[derive(Debug, Clone)]
pub struct NodeLayout {
    /// Node name, `INSTANCE-REPLICA`.
    pub name: String,
    /// The chain.
    pub chain: Chain,
    /// The network.
    pub network: Network,
    /// What the node is for.
    pub role: Role,
    /// The client settings from the manifest.
    pub client: Client,
    /// The node's own data directory (exists and is writable).
    pub data_dir: PathBuf,
    /// RPC port on 127.0.0.1.
    pub rpc_port: u16,
    /// P2P port on 127.0.0.1.
    pub p2p_port: u16,
    /// RPC credentials Chainfleet generated for this node. Never logged.
    pub rpc_user: String,
    /// RPC password. Never logged.
    pub rpc_password: String,
    /// P2P ports of the nodes this one connects to, on 127.0.0.1.
    pub peer_p2p_ports: Vec<u16>,
}

/// How to start a node: program, arguments and config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// Program name or path.
    pub program: String,
    /// Arguments, Chainfleet's first, then the manifest's extra args.
    pub args: Vec<String>,
    /// Config file to write before starting: path and contents.
    pub config_file: Option<(PathBuf, String)>,
}

/// How a node is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMethod {
    /// Call the node's RPC `stop`, then wait.
    Rpc,
    /// Send SIGTERM, then wait.
    Sigterm,
}

/// What a probe learned about a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProbeStatus {
    /// Height of the best block.
    pub height: u64,
    /// Hash of the best block.
    pub best_hash: String,
    /// Timestamp of the best block, Unix seconds.
    pub head_time: Option<u64>,
    /// Connected peers.
    pub peers: u32,
    /// Whether the node says it is still syncing.
    pub syncing: bool,
    /// Client name and version as the node reports it.
    pub client_version: String,
}

/// Per-chain health defaults: expected block interval and alert thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthDefaults {
    /// Expected time between blocks; `None` when nothing produces blocks.
    pub block_interval: Option<std::time::Duration>,
    /// Stalled warning: head unchanged for this many block intervals.
    pub stall_warning_intervals: f64,
    /// Stalled critical: head unchanged for this many block intervals.
    pub stall_critical_intervals: f64,
    /// Lagging warning: blocks behind the quorum height.
    pub lag_warning_blocks: u64,
    /// Lagging critical: blocks behind the quorum height.
    pub lag_critical_blocks: u64,
    /// How long a lag must last before it alerts.
    pub lag_for: std::time::Duration,
    /// Low-peers warning: fewer peers than this.
    pub min_peers_warning: u32,
    /// Low-peers critical: fewer peers than this (0: never critical).
    pub min_peers_critical: u32,
    /// How long low peers must last before it alerts.
    pub peers_for: std::time::Duration,
}

/// A block a devnet node produced on request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedBlock {
    /// Its height, when the node says.
    pub height: Option<u64>,
    /// Its hash.
    pub hash: String,
}

/// The adapter of one chain: the entry point for everything chain-specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adapter {
    chain: Chain,
}

impl Adapter {
    /// The adapter for `chain`.
    pub fn for_chain(chain: Chain) -> Self {
        Adapter { chain }
    }

    /// The chain.
    pub fn chain(self) -> Chain {
        self.chain
    }

    /// The family.
    pub fn family(self) -> Family {
        self.chain.family()
    }

    /// The client program used when the manifest names none.
    pub fn default_binary(self) -> &'static str {
        match self.chain {
            Chain::Bitcoin => "bitcoind",
            Chain::Litecoin => "litecoind",
            Chain::Zcash => "zcashd",
            Chain::Dash => "dashd",
            Chain::Dogecoin => "dogecoind",
            Chain::Ethereum => "geth",
            Chain::Monero => "monerod",
            Chain::Cosmos => "gaiad",
            Chain::Solana => "solana-validator",
        }
    }

    /// How to install the client, for "binary not found" errors.
    pub fn install_hint(self, binary: &str) -> String {
        let package = match (self.chain, binary_name(binary)) {
            (_, "litecoind") => "apt-get install litecoind (Debian), or run scripts/install.sh",
            (_, "monerod") => "apt-get install monero (Debian), or run scripts/install.sh",
            (_, "anvil") => {
                "npm install @foundry-rs/anvil, or run scripts/install.sh (puts it in .tools/bin)"
            }
            (Chain::Bitcoin, _) => "install Bitcoin Core from bitcoincore.org",
            _ => "install the client and put it on PATH, or give client.binary as a full path",
        };
        format!("`{binary}` was not found on PATH; {package}")
    }

    /// Render the command line and config file of a node.
    pub fn launch(self, layout: &NodeLayout) -> Result<LaunchSpec, ChainError> {
        match self.family() {
            Family::Bitcoin => Ok(bitcoin::launch(layout, self.default_binary())),
            Family::Evm => Ok(evm::launch(layout, self.default_binary())),
            Family::Monero => Ok(monero::launch(layout, self.default_binary())),
            family => Err(ChainError::Unsupported {
                family,
                what: "be run as local processes",
            }),
        }
    }

    /// Where a node's RPC is, given its layout.
    pub fn endpoint(self, layout: &NodeLayout) -> Endpoint {
        self.local_endpoint(layout.rpc_port, &layout.rpc_user, &layout.rpc_password)
    }

    /// Where a node's RPC is, given its port and generated credentials.
    pub fn local_endpoint(self, rpc_port: u16, rpc_user: &str, rpc_password: &str) -> Endpoint {
        let mut endpoint = Endpoint::local(rpc_port);
        if self.family() == Family::Bitcoin {
            endpoint.basic_auth = Some((rpc_user.to_string(), rpc_password.to_string()));
        }
        endpoint
    }

    /// Ask the node for its status.
    pub async fn probe(
        self,
        rpc: &RpcClient,
        endpoint: &Endpoint,
    ) -> Result<ProbeStatus, ChainError> {
        match self.family() {
            Family::Bitcoin => bitcoin::probe(rpc, endpoint).await,
            Family::Evm => evm::probe(rpc, endpoint).await,
            Family::Monero => monero::probe(rpc, endpoint).await,
            Family::Cometbft => cometbft::probe(rpc, endpoint).await,
            Family::Solana => solana::probe(rpc, endpoint).await,
        }
    }

    /// Produce one block on a devnet node, paying `reward_address` or the family's default.
    pub async fn produce(
        self,
        rpc: &RpcClient,
        endpoint: &Endpoint,
        reward_address: Option<&str>,
    ) -> Result<ProducedBlock, ChainError> {
        match self.family() {
            Family::Bitcoin => bitcoin::produce(rpc, endpoint, self.chain, reward_address).await,
            Family::Evm => evm::produce(rpc, endpoint).await,
            Family::Monero => monero::produce(rpc, endpoint, reward_address).await,
            family => Err(ChainError::Unsupported {
                family,
                what: "produce devnet blocks",
            }),
        }
    }

    /// Produce one devnet block tagged with a producer `epoch`, where the
    /// family can record one in the block (bitcoin family: the coinbase
    /// script); other families produce an untagged block.
    pub async fn produce_tagged(
        self,
        rpc: &RpcClient,
        endpoint: &Endpoint,
        reward_address: Option<&str>,
        epoch: u64,
    ) -> Result<ProducedBlock, ChainError> {
        match self.family() {
            Family::Bitcoin => bitcoin::produce_tagged(rpc, endpoint, epoch).await,
            _ => self.produce(rpc, endpoint, reward_address).await,
        }
    }

    /// The producer epoch recorded in the block at `height`, if the family records one.
    pub async fn block_epoch(
        self,
        rpc: &RpcClient,
        endpoint: &Endpoint,
        height: u64,
    ) -> Result<Option<u64>, ChainError> {
        match self.family() {
            Family::Bitcoin => bitcoin::block_epoch(rpc, endpoint, height).await,
            _ => Ok(None),
        }
    }

    /// The hash of the block at `height` on the node's best chain (for fork checks).
    pub async fn block_hash_at(
        self,
        rpc: &RpcClient,
        endpoint: &Endpoint,
        height: u64,
    ) -> Result<String, ChainError> {
        match self.family() {
            Family::Bitcoin => bitcoin::block_hash_at(rpc, endpoint, height).await,
            Family::Evm => evm::block_hash_at(rpc, endpoint, height).await,
            Family::Monero => monero::block_hash_at(rpc, endpoint, height).await,
            family => Err(ChainError::Unsupported {
                family,
                what: "report the block hash at a height",
            }),
        }
    }

    /// Health defaults of this chain on `network`. On regtest and devnet the
    /// block interval is the producer's, which only the manifest knows: the
    /// caller passes it as `local_interval`.
    pub fn health_defaults(
        self,
        network: Network,
        local_interval: Option<std::time::Duration>,
    ) -> HealthDefaults {
        use std::time::Duration;
        if network.is_local() {
            return HealthDefaults {
                block_interval: local_interval,
                stall_warning_intervals: 1.5,
                stall_critical_intervals: 3.0,
                lag_warning_blocks: 3,
                lag_critical_blocks: 20,
                lag_for: Duration::from_secs(6),
                min_peers_warning: 1,
                min_peers_critical: 0,
                peers_for: Duration::from_secs(10),
            };
        }
        // Proof-of-work chains: block times are exponential, so a stall is
        // only certain after many intervals. Slot-based chains are regular.
        let (interval, warning, critical, lag_warning, lag_critical) = match self.family() {
            Family::Bitcoin => (bitcoin::block_interval_secs(self.chain), 6.0, 12.0, 2, 6),
            Family::Monero => (120, 10.0, 20.0, 3, 10),
            Family::Evm => (12, 5.0, 10.0, 5, 30),
            Family::Cometbft => (6, 5.0, 10.0, 5, 30),
            Family::Solana => (1, 60.0, 120.0, 150, 1000),
        };
        HealthDefaults {
            block_interval: Some(Duration::from_secs(interval)),
            stall_warning_intervals: warning,
            stall_critical_intervals: critical,
            lag_warning_blocks: lag_warning,
            lag_critical_blocks: lag_critical,
            lag_for: Duration::from_secs(60),
            min_peers_warning: 4,
            min_peers_critical: 1,
            peers_for: Duration::from_secs(60),
        }
    }

    /// How this family is asked to stop.
    pub fn stop_method(self) -> StopMethod {
        match self.family() {
            Family::Bitcoin => StopMethod::Rpc,
            _ => StopMethod::Sigterm,
        }
    }

    /// Ask the node to stop over RPC (only for [`StopMethod::Rpc`] families).
    pub async fn request_stop(
        self,
        rpc: &RpcClient,
        endpoint: &Endpoint,
    ) -> Result<(), ChainError> {
        match self.family() {
            Family::Bitcoin => bitcoin::request_stop(rpc, endpoint).await,
            family => Err(ChainError::Unsupported {
                family,
                what: "be stopped over RPC",
            }),
        }
    }

    /// The family's RPC methods with their class and cacheability.
    pub fn catalog(self) -> &'static [MethodInfo] {
        match self.family() {
            Family::Bitcoin => bitcoin::CATALOG,
            Family::Evm => evm::CATALOG,
            Family::Monero => monero::CATALOG,
            Family::Cometbft => cometbft::CATALOG,
            Family::Solana => solana::CATALOG,
        }
    }

    /// Look one method up in the catalog.
    pub fn method(self, name: &str) -> Option<&'static MethodInfo> {
        self.catalog().iter().find(|m| m.name == name)
    }

    /// When the answer to a call stops changing, by the family's rules.
    /// `params` is the call's raw JSON params and `result` the node's raw
    /// JSON result (of a successful answer). `Immutable` methods settle now,
    /// `ImmutableWhenDeep` ones as the family reads the call and answer, and
    /// nothing else, nor a `null` result (not found, not there yet), ever does.
    pub fn settles(self, method: &str, params: Option<&str>, result: &[u8]) -> Settles {
        let Some(info) = self.method(method) else {
            return Settles::Never;
        };
        if catalog::is_null(result) {
            return Settles::Never;
        }
        match info.cache {
            Cacheability::Never => Settles::Never,
            Cacheability::Immutable => Settles::Now,
            Cacheability::ImmutableWhenDeep(_) => {
                let params = catalog::parse_params(params);
                let params = params.as_ref();
                match self.family() {
                    Family::Bitcoin => bitcoin::settles(method, params, result),
                    Family::Evm => evm::settles(method, params, result),
                    Family::Monero => monero::settles(method, params, result),
                    Family::Cometbft => cometbft::settles(method, params, result),
                    Family::Solana => solana::settles(method, params, result),
                }
            }
        }
    }

    /// The content type of the answer to a REST-style path (a catalog name
    /// starting with `/`).
    pub fn rest_content_type(self, path: &str) -> &'static str {
        match self.family() {
            Family::Monero => monero::rest_content_type(path),
            _ => "application/json",
        }
    }

    /// URL path of the node's JSON-RPC endpoint (`/` or monerod's `/json_rpc`).
    /// Catalog names that start with `/` are REST-style paths served beside it.
    pub fn rpc_path(self) -> &'static str {
        match self.family() {
            Family::Monero => "/json_rpc",
            _ => "/",
        }
    }

    /// Whether the node answers a JSON-RPC batch (a list of calls) in one request.
    pub fn supports_batch(self) -> bool {
        !matches!(self.family(), Family::Monero)
    }

    /// How the node serves subscriptions over WebSocket, when its family does.
    pub fn websocket(self) -> Option<&'static WebSocketRpc> {
        match self.family() {
            Family::Evm => Some(&evm::WEBSOCKET),
            _ => None,
        }
    }

    /// Adapter-specific manifest problems of one instance at path `at`.
    pub fn check_instance(self, instance: &Instance, at: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        if matches!(self.family(), Family::Cometbft | Family::Solana) {
            out.push(Finding::new(
                format!("{at}.chain"),
                format!(
                    "{} nodes can be probed but not yet run by Chainfleet; remove this instance",
                    self.chain
                ),
            ));
        }
        if self.family() == Family::Evm
            && instance.replicas > 1
            && evm::flavor(
                instance
                    .client
                    .binary
                    .as_deref()
                    .unwrap_or(self.default_binary()),
            ) == evm::Flavor::Anvil
        {
            out.push(Finding::new(
                format!("{at}.replicas"),
                "anvil nodes cannot peer; each replica would be its own chain. Use replicas: 1",
            ));
        }
        out
    }
}

/// Adapter problems for every instance of a fleet.
pub fn check_fleet(fleet: &chainfleet_spec::Fleet) -> Vec<Finding> {
    fleet
        .instances
        .iter()
        .enumerate()
        .flat_map(|(index, instance)| {
            Adapter::for_chain(instance.chain)
                .check_instance(instance, &format!("instances[{index}]"))
        })
        .collect()
}

/// The file name of a program path.
fn binary_name(binary: &str) -> &str {
    binary.rsplit('/').next().unwrap_or(binary)
}

/// `KEY=VALUE` lines for a config file, Chainfleet's settings overridden by the manifest's.
fn render_config_lines(
    base: &[(&str, String)],
    overrides: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut out = String::from("# Written by Chainfleet; edit the manifest instead.\n");
    for (key, value) in base {
        if !overrides.contains_key(*key) {
            out.push_str(&format!("{key}={value}\n"));
        }
    }
    for (key, value) in overrides {
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}
