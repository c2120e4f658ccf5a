//! Prometheus metrics rendered from the latest status snapshot.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use chainfleet_control::FleetSnapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    instance: String,
    replica: String,
    chain: String,
}

/// The Prometheus text exposition of a snapshot.
pub fn render(snapshot: &FleetSnapshot) -> String {
    let mut registry = Registry::with_prefix("chainfleet");
    let up = Family::<NodeLabels, Gauge>::default();
    let height = Family::<NodeLabels, Gauge>::default();
    let peers = Family::<NodeLabels, Gauge>::default();
    let head_age = Family::<NodeLabels, Gauge>::default();
    let lag = Family::<NodeLabels, Gauge>::default();
    let restarts = Family::<NodeLabels, Gauge>::default();
    for node in &snapshot.nodes {
        let labels = NodeLabels {
            instance: node.instance.clone(),
            replica: node.replica.to_string(),
            chain: node.chain.clone(),
        };
        let is_up = matches!(node.state.as_str(), "healthy" | "syncing" | "updating");
        up.get_or_create(&labels).set(i64::from(is_up));
        restarts
            .get_or_create(&labels)
            .set(i64::from(node.restarts));
        if let Some(value) = node.height {
            height.get_or_create(&labels).set(clamp(value));
        }
        if let Some(value) = node.peers {
            peers.get_or_create(&labels).set(i64::from(value));
        }
        if let Some(value) = node.head_age_seconds {
            head_age.get_or_create(&labels).set(clamp(value));
        }
        if let Some(value) = node.lag {
            lag.get_or_create(&labels).set(clamp(value));
        }
    }
    registry.register("node_up", "1 when the node answers its probe", up);
    registry.register("node_height", "Best block height", height);
    registry.register("node_peers", "Connected peers", peers);
    registry.register(
        "node_head_age_seconds",
        "Seconds since the best block's timestamp",
        head_age,
    );
    registry.register(
        "node_lag_blocks",
        "Blocks behind the best node of its network",
        lag,
    );
    registry.register("node_restarts", "Restarts after crashes", restarts);
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out = "# error encoding metrics\n".into();
    }
    out
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainfleet_control::NodeStatus;

    #[test]
    fn gauges_carry_instance_replica_and_chain() {
        let node = NodeStatus {
            name: "ltc-1".into(),
            instance: "ltc".into(),
            replica: 1,
            chain: "litecoin".into(),
            network: "regtest".into(),
            role: "full".into(),
            state: "healthy".into(),
            height: Some(42),
            best_hash: Some("ab".into()),
            lag: Some(0),
            peers: Some(2),
            head_age_seconds: Some(3),
            syncing: Some(false),
            pid: Some(1),
            uptime_seconds: Some(1),
            restarts: 0,
            client_version: None,
            rpc_port: 1,
            p2p_port: 2,
            last_error: None,
            log_tail: Vec::new(),
            updated_ms: 0,
        };
        let text = render(&FleetSnapshot {
            fleet: "f".into(),
            generated_ms: 0,
            nodes: vec![node],
        });
        let labels = "{instance=\"ltc\",replica=\"1\",chain=\"litecoin\"}";
        for line in [
            format!("chainfleet_node_up{labels} 1"),
            format!("chainfleet_node_height{labels} 42"),
            format!("chainfleet_node_peers{labels} 2"),
            format!("chainfleet_node_head_age_seconds{labels} 3"),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }
}
