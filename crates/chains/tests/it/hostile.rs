//! Every probe and produce turns hostile answers into errors, never panics:
//! a local server answers with garbage and the real adapter code parses it.
//! `settles` reads hostile calls and answers as never settling at a height.

use std::time::Duration;

use chainfleet_chains::{Adapter, ChainError, Endpoint, RpcClient};
use chainfleet_spec::Chain;
use serde_json::{json, Value};

use crate::support::{client, serve, Answer, Request};

/// One chain of each family.
const CHAINS: [Chain; 5] = [
    Chain::Litecoin,
    Chain::Ethereum,
    Chain::Monero,
    Chain::Cosmos,
    Chain::Solana,
];

/// Chains whose adapters can produce blocks.
const PRODUCERS: [Chain; 3] = [Chain::Litecoin, Chain::Ethereum, Chain::Monero];

/// Whole-body garbage, whatever was asked.
fn raw_garbage() -> Vec<(&'static str, Answer)> {
    let mut nested = "[".repeat(100_000).into_bytes();
    nested.extend("]".repeat(100_000).into_bytes());
    let mut huge = vec![b' '; chainfleet_chains::rpc::MAX_RESPONSE_BYTES + 1];
    huge.extend_from_slice(b"{}");
    vec![
        (
            "html 502",
            Answer::raw(
                502,
                "text/html",
                b"<html><body>502 Bad Gateway</body></html>".to_vec(),
            ),
        ),
        (
            "empty 200",
            Answer::raw(200, "application/json", Vec::new()),
        ),
        ("plain text", Answer::raw(200, "text/plain", b"OK".to_vec())),
        (
            "truncated json",
            Answer::raw(
                200,
                "application/json",
                br#"{"result": {"blocks": 1"#.to_vec(),
            ),
        ),
        (
            "invalid utf-8",
            Answer::raw(200, "application/json", vec![0xff, 0xfe, b'{', b'}']),
        ),
        ("json null", Answer::json(&Value::Null)),
        ("json number", Answer::json(&json!(42))),
        ("json list", Answer::json(&json!([1, 2, 3]))),
        (
            "foreign ids",
            Answer::json(
                &json!([{"id": 99, "result": 1}, {"id": -1, "result": 2}, {"id": "0", "result": 3}]),
            ),
        ),
        (
            "error object",
            Answer::json(&json!({"error": {"code": "x", "message": {"deep": true}}})),
        ),
        (
            "number overflow",
            Answer::raw(200, "application/json", br#"{"result": 1e400}"#.to_vec()),
        ),
        ("deep nesting", Answer::raw(200, "application/json", nested)),
        (
            "over the size cap",
            Answer::raw(200, "application/json", huge),
        ),
    ]
}

/// Answer every JSON-RPC call (single or batched) and every GET with `result`.
fn mirror(result: Value) -> impl Fn(&Request) -> Answer + Send + Sync + 'static {
    move |request| {
        let answer_one =
            |call: &Value| json!({"jsonrpc": "2.0", "id": call.get("id"), "result": result});
        match serde_json::from_slice::<Value>(&request.body) {
            Ok(Value::Array(calls)) => {
                Answer::json(&Value::Array(calls.iter().map(answer_one).collect()))
            }
            Ok(call) => Answer::json(&answer_one(&call)),
            Err(_) => Answer::json(&json!({"jsonrpc": "2.0", "id": -1, "result": result})),
        }
    }
}

/// Plausible envelopes whose results have the wrong type or range.
fn wrong_results() -> Vec<Value> {
    vec![
        Value::Null,
        json!(-1),
        json!(true),
        json!("0x"),
        json!([]),
        json!({}),
        json!(1.5),
        json!(u64::MAX),
        json!({"blocks": "many", "height": -1, "status": "OK", "block_header": {"height": "1"}}),
        json!({"sync_info": {"latest_block_height": "-7"}, "n_peers": "lots"}),
        json!({"context": {"slot": -1}, "value": {"blockhash": "<script>"}}),
        json!("x".repeat(1_000_000)),
    ]
}

