//! Solana family: probe and catalog only.
//!
//! No validator is installable here; the probe is tested against recorded
//! answers from Solana's RPC documentation (tests/fixtures/solana).

use serde_json::{json, Value};

use crate::catalog::{method, Cacheability, Cacheability::*, MethodClass::*, MethodInfo, Settles};
use crate::rpc::field;
use crate::{ChainError, Endpoint, ProbeStatus, RpcClient};

/// JSON-RPC path of Solana nodes.
const PATH: &str = "/";

/// The calls of one probe's first round trip, sent as one batch.
fn probe_calls() -> [(&'static str, Value); 3] {
    [
        ("getLatestBlockhash", json!([{"commitment": "finalized"}])),
        ("getHealth", json!([])),
        ("getVersion", json!([])),
    ]
}

/// Ask the node for its finalized slot and blockhash, health and version
/// (one batch), then for that slot's block time.
///
/// Height is the slot of `getLatestBlockhash`'s context, so slot and hash
/// come from the same bank (a separate `getSlot` could be a newer one).
/// Solana has no cheap peer count (`getClusterNodes` lists the whole
/// cluster), so `peers` is 0.
pub(crate) async fn probe(rpc: &RpcClient, ep: &Endpoint) -> Result<ProbeStatus, ChainError> {
    let answers = rpc.batch_each(ep, PATH, &probe_calls()).await?;
    let mut status = parse_status(answers).map_err(|e| field::locate(e, &ep.url))?;
    let time = rpc
        .call(ep, PATH, "getBlockTime", json!([status.height]))
        .await;
    status.head_time = parse_block_time(time).map_err(|e| field::locate(e, &ep.url))?;
    Ok(status)
}

/// Status from the probe batch, in [`probe_calls`] order (head time comes later).
///
/// `getHealth` answers `"ok"`, or an error (-32005 "Node is behind by N
/// slots") when the node lags the cluster. Any health error counts as syncing:
/// a node that cannot say it is healthy should not get traffic.
pub(crate) fn parse_status(
    answers: Vec<Result<Value, ChainError>>,
) -> Result<ProbeStatus, ChainError> {
    let mut answers = answers.into_iter();
    let mut next = || {
        answers.next().unwrap_or_else(|| {
            Err(ChainError::BadResponse {
                url: String::new(),
                detail: "probe batch answer is too short".into(),
            })
        })
    };
    let latest = next()?;
    let health = next();
    let version = next()?;

    let what = "getLatestBlockhash";
    let context = latest.get("context").unwrap_or(&Value::Null);
    let height = field::u64_of(context, what, "slot")?;
    let value = latest.get("value").unwrap_or(&Value::Null);
    let best_hash = base58_hash(value.get("blockhash").unwrap_or(&Value::Null))?;
    let syncing = match health {
        Ok(Value::String(word)) => word != "ok",
        Ok(other) => {
            return Err(ChainError::BadResponse {
                url: String::new(),
                detail: format!("getHealth: expected \"ok\", got {}", field::short(&other)),
            })
        }
        Err(ChainError::Rpc { .. }) => true,
        Err(other) => return Err(other),
    };
    let core = field::str_of(&version, "getVersion", "solana-core")?;
    Ok(ProbeStatus {
        height,
        best_hash,
        head_time: None,
        peers: 0,
        syncing,
        client_version: field::text(&format!("solana-core {core}")),
    })
}

/// The answer of `getBlockTime`: seconds, or `None` when the node has no
/// time for that slot (null, skipped slot, block not available).
pub(crate) fn parse_block_time(
    answer: Result<Value, ChainError>,
) -> Result<Option<u64>, ChainError> {
    match answer {
        Ok(Value::Null) | Err(ChainError::Rpc { .. }) => Ok(None),
        Ok(time) => time
            .as_u64()
            .map(Some)
            .ok_or_else(|| ChainError::BadResponse {
                url: String::new(),
                detail: format!(
                    "getBlockTime: expected Unix seconds, got {}",
                    field::short(&time)
                ),
            }),
        Err(other) => Err(other),
    }
}

/// A 32-byte hash in base58: 32 to 44 characters of the bitcoin alphabet.
fn base58_hash(value: &Value) -> Result<String, ChainError> {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    value
        .as_str()
        .filter(|s| (32..=44).contains(&s.len()) && s.bytes().all(|b| ALPHABET.contains(&b)))
        .map(str::to_string)
        .ok_or_else(|| ChainError::BadResponse {
            url: String::new(),
            detail: format!(
                "getLatestBlockhash: expected a base58 hash, got {}",
                field::short(value)
            ),
        })
}

/// Slots this deep are treated as final (about the depth of finalized commitment).
const DEEP: Cacheability = ImmutableWhenDeep(32);

/// Solana JSON-RPC methods (Agave 2.x), including the websocket subscriptions.
pub(crate) const CATALOG: &[MethodInfo] = &[
    method("getAccountInfo", Read, Never),
    method("getBalance", Read, Never),
    method("getBlock", Read, DEEP),
    method("getBlockCommitment", Read, Never),
    method("getBlockHeight", Read, Never),
    method("getBlockProduction", Read, Never),
    method("getBlockTime", Read, DEEP),
    method("getBlocks", Read, DEEP),
    method("getBlocksWithLimit", Read, DEEP),
    method("getClusterNodes", Network, Never),
    method("getEpochInfo", Read, Never),
    method("getEpochSchedule", Read, Immutable),
    method("getFeeForMessage", Read, Never),
    method("getFirstAvailableBlock", Read, Never),
    method("getGenesisHash", Read, Immutable),
    method("getHealth", Read, Never),
    method("getHighestSnapshotSlot", Read, Never),
    method("getIdentity", Read, Never),
    method("getInflationGovernor", Read, Never),
    method("getInflationRate", Read, Never),
    // Without an epoch it is the last epoch's, which moves; rewards name no slot.
    method("getInflationReward", Read, Never),
    method("getLargestAccounts", Read, Never),
    method("getLatestBlockhash", Read, Never),
    method("getLeaderSchedule", Read, Never),
    method("getMaxRetransmitSlot", Read, Never),
    method("getMaxShredInsertSlot", Read, Never),
    method("getMinimumBalanceForRentExemption", Read, Never),
    method("getMultipleAccounts", Read, Never),
    method("getProgramAccounts", Read, Never),
    method("getRecentPerformanceSamples", Read, Never),
    method("getRecentPrioritizationFees", Read, Never),
    method("getSignatureStatuses", Read, Never),
    method("getSignaturesForAddress", Read, Never),
    method("getSlot", Read, Never),
    method("getSlotLeader", Read, Never),
    method("getSlotLeaders", Read, Never),
    method("getStakeMinimumDelegation", Read, Never),
    method("getSupply", Read, Never),
    method("getTokenAccountBalance", Read, Never),
    method("getTokenAccountsByDelegate", Read, Never),
    method("getTokenAccountsByOwner", Read, Never),
    method("getTokenLargestAccounts", Read, Never),
    method("getTokenSupply", Read, Never),
    method("getTransaction", Read, DEEP),
    method("getTransactionCount", Read, Never),
    method("getVersion", Read, Never),
    method("getVoteAccounts", Read, Never),
    method("isBlockhashValid", Read, Never),
    method("minimumLedgerSlot", Read, Never),
    method("requestAirdrop", Write, Never),
    method("sendTransaction", Write, Never),
    method("simulateTransaction", Read, Never),
    // Validator admin RPC (agave `admin_rpc_service`): served on the admin IPC
    // socket, not HTTP, but listed so access policy can name and refuse them.
    method("addAuthorizedVoter", Admin, Never),
    method("contactInfo", Admin, Never),
    method("exit", Admin, Never),
    method("removeAllAuthorizedVoters", Admin, Never),
    method("repairWhitelist", Admin, Never),
    method("setIdentity", Admin, Never),
    method("setLogFilter", Admin, Never),
    method("setRepairWhitelist", Admin, Never),
    method("setStakedNodesOverrides", Admin, Never),
    method("startProgress", Admin, Never),
    method("startTime", Admin, Never),
    // Websocket subscriptions.
    method("accountSubscribe", Read, Never),
    method("accountUnsubscribe", Read, Never),
    method("blockSubscribe", Read, Never),
    method("blockUnsubscribe", Read, Never),
    method("logsSubscribe", Read, Never),
    method("logsUnsubscribe", Read, Never),
    method("programSubscribe", Read, Never),
    method("programUnsubscribe", Read, Never),
    method("rootSubscribe", Read, Never),
    method("rootUnsubscribe", Read, Never),
    method("signatureSubscribe", Read, Never),
    method("signatureUnsubscribe", Read, Never),
    method("slotSubscribe", Read, Never),
    method("slotUnsubscribe", Read, Never),
    method("slotsUpdatesSubscribe", Read, Never),
    method("slotsUpdatesUnsubscribe", Read, Never),
    method("voteSubscribe", Read, Never),
    method("voteUnsubscribe", Read, Never),
];

/// When the answer to a `DEEP` method settles (see [`CATALOG`]): at an
/// explicit slot in the params (`getBlock`, `getBlockTime`, the `end` of
/// `getBlocks`), at the last slot of a full `getBlocksWithLimit` answer, or
/// at the `slot` of a `getTransaction` answer. Slots are compared with the
/// node's slot, which is what the probe reports as its height.
pub(crate) fn settles(method: &str, params: Option<&Value>, result: &[u8]) -> Settles {
    // Solana params are positional.
    let arg = |index: usize| params.and_then(Value::as_array).and_then(|l| l.get(index));
    let slot = |value: Option<&Value>| Settles::at(value.and_then(Value::as_u64));
    match method {
        "getBlock" | "getBlockTime" => slot(arg(0)),
        // Without an end slot the list runs to the latest block.
        "getBlocks" => slot(arg(1)),
        // `limit` counts blocks, not slots: skipped slots push the last one
        // further, and a short answer ran into the head and would grow.
        "getBlocksWithLimit" => match (
            arg(1).and_then(Value::as_u64),
            serde_json::from_slice::<Vec<u64>>(result),
        ) {
            (Some(limit), Ok(slots)) if limit > 0 && slots.len() as u64 == limit => slots
                .iter()
                .max()
                .map_or(Settles::Never, |&s| Settles::AtHeight(s)),
            _ => Settles::Never,
        },
        "getTransaction" => match serde_json::from_slice::<InSlot>(result) {
            Ok(InSlot { slot: Some(at) }) => Settles::AtHeight(at),
            _ => Settles::Never,
        },
        _ => Settles::Never,
    }
}

/// The slot a transaction answer belongs to.
#[derive(serde::Deserialize)]
struct InSlot {
    slot: Option<u64>,
}

/// Methods [`settles`] has a rule for (kept equal to the `DEEP` entries by a test).
#[cfg(test)]
pub(crate) const SETTLING: &[&str] = &[
    "getBlock",
    "getBlockTime",
    "getBlocks",
    "getBlocksWithLimit",
    "getTransaction",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn settle_with(method: &str, params: &str, result: &str) -> Settles {
        crate::Adapter::for_chain(chainfleet_spec::Chain::Solana).settles(
            method,
            Some(params),
            result.as_bytes(),
        )
    }

    #[test]
    fn slots_settle_when_explicit_and_open_ranges_never() {
        let settle = |method: &str, params: &str| settle_with(method, params, "{}");
        assert_eq!(settle("getBlock", "[100]"), Settles::AtHeight(100));
        assert_eq!(
            settle("getBlock", r#"[100,{"commitment":"finalized"}]"#),
            Settles::AtHeight(100)
        );
        assert_eq!(settle("getBlockTime", "[7]"), Settles::AtHeight(7));
        for bad in ["[]", r#"["100"]"#, "[-1]", "[1.5]", r#"{"slot":100}"#, "x"] {
            assert_eq!(settle("getBlock", bad), Settles::Never, "{bad}");
        }
        assert_eq!(settle("getBlocks", "[5,10]"), Settles::AtHeight(10));
        assert_eq!(settle("getBlocks", "[5]"), Settles::Never);
        assert_eq!(
            settle("getBlocks", r#"[5,{"commitment":"finalized"}]"#),
            Settles::Never
        );
        assert_eq!(settle("getSlot", "[]"), Settles::Never);
    }

    #[test]
    fn a_full_limited_list_settles_at_its_last_slot_and_a_short_one_never() {
        assert_eq!(
            settle_with("getBlocksWithLimit", "[5,3]", "[5,7,9]"),
            Settles::AtHeight(9)
        );
        assert_eq!(
            settle_with("getBlocksWithLimit", "[5,3]", "[5,7]"),
            Settles::Never
        );
        assert_eq!(
            settle_with("getBlocksWithLimit", "[5,0]", "[]"),
            Settles::Never
        );
        assert_eq!(
            settle_with("getBlocksWithLimit", "[5,3]", r#"{"a":1}"#),
            Settles::Never
        );
        assert_eq!(
            settle_with("getTransaction", r#"["sig"]"#, r#"{"slot":42,"meta":{}}"#),
            Settles::AtHeight(42)
        );
        assert_eq!(
            settle_with("getTransaction", r#"["sig"]"#, "null"),
            Settles::Never
        );
        assert_eq!(
            settle_with("getTransaction", r#"["sig"]"#, r#"{"slot":"42"}"#),
            Settles::Never
        );
    }

    fn latest() -> Value {
        json!({"context": {"apiVersion": "2.1.11", "slot": 320148671},
               "value": {"blockhash": "HBVZtYyJnpeWNo3uDL5RfqAjdu5TWrRTcmaVk7sUDc2C", "lastValidBlockHeight": 298423682}})
    }

    fn version() -> Value {
        json!({"feature-set": 3718597879u64, "solana-core": "3.0.6"})
    }

    fn unhealthy() -> Result<Value, ChainError> {
        Err(ChainError::Rpc {
            method: "getHealth".into(),
            code: -32005,
            message: "Node is behind by 42 slots".into(),
        })
    }

    #[test]
    fn parse_status_reads_documented_answers() {
        let got = parse_status(vec![Ok(latest()), Ok(json!("ok")), Ok(version())]).expect("valid");
        assert_eq!(got.height, 320148671);
        assert_eq!(
            got.best_hash,
            "HBVZtYyJnpeWNo3uDL5RfqAjdu5TWrRTcmaVk7sUDc2C"
        );
        assert!(!got.syncing);
        assert_eq!(got.peers, 0);
        assert_eq!(got.client_version, "solana-core 3.0.6");
        let behind = parse_status(vec![Ok(latest()), unhealthy(), Ok(version())]).expect("valid");
        assert!(behind.syncing);
    }

    #[test]
    fn block_time_may_be_missing() {
        assert_eq!(
            parse_block_time(Ok(json!(1574721591))).ok(),
            Some(Some(1574721591))
        );
        assert_eq!(parse_block_time(Ok(Value::Null)).ok(), Some(None));
        let skipped = Err(ChainError::Rpc {
            method: "getBlockTime".into(),
            code: -32009,
            message: "Slot 5 was skipped".into(),
        });
        assert_eq!(parse_block_time(skipped).ok(), Some(None));
        for bad in [json!(-1), json!("1574721591"), json!(1.5), json!({})] {
            assert!(parse_block_time(Ok(bad.clone())).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn hostile_answers_are_errors_not_panics() {
        let mut bad_latest = vec![json!(null), json!("<html>"), json!({"context": {}})];
        for (path, value) in [
            (("context", "slot"), json!(-1)),
            (("context", "slot"), json!("320148671")),
            (("value", "blockhash"), json!("0OIl".repeat(10))),
            (("value", "blockhash"), json!("short")),
            (("value", "blockhash"), json!(7)),
        ] {
            let mut l = latest();
            l[path.0][path.1] = value;
            bad_latest.push(l);
        }
        for l in bad_latest {
            let answers = vec![Ok(l.clone()), Ok(json!("ok")), Ok(version())];
            assert!(parse_status(answers).is_err(), "accepted {l}");
        }
        for (health, version) in [
            (Ok(json!(true)), Ok(version())),
            (Ok(json!("ok")), Ok(json!({"solana-core": 3}))),
            (Ok(json!("ok")), Ok(json!("3.0.6"))),
            (Ok(json!("ok")), unhealthy()),
        ] {
            assert!(parse_status(vec![Ok(latest()), health, version]).is_err());
        }
        assert!(parse_status(vec![Ok(latest())]).is_err(), "short batch");
    }
}
