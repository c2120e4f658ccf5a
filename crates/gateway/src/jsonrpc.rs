//! JSON-RPC request parsing and answer assembly.
//!
//! Every byte here is client or node input: nothing panics, every problem
//! becomes a [`ParseError`] or an invalid [`Element`] with a clear reason.

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Deepest JSON nesting accepted in a request.
pub const MAX_DEPTH: usize = 64;

/// JSON-RPC error codes the gateway answers with.
pub mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid JSON-RPC request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Internal error (a node's answer could not be used).
    pub const INTERNAL: i64 = -32603;
    /// No key, an unknown key, an expired or revoked key.
    pub const UNAUTHORIZED: i64 = -32001;
    /// The key may not be used from here or for this instance.
    pub const FORBIDDEN: i64 = -32002;
    /// The method is denied by policy.
    pub const DENIED: i64 = -32003;
    /// A rate or concurrency limit was hit.
    pub const LIMITED: i64 = -32005;
    /// The request is too large.
    pub const TOO_LARGE: i64 = -32006;
    /// No such instance.
    pub const UNKNOWN_INSTANCE: i64 = -32007;
    /// No replica can take the request.
    pub const UNAVAILABLE: i64 = -32010;
    /// The replica failed and the call was not retried.
    pub const UPSTREAM_FAILED: i64 = -32011;
    /// The gateway is overloaded.
    pub const OVERLOADED: i64 = -32012;
}

/// Why a whole body is not a JSON-RPC request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not UTF-8.
    #[error("the body is not valid UTF-8 (first bad byte at offset {0})")]
    Utf8(usize),
    /// Too deeply nested.
    #[error("the JSON is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Not JSON at all.
    #[error("the body is not JSON: {0}")]
    Json(String),
    /// `[]`.
    #[error("an empty batch; send at least one call")]
    EmptyBatch,
    /// More calls than allowed.
    #[error("a batch of {got} calls; this instance allows at most {limit}")]
    BatchTooLarge {
        /// Calls sent.
        got: usize,
        /// The limit.
        limit: usize,
    },
    /// Neither an object nor a list.
    #[error("the body must be a JSON-RPC call object or a list of them")]
    NotRequest,
}

impl ParseError {
    /// The JSON-RPC error code for this problem.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Utf8(_) | ParseError::TooDeep | ParseError::Json(_) => code::PARSE_ERROR,
            ParseError::BatchTooLarge { .. } => code::TOO_LARGE,
            ParseError::EmptyBatch | ParseError::NotRequest => code::INVALID_REQUEST,
        }
    }
}

/// One valid call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The raw JSON of its id; `None` for a notification.
    pub id: Option<String>,
    /// The method name.
    pub method: String,
    /// The raw JSON of its params, if any.
    pub params: Option<String>,
}

/// One element of a request: a call, or why it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// A valid call.
    Call(Call),
    /// An invalid element, answered with an error in its own slot.
    Invalid {
        /// Its id, when it had a usable one.
        id: Option<String>,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Whether the body was a list.
    pub batch: bool,
    /// Its elements in order (one when not a batch).
    pub elements: Vec<Element>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow, deserialize_with = "some_raw")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    params: Option<&'a RawValue>,
}

/// Keep `null` as a present raw value instead of `None`.
fn some_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Whether JSON `bytes` nest at most [`MAX_DEPTH`] levels (strings are skipped).
pub fn depth_ok(bytes: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Parse a request body of at most `max_batch` calls.
pub fn parse(body: &[u8], max_batch: usize) -> Result<Request, ParseError> {
    let text = std::str::from_utf8(body).map_err(|err| ParseError::Utf8(err.valid_up_to()))?;
    if !depth_ok(body) {
        return Err(ParseError::TooDeep);
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|err| ParseError::Json(err.to_string()))?;
        if items.is_empty() {
            return Err(ParseError::EmptyBatch);
        }
        if items.len() > max_batch {
            return Err(ParseError::BatchTooLarge {
                got: items.len(),
                limit: max_batch,
            });
        }
        Ok(Request {
            batch: true,
            elements: items.into_iter().map(element).collect(),
        })
    } else if trimmed.starts_with('{') {
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|err| ParseError::Json(err.to_string()))?;
        Ok(Request {
            batch: false,
            elements: vec![element(raw)],
        })
    } else {
        // Still say "not JSON" when it is not.
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|err| ParseError::Json(err.to_string()))?;
        Err(ParseError::NotRequest)
    }
}

