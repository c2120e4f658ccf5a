//! A small JSON-RPC and REST client for talking to nodes on loopback.
//!
//! Node answers are input: they are size-capped and parsed without panics.

use std::time::Duration;

use serde_json::{json, Value};

use crate::ChainError;

/// Largest node answer read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Where and how to reach a node's RPC. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:18443`.
    pub url: String,
    /// HTTP basic auth (user, password), if the node needs it. Never logged.
    pub basic_auth: Option<(String, String)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field(
                "basic_auth",
                &self
                    .basic_auth
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .finish()
    }
}

impl Endpoint {
    /// An endpoint on loopback without auth.
    pub fn local(port: u16) -> Self {
        Endpoint {
            url: format!("http://127.0.0.1:{port}"),
            basic_auth: None,
        }
    }
}

/// Shared HTTP client for probes and commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RpcClient {
    http: reqwest::Client,
}

impl RpcClient {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, ChainError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|source| ChainError::Client { source })?;
        Ok(RpcClient { http })
    }

    /// POST a JSON body to `url + path` and return the parsed JSON answer.
    pub async fn post_json(
        &self,
        endpoint: &Endpoint,
        path: &str,
        body: &Value,
    ) -> Result<Value, ChainError> {
        let url = format!("{}{}", endpoint.url, path);
        let mut request = self.http.post(&url).json(body);
        if let Some((user, password)) = &endpoint.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        self.send(request, &url).await
    }

    /// GET `url + path` and return the parsed JSON answer.
    pub async fn get_json(&self, endpoint: &Endpoint, path: &str) -> Result<Value, ChainError> {
        let url = format!("{}{}", endpoint.url, path);
        let mut request = self.http.get(&url);
        if let Some((user, password)) = &endpoint.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        self.send(request, &url).await
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<Value, ChainError> {
        let mut response = request
            .send()
            .await
            .map_err(|source| ChainError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) =
            response
                .chunk()
                .await
                .map_err(|source| ChainError::Unreachable {
                    url: url.to_string(),
                    source,
                })?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ChainError::BadResponse {
                    url: url.to_string(),
                    detail: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => Ok(value),
            Err(err) => Err(ChainError::BadResponse {
                url: url.to_string(),
                detail: format!(
                    "HTTP {status}, not JSON ({err}): {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            }),
        }
    }

    /// Call one JSON-RPC 2.0 method at `path` and return its `result`.
    pub async fn call(
        &self,
        endpoint: &Endpoint,
        path: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, ChainError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let answer = self.post_json(endpoint, path, &body).await?;
        take_result(answer, method)
    }

    /// Call several JSON-RPC methods in one batch; results come back in order.
    pub async fn batch(
        &self,
        endpoint: &Endpoint,
        path: &str,
        calls: &[(&str, Value)],
    ) -> Result<Vec<Value>, ChainError> {
        self.batch_each(endpoint, path, calls)
            .await?
            .into_iter()
            .collect()
    }

    /// Like [`RpcClient::batch`], but one failed call fails only its own slot.
    pub async fn batch_each(
        &self,
        endpoint: &Endpoint,
        path: &str,
        calls: &[(&str, Value)],
    ) -> Result<Vec<Result<Value, ChainError>>, ChainError> {
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(id, (method, params))| {
                json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
            })
            .collect();
        let answer = self.post_json(endpoint, path, &Value::Array(body)).await?;
        let methods: Vec<&str> = calls.iter().map(|(method, _)| *method).collect();
        split_batch(answer, &methods, &endpoint.url)
    }
}

/// Match a batch answer to its calls by `id`: one result per call, in call order.
pub(crate) fn split_batch(
    answer: Value,
    methods: &[&str],
    url: &str,
) -> Result<Vec<Result<Value, ChainError>>, ChainError> {
    let Value::Array(items) = answer else {
        return Err(ChainError::BadResponse {
            url: url.to_string(),
            detail: format!(
                "a batch call was not answered with a list: {}",
                field::short(&answer)
            ),
        });
    };
    let mut results: Vec<Option<Result<Value, ChainError>>> = std::iter::repeat_with(|| None)
        .take(methods.len())
        .collect();
    for item in items {
        let Some(id) = item.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let Ok(index) = usize::try_from(id) else {
            continue;
        };
        let (Some(method), Some(slot)) = (methods.get(index), results.get_mut(index)) else {
            continue;
        };
        // The first answer for an id wins; a hostile node cannot overwrite it.
        if slot.is_none() {
            *slot = Some(take_result(item, method));
        }
    }
    Ok(results
        .into_iter()
        .zip(methods)
        .map(|(result, method)| {
            result.unwrap_or_else(|| {
                Err(ChainError::BadResponse {
                    url: url.to_string(),
                    detail: format!("no answer for `{method}` in the batch"),
                })
            })
        })
        .collect())
}

/// The `result` of a JSON-RPC answer, or its `error` as a [`ChainError`].
pub(crate) fn take_result(mut answer: Value, method: &str) -> Result<Value, ChainError> {
    if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
        return Err(ChainError::Rpc {
            method: method.to_string(),
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .chars()
                .take(500)
                .collect(),
        });
    }
    match answer.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(ChainError::BadResponse {
            url: String::new(),
            detail: format!("`{method}` answer has neither result nor error"),
        }),
    }
}

