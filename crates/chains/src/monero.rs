//! Monero family: monerod. Tested against Debian's monerod 0.18 in regtest.

use chainfleet_spec::Network;
use serde_json::{json, Value};

use crate::catalog::{method, Cacheability, Cacheability::*, MethodClass::*, MethodInfo, Settles};
use crate::rpc::field;
use crate::{ChainError, Endpoint, LaunchSpec, NodeLayout, ProbeStatus, ProducedBlock, RpcClient};

/// JSON-RPC path of monerod (its other methods are plain REST paths).
const PATH: &str = "/json_rpc";

/// Where devnet block rewards go unless the operator names an address.
///
/// The primary address of the public test seed "velvet lymph giddy …" used
/// throughout monero's own `tests/functional_tests`. Regtest uses mainnet
/// address prefixes; monerod 0.18 `--regtest` accepts it in `generateblocks`.
/// Anyone holding that public seed can spend these devnet coins.
pub(crate) const DEFAULT_REWARD_ADDRESS: &str =
    "42ey1afDFnn4886T7196doS9GPMzexD9gXpsZJDwVjeRVdFCSoHnv7KPbBeGpzJBzHRCAs9UxqeoyFQMYbqSWYTfJJQAWDm";

/// Render the config file and command line of a node.
///
/// Settings go in a config file so manifest `config` entries override them
/// key by key; `--non-interactive` is command-line only in monerod.
pub(crate) fn launch(layout: &NodeLayout, default_binary: &str) -> LaunchSpec {
    let program = layout
        .client
        .binary
        .clone()
        .unwrap_or_else(|| default_binary.to_string());
    let conf_path = layout.data_dir.join("monerod.conf");
    let mut base: Vec<(&str, String)> = Vec::new();
    match layout.network {
        Network::Mainnet => {}
        Network::Testnet => base.push(("testnet", "1".into())),
        Network::Regtest | Network::Devnet => {
            base.push(("regtest", "1".into()));
            base.push(("fixed-difficulty", "1".into()));
            // Without it, monerod --regtest wipes its chain on every start.
            base.push(("keep-fakechain", "1".into()));
        }
    }
    base.extend([
        ("data-dir", layout.data_dir.display().to_string()),
        (
            "log-file",
            layout.data_dir.join("monerod.log").display().to_string(),
        ),
        ("rpc-bind-ip", "127.0.0.1".into()),
        ("rpc-bind-port", layout.rpc_port.to_string()),
        // Plain HTTP on loopback; also skips generating a TLS key at startup.
        ("rpc-ssl", "disabled".into()),
        ("p2p-bind-ip", "127.0.0.1".into()),
        ("p2p-bind-port", layout.p2p_port.to_string()),
        ("no-igd", "1".into()),
        ("no-zmq", "1".into()),
        ("check-updates", "disabled".into()),
    ]);
    if layout.network.is_local() {
        // DNS checkpoints guard the public chains; a devnet has none.
        base.push(("disable-dns-checkpoints", "1".into()));
    }
    if layout.peer_p2p_ports.is_empty() {
        base.push(("offline", "1".into()));
    } else {
        // Exclusive: connect to these only, never to the public network.
        for port in &layout.peer_p2p_ports {
            base.push(("add-exclusive-node", format!("127.0.0.1:{port}")));
        }
    }
    let contents = crate::render_config_lines(&base, &layout.client.config);
    let mut args = vec![
        "--config-file".to_string(),
        conf_path.display().to_string(),
        "--non-interactive".to_string(),
    ];
    args.extend(layout.client.args.iter().cloned());
    LaunchSpec {
        program,
        args,
        config_file: Some((conf_path, contents)),
    }
}

/// Ask the node for its head block and its state (two calls, sent together;
/// monerod does not answer JSON-RPC batches).
pub(crate) async fn probe(rpc: &RpcClient, ep: &Endpoint) -> Result<ProbeStatus, ChainError> {
    let (info, header) = tokio::join!(
        rpc.call(ep, PATH, "get_info", json!({})),
        rpc.call(ep, PATH, "get_last_block_header", json!({})),
    );
    parse_status(&info?, &header?).map_err(|e| field::locate(e, &ep.url))
}

