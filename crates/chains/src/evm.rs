//! EVM family: Ethereum JSON-RPC (geth, reth, erigon, nethermind, besu, anvil).
//!
//! Tested against anvil (npm `@foundry-rs/anvil`). The geth and reth command
//! lines are rendered from their documentation and not run in tests: no
//! daemon is installable here.

use serde_json::{json, Value};

use crate::catalog::{method, Cacheability, Cacheability::*, MethodClass::*, MethodInfo, Settles};
use crate::rpc::field;
use crate::{ChainError, Endpoint, LaunchSpec, NodeLayout, ProbeStatus, ProducedBlock, RpcClient};
use chainfleet_spec::{Network, Role};

/// JSON-RPC path of EVM nodes.
const PATH: &str = "/";

/// Chain id of local anvil devnets (anvil's own default).
const DEVNET_CHAIN_ID: &str = "31337";

/// Which EVM client a binary is, by its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Foundry's anvil: an in-memory devnet, no peers.
    Anvil,
    /// go-ethereum.
    Geth,
    /// reth (flags after the `node` subcommand).
    Reth,
    /// Anything else; rendered with geth-style flags (erigon accepts them).
    Other,
}

/// The flavor of `binary` (a name or a path).
pub(crate) fn flavor(binary: &str) -> Flavor {
    match crate::binary_name(binary) {
        "anvil" => Flavor::Anvil,
        "geth" => Flavor::Geth,
        "reth" => Flavor::Reth,
        _ => Flavor::Other,
    }
}

/// EVM subscriptions (`eth_subscribe`), served over WebSocket on the HTTP RPC
/// port: anvil always does; geth and reth are told to below, erigon with `--ws`.
pub(crate) const WEBSOCKET: crate::WebSocketRpc = crate::WebSocketRpc {
    path: "/",
    subscribe: "eth_subscribe",
    unsubscribe: "eth_unsubscribe",
    notification: "eth_subscription",
};

/// Render the command line of a node. EVM clients get no config file:
/// manifest `config` entries become `--KEY=VALUE` flags that replace ours.
pub(crate) fn launch(layout: &NodeLayout, default_binary: &str) -> LaunchSpec {
    let program = layout
        .client
        .binary
        .clone()
        .unwrap_or_else(|| default_binary.to_string());
    let dir = layout.data_dir.display().to_string();
    let rpc_port = layout.rpc_port.to_string();
    let mut flags: Vec<(&str, Option<String>)> = Vec::new();
    let mut args = Vec::new();
    match flavor(&program) {
        Flavor::Anvil => {
            flags.push(("host", Some("127.0.0.1".into())));
            flags.push(("port", Some(rpc_port)));
            // --state loads the file if it exists and dumps to it on SIGTERM,
            // so a restarted devnet keeps its chain.
            flags.push(("state", Some(format!("{dir}/state.json"))));
            if layout.network.is_local() {
                flags.push(("chain-id", Some(DEVNET_CHAIN_ID.into())));
            }
            // No --block-time: the control plane produces blocks with evm_mine,
            // and anvil's automine still mines each transaction as it comes.
        }
        client => {
            if client == Flavor::Reth {
                args.push("node".to_string());
            }
            flags.push(("datadir", Some(dir)));
            flags.push(("http", None));
            flags.push(("http.addr", Some("127.0.0.1".into())));
            flags.push(("http.port", Some(rpc_port)));
            flags.push(("http.api", Some("eth,net,web3,txpool".into())));
            // WebSocket on the same port as HTTP, so the gateway finds it without another port.
            flags.push(("ws", None));
            if client != Flavor::Other {
                flags.push(("ws.addr", Some("127.0.0.1".into())));
                flags.push(("ws.port", Some(layout.rpc_port.to_string())));
                flags.push(("ws.api", Some("eth,net,web3,txpool".into())));
            }
            flags.push(("port", Some(layout.p2p_port.to_string())));
            // IPC sockets live in the data dir and break on long paths; RPC is HTTP.
            flags.push(("ipcdisable", None));
            match layout.network {
                Network::Mainnet => {}
                Network::Testnet if client == Flavor::Reth => {
                    flags.push(("chain", Some("sepolia".into())))
                }
                Network::Testnet => flags.push(("sepolia", None)),
                Network::Regtest | Network::Devnet => {
                    flags.push(("dev", None));
                    flags.push(("nodiscover", None));
                }
            }
            if layout.role == Role::Archive && client != Flavor::Reth {
                // reth keeps full history unless told otherwise.
                flags.push(("gcmode", Some("archive".into())));
                flags.push(("syncmode", Some("full".into())));
            }
            // Peering by port alone is impossible: these clients need enode ids.
            // Note: the engine API port (8551) is the client default and would
            // clash between two such nodes on one machine.
        }
    }
    let overrides = &layout.client.config;
    flags.retain(|(name, _)| !overrides.contains_key(*name));
    let rendered = flags
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .chain(
            overrides
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone()).filter(|v| !v.is_empty()))),
        );
    for (name, value) in rendered {
        args.push(format!("--{name}"));
        args.extend(value);
    }
    args.extend(layout.client.args.iter().cloned());
    LaunchSpec {
        program,
        args,
        config_file: None,
    }
}

