//! JSON-RPC over WebSocket on `/rpc/{instance}`.
//!
//! Each call a client sends is judged and limited like one sent over HTTP,
//! then passed to one healthy replica over its own WebSocket. Calls get
//! gateway-chosen ids upstream, so a replica can be swapped under a live
//! session: when it fails or leaves the healthy set, the session moves to
//! another replica, opens every subscription again there, and keeps the
//! subscription ids the client was given.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chainfleet_chains::{MethodClass, WebSocketRpc};
use futures_util::{SinkExt, StreamExt};
use http::header::{AUTHORIZATION, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::jsonrpc::{self, code, Answer, Call, Element};
use crate::limits::InflightGuard;
use crate::metrics::Metrics;
use crate::policy;
use crate::routes::{InstanceRoute, LiveKey};
use crate::server::Failure;
use crate::Inner;

/// Most calls of one session waiting for a node's answer.
const MAX_PENDING: usize = 1024;
/// Most open subscriptions of one session.
const MAX_SUBSCRIPTIONS: usize = 256;
/// How often a session checks its key and its replica's health.
const TICK: Duration = Duration::from_millis(250);
/// How long a session looks for a healthy replica before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(10);

type ClientSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
type NodeSocket = WebSocketStream<TcpStream>;

/// Whether a request asks to switch to WebSocket.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answer an authenticated upgrade request: connect to a replica, then switch
/// the client's connection to WebSocket and run the session on it.
pub(crate) async fn upgrade(
    inner: Arc<Inner>,
    route: Arc<InstanceRoute>,
    key: Arc<LiveKey>,
    inflight: InflightGuard,
    mut request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Failure> {
    let Some(protocol) = route.adapter.websocket() else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "invalid",
            format!(
                "instance `{}` ({}) has no JSON-RPC over WebSocket; send JSON-RPC with POST",
                route.name,
                route.adapter.chain()
            ),
        ));
    };
    let headers = request.headers();
    let version_ok = headers
        .get("sec-websocket-version")
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(client_key) = headers.get(SEC_WEBSOCKET_KEY).filter(|_| version_ok) else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "invalid",
            "a WebSocket upgrade needs `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`"
                .into(),
        ));
    };
    let accept = derive_accept_key(client_key.as_bytes());
    // The session outlives this HTTP connection's slot: it takes its own.
    let Ok(connection) = inner.connections.clone().try_acquire_owned() else {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::OVERLOADED,
            "overloaded",
            format!(
                "the gateway already holds {} connections and WebSocket sessions; retry later",
                inner.options.max_connections
            ),
        )
        .retry_after(1));
    };
    let (node, socket) = connect_any(&inner, &route, protocol, None).await?;
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        out.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    let max_message = usize::try_from(route.access.max_body_bytes).unwrap_or(usize::MAX);
    let upgrading = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match upgrading.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "WebSocket upgrade did not complete");
                return;
            }
        };
        let client = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(
                WebSocketConfig::default()
                    .max_message_size(Some(max_message))
                    .max_frame_size(Some(max_message)),
            ),
        )
        .await;
        let mut session = Session {
            inner,
            route,
            key,
            protocol,
            node,
            next_id: 1,
            pending: HashMap::new(),
            batches: HashMap::new(),
            subscriptions: HashMap::new(),
            _inflight: inflight,
            _connection: connection,
        };
        let metrics = &session.inner.metrics;
        Metrics::inc(&metrics.ws_sessions, &session.route.name);
        let open = metrics
            .ws_open
            .get_or_create(&crate::metrics::InstanceLabels {
                instance: session.route.name.clone(),
            })
            .clone();
        open.inc();
        session.run(client, socket).await;
        open.dec();
    });
    Ok(response)
}