/// Status from `get_info` and `get_last_block_header`.
///
/// Height, hash and time all come from the header, so they describe one
/// block. (`get_info.height` counts blocks: it is the best height plus one.)
pub(crate) fn parse_status(info: &Value, header: &Value) -> Result<ProbeStatus, ChainError> {
    check_status(info, "get_info")?;
    check_status(header, "get_last_block_header")?;
    let what = "get_last_block_header";
    let block = header.get("block_header").unwrap_or(&Value::Null);
    let height = field::u64_of(block, what, "height")?;
    let best_hash = field::hash(block.get("hash").unwrap_or(&Value::Null), what, "", 64)?;
    let head_time = field::u64_of(block, what, "timestamp")?;
    let what = "get_info";
    let incoming = field::u64_of(info, what, "incoming_connections_count")?;
    let outgoing = field::u64_of(info, what, "outgoing_connections_count")?;
    let peers = field::count_u32(incoming.saturating_add(outgoing), what)?;
    let synchronized = bool_of(info, what, "synchronized")?;
    let busy_syncing = info
        .get("busy_syncing")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let version = field::str_of(info, what, "version")?;
    Ok(ProbeStatus {
        height,
        best_hash,
        head_time: Some(head_time),
        peers,
        syncing: !synchronized || busy_syncing,
        client_version: field::text(&format!("monerod {version}")),
    })
}

/// monerod answers `"status": "OK"` on success, `BUSY` and others otherwise.
fn check_status(answer: &Value, what: &str) -> Result<(), ChainError> {
    match answer.get("status").and_then(Value::as_str) {
        Some("OK") => Ok(()),
        Some("BUSY") => Err(ChainError::BadResponse {
            url: String::new(),
            detail: format!(
                "{what}: monerod is BUSY: it has peers configured and has not synchronized \
                 with any of them yet; retry once a peer is up"
            ),
        }),
        _ => Err(ChainError::BadResponse {
            url: String::new(),
            detail: format!("{what}: status is not OK: {}", field::short(answer)),
        }),
    }
}

/// A required boolean field.
fn bool_of(value: &Value, what: &str, name: &str) -> Result<bool, ChainError> {
    value
        .get(name)
        .and_then(Value::as_bool)
        .ok_or_else(|| ChainError::BadResponse {
            url: String::new(),
            detail: format!("{what}: field `{name}` is missing or not a boolean"),
        })
}

/// Mine one block on a regtest node, paying `reward_address` or [`DEFAULT_REWARD_ADDRESS`].
pub(crate) async fn produce(
    rpc: &RpcClient,
    ep: &Endpoint,
    reward_address: Option<&str>,
) -> Result<ProducedBlock, ChainError> {
    let address = reward_address.unwrap_or(DEFAULT_REWARD_ADDRESS);
    let params = json!({"amount_of_blocks": 1, "wallet_address": address});
    let answer = rpc.call(ep, PATH, "generateblocks", params).await?;
    parse_produced(&answer).map_err(|e| field::locate(e, &ep.url))
}

/// The block of a `generateblocks` answer (`height` is the new block's height).
pub(crate) fn parse_produced(answer: &Value) -> Result<ProducedBlock, ChainError> {
    check_status(answer, "generateblocks")?;
    let hash = match answer
        .get("blocks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([hash]) => field::hash(hash, "generateblocks", "", 64)?,
        _ => {
            return Err(ChainError::BadResponse {
                url: String::new(),
                detail: format!(
                    "generateblocks: expected one block hash, got {}",
                    field::short(answer)
                ),
            })
        }
    };
    Ok(ProducedBlock {
        height: answer.get("height").and_then(Value::as_u64),
        hash,
    })
}

/// Blocks this deep are treated as final (monero's usual 10-block lock).
const DEEP: Cacheability = ImmutableWhenDeep(10);

