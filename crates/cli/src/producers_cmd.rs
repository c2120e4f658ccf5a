//! `chainfleet producers`, `promote`, `fence` and `unfence`.

use anyhow::Result;
use clap::Subcommand;

use crate::client::ApiClient;
use crate::ApiArgs;

/// Producer group subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Show each producer group: active member, epoch, lease expiry, standbys and their lag.
    #[command(after_help = "Examples:\n  chainfleet producers\n  chainfleet producers --json")]
    Producers {
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hand production over to MEMBER safely: the current producer steps down, then MEMBER takes the next epoch.
    #[command(after_help = "Example:\n  chainfleet promote ltc ltc-1")]
    Promote {
        /// Producer group.
        group: String,
        /// Member node name (or FLEET/NODE for a member of another control plane).
        member: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop all production of a group, for maintenance.
    #[command(after_help = "Example:\n  chainfleet fence ltc")]
    Fence {
        /// Producer group.
        group: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Let a fenced group produce again.
    #[command(after_help = "Example:\n  chainfleet unfence ltc")]
    Unfence {
        /// Producer group.
        group: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Run one producer subcommand.
pub async fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Producers { api, json } => {
            let groups = ApiClient::new(&api.api)?
                .get_value("/v1/producers", "list producer groups")
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&groups)?);
            } else {
                print!("{}", table(&groups));
            }
            Ok(())
        }
        Commands::Promote { group, member, api } => {
            let body = serde_json::json!({ "member": member });
            ApiClient::new(&api.api)?
                .post_value(&format!("/v1/producers/{group}/promote"), &body, "promote")
                .await?;
            println!("promotion of {member} in group {group} requested; the active producer steps down first");
            Ok(())
        }
        Commands::Fence { group, api } => {
            ApiClient::new(&api.api)?
                .post_value(
                    &format!("/v1/producers/{group}/fence"),
                    &serde_json::json!({}),
                    "fence",
                )
                .await?;
            println!(
                "group {group} is fenced: no member produces until `chainfleet unfence {group}`"
            );
            Ok(())
        }
        Commands::Unfence { group, api } => {
            ApiClient::new(&api.api)?
                .post_value(
                    &format!("/v1/producers/{group}/unfence"),
                    &serde_json::json!({}),
                    "unfence",
                )
                .await?;
            println!("group {group} may produce again");
            Ok(())
        }
    }
}

fn table(groups: &serde_json::Value) -> String {
    let mut out = String::new();
    for group in groups.as_array().into_iter().flatten() {
        let text = |key: &str| match &group[key] {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!(
            "GROUP {}  backend {}  epoch {}  active {}  lease expires in {} ms  ttl {} ms{}\n",
            text("name"),
            text("backend"),
            text("epoch"),
            text("active"),
            text("lease_expires_in_ms"),
            text("lease_ttl_ms"),
            if group["fenced"] == true {
                "  FENCED"
            } else {
                ""
            }
        ));
        if let Some(watermark) = group["watermark"].as_object() {
            out.push_str(&format!(
                "  watermark: height {} epoch {}\n",
                watermark.get("height").cloned().unwrap_or_default(),
                watermark.get("epoch").cloned().unwrap_or_default()
            ));
        }
        out.push_str("  MEMBER                  ROLE     STATE          HEIGHT  LAG\n");
        for member in group["members"].as_array().into_iter().flatten() {
            let role = if member["active"] == true {
                "active"
            } else {
                "standby"
            };
            let num = |key: &str| {
                member[key]
                    .as_u64()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            out.push_str(&format!(
                "  {:<22}  {:<7}  {:<13}  {:>6}  {:>3}\n",
                member["name"].as_str().unwrap_or("?"),
                role,
                member["state"].as_str().unwrap_or("?"),
                num("height"),
                num("lag")
            ));
        }
        if let Some(error) = group["last_error"].as_str() {
            out.push_str(&format!("  last problem: {error}\n"));
        }
    }
    if out.is_empty() {
        out.push_str(
            "no producer groups (no `role: producer` instance on a regtest or devnet network)\n",
        );
    }
    out
}
