//! The Chainfleet RPC gateway: one authenticated endpoint per instance.
//!
//! `POST /rpc/{instance}` (or `/rpc/{instance}/{key}`) takes JSON-RPC calls,
//! single or batched. Each call is judged against the instance's `access:`
//! policy and the key's own policy (deny wins), limited per key, and sent to
//! the least loaded healthy replica; idempotent reads are retried once on
//! another replica, and answers that cannot change are cached. Upstream
//! health comes from the control plane's [`UpstreamSnapshot`]; the gateway
//! never probes nodes itself.

pub mod cache;
pub mod jsonrpc;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod policy;
mod routes;
mod server;
mod ws;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chainfleet_control::UpstreamSnapshot;
use chainfleet_spec::access::Access;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use server::Failure;

use crate::cache::{AnswerCache, Coalescer};
use crate::keys::KeyStore;
use crate::limits::KeyUsage;
use crate::metrics::Metrics;
use crate::routes::{LiveKey, NodeState, Routes};

/// Errors of the gateway and its key store.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The key database failed.
    #[error("gateway key database: cannot {action}: {source}")]
    Store {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A file or socket operation failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The control plane's state could not be read.
    #[error(transparent)]
    Control(#[from] chainfleet_control::ControlError),
    /// A request to manage keys was not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// Gateway settings that are not per instance.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The state dir (holds `gateway.db` with the API keys).
    pub state_dir: PathBuf,
    /// How long a node may take to answer.
    pub upstream_timeout: Duration,
    /// How long a client may take to send its request headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// How long a client may take to send its body.
    pub body_read_timeout: Duration,
    /// Most open client connections, WebSocket sessions included; more are closed at once.
    pub max_connections: usize,
    /// Most requests to nodes at once.
    pub max_inflight: usize,
    /// Most requests waiting for one of those; more get 503.
    pub max_queue: usize,
    /// Longest wait in that queue before 503.
    pub queue_timeout: Duration,
    /// Size of the answer cache in MiB (0 disables it).
    pub cache_mb: u64,
    /// Consecutive failures that open a replica's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit keeps a replica out.
    pub breaker_open: Duration,
    /// How often the key database is checked for changes.
    pub key_poll: Duration,
}

impl GatewayOptions {
    /// Defaults for a gateway on `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        GatewayOptions {
            state_dir: state_dir.into(),
            upstream_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_inflight: 1024,
            max_queue: 4096,
            queue_timeout: Duration::from_secs(2),
            cache_mb: 64,
            breaker_failures: 3,
            breaker_open: Duration::from_secs(5),
            key_poll: Duration::from_millis(200),
        }
    }
}

/// The `access:` section of every instance, by instance name.
pub type AccessMap = HashMap<String, Access>;

/// Receivers of the upstream snapshots and access sections a gateway follows.
pub type Feeds = (
    watch::Receiver<Arc<UpstreamSnapshot>>,
    watch::Receiver<Arc<AccessMap>>,
);

/// The shared state of a running gateway.
pub(crate) struct Inner {
    options: GatewayOptions,
    routes: RwLock<Arc<Routes>>,
    node_states: Mutex<HashMap<String, Arc<NodeState>>>,
    keys: RwLock<Arc<HashMap<[u8; 32], Arc<LiveKey>>>>,
    usages: Mutex<HashMap<String, Arc<KeyUsage>>>,
    cache: AnswerCache,
    coalescer: Coalescer,
    metrics: Metrics,
    client: Client<HttpConnector, Full<Bytes>>,
    permits: Semaphore,
    /// Client connections, WebSocket sessions included (`max_connections`).
    connections: Arc<Semaphore>,
    queued: AtomicUsize,
    clock: Instant,
    rotate: AtomicUsize,
}

