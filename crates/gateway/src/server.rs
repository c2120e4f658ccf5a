//! The HTTP side: accepting connections, authenticating, judging, limiting,
//! and forwarding calls to replicas with one retry for idempotent reads.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chainfleet_chains::{Cacheability, MethodClass, MethodInfo};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{watch, SemaphorePermit};

use crate::cache::Turn;
use crate::jsonrpc::{self, code, Answer, Call, Element};
use crate::keys::{self, KEY_PREFIX};
use crate::metrics::Metrics;
use crate::policy;
use crate::routes::{InstanceRoute, LiveKey, NodeState, Slot};
use crate::Inner;

type Body = Full<Bytes>;

/// Why a request (or the calls of it sent to a node) failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON-RPC error code.
    pub code: i64,
    /// What happened and what to do.
    pub message: String,
    /// Metrics outcome label.
    pub outcome: &'static str,
    /// Seconds for `Retry-After`, when waiting helps.
    pub retry_after: Option<u64>,
}

impl Failure {
    pub(crate) fn new(
        status: StatusCode,
        code: i64,
        outcome: &'static str,
        message: String,
    ) -> Self {
        Failure {
            status,
            code,
            message,
            outcome,
            retry_after: None,
        }
    }

    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn answer(&self) -> Answer {
        Answer::error(self.code, &self.message, None)
    }

    fn response(&self) -> Response<Body> {
        let body = jsonrpc::answer_body(None, &self.answer());
        let mut response = json_response(self.status, body);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Accept connections until `shutdown` turns true.
pub(crate) async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(inner.options.header_read_timeout)
        .max_buf_size(64 * 1024);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(error = %err, "gateway accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = inner.connections.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, "connection limit reached; connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let inner = inner.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let ip = peer.ip();
            let service = service_fn(move |request| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(handle(inner, request, ip).await) }
            });
            if let Err(err) = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(peer = %peer, error = %err, "gateway connection ended");
            }
            drop(permit);
        });
    }
}

/// Answer one HTTP request.
async fn handle(inner: Arc<Inner>, request: Request<Incoming>, ip: IpAddr) -> Response<Body> {
    let path = request.uri().path();
    if path == "/metrics" {
        let mut response = Response::new(Full::new(Bytes::from(inner.metrics.render())));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        return response;
    }
    if path == "/healthz" {
        return Response::new(Full::new(Bytes::from_static(b"ok\n")));
    }
    let Some(rest) = path.strip_prefix("/rpc/") else {
        return Failure::new(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "invalid",
            "unknown path; send JSON-RPC to POST /rpc/INSTANCE".into(),
        )
        .response();
    };
    let (instance, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let (path_key, rest_path) = if tail.starts_with(KEY_PREFIX) {
        match tail.split_once('/') {
            Some((key, rest_path)) => (Some(key.to_string()), rest_path.to_string()),
            None => (Some(tail.to_string()), String::new()),
        }
    } else {
        (None, tail.to_string())
    };
    let (route, waiting) = {
        let routes = inner.routes.read();
        (
            routes.instances.get(instance).cloned(),
            routes.waiting.contains(instance),
        )
    };
    let Some(route) = route else {
        let shown: String = instance.chars().take(60).collect();
        if waiting {
            inner.metrics.call(&shown, "-", "-", "unavailable");
            return Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::UNAVAILABLE,
                "unavailable",
                format!("instance `{shown}` has no replicas yet (just applied, or its nodes are still being created); retry shortly"),
            )
            .retry_after(2)
            .response();
        }
        inner.metrics.call("-", "-", "-", "unknown_instance");
        return Failure::new(
            StatusCode::NOT_FOUND,
            code::UNKNOWN_INSTANCE,
            "unknown_instance",
            format!("no instance is named `{shown}`; the gateway serves /rpc/INSTANCE for each instance of the fleet"),
        )
        .response();
    };
    let started = Instant::now();
    let response = serve_instance(&inner, &route, request, ip, path_key, &rest_path).await;
    route.latency.observe(started.elapsed().as_secs_f64());
    response
}

