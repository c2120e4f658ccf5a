//! The alert engine: built-in rules over the health model, with per-family
//! defaults and manifest overrides, `for` durations, repeat intervals and
//! resolved notices.
//!
//! [`AlertEngine::evaluate`] is pure (time is passed in) so tests and
//! benchmarks drive it directly. [`Monitor`] ties health, alerts and
//! notifiers to the controller's probe round.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfleet_chains::{Adapter, Endpoint, RpcClient};
use chainfleet_spec::alerting::{AlertRule, Alerting, RuleSettings};
use chainfleet_spec::Fleet;
use serde::{Deserialize, Serialize};

use crate::health::{Health, HealthEngine, NodeHealth, NodeInput, ReferenceInput, Source};
use crate::notify::Notifier;
use crate::plan::DesiredNode;
use crate::store::now_ms;

/// Resolved alerts kept for `chainfleet alerts`.
const RESOLVED_KEPT: usize = 200;
/// How often firing alerts are pushed again to Alertmanager (it expires
/// alerts that are not re-sent).
const ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);

/// Severity of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Look at it soon.
    Warning,
    /// Look at it now.
    Critical,
}

impl Severity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition holds, but not yet for its `for` duration.
    Pending,
    /// Firing: notified.
    Firing,
    /// The condition no longer holds.
    Resolved,
}

/// One alert, as served by `GET /v1/alerts` and sent to notifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable identity: `RULE/SUBJECT`.
    pub id: String,
    /// Rule name, e.g. `nodeDown`.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// Pending, firing or resolved.
    pub status: AlertStatus,
    /// Node it concerns, if any.
    pub node: Option<String>,
    /// Instance of that node.
    pub instance: Option<String>,
    /// Chain of that node.
    pub chain: Option<String>,
    /// Producer group it concerns, if any.
    pub group: Option<String>,
    /// What is wrong.
    pub summary: String,
    /// The measured value (blocks, intervals, peers, percent), if any.
    pub value: Option<f64>,
    /// When the condition began (Unix ms).
    pub started_ms: i64,
    /// When it started firing (Unix ms).
    pub fired_ms: Option<i64>,
    /// When it resolved (Unix ms).
    pub resolved_ms: Option<i64>,
}

/// Effective settings of one rule for one subject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleConfig {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Warning threshold (unit depends on the rule).
    pub warning: Option<f64>,
    /// Critical threshold.
    pub critical: Option<f64>,
    /// How long the condition must hold.
    pub for_duration: Duration,
    /// How often a firing alert is re-sent.
    pub repeat_interval: Duration,
    /// Whether resolution is notified.
    pub send_resolved: bool,
}

/// Built-in defaults of a rule, given a node's chain defaults, then the manifest's overrides.
pub fn rule_config(
    rule: AlertRule,
    health: Option<&NodeHealth>,
    overrides: Option<&RuleSettings>,
) -> RuleConfig {
    let defaults = health.and_then(|h| h.defaults);
    let repeat = Duration::from_secs(3600);
    let mut config = RuleConfig {
        enabled: true,
        warning: None,
        critical: None,
        for_duration: Duration::ZERO,
        repeat_interval: repeat,
        send_resolved: true,
    };
    match rule {
        AlertRule::NodeDown | AlertRule::Forked | AlertRule::CrashLoop => {}
        AlertRule::Stalled => {
            config.warning = defaults.map(|d| d.stall_warning_intervals);
            config.critical = defaults.map(|d| d.stall_critical_intervals);
        }
        AlertRule::Lagging => {
            config.warning = defaults.map(|d| d.lag_warning_blocks as f64);
            config.critical = defaults.map(|d| d.lag_critical_blocks as f64);
            config.for_duration = defaults.map(|d| d.lag_for).unwrap_or_default();
        }
        AlertRule::LowPeers => {
            config.warning = defaults.map(|d| f64::from(d.min_peers_warning));
            config.critical = defaults.map(|d| f64::from(d.min_peers_critical));
            config.for_duration = defaults.map(|d| d.peers_for).unwrap_or_default();
        }
        AlertRule::DiskFull => {
            config.warning = Some(85.0);
            config.critical = Some(95.0);
            config.for_duration = Duration::from_secs(30);
        }
        AlertRule::ProducerGroupInactive => {
            config.for_duration = Duration::from_secs(5);
        }
    }
    if let Some(o) = overrides {
        if let Some(enabled) = o.enabled {
            config.enabled = enabled;
        }
        if o.warning.is_some() {
            config.warning = o.warning;
        }
        if o.critical.is_some() {
            config.critical = o.critical;
        }
        if let Some(d) = o.for_duration {
            config.for_duration = d.get();
        }
        if let Some(d) = o.repeat_interval {
            config.repeat_interval = d.get();
        }
        if let Some(s) = o.send_resolved {
            config.send_resolved = s;
        }
    }
    config
}

