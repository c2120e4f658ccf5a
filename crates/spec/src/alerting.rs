//! The `alerting:` section (rule overrides and notification channels) and
//! per-instance reference endpoints.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{DurationText, Finding, Fleet};

/// Alert rule overrides and notification channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Alerting {
    /// Overrides of the built-in rules, by rule name. Omitted settings keep
    /// the chain family's defaults.
    #[serde(default)]
    pub rules: BTreeMap<AlertRule, RuleSettings>,
    /// Where notifications go. Every channel gets every notification.
    #[serde(default)]
    pub channels: Vec<Channel>,
}

/// A built-in alert rule.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AlertRule {
    /// The node does not answer its probe, or its process is not running.
    NodeDown,
    /// The best block has not changed for too many expected block intervals.
    Stalled,
    /// The node is too many blocks behind the fleet's quorum height.
    Lagging,
    /// The node's block at a common height differs from the majority's.
    Forked,
    /// Too few connected peers.
    LowPeers,
    /// The node keeps crashing (3 exits within 5 minutes).
    CrashLoop,
    /// The node's data-dir file system is nearly full (percent used).
    DiskFull,
    /// A producer group has no active block producer.
    ProducerGroupInactive,
}

impl AlertRule {
    /// Every rule, in a stable order.
    pub const ALL: [AlertRule; 8] = [
        AlertRule::NodeDown,
        AlertRule::Stalled,
        AlertRule::Lagging,
        AlertRule::Forked,
        AlertRule::LowPeers,
        AlertRule::CrashLoop,
        AlertRule::DiskFull,
        AlertRule::ProducerGroupInactive,
    ];

    /// The name as written in manifests and alert labels.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertRule::NodeDown => "nodeDown",
            AlertRule::Stalled => "stalled",
            AlertRule::Lagging => "lagging",
            AlertRule::Forked => "forked",
            AlertRule::LowPeers => "lowPeers",
            AlertRule::CrashLoop => "crashLoop",
            AlertRule::DiskFull => "diskFull",
            AlertRule::ProducerGroupInactive => "producerGroupInactive",
        }
    }
}

/// Overrides of one rule. Threshold units depend on the rule: `stalled` in
/// expected block intervals, `lagging` in blocks, `lowPeers` in peers (fires
/// below), `diskFull` in percent used; the other rules have no threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSettings {
    /// Set to `false` to turn the rule off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Threshold of a warning.
    #[serde(default)]
    pub warning: Option<f64>,
    /// Threshold of a critical alert.
    #[serde(default)]
    pub critical: Option<f64>,
    /// How long the condition must hold before the alert fires, e.g. `10s`.
    #[serde(default, rename = "for")]
    pub for_duration: Option<DurationText>,
    /// How often a firing alert is sent again, e.g. `1h`.
    #[serde(default)]
    pub repeat_interval: Option<DurationText>,
    /// Whether a notice is sent when the alert resolves.
    #[serde(default)]
    pub send_resolved: Option<bool>,
}

/// One notification channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", tag = "type")]
pub enum Channel {
    /// A generic JSON webhook: POSTs `{"kind": "alert", "alert": {...}}`.
    Webhook {
        /// The URL that receives the POST.
        url: String,
        /// Name shown in `chainfleet alerts test`; default: the type and index.
        #[serde(default)]
        name: Option<String>,
        /// PEM file of extra CAs to trust for an `https` URL (a private CA).
        #[serde(default)]
        ca_file: Option<String>,
    },
    /// A Slack-compatible incoming webhook: POSTs `{"text": ...}`.
    Slack {
        /// The incoming-webhook URL.
        url: String,
        /// Name shown in `chainfleet alerts test`.
        #[serde(default)]
        name: Option<String>,
        /// PEM file of extra CAs to trust for an `https` URL (a private CA).
        #[serde(default)]
        ca_file: Option<String>,
    },
    /// Prometheus Alertmanager: POSTs to its `/api/v2/alerts`.
    Alertmanager {
        /// Alertmanager's base URL, e.g. `http://127.0.0.1:9093`.
        url: String,
        /// Name shown in `chainfleet alerts test`.
        #[serde(default)]
        name: Option<String>,
        /// PEM file of extra CAs to trust for an `https` URL (a private CA).
        #[serde(default)]
        ca_file: Option<String>,
    },
}

impl Channel {
    /// The channel's URL.
    pub fn url(&self) -> &str {
        match self {
            Channel::Webhook { url, .. }
            | Channel::Slack { url, .. }
            | Channel::Alertmanager { url, .. } => url,
        }
    }

    /// The extra CAs to trust for this channel's `https` URL, if any.
    pub fn ca_file(&self) -> Option<&str> {
        match self {
            Channel::Webhook { ca_file, .. }
            | Channel::Slack { ca_file, .. }
            | Channel::Alertmanager { ca_file, .. } => ca_file.as_deref(),
        }
    }