/// Judge one element of a request.
fn element(raw: &RawValue) -> Element {
    let wire: Wire = match serde_json::from_str(raw.get()) {
        Ok(wire) => wire,
        Err(err) => {
            return Element::Invalid {
                id: None,
                reason: format!("not a JSON-RPC call object: {err}"),
            }
        }
    };
    let id = match wire.id.map(RawValue::get) {
        None => None,
        Some(id) if id.starts_with(['{', '[', 't', 'f']) => {
            return Element::Invalid {
                id: None,
                reason: "`id` must be a string, a number or null".into(),
            }
        }
        Some(id) => Some(id.to_string()),
    };
    let invalid = |reason: String| Element::Invalid {
        id: id.clone(),
        reason,
    };
    if let Some(version) = wire.jsonrpc.map(RawValue::get) {
        if version != "\"2.0\"" && version != "\"1.0\"" {
            return invalid(format!(
                "`jsonrpc` must be \"2.0\" (or \"1.0\"), not {}",
                short(version)
            ));
        }
    }
    let method = match wire.method {
        None => return invalid("`method` is missing".into()),
        Some(raw) => match serde_json::from_str::<String>(raw.get()) {
            Ok(method) if !method.is_empty() => method,
            _ => return invalid("`method` must be a non-empty string".into()),
        },
    };
    let params = match wire.params.map(RawValue::get) {
        None => None,
        Some(p) if p.starts_with(['[', '{']) || p == "null" => Some(p.to_string()),
        Some(p) => {
            return invalid(format!(
                "`params` must be a list or an object, not {}",
                short(p)
            ))
        }
    };
    Element::Call(Call { id, method, params })
}

/// A value shortened for an error message.
fn short(text: &str) -> String {
    let cut: String = text.chars().take(40).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// A node's (or the gateway's) answer to one call: the raw JSON of `result` or `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The raw JSON of `result`.
    Result(Bytes),
    /// The raw JSON of `error`.
    Error(Bytes),
}

impl Answer {
    /// A gateway error answer.
    pub fn error(code: i64, message: &str, data: Option<serde_json::Value>) -> Answer {
        let mut error = serde_json::json!({ "code": code, "message": message });
        if let (Some(data), Some(map)) = (data, error.as_object_mut()) {
            map.insert("data".into(), data);
        }
        Answer::Error(Bytes::from(error.to_string()))
    }

    /// The answer for a call the node left unanswered (static: no allocation on the hot path).
    pub fn missing() -> Answer {
        Answer::Error(Bytes::from_static(
            br#"{"code":-32603,"message":"the node gave no answer to this call"}"#,
        ))
    }

    /// The answer made of a node's raw `result` and `error` members: a
    /// non-null error wins; `None` when there is neither.
    pub fn from_parts(result: Option<&RawValue>, error: Option<&RawValue>) -> Option<Answer> {
        if let Some(error) = error.filter(|e| e.get() != "null") {
            return Some(Answer::Error(Bytes::copy_from_slice(
                error.get().as_bytes(),
            )));
        }
        result.map(|result| Answer::Result(Bytes::copy_from_slice(result.get().as_bytes())))
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Answer::Error(_))
    }
}

