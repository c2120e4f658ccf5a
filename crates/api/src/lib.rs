//! The Chainfleet HTTP API (on 127.0.0.1 by default): fleet and node status,
//! logs, events, manifest apply, shutdown, and Prometheus metrics.

mod alerts_api;
mod keys;
mod metrics;
mod producers;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chainfleet_control::{ControlError, Controller};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

pub use metrics::render as render_metrics;

/// Largest log chunk served at once.
const MAX_LOG_CHUNK: usize = 1024 * 1024;

/// Shared state of every handler.
#[derive(Clone)]
pub(crate) struct AppState {
    controller: Controller,
    shutdown: Arc<watch::Sender<bool>>,
}

/// An API error: status code and a JSON `{"error": ...}` body.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(err: ControlError) -> Self {
        let status = match &err {
            ControlError::UnknownNode(_) => StatusCode::NOT_FOUND,
            ControlError::Manifest(_) | ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControlError::LeaseStore(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, err.to_string())
    }
}

/// The API router. Sending `true` on `shutdown` after `POST /v1/shutdown`
/// tells the control plane to exit.
pub fn router(controller: Controller, shutdown: Arc<watch::Sender<bool>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/fleet", get(fleet))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{name}", get(node))
        .route("/v1/nodes/{name}/logs", get(node_logs))
        .route("/v1/events", get(events))
        .route("/v1/apply", post(apply))
        .route("/v1/shutdown", post(shutdown_fleet))
        .merge(alerts_api::routes())
        .merge(producers::routes())
        .merge(keys::router(controller.clone()))
        .layer(DefaultBodyLimit::max(
            chainfleet_spec::MAX_MANIFEST_BYTES + 1024,
        ))
        .with_state(AppState {
            controller,
            shutdown,
        })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut body = metrics::render(&state.controller.snapshot());
    // OpenMetrics ends with `# EOF`; producer gauges go before it.
    let producers = producers::render_metrics(&state.controller.producer_groups());
    match body.rfind("# EOF") {
        Some(at) => body.insert_str(at, &producers),
        None => body.push_str(&producers),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn fleet(State(state): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = state.controller.snapshot();
    let count = |word: &str| snapshot.nodes.iter().filter(|n| n.state == word).count();
    Json(json!({
        "name": state.controller.fleet_name(),
        "nodes": snapshot.nodes.len(),
        "healthy": count("healthy"),
        "generated_ms": snapshot.generated_ms,
        "state_dir": state.controller.state_dir(),
        "manifest": state.controller.manifest_text(),
    }))
}

async fn nodes(State(state): State<AppState>) -> Json<Vec<chainfleet_control::NodeStatus>> {
    Json(state.controller.snapshot().nodes.clone())
}

async fn node(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<chainfleet_control::NodeStatus>, ApiError> {
    state
        .controller
        .snapshot()
        .nodes
        .iter()
        .find(|n| n.name == name)
        .cloned()
        .map(Json)
        .ok_or_else(|| ControlError::UnknownNode(name).into())
}

#[derive(Deserialize)]
struct LogQuery {
    offset: Option<u64>,
    /// Return only the last N lines (ignores offset).
    tail: Option<usize>,
}

async fn node_logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let (bytes, next) = match query.tail.filter(|_| query.offset.is_none()) {
        Some(lines) => state.controller.node_log_tail(&name, lines.min(10_000))?,
        None => state
            .controller
            .node_log(&name, query.offset.unwrap_or(0), MAX_LOG_CHUNK)?,
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-next-offset", HeaderValue::from(next));
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok((headers, bytes).into_response())
}

#[derive(Deserialize)]
struct EventQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if alerts_api::wants_sse(&headers) {
        return Ok(alerts_api::event_stream(
            state.controller.clone(),
            query.after.unwrap_or(0),
            &headers,
        ));
    }
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    Ok(Json(
        state
            .controller
            .events_after(query.after.unwrap_or(0), limit)?,
    )
    .into_response())
}

async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<chainfleet_control::ApplySummary>, ApiError> {
    let file = headers
        .get("x-manifest-file")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("request body")
        .to_string();
    let text = std::str::from_utf8(&body).map_err(|err| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{file}: the manifest is not valid UTF-8 (byte {})",
                err.valid_up_to()
            ),
        )
    })?;
    let manifest = chainfleet_spec::parse(text, &file).map_err(ControlError::from)?;
    Ok(Json(state.controller.apply(manifest)?))
}

async fn shutdown_fleet(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let stopped = state.controller.stop_all().await?;
    let _ = state.shutdown.send(true);
    Ok(Json(json!({ "stopped": stopped })))
}
