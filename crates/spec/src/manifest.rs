//! Manifest types and their defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The only manifest version this release reads.
pub const API_VERSION: &str = "chainfleet.dev/v1alpha1";
/// The manifest kind.
pub const KIND: &str = "Fleet";

/// A whole fleet: the root of a manifest file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fleet {
    /// Always `chainfleet.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Fleet`.
    pub kind: String,
    /// Name and labels of the fleet.
    #[serde(default)]
    pub metadata: Metadata,
    /// Fleet-wide settings.
    #[serde(default)]
    pub settings: Settings,
    /// Producer groups: exactly one active block producer per group.
    #[serde(default)]
    pub producer_groups: BTreeMap<String, crate::failover::ProducerGroup>,
    /// Alert rules and notification channels.
    #[serde(default)]
    pub alerting: crate::alerting::Alerting,
    /// The node instances of this fleet.
    #[serde(default)]
    pub instances: Vec<Instance>,
}

/// Fleet name and labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Fleet name, shown in status and metrics.
    #[serde(default = "default_fleet_name")]
    pub name: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            name: default_fleet_name(),
            labels: BTreeMap::new(),
        }
    }
}

fn default_fleet_name() -> String {
    "fleet".into()
}

/// Fleet-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// How often every node is probed, e.g. `2s`.
    #[serde(default = "default_probe_interval")]
    pub probe_interval: DurationText,
    /// Unprivileged user that runs the nodes when the control plane runs as root.
    #[serde(default)]
    pub run_as: Option<String>,
    /// Largest size of one node log file before it is rotated, in MiB.
    #[serde(default = "default_log_max_mb")]
    pub log_max_mb: u64,
    /// Rotated log files kept per node.
    #[serde(default = "default_log_keep")]
    pub log_keep: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            probe_interval: default_probe_interval(),
            run_as: None,
            log_max_mb: default_log_max_mb(),
            log_keep: default_log_keep(),
        }
    }
}

fn default_probe_interval() -> DurationText {
    DurationText(Duration::from_secs(2))
}
fn default_log_max_mb() -> u64 {
    16
}
fn default_log_keep() -> u32 {
    3
}

/// A known chain. Each belongs to one family, whose adapter drives it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Bitcoin (Bitcoin Core).
    Bitcoin,
    /// Litecoin (litecoind).
    Litecoin,
    /// Zcash (zcashd).
    Zcash,
    /// Dash (dashd).
    Dash,
    /// Dogecoin (dogecoind).
    Dogecoin,
    /// Ethereum and other EVM chains (geth, reth, erigon, nethermind, anvil).
    Ethereum,
    /// Monero (monerod).
    Monero,
    /// CometBFT / Cosmos SDK chains (probe only).
    Cosmos,
    /// Solana (probe only).
    Solana,
}

/// Chain families: chains that share one RPC dialect and one adapter.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Bitcoin Core RPC: Bitcoin, Litecoin, Zcash, Dash, Dogecoin.
    Bitcoin,
    /// Ethereum JSON-RPC.
    Evm,
    /// monerod RPC.
    Monero,
    /// CometBFT RPC.
    Cometbft,
    /// Solana JSON-RPC.
    Solana,
}

impl Chain {
    /// The family whose adapter drives this chain.
    pub fn family(self) -> Family {
        match self {
            Chain::Bitcoin | Chain::Litecoin | Chain::Zcash | Chain::Dash | Chain::Dogecoin => {
                Family::Bitcoin
            }
            Chain::Ethereum => Family::Evm,
            Chain::Monero => Family::Monero,
            Chain::Cosmos => Family::Cometbft,
            Chain::Solana => Family::Solana,
        }
    }

    /// Lower-case name, as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Bitcoin => "bitcoin",
            Chain::Litecoin => "litecoin",
            Chain::Zcash => "zcash",
            Chain::Dash => "dash",
            Chain::Dogecoin => "dogecoin",
            Chain::Ethereum => "ethereum",
            Chain::Monero => "monero",
            Chain::Cosmos => "cosmos",
            Chain::Solana => "solana",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which network a node joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The main network.
    Mainnet,
    /// The public test network.
    Testnet,
    /// A private regression-test chain.
    Regtest,
    /// A private development chain.
    Devnet,
}