/// Append `{"jsonrpc":"2.0","id":ID,"result"|"error":X}` to `out`.
pub fn write_answer(out: &mut Vec<u8>, id: Option<&str>, answer: &Answer) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.unwrap_or("null").as_bytes());
    match answer {
        Answer::Result(raw) => {
            out.extend_from_slice(b",\"result\":");
            out.extend_from_slice(raw);
        }
        Answer::Error(raw) => {
            out.extend_from_slice(b",\"error\":");
            out.extend_from_slice(raw);
        }
    }
    out.push(b'}');
}

/// A whole single-answer body.
pub fn answer_body(id: Option<&str>, answer: &Answer) -> Bytes {
    let mut out = Vec::with_capacity(64);
    write_answer(&mut out, id, answer);
    Bytes::from(out)
}

#[derive(Deserialize)]
struct WireAnswer<'a> {
    #[serde(default, borrow, deserialize_with = "some_raw")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    error: Option<&'a RawValue>,
}

/// Read one answer object from a node: its raw id and its result or error.
pub fn parse_answer(raw: &str) -> Option<(Option<String>, Answer)> {
    let wire: WireAnswer = serde_json::from_str(raw).ok()?;
    let id = wire.id.map(|id| id.get().to_string());
    Some((id, Answer::from_parts(wire.result, wire.error)?))
}

/// Read a node's answer to a batch: one answer per forwarded call, matched by
/// the numeric ids `0..count` the gateway gave them. Missing answers are `None`.
pub fn parse_batch_answer(body: &[u8], count: usize) -> Option<Vec<Option<Answer>>> {
    let items: Vec<&RawValue> = serde_json::from_slice(body).ok()?;
    let mut answers: Vec<Option<Answer>> = vec![None; count];
    for item in items {
        let Some((Some(id), answer)) = parse_answer(item.get()) else {
            continue;
        };
        let Ok(index) = id.parse::<usize>() else {
            continue;
        };
        if let Some(slot) = answers.get_mut(index) {
            if slot.is_none() {
                *slot = Some(answer);
            }
        }
    }
    Some(answers)
}

/// The body sent to a node for `calls`, with ids `0..n` (a single object for one call).
pub fn upstream_body(calls: &[&Call], as_batch: bool) -> Bytes {
    let mut out = Vec::with_capacity(96 * calls.len());
    if as_batch {
        out.push(b'[');
    }
    for (index, call) in calls.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_call(&mut out, Some(index as u64), call);
    }
    if as_batch {
        out.push(b']');
    }
    Bytes::from(out)
}

/// One call as sent to a node, with the gateway's `id` (none for a notification).
pub fn call_body(id: Option<u64>, call: &Call) -> Bytes {
    let mut out = Vec::with_capacity(96);
    write_call(&mut out, id, call);
    Bytes::from(out)
}