    /// The channel type as written in manifests.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Slack { .. } => "slack",
            Channel::Alertmanager { .. } => "alertmanager",
        }
    }

    /// The channel's display name (its `name`, or `TYPE-INDEX`).
    pub fn display_name(&self, index: usize) -> String {
        let name = match self {
            Channel::Webhook { name, .. }
            | Channel::Slack { name, .. }
            | Channel::Alertmanager { name, .. } => name,
        };
        name.clone()
            .unwrap_or_else(|| format!("{}-{index}", self.kind()))
    }
}

/// An external RPC endpoint of the same chain, used as a height reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReferenceEndpoint {
    /// Its RPC URL.
    pub url: String,
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// Problems in the `alerting:` section and reference endpoints.
pub(crate) fn check(fleet: &Fleet, out: &mut Vec<Finding>) {
    for (rule, settings) in &fleet.alerting.rules {
        let at = format!("alerting.rules.{}", rule.as_str());
        for (field, value) in [
            ("warning", settings.warning),
            ("critical", settings.critical),
        ] {
            if let Some(value) = value {
                if !value.is_finite() || value < 0.0 {
                    out.push(Finding::new(
                        format!("{at}.{field}"),
                        "must be a number of 0 or more",
                    ));
                }
                if *rule == AlertRule::DiskFull && value > 100.0 {
                    out.push(Finding::new(
                        format!("{at}.{field}"),
                        "is a percentage of the disk used: give 0 to 100",
                    ));
                }
            }
        }
        if let (Some(warning), Some(critical)) = (settings.warning, settings.critical) {
            // Peers fire below the threshold; the others above it.
            let inverted = if *rule == AlertRule::LowPeers {
                critical > warning
            } else {
                critical < warning
            };
            if inverted {
                out.push(Finding::new(
                    format!("{at}.critical"),
                    "is less severe than `warning`; swap them",
                ));
            }
        }
        if let Some(for_duration) = settings.for_duration {
            if for_duration.get() > Duration::from_secs(24 * 3600) {
                out.push(Finding::new(format!("{at}.for"), "must be at most 24h"));
            }
        }
        if let Some(repeat) = settings.repeat_interval {
            if repeat.get() < Duration::from_secs(1) {
                out.push(Finding::new(
                    format!("{at}.repeatInterval"),
                    "must be at least 1s",
                ));
            }
        }
    }
    for (index, channel) in fleet.alerting.channels.iter().enumerate() {
        if !is_http_url(channel.url()) {
            out.push(Finding::new(
                format!("alerting.channels[{index}].url"),
                "must be an http:// or https:// URL",
            ));
        }
    }
    for (index, instance) in fleet.instances.iter().enumerate() {
        for (r, reference) in instance.references.iter().enumerate() {
            if !is_http_url(&reference.url) {
                out.push(Finding::new(
                    format!("instances[{index}].references[{r}].url"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parse;

    const HEAD: &str = "apiVersion: chainfleet.dev/v1alpha1\nkind: Fleet\ninstances:\n  - {name: ltc, chain: litecoin, references: [{url: 'http://127.0.0.1:1'}]}\n";

    #[test]
    fn rules_and_channels_parse() {
        let text = format!(
            "{HEAD}alerting:\n  rules:\n    stalled: {{warning: 2, critical: 4, for: 1s}}\n    nodeDown: {{repeatInterval: 5m}}\n  channels:\n    - {{type: webhook, url: 'http://127.0.0.1:9/hook'}}\n    - {{type: alertmanager, url: 'http://127.0.0.1:9093', name: am}}\n"
        );
        let manifest = parse(&text, "t.yaml").expect("valid");
        let alerting = &manifest.fleet.alerting;
        assert_eq!(alerting.rules.len(), 2);
        assert_eq!(alerting.channels.len(), 2);
        assert_eq!(alerting.channels[1].display_name(1), "am");
        assert_eq!(alerting.channels[0].display_name(0), "webhook-0");
    }

    #[test]
    fn bad_rules_and_urls_are_reported_with_paths() {
        let text = format!(
            "{HEAD}alerting:\n  rules:\n    lagging: {{warning: 10, critical: 2}}\n    diskFull: {{warning: 120}}\n  channels:\n    - {{type: slack, url: 'ftp://x'}}\n"
        );
        let err = parse(&text, "t.yaml").expect_err("invalid").to_string();
        assert!(err.contains("alerting.rules.lagging.critical"), "{err}");
        assert!(err.contains("alerting.rules.diskFull.warning"), "{err}");
        assert!(err.contains("alerting.channels[0].url"), "{err}");
    }

    #[test]
    fn unknown_rule_names_get_a_suggestion() {
        let text = format!("{HEAD}alerting:\n  rules:\n    staled: {{warning: 2}}\n");
        let err = parse(&text, "t.yaml").expect_err("invalid").to_string();
        assert!(err.contains("did you mean `stalled`"), "{err}");
    }
}