/// The key a request presents, if any.
fn presented_key(headers: &HeaderMap, path_key: Option<String>) -> Option<String> {
    if path_key.is_some() {
        return path_key;
    }
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if let Some(key) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            return Some(key.trim().to_string());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

pub(crate) fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Check the key: known, not expired, for this instance, from an allowed address.
fn authenticate(
    inner: &Inner,
    route: &InstanceRoute,
    headers: &HeaderMap,
    path_key: Option<String>,
    ip: IpAddr,
) -> Result<Arc<LiveKey>, Failure> {
    let unauthorized = |message: String| {
        Failure::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "unauthorized",
            message,
        )
    };
    let Some(presented) = presented_key(headers, path_key) else {
        return Err(unauthorized(
            "an API key is required: send `Authorization: Bearer KEY`, `X-Api-Key: KEY`, or use /rpc/INSTANCE/KEY".into(),
        ));
    };
    let hash = keys::hash_key(&presented);
    let key = inner.keys.read().get(&hash).cloned();
    let Some(key) = key else {
        return Err(unauthorized(
            "unknown or revoked API key; `chainfleet keys create` issues one".into(),
        ));
    };
    if let Some(expires_ms) = key.info.expires_ms {
        if now_unix_ms() >= expires_ms {
            return Err(unauthorized(format!(
                "API key {} expired (at Unix ms {expires_ms}); create a new one",
                key.info.id
            )));
        }
    }
    if key.info.instance != route.name {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            code::FORBIDDEN,
            "forbidden",
            format!(
                "API key {} is for instance `{}`, not `{}`",
                key.info.id, key.info.instance, route.name
            ),
        ));
    }
    if !key.allows_ip(ip) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            code::FORBIDDEN,
            "forbidden",
            format!(
                "API key {} may not be used from {ip} (allowed: {})",
                key.info.id,
                key.info.cidrs.join(", ")
            ),
        ));
    }
    Ok(key)
}

fn limited(what: &str, seconds: u64) -> Failure {
    Failure::new(
        StatusCode::TOO_MANY_REQUESTS,
        code::LIMITED,
        "limited",
        format!("{what}; retry after {seconds}s"),
    )
    .retry_after(seconds)
}

/// Bodies over the limit are still read (and dropped) up to this size, so the
/// client gets its 413 instead of a reset from closing on unread data.
const DRAIN_LIMIT: u64 = 8 * 1024 * 1024;

/// Read a body of at most `max` bytes within the body timeout.
async fn read_body(
    inner: &Inner,
    request: Request<Incoming>,
    max: usize,
) -> Result<Bytes, Failure> {
    let too_large = |got: Option<u64>| {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::TOO_LARGE,
            "too_large",
            match got {
                Some(got) => format!("the body is {got} bytes; this instance takes at most {max} (access.maxBodyBytes)"),
                None => format!("the body is larger than {max} bytes (access.maxBodyBytes)"),
            },
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > DRAIN_LIMIT.max(max as u64)) {
        return Err(too_large(declared));
    }
    let mut body = request.into_body();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut seen: u64 = 0;
    let reading = async {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            seen += data.len() as u64;
            if seen > DRAIN_LIMIT.max(max as u64) {
                break;
            }
            if seen <= max as u64 {
                chunks.push(data);
            }
        }
        Ok::<_, hyper::Error>(())
    };
    match tokio::time::timeout(inner.options.body_read_timeout, reading).await {
        Err(_) => Err(Failure::new(
            StatusCode::REQUEST_TIMEOUT,
            code::INVALID_REQUEST,
            "invalid",
            format!(
                "the body did not arrive within {:?}",
                inner.options.body_read_timeout
            ),
        )),
        Ok(Err(err)) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "invalid",
            format!("cannot read the body: {err}"),
        )),
        Ok(Ok(())) if seen > max as u64 => Err(too_large(declared)),
        // One frame is the usual case: no copy.
        Ok(Ok(())) if chunks.len() == 1 => Ok(chunks.pop().unwrap_or_default()),
        Ok(Ok(())) => Ok(Bytes::from(chunks.concat())),
    }
}