impl Network {
    /// Whether blocks on this network are produced locally by Chainfleet.
    pub fn is_local(self) -> bool {
        matches!(self, Network::Regtest | Network::Devnet)
    }
}

/// What a node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A full node.
    #[default]
    Full,
    /// A node serving RPC to users.
    Rpc,
    /// A block producer (validator, miner).
    Producer,
    /// A full-history archive node.
    Archive,
}

/// One instance: a named group of identical replicas of one chain client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Instance {
    /// Unique name: lower-case letters, digits and `-`.
    pub name: String,
    /// The chain, e.g. `litecoin`, `ethereum`, `monero`.
    pub chain: Chain,
    /// The network to join.
    #[serde(default = "default_network")]
    pub network: Network,
    /// The client program and its settings.
    #[serde(default)]
    pub client: Client,
    /// Number of identical nodes.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// What the nodes are for.
    #[serde(default)]
    pub role: Role,
    /// Ports of replica 0; replica N uses each port plus N. Omitted ports are assigned.
    #[serde(default)]
    pub ports: Ports,
    /// Data directory; replica N uses `DIR/N`. Default: the state dir's `nodes/NAME`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Resource hints (recorded; enforced on Kubernetes).
    #[serde(default)]
    pub resources: Resources,
    /// Other instances of the same chain this instance connects to.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Local block production (regtest and devnet only).
    #[serde(default)]
    pub production: Option<Production>,
    /// How long a graceful stop may take before the node is killed.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: DurationText,
    /// The producer group this instance's members belong to. A producer
    /// instance with 2 or more replicas forms its own group when this is omitted.
    #[serde(default)]
    pub producer_group: Option<String>,
    /// Who may call which RPC methods through the gateway.
    #[serde(default)]
    pub access: crate::access::Access,
    /// External RPC endpoints of the same chain, used as height references.
    #[serde(default)]
    pub references: Vec<crate::alerting::ReferenceEndpoint>,
}

fn default_network() -> Network {
    Network::Regtest
}
fn default_replicas() -> u32 {
    1
}
fn default_stop_timeout() -> DurationText {
    DurationText(Duration::from_secs(30))
}

/// The client program of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Client {
    /// Program name (looked up on PATH) or path. Default: the chain's usual client.
    #[serde(default)]
    pub binary: Option<String>,
    /// Expected version, shown beside the probed one.
    #[serde(default)]
    pub version: Option<String>,
    /// Extra command-line arguments, appended after Chainfleet's.
    #[serde(default)]
    pub args: Vec<String>,
    /// Config-file settings that override Chainfleet's, e.g. `dbcache: "300"`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Ports of replica 0 of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ports {
    /// RPC port.
    #[serde(default)]
    pub rpc: Option<u16>,
    /// Peer-to-peer port.
    #[serde(default)]
    pub p2p: Option<u16>,
}

/// Resource hints for a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    /// CPU cores.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Disk in GiB.
    #[serde(default)]
    pub disk_gb: Option<u64>,
}

/// Devnet block production.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Production {
    /// Time between blocks, e.g. `5s`.
    #[serde(default = "default_block_interval")]
    pub block_interval: DurationText,
    /// Address that receives block rewards. Default: a fixed devnet address of the family.
    #[serde(default)]
    pub reward_address: Option<String>,
}

fn default_block_interval() -> DurationText {
    DurationText(Duration::from_secs(5))
}

/// A duration written as text in manifests, such as `2s`, `500ms` or `5m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationText(pub Duration);

impl DurationText {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(DurationText)
            .map_err(|err| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a duration ({err}); write it like `2s`, `500ms` or `5m`"
                ))
            })
    }
}

impl JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*(ns|us|ms|s|m|h|d)(\\s*[0-9]+(\\.[0-9]+)?\\s*(ns|us|ms|s|m|h|d))*\\s*$",
            "description": "A duration such as `2s`, `500ms` or `5m`."
        })
    }
}
