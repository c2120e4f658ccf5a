//! Alerts over HTTP: `GET /v1/alerts`, `POST /v1/alerts/test`, and the
//! server-sent-events form of `GET /v1/events`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chainfleet_control::alerts::Alert;
use chainfleet_control::notify::{ChannelResult, Notifier};
use chainfleet_control::{Controller, Event};
use futures_util::stream::Stream;
use tokio::sync::broadcast;

use crate::{ApiError, AppState};

/// Routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/alerts", get(list))
        .route("/v1/alerts/test", post(test))
}

/// Active alerts first, then recently resolved ones.
async fn list(State(state): State<AppState>) -> Json<Vec<Alert>> {
    Json(state.controller.snapshot().alerts.clone())
}

/// Send a test notification to every channel of the current manifest.
async fn test(State(state): State<AppState>) -> Result<Json<Vec<ChannelResult>>, ApiError> {
    let text = state.controller.manifest_text().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "no manifest is applied yet; run `chainfleet apply -f FILE`".into(),
        )
    })?;
    let manifest = chainfleet_spec::parse(&text, "stored manifest")
        .map_err(|err| ApiError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    let channels = manifest.fleet.alerting.channels.clone();
    if channels.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "the manifest has no `alerting.channels`; add a webhook, slack or alertmanager channel"
                .into(),
        ));
    }
    let notifier = Notifier::new(channels, manifest.fleet.metadata.name.clone());
    Ok(Json(notifier.send_test().await))
}

/// Whether the client asked for server-sent events.
pub(crate) fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// Stored events read from the store at a time.
const BACKLOG_PAGE: u32 = 1000;

struct Follow {
    controller: Controller,
    receiver: broadcast::Receiver<Event>,
    backlog: VecDeque<Event>,
    last_id: i64,
    /// The last page read was full: more stored events may follow it.
    more_stored: bool,
}

impl Follow {
    /// Refill the backlog with the next page of stored events after `last_id`.
    fn refill(&mut self) {
        match self.controller.events_after(self.last_id, BACKLOG_PAGE) {
            Ok(events) => {
                self.more_stored = events.len() >= BACKLOG_PAGE as usize;
                self.backlog.extend(events);
            }
            Err(err) => {
                self.more_stored = false;
                tracing::warn!(error = %err, "events stream: cannot read stored events");
            }
        }
    }

    async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                if event.id > self.last_id {
                    self.last_id = event.id;
                    return event;
                }
                continue;
            }
            // Page through a long backlog before waiting for new events.
            if self.more_stored {
                self.refill();
                continue;
            }
            match self.receiver.recv().await {
                Ok(event) if event.id > self.last_id => {
                    self.last_id = event.id;
                    return event;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => self.refill(),
                Err(broadcast::error::RecvError::Closed) => {
                    // The control plane is going away: idle until the client leaves.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            }
        }
    }
}

/// Stored events after `after`, then new ones as they happen, as SSE
/// (`id` is the event id, `event` its kind, `data` the event JSON).
pub(crate) fn event_stream(controller: Controller, after: i64, headers: &HeaderMap) -> Response {
    // A reconnecting EventSource says where it was.
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(after);
    // Subscribe before reading the backlog so nothing falls between them.
    let receiver = controller.subscribe_events();
    let mut follow = Follow {
        controller,
        receiver,
        backlog: VecDeque::new(),
        last_id: after,
        more_stored: false,
    };
    follow.refill();
    Sse::new(stream(follow))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn stream(follow: Follow) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await;
        let data = serde_json::to_string(&event).unwrap_or_default();
        let sse = SseEvent::default()
            .id(event.id.to_string())
            .event(event.kind.clone())
            .data(data);
        Some((Ok(sse), follow))
    })
}