/// Serve a request for a known instance.
async fn serve_instance(
    inner: &Arc<Inner>,
    route: &Arc<InstanceRoute>,
    request: Request<Incoming>,
    ip: IpAddr,
    path_key: Option<String>,
    rest_path: &str,
) -> Response<Body> {
    let metrics = &inner.metrics;
    let key = match authenticate(inner, route, request.headers(), path_key, ip) {
        Ok(key) => key,
        Err(failure) => {
            metrics.call(&route.name, "-", "-", failure.outcome);
            return failure.response();
        }
    };
    let key_id = key.info.id.as_str();
    let access = &route.access;
    let rps = key.info.rps.unwrap_or(access.key_rps);
    let burst = key.info.burst.unwrap_or(access.key_burst);
    let concurrency = key.info.concurrency.unwrap_or(access.key_concurrency);
    if let Err(seconds) = key.usage.bucket.take(1, rps, burst, Instant::now()) {
        metrics.call(&route.name, "-", key_id, "limited");
        return limited(
            &format!("API key {key_id} is over its rate of {rps} requests/s (burst {burst})"),
            seconds,
        )
        .response();
    }
    let Some(inflight) = key.usage.enter(concurrency) else {
        metrics.call(&route.name, "-", key_id, "limited");
        return limited(
            &format!("API key {key_id} already has {concurrency} requests in flight"),
            1,
        )
        .response();
    };
    if rest_path.is_empty() && crate::ws::is_upgrade(request.headers()) {
        let upgraded =
            crate::ws::upgrade(inner.clone(), route.clone(), key.clone(), inflight, request).await;
        return upgraded.unwrap_or_else(|failure| {
            metrics.call(&route.name, "-", key_id, failure.outcome);
            failure.response()
        });
    }
    let is_post = request.method() == Method::POST;
    let http_method = request.method().clone();
    let query = request.uri().query().map(str::to_string);
    if rest_path.is_empty() && !is_post {
        metrics.call(&route.name, "-", key_id, "invalid");
        return Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            code::INVALID_REQUEST,
            "invalid",
            "send JSON-RPC with POST".into(),
        )
        .response();
    }
    let max_body = usize::try_from(access.max_body_bytes).unwrap_or(usize::MAX);
    let body = match read_body(inner, request, max_body).await {
        Ok(body) => body,
        Err(failure) => {
            metrics.call(&route.name, "-", key_id, failure.outcome);
            return failure.response();
        }
    };
    if !rest_path.is_empty() {
        return serve_rest(
            inner,
            route,
            &key,
            rest_path,
            query.as_deref(),
            http_method,
            body,
        )
        .await;
    }
    let max_batch = usize::try_from(access.max_batch).unwrap_or(usize::MAX);
    let parsed = match jsonrpc::parse(&body, max_batch) {
        Ok(parsed) => parsed,
        Err(err) => {
            let status = match err {
                jsonrpc::ParseError::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            let outcome = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "invalid"
            };
            metrics.call(&route.name, "-", key_id, outcome);
            return Failure::new(status, err.code(), outcome, err.to_string()).response();
        }
    };
    let count = parsed.elements.len();
    if count > 1 {
        let extra = u32::try_from(count - 1).unwrap_or(u32::MAX);
        if let Err(seconds) = key.usage.bucket.take(extra, rps, burst, Instant::now()) {
            metrics.call(&route.name, "-", key_id, "limited");
            return limited(
                &format!("a batch of {count} calls is over API key {key_id}'s rate of {rps} calls/s (burst {burst})"),
                seconds,
            )
            .response();
        }
    }
    serve_calls(inner, route, &key, parsed).await
}