/// Connect to the node's WebSocket endpoint.
async fn connect(
    inner: &Inner,
    base: &str,
    auth: Option<&HeaderValue>,
    protocol: &WebSocketRpc,
) -> Result<NodeSocket, String> {
    let uri: Uri = format!("{base}{}", protocol.path)
        .parse()
        .map_err(|_| format!("`{base}` is not a valid node URL"))?;
    let host = uri.host().unwrap_or("127.0.0.1").to_string();
    let port = uri.port_u16().unwrap_or(80);
    let ws_uri = format!(
        "ws://{}{}",
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    );
    let mut request = ws_uri
        .as_str()
        .into_client_request()
        .map_err(|err| format!("bad WebSocket URL {ws_uri}: {err}"))?;
    if let Some(auth) = auth {
        request.headers_mut().insert(AUTHORIZATION, auth.clone());
    }
    let limit = inner.options.upstream_timeout.min(Duration::from_secs(3));
    let handshake = async {
        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|err| format!("connect: {err}"))?;
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .max_message_size(Some(chainfleet_chains::rpc::MAX_RESPONSE_BYTES))
            .max_frame_size(Some(chainfleet_chains::rpc::MAX_RESPONSE_BYTES));
        tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map(|(socket, _)| socket)
            .map_err(|err| format!("WebSocket handshake: {err}"))
    };
    tokio::time::timeout(limit, handshake)
        .await
        .map_err(|_| format!("no WebSocket handshake within {limit:?}"))?
}

/// Connect to an eligible replica with a closed circuit, trying each once,
/// the `avoid` node last. Returns the node's name and socket.
async fn connect_any(
    inner: &Inner,
    route: &InstanceRoute,
    protocol: &WebSocketRpc,
    avoid: Option<&str>,
) -> Result<(String, NodeSocket), Failure> {
    let now = inner.now_ms();
    let start = inner.next_rotation();
    let total = route.slots.len();
    let mut order: Vec<usize> = (0..total)
        .map(|offset| (start + offset) % total.max(1))
        .filter(|&index| {
            route
                .slots
                .get(index)
                .is_some_and(|slot| slot.eligible && slot.state.closed(now))
        })
        .collect();
    // The node being left goes last: tried only when nothing else answers.
    order.sort_by_key(|&index| {
        route
            .slots
            .get(index)
            .is_some_and(|s| Some(s.node.as_str()) == avoid)
    });
    let mut last = None;
    for index in order {
        let Some(slot) = route.slots.get(index) else {
            continue;
        };
        match connect(inner, &slot.base, slot.auth.as_ref(), protocol).await {
            Ok(socket) => {
                slot.state.success();
                return Ok((slot.node.clone(), socket));
            }
            Err(err) => {
                tracing::warn!(instance = %route.name, node = %slot.node, error = %err, "cannot open a WebSocket to the node");
                inner.upstream_failed(&route.name, slot, "ws_connect");
                last = Some(format!("{}: {err}", slot.node));
            }
        }
    }
    Err(Failure::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code::UNAVAILABLE,
        "unavailable",
        match last {
            Some(last) => format!(
                "no healthy replica of `{}` accepted a WebSocket (last: {last})",
                route.name
            ),
            None => format!(
                "no healthy replica of `{}` ({total} replicas, none up and within {} blocks of the best height)",
                route.name, route.access.max_lag
            ),
        },
    )
    .retry_after(1))
}

/// Who is waiting for the answer to a call sent upstream.
enum Waiter {
    /// A single call; the client's raw id.
    Single(Option<String>),
    /// Slot `index` of batch `batch`'s answer list.
    InBatch { batch: u64, index: usize },
    /// Opening subscription `subscription` again after a failover.
    Reopen { subscription: u64 },
}

/// A call sent upstream and not answered yet.
struct Pending {
    waiter: Waiter,
    call: Call,
    /// Safe to send again to another replica.
    read: bool,
    /// For an unsubscribe: the subscription it closes.
    closes: Option<u64>,
    /// When it was last sent to a node.
    sent: Instant,
}

/// A batch sent over WebSocket, answered as one list when complete.
struct Batch {
    /// Each element's id and answer; `None` while waiting.
    answers: Vec<(Option<String>, Option<Answer>)>,
    /// Elements still waiting.
    left: usize,
}

/// An open subscription.
struct Subscription {
    /// The raw JSON id the client was given (the first replica's id).
    client_id: String,
    /// The raw JSON id on the current replica; `None` while reopening.
    node_id: Option<String>,
    /// Params of the subscribe call, to open it again.
    params: Option<String>,
}

