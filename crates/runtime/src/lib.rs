//! Node runtimes. A runtime starts a node from a [`LaunchSpec`], tells
//! whether it still runs, signals it, and finds node processes left behind by
//! an earlier control plane. The local process supervisor is the default.

pub mod logs;
pub mod ports;
mod process;
pub mod procfs;

use std::path::PathBuf;

pub use chainfleet_chains::LaunchSpec;
use serde::{Deserialize, Serialize};

pub use process::ProcessRuntime;

/// Errors from starting or signalling nodes.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The client program is not installed.
    #[error("node {node}: client program `{program}` was not found on PATH")]
    BinaryNotFound {
        /// The node.
        node: String,
        /// The program.
        program: String,
    },
    /// A port the node needs is taken.
    #[error("node {node}: {what} port {port} is already in use{}", holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default())]
    PortInUse {
        /// The node.
        node: String,
        /// Which port (rpc, p2p).
        what: String,
        /// The port.
        port: u16,
        /// The process holding it, when it can be known.
        holder: Option<String>,
    },
    /// The data directory cannot be created or written.
    #[error("node {node}: data dir {} is not writable: {source}", path.display())]
    DataDir {
        /// The node.
        node: String,
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The user the manifest names does not exist.
    #[error("user `{user}` (settings.runAs) does not exist on this machine; create it or change the manifest")]
    NoSuchUser {
        /// The user name.
        user: String,
    },
    /// Any other I/O failure, with what was being done.
    #[error("node {node}: cannot {action}: {source}")]
    Io {
        /// The node.
        node: String,
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be sent.
    #[error("node {node}: cannot signal pid {pid}: {source}")]
    Signal {
        /// The node.
        node: String,
        /// The pid.
        pid: u32,
        /// The cause.
        #[source]
        source: nix::Error,
    },
}

/// Everything a runtime needs to run one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name, `INSTANCE-REPLICA`.
    pub name: String,
    /// Program, args and config file.
    pub launch: LaunchSpec,
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// Where its stdout and stderr go.
    pub log_path: PathBuf,
    /// Ports the node will listen on, with their role, checked before start.
    pub ports: Vec<(String, u16)>,
    /// Unprivileged user to run as, when the control plane runs as root.
    pub run_as: Option<String>,
}

/// A running node process, identified by pid plus start time so a reused
/// pid is never mistaken for the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessHandle {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
}

/// Whether a node process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It runs.
    Running,
    /// It exited; the code or signal is known only for our own children.
    Exited {
        /// Exit code, if it exited normally and we saw it.
        code: Option<i32>,
        /// Signal that ended it, if we saw it.
        signal: Option<i32>,
    },
}

/// A place nodes run: local processes here, Kubernetes later.
pub trait NodeRuntime: Send + Sync + 'static {
    /// Write the config file and start the node.
    fn start(&self, spec: &NodeSpec) -> Result<ProcessHandle, RuntimeError>;
    /// Whether the node still runs.
    fn observe(&self, handle: &ProcessHandle) -> Liveness;
    /// Ask the node to stop (SIGTERM).
    fn terminate(&self, name: &str, handle: &ProcessHandle) -> Result<(), RuntimeError>;
    /// Stop the node now (SIGKILL).
    fn kill(&self, name: &str, handle: &ProcessHandle) -> Result<(), RuntimeError>;
    /// Take over a node process started by an earlier control plane: the
    /// recorded handle if it still runs, else any process of this node.
    fn adopt(&self, spec: &NodeSpec, recorded: Option<ProcessHandle>) -> Option<ProcessHandle>;
}