/// The catalog label of a method for metrics (bounded: unknown names are `other`).
fn method_label(info: Option<&&'static MethodInfo>) -> &'static str {
    info.map(|m| m.name).unwrap_or("other")
}

/// Whether the cache may hold an answer to this method (so is worth a look-up).
fn cacheable(info: Option<&&'static MethodInfo>) -> bool {
    info.is_some_and(|m| m.class == MethodClass::Read && m.cache != Cacheability::Never)
}

/// Whether a successful `result` can no longer change, so may be cached: the
/// adapter reads which block it belongs to, and that block must be as deep
/// as the catalog asks below the instance's best height.
fn settled(
    route: &InstanceRoute,
    info: Option<&&'static MethodInfo>,
    call: &Call,
    result: &[u8],
) -> bool {
    let depth = match info.map(|m| (m.class, m.cache)) {
        Some((MethodClass::Read, Cacheability::Immutable)) => 0,
        Some((MethodClass::Read, Cacheability::ImmutableWhenDeep(depth))) => depth,
        _ => return false,
    };
    route
        .adapter
        .settles(&call.method, call.params.as_deref(), result)
        .is_final(route.best_height, depth)
}

fn cache_key(route: &InstanceRoute, call: &Call) -> String {
    let params = call.params.as_deref().unwrap_or("");
    let mut key = String::with_capacity(route.name.len() + call.method.len() + params.len() + 2);
    for part in [
        route.name.as_str(),
        "\n",
        call.method.as_str(),
        "\n",
        params,
    ] {
        key.push_str(part);
    }
    key
}

/// Judge, answer from the cache, and forward the calls of a parsed request.
async fn serve_calls(
    inner: &Inner,
    route: &InstanceRoute,
    key: &LiveKey,
    parsed: jsonrpc::Request,
) -> Response<Body> {
    let metrics = &inner.metrics;
    let key_id = key.info.id.as_str();
    let count = parsed.elements.len();
    let mut answers: Vec<Option<Answer>> = vec![None; count];
    let mut forward: Vec<usize> = Vec::new();
    for (index, element) in parsed.elements.iter().enumerate() {
        let call = match element {
            Element::Invalid { reason, .. } => {
                metrics.call(&route.name, "-", key_id, "invalid");
                answers[index] = Some(Answer::error(code::INVALID_REQUEST, reason, None));
                continue;
            }
            Element::Call(call) => call,
        };
        let info = route.methods.get(call.method.as_str());
        if let Err(denial) = policy::judge(
            &route.policy,
            &key.policy,
            &call.method,
            info.map(|m| m.class),
        ) {
            metrics.call(&route.name, method_label(info), key_id, "denied");
            tracing::debug!(instance = %route.name, key_id, method = %call.method, rule = %denial.rule, "call denied");
            answers[index] = Some(Answer::error(
                code::DENIED,
                &denial.message(&call.method),
                Some(json!({
                    "method": call.method,
                    "rule": denial.rule,
                    "scope": denial.scope.as_str(),
                })),
            ));
            continue;
        }
        if cacheable(info) {
            if let Some(result) = inner.cache.get(&cache_key(route, call)) {
                metrics.call(&route.name, method_label(info), key_id, "cached");
                Metrics::inc(&metrics.cache_hits, &route.name);
                answers[index] = Some(Answer::Result(result));
                continue;
            }
            Metrics::inc(&metrics.cache_misses, &route.name);
        }
        forward.push(index);
    }
    let mut failed: Option<Failure> = None;
    if !forward.is_empty() {
        let calls: Vec<&Call> = forward
            .iter()
            .filter_map(|&i| match parsed.elements.get(i) {
                Some(Element::Call(call)) => Some(call),
                _ => None,
            })
            .collect();
        let outcome = if calls.len() == 1 && !parsed.batch {
            forward_coalesced(inner, route, calls[0])
                .await
                .map(|a| vec![a])
        } else {
            forward_calls(inner, route, &calls).await
        };
        match outcome {
            Ok(results) => {
                for ((&index, call), answer) in forward.iter().zip(&calls).zip(results) {
                    let info = route.methods.get(call.method.as_str());
                    let outcome = if answer.is_error() { "error" } else { "ok" };
                    metrics.call(&route.name, method_label(info), key_id, outcome);
                    if let Answer::Result(result) = &answer {
                        if settled(route, info, call, result) {
                            inner.cache.put(&cache_key(route, call), result.clone());
                        }
                    }
                    answers[index] = Some(answer);
                }
            }
            Err(failure) => {
                for (&index, call) in forward.iter().zip(&calls) {
                    let info = route.methods.get(call.method.as_str());
                    metrics.call(&route.name, method_label(info), key_id, failure.outcome);
                    answers[index] = Some(failure.answer());
                }
                failed = Some(failure);
            }
        }
    }
    let all_invalid = parsed
        .elements
        .iter()
        .all(|e| matches!(e, Element::Invalid { .. }));
    let status = match &failed {
        Some(failure) if forward.len() == count => failure.status,
        _ if all_invalid && !parsed.batch => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let mut out = Vec::with_capacity(128 * count);
    let mut written = 0;
    if parsed.batch {
        out.push(b'[');
    }
    for (element, answer) in parsed.elements.iter().zip(&answers) {
        let id = match element {
            // Notifications get no answer.
            Element::Call(Call { id: None, .. }) => continue,
            Element::Call(call) => call.id.as_deref(),
            Element::Invalid { id, .. } => id.as_deref(),
        };
        if written > 0 {
            out.push(b',');
        }
        match answer {
            Some(answer) => jsonrpc::write_answer(&mut out, id, answer),
            None => jsonrpc::write_answer(&mut out, id, &Answer::missing()),
        }
        written += 1;
    }
    if parsed.batch {
        out.push(b']');
    }
    if written == 0 {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        return response;
    }
    let mut response = json_response(status, Bytes::from(out));
    if let Some(seconds) = failed.and_then(|f| f.retry_after) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Forward one read, merged with identical reads in flight.
async fn forward_coalesced(
    inner: &Inner,
    route: &InstanceRoute,
    call: &Call,
) -> Result<Answer, Failure> {
    let is_read = route
        .methods
        .get(call.method.as_str())
        .is_some_and(|m| m.class == MethodClass::Read);
    if !is_read {
        return forward_one(inner, route, call).await;
    }
    let key = cache_key(route, call);
    match inner.coalescer.join(&key) {
        Turn::Lead(leader) => {
            let outcome = forward_one(inner, route, call).await;
            leader.finish(Arc::new(outcome.clone()));
            outcome
        }
        Turn::Follow(receiver) => match receiver.await {
            Ok(shared) => {
                Metrics::inc(&inner.metrics.coalesced, &route.name);
                (*shared).clone()
            }
            Err(_) => forward_one(inner, route, call).await,
        },
    }
}

async fn forward_one(inner: &Inner, route: &InstanceRoute, call: &Call) -> Result<Answer, Failure> {
    let mut answers = forward_calls(inner, route, &[call]).await?;
    answers.pop().ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_GATEWAY,
            code::INTERNAL,
            "upstream_failed",
            "the node gave no answer".into(),
        )
    })
}

