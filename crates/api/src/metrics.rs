//! Prometheus metrics rendered from the latest status snapshot.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    instance: String,
    replica: String,
    chain: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    rule: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Health, alert and control-plane metrics of a snapshot.
fn register_health(registry: &mut Registry, snapshot: &FleetSnapshot) {
    let health = Family::<HealthLabels, Gauge>::default();
    let stale = Family::<NodeLabels, FloatGauge>::default();
    let interval = Family::<NodeLabels, FloatGauge>::default();
    let forked = Family::<NodeLabels, Gauge>::default();
    let disk = Family::<NodeLabels, FloatGauge>::default();
    let probe = Family::<NodeLabels, FloatGauge>::default();
    for node in &snapshot.nodes {
        let labels = NodeLabels {
            instance: node.instance.clone(),
            replica: node.replica.to_string(),
            chain: node.chain.clone(),
        };
        for state in chainfleet_control::health::Health::ALL {
            health
                .get_or_create(&HealthLabels {
                    instance: node.instance.clone(),
                    replica: node.replica.to_string(),
                    chain: node.chain.clone(),
                    state: state.as_str().into(),
                })
                .set(i64::from(node.health == state.as_str()));
        }
        forked.get_or_create(&labels).set(i64::from(node.forked));
        if let Some(value) = node.stale_seconds {
            stale.get_or_create(&labels).set(value);
        }
        if let Some(value) = node.block_interval_seconds {
            interval.get_or_create(&labels).set(value);
        }
        if let Some(value) = node.disk_used_percent {
            disk.get_or_create(&labels).set(value);
        }
        if let Some(value) = node.probe_seconds {
            probe.get_or_create(&labels).set(value);
        }
    }
    let alerts = Family::<AlertLabels, Gauge>::default();
    for alert in &snapshot.alerts {
        if alert.status == chainfleet_control::alerts::AlertStatus::Firing {
            alerts
                .get_or_create(&AlertLabels {
                    rule: alert.rule.clone(),
                    severity: alert.severity.as_str().into(),
                })
                .inc();
        }
    }
    registry.register(
        "node_health",
        "1 for the node's derived health state (healthy, syncing, lagging, stalled, forked, down, crash-looping, pending)",
        health,
    );
    registry.register(
        "node_stale_seconds",
        "Seconds since the node's head last changed, as seen by the control plane",
        stale,
    );
    registry.register(
        "node_block_interval_seconds",
        "Expected seconds between blocks",
        interval,
    );
    registry.register(
        "node_forked",
        "1 when the node's block at a common height differs from the majority's",
        forked,
    );
    registry.register(
        "node_disk_used_percent",
        "Percent of the data dir's file system in use",
        disk,
    );
    registry.register(
        "node_probe_seconds",
        "Duration of the node's last status probe",
        probe,
    );
    registry.register(
        "alerts_firing",
        "Firing alerts by rule and severity",
        alerts,
    );
    let control = &snapshot.control;
    let round = FloatGauge::default();
    round.set(control.probe_round_seconds);
    registry.register(
        "probe_round_seconds",
        "Duration of the last probe round (probes, fork checks)",
        round,
    );
    let evaluation = FloatGauge::default();
    evaluation.set(control.evaluation_seconds);
    registry.register(
        "health_evaluation_seconds",
        "CPU-bound time of the last health and alert evaluation",
        evaluation,
    );
    let reconcile_errors = Counter::<u64>::default();
    reconcile_errors.inc_by(control.reconcile_errors);
    registry.register(
        "reconcile_errors",
        "Reconcile passes that failed since the control plane started",
        reconcile_errors,
    );
    let probe_failures = Counter::<u64>::default();
    probe_failures.inc_by(control.probe_failures);
    registry.register(
        "probe_failures",
        "Node probes that failed since the control plane started",
        probe_failures,
    );
    let notifications = Family::<ResultLabels, Counter<u64>>::default();
    notifications
        .get_or_create(&ResultLabels {
            result: "sent".into(),
        })
        .inc_by(control.notifications_sent);
    notifications
        .get_or_create(&ResultLabels {
            result: "failed".into(),
        })
        .inc_by(control.notifications_failed);
    registry.register(
        "notifications",
        "Alert notifications by result",
        notifications,
    );
    let restarts = Counter::<u64>::default();
    restarts.inc_by(snapshot.nodes.iter().map(|n| u64::from(n.restarts)).sum());
    registry.register(
        "restarts",
        "Node restarts after crashes, all nodes",
        restarts,
    );
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
    register_health(&mut registry, snapshot);
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
            health: "stalled".into(),
            stale_seconds: Some(7.5),
            ..NodeStatus::default()
        };
        let text = render(&FleetSnapshot {
            fleet: "f".into(),
            generated_ms: 0,
            nodes: vec![node],
            ..FleetSnapshot::default()
        });
        let labels = "{instance=\"ltc\",replica=\"1\",chain=\"litecoin\"}";
        for line in [
            format!("chainfleet_node_up{labels} 1"),
            format!("chainfleet_node_height{labels} 42"),
            format!("chainfleet_node_peers{labels} 2"),
            format!("chainfleet_node_head_age_seconds{labels} 3"),
            format!("chainfleet_node_stale_seconds{labels} 7.5"),
            "chainfleet_node_health{instance=\"ltc\",replica=\"1\",chain=\"litecoin\",state=\"stalled\"} 1".to_string(),
            "chainfleet_reconcile_errors_total 0".to_string(),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }
}