/// monerod's RPC: JSON-RPC methods at `/json_rpc`, and the REST-style paths
/// (`/get_height`, `/send_raw_transaction`, …) named with their leading slash.
///
/// Only two answers settle ([`settles`]): `on_get_block_hash` of an explicit
/// height and `get_coinbase_tx_sum` of an explicit range, once its last block
/// is ten deep. Block headers (`get_block*`) carry a `depth` that grows with
/// every block, `/get_transactions` carries `confirmations` and `/get_outs`
/// an `unlocked` flag, so none of those is cached; nor are the `.bin`
/// answers, which name no height the gateway could read.
pub(crate) const CATALOG: &[MethodInfo] = &[
    // JSON-RPC: reads.
    method("get_block", Read, Never),
    method("get_block_count", Read, Never),
    method("get_block_header_by_hash", Read, Never),
    method("get_block_header_by_height", Read, Never),
    method("get_block_headers_range", Read, Never),
    method("get_block_template", Mining, Never),
    method("get_coinbase_tx_sum", Read, DEEP),
    method("get_fee_estimate", Read, Never),
    method("get_info", Read, Never),
    method("get_last_block_header", Read, Never),
    method("get_miner_data", Mining, Never),
    method("get_output_distribution", Read, Never),
    method("get_output_histogram", Read, Never),
    method("get_tx_ids_loose", Read, Never),
    method("get_txpool_backlog", Read, Never),
    method("get_version", Read, Never),
    method("get_alternate_chains", Read, Never),
    method("hard_fork_info", Read, Never),
    method("on_get_block_hash", Read, DEEP),
    method("calc_pow", Read, Immutable),
    method("sync_info", Network, Never),
    method("get_connections", Network, Never),
    method("get_bans", Network, Never),
    method("banned", Network, Never),
    method("set_bans", Network, Never),
    method("flush_txpool", Admin, Never),
    method("flush_cache", Admin, Never),
    method("prune_blockchain", Admin, Never),
    method("relay_tx", Write, Never),
    method("add_aux_pow", Mining, Never),
    method("generateblocks", Mining, Never),
    method("submit_block", Mining, Never),
    method("rpc_access_account", Admin, Never),
    method("rpc_access_data", Admin, Never),
    method("rpc_access_info", Read, Never),
    method("rpc_access_pay", Admin, Never),
    method("rpc_access_submit_nonce", Admin, Never),
    method("rpc_access_tracking", Admin, Never),
    // REST-style paths.
    method("/get_alt_blocks_hashes", Read, Never),
    method("/get_blocks.bin", Read, Never),
    method("/get_blocks_by_height.bin", Read, Never),
    method("/get_hashes.bin", Read, Never),
    method("/get_height", Read, Never),
    method("/get_info", Read, Never),
    method("/get_limit", Network, Never),
    method("/get_net_stats", Network, Never),
    method("/get_o_indexes.bin", Read, Never),
    method("/get_outs", Read, Never),
    method("/get_outs.bin", Read, Never),
    method("/get_peer_list", Network, Never),
    method("/get_public_nodes", Network, Never),
    method("/get_transaction_pool", Read, Never),
    method("/get_transaction_pool_hashes", Read, Never),
    method("/get_transaction_pool_hashes.bin", Read, Never),
    method("/get_transaction_pool_stats", Read, Never),
    method("/get_transactions", Read, Never),
    method("/is_key_image_spent", Read, Never),
    method("/get_version", Read, Never),
    method("/in_peers", Network, Never),
    method("/out_peers", Network, Never),
    method("/set_limit", Network, Never),
    method("/set_bootstrap_daemon", Admin, Never),
    method("/set_log_categories", Admin, Never),
    method("/set_log_hash_rate", Admin, Never),
    method("/set_log_level", Admin, Never),
    method("/mining_status", Mining, Never),
    method("/start_mining", Mining, Never),
    method("/stop_mining", Mining, Never),
    method("/save_bc", Admin, Never),
    method("/stop_daemon", Admin, Never),
    method("/update", Admin, Never),
    method("/pop_blocks", Admin, Never),
    method("/send_raw_transaction", Write, Never),
    method("/sendrawtransaction", Write, Never),
];

/// When the answer to a `DEEP` method settles (see [`CATALOG`]).
pub(crate) fn settles(method: &str, params: Option<&Value>, _result: &[u8]) -> Settles {
    let Some(params) = params else {
        return Settles::Never;
    };
    let explicit = |value: Option<&Value>| value.and_then(Value::as_u64);
    match method {
        "on_get_block_hash" => match params.as_array().map(Vec::as_slice) {
            Some([height]) => Settles::at(height.as_u64()),
            _ => Settles::Never,
        },
        // Blocks height .. height + count - 1; a range past the head is cut
        // short now and would grow, so it settles only at its last block.
        "get_coinbase_tx_sum" => match (
            explicit(params.get("height")),
            explicit(params.get("count")),
        ) {
            (Some(height), Some(count)) => Settles::at(height.checked_add(count.saturating_sub(1))),
            _ => Settles::Never,
        },
        _ => Settles::Never,
    }
}

/// Methods [`settles`] has a rule for (kept equal to the `DEEP` entries by a test).
#[cfg(test)]
pub(crate) const SETTLING: &[&str] = &["on_get_block_hash", "get_coinbase_tx_sum"];

/// The content type of a REST path's answer: `.bin` paths speak monero's
/// binary (epee) format, the others JSON.
pub(crate) fn rest_content_type(path: &str) -> &'static str {
    if path.ends_with(".bin") {
        "application/octet-stream"
    } else {
        "application/json"
    }
}