/// Why a session ends.
struct Close(CloseCode, String);

/// One client's WebSocket session.
struct Session {
    inner: Arc<Inner>,
    route: Arc<InstanceRoute>,
    key: Arc<LiveKey>,
    protocol: &'static WebSocketRpc,
    /// The replica the session is on.
    node: String,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    batches: HashMap<u64, Batch>,
    subscriptions: HashMap<u64, Subscription>,
    /// Counts the session against the key's concurrency limit.
    _inflight: InflightGuard,
    /// Counts the session against the gateway's connection limit.
    _connection: tokio::sync::OwnedSemaphorePermit,
}

/// What the session loop reacts to.
enum Event {
    Client(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Node(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Tick,
}

impl Session {
    async fn run(&mut self, mut client: ClientSocket, mut node: NodeSocket) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let close = loop {
            let event = tokio::select! {
                message = client.next() => Event::Client(message),
                message = node.next() => Event::Node(message),
                _ = tick.tick() => Event::Tick,
            };
            let step = match event {
                Event::Client(None) | Event::Client(Some(Ok(Message::Close(_)))) => break None,
                Event::Client(Some(Err(err))) => break Some(client_error(&err)),
                Event::Client(Some(Ok(message))) => {
                    self.on_client_message(message, &mut client, &mut node)
                        .await
                }
                Event::Node(Some(Ok(Message::Text(text)))) => {
                    self.on_node_message(text, &mut client).await
                }
                Event::Node(Some(Ok(Message::Close(_)))) | Event::Node(None) => {
                    self.fail_over(&mut client, &mut node, "closed the WebSocket", true)
                        .await
                }
                Event::Node(Some(Err(err))) => {
                    self.fail_over(&mut client, &mut node, &err.to_string(), true)
                        .await
                }
                // Pings are answered by the library; binary frames are not JSON-RPC.
                Event::Node(Some(Ok(_))) => Ok(()),
                Event::Tick => self.on_tick(&mut client, &mut node).await,
            };
            if let Err(close) = step {
                break Some(close);
            }
        };
        let _ = node.close(None).await;
        if let Some(Close(code, reason)) = close {
            tracing::debug!(instance = %self.route.name, key_id = %self.key.info.id, ?code, reason, "WebSocket session closed");
            let _ = client
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await;
        }
        let _ = client.close(None).await;
    }

    /// Check the key, calls the node has not answered in time, and the replica's health.
    async fn on_tick(
        &mut self,
        client: &mut ClientSocket,
        node: &mut NodeSocket,
    ) -> Result<(), Close> {
        self.expire_pending(client).await?;
        let live = self.inner.keys.read().get(&self.key.hash).cloned();
        let Some(key) = live else {
            return Err(Close(CloseCode::Policy, "API key revoked".into()));
        };
        if key
            .info
            .expires_ms
            .is_some_and(|expires| crate::server::now_unix_ms() >= expires)
        {
            return Err(Close(CloseCode::Policy, "API key expired".into()));
        }
        // Policy and limits may have changed with the key or the manifest.
        self.key = key;
        let route = self
            .inner
            .routes
            .read()
            .instances
            .get(&self.route.name)
            .cloned();
        let Some(route) = route else {
            return Err(Close(
                CloseCode::Away,
                format!("instance `{}` was removed", self.route.name),
            ));
        };
        self.route = route;
        let now = self.inner.now_ms();
        let here_ok = self
            .route
            .slots
            .iter()
            .any(|slot| slot.node == self.node && slot.eligible);
        let elsewhere_ok = self
            .route
            .slots
            .iter()
            .any(|slot| slot.node != self.node && slot.eligible && slot.state.closed(now));
        if !here_ok && elsewhere_ok {
            return self
                .fail_over(client, node, "left the healthy set", false)
                .await;
        }
        Ok(())
    }

    /// Handle one message from the client.
    async fn on_client_message(
        &mut self,
        message: Message,
        client: &mut ClientSocket,
        node: &mut NodeSocket,
    ) -> Result<(), Close> {
        let text = match message {
            Message::Text(text) => Bytes::from(text),
            Message::Binary(_) => {
                return send_client(
                    client,
                    jsonrpc::answer_body(
                        None,
                        &Answer::error(
                            code::INVALID_REQUEST,
                            "binary frames are not JSON-RPC; send text frames",
                            None,
                        ),
                    ),
                )
                .await;
            }
            // Pings and pongs are handled by the library.
            _ => return Ok(()),
        };
        let inner = self.inner.clone();
        let metrics = &inner.metrics;
        let instance = self.route.name.clone();
        let key_id = self.key.info.id.clone();
        let access = &self.route.access;
        let max_batch = usize::try_from(access.max_batch).unwrap_or(usize::MAX);
        let parsed = match jsonrpc::parse(&text, max_batch) {
            Ok(parsed) => parsed,
            Err(err) => {
                metrics.call(&instance, "-", &key_id, "invalid");
                let answer = Answer::error(err.code(), &err.to_string(), None);
                return send_client(client, jsonrpc::answer_body(None, &answer)).await;
            }
        };
        let count = parsed.elements.len();
        let rps = self.key.info.rps.unwrap_or(access.key_rps);
        let burst = self.key.info.burst.unwrap_or(access.key_burst);
        let cost = u32::try_from(count).unwrap_or(u32::MAX);
        let refusal = if let Err(seconds) =
            self.key.usage.bucket.take(cost, rps, burst, Instant::now())
        {
            Some(Answer::error(
                code::LIMITED,
                &format!("API key {key_id} is over its rate of {rps} calls/s (burst {burst}); retry after {seconds}s"),
                None,
            ))
        } else if self.pending.len() + count > MAX_PENDING {
            Some(Answer::error(
                code::LIMITED,
                &format!("this WebSocket already has {MAX_PENDING} calls waiting for the node"),
                None,
            ))
        } else {
            None
        };
        let batch_id = parsed.batch.then(|| self.take_id());
        let mut answers: Vec<(Option<String>, Option<Answer>)> = Vec::with_capacity(count);
        let mut to_send: Vec<(u64, Pending)> = Vec::new();
        for element in parsed.elements {
            let call = match element {
                Element::Invalid { id, reason } => {
                    metrics.call(&instance, "-", &key_id, "invalid");
                    answers.push((
                        id,
                        Some(Answer::error(code::INVALID_REQUEST, &reason, None)),
                    ));
                    continue;
                }
                Element::Call(call) => call,
            };
            let info = self.route.methods.get(call.method.as_str()).copied();
            let label = self.route.method_label(&call.method);
            if let Some(refusal) = &refusal {
                metrics.call(&instance, label, &key_id, "limited");
                answers.push((call.id, Some(refusal.clone())));
                continue;
            }
            if let Err(denial) = policy::judge(
                &self.route.policy,
                &self.key.policy,
                &call.method,
                info.map(|m| m.class),
            ) {
                metrics.call(&instance, label, &key_id, "denied");
                let answer = Answer::error(
                    code::DENIED,
                    &denial.message(&call.method),
                    Some(serde_json::json!({
                        "method": call.method,
                        "rule": denial.rule,
                        "scope": denial.scope.as_str(),
                    })),
                );
                answers.push((call.id, Some(answer)));
                continue;
            }
            let mut closes = None;
            let mut call = call;
            if call.method == self.protocol.subscribe
                && self.subscriptions.len() >= MAX_SUBSCRIPTIONS
            {
                metrics.call(&instance, label, &key_id, "limited");
                let answer = Answer::error(
                    code::LIMITED,
                    &format!("this WebSocket already has {MAX_SUBSCRIPTIONS} subscriptions"),
                    None,
                );
                answers.push((call.id, Some(answer)));
                continue;
            }
            if call.method == self.protocol.unsubscribe {
                match self.translate_unsubscribe(&call) {
                    Unsubscribe::Forward {
                        subscription,
                        params,
                    } => {
                        closes = Some(subscription);
                        call.params = Some(params);
                    }
                    Unsubscribe::Reopening(subscription) => {
                        // Not open on any replica right now: closing it is local.
                        self.subscriptions.remove(&subscription);
                        metrics.call(&instance, label, &key_id, "ok");
                        answers.push((call.id, Some(Answer::Result(Bytes::from_static(b"true")))));
                        continue;
                    }
                    Unsubscribe::Unknown => {}
                }
            }
            let read = info.is_some_and(|m| m.class == MethodClass::Read);
            let Some(client_id) = call.id.clone() else {
                // A notification gets no answer: send it as it is.
                metrics.call(&instance, label, &key_id, "ok");
                let _ = node_send(node, &jsonrpc::call_body(None, &call)).await;
                continue;
            };
            let id = self.take_id();
            // Its slot in the answer list (notifications take none).
            let slot = answers.len();
            let waiter = match batch_id {
                Some(batch) => Waiter::InBatch { batch, index: slot },
                None => Waiter::Single(Some(client_id.clone())),
            };
            answers.push((Some(client_id), None));
            to_send.push((
                id,
                Pending {
                    waiter,
                    call,
                    read,
                    closes,
                    sent: Instant::now(),
                },
            ));
        }
        match batch_id {
            Some(batch) => {
                let left = to_send.len();
                if left == 0 {
                    // A batch of notifications only gets no answer at all.
                    if !answers.is_empty() {
                        send_client(client, batch_body(&answers)).await?;
                    }
                } else {
                    self.batches.insert(batch, Batch { answers, left });
                }
            }
            None => {
                if let Some((id, Some(answer))) = answers.into_iter().next() {
                    send_client(client, jsonrpc::answer_body(id.as_deref(), &answer)).await?;
                }
            }
        }
        let mut failed = false;
        for (id, pending) in to_send {
            let body = jsonrpc::call_body(Some(id), &pending.call);
            self.pending.insert(id, pending);
            if !failed && node_send(node, &body).await.is_err() {
                // Still pending: reads go again to the next replica, others fail.
                failed = true;
            }
        }
        if failed {
            return self
                .fail_over(client, node, "refused a message", true)
                .await;
        }
        Ok(())
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Map an unsubscribe's client-facing subscription id to the replica's.
    fn translate_unsubscribe(&self, call: &Call) -> Unsubscribe {
        let first = call
            .params
            .as_deref()
            .and_then(|p| serde_json::from_str::<Vec<&RawValue>>(p).ok())
            .and_then(|params| params.first().map(|raw| raw.get().to_string()));
        let Some(first) = first else {
            return Unsubscribe::Unknown;
        };
        let found = self
            .subscriptions
            .iter()
            .find(|(_, sub)| sub.client_id == first);
        match found {
            Some((
                &subscription,
                Subscription {
                    node_id: Some(node_id),
                    ..
                },
            )) => Unsubscribe::Forward {
                subscription,
                params: format!("[{node_id}]"),
            },
            Some((&subscription, _)) => Unsubscribe::Reopening(subscription),
            None => Unsubscribe::Unknown,
        }
    }

    /// Handle one text message from the node: an answer or a notification.
    async fn on_node_message(
        &mut self,
        text: Utf8Bytes,
        client: &mut ClientSocket,
    ) -> Result<(), Close> {
        let Ok(envelope) = serde_json::from_str::<NodeMessage>(text.as_str()) else {
            tracing::debug!(instance = %self.route.name, node = %self.node, "node sent a WebSocket message that is not a JSON-RPC object; dropped");
            return Ok(());
        };
        if let Some(method) = envelope.method {
            return self
                .notification(method, envelope.params, &text, client)
                .await;
        }
        let Some(id) = envelope.id.and_then(|id| id.get().parse::<u64>().ok()) else {
            return Ok(());
        };
        let Some(pending) = self.pending.remove(&id) else {
            return Ok(());
        };
        let answer = Answer::from_parts(envelope.result, envelope.error).unwrap_or_else(|| {
            Answer::error(
                code::INTERNAL,
                "the node's answer has neither result nor error",
                None,
            )
        });
        let label = self.route.method_label(&pending.call.method);
        let outcome = if answer.is_error() { "error" } else { "ok" };
        if let Answer::Result(result) = &answer {
            if pending.call.method == self.protocol.subscribe {
                let raw = String::from_utf8_lossy(result).into_owned();
                match pending.waiter {
                    Waiter::Reopen { subscription } => {
                        if let Some(sub) = self.subscriptions.get_mut(&subscription) {
                            sub.node_id = Some(raw);
                        }
                        return Ok(());
                    }
                    _ => {
                        self.subscriptions.insert(
                            id,
                            Subscription {
                                client_id: raw.clone(),
                                node_id: Some(raw),
                                params: pending.call.params.clone(),
                            },
                        );
                    }
                }
            }
            if let Some(subscription) = pending.closes {
                self.subscriptions.remove(&subscription);
            }
        }
        match pending.waiter {
            Waiter::Reopen { subscription } => {
                // The new replica refused a subscription the client relies on.
                let detail = format!(" on {}", self.node);
                Err(self.reopen_failed(subscription, &detail))
            }
            Waiter::Single(client_id) => {
                self.inner
                    .metrics
                    .call(&self.route.name, label, &self.key.info.id, outcome);
                send_client(client, jsonrpc::answer_body(client_id.as_deref(), &answer)).await
            }
            Waiter::InBatch { batch, index } => {
                self.inner
                    .metrics
                    .call(&self.route.name, label, &self.key.info.id, outcome);
                self.fill_batch(batch, index, answer, client).await
            }
        }
    }

    async fn fill_batch(
        &mut self,
        batch: u64,
        index: usize,
        answer: Answer,
        client: &mut ClientSocket,
    ) -> Result<(), Close> {
        let Some(entry) = self.batches.get_mut(&batch) else {
            return Ok(());
        };
        if let Some((_, slot)) = entry.answers.get_mut(index) {
            if slot.is_none() {
                *slot = Some(answer);
                entry.left = entry.left.saturating_sub(1);
            }
        }
        if entry.left == 0 {
            if let Some(done) = self.batches.remove(&batch) {
                return send_client(client, batch_body(&done.answers)).await;
            }
        }
        Ok(())
    }

    /// Pass a subscription notification on under the id the client knows.
    async fn notification(
        &mut self,
        method: &str,
        params: Option<&RawValue>,
        raw: &Utf8Bytes,
        client: &mut ClientSocket,
    ) -> Result<(), Close> {
        let params = params
            .filter(|_| method == self.protocol.notification)
            .and_then(|p| serde_json::from_str::<NotificationParams>(p.get()).ok());
        let Some(params) = params else {
            return send_client(client, Bytes::from(raw.clone())).await;
        };
        let node_id = params.subscription.get();
        let Some(sub) = self
            .subscriptions
            .values()
            .find(|sub| sub.node_id.as_deref() == Some(node_id))
        else {
            // Not ours (closed, or from before a failover): drop it.
            return Ok(());
        };
        if sub.client_id == node_id {
            return send_client(client, Bytes::from(raw.clone())).await;
        }
        let method_json = serde_json::to_string(method).unwrap_or_default();
        let body = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":{method_json},\"params\":{{\"subscription\":{},\"result\":{}}}}}",
            sub.client_id,
            params.result.map(RawValue::get).unwrap_or("null")
        );
        send_client(client, Bytes::from(body)).await
    }

    /// Move to another replica: resend pending reads, fail pending writes,
    /// and open every subscription again. `failed` marks the old replica's
    /// circuit (a health move does not).
    async fn fail_over(
        &mut self,
        client: &mut ClientSocket,
        node: &mut NodeSocket,
        why: &str,
        failed: bool,
    ) -> Result<(), Close> {
        let old = self.node.clone();
        tracing::warn!(instance = %self.route.name, node = %old, why, subscriptions = self.subscriptions.len(), pending = self.pending.len(), "WebSocket session moves to another replica");
        if failed {
            match self.route.slots.iter().find(|slot| slot.node == old) {
                Some(slot) => {
                    self.inner
                        .upstream_failed(&self.route.name, slot, "ws_closed");
                }
                None => self
                    .inner
                    .count_upstream_error(&self.route.name, &old, "ws_closed"),
            }
        }
        let _ = node.close(None).await;
        let deadline = Instant::now() + RECONNECT_FOR;
        let (name, socket) = loop {
            if let Some(route) = self.inner.routes.read().instances.get(&self.route.name) {
                self.route = route.clone();
            }
            match connect_any(&self.inner, &self.route, self.protocol, Some(&old)).await {
                Ok(found) => break found,
                Err(failure) if Instant::now() >= deadline => {
                    self.fail_pending(client, &failure.message).await?;
                    return Err(Close(CloseCode::Again, failure.message));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        *node = socket;
        self.node = name;
        Metrics::inc(&self.inner.metrics.ws_failovers, &self.route.name);
        // Writes may or may not have reached the old replica: never resend them.
        let unsafe_ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.read)
            .map(|(&id, _)| id)
            .collect();
        for id in unsafe_ids {
            if let Some(pending) = self.pending.remove(&id) {
                let message = format!(
                    "replica {old} went away before answering; the call may change state, so it was not sent again — check before sending it again"
                );
                self.answer_failed(pending, &message, client).await?;
            }
        }
        for sub in self.subscriptions.values_mut() {
            sub.node_id = None;
        }
        // Reopen subscriptions; answers to reopen calls in flight are dropped.
        self.pending
            .retain(|_, p| !matches!(p.waiter, Waiter::Reopen { .. }));
        let reopen: Vec<(u64, Option<String>)> = self
            .subscriptions
            .iter()
            .map(|(&key, sub)| (key, sub.params.clone()))
            .collect();
        for (subscription, params) in reopen {
            let id = self.take_id();
            self.pending.insert(
                id,
                Pending {
                    waiter: Waiter::Reopen { subscription },
                    call: Call {
                        id: None,
                        method: self.protocol.subscribe.to_string(),
                        params,
                    },
                    read: true,
                    closes: None,
                    sent: Instant::now(),
                },
            );
        }
        let now = Instant::now();
        let mut resend: Vec<(u64, Bytes)> = self
            .pending
            .iter_mut()
            .map(|(&id, p)| {
                p.sent = now;
                (id, jsonrpc::call_body(Some(id), &p.call))
            })
            .collect();
        resend.sort_by_key(|(id, _)| *id);
        for (_, body) in resend {
            if node_send(node, &body).await.is_err() {
                // The next read of the socket sees the failure and moves again.
                break;
            }
        }
        Ok(())
    }

    /// Answer calls the node left unanswered for `upstream_timeout` with an
    /// error, so a silent node cannot hold a client (or the pending cap) forever.
    async fn expire_pending(&mut self, client: &mut ClientSocket) -> Result<(), Close> {
        let limit = self.inner.options.upstream_timeout;
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent.elapsed() >= limit)
            .map(|(&id, _)| id)
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        self.inner
            .count_upstream_error(&self.route.name, &self.node, "timeout");
        let message = format!("replica {} did not answer within {limit:?}", self.node);
        for id in expired {
            let Some(pending) = self.pending.remove(&id) else {
                continue;
            };
            if let Waiter::Reopen { subscription } = pending.waiter {
                return Err(self.reopen_failed(subscription, &format!(": {message}")));
            }
            self.answer_failed(pending, &message, client).await?;
        }
        Ok(())
    }

    /// Forget a subscription that could not be opened again, and close the
    /// session: the client would otherwise wait for notifications that never come.
    fn reopen_failed(&mut self, subscription: u64, detail: &str) -> Close {
        let client_id = self
            .subscriptions
            .remove(&subscription)
            .map(|sub| sub.client_id)
            .unwrap_or_default();
        Close(
            CloseCode::Error,
            format!("subscription {client_id} could not be reopened{detail}"),
        )
    }

    /// Answer every pending call with an error (no replica is left).
    async fn fail_pending(
        &mut self,
        client: &mut ClientSocket,
        message: &str,
    ) -> Result<(), Close> {
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            if let Some(pending) = self.pending.remove(&id) {
                self.answer_failed(pending, message, client).await?;
            }
        }
        Ok(())
    }

    async fn answer_failed(
        &mut self,
        pending: Pending,
        message: &str,
        client: &mut ClientSocket,
    ) -> Result<(), Close> {
        let answer = Answer::error(code::UPSTREAM_FAILED, message, None);
        let label = self.route.method_label(&pending.call.method);
        self.inner.metrics.call(
            &self.route.name,
            label,
            &self.key.info.id,
            "upstream_failed",
        );
        match pending.waiter {
            Waiter::Single(id) => {
                send_client(client, jsonrpc::answer_body(id.as_deref(), &answer)).await
            }
            Waiter::InBatch { batch, index } => self.fill_batch(batch, index, answer, client).await,
            Waiter::Reopen { .. } => Ok(()),
        }
    }
}

/// What an unsubscribe refers to.
enum Unsubscribe {
    /// An open subscription: send with the replica's id in `params`.
    Forward { subscription: u64, params: String },
    /// A subscription being reopened after a failover.
    Reopening(u64),
    /// Not one of this session's: pass it on untouched.
    Unknown,
}

/// A message from the node, read lazily.
#[derive(Deserialize)]
struct NodeMessage<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    method: Option<&'a str>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// The params of a subscription notification.
#[derive(Deserialize)]
struct NotificationParams<'a> {
    #[serde(borrow)]
    subscription: &'a RawValue,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
}

