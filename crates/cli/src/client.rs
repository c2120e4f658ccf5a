//! HTTP client of the control plane's API.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chainfleet_control::{Event, NodeStatus};
use serde::de::DeserializeOwned;

/// Talks to one control plane.
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

/// Marker for "nothing answers at this address".
#[derive(Debug)]
pub struct Unreachable;

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused")
    }
}

impl std::error::Error for Unreachable {}

impl ApiClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:7780`).
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(anyhow!(
                "--api `{base}` must start with http:// or https://"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .context("build the HTTP client")?;
        Ok(ApiClient { base, http })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|err| {
            if err.is_connect() {
                anyhow!(Unreachable).context(format!(
                    "no Chainfleet control plane answers at {}; start one with `chainfleet up -f FILE`, or set --api / CHAINFLEET_API",
                    self.base
                ))
            } else {
                anyhow!(err).context(format!("{what} failed"))
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(body);
        Err(anyhow!("{what}: {message} (HTTP {status})"))
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let response = self
            .send(self.http.get(format!("{}{path}", self.base)), what)
            .await?;
        response
            .json()
            .await
            .with_context(|| format!("{what}: unexpected answer"))
    }

    /// GET a JSON value.
    pub async fn get_value(&self, path: &str, what: &str) -> Result<serde_json::Value> {
        self.get_json(path, what).await
    }

    /// POST a JSON body and return the JSON answer.
    pub async fn post_value(
        &self,
        path: &str,
        body: &serde_json::Value,
        what: &str,
    ) -> Result<serde_json::Value> {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        let response = self.send(request, what).await?;
        response
            .json()
            .await
            .with_context(|| format!("{what}: unexpected answer"))
    }

    /// Every node's status.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>> {
        self.get_json("/v1/nodes", "list nodes").await
    }

    /// Events after `after`.
    pub async fn events(&self, after: i64) -> Result<Vec<Event>> {
        self.get_json(&format!("/v1/events?after={after}"), "list events")
            .await
    }

    /// Follow events after `after` as server-sent events, calling `on_event`
    /// for each. When the control plane goes away it reconnects every second
    /// and resumes after the last event seen; it returns only on an error
    /// from `on_event` or a refused request.
    pub async fn follow_events(
        &self,
        mut after: i64,
        mut on_event: impl FnMut(&Event) -> Result<()>,
    ) -> Result<()> {
        let mut away = false;
        loop {
            let request = self
                .http
                .get(format!("{}/v1/events?after={after}", self.base))
                .header(reqwest::header::ACCEPT, "text/event-stream")
                // A stream, not a request: no overall deadline.
                .timeout(Duration::from_secs(365 * 24 * 3600));
            let response = if away {
                request
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            } else {
                Some(self.send(request, "follow events").await?)
            };
            if let Some(mut response) = response {
                if away {
                    eprintln!("chainfleet: reconnected to {}", self.base);
                    away = false;
                }
                let mut frames = SseFrames::default();
                while let Ok(Some(chunk)) = response.chunk().await {
                    for data in frames.push(&chunk)? {
                        match serde_json::from_str::<Event>(&data) {
                            Ok(event) => {
                                after = after.max(event.id);
                                on_event(&event)?;
                            }
                            Err(err) => {
                                eprintln!("chainfleet: skipped an event that does not parse: {err}")
                            }
                        }
                    }
                }
            }
            if !away {
                eprintln!(
                    "chainfleet: lost the control plane at {}; reconnecting every second",
                    self.base
                );
                away = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Apply manifest text; returns the summary as JSON.
    pub async fn apply(&self, text: &str, file: &str) -> Result<serde_json::Value> {
        let request = self
            .http
            .post(format!("{}/v1/apply", self.base))
            .header("x-manifest-file", file)
            .body(text.to_string());
        let response = self.send(request, "apply").await?;
        response.json().await.context("apply: unexpected answer")
    }

    /// Stop the fleet and the control plane; returns how many nodes stopped.
    pub async fn shutdown(&self) -> Result<u64> {
        let response = self
            .send(self.http.post(format!("{}/v1/shutdown", self.base)), "down")
            .await?;
        let value: serde_json::Value = response.json().await.context("down: unexpected answer")?;
        Ok(value["stopped"].as_u64().unwrap_or(0))
    }

    async fn log(&self, node: &str, query: &str) -> Result<(String, u64)> {
        let path = format!("/v1/nodes/{}/logs?{query}", encode(node));
        let response = self
            .send(
                self.http.get(format!("{}{path}", self.base)),
                &format!("logs of {node}"),
            )
            .await?;
        let next = response
            .headers()
            .get("x-next-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bytes = response.bytes().await.context("read the log")?;
        Ok((String::from_utf8_lossy(&bytes).into_owned(), next))
    }

    /// The last `lines` lines and the offset to follow from.
    pub async fn log_tail(&self, node: &str, lines: usize) -> Result<(String, u64)> {
        self.log(node, &format!("tail={lines}")).await
    }

    /// Log bytes from `offset` and the next offset.
    pub async fn log_from(&self, node: &str, offset: u64) -> Result<(String, u64)> {
        self.log(node, &format!("offset={offset}")).await
    }

    /// Active and recently resolved alerts.
    pub async fn alerts(&self) -> Result<Vec<chainfleet_control::alerts::Alert>> {
        self.get_json("/v1/alerts", "list alerts").await
    }

    /// Send a test notification to every channel; one result per channel.
    pub async fn alerts_test(&self) -> Result<Vec<chainfleet_control::notify::ChannelResult>> {
        let request = self.http.post(format!("{}/v1/alerts/test", self.base));
        let response = self.send(request, "alerts test").await?;
        response
            .json()
            .await
            .context("alerts test: unexpected answer")
    }
}

/// Percent-encode a path segment.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether an error means no control plane answered.
pub fn is_unreachable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<Unreachable>())
}

/// Largest server-sent event the CLI buffers.
const MAX_SSE_FRAME: usize = 16 * 1024 * 1024;

/// Splits a server-sent event stream into the `data` of each event.
#[derive(Default)]
struct SseFrames {
    buffer: Vec<u8>,
}

impl SseFrames {
    /// Add bytes; return the data of every event they complete (comments and
    /// keep-alives carry none).
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>> {
        self.buffer
            .extend(bytes.iter().copied().filter(|&b| b != b'\r'));
        let mut out = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&frame);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|value| value.strip_prefix(' ').unwrap_or(value))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        if self.buffer.len() > MAX_SSE_FRAME {
            return Err(anyhow!(
                "the event stream sent a frame over {MAX_SSE_FRAME} bytes"
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_are_split_across_chunks_and_comments_skipped() {
        let mut frames = SseFrames::default();
        assert!(frames
            .push(b": keep-alive\n\nid: 1\nevent: x\ndata: {\"a\"")
            .expect("ok")
            .is_empty());
        let done = frames
            .push(b":1}\r\n\r\ndata: one\ndata: two\n\n")
            .expect("ok");
        assert_eq!(done, vec!["{\"a\":1}".to_string(), "one\ntwo".to_string()]);
        let mut frames = SseFrames::default();
        let huge = vec![b'x'; MAX_SSE_FRAME + 1];
        assert!(frames.push(&huge).is_err());
    }
}