/// The calls of one probe, sent as one batch.
fn probe_calls() -> [(&'static str, Value); 4] {
    [
        ("eth_getBlockByNumber", json!(["latest", false])),
        ("net_peerCount", json!([])),
        ("eth_syncing", json!([])),
        ("web3_clientVersion", json!([])),
    ]
}

/// Ask the node for its head, peers, sync state and version in one batch.
///
/// The head block gives height, hash and time together, so they always
/// belong to one block (`eth_blockNumber` would be a second, racy answer).
pub(crate) async fn probe(rpc: &RpcClient, ep: &Endpoint) -> Result<ProbeStatus, ChainError> {
    let answers = rpc.batch_each(ep, PATH, &probe_calls()).await?;
    parse_status(answers).map_err(|e| field::locate(e, &ep.url))
}

/// Status from the probe batch, in [`probe_calls`] order.
///
/// Only the head block is required. Nodes that lack `net_peerCount` (anvil)
/// or `eth_syncing` answer with a JSON-RPC error for that call; those count
/// as 0 peers and not syncing. A wrong *type* is still an error.
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
    let block = next()?;
    let peers = next();
    let syncing = next();
    let version = next();

    let (height, best_hash, head_time) = parse_block(&block)?;
    let peers = match peers {
        Ok(count) => field::count_u32(field::hex_u64(&count, "net_peerCount")?, "net_peerCount")?,
        Err(ChainError::Rpc { .. }) => 0,
        Err(other) => return Err(other),
    };
    let syncing = match syncing {
        Ok(Value::Bool(flag)) => flag,
        Ok(Value::Object(_)) => true,
        Ok(other) => {
            return Err(ChainError::BadResponse {
                url: String::new(),
                detail: format!(
                    "eth_syncing: expected false or an object, got {}",
                    field::short(&other)
                ),
            })
        }
        Err(ChainError::Rpc { .. }) => false,
        Err(other) => return Err(other),
    };
    let client_version = match version {
        Ok(Value::String(name)) => field::text(&name),
        Ok(other) => {
            return Err(ChainError::BadResponse {
                url: String::new(),
                detail: format!(
                    "web3_clientVersion: expected a string, got {}",
                    field::short(&other)
                ),
            })
        }
        Err(ChainError::Rpc { .. }) => String::new(),
        Err(other) => return Err(other),
    };
    Ok(ProbeStatus {
        height,
        best_hash,
        head_time: Some(head_time),
        peers,
        syncing,
        client_version,
    })
}

/// Height, hash and timestamp of a block object.
pub(crate) fn parse_block(block: &Value) -> Result<(u64, String, u64), ChainError> {
    if !block.is_object() {
        return Err(ChainError::BadResponse {
            url: String::new(),
            detail: format!(
                "eth_getBlockByNumber: expected a block, got {}",
                field::short(block)
            ),
        });
    }
    let get = |name: &str| block.get(name).unwrap_or(&Value::Null);
    let height = field::hex_u64(get("number"), "block.number")?;
    let hash = field::hash(get("hash"), "block.hash", "0x", 64)?;
    let time = field::hex_u64(get("timestamp"), "block.timestamp")?;
    Ok((height, hash, time))
}

/// Mine one block with `evm_mine` (anvil, hardhat, ganache), then read the new head.
///
/// If a transaction is automined in between, the head read is that later block.
pub(crate) async fn produce(rpc: &RpcClient, ep: &Endpoint) -> Result<ProducedBlock, ChainError> {
    rpc.call(ep, PATH, "evm_mine", json!([])).await?;
    let block = rpc
        .call(ep, PATH, "eth_getBlockByNumber", json!(["latest", false]))
        .await?;
    let (height, hash, _) = parse_block(&block).map_err(|e| field::locate(e, &ep.url))?;
    Ok(ProducedBlock {
        height: Some(height),
        hash,
    })
}

/// Blocks this deep are treated as final (pre-merge habit; post-merge finality is later still).
const DEEP: Cacheability = ImmutableWhenDeep(12);

