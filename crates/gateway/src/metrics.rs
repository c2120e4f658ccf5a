//! The gateway's Prometheus metrics, served on its own `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of one counted call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// Instance name (or `-` when unknown).
    pub instance: String,
    /// Method name from the catalog, `other` for names not in it, `-` before parsing.
    pub method: String,
    /// Key id, or `-` before a key was recognised.
    pub key_id: String,
    /// ok, error, denied, cached, invalid, unauthorized, forbidden, limited,
    /// too_large, unknown_instance, unavailable, upstream_failed, overloaded.
    pub outcome: String,
}

/// Labels of an instance.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// Instance name.
    pub instance: String,
}

/// Labels of an upstream error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Instance name.
    pub instance: String,
    /// Node name.
    pub node: String,
    /// connect, timeout, status, bad_answer.
    pub kind: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Every gateway metric.
pub struct Metrics {
    registry: Registry,
    /// Calls by instance, method, key id and outcome.
    pub calls: Family<CallLabels, Counter>,
    /// HTTP request latency by instance.
    pub latency: Family<InstanceLabels, Histogram, fn() -> Histogram>,
    /// Failed upstream requests.
    pub upstream_errors: Family<UpstreamLabels, Counter>,
    /// Calls answered from the cache.
    pub cache_hits: Family<InstanceLabels, Counter>,
    /// Calls of cacheable methods not answered from the cache (including
    /// ones whose answer is not deep enough yet, or never settles, e.g. `latest`).
    pub cache_misses: Family<InstanceLabels, Counter>,
    /// Calls merged into an identical call in flight.
    pub coalesced: Family<InstanceLabels, Counter>,
    /// Retries of reads on another replica.
    pub retries: Family<InstanceLabels, Counter>,
    /// WebSocket sessions opened.
    pub ws_sessions: Family<InstanceLabels, Counter>,
    /// WebSocket sessions open now.
    pub ws_open: Family<InstanceLabels, Gauge>,
    /// WebSocket sessions moved to another replica.
    pub ws_failovers: Family<InstanceLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chainfleet_gateway");
        let calls = Family::<CallLabels, Counter>::default();
        let latency = Family::<InstanceLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        let cache_hits = Family::<InstanceLabels, Counter>::default();
        let cache_misses = Family::<InstanceLabels, Counter>::default();
        let coalesced = Family::<InstanceLabels, Counter>::default();
        let retries = Family::<InstanceLabels, Counter>::default();
        let ws_sessions = Family::<InstanceLabels, Counter>::default();
        let ws_open = Family::<InstanceLabels, Gauge>::default();
        let ws_failovers = Family::<InstanceLabels, Counter>::default();
        registry.register(
            "calls",
            "JSON-RPC calls by instance, method, key id and outcome",
            calls.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to answer, by instance",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed requests to nodes, by kind",
            upstream_errors.clone(),
        );
        registry.register(
            "cache_hits",
            "Calls answered from the cache",
            cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Calls of cacheable methods that were not answered from the cache",
            cache_misses.clone(),
        );
        registry.register(
            "coalesced",
            "Calls merged into an identical call in flight",
            coalesced.clone(),
        );
        registry.register(
            "retries",
            "Reads retried on another replica",
            retries.clone(),
        );
        registry.register(
            "ws_sessions",
            "WebSocket sessions opened",
            ws_sessions.clone(),
        );
        registry.register("ws_open", "WebSocket sessions open now", ws_open.clone());
        registry.register(
            "ws_failovers",
            "WebSocket sessions moved to another replica, subscriptions reopened",
            ws_failovers.clone(),
        );
        Metrics {
            registry,
            calls,
            latency,
            upstream_errors,
            cache_hits,
            cache_misses,
            coalesced,
            retries,
            ws_sessions,
            ws_open,
            ws_failovers,
        }
    }
}

impl Metrics {
    /// Count one call.
    pub fn call(&self, instance: &str, method: &str, key_id: &str, outcome: &str) {
        self.calls
            .get_or_create(&CallLabels {
                instance: instance.to_string(),
                method: method.to_string(),
                key_id: key_id.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Count an instance-labelled event.
    pub fn inc(family: &Family<InstanceLabels, Counter>, instance: &str) {
        family
            .get_or_create(&InstanceLabels {
                instance: instance.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %err, "cannot encode gateway metrics");
        }
        out
    }
}