/// Forward calls to one replica (one request; a batch when more than one),
/// or one request per call where the family takes no batches.
async fn forward_calls(
    inner: &Inner,
    route: &InstanceRoute,
    calls: &[&Call],
) -> Result<Vec<Answer>, Failure> {
    if calls.len() > 1 && !route.adapter.supports_batch() {
        let each = calls
            .iter()
            .map(|call| forward_calls_batched(inner, route, std::slice::from_ref(call)));
        let outcomes = futures_util::future::join_all(each).await;
        return Ok(outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(mut answers) => answers.pop().unwrap_or_else(Answer::missing),
                Err(failure) => failure.answer(),
            })
            .collect());
    }
    forward_calls_batched(inner, route, calls).await
}

async fn forward_calls_batched(
    inner: &Inner,
    route: &InstanceRoute,
    calls: &[&Call],
) -> Result<Vec<Answer>, Failure> {
    let idempotent = calls.iter().all(|call| {
        route
            .methods
            .get(call.method.as_str())
            .is_some_and(|m| m.class == MethodClass::Read)
    });
    let batch = calls.len() > 1;
    let body = jsonrpc::upstream_body(calls, batch);
    let count = calls.len();
    send_with_retry(
        inner,
        route,
        |slot| slot.rpc_uri.clone(),
        Method::POST,
        body,
        idempotent,
        |_status, body| {
            if batch {
                let answers = jsonrpc::parse_batch_answer(&body, count)?;
                Some(
                    answers
                        .into_iter()
                        .map(|a| {
                            a.unwrap_or_else(|| {
                                Answer::error(
                                    code::INTERNAL,
                                    "the node's batch answer has no answer for this call",
                                    None,
                                )
                            })
                        })
                        .collect(),
                )
            } else {
                let text = std::str::from_utf8(&body).ok()?;
                jsonrpc::parse_answer(text).map(|(_, answer)| vec![answer])
            }
        },
    )
    .await
}

