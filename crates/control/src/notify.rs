//! Notifiers: a generic JSON webhook, a Slack-compatible webhook and
//! Alertmanager (v2 API push).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chainfleet_spec::alerting::Channel;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::alerts::{Alert, AlertStatus, Severity};

/// How long one delivery may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Alertmanager keeps a firing alert that is not re-sent.
const ALERTMANAGER_TTL: Duration = Duration::from_secs(300);

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A channel's `caFile` could not be read or holds no certificate.
    #[error("channel {channel}: caFile {path}: {reason}")]
    CaFile {
        /// Channel name.
        channel: String,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The receiver could not be reached.
    #[error("channel {channel} ({url}) did not answer: {detail}")]
    Unreachable {
        /// Channel name.
        channel: String,
        /// Its URL.
        url: String,
        /// The cause and its causes, e.g. a TLS certificate problem.
        detail: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The receiver answered with an error status.
    #[error("channel {channel} ({url}) answered HTTP {status}: {body}")]
    Rejected {
        /// Channel name.
        channel: String,
        /// Its URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the answer.
        body: String,
    },
}

/// The result of a test notification to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelResult {
    /// Channel name.
    pub channel: String,
    /// Channel type.
    pub kind: String,
    /// Whether it was delivered.
    pub ok: bool,
    /// Why not, if it was not.
    pub error: Option<String>,
}

/// Counts of one delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Requests delivered.
    pub sent: u64,
    /// Requests that failed.
    pub failed: u64,
}

/// Sends alerts to every configured channel.
#[derive(Debug, Clone)]
pub struct Notifier {
    channels: Vec<Channel>,
    fleet: String,
}

fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// The HTTP client of one channel: the system's CAs, plus its `caFile`'s.
fn http(channel: &Channel, index: usize) -> Result<reqwest::Client, NotifyError> {
    let mut builder = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .connect_timeout(SEND_TIMEOUT);
    if let Some(path) = channel.ca_file() {
        let ca_error = |reason: String| NotifyError::CaFile {
            channel: channel.display_name(index),
            path: path.to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|err| ca_error(err.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|err| ca_error(format!("not PEM certificates: {err}")))?;
        if certs.is_empty() {
            return Err(ca_error("holds no PEM certificate".into()));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(NotifyError::Client)
}

/// An error and all its causes, as one line.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = inner.source();
    }
    text
}

/// The Alertmanager v2 form of an alert.
pub fn alertmanager_alert(alert: &Alert, fleet: &str) -> Value {
    let mut labels = json!({
        "alertname": format!("Chainfleet{}", capitalize(&alert.rule)),
        "severity": alert.severity.as_str(),
        "fleet": fleet,
        "source": "chainfleet",
    });
    for (key, value) in [
        ("node", &alert.node),
        ("instance", &alert.instance),
        ("chain", &alert.chain),
        ("group", &alert.group),
    ] {
        if let Some(value) = value {
            labels[key] = json!(value);
        }
    }
    let now_ms = crate::store::now_ms();
    let ends = match alert.status {
        AlertStatus::Resolved => alert.resolved_ms.unwrap_or(now_ms),
        _ => now_ms + ALERTMANAGER_TTL.as_millis() as i64,
    };
    json!({
        "labels": labels,
        "annotations": {"summary": alert.summary},
        "startsAt": rfc3339(alert.fired_ms.unwrap_or(alert.started_ms)),
        "endsAt": rfc3339(ends),
        "generatorURL": "http://127.0.0.1:7780/v1/alerts",
    })
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The Slack text of an alert.
pub fn slack_text(alert: &Alert, fleet: &str) -> String {
    let (icon, word) = match (alert.status, alert.severity) {
        (AlertStatus::Resolved, _) => (":large_green_circle:", "RESOLVED"),
        (_, Severity::Critical) => (":red_circle:", "FIRING"),
        (_, Severity::Warning) => (":large_yellow_circle:", "FIRING"),
    };
    format!(
        "{icon} [{word} {}] {} ({fleet}): {}",
        alert.severity.as_str(),
        alert.rule,
        alert.summary
    )
}

impl Notifier {
    /// A notifier for `channels`, labelling alerts with `fleet`.
    pub fn new(channels: Vec<Channel>, fleet: String) -> Self {
        Notifier { channels, fleet }
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        index: usize,
        url: &str,
        body: &Value,
    ) -> Result<(), NotifyError> {
        let channel = self
            .channels
            .get(index)
            .map(|c| c.display_name(index))
            .unwrap_or_default();
        let response = client.post(url).json(body).send().await.map_err(|source| {
            NotifyError::Unreachable {
                channel: channel.clone(),
                url: url.to_string(),
                detail: with_causes(&source),
                source,
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(NotifyError::Rejected {
            channel,
            url: url.to_string(),
            status: status.as_u16(),
            body: text.chars().take(200).collect(),
        })
    }

    /// Send one channel its share: `alerts` are transitions; `refresh` are
    /// firing alerts re-pushed to Alertmanager only.
    async fn send_channel(
        &self,
        client: &reqwest::Client,
        index: usize,
        alerts: &[Alert],
        refresh: &[Alert],
        kind: &str,
    ) -> Vec<Result<(), NotifyError>> {
        let Some(channel) = self.channels.get(index) else {
            return Vec::new();
        };
        let mut results = Vec::new();
        match channel {
            Channel::Webhook { url, .. } => {
                for alert in alerts {
                    let body = json!({"kind": kind, "fleet": self.fleet, "alert": alert});
                    results.push(self.post(client, index, url, &body).await);
                }
            }
            Channel::Slack { url, .. } => {
                for alert in alerts {
                    let mut text = slack_text(alert, &self.fleet);
                    if kind == "test" {
                        text = format!(
                            ":white_check_mark: Chainfleet test notification ({}): channel works",
                            self.fleet
                        );
                    }
                    results.push(
                        self.post(client, index, url, &json!({ "text": text }))
                            .await,
                    );
                }
            }
            Channel::Alertmanager { url, .. } => {
                let mut list: Vec<Value> = alerts
                    .iter()
                    .map(|a| alertmanager_alert(a, &self.fleet))
                    .collect();
                list.extend(
                    refresh
                        .iter()
                        .filter(|r| !alerts.iter().any(|a| a.id == r.id))
                        .map(|a| alertmanager_alert(a, &self.fleet)),
                );
                if !list.is_empty() {
                    let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
                    results.push(
                        self.post(client, index, &endpoint, &Value::Array(list))
                            .await,
                    );
                }
            }
        }
        results
    }

    /// Deliver transitions to every channel (and `refresh` to Alertmanager).
    /// Failures are logged; delivery goes on with the next channel.
    pub async fn deliver(&self, alerts: &[Alert], refresh: &[Alert]) -> Outcome {
        let mut outcome = Outcome::default();
        for (index, channel) in self.channels.iter().enumerate() {
            let client = match http(channel, index) {
                Ok(client) => client,
                Err(err) => {
                    tracing::warn!(error = %err, "notification not delivered");
                    outcome.failed += 1;
                    continue;
                }
            };
            for result in self
                .send_channel(&client, index, alerts, refresh, "alert")
                .await
            {
                match result {
                    Ok(()) => outcome.sent += 1,
                    Err(err) => {
                        outcome.failed += 1;
                        tracing::warn!(error = %err, "notification not delivered");
                    }
                }
            }
        }
        outcome
    }

    /// Send a test notification to every channel and say how each went.
    pub async fn send_test(&self) -> Vec<ChannelResult> {
        let now = crate::store::now_ms();
        let alert = Alert {
            id: "test/chainfleet".into(),
            rule: "test".into(),
            severity: Severity::Warning,
            status: AlertStatus::Firing,
            node: None,
            instance: None,
            chain: None,
            group: None,
            summary: format!(
                "test notification from Chainfleet fleet {} at {}",
                self.fleet,
                humantime::format_rfc3339_seconds(SystemTime::now())
            ),
            value: None,
            started_ms: now,
            fired_ms: Some(now),
            resolved_ms: None,
        };
        let mut out = Vec::new();
        for (index, channel) in self.channels.iter().enumerate() {
            let results = match http(channel, index) {
                Ok(client) => {
                    self.send_channel(&client, index, std::slice::from_ref(&alert), &[], "test")
                        .await
                }
                Err(err) => vec![Err(err)],
            };
            let error = results
                .into_iter()
                .find_map(Result::err)
                .map(|e| e.to_string());
            out.push(ChannelResult {
                channel: channel.display_name(index),
                kind: channel.kind().into(),
                ok: error.is_none(),
                error,
            });
        }
        out
    }
}