/// A batch answer: a list with one answer per element that has an id.
fn batch_body(answers: &[(Option<String>, Option<Answer>)]) -> Bytes {
    let mut out = Vec::with_capacity(64 * answers.len());
    out.push(b'[');
    let mut first = true;
    for (id, answer) in answers {
        if !first {
            out.push(b',');
        }
        first = false;
        match answer {
            Some(answer) => jsonrpc::write_answer(&mut out, id.as_deref(), answer),
            None => jsonrpc::write_answer(&mut out, id.as_deref(), &Answer::missing()),
        }
    }
    out.push(b']');
    Bytes::from(out)
}

/// Send JSON text to the client (everything the gateway writes is UTF-8).
async fn send_client(client: &mut ClientSocket, body: Bytes) -> Result<(), Close> {
    let Ok(text) = Utf8Bytes::try_from(body) else {
        return Ok(());
    };
    client.send(Message::Text(text)).await.map_err(|err| {
        Close(
            CloseCode::Error,
            format!("cannot write to the client: {err}"),
        )
    })
}

/// Send JSON text to the node.
async fn node_send(node: &mut NodeSocket, body: &Bytes) -> Result<(), ()> {
    let text = Utf8Bytes::try_from(body.clone()).map_err(|_| ())?;
    node.send(Message::Text(text)).await.map_err(|_| ())
}