impl Inner {
    /// Milliseconds since the gateway started (monotonic).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn next_rotation(&self) -> usize {
        self.rotate.fetch_add(1, Ordering::Relaxed)
    }

    /// Count a failed request to `node` of `instance`, by kind.
    fn count_upstream_error(&self, instance: &str, node: &str, kind: &str) {
        self.metrics
            .upstream_errors
            .get_or_create(&metrics::UpstreamLabels {
                instance: instance.to_string(),
                node: node.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Count a failed request to `slot` and feed its circuit breaker;
    /// returns true when this failure opened the circuit.
    fn upstream_failed(&self, instance: &str, slot: &routes::Slot, kind: &str) -> bool {
        self.count_upstream_error(instance, &slot.node, kind);
        slot.state.failure(
            self.options.breaker_failures,
            self.now_ms(),
            u64::try_from(self.options.breaker_open.as_millis()).unwrap_or(u64::MAX),
        )
    }
}

/// A running gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// Start a gateway: open its key database, follow `upstreams` and
    /// `access`, and poll the keys for changes. Call inside a Tokio runtime;
    /// then [`Gateway::serve`] a listener.
    pub fn start(
        options: GatewayOptions,
        mut upstreams: watch::Receiver<Arc<UpstreamSnapshot>>,
        mut access: watch::Receiver<Arc<AccessMap>>,
    ) -> Result<Gateway, GatewayError> {
        let store = KeyStore::open(&options.state_dir)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(options.upstream_timeout.min(Duration::from_secs(3))));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(512)
            .build(connector);
        let cache_bytes =
            usize::try_from(options.cache_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let inner = Arc::new(Inner {
            permits: Semaphore::new(options.max_inflight.max(1)),
            connections: Arc::new(Semaphore::new(options.max_connections.max(1))),
            options,
            routes: RwLock::new(Arc::new(Routes::default())),
            node_states: Mutex::new(HashMap::new()),
            keys: RwLock::new(Arc::new(HashMap::new())),
            usages: Mutex::new(HashMap::new()),
            cache: AnswerCache::new(cache_bytes),
            coalescer: Coalescer::default(),
            metrics: Metrics::default(),
            client,
            queued: AtomicUsize::new(0),
            clock: Instant::now(),
            rotate: AtomicUsize::new(0),
        });
        let version = store.version()?;
        routes::reload_keys(&inner, &store)?;
        routes::rebuild(
            &inner,
            &upstreams.borrow_and_update(),
            &access.borrow_and_update(),
        );
        spawn_key_poller(Arc::downgrade(&inner), store, version);
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = upstreams.changed() => if changed.is_err() { break },
                    changed = access.changed() => if changed.is_err() { break },
                }
                let Some(inner) = weak.upgrade() else { break };
                let snapshot = upstreams.borrow_and_update().clone();
                let policies = access.borrow_and_update().clone();
                routes::rebuild(&inner, &snapshot, &policies);
            }
        });
        Ok(Gateway { inner })
    }

    /// Serve clients on `listener` until `shutdown` turns true.
    pub async fn serve(&self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        server::accept_loop(self.inner.clone(), listener, shutdown).await;
    }

    /// The gateway's metrics in the OpenMetrics text format.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// Reload the API keys now instead of at the next poll; returns how many are active.
    pub fn refresh_keys(&self) -> Result<usize, GatewayError> {
        let store = KeyStore::open(&self.inner.options.state_dir)?;
        routes::reload_keys(&self.inner, &store)
    }

    /// The best height the gateway measures an instance's answers against
    /// before caching them (highest head among its eligible replicas).
    pub fn best_height(&self, instance: &str) -> Option<u64> {
        self.inner
            .routes
            .read()
            .instances
            .get(instance)
            .and_then(|route| route.best_height)
    }

    /// Instance names the gateway currently routes.
    pub fn instances(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.routes.read().instances.keys().cloned().collect();
        names.sort();
        names
    }
}