/// Ethereum JSON-RPC methods: the standard `eth_`/`net_`/`web3_` set, geth's
/// `admin_`/`debug_`/`personal_`/`miner_`/`txpool_`, parity-style `trace_`,
/// the engine API, and the anvil/hardhat devnet extensions.
///
/// `DEEP` answers settle as [`settles`] reads them: by-number methods once
/// the block named by an explicit number (`"0x10"`) is twelve deep, or at
/// once when a block hash names it; a block tag (`latest`, `pending`,
/// `safe`, `finalized`, `earliest`, which history expiry can move) never
/// settles. Lookups by transaction hash settle at the answer's `blockNumber`;
/// a pending transaction (no block yet) never does.
pub(crate) const CATALOG: &[MethodInfo] = &[
    // eth_: chain reads.
    method("eth_blobBaseFee", Read, Never),
    method("eth_blockNumber", Read, Never),
    method("eth_call", Read, Never),
    method("eth_chainId", Read, Immutable),
    method("eth_coinbase", Read, Never),
    method("eth_createAccessList", Read, Never),
    method("eth_estimateGas", Read, Never),
    method("eth_feeHistory", Read, Never),
    method("eth_gasPrice", Read, Never),
    method("eth_getBalance", Read, Never),
    method("eth_getBlockByHash", Read, Immutable),
    method("eth_getBlockByNumber", Read, DEEP),
    method("eth_getBlockReceipts", Read, DEEP),
    method("eth_getBlockTransactionCountByHash", Read, Immutable),
    method("eth_getBlockTransactionCountByNumber", Read, DEEP),
    method("eth_getCode", Read, Never),
    method("eth_getFilterChanges", Read, Never),
    method("eth_getFilterLogs", Read, Never),
    method("eth_getHeaderByHash", Read, Immutable),
    method("eth_getHeaderByNumber", Read, DEEP),
    method("eth_getLogs", Read, Never),
    method("eth_getProof", Read, Never),
    method("eth_getStorageAt", Read, Never),
    method("eth_getTransactionByBlockHashAndIndex", Read, Immutable),
    method("eth_getTransactionByBlockNumberAndIndex", Read, DEEP),
    method("eth_getTransactionByHash", Read, DEEP),
    method("eth_getTransactionCount", Read, Never),
    method("eth_getTransactionReceipt", Read, DEEP),
    method("eth_getUncleByBlockHashAndIndex", Read, Immutable),
    method("eth_getUncleByBlockNumberAndIndex", Read, DEEP),
    method("eth_getUncleCountByBlockHash", Read, Immutable),
    method("eth_getUncleCountByBlockNumber", Read, DEEP),
    method("eth_hashrate", Read, Never),
    method("eth_maxPriorityFeePerGas", Read, Never),
    method("eth_mining", Read, Never),
    method("eth_newBlockFilter", Read, Never),
    method("eth_newFilter", Read, Never),
    method("eth_newPendingTransactionFilter", Read, Never),
    method("eth_pendingTransactions", Read, Never),
    method("eth_protocolVersion", Read, Never),
    method("eth_simulateV1", Read, Never),
    method("eth_subscribe", Read, Never),
    method("eth_syncing", Read, Never),
    method("eth_uninstallFilter", Read, Never),
    method("eth_unsubscribe", Read, Never),
    // eth_: writes, keys held by the node, mining.
    method("eth_sendRawTransaction", Write, Never),
    method("eth_accounts", Wallet, Never),
    method("eth_fillTransaction", Wallet, Never),
    method("eth_resend", Wallet, Never),
    method("eth_sendTransaction", Wallet, Never),
    method("eth_sign", Wallet, Never),
    method("eth_signTransaction", Wallet, Never),
    method("eth_signTypedData", Wallet, Never),
    method("eth_signTypedData_v4", Wallet, Never),
    method("eth_getWork", Mining, Never),
    method("eth_submitHashrate", Mining, Never),
    method("eth_submitWork", Mining, Never),
    // web3_, net_, txpool_.
    method("web3_clientVersion", Read, Never),
    method("web3_sha3", Read, Immutable),
    method("net_listening", Network, Never),
    method("net_peerCount", Network, Never),
    method("net_version", Read, Immutable),
    method("txpool_content", Read, Never),
    method("txpool_contentFrom", Read, Never),
    method("txpool_inspect", Read, Never),
    method("txpool_status", Read, Never),
    // personal_ (geth, deprecated but still served by some clients).
    method("personal_deriveAccount", Wallet, Never),
    method("personal_ecRecover", Wallet, Never),
    method("personal_importRawKey", Wallet, Never),
    method("personal_initializeWallet", Wallet, Never),
    method("personal_listAccounts", Wallet, Never),
    method("personal_listWallets", Wallet, Never),
    method("personal_lockAccount", Wallet, Never),
    method("personal_newAccount", Wallet, Never),
    method("personal_openWallet", Wallet, Never),
    method("personal_sendTransaction", Wallet, Never),
    method("personal_sign", Wallet, Never),
    method("personal_signTransaction", Wallet, Never),
    method("personal_unlockAccount", Wallet, Never),
    method("personal_unpair", Wallet, Never),
    // admin_.
    method("admin_addPeer", Admin, Never),
    method("admin_addTrustedPeer", Admin, Never),
    method("admin_datadir", Admin, Never),
    method("admin_exportChain", Admin, Never),
    method("admin_importChain", Admin, Never),
    method("admin_nodeInfo", Admin, Never),
    method("admin_peers", Admin, Never),
    method("admin_removePeer", Admin, Never),
    method("admin_removeTrustedPeer", Admin, Never),
    method("admin_startHTTP", Admin, Never),
    method("admin_startWS", Admin, Never),
    method("admin_stopHTTP", Admin, Never),
    method("admin_stopWS", Admin, Never),
    // debug_: expensive or node-controlling, so Admin even when read-only.
    method("debug_accountRange", Admin, Never),
    method("debug_chaindbCompact", Admin, Never),
    method("debug_dumpBlock", Admin, DEEP),
    method("debug_freeOSMemory", Admin, Never),
    method("debug_gcStats", Admin, Never),
    method("debug_getBadBlocks", Admin, Never),
    method("debug_getModifiedAccountsByNumber", Admin, DEEP),
    method("debug_getRawBlock", Admin, DEEP),
    method("debug_getRawHeader", Admin, DEEP),
    method("debug_getRawReceipts", Admin, DEEP),
    method("debug_getRawTransaction", Admin, DEEP),
    method("debug_memStats", Admin, Never),
    method("debug_printBlock", Admin, DEEP),
    method("debug_setGCPercent", Admin, Never),
    method("debug_setHead", Admin, Never),
    method("debug_stacks", Admin, Never),
    method("debug_storageRangeAt", Admin, Never),
    method("debug_traceBlockByHash", Admin, Immutable),
    method("debug_traceBlockByNumber", Admin, DEEP),
    method("debug_traceCall", Admin, Never),
    // Neither the call nor its answer names the block: cannot tell when it settles.
    method("debug_traceTransaction", Admin, Never),
    method("debug_verbosity", Admin, Never),
    method("debug_vmodule", Admin, Never),
    // trace_ (erigon, nethermind, reth): as costly as debug_, so Admin too.
    method("trace_block", Admin, DEEP),
    method("trace_call", Admin, Never),
    method("trace_callMany", Admin, Never),
    method("trace_filter", Admin, Never),
    method("trace_get", Admin, DEEP),
    method("trace_rawTransaction", Admin, Never),
    method("trace_replayBlockTransactions", Admin, DEEP),
    // Neither the call nor its answer names the block: cannot tell when it settles.
    method("trace_replayTransaction", Admin, Never),
    method("trace_transaction", Admin, DEEP),
    // Engine API: only the consensus client may call it.
    method("engine_exchangeCapabilities", Admin, Never),
    method("engine_forkchoiceUpdatedV1", Admin, Never),
    method("engine_forkchoiceUpdatedV2", Admin, Never),
    method("engine_forkchoiceUpdatedV3", Admin, Never),
    method("engine_getPayloadV1", Admin, Never),
    method("engine_getPayloadV2", Admin, Never),
    method("engine_getPayloadV3", Admin, Never),
    method("engine_getPayloadV4", Admin, Never),
    method("engine_newPayloadV1", Admin, Never),
    method("engine_newPayloadV2", Admin, Never),
    method("engine_newPayloadV3", Admin, Never),
    method("engine_newPayloadV4", Admin, Never),
    // miner_ (geth).
    method("miner_setEtherbase", Mining, Never),
    method("miner_setExtra", Mining, Never),
    method("miner_setGasLimit", Mining, Never),
    method("miner_setGasPrice", Mining, Never),
    method("miner_start", Mining, Never),
    method("miner_stop", Mining, Never),
    // Devnet extensions: evm_ (anvil, hardhat, ganache).
    method("evm_increaseTime", Admin, Never),
    method("evm_mine", Mining, Never),
    method("evm_revert", Admin, Never),
    method("evm_setAutomine", Mining, Never),
    method("evm_setBlockGasLimit", Admin, Never),
    method("evm_setIntervalMining", Mining, Never),
    method("evm_setNextBlockTimestamp", Admin, Never),
    method("evm_snapshot", Admin, Never),
    // anvil_.
    method("anvil_autoImpersonateAccount", Admin, Never),
    method("anvil_dropTransaction", Admin, Never),
    method("anvil_dumpState", Admin, Never),
    method("anvil_getAutomine", Read, Never),
    method("anvil_impersonateAccount", Admin, Never),
    method("anvil_loadState", Admin, Never),
    method("anvil_metadata", Read, Never),
    method("anvil_mine", Mining, Never),
    method("anvil_nodeInfo", Admin, Never),
    method("anvil_removeBlockTimestampInterval", Admin, Never),
    method("anvil_reset", Admin, Never),
    method("anvil_setAutomine", Mining, Never),
    method("anvil_setBalance", Admin, Never),
    method("anvil_setBlockTimestampInterval", Admin, Never),
    method("anvil_setChainId", Admin, Never),
    method("anvil_setCode", Admin, Never),
    method("anvil_setCoinbase", Admin, Never),
    method("anvil_setIntervalMining", Mining, Never),
    method("anvil_setLoggingEnabled", Admin, Never),
    method("anvil_setMinGasPrice", Admin, Never),
    method("anvil_setNextBlockBaseFeePerGas", Admin, Never),
    method("anvil_setNonce", Admin, Never),
    method("anvil_setStorageAt", Admin, Never),
    method("anvil_stopImpersonatingAccount", Admin, Never),
    // hardhat_.
    method("hardhat_dropTransaction", Admin, Never),
    method("hardhat_impersonateAccount", Admin, Never),
    method("hardhat_metadata", Read, Never),
    method("hardhat_mine", Mining, Never),
    method("hardhat_reset", Admin, Never),
    method("hardhat_setBalance", Admin, Never),
    method("hardhat_setCode", Admin, Never),
    method("hardhat_setCoinbase", Admin, Never),
    method("hardhat_setMinGasPrice", Admin, Never),
    method("hardhat_setNextBlockBaseFeePerGas", Admin, Never),
    method("hardhat_setNonce", Admin, Never),
    method("hardhat_setStorageAt", Admin, Never),
    method("hardhat_stopImpersonatingAccount", Admin, Never),
];