/// The hash of the block at `height` on the node's main chain.
pub(crate) async fn block_hash_at(
    rpc: &RpcClient,
    ep: &Endpoint,
    height: u64,
) -> Result<String, ChainError> {
    let what = "get_block_header_by_height";
    let answer = rpc
        .call(ep, PATH, what, json!({ "height": height }))
        .await?;
    check_status(&answer, what).map_err(|e| field::locate(e, &ep.url))?;
    let block = answer.get("block_header").unwrap_or(&Value::Null);
    field::hash(block.get("hash").unwrap_or(&Value::Null), what, "", 64)
        .map_err(|e| field::locate(e, &ep.url))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use chainfleet_spec::{Chain, Client, Role};

    use super::*;

    fn settle(method: &str, params: &str) -> Settles {
        crate::Adapter::for_chain(Chain::Monero).settles(method, Some(params), br#""x""#)
    }

    #[test]
    fn block_hashes_by_height_and_coinbase_sums_settle_at_their_last_block() {
        assert_eq!(settle("on_get_block_hash", "[5]"), Settles::AtHeight(5));
        for bad in [
            "[]",
            "[5,6]",
            r#"["5"]"#,
            "[-1]",
            "[5.5]",
            r#"{"height":5}"#,
            "5",
            "nope",
        ] {
            assert_eq!(settle("on_get_block_hash", bad), Settles::Never, "{bad}");
        }
        assert_eq!(
            settle("get_coinbase_tx_sum", r#"{"height":1,"count":2}"#),
            Settles::AtHeight(2)
        );
        assert_eq!(
            settle("get_coinbase_tx_sum", r#"{"height":4,"count":0}"#),
            Settles::AtHeight(4)
        );
        for bad in [
            r#"{"height":18446744073709551615,"count":3}"#,
            r#"{"height":1}"#,
            r#"{"height":"1","count":2}"#,
            r#"{"height":1,"count":-2}"#,
            "[1,2]",
        ] {
            assert_eq!(settle("get_coinbase_tx_sum", bad), Settles::Never, "{bad}");
        }
    }

    #[test]
    fn answers_with_a_growing_depth_never_settle() {
        assert_eq!(
            settle("get_block_header_by_height", r#"{"height":1}"#),
            Settles::Never
        );
        assert_eq!(settle("get_block", r#"{"height":1}"#), Settles::Never);
        assert_eq!(
            settle("/get_transactions", r#"{"txs_hashes":[]}"#),
            Settles::Never
        );
        assert_eq!(settle("calc_pow", "{}"), Settles::Now);
    }

    #[test]
    fn bin_paths_answer_binary_and_the_others_json() {
        let adapter = crate::Adapter::for_chain(Chain::Monero);
        assert_eq!(
            adapter.rest_content_type("/get_hashes.bin"),
            "application/octet-stream"
        );
        assert_eq!(adapter.rest_content_type("/get_height"), "application/json");
        assert_eq!(
            crate::Adapter::for_chain(Chain::Ethereum).rest_content_type("/x.bin"),
            "application/json"
        );
    }

    fn layout(network: Network, peers: Vec<u16>) -> NodeLayout {
        NodeLayout {
            name: "xmr-0".into(),
            chain: Chain::Monero,
            network,
            role: Role::Full,
            client: Client {
                binary: None,
                version: None,
                args: vec!["--log-level".into(), "1".into()],
                config: BTreeMap::new(),
            },
            data_dir: PathBuf::from("/data/xmr-0"),
            rpc_port: 18081,
            p2p_port: 18080,
            rpc_user: String::new(),
            rpc_password: String::new(),
            peer_p2p_ports: peers,
        }
    }

    fn lines(spec: &LaunchSpec) -> Vec<String> {
        spec.config_file
            .as_ref()
            .map(|(_, c)| c.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn regtest_launch_is_offline_with_fixed_difficulty() {
        let spec = launch(&layout(Network::Regtest, vec![]), "monerod");
        assert_eq!(spec.program, "monerod");
        assert_eq!(
            spec.args,
            [
                "--config-file",
                "/data/xmr-0/monerod.conf",
                "--non-interactive",
                "--log-level",
                "1"
            ]
        );
        let conf = lines(&spec);
        for line in [
            "regtest=1",
            "fixed-difficulty=1",
            "keep-fakechain=1",
            "offline=1",
            "data-dir=/data/xmr-0",
            "log-file=/data/xmr-0/monerod.log",
            "rpc-bind-ip=127.0.0.1",
            "rpc-bind-port=18081",
            "p2p-bind-ip=127.0.0.1",
            "p2p-bind-port=18080",
            "no-igd=1",
            "no-zmq=1",
            "disable-dns-checkpoints=1",
            "check-updates=disabled",
        ] {
            assert!(conf.iter().any(|l| l == line), "missing {line}: {conf:?}");
        }
    }

    #[test]
    fn peers_replace_offline_and_overrides_win() {
        let mut l = layout(Network::Testnet, vec![18090, 18100]);
        l.client
            .config
            .insert("rpc-bind-port".into(), "9999".into());
        let conf = lines(&launch(&l, "monerod"));
        assert!(conf.iter().any(|l| l == "testnet=1"));
        assert!(!conf.iter().any(|l| l == "offline=1" || l == "regtest=1"));
        assert!(conf
            .iter()
            .any(|l| l == "add-exclusive-node=127.0.0.1:18090"));
        assert!(conf
            .iter()
            .any(|l| l == "add-exclusive-node=127.0.0.1:18100"));
        assert!(conf.iter().any(|l| l == "rpc-bind-port=9999"));
        assert!(!conf.iter().any(|l| l == "rpc-bind-port=18081"));
        assert!(!conf.iter().any(|l| l == "disable-dns-checkpoints=1"));
    }

    fn info() -> Value {
        json!({
            "status": "OK", "height": 3, "synchronized": true, "busy_syncing": false,
            "incoming_connections_count": 1, "outgoing_connections_count": 2,
            "version": "0.18.0.0-unknown",
            "top_block_hash": "0fa12fd830246d420fe1edc35e6d3b738aae999ea625f33465c0348dabecdb9b"
        })
    }

    fn header() -> Value {
        json!({"status": "OK", "block_header": {
            "height": 2, "timestamp": 1795317488u64,
            "hash": "0fa12fd830246d420fe1edc35e6d3b738aae999ea625f33465c0348dabecdb9b"
        }})
    }

    #[test]
    fn parse_status_reads_real_shaped_answers() {
        let status = parse_status(&info(), &header()).expect("valid");
        assert_eq!(status.height, 2);
        assert_eq!(status.peers, 3);
        assert_eq!(status.head_time, Some(1795317488));
        assert!(!status.syncing);
        assert_eq!(status.client_version, "monerod 0.18.0.0-unknown");
        let mut behind = info();
        behind["synchronized"] = json!(false);
        assert!(parse_status(&behind, &header()).expect("valid").syncing);
    }

    #[test]
    fn hostile_answers_are_errors_not_panics() {
        let mut bad_infos = vec![json!("<html>"), json!(null), json!({"status": "BUSY"})];
        for (key, value) in [
            ("status", json!("BUSY")),
            ("synchronized", json!("yes")),
            ("incoming_connections_count", json!(-1)),
            ("outgoing_connections_count", json!(u64::MAX)),
            ("version", json!(7)),
        ] {
            let mut bad = info();
            bad[key] = value;
            bad_infos.push(bad);
        }
        for bad in &bad_infos {
            assert!(parse_status(bad, &header()).is_err(), "accepted {bad}");
        }
        let mut bad_headers = vec![
            json!({"status": "OK"}),
            json!({"status": "OK", "block_header": []}),
        ];
        for (key, value) in [
            ("height", json!(-2)),
            ("height", json!(1e40)),
            ("timestamp", json!("soon")),
            ("hash", json!("0x00")),
            ("hash", json!("g".repeat(64))),
        ] {
            let mut bad = header();
            bad["block_header"][key] = value;
            bad_headers.push(bad);
        }
        for bad in &bad_headers {
            assert!(parse_status(&info(), bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn parse_produced_needs_one_hash() {
        let hash = "6756deb0325ee5f500a9db17aee434b890f6edad4d68416bc21e9ae0e05e4183";
        let good = json!({"status": "OK", "height": 1, "blocks": [hash]});
        let block = parse_produced(&good).expect("valid");
        assert_eq!((block.height, block.hash.as_str()), (Some(1), hash));
        for bad in [
            json!({"status": "OK", "blocks": []}),
            json!({"status": "OK", "blocks": [hash, hash]}),
            json!({"status": "OK", "blocks": hash}),
            json!({"status": "FAILED", "blocks": [hash]}),
            json!([]),
        ] {
            assert!(parse_produced(&bad).is_err(), "accepted {bad}");
        }
    }
}