/// Reload the keys whenever the database's version changes.
fn spawn_key_poller(inner: Weak<Inner>, store: KeyStore, mut version: i64) {
    let spawned = std::thread::Builder::new()
        .name("gateway-keys".into())
        .spawn(move || loop {
            let every = match inner.upgrade() {
                Some(inner) => inner.options.key_poll,
                None => return,
            };
            keys::wait_for_write(every);
            let Some(inner) = inner.upgrade() else { return };
            match store.version() {
                Ok(now) if now != version => match routes::reload_keys(&inner, &store) {
                    Ok(count) => {
                        version = now;
                        tracing::info!(keys = count, version, "gateway keys reloaded");
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot reload gateway keys"),
                },
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "cannot read the gateway key version"),
            }
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start the key poller; key changes need a restart");
    }
}

/// Every instance's `access:` section from manifest text (None when it does not parse).
pub fn access_from_manifest(text: &str) -> Option<AccessMap> {
    let manifest = chainfleet_spec::parse(text, "manifest").ok()?;
    Some(
        manifest
            .fleet
            .instances
            .iter()
            .map(|instance| (instance.name.clone(), instance.access.clone()))
            .collect(),
    )
}

/// Follow the manifest through `read` (called every `every`), publishing the
/// access sections whenever the text changes. Stops when nobody listens.
pub fn watch_manifest(
    read: impl Fn() -> Option<String> + Send + 'static,
    every: Duration,
) -> watch::Receiver<Arc<AccessMap>> {
    let first = read();
    let initial = first
        .as_deref()
        .and_then(access_from_manifest)
        .unwrap_or_default();
    let (tx, rx) = watch::channel(Arc::new(initial));
    tokio::spawn(async move {
        let mut last = first;
        loop {
            tokio::time::sleep(every).await;
            if tx.is_closed() {
                return;
            }
            let text = read();
            if text != last {
                if let Some(map) = text.as_deref().and_then(access_from_manifest) {
                    let _ = tx.send(Arc::new(map));
                }
                last = text;
            }
        }
    });
    rx
}

/// For a standalone gateway: follow the upstreams and manifest that a control
/// plane keeps in `state_dir`, polling every `every` on one open connection and
/// publishing only what changed.
pub fn watch_state_dir(state_dir: &Path, every: Duration) -> Result<Feeds, GatewayError> {
    use chainfleet_control::store::Store;

    let db = state_dir.join("state.db");
    if !db.exists() {
        return Err(GatewayError::Invalid(format!(
            "{} has no control plane state; start one with `chainfleet up -f FILE --state-dir {}`",
            state_dir.display(),
            state_dir.display()
        )));
    }
    let store = Store::open(&db)?;
    let mut upstreams = chainfleet_control::upstreams_in(&store)?;
    let mut manifest = store.meta("manifest")?;
    let initial = manifest
        .as_deref()
        .and_then(access_from_manifest)
        .unwrap_or_default();
    let (upstreams_tx, upstreams_rx) = watch::channel(Arc::new(upstreams.clone()));
    let (access_tx, access_rx) = watch::channel(Arc::new(initial));
    let spawned = std::thread::Builder::new()
        .name("gateway-state".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            if upstreams_tx.is_closed() && access_tx.is_closed() {
                return;
            }
            match chainfleet_control::upstreams_in(&store) {
                Ok(now) if now != upstreams => {
                    let _ = upstreams_tx.send(Arc::new(now.clone()));
                    upstreams = now;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "cannot read upstreams"),
            }
            match store.meta("manifest") {
                Ok(now) if now != manifest => {
                    if let Some(map) = now.as_deref().and_then(access_from_manifest) {
                        let _ = access_tx.send(Arc::new(map));
                    }
                    manifest = now;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "cannot read the manifest"),
            }
        });
    spawned.map_err(|source| GatewayError::Io {
        action: "start the state poller thread".into(),
        source,
    })?;
    Ok((upstreams_rx, access_rx))
}