/// When the answer to a `DEEP` method settles (see [`CATALOG`]).
pub(crate) fn settles(method: &str, params: Option<&Value>, result: &[u8]) -> Settles {
    // Ethereum JSON-RPC params are positional.
    let list = params.and_then(Value::as_array);
    let first = || list.and_then(|l| l.first());
    match method {
        "eth_getBlockByNumber"
        | "eth_getBlockReceipts"
        | "eth_getBlockTransactionCountByNumber"
        | "eth_getHeaderByNumber"
        | "eth_getTransactionByBlockNumberAndIndex"
        | "eth_getUncleByBlockNumberAndIndex"
        | "eth_getUncleCountByBlockNumber"
        | "debug_dumpBlock"
        | "debug_getRawBlock"
        | "debug_getRawHeader"
        | "debug_getRawReceipts"
        | "debug_printBlock"
        | "debug_traceBlockByNumber"
        | "trace_block"
        | "trace_replayBlockTransactions" => first().map_or(Settles::Never, block_ref),
        // (start, end): the later block; without an end, start against its parent.
        "debug_getModifiedAccountsByNumber" => {
            let end = list.and_then(|l| l.get(1));
            match (first().and_then(number), end.map(number)) {
                (Some(start), None) => Settles::AtHeight(start),
                (Some(start), Some(Some(end))) => Settles::AtHeight(start.max(end)),
                _ => Settles::Never,
            }
        }
        "eth_getTransactionByHash" | "eth_getTransactionReceipt" | "trace_get" => {
            match serde_json::from_slice::<Mined>(result) {
                Ok(Mined {
                    block_number: Some(value),
                }) => Settles::at(number(&value)),
                _ => Settles::Never,
            }
        }
        // Every trace names its block; they are all of one transaction.
        "trace_transaction" => match serde_json::from_slice::<Vec<Mined>>(result) {
            Ok(traces) if !traces.is_empty() => Settles::at(
                traces
                    .iter()
                    .map(|t| t.block_number.as_ref().and_then(number))
                    .try_fold(0, |highest: u64, n| n.map(|n| highest.max(n))),
            ),
            _ => Settles::Never,
        },
        // The raw signed transaction: its hash is the hash of these bytes.
        "debug_getRawTransaction" => match serde_json::from_slice::<String>(result) {
            Ok(raw) if raw.len() > 2 && raw.starts_with("0x") => Settles::Now,
            _ => Settles::Never,
        },
        _ => Settles::Never,
    }
}

