//! The Chainfleet control plane: it keeps a fleet of nodes in the state its
//! manifest declares, probes them, produces devnet blocks and publishes one
//! status snapshot per probe round.

pub mod alerts;
mod controller;
pub mod failover;
pub mod health;
pub mod lease;
pub mod notify;
pub mod plan;
pub mod store;

use serde::{Deserialize, Serialize};

pub use controller::{read_upstreams, upstreams_in, ApplySummary, Controller, ControllerOptions};
pub use store::Event;

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The state database failed.
    #[error("state database: cannot {action}: {source}")]
    Store {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A file or system call failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another control plane holds the state dir.
    #[error("state dir {dir} is in use by another chainfleet control plane{}; stop it first or use another --state-dir", holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    StateDirLocked {
        /// The state dir.
        dir: String,
        /// Who holds it, if known.
        holder: Option<String>,
    },
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] chainfleet_spec::SpecError),
    /// A chain adapter refused.
    #[error("node {node}: {source}")]
    Chain {
        /// The node.
        node: String,
        /// The cause.
        #[source]
        source: chainfleet_chains::ChainError,
    },
    /// No node has this name.
    #[error("no node is named `{0}`; `chainfleet status` lists them")]
    UnknownNode(String),
    /// The lease store (embedded or etcd) failed or did not answer.
    #[error("lease store: {0}")]
    LeaseStore(String),
    /// Anything else the operator must fix.
    #[error("{0}")]
    Invalid(String),
}

/// The status of one node, as served by `status --json` and `/v1/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NodeStatus {
    /// Node name, `INSTANCE-REPLICA`.
    pub name: String,
    /// Instance name.
    pub instance: String,
    /// Replica index.
    pub replica: u32,
    /// Chain.
    pub chain: String,
    /// Network.
    pub network: String,
    /// Role.
    pub role: String,
    /// One of: starting, healthy, syncing, unreachable, updating, restarting,
    /// crash-looping, failed, stopping, stopped.
    pub state: String,
    /// Best block height.
    pub height: Option<u64>,
    /// Best block hash.
    pub best_hash: Option<String>,
    /// Blocks behind the best node of its network.
    pub lag: Option<u64>,
    /// Connected peers.
    pub peers: Option<u32>,
    /// Seconds since the best block's timestamp.
    pub head_age_seconds: Option<u64>,
    /// Whether the node says it is syncing.
    pub syncing: Option<bool>,
    /// Process id.
    pub pid: Option<u32>,
    /// Seconds the process has run.
    pub uptime_seconds: Option<u64>,
    /// Restarts after crashes.
    pub restarts: u32,
    /// Client version as the node reports it.
    pub client_version: Option<String>,
    /// RPC port on 127.0.0.1.
    pub rpc_port: u16,
    /// P2P port on 127.0.0.1.
    pub p2p_port: u16,
    /// Why the node is not healthy, when known.
    pub last_error: Option<String>,
    /// Last log lines, when the node failed or crashed.
    pub log_tail: Vec<String>,
    /// When this status was computed (Unix ms).
    pub updated_ms: i64,
    /// Derived health: healthy, syncing, lagging, stalled, forked, down,
    /// crash-looping, or pending while the supervisor starts or stops it.
    #[serde(default)]
    pub health: String,
    /// Why the health is not `healthy`, when known.
    #[serde(default)]
    pub health_reason: Option<String>,
    /// Seconds since the head last changed, as seen by the control plane.
    #[serde(default)]
    pub stale_seconds: Option<f64>,
    /// Expected seconds between blocks, when known.
    #[serde(default)]
    pub block_interval_seconds: Option<f64>,
    /// Whether its block at a common height differs from the majority's.
    #[serde(default)]
    pub forked: bool,
    /// Percent of the data dir's file system in use.
    #[serde(default)]
    pub disk_used_percent: Option<f64>,
    /// Duration of this round's probe, seconds.
    #[serde(default)]
    pub probe_seconds: Option<f64>,
}

/// One probe round's view of the whole fleet, shared with the API and gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FleetSnapshot {
    /// Fleet name.
    pub fleet: String,
    /// When it was computed (Unix ms).
    pub generated_ms: i64,
    /// Every node, in manifest order.
    pub nodes: Vec<NodeStatus>,
    /// Active alerts, then recently resolved ones.
    #[serde(default)]
    pub alerts: Vec<alerts::Alert>,
    /// Control-plane figures (probe latency, reconcile errors, notifications).
    #[serde(default)]
    pub control: alerts::ControlStats,
}

/// Where the gateway reaches one node, with its status. Holds RPC
/// credentials: it is deliberately not serializable, and its `Debug` redacts them.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// The node's status from the same probe round.
    pub status: NodeStatus,
    /// The chain (for the adapter's method catalog).
    pub chain: chainfleet_spec::Chain,
    /// The node's RPC endpoint.
    pub endpoint: chainfleet_chains::Endpoint,
}

/// Every node's upstream, published once per probe round for the gateway.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamSnapshot {
    /// When it was computed (Unix ms).
    pub generated_ms: i64,
    /// Every node, in manifest order.
    pub upstreams: Vec<Upstream>,
}
