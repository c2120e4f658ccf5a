//! `chainfleet alerts [--json]` and `chainfleet alerts test`.

use anyhow::{bail, Result};
use chainfleet_control::alerts::{Alert, AlertStatus};
use clap::Subcommand;

use crate::client::ApiClient;
use crate::table::human_duration;
use crate::ApiArgs;

/// alerts subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// List active alerts (pending, firing), then recently resolved ones.
    #[command(
        after_help = "Examples:\n  chainfleet alerts\n  chainfleet alerts --json | jq '.[] | select(.status == \"firing\")'\n  chainfleet alerts test     # send a test notification to every channel"
    )]
    Alerts {
        /// What else to do with alerts.
        #[command(subcommand)]
        command: Option<AlertsCommand>,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the alerts as a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// `chainfleet alerts ...`.
#[derive(Subcommand)]
pub enum AlertsCommand {
    /// Send a test notification to every channel of the manifest's `alerting.channels`.
    #[command(after_help = "Example:\n  chainfleet alerts test")]
    Test {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the per-channel results as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run one alerts subcommand.
pub async fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Alerts {
            command: Some(AlertsCommand::Test { api, json }),
            ..
        } => {
            let results = ApiClient::new(&api.api)?.alerts_test().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for result in &results {
                    match &result.error {
                        None => println!("{} ({}): delivered", result.channel, result.kind),
                        Some(err) => {
                            println!("{} ({}): FAILED: {err}", result.channel, result.kind)
                        }
                    }
                }
            }
            let failed = results.iter().filter(|r| !r.ok).count();
            if failed > 0 {
                bail!("{failed} of {} channel(s) failed", results.len());
            }
            Ok(())
        }
        Commands::Alerts {
            command: None,
            api,
            json,
        } => {
            let alerts = ApiClient::new(&api.api)?.alerts().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&alerts)?);
            } else {
                print!("{}", table(&alerts, now_ms()));
            }
            Ok(())
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn status_word(status: AlertStatus) -> &'static str {
    match status {
        AlertStatus::Pending => "pending",
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    }
}

/// The `chainfleet alerts` table.
fn table(alerts: &[Alert], now_ms: i64) -> String {
    if alerts.is_empty() {
        return "no alerts\n".into();
    }
    let mut rows = vec![
        ["STATUS", "SEVERITY", "RULE", "SUBJECT", "SINCE", "SUMMARY"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    ];
    for alert in alerts {
        let since = alert
            .resolved_ms
            .or(alert.fired_ms)
            .unwrap_or(alert.started_ms);
        let ago = u64::try_from((now_ms - since) / 1000).unwrap_or(0);
        rows.push(vec![
            status_word(alert.status).into(),
            alert.severity.as_str().into(),
            alert.rule.clone(),
            alert
                .node
                .clone()
                .or_else(|| alert.group.clone())
                .unwrap_or_else(|| "-".into()),
            format!("{} ago", human_duration(ago)),
            alert.summary.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 5 {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainfleet_control::alerts::Severity;

    #[test]
    fn table_lists_status_rule_and_subject() {
        let alert = Alert {
            id: "nodeDown/ltc-0".into(),
            rule: "nodeDown".into(),
            severity: Severity::Critical,
            status: AlertStatus::Firing,
            node: Some("ltc-0".into()),
            instance: Some("ltc".into()),
            chain: Some("litecoin".into()),
            group: None,
            summary: "ltc-0 is down".into(),
            value: None,
            started_ms: 0,
            fired_ms: Some(1000),
            resolved_ms: None,
        };
        let text = table(&[alert], 61_000);
        assert!(text.contains("firing"), "{text}");
        assert!(text.contains("nodeDown"), "{text}");
        assert!(text.contains("1m00s ago"), "{text}");
        assert_eq!(table(&[], 0), "no alerts\n");
    }
}