/// Methods [`settles`] has a rule for (kept equal to the `DEEP` entries by a test).
#[cfg(test)]
pub(crate) const SETTLING: &[&str] = &[
    "eth_getBlockByNumber",
    "eth_getBlockReceipts",
    "eth_getBlockTransactionCountByNumber",
    "eth_getHeaderByNumber",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getUncleByBlockNumberAndIndex",
    "eth_getUncleCountByBlockNumber",
    "debug_dumpBlock",
    "debug_getRawBlock",
    "debug_getRawHeader",
    "debug_getRawReceipts",
    "debug_printBlock",
    "debug_traceBlockByNumber",
    "trace_block",
    "trace_replayBlockTransactions",
    "debug_getModifiedAccountsByNumber",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "trace_get",
    "trace_transaction",
    "debug_getRawTransaction",
];

/// The block an answer about a transaction belongs to (`null` while pending).
#[derive(serde::Deserialize)]
struct Mined {
    #[serde(rename = "blockNumber")]
    block_number: Option<Value>,
}

/// A block named by number (settles when deep), by hash (settles now), or by
/// tag (never: it moves).
fn block_ref(value: &Value) -> Settles {
    match value {
        Value::String(text) if is_hash(text) => Settles::Now,
        Value::Object(map) => match (map.get("blockHash"), map.get("blockNumber")) {
            (Some(Value::String(hash)), None) if is_hash(hash) => Settles::Now,
            (None, Some(n)) => Settles::at(number(n)),
            _ => Settles::Never,
        },
        other => Settles::at(number(other)),
    }
}