/// A condition that holds in this round.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The rule.
    pub rule: AlertRule,
    /// Node name or group name.
    pub subject: String,
    /// Its severity now.
    pub severity: Severity,
    /// What is wrong.
    pub summary: String,
    /// The measured value.
    pub value: Option<f64>,
    /// The rule's settings for this subject.
    pub config: RuleConfig,
    /// Node labels, when it concerns a node.
    pub node: Option<(String, String, String)>,
    /// Group, when it concerns a producer group.
    pub group: Option<String>,
}

/// Severity of `value` against thresholds; `below` for rules that fire under the threshold.
fn grade(value: f64, config: &RuleConfig, below: bool) -> Option<Severity> {
    let crosses = |threshold: f64| {
        if below {
            value < threshold
        } else {
            value >= threshold
        }
    };
    if config.critical.is_some_and(crosses) {
        Some(Severity::Critical)
    } else if config.warning.is_some_and(crosses) {
        Some(Severity::Warning)
    } else {
        None
    }
}

/// The input of one node to the rules.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    /// Node name.
    pub name: &'a str,
    /// Instance.
    pub instance: &'a str,
    /// Chain name.
    pub chain: &'a str,
    /// Whether its network is a local devnet.
    pub local: bool,
    /// Its health this round.
    pub health: &'a NodeHealth,
}