fn write_call(out: &mut Vec<u8>, id: Option<u64>, call: &Call) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",");
    if let Some(id) = id {
        out.extend_from_slice(b"\"id\":");
        out.extend_from_slice(id.to_string().as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(b"\"method\":");
    // A String always serializes.
    let method = serde_json::to_string(&call.method).unwrap_or_else(|_| "\"\"".into());
    out.extend_from_slice(method.as_bytes());
    if let Some(params) = &call.params {
        out.extend_from_slice(b",\"params\":");
        out.extend_from_slice(params.as_bytes());
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(el: &Element) -> &Call {
        match el {
            Element::Call(call) => call,
            Element::Invalid { reason, .. } => panic!("invalid: {reason}"),
        }
    }

    #[test]
    fn single_and_batch_parse() {
        let req = parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"getblockcount","params":[]}"#,
            10,
        )
        .expect("valid");
        assert!(!req.batch);
        let c = call(&req.elements[0]);
        assert_eq!(
            (c.id.as_deref(), c.method.as_str()),
            (Some("7"), "getblockcount")
        );
        let req = parse(
            br#"[{"id":"a","method":"x"},{"id":null,"method":"y","params":{"a":1}}]"#,
            10,
        )
        .expect("valid");
        assert!(req.batch);
        assert_eq!(call(&req.elements[1]).id.as_deref(), Some("null"));
        assert_eq!(call(&req.elements[1]).params.as_deref(), Some(r#"{"a":1}"#));
    }

    #[test]
    fn notifications_have_no_id() {
        let req = parse(br#"{"jsonrpc":"2.0","method":"x"}"#, 10).expect("valid");
        assert_eq!(call(&req.elements[0]).id, None);
    }

    #[test]
    fn bad_bodies_are_clear_errors() {
        assert!(matches!(parse(b"{nope", 10), Err(ParseError::Json(_))));
        assert_eq!(parse(b"[]", 10), Err(ParseError::EmptyBatch));
        assert_eq!(parse(b"\xff\xfe", 10), Err(ParseError::Utf8(0)));
        assert_eq!(parse(b"42", 10), Err(ParseError::NotRequest));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(deep.as_bytes(), 10), Err(ParseError::TooDeep));
        let many = format!("[{}]", [r#"{"id":1,"method":"a"}"#; 11].join(","));
        assert!(matches!(
            parse(many.as_bytes(), 10),
            Err(ParseError::BatchTooLarge { got: 11, limit: 10 })
        ));
    }

    #[test]
    fn bad_elements_are_judged_one_by_one() {
        let req = parse(
            br#"[{"jsonrpc":"3.0","id":1,"method":"a"},{"id":2},{"id":3,"method":"b","params":5},1,{"id":[1],"method":"c"},{"id":4,"method":"ok"}]"#,
            10,
        )
        .expect("parses");
        let reasons: Vec<String> = req
            .elements
            .iter()
            .map(|e| match e {
                Element::Invalid { reason, .. } => reason.clone(),
                Element::Call(_) => "ok".into(),
            })
            .collect();
        assert!(reasons[0].contains("jsonrpc"), "{reasons:?}");
        assert!(reasons[1].contains("method"), "{reasons:?}");
        assert!(reasons[2].contains("params"), "{reasons:?}");
        assert!(reasons[3].contains("not a JSON-RPC call"), "{reasons:?}");
        assert!(reasons[4].contains("id"), "{reasons:?}");
        assert_eq!(reasons[5], "ok");
    }

    #[test]
    fn strings_do_not_count_as_nesting() {
        let body = format!(
            r#"{{"id":1,"method":"a","params":["{}"]}}"#,
            "[".repeat(500)
        );
        assert!(parse(body.as_bytes(), 10).is_ok());
    }

    #[test]
    fn answers_are_assembled_and_read_back() {
        let body = answer_body(Some("\"x\""), &Answer::Result(Bytes::from_static(b"5")));
        assert_eq!(&body[..], br#"{"jsonrpc":"2.0","id":"x","result":5}"#);
        let (id, answer) =
            parse_answer(r#"{"result":null,"error":{"code":-1,"message":"m"},"id":0}"#)
                .expect("ok");
        assert_eq!(id.as_deref(), Some("0"));
        assert!(answer.is_error());
        let answers = parse_batch_answer(
            br#"[{"id":1,"result":2},{"id":0,"result":1},{"id":9,"result":0}]"#,
            3,
        )
        .expect("list");
        assert_eq!(answers[0], Some(Answer::Result(Bytes::from_static(b"1"))));
        assert_eq!(answers[1], Some(Answer::Result(Bytes::from_static(b"2"))));
        assert_eq!(answers[2], None);
    }

    #[test]
    fn upstream_bodies_renumber_ids() {
        let a = Call {
            id: Some("\"q\"".into()),
            method: "m\"x".into(),
            params: Some("[1]".into()),
        };
        let b = Call {
            id: None,
            method: "n".into(),
            params: None,
        };
        let body = upstream_body(&[&a, &b], true);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value[0]["id"], 0);
        assert_eq!(value[0]["method"], "m\"x");
        assert_eq!(value[1]["id"], 1);
    }
}