async fn assert_all_fail(label: &str, ep: &Endpoint, rpc: &RpcClient) {
    for chain in CHAINS {
        let result = Adapter::for_chain(chain).probe(rpc, ep).await;
        assert!(
            result.is_err(),
            "{chain} probe accepted {label}: {result:?}"
        );
    }
    for chain in PRODUCERS {
        let result = Adapter::for_chain(chain).produce(rpc, ep, None).await;
        assert!(
            result.is_err(),
            "{chain} produce accepted {label}: {result:?}"
        );
    }
}

#[tokio::test]
async fn raw_garbage_is_an_error() {
    let rpc = client();
    for (label, answer) in raw_garbage() {
        let (status, content_type, body) = (answer.status, answer.content_type, answer.body);
        let ep = serve(move |_| Answer::raw(status, content_type, body.clone())).await;
        assert_all_fail(label, &ep, &rpc).await;
    }
}

#[tokio::test]
async fn wrong_types_are_errors() {
    let rpc = client();
    for result in wrong_results() {
        let label = result.to_string().chars().take(60).collect::<String>();
        let ep = serve(mirror(result)).await;
        assert_all_fail(&label, &ep, &rpc).await;
    }
}

#[tokio::test]
async fn every_call_failing_is_an_error() {
    let ep = serve(|request| {
        let error = |id: Option<&Value>| json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "internal"}});
        match serde_json::from_slice::<Value>(&request.body) {
            Ok(Value::Array(calls)) => Answer::json(&Value::Array(calls.iter().map(|c| error(c.get("id"))).collect())),
            Ok(call) => Answer::json(&error(call.get("id"))),
            Err(_) => Answer::json(&error(None)),
        }
    })
    .await;
    assert_all_fail("JSON-RPC errors", &ep, &client()).await;
}

#[tokio::test]
async fn a_node_that_hangs_times_out() {
    let ep = serve(|_| Answer {
        delay: Duration::from_secs(5),
        ..Answer::json(&json!({"result": 1}))
    })
    .await;
    let rpc = RpcClient::new(Duration::from_millis(300)).expect("client");
    for chain in CHAINS {
        let err = Adapter::for_chain(chain)
            .probe(&rpc, &ep)
            .await
            .expect_err("a hanging node");
        assert!(
            matches!(err, ChainError::Unreachable { .. }),
            "{chain}: {err}"
        );
    }
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let ep = Endpoint::local(chainfleet_testkit::free_port());
    for chain in CHAINS {
        let err = Adapter::for_chain(chain)
            .probe(&client(), &ep)
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(err, ChainError::Unreachable { .. }),
            "{chain}: {err}"
        );
        assert!(
            err.to_string().contains(&ep.url),
            "the error names the node: {err}"
        );
    }
}

/// Hostile params and results for every method of every catalog: `settles`
/// answers `Never` for garbage and never panics, whatever the shape.
#[test]
fn hostile_calls_and_answers_never_settle_at_a_height_or_panic() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let params = [
        None,
        Some(""),
        Some("not json"),
        Some("[-1]"),
        Some("[1e400]"),
        Some("[18446744073709551616]"),
        Some(r#"["0xffffffffffffffffff"]"#),
        Some(r#"["0x-1"]"#),
        Some(r#"{"height":-1,"count":18446744073709551615}"#),
        Some(r#"{"height":"99999999999999999999999"}"#),
        Some(deep.as_str()),
        Some("\u{0}"),
    ];
    let results: [&[u8]; 8] = [
        b"",
        b"null",
        b"not json",
        b"[",
        b"\xff\xfe",
        br#"{"blockNumber":"0xffffffffffffffffff","slot":-1,"height":"-1"}"#,
        br#"[{"blockNumber":-7}]"#,
        deep.as_bytes(),
    ];
    for chain in CHAINS {
        let adapter = Adapter::for_chain(chain);
        for info in adapter.catalog() {
            for param in params {
                for result in results {
                    let settles = adapter.settles(info.name, param, result);
                    assert!(
                        !matches!(settles, chainfleet_chains::Settles::AtHeight(_)),
                        "{chain} {} {param:?} {:?}: {settles:?}",
                        info.name,
                        String::from_utf8_lossy(result)
                    );
                }
            }
        }
    }
}