/// Take a slot in the bounded upstream queue, or shed the request.
async fn admit(inner: &Inner) -> Result<SemaphorePermit<'_>, Failure> {
    if let Ok(permit) = inner.permits.try_acquire() {
        return Ok(permit);
    }
    let overloaded = || {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::OVERLOADED,
            "overloaded",
            "the gateway is overloaded; retry shortly".into(),
        )
        .retry_after(1)
    };
    if inner.queued.fetch_add(1, Ordering::AcqRel) >= inner.options.max_queue {
        inner.queued.fetch_sub(1, Ordering::AcqRel);
        return Err(overloaded());
    }
    let waited = tokio::time::timeout(inner.options.queue_timeout, inner.permits.acquire()).await;
    inner.queued.fetch_sub(1, Ordering::AcqRel);
    match waited {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(overloaded()),
    }
}

/// Pick the least loaded eligible replica not yet tried.
fn pick(inner: &Inner, route: &InstanceRoute, tried: &[usize]) -> Result<Option<usize>, Failure> {
    let now = inner.now_ms();
    let total = route.slots.len();
    let healthy = route.healthy();
    if healthy == 0 {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::UNAVAILABLE,
            "unavailable",
            format!(
                "no healthy replica of `{}` ({total} replicas, none up and within {} blocks of the best height)",
                route.name, route.access.max_lag
            ),
        )
        .retry_after(1));
    }
    let start = inner.next_rotation();
    let mut best: Option<(usize, u32)> = None;
    let mut open = 0;
    for offset in 0..total {
        let index = (start + offset) % total;
        let Some(slot) = route.slots.get(index) else {
            continue;
        };
        if !slot.eligible || tried.contains(&index) {
            continue;
        }
        if !slot.state.closed(now) {
            open += 1;
            continue;
        }
        let load = slot.state.inflight.load(Ordering::Relaxed);
        if best.is_none_or(|(_, best_load)| load < best_load) {
            best = Some((index, load));
        }
    }
    match best {
        Some((index, _)) => Ok(Some(index)),
        None if tried.is_empty() && open > 0 => Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::UNAVAILABLE,
            "unavailable",
            format!(
                "every healthy replica of `{}` is failing (circuit open); retry shortly",
                route.name
            ),
        )
        .retry_after(1)),
        None => Ok(None),
    }
}

/// Counts a request in flight to a node.
struct InflightNode<'a>(&'a NodeState);

impl Drop for InflightNode<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Send one request to a node; `Err(kind)` when it failed as a transport.
async fn send(
    inner: &Inner,
    slot: &Slot,
    uri: Uri,
    method: Method,
    body: Bytes,
) -> Result<(StatusCode, Option<HeaderValue>, Bytes), &'static str> {
    slot.state.inflight.fetch_add(1, Ordering::Relaxed);
    let _inflight = InflightNode(&slot.state);
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(auth) = &slot.auth {
        headers.insert(AUTHORIZATION, auth.clone());
    }
    let exchange = async {
        let response = inner.client.request(request).await.map_err(|err| {
            if err.is_connect() {
                "connect"
            } else {
                "io"
            }
        })?;
        let status = response.status();
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let body = Limited::new(
            response.into_body(),
            chainfleet_chains::rpc::MAX_RESPONSE_BYTES,
        )
        .collect()
        .await
        .map_err(|_| "io")?
        .to_bytes();
        Ok((status, content_type, body))
    };
    match tokio::time::timeout(inner.options.upstream_timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err("timeout"),
    }
}