/// Every condition that holds this round, from node health and group states.
pub fn conditions(
    nodes: &[NodeFacts<'_>],
    groups: &BTreeMap<String, bool>,
    alerting: &Alerting,
) -> Vec<Condition> {
    let mut out = Vec::new();
    for facts in nodes {
        let h = facts.health;
        let labels = || {
            Some((
                facts.name.to_string(),
                facts.instance.to_string(),
                facts.chain.to_string(),
            ))
        };
        let mut push = |rule: AlertRule,
                        severity: Severity,
                        summary: String,
                        value: Option<f64>,
                        config: RuleConfig| {
            out.push(Condition {
                rule,
                subject: facts.name.to_string(),
                severity,
                summary,
                value,
                config,
                node: labels(),
                group: None,
            });
        };
        let config_of = |rule: AlertRule| rule_config(rule, Some(h), alerting.rules.get(&rule));
        let reason = || h.reason.clone().unwrap_or_default();
        match h.state {
            Health::Down => {
                let config = config_of(AlertRule::NodeDown);
                if config.enabled {
                    push(
                        AlertRule::NodeDown,
                        Severity::Critical,
                        format!("{} is down: {}", facts.name, reason()),
                        None,
                        config,
                    );
                }
                continue;
            }
            Health::CrashLooping => {
                let config = config_of(AlertRule::CrashLoop);
                if config.enabled {
                    push(
                        AlertRule::CrashLoop,
                        Severity::Critical,
                        format!("{} is crash-looping: {}", facts.name, reason()),
                        None,
                        config,
                    );
                }
                continue;
            }
            Health::Pending => continue,
            _ => {}
        }
        if h.forked {
            let config = config_of(AlertRule::Forked);
            if config.enabled {
                push(
                    AlertRule::Forked,
                    Severity::Critical,
                    format!("{} is on a fork: {}", facts.name, reason()),
                    None,
                    config,
                );
            }
        }
        if let (Some(stale), Some(interval)) = (h.stale_seconds, h.block_interval_seconds) {
            let config = config_of(AlertRule::Stalled);
            let intervals = if interval > 0.0 {
                stale / interval
            } else {
                0.0
            };
            if let Some(severity) = grade(intervals, &config, false).filter(|_| config.enabled) {
                push(
                    AlertRule::Stalled,
                    severity,
                    format!("{}: head unchanged for {stale:.0}s ({intervals:.1} block intervals of {interval}s)", facts.name),
                    Some(intervals),
                    config,
                );
            }
        }
        if let Some(lag) = h.lag {
            let config = config_of(AlertRule::Lagging);
            if let Some(severity) = grade(lag as f64, &config, false).filter(|_| config.enabled) {
                push(
                    AlertRule::Lagging,
                    severity,
                    format!(
                        "{} is {lag} blocks behind the quorum height {}",
                        facts.name,
                        h.quorum_height.unwrap_or(0)
                    ),
                    Some(lag as f64),
                    config,
                );
            }
        }
        // On a devnet a node alone in its network has nobody to peer with.
        if let Some(peers) = h.peers.filter(|_| !facts.local || h.group_size > 1) {
            let config = config_of(AlertRule::LowPeers);
            if let Some(severity) =
                grade(f64::from(peers), &config, true).filter(|_| config.enabled)
            {
                push(
                    AlertRule::LowPeers,
                    severity,
                    format!("{} has {peers} peers", facts.name),
                    Some(f64::from(peers)),
                    config,
                );
            }
        }
        if let Some(percent) = h.disk_used_percent {
            let config = config_of(AlertRule::DiskFull);
            if let Some(severity) = grade(percent, &config, false).filter(|_| config.enabled) {
                push(
                    AlertRule::DiskFull,
                    severity,
                    format!("{}: data-dir disk {percent:.1}% full", facts.name),
                    Some(percent),
                    config,
                );
            }
        }
    }
    let rule = AlertRule::ProducerGroupInactive;
    let config = rule_config(rule, None, alerting.rules.get(&rule));
    if config.enabled {
        for (group, has_active) in groups {
            if !has_active {
                out.push(Condition {
                    rule,
                    subject: group.clone(),
                    severity: Severity::Critical,
                    summary: format!("producer group {group} has no active producer"),
                    value: None,
                    config,
                    node: None,
                    group: Some(group.clone()),
                });
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Tracked {
    alert: Alert,
    since: Instant,
    last_sent: Option<Instant>,
    config: RuleConfig,
}

/// What one evaluation changed.
#[derive(Debug, Default)]
pub struct Transitions {
    /// Alerts to notify (firing, re-sent, escalated or resolved).
    pub notify: Vec<Alert>,
    /// Alerts that started firing or resolved, for the event log.
    pub changed: Vec<Alert>,
}

/// Alert state across rounds.
#[derive(Debug, Default)]
pub struct AlertEngine {
    active: HashMap<String, Tracked>,
    resolved: VecDeque<Alert>,
}

impl AlertEngine {
    /// An engine with no alerts.
    pub fn new() -> Self {
        AlertEngine::default()
    }

    /// Advance every alert given the conditions that hold at `now`.
    pub fn evaluate(
        &mut self,
        conditions: Vec<Condition>,
        now: Instant,
        now_ms: i64,
    ) -> Transitions {
        let mut out = Transitions::default();
        let mut seen = std::collections::HashSet::with_capacity(conditions.len());
        for c in conditions {
            let id = format!("{}/{}", c.rule.as_str(), c.subject);
            seen.insert(id.clone());
            let tracked = self.active.entry(id.clone()).or_insert_with(|| Tracked {
                alert: Alert {
                    id,
                    rule: c.rule.as_str().to_string(),
                    severity: c.severity,
                    status: AlertStatus::Pending,
                    node: c.node.as_ref().map(|n| n.0.clone()),
                    instance: c.node.as_ref().map(|n| n.1.clone()),
                    chain: c.node.as_ref().map(|n| n.2.clone()),
                    group: c.group.clone(),
                    summary: String::new(),
                    value: None,
                    started_ms: now_ms,
                    fired_ms: None,
                    resolved_ms: None,
                },
                since: now,
                last_sent: None,
                config: c.config,
            });
            let escalated = tracked.alert.severity != c.severity;
            tracked.alert.severity = c.severity;
            tracked.alert.summary = c.summary;
            tracked.alert.value = c.value;
            tracked.config = c.config;
            match tracked.alert.status {
                AlertStatus::Pending | AlertStatus::Resolved => {
                    if now.saturating_duration_since(tracked.since) >= c.config.for_duration {
                        tracked.alert.status = AlertStatus::Firing;
                        tracked.alert.fired_ms = Some(now_ms);
                        tracked.last_sent = Some(now);
                        out.notify.push(tracked.alert.clone());
                        out.changed.push(tracked.alert.clone());
                    }
                }
                AlertStatus::Firing => {
                    let due = tracked.last_sent.is_none_or(|t| {
                        now.saturating_duration_since(t) >= c.config.repeat_interval
                    });
                    if escalated || due {
                        tracked.last_sent = Some(now);
                        out.notify.push(tracked.alert.clone());
                        if escalated {
                            out.changed.push(tracked.alert.clone());
                        }
                    }
                }
            }
        }
        let gone: Vec<String> = self
            .active
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            let Some(mut tracked) = self.active.remove(&id) else {
                continue;
            };
            if tracked.alert.status != AlertStatus::Firing {
                continue; // pending only: never notified, forget it
            }
            tracked.alert.status = AlertStatus::Resolved;
            tracked.alert.resolved_ms = Some(now_ms);
            if tracked.config.send_resolved {
                out.notify.push(tracked.alert.clone());
            }
            out.changed.push(tracked.alert.clone());
            self.resolved.push_front(tracked.alert);
            self.resolved.truncate(RESOLVED_KEPT);
        }
        out
    }

    /// Active (pending and firing) alerts, then recently resolved ones.
    pub fn list(&self) -> Vec<Alert> {
        let mut active: Vec<Alert> = self.active.values().map(|t| t.alert.clone()).collect();
        active.sort_by(|a, b| a.id.cmp(&b.id));
        active.extend(self.resolved.iter().cloned());
        active
    }

    /// Firing alerts only.
    pub fn firing(&self) -> Vec<Alert> {
        self.active
            .values()
            .filter(|t| t.alert.status == AlertStatus::Firing)
            .map(|t| t.alert.clone())
            .collect()
    }
}

/// Control-plane figures for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlStats {
    /// Duration of the last probe round, seconds.
    pub probe_round_seconds: f64,
    /// Duration of the last health and alert evaluation, seconds.
    pub evaluation_seconds: f64,
    /// Reconcile errors since the control plane started.
    pub reconcile_errors: u64,
    /// Failed probes since the control plane started.
    pub probe_failures: u64,
    /// Notifications delivered.
    pub notifications_sent: u64,
    /// Notifications that failed.
    pub notifications_failed: u64,
}

/// The observation of one node the controller hands to [`Monitor::round`].
#[derive(Debug, Clone)]
pub struct Observed {
    /// Supervisor state word.
    pub state: &'static str,
    /// This round's probe, when it succeeded.
    pub probe: Option<chainfleet_chains::ProbeStatus>,
}

/// What a round produced, for the snapshot and the event log.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// Health per desired node, same order.
    pub health: Vec<NodeHealth>,
    /// Active and recent alerts.
    pub alerts: Vec<Alert>,
    /// Events to record: node, kind, message.
    pub events: Vec<(Option<String>, &'static str, String)>,
    /// Control-plane figures.
    pub stats: ControlStats,
}

struct MonitorState {
    health: HealthEngine,
    alerts: AlertEngine,
    last_words: HashMap<String, Health>,
    last_alertmanager_push: Option<Instant>,
    events: tokio::sync::broadcast::Receiver<crate::Event>,
    stats: ControlStats,
}

/// Health, alerts and notifications, driven once per probe round.
pub struct Monitor {
    state: tokio::sync::Mutex<MonitorState>,
    groups: Mutex<BTreeMap<String, bool>>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    probe_failures: AtomicU64,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor that counts reconcile errors from `events`.
    pub fn new(events: tokio::sync::broadcast::Receiver<crate::Event>) -> Self {
        Monitor {
            state: tokio::sync::Mutex::new(MonitorState {
                health: HealthEngine::new(),
                alerts: AlertEngine::new(),
                last_words: HashMap::new(),
                last_alertmanager_push: None,
                events,
                stats: ControlStats::default(),
            }),
            groups: Mutex::new(BTreeMap::new()),
            sent: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
            probe_failures: AtomicU64::new(0),
        }
    }

    /// Failover's hook: whether producer group `group` has an active member.
    /// Groups never reported are not checked. Cheap; never blocks on a round.
    pub fn set_group_state(&self, group: &str, has_active: bool) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.insert(group.to_string(), has_active);
    }

    /// Stop checking a producer group (e.g. removed from the manifest).
    pub fn forget_group(&self, group: &str) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.remove(group);
    }

    /// Count a failed probe.
    pub fn probe_failed(&self) {
        self.probe_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Assess health, evaluate alerts and dispatch notifications for one round.
    pub async fn round(
        &self,
        rpc: &RpcClient,
        fleet: Option<&Fleet>,
        desired: &[DesiredNode],
        observed: Vec<Observed>,
        timeout: Duration,
        probe_round: Duration,
    ) -> RoundReport {
        let mut state = self.state.lock().await;
        let alerting = fleet.map(|f| f.alerting.clone()).unwrap_or_default();
        // Expected block interval of local networks: the group's producer's.
        let mut local_interval: HashMap<usize, Duration> = HashMap::new();
        for node in desired {
            if let Some(production) = &node.production {
                let entry = local_interval
                    .entry(node.network_group)
                    .or_insert(production.block_interval.get());
                *entry = (*entry).min(production.block_interval.get());
            }
        }
        let nodes: Vec<NodeInput> = desired
            .iter()
            .zip(observed)
            .map(|(node, seen)| NodeInput {
                name: node.record.name.clone(),
                instance: node.record.instance.clone(),
                chain: node.chain,
                network: node.network,
                group: node.network_group,
                state: seen.state.to_string(),
                probe: seen.probe,
                local_interval: local_interval.get(&node.network_group).copied(),
                data_dir: Some(node.spec.data_dir.clone()),
            })
            .collect();
        let refs = probe_references(rpc, fleet, desired, timeout).await;
        // Fork check: fetch the hashes the vote needs, in parallel, bounded by `timeout`.
        let queries = state.health.fork_queries(&nodes, &refs);
        let mut tasks = tokio::task::JoinSet::new();
        for query in queries {
            let (adapter, endpoint) = match query.source {
                Source::Node(i) => match (desired.get(i), nodes.get(i)) {
                    (Some(d), Some(_)) => (d.adapter(), d.endpoint.clone()),
                    _ => continue,
                },
                Source::Reference(i) => match refs.get(i).and_then(|r| {
                    desired
                        .iter()
                        .find(|d| d.network_group == r.group)
                        .map(|d| (d.adapter(), reference_endpoint(&r.url)))
                }) {
                    Some(pair) => pair,
                    None => continue,
                },
            };
            let rpc = rpc.clone();
            tasks.spawn(async move {
                let answer = tokio::time::timeout(
                    timeout,
                    adapter.block_hash_at(&rpc, &endpoint, query.height),
                )
                .await;
                (query, answer)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((query, Ok(Ok(hash)))) => answers.push((query, hash)),
                Ok((query, Ok(Err(err)))) => {
                    tracing::debug!(height = query.height, error = %err, "fork check: cannot read block hash")
                }
                _ => {}
            }
        }
        let started = Instant::now();
        state.health.remember_hashes(&nodes, &refs, answers);
        let health = state.health.assess(&nodes, &refs, Instant::now());

        let facts: Vec<NodeFacts<'_>> = nodes
            .iter()
            .zip(&health)
            .map(|(n, h)| NodeFacts {
                name: &n.name,
                instance: &n.instance,
                chain: n.chain.as_str(),
                local: n.network.is_local(),
                health: h,
            })
            .collect();
        let groups = self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let conditions = conditions(&facts, &groups, &alerting);
        let now_ms = now_ms();
        let transitions = state.alerts.evaluate(conditions, Instant::now(), now_ms);

        let mut events = Vec::new();
        for (node, h) in nodes.iter().zip(&health) {
            let before = state.last_words.insert(node.name.clone(), h.state);
            let notable = |w: Health| !matches!(w, Health::Healthy | Health::Pending);
            if let Some(before) = before {
                if before != h.state && (notable(before) || notable(h.state)) {
                    events.push((
                        Some(node.name.clone()),
                        "health",
                        format!(
                            "{} -> {}{}",
                            before.as_str(),
                            h.state.as_str(),
                            h.reason
                                .as_ref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        for alert in &transitions.changed {
            let kind = match alert.status {
                AlertStatus::Resolved => "alert-resolved",
                _ => "alert-firing",
            };
            events.push((
                alert.node.clone(),
                kind,
                format!(
                    "{} {}: {}",
                    alert.severity.as_str(),
                    alert.rule,
                    alert.summary
                ),
            ));
        }

        // Notifications go out in the background: a slow receiver never delays probes.
        let channels = &alerting.channels;
        if !channels.is_empty() {
            let fleet_name = fleet.map(|f| f.metadata.name.clone()).unwrap_or_default();
            let mut batch = transitions.notify.clone();
            let resend_due = state
                .last_alertmanager_push
                .is_none_or(|t| t.elapsed() >= ALERTMANAGER_RESEND);
            let refresh = if resend_due {
                state.last_alertmanager_push = Some(Instant::now());
                state.alerts.firing()
            } else {
                Vec::new()
            };
            if !batch.is_empty() || !refresh.is_empty() {
                let notifier = Notifier::new(channels.clone(), fleet_name);
                let (sent, failed) = (self.sent.clone(), self.failed.clone());
                batch.sort_by_key(|a| a.status == AlertStatus::Resolved);
                tokio::spawn(async move {
                    let outcome = notifier.deliver(&batch, &refresh).await;
                    sent.fetch_add(outcome.sent, Ordering::Relaxed);
                    failed.fetch_add(outcome.failed, Ordering::Relaxed);
                });
            }
        }

        // Reconcile errors arrive as events; count them.
        loop {
            match state.events.try_recv() {
                Ok(event) if event.kind == "reconcile-error" => state.stats.reconcile_errors += 1,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        state.stats.probe_round_seconds = probe_round.as_secs_f64();
        state.stats.evaluation_seconds = started.elapsed().as_secs_f64();
        state.stats.probe_failures = self.probe_failures.load(Ordering::Relaxed);
        state.stats.notifications_sent = self.sent.load(Ordering::Relaxed);
        state.stats.notifications_failed = self.failed.load(Ordering::Relaxed);
        RoundReport {
            health,
            alerts: state.alerts.list(),
            events,
            stats: state.stats.clone(),
        }
    }
}

fn reference_endpoint(url: &str) -> Endpoint {
    Endpoint {
        url: url.trim_end_matches('/').to_string(),
        basic_auth: None,
    }
}

/// Probe every reference endpoint once (in parallel, bounded by `timeout`).
async fn probe_references(
    rpc: &RpcClient,
    fleet: Option<&Fleet>,
    desired: &[DesiredNode],
    timeout: Duration,
) -> Vec<ReferenceInput> {
    let Some(fleet) = fleet else {
        return Vec::new();
    };
    let mut wanted: Vec<(usize, Adapter, String)> = Vec::new();
    for instance in &fleet.instances {
        let Some(group) = desired
            .iter()
            .find(|d| d.record.instance == instance.name)
            .map(|d| d.network_group)
        else {
            continue;
        };
        for reference in &instance.references {
            if !wanted
                .iter()
                .any(|(g, _, u)| *g == group && *u == reference.url)
            {
                wanted.push((
                    group,
                    Adapter::for_chain(instance.chain),
                    reference.url.clone(),
                ));
            }
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (_, adapter, url)) in wanted.iter().enumerate() {
        let rpc = rpc.clone();
        let endpoint = reference_endpoint(url);
        let adapter = *adapter;
        tasks.spawn(async move {
            let probe = tokio::time::timeout(timeout, adapter.probe(&rpc, &endpoint)).await;
            (index, probe)
        });
    }
    let mut probes: HashMap<usize, chainfleet_chains::ProbeStatus> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, Ok(Ok(probe)))) => {
                probes.insert(index, probe);
            }
            Ok((index, Ok(Err(err)))) => {
                tracing::debug!(reference = index, error = %err, "reference endpoint did not answer")
            }
            _ => {}
        }
    }
    wanted
        .into_iter()
        .enumerate()
        .map(|(index, (group, _, url))| ReferenceInput {
            url,
            group,
            probe: probes.remove(&index),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(rule: AlertRule, for_secs: u64) -> Condition {
        Condition {
            rule,
            subject: "ltc-0".into(),
            severity: Severity::Critical,
            summary: "x".into(),
            value: None,
            config: RuleConfig {
                enabled: true,
                warning: None,
                critical: None,
                for_duration: Duration::from_secs(for_secs),
                repeat_interval: Duration::from_secs(60),
                send_resolved: true,
            },
            node: Some(("ltc-0".into(), "ltc".into(), "litecoin".into())),
            group: None,
        }
    }

    #[test]
    fn for_repeat_and_resolve() {
        let mut engine = AlertEngine::new();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let out = engine.evaluate(vec![condition(AlertRule::Lagging, 10)], s(0), 0);
        assert!(out.notify.is_empty());
        assert_eq!(engine.list()[0].status, AlertStatus::Pending);
        let out = engine.evaluate(vec![condition(AlertRule::Lagging, 10)], s(9), 0);
        assert!(out.notify.is_empty());
        let out = engine.evaluate(vec![condition(AlertRule::Lagging, 10)], s(10), 0);
        assert_eq!(out.notify.len(), 1);
        assert_eq!(out.notify[0].status, AlertStatus::Firing);
        let out = engine.evaluate(vec![condition(AlertRule::Lagging, 10)], s(30), 0);
        assert!(out.notify.is_empty(), "repeat is 60 s");
        let out = engine.evaluate(vec![condition(AlertRule::Lagging, 10)], s(71), 0);
        assert_eq!(out.notify.len(), 1, "repeated after 60 s");
        let out = engine.evaluate(vec![], s(72), 5);
        assert_eq!(out.notify.len(), 1);
        assert_eq!(out.notify[0].status, AlertStatus::Resolved);
        assert_eq!(out.notify[0].resolved_ms, Some(5));
        assert_eq!(engine.list().len(), 1);
    }

    #[test]
    fn a_pending_alert_that_clears_is_never_sent() {
        let mut engine = AlertEngine::new();
        let t0 = Instant::now();
        engine.evaluate(vec![condition(AlertRule::Lagging, 10)], t0, 0);
        let out = engine.evaluate(vec![], t0 + Duration::from_secs(1), 0);
        assert!(out.notify.is_empty() && out.changed.is_empty());
        assert!(engine.list().is_empty());
    }

    #[test]
    fn overrides_win_over_family_defaults() {
        let settings = RuleSettings {
            warning: Some(7.0),
            for_duration: Some(chainfleet_spec::DurationText(Duration::from_secs(3))),
            ..RuleSettings::default()
        };
        let config = rule_config(AlertRule::DiskFull, None, Some(&settings));
        assert_eq!(config.warning, Some(7.0));
        assert_eq!(config.critical, Some(95.0));
        assert_eq!(config.for_duration, Duration::from_secs(3));
    }

    #[test]
    fn group_without_producer_is_critical() {
        let groups: BTreeMap<String, bool> = [("g".to_string(), false), ("h".to_string(), true)]
            .into_iter()
            .collect();
        let found = conditions(&[], &groups, &Alerting::default());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].subject, "g");
        assert_eq!(found[0].config.for_duration, Duration::from_secs(5));
    }
}
