//! CometBFT family (Cosmos SDK chains): probe and catalog only.
//!
//! No CometBFT daemon is installable here; the probe is tested against
//! recorded real `/status` and `/net_info` answers (tests/fixtures/cometbft).

use serde_json::Value;

use crate::catalog::{
    method, param, plain_u64, Cacheability, Cacheability::*, MethodClass::*, MethodInfo, Settles,
};
use crate::rpc::{field, take_result};
use crate::{ChainError, Endpoint, ProbeStatus, RpcClient};

/// Ask the node for its status and peer count (two GETs, sent together).
pub(crate) async fn probe(rpc: &RpcClient, ep: &Endpoint) -> Result<ProbeStatus, ChainError> {
    let (status, net_info) =
        tokio::join!(rpc.get_json(ep, "/status"), rpc.get_json(ep, "/net_info"));
    parse_status(status?, net_info?).map_err(|e| field::locate(e, &ep.url))
}

/// Status from the `/status` and `/net_info` answers (JSON-RPC envelopes).
///
/// CometBFT writes 64-bit numbers as strings. A node with no block yet
/// reports height 0, an empty hash and the zero time; its head time is `None`.
pub(crate) fn parse_status(status: Value, net_info: Value) -> Result<ProbeStatus, ChainError> {
    let status = take_result(status, "status")?;
    let net_info = take_result(net_info, "net_info")?;
    let sync = status.get("sync_info").unwrap_or(&Value::Null);
    let what = "status.sync_info";
    let height = decimal_u64(sync.get("latest_block_height"), "latest_block_height")?;
    let raw_hash = sync.get("latest_block_hash").unwrap_or(&Value::Null);
    let (best_hash, head_time) = if height == 0 && raw_hash.as_str() == Some("") {
        (String::new(), None)
    } else {
        let hash = field::hash(raw_hash, "status.sync_info.latest_block_hash", "", 64)?;
        let time = field::str_of(sync, what, "latest_block_time")?;
        (hash, Some(rfc3339_unix(time)?))
    };
    let syncing = sync
        .get("catching_up")
        .and_then(Value::as_bool)
        .ok_or_else(|| ChainError::BadResponse {
            url: String::new(),
            detail: format!("{what}: field `catching_up` is missing or not a boolean"),
        })?;
    let node_info = status.get("node_info").unwrap_or(&Value::Null);
    let version = field::str_of(node_info, "status.node_info", "version")?;
    let peers = field::count_u32(
        decimal_u64(net_info.get("n_peers"), "n_peers")?,
        "net_info.n_peers",
    )?;
    Ok(ProbeStatus {
        height,
        best_hash,
        head_time,
        peers,
        syncing,
        client_version: field::text(&format!("cometbft {version}")),
    })
}

/// A count CometBFT writes as a decimal string (older Tendermint: a number).
pub(crate) fn decimal_u64(value: Option<&Value>, what: &str) -> Result<u64, ChainError> {
    let parsed = match value {
        Some(Value::String(text))
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.parse::<u64>().ok()
        }
        Some(number @ Value::Number(_)) => number.as_u64(),
        _ => None,
    };
    parsed.ok_or_else(|| ChainError::BadResponse {
        url: String::new(),
        detail: format!(
            "{what}: expected a decimal count, got {}",
            value.map(field::short).unwrap_or_else(|| "nothing".into())
        ),
    })
}

/// Unix seconds of an RFC 3339 time such as `2023-05-17T14:14:48.530153458Z`
/// (fraction dropped; `Z` or a `±HH:MM` offset). Times before 1970 are errors.
pub(crate) fn rfc3339_unix(text: &str) -> Result<u64, ChainError> {
    parse_rfc3339(text).ok_or_else(|| ChainError::BadResponse {
        url: String::new(),
        detail: format!(
            "latest_block_time: not an RFC 3339 time after 1970: {:?}",
            text.chars().take(60).collect::<String>()
        ),
    })
}

fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-')
        && at(7, b'-')
        && (at(10, b'T') || at(10, b't'))
        && at(13, b':')
        && at(16, b':'))
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Skip a fraction of any length, then read the zone.
    let mut i = 19;
    if at(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && at(i + 3, b':') => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = oh * 60 + om;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(seconds).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Blocks this deep are treated as final. CometBFT has instant finality;
/// one block of margin covers a node answering before it commits.
const DEEP: Cacheability = ImmutableWhenDeep(1);

/// CometBFT RPC endpoints (v0.34 to v1.0), callable by GET path or JSON-RPC.
///
/// `DEEP` answers settle ([`settles`]) once the block named by an explicit
/// `height` param (a number or a decimal string) is one deep; without a
/// height they describe the latest block and never settle. `tx` settles at
/// the `height` of its answer. `blockchain` answers carry `last_height`,
/// which moves with the head, so it is never cached.
pub(crate) const CATALOG: &[MethodInfo] = &[
    method("abci_info", Read, Never),
    method("abci_query", Read, Never),
    method("block", Read, DEEP),
    method("block_by_hash", Read, Immutable),
    method("block_results", Read, DEEP),
    method("block_search", Read, Never),
    method("blockchain", Read, Never),
    method("broadcast_evidence", Write, Never),
    method("broadcast_tx_async", Write, Never),
    method("broadcast_tx_commit", Write, Never),
    method("broadcast_tx_sync", Write, Never),
    method("check_tx", Read, Never),
    method("commit", Read, DEEP),
    method("consensus_params", Read, DEEP),
    method("consensus_state", Read, Never),
    method("dump_consensus_state", Admin, Never),
    method("genesis", Read, Immutable),
    method("genesis_chunked", Read, Immutable),
    method("header", Read, DEEP),
    method("header_by_hash", Read, Immutable),
    method("health", Read, Never),
    method("net_info", Network, Never),
    method("num_unconfirmed_txs", Read, Never),
    method("status", Read, Never),
    method("subscribe", Read, Never),
    method("tx", Read, DEEP),
    method("tx_search", Read, Never),
    method("unconfirmed_txs", Read, Never),
    method("unsubscribe", Read, Never),
    method("unsubscribe_all", Read, Never),
    method("validators", Read, DEEP),
    // Unsafe routes, served only with rpc.unsafe = true.
    method("dial_peers", Admin, Never),
    method("dial_seeds", Admin, Never),
    method("unsafe_flush_mempool", Admin, Never),
];

/// When the answer to a `DEEP` method settles (see [`CATALOG`]).
pub(crate) fn settles(method: &str, params: Option<&Value>, result: &[u8]) -> Settles {
    match method {
        "block" | "block_results" | "commit" | "consensus_params" | "header" | "validators" => {
            match params.and_then(|p| param(p, 0, "height")) {
                Some(height) => Settles::at(plain_u64(height)),
                None => Settles::Never,
            }
        }
        "tx" => match serde_json::from_slice::<AtHeight>(result) {
            Ok(AtHeight {
                height: Some(height),
            }) => Settles::at(plain_u64(&height)),
            _ => Settles::Never,
        },
        _ => Settles::Never,
    }
}

/// The height a transaction answer belongs to (int64 written as a string).
#[derive(serde::Deserialize)]
struct AtHeight {
    height: Option<Value>,
}

/// Methods [`settles`] has a rule for (kept equal to the `DEEP` entries by a test).
#[cfg(test)]
pub(crate) const SETTLING: &[&str] = &[
    "block",
    "block_results",
    "commit",
    "consensus_params",
    "header",
    "validators",
    "tx",
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settle_with(method: &str, params: Option<&str>, result: &str) -> Settles {
        crate::Adapter::for_chain(chainfleet_spec::Chain::Cosmos).settles(
            method,
            params,
            result.as_bytes(),
        )
    }

    #[test]
    fn heights_settle_when_explicit_and_latest_never() {
        let settle = |method: &str, params: &str| settle_with(method, Some(params), "{}");
        assert_eq!(settle("block", r#"{"height":"5"}"#), Settles::AtHeight(5));
        assert_eq!(settle("block", r#"{"height":5}"#), Settles::AtHeight(5));
        assert_eq!(settle("commit", r#"["5"]"#), Settles::AtHeight(5));
        assert_eq!(
            settle("validators", r#"{"height":"7","page":"1"}"#),
            Settles::AtHeight(7)
        );
        for bad in [
            "{}",
            "[]",
            r#"{"height":null}"#,
            r#"{"height":"-5"}"#,
            r#"{"height":"5a"}"#,
            r#"{"height":"0x5"}"#,
            r#"{"height":5.5}"#,
            r#"{"height":"99999999999999999999999"}"#,
            "garbage",
        ] {
            assert_eq!(settle("block", bad), Settles::Never, "{bad}");
        }
        assert_eq!(settle_with("block", None, "{}"), Settles::Never);
        assert_eq!(
            settle("blockchain", r#"{"minHeight":"1","maxHeight":"2"}"#),
            Settles::Never
        );
        assert_eq!(settle("block_by_hash", r#"{"hash":"AB"}"#), Settles::Now);
    }

    #[test]
    fn a_transaction_settles_at_the_height_in_its_answer() {
        let params = Some(r#"{"hash":"0xAB"}"#);
        assert_eq!(
            settle_with("tx", params, r#"{"hash":"AB","height":"12","index":0}"#),
            Settles::AtHeight(12)
        );
        for bad in [r#"{"hash":"AB"}"#, r#"{"height":"x"}"#, "[]", "1", "null"] {
            assert_eq!(settle_with("tx", params, bad), Settles::Never, "{bad}");
        }
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2023-05-17T14:14:48.530153458Z", 1_684_332_888),
            ("2024-06-11T14:07:57.12519517Z", 1_718_114_877),
            ("2000-02-29T23:59:59Z", 951_868_799),
            ("2024-06-11T16:07:57+02:00", 1_718_114_877),
            ("2024-06-11T09:07:57.5-05:00", 1_718_114_877),
        ];
        for (text, want) in cases {
            assert_eq!(rfc3339_unix(text).ok(), Some(want), "{text}");
        }
    }

    #[test]
    fn rfc3339_refuses_garbage() {
        for text in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-01-01T24:00:00Z",
            "2023-01-01T00:00:00",
            "2023-01-01T00:00:00.Z",
            "2023-01-01T00:00:00Zjunk",
            "1969-12-31T23:59:59Z",
            "+023-01-01T00:00:00Z",
            "2023-01-01T00:00:00+2:00",
            "２０２３-01-01T00:00:00Z",
        ] {
            assert!(rfc3339_unix(text).is_err(), "accepted {text:?}");
        }
    }

    fn status() -> Value {
        json!({"jsonrpc": "2.0", "id": -1, "result": {
            "node_info": {"version": "0.38.6"},
            "sync_info": {
                "latest_block_hash": "2512729BF836B206CB443BF3329A4130984B2D60E6198064A59EF1396AE6C1FD",
                "latest_block_height": "26083",
                "latest_block_time": "2024-06-11T14:07:57.12519517Z",
                "catching_up": false
            }
        }})
    }

    fn net_info(n: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": -1, "result": {"n_peers": n, "peers": []}})
    }

    #[test]
    fn parse_status_reads_strings_as_numbers() {
        let got = parse_status(status(), net_info(json!("3"))).expect("valid");
        assert_eq!(got.height, 26083);
        assert_eq!(got.head_time, Some(1_718_114_877));
        assert_eq!(got.peers, 3);
        assert_eq!(got.client_version, "cometbft 0.38.6");
        // Tendermint 0.32 wrote n_peers as a number.
        assert_eq!(
            parse_status(status(), net_info(json!(2)))
                .expect("valid")
                .peers,
            2
        );
    }

    #[test]
    fn empty_chain_has_no_hash_or_time() {
        let mut s = status();
        s["result"]["sync_info"]["latest_block_height"] = json!("0");
        s["result"]["sync_info"]["latest_block_hash"] = json!("");
        s["result"]["sync_info"]["latest_block_time"] = json!("0001-01-01T00:00:00Z");
        let got = parse_status(s, net_info(json!("0"))).expect("valid");
        assert_eq!(
            (got.height, got.best_hash.as_str(), got.head_time),
            (0, "", None)
        );
    }

    #[test]
    fn hostile_answers_are_errors_not_panics() {
        let edits: [(&str, Value); 9] = [
            ("latest_block_height", json!("-1")),
            ("latest_block_height", json!("+5")),
            ("latest_block_height", json!("99999999999999999999999")),
            ("latest_block_height", json!(-4)),
            ("latest_block_height", json!("")),
            ("latest_block_hash", json!("XYZ")),
            ("latest_block_time", json!(1718114877)),
            ("catching_up", json!("false")),
            ("latest_block_time", json!("1969-01-01T00:00:00Z")),
        ];
        for (key, value) in edits {
            let mut s = status();
            s["result"]["sync_info"][key] = value.clone();
            assert!(
                parse_status(s, net_info(json!("1"))).is_err(),
                "accepted {key}={value}"
            );
        }
        let others = [
            (json!("<html>"), net_info(json!("1"))),
            (
                json!({"jsonrpc": "2.0", "error": {"code": -32603, "message": "boom"}}),
                net_info(json!("1")),
            ),
            (json!({"result": {}}), net_info(json!("1"))),
            (status(), net_info(json!("4294967296"))),
            (status(), net_info(json!(null))),
            (status(), json!([])),
        ];
        for (s, n) in others {
            assert!(
                parse_status(s.clone(), n.clone()).is_err(),
                "accepted {s} / {n}"
            );
        }
    }
}