/// Send to a replica; for idempotent requests, try once more on another
/// replica after a transport failure, a 5xx, or an unusable answer.
/// `accept` turns a node's answer into the result, or rejects it.
#[allow(clippy::too_many_arguments)]
async fn send_with_retry<T>(
    inner: &Inner,
    route: &InstanceRoute,
    uri_of: impl Fn(&Slot) -> Uri,
    method: Method,
    body: Bytes,
    idempotent: bool,
    accept: impl Fn(StatusCode, Bytes) -> Option<T>,
) -> Result<T, Failure> {
    let _permit = admit(inner).await?;
    let attempts = if idempotent { 2 } else { 1 };
    let mut tried: Vec<usize> = Vec::with_capacity(2);
    let mut last: Option<Failure> = None;
    for attempt in 0..attempts {
        let Some(index) = pick(inner, route, &tried)? else {
            break;
        };
        tried.push(index);
        let Some(slot) = route.slots.get(index) else {
            break;
        };
        if attempt > 0 {
            Metrics::inc(&inner.metrics.retries, &route.name);
        }
        let kind = match send(inner, slot, uri_of(slot), method.clone(), body.clone()).await {
            Ok((status, _, answer)) => {
                let server_error = status.is_server_error();
                match accept(status, answer) {
                    Some(result) => {
                        slot.state.success();
                        return Ok(result);
                    }
                    None if server_error => "status",
                    None => "bad_answer",
                }
            }
            Err(kind) => kind,
        };
        let opened = inner.upstream_failed(&route.name, slot, kind);
        tracing::warn!(instance = %route.name, node = %slot.node, kind, circuit_opened = opened, retry = idempotent && attempt == 0, "upstream request failed");
        let message = if idempotent {
            format!(
                "replica {} failed ({kind}) and no other replica could answer",
                slot.node
            )
        } else {
            format!(
                "replica {} failed ({kind}); the call may change state, so it was not retried — check before sending it again",
                slot.node
            )
        };
        last = Some(Failure::new(
            StatusCode::BAD_GATEWAY,
            code::UPSTREAM_FAILED,
            "upstream_failed",
            message,
        ));
    }
    Err(last.unwrap_or_else(|| {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::UNAVAILABLE,
            "unavailable",
            format!("no replica of `{}` could take the request", route.name),
        )
        .retry_after(1)
    }))
}

/// Serve a REST-style path (e.g. monerod's `/get_height`), judged by its catalog name.
async fn serve_rest(
    inner: &Inner,
    route: &InstanceRoute,
    key: &LiveKey,
    rest_path: &str,
    query: Option<&str>,
    method: Method,
    body: Bytes,
) -> Response<Body> {
    let metrics = &inner.metrics;
    let key_id = key.info.id.as_str();
    let name = format!("/{rest_path}");
    let Some(info) = route.methods.get(name.as_str()) else {
        metrics.call(&route.name, "other", key_id, "invalid");
        let shown: String = name.chars().take(60).collect();
        return Failure::new(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "invalid",
            format!(
                "`{shown}` is not a REST path of this chain; send JSON-RPC to /rpc/{}",
                route.name
            ),
        )
        .response();
    };
    if let Err(denial) = policy::judge(&route.policy, &key.policy, &name, Some(info.class)) {
        metrics.call(&route.name, info.name, key_id, "denied");
        return Failure::new(
            StatusCode::FORBIDDEN,
            code::DENIED,
            "denied",
            denial.message(&name),
        )
        .response();
    }
    let suffix = match query {
        Some(query) => format!("{name}?{query}"),
        None => name.clone(),
    };
    let outcome = send_with_retry(
        inner,
        route,
        |slot| {
            format!("{}{suffix}", slot.base)
                .parse::<Uri>()
                .unwrap_or_else(|_| slot.rpc_uri.clone())
        },
        method,
        body,
        info.class == MethodClass::Read,
        |status, body| (!status.is_server_error()).then_some((status, body)),
    )
    .await;
    match outcome {
        Ok((status, body)) => {
            metrics.call(&route.name, info.name, key_id, "ok");
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(route.adapter.rest_content_type(&name)),
            );
            response
        }
        Err(failure) => {
            metrics.call(&route.name, info.name, key_id, failure.outcome);
            failure.response()
        }
    }
}