/// The close code for a client-side read error.
fn client_error(err: &tokio_tungstenite::tungstenite::Error) -> Close {
    use tokio_tungstenite::tungstenite::Error;
    match err {
        Error::Capacity(capacity) => Close(
            CloseCode::Size,
            format!("message too large ({capacity}); access.maxBodyBytes bounds it"),
        ),
        Error::Utf8(_) => Close(CloseCode::Invalid, "text frame is not UTF-8".into()),
        other => Close(CloseCode::Protocol, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_bodies_carry_the_session_id_and_notifications_none() {
        let call = Call {
            id: Some("\"a\"".into()),
            method: "eth_subscribe".into(),
            params: Some("[\"newHeads\"]".into()),
        };
        let body = jsonrpc::call_body(Some(42), &call);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value["id"], 42);
        assert_eq!(value["method"], "eth_subscribe");
        assert_eq!(value["params"][0], "newHeads");
        let note = jsonrpc::call_body(None, &call);
        let value: serde_json::Value = serde_json::from_slice(&note).expect("json");
        assert!(value.get("id").is_none(), "{value}");
    }

    #[test]
    fn batch_bodies_keep_order_and_fill_gaps() {
        let body = batch_body(&[
            (
                Some("1".into()),
                Some(Answer::Result(Bytes::from_static(b"\"x\""))),
            ),
            (Some("2".into()), None),
        ]);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value[0]["result"], "x");
        assert_eq!(value[1]["error"]["code"], code::INTERNAL);
    }

    #[test]
    fn upgrade_needs_the_websocket_token() {
        let mut headers = HeaderMap::new();
        assert!(!is_upgrade(&headers));
        headers.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(is_upgrade(&headers));
        headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_upgrade(&headers));
    }
}