/// An explicit block number: a hex quantity (`"0x10"`) or a JSON integer.
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => {
            let digits = text.strip_prefix("0x")?;
            // from_str_radix would take a sign; quantities have none.
            if digits.is_empty()
                || digits.len() > 16
                || !digits.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return None;
            }
            u64::from_str_radix(digits, 16).ok()
        }
        _ => None,
    }
}

/// A 32-byte hash as `0x` and 64 hex digits.
fn is_hash(text: &str) -> bool {
    text.strip_prefix("0x")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The hash of the block at `height` on the node's canonical chain.
pub(crate) async fn block_hash_at(
    rpc: &RpcClient,
    ep: &Endpoint,
    height: u64,
) -> Result<String, ChainError> {
    let block = rpc
        .call(
            ep,
            PATH,
            "eth_getBlockByNumber",
            json!([format!("{height:#x}"), false]),
        )
        .await?;
    parse_block(&block)
        .map(|(_, hash, _)| hash)
        .map_err(|e| field::locate(e, &ep.url))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use chainfleet_spec::{Chain, Client};

    use super::*;

    fn settle_with(method: &str, params: &str, result: &str) -> Settles {
        crate::Adapter::for_chain(Chain::Ethereum).settles(method, Some(params), result.as_bytes())
    }

    fn settle(method: &str, params: &str) -> Settles {
        settle_with(method, params, r#"{"number":"0x10"}"#)
    }

    const HASH: &str = "0x88e96d4537bea4d9c05d12549907b32561d3bf31f45aae734cdc119f13406cb6";

    #[test]
    fn by_number_settles_at_an_explicit_number_and_tags_never() {
        assert_eq!(
            settle("eth_getBlockByNumber", r#"["0x10",false]"#),
            Settles::AtHeight(16)
        );
        assert_eq!(
            settle("eth_getBlockByNumber", r#"["0x0",true]"#),
            Settles::AtHeight(0)
        );
        assert_eq!(
            settle("eth_getBlockByNumber", "[16,false]"),
            Settles::AtHeight(16)
        );
        assert_eq!(
            settle("eth_getBlockByNumber", r#"["0xffffffffffffffff",false]"#),
            Settles::AtHeight(u64::MAX)
        );
        for bad in [
            r#"["latest",false]"#,
            r#"["pending",false]"#,
            r#"["safe",false]"#,
            r#"["finalized",false]"#,
            r#"["earliest",false]"#,
            r#"["0x",false]"#,
            r#"["0x+1",false]"#,
            r#"["0x-1",false]"#,
            r#"["0xg",false]"#,
            r#"["10",false]"#,
            r#"["0x10000000000000000",false]"#,
            "[-1,false]",
            "[1.5,false]",
            "[null,false]",
            "[]",
            r#"{"block":"0x10"}"#,
            r#""0x10""#,
            "not json",
        ] {
            assert_eq!(settle("eth_getBlockByNumber", bad), Settles::Never, "{bad}");
        }
        let adapter = crate::Adapter::for_chain(Chain::Ethereum);
        assert_eq!(
            adapter.settles("eth_getBlockByNumber", None, b"{}"),
            Settles::Never
        );
        assert_eq!(
            adapter.settles("eth_getBlockByNumber", Some(r#"["0x10",false]"#), b"null"),
            Settles::Never
        );
    }

    #[test]
    fn block_hashes_settle_now_and_eip1898_objects_are_read() {
        assert_eq!(
            settle("eth_getBlockReceipts", &format!(r#"["{HASH}"]"#)),
            Settles::Now
        );
        assert_eq!(
            settle(
                "eth_getBlockReceipts",
                &format!(r#"[{{"blockHash":"{HASH}"}}]"#)
            ),
            Settles::Now
        );
        assert_eq!(
            settle("eth_getBlockReceipts", r#"[{"blockNumber":"0x5"}]"#),
            Settles::AtHeight(5)
        );
        assert_eq!(
            settle("eth_getBlockReceipts", r#"[{"blockNumber":"latest"}]"#),
            Settles::Never
        );
        assert_eq!(
            settle(
                "eth_getBlockReceipts",
                &format!(r#"[{{"blockNumber":"0x5","blockHash":"{HASH}"}}]"#)
            ),
            Settles::Never
        );
        assert_eq!(
            settle("debug_getModifiedAccountsByNumber", "[5,9]"),
            Settles::AtHeight(9)
        );
        assert_eq!(
            settle("debug_getModifiedAccountsByNumber", "[5]"),
            Settles::AtHeight(5)
        );
        assert_eq!(
            settle("debug_getModifiedAccountsByNumber", r#"[5,"latest"]"#),
            Settles::Never
        );
    }

    #[test]
    fn transactions_settle_at_their_block_and_pending_ones_never() {
        let tx = format!(r#"["{HASH}"]"#);
        assert_eq!(
            settle_with(
                "eth_getTransactionByHash",
                &tx,
                r#"{"hash":"0x1","blockNumber":"0x7"}"#
            ),
            Settles::AtHeight(7)
        );
        assert_eq!(
            settle_with(
                "eth_getTransactionReceipt",
                &tx,
                r#"{"blockNumber":"0x1f","logs":[]}"#
            ),
            Settles::AtHeight(31)
        );
        for pending in [
            r#"{"hash":"0x1","blockNumber":null}"#,
            r#"{"hash":"0x1"}"#,
            "null",
            "[]",
            r#""0x7""#,
            r#"{"blockNumber":"0xzz"}"#,
            r#"{"blockNumber":"0x1","blockNumber":"0x2"}"#,
            "not json",
        ] {
            assert_eq!(
                settle_with("eth_getTransactionByHash", &tx, pending),
                Settles::Never,
                "{pending}"
            );
        }
        assert_eq!(
            settle_with(
                "trace_transaction",
                &tx,
                r#"[{"blockNumber":7},{"blockNumber":7}]"#
            ),
            Settles::AtHeight(7)
        );
        assert_eq!(settle_with("trace_transaction", &tx, "[]"), Settles::Never);
        assert_eq!(
            settle_with(
                "trace_transaction",
                &tx,
                r#"[{"blockNumber":7},{"blockNumber":null}]"#
            ),
            Settles::Never
        );
        assert_eq!(
            settle_with("debug_getRawTransaction", &tx, r#""0x02f8""#),
            Settles::Now
        );
        assert_eq!(
            settle_with("debug_getRawTransaction", &tx, r#""0x""#),
            Settles::Never
        );
        assert_eq!(
            settle_with("debug_traceTransaction", &tx, "{}"),
            Settles::Never
        );
    }

    fn layout(binary: &str, network: Network) -> NodeLayout {
        NodeLayout {
            name: "eth-0".into(),
            chain: Chain::Ethereum,
            network,
            role: Role::Full,
            client: Client {
                binary: Some(binary.into()),
                version: None,
                args: vec!["--extra".into()],
                config: BTreeMap::new(),
            },
            data_dir: PathBuf::from("/data/eth-0"),
            rpc_port: 8545,
            p2p_port: 30303,
            rpc_user: String::new(),
            rpc_password: String::new(),
            peer_p2p_ports: vec![],
        }
    }

    #[test]
    fn flavor_is_read_from_the_file_name() {
        assert_eq!(flavor("anvil"), Flavor::Anvil);
        assert_eq!(flavor("/work/.tools/bin/anvil"), Flavor::Anvil);
        assert_eq!(flavor("/usr/bin/geth"), Flavor::Geth);
        assert_eq!(flavor("reth"), Flavor::Reth);
        assert_eq!(flavor("erigon"), Flavor::Other);
        assert_eq!(flavor("anvil-old"), Flavor::Other);
    }

    #[test]
    fn anvil_launch_has_loopback_port_state_and_chain_id() {
        let spec = launch(&layout("/x/anvil", Network::Devnet), "geth");
        assert_eq!(spec.program, "/x/anvil");
        assert_eq!(spec.config_file, None);
        assert_eq!(
            spec.args,
            [
                "--host",
                "127.0.0.1",
                "--port",
                "8545",
                "--state",
                "/data/eth-0/state.json",
                "--chain-id",
                "31337",
                "--extra"
            ]
        );
        assert!(!spec.args.iter().any(|a| a.contains("block-time")));
    }

    #[test]
    fn config_entries_replace_flags() {
        let mut l = layout("anvil", Network::Devnet);
        l.client.config.insert("chain-id".into(), "999".into());
        l.client.config.insert("no-mining".into(), String::new());
        let spec = launch(&l, "geth");
        let joined = spec.args.join(" ");
        assert!(joined.contains("--chain-id 999"), "{joined}");
        assert!(!joined.contains("31337"), "{joined}");
        assert!(joined.contains("--no-mining --extra"), "{joined}");
    }

    #[test]
    fn geth_and_reth_launches() {
        let geth = launch(&layout("geth", Network::Devnet), "geth")
            .args
            .join(" ");
        for part in [
            "--datadir /data/eth-0",
            "--http ",
            "--http.addr 127.0.0.1",
            "--http.port 8545",
            "--ws --ws.addr 127.0.0.1 --ws.port 8545",
            "--port 30303",
            "--dev",
        ] {
            assert!(geth.contains(part), "{part} missing: {geth}");
        }
        let mut archive = layout("geth", Network::Testnet);
        archive.role = Role::Archive;
        let geth = launch(&archive, "geth").args.join(" ");
        assert!(
            geth.contains("--sepolia") && geth.contains("--gcmode archive"),
            "{geth}"
        );
        let reth = launch(&layout("reth", Network::Testnet), "geth").args;
        assert_eq!(reth.first().map(String::as_str), Some("node"));
        assert!(reth.join(" ").contains("--chain sepolia"));
    }

    fn block() -> Value {
        json!({
            "number": "0x1b4",
            "hash": "0x06e59411febd2214c7a9ef45a87bae697883aa41906760ef886346fedb37836e",
            "timestamp": "0x6b025ed6"
        })
    }

    fn rpc_error(method: &str) -> Result<Value, ChainError> {
        Err(ChainError::Rpc {
            method: method.into(),
            code: -32601,
            message: "Method not found".into(),
        })
    }

    #[test]
    fn parse_status_tolerates_missing_optional_methods() {
        // anvil 1.7 answers net_peerCount with -32601.
        let answers = vec![
            Ok(block()),
            rpc_error("net_peerCount"),
            Ok(json!(false)),
            Ok(json!("anvil/v1.7.1")),
        ];
        let status = parse_status(answers).expect("valid");
        assert_eq!(status.height, 436);
        assert_eq!(status.head_time, Some(0x6b025ed6));
        assert_eq!(status.peers, 0);
        assert!(!status.syncing);
        assert_eq!(status.client_version, "anvil/v1.7.1");

        let answers = vec![
            Ok(block()),
            Ok(json!("0x19")),
            Ok(json!({"startingBlock": "0x0", "currentBlock": "0x1", "highestBlock": "0x9"})),
            rpc_error("web3_clientVersion"),
        ];
        let status = parse_status(answers).expect("valid");
        assert_eq!(status.peers, 25);
        assert!(status.syncing);
        assert_eq!(status.client_version, "");
    }

    #[test]
    fn hostile_answers_are_errors_not_panics() {
        let good_rest = || vec![Ok(json!("0x1")), Ok(json!(false)), Ok(json!("geth"))];
        let bad_blocks = [
            json!(null),
            json!("<html>"),
            json!([]),
            json!({"number": "0x", "hash": "0x", "timestamp": "0x1"}),
            json!({"number": "0x-1", "hash": block()["hash"], "timestamp": "0x1"}),
            json!({"number": "0x+1", "hash": block()["hash"], "timestamp": "0x1"}),
            json!({"number": "0x1ffffffffffffffffffff", "hash": block()["hash"], "timestamp": "0x1"}),
            json!({"number": 5, "hash": block()["hash"], "timestamp": "0x1"}),
            json!({"number": "0x1", "hash": "0x1234", "timestamp": "0x1"}),
            json!({"number": "0x1", "hash": block()["hash"]}),
        ];
        for bad in bad_blocks {
            let mut answers = vec![Ok(bad.clone())];
            answers.extend(good_rest());
            assert!(parse_status(answers).is_err(), "accepted block {bad}");
        }
        let bad_rest = [
            [Ok(json!("0x100000000")), Ok(json!(false)), Ok(json!("x"))],
            [Ok(json!(3)), Ok(json!(false)), Ok(json!("x"))],
            [Ok(json!("0x1")), Ok(json!("yes")), Ok(json!("x"))],
            [Ok(json!("0x1")), Ok(json!(false)), Ok(json!({"name": "x"}))],
        ];
        for rest in bad_rest {
            let mut answers = vec![Ok(block())];
            answers.extend(rest);
            assert!(parse_status(answers).is_err());
        }
        assert!(parse_status(vec![Ok(block())]).is_err(), "short batch");
        assert!(parse_status(vec![]).is_err(), "empty batch");
        let missing_block = vec![
            rpc_error("eth_getBlockByNumber"),
            Ok(json!("0x1")),
            Ok(json!(false)),
            Ok(json!("x")),
        ];
        assert!(parse_status(missing_block).is_err());
    }
}