/// Helpers to read fields from node answers without panicking.
pub(crate) mod field {
    use serde_json::Value;

    use crate::ChainError;

    fn missing(what: &str, field: &str) -> ChainError {
        ChainError::BadResponse {
            url: String::new(),
            detail: format!("{what}: field `{field}` is missing or has the wrong type"),
        }
    }

    /// A required unsigned integer field.
    pub fn u64_of(value: &Value, what: &str, field: &str) -> Result<u64, ChainError> {
        value
            .get(field)
            .and_then(Value::as_u64)
            .ok_or_else(|| missing(what, field))
    }

    /// A required string field.
    pub fn str_of<'a>(value: &'a Value, what: &str, field: &str) -> Result<&'a str, ChainError> {
        value
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| missing(what, field))
    }

    /// A `0x`-prefixed hex quantity, as EVM nodes write numbers.
    pub fn hex_u64(value: &Value, what: &str) -> Result<u64, ChainError> {
        value
            .as_str()
            .and_then(|s| s.strip_prefix("0x"))
            // from_str_radix alone would accept a sign ("0x+1").
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| ChainError::BadResponse {
                url: String::new(),
                detail: format!("{what}: expected a 0x hex number, got {}", short(value)),
            })
    }

    /// A block hash: `prefix` then exactly `hex_len` hex digits.
    pub fn hash(
        value: &Value,
        what: &str,
        prefix: &str,
        hex_len: usize,
    ) -> Result<String, ChainError> {
        value
            .as_str()
            .filter(|s| {
                s.strip_prefix(prefix).is_some_and(|hex| {
                    hex.len() == hex_len && hex.bytes().all(|b| b.is_ascii_hexdigit())
                })
            })
            .map(str::to_string)
            .ok_or_else(|| ChainError::BadResponse {
                url: String::new(),
                detail: format!(
                    "{what}: expected a {prefix}hash of {hex_len} hex digits, got {}",
                    short(value)
                ),
            })
    }

    /// A count that must fit in `u32` (peers, connections).
    pub fn count_u32(count: u64, what: &str) -> Result<u32, ChainError> {
        u32::try_from(count).map_err(|_| ChainError::BadResponse {
            url: String::new(),
            detail: format!("{what}: {count} is not a plausible count"),
        })
    }

    /// Free text from a node (client names), cut to a sane length.
    pub fn text(value: &str) -> String {
        value.chars().take(MAX_TEXT_CHARS).collect()
    }

    /// Longest node-supplied text kept, in characters.
    pub const MAX_TEXT_CHARS: usize = 120;

    /// Fill in the URL of a parse error, which pure parsers cannot know.
    pub fn locate(err: ChainError, at: &str) -> ChainError {
        match err {
            ChainError::BadResponse { url, detail } if url.is_empty() => ChainError::BadResponse {
                url: at.to_string(),
                detail,
            },
            other => other,
        }
    }

    /// A value shortened for an error message.
    pub fn short(value: &Value) -> String {
        value.to_string().chars().take(120).collect()
    }
}
