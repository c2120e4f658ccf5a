//! What the gateway routes to: instances, their replicas and policies, and
//! the live keys. Rebuilt from each upstream snapshot, manifest and key change.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use chainfleet_chains::{Adapter, MethodInfo};
use chainfleet_control::UpstreamSnapshot;
use chainfleet_spec::access::Access;
use http::{HeaderValue, Uri};
use ipnet::IpNet;
use prometheus_client::metrics::histogram::Histogram;

use crate::keys::{self, KeyInfo, KeyStore};
use crate::limits::KeyUsage;
use crate::metrics::InstanceLabels;
use crate::policy::Policy;
use crate::{AccessMap, GatewayError, Inner};

/// Health bookkeeping of one node, kept across snapshots.
#[derive(Debug, Default)]
pub(crate) struct NodeState {
    /// Requests in flight to it.
    pub inflight: AtomicU32,
    /// Consecutive failures.
    pub failures: AtomicU32,
    /// Its circuit is open until this time (gateway ms).
    pub open_until_ms: AtomicU64,
}

impl NodeState {
    /// Record a success: close the circuit.
    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Record a failure; open the circuit after `threshold` in a row.
    /// Returns true when this failure opened it.
    pub fn failure(&self, threshold: u32, now_ms: u64, open_ms: u64) -> bool {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures >= threshold.max(1) {
            self.open_until_ms
                .store(now_ms.saturating_add(open_ms), Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Whether its circuit lets requests through at `now_ms`.
    pub fn closed(&self, now_ms: u64) -> bool {
        self.open_until_ms.load(Ordering::Relaxed) <= now_ms
    }
}

/// One replica the gateway may send to.
pub(crate) struct Slot {
    /// Node name.
    pub node: String,
    /// Base URL, e.g. `http://127.0.0.1:18443` (no credentials).
    pub base: String,
    /// The JSON-RPC URI.
    pub rpc_uri: Uri,
    /// `Authorization` header for the node, if it needs one. Never logged.
    pub auth: Option<HeaderValue>,
    /// Up and within `maxLag` blocks of the best height in the last snapshot.
    pub eligible: bool,
    /// Live health.
    pub state: Arc<NodeState>,
}

/// One instance as the gateway serves it.
pub(crate) struct InstanceRoute {
    /// Instance name.
    pub name: String,
    /// Its chain's adapter.
    pub adapter: Adapter,
    /// Its catalog, by method name.
    pub methods: HashMap<&'static str, &'static MethodInfo>,
    /// Its `access:` section.
    pub access: Access,
    /// The compiled instance policy.
    pub policy: Policy,
    /// Its replicas.
    pub slots: Vec<Slot>,
    /// The highest head among its eligible replicas in the last snapshot:
    /// what "deep enough" is measured against before an answer is cached.
    pub best_height: Option<u64>,
    /// Its latency histogram.
    pub latency: Histogram,
}

impl InstanceRoute {
    /// The catalog name of a method for metrics (bounded: names not in the catalog are `other`).
    pub fn method_label(&self, method: &str) -> &'static str {
        self.methods.get(method).map(|m| m.name).unwrap_or("other")
    }

    /// Replicas that are eligible by the last snapshot.
    pub fn healthy(&self) -> usize {
        self.slots.iter().filter(|s| s.eligible).count()
    }
}

/// Every routed instance.
#[derive(Default)]
pub(crate) struct Routes {
    /// By instance name.
    pub instances: HashMap<String, Arc<InstanceRoute>>,
    /// Instances of the manifest that have no nodes in the snapshot yet
    /// (just applied): answered 503, not "unknown instance".
    pub waiting: HashSet<String>,
}

/// A key as the gateway checks it.
pub(crate) struct LiveKey {
    /// The SHA-256 of the key: its entry in the live key map.
    pub hash: [u8; 32],
    /// Its settings.
    pub info: KeyInfo,
    /// Its compiled policy.
    pub policy: Policy,
    /// Networks it may be used from (empty: any).
    pub cidrs: Vec<IpNet>,
    /// Its live usage (bucket, in-flight), kept across reloads.
    pub usage: Arc<KeyUsage>,
}

impl LiveKey {
    /// Whether `ip` may use the key.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.cidrs.is_empty() || self.cidrs.iter().any(|net| net.contains(&ip))
    }
}

/// Basic auth header value for a node.
fn basic_auth(user: &str, password: &str) -> Option<HeaderValue> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let bytes = input.as_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    let mut value = HeaderValue::from_str(&out).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Rebuild the routes from a snapshot and the access sections.
pub(crate) fn rebuild(inner: &Inner, snapshot: &UpstreamSnapshot, access: &AccessMap) {
    let mut by_instance: HashMap<&str, Vec<&chainfleet_control::Upstream>> = HashMap::new();
    for upstream in &snapshot.upstreams {
        by_instance
            .entry(upstream.status.instance.as_str())
            .or_default()
            .push(upstream);
    }
    let mut node_states = inner.node_states.lock();
    let mut instances = HashMap::new();
    for (name, upstreams) in &by_instance {
        let Some(first) = upstreams.first() else {
            continue;
        };
        let adapter = Adapter::for_chain(first.chain);
        let instance_access = access.get(*name).cloned().unwrap_or_default();
        let mut slots = Vec::new();
        let mut best_height: Option<u64> = None;
        for upstream in upstreams {
            let base = upstream.endpoint.url.trim_end_matches('/').to_string();
            let Ok(rpc_uri) = format!("{base}{}", adapter.rpc_path()).parse::<Uri>() else {
                tracing::warn!(node = %upstream.status.name, "node URL is not a valid URI; skipped");
                continue;
            };
            let status = &upstream.status;
            let eligible =
                status.state == "healthy" && status.lag.unwrap_or(0) <= instance_access.max_lag;
            // Only replicas the gateway would route to count: a node that is
            // down or far off may report a head nobody else has.
            if eligible {
                best_height = best_height.max(status.height);
            }
            let state = node_states
                .entry(status.name.clone())
                .or_insert_with(|| Arc::new(NodeState::default()))
                .clone();
            slots.push(Slot {
                node: status.name.clone(),
                base,
                rpc_uri,
                auth: upstream
                    .endpoint
                    .basic_auth
                    .as_ref()
                    .and_then(|(user, password)| basic_auth(user, password)),
                eligible,
                state,
            });
        }
        let route = InstanceRoute {
            name: name.to_string(),
            adapter,
            methods: adapter.catalog().iter().map(|m| (m.name, m)).collect(),
            policy: Policy::new(&instance_access.allow, &instance_access.deny),
            access: instance_access,
            slots,
            best_height,
            latency: inner
                .metrics
                .latency
                .get_or_create(&InstanceLabels {
                    instance: name.to_string(),
                })
                .clone(),
        };
        instances.insert(name.to_string(), Arc::new(route));
    }
    let live: std::collections::HashSet<&str> = snapshot
        .upstreams
        .iter()
        .map(|u| u.status.name.as_str())
        .collect();
    node_states.retain(|name, _| live.contains(name.as_str()));
    drop(node_states);
    for (name, route) in &instances {
        tracing::debug!(instance = %name, replicas = route.slots.len(), healthy = route.healthy(), best_height = ?route.best_height, "route updated");
    }
    let waiting = access
        .keys()
        .filter(|name| !instances.contains_key(*name))
        .cloned()
        .collect();
    *inner.routes.write() = Arc::new(Routes { instances, waiting });
}

/// Reload the active keys from the database; returns how many there are.
pub(crate) fn reload_keys(inner: &Inner, store: &KeyStore) -> Result<usize, GatewayError> {
    let active = store.active()?;
    let mut usages = inner.usages.lock();
    let mut map = HashMap::new();
    for (hash, info) in active {
        let Some(hash) = keys::unhex32(&hash) else {
            tracing::warn!(key_id = %info.id, "stored key hash is malformed; key skipped");
            continue;
        };
        let cidrs = match keys::parse_cidrs(&info.cidrs) {
            Ok(cidrs) => cidrs,
            Err(err) => {
                tracing::warn!(key_id = %info.id, error = %err, "key skipped");
                continue;
            }
        };
        let usage = usages
            .entry(info.id.clone())
            .or_insert_with(|| Arc::new(KeyUsage::default()))
            .clone();
        map.insert(
            hash,
            Arc::new(LiveKey {
                hash,
                policy: Policy::new(&info.allow, &info.deny),
                cidrs,
                usage,
                info,
            }),
        );
    }
    let ids: std::collections::HashSet<String> = map
        .values()
        .map(|key: &Arc<LiveKey>| key.info.id.clone())
        .collect();
    usages.retain(|id, _| ids.contains(id));
    drop(usages);
    let count = map.len();
    *inner.keys.write() = Arc::new(map);
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_standard_base64() {
        let value = basic_auth("Aladdin", "open sesame").expect("header");
        assert_eq!(
            value.to_str().ok(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        assert_eq!(
            basic_auth("a", "b").and_then(|v| v.to_str().ok().map(str::to_string)),
            Some("Basic YTpi".to_string())
        );
    }

    #[test]
    fn breaker_opens_after_repeated_failures_and_closes_in_time() {
        let state = NodeState::default();
        assert!(!state.failure(3, 0, 1000));
        assert!(!state.failure(3, 0, 1000));
        assert!(state.failure(3, 10, 1000));
        assert!(!state.closed(500));
        assert!(state.closed(1010));
        state.success();
        assert!(!state.failure(3, 2000, 1000));
    }
}
