//! Gateway API keys over HTTP: `GET /v1/keys`, `POST /v1/keys`, `DELETE /v1/keys/{id}`.
//! Keys live in the state dir's `gateway.db`; running gateways pick changes up within a second.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chainfleet_control::Controller;
use chainfleet_gateway::keys::{KeyStore, NewKey};
use chainfleet_gateway::GatewayError;
use serde_json::json;

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn failed(err: GatewayError) -> Response {
    match err {
        GatewayError::Invalid(message) => error(StatusCode::BAD_REQUEST, message),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// Run a key-store operation off the async threads.
async fn with_store<T: Send + 'static>(
    dir: PathBuf,
    op: impl FnOnce(&mut KeyStore) -> Result<T, GatewayError> + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(move || KeyStore::open(&dir).and_then(|mut store| op(&mut store)))
        .await
        .map_err(|err| error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?
        .map_err(failed)
}

/// The key routes, acting on `controller`'s state dir.
pub fn router<S: Clone + Send + Sync + 'static>(controller: Controller) -> Router<S> {
    Router::new()
        .route("/v1/keys", get(list).post(create))
        .route("/v1/keys/{id}", delete(revoke))
        .with_state(controller)
}

async fn list(State(controller): State<Controller>) -> Response {
    let dir = controller.state_dir().to_path_buf();
    match with_store(dir, |store| store.list()).await {
        Ok(keys) => Json(keys).into_response(),
        Err(response) => response,
    }
}

async fn create(State(controller): State<Controller>, Json(new): Json<NewKey>) -> Response {
    let instances: Option<Vec<String>> = controller
        .manifest_text()
        .as_deref()
        .and_then(chainfleet_gateway::access_from_manifest)
        .map(|map| map.into_keys().collect());
    let dir = controller.state_dir().to_path_buf();
    let created = with_store(dir, move |store| {
        store.create(new, |name| {
            instances
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
        })
    })
    .await;
    match created {
        // The key is in this answer only; it is not logged.
        Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(response) => response,
    }
}

async fn revoke(State(controller): State<Controller>, Path(id): Path<String>) -> Response {
    let dir = controller.state_dir().to_path_buf();
    let shown: String = id.chars().take(40).collect();
    match with_store(dir, move |store| store.revoke(&id)).await {
        Ok(true) => Json(json!({ "revoked": shown })).into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no active key has id `{shown}`; GET /v1/keys lists them"),
        ),
        Err(response) => response,
    }
}
