//! Producer groups: list, promote, fence and unfence.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chainfleet_control::failover::GroupStatus;
use serde::Deserialize;
use serde_json::json;

use crate::{ApiError, AppState};

/// Routes under `/v1/producers`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/producers", get(list))
        .route("/v1/producers/{group}/promote", post(promote))
        .route("/v1/producers/{group}/fence", post(fence))
        .route("/v1/producers/{group}/unfence", post(unfence))
}

async fn list(State(state): State<AppState>) -> Json<Vec<GroupStatus>> {
    Json(state.controller.producer_groups())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    member: String,
}

async fn promote(
    State(state): State<AppState>,
    Path(group): Path<String>,
    Json(body): Json<PromoteBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.controller.promote(&group, &body.member).await?;
    Ok(Json(json!({"group": group, "requested": body.member})))
}

async fn fence(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.controller.fence(&group, true).await?;
    Ok(Json(json!({"group": group, "fenced": true})))
}

async fn unfence(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.controller.fence(&group, false).await?;
    Ok(Json(json!({"group": group, "fenced": false})))
}

/// One producer gauge: name, help, and how to read it from a group.
type GroupGauge = (&'static str, &'static str, fn(&GroupStatus) -> Option<f64>);

/// Producer metrics in Prometheus text format.
pub(crate) fn render_metrics(groups: &[GroupStatus]) -> String {
    let mut out = String::new();
    let gauges: [GroupGauge; 4] = [
        (
            "chainfleet_producer_epoch",
            "Current epoch of the producer group",
            |g| Some(g.epoch as f64),
        ),
        (
            "chainfleet_producer_fenced",
            "1 when the group is fenced",
            |g| Some(f64::from(u8::from(g.fenced))),
        ),
        (
            "chainfleet_producer_takeover_seconds",
            "Last takeover: previous epoch's last block to this epoch's first",
            |g| g.last_takeover_ms.map(|ms| ms as f64 / 1000.0),
        ),
        (
            "chainfleet_producer_max_gap_seconds",
            "Longest time between two blocks of the group",
            |g| g.max_gap_ms.map(|ms| ms as f64 / 1000.0),
        ),
    ];
    for (name, help, value) in gauges {
        out.push_str(&format!("# HELP {name} {help}.\n# TYPE {name} gauge\n"));
        for group in groups {
            if let Some(v) = value(group) {
                out.push_str(&format!("{name}{{group=\"{}\"}} {v}\n", group.name));
            }
        }
    }
    out.push_str("# HELP chainfleet_producer_active 1 for the member that holds the group's lease here.\n# TYPE chainfleet_producer_active gauge\n");
    for group in groups {
        for member in &group.members {
            out.push_str(&format!(
                "chainfleet_producer_active{{group=\"{}\",member=\"{}\"}} {}\n",
                group.name,
                member.name,
                u8::from(member.active)
            ));
        }
    }
    out
}
