//! Bitcoin family: Bitcoin Core and its forks (Litecoin, Zcash, Dash, Dogecoin).
//!
//! Tested against Debian's `litecoind` 0.21 in regtest. The other clients
//! share the RPC; their config quirks are handled by [`Dialect`].

use chainfleet_spec::{Chain, Network, Role};
use serde_json::{json, Value};

use crate::catalog::{
    method, param, Cacheability, Cacheability::*, MethodClass::*, MethodInfo, Settles,
};
use crate::rpc::field;
use crate::{ChainError, Endpoint, LaunchSpec, NodeLayout, ProbeStatus, ProducedBlock, RpcClient};

/// JSON-RPC path of bitcoind-style nodes.
const PATH: &str = "/";

/// `RPC_INVALID_ADDRESS_OR_KEY`: the node rejected an address.
const INVALID_ADDRESS: i64 = -5;

/// Which config dialect a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// Bitcoin Core 0.17+ and forks of it: `[regtest]` sections and `-nodebuglogfile`.
    Sections,
    /// Forks older than 0.17 (zcashd, dogecoind 1.14): a flat file. They would
    /// read `[regtest]` as a `regtest.` prefix and silently drop the settings.
    Flat,
}

impl Dialect {
    fn of(binary_name: &str) -> Self {
        match binary_name {
            "zcashd" | "dogecoind" => Dialect::Flat,
            _ => Dialect::Sections,
        }
    }
}

/// The config file name a client would use itself; any name works with `-conf`.
fn conf_name(binary_name: &str) -> &'static str {
    match binary_name {
        "litecoind" => "litecoin.conf",
        "bitcoind" => "bitcoin.conf",
        "zcashd" => "zcash.conf",
        "dashd" => "dash.conf",
        "dogecoind" => "dogecoin.conf",
        _ => "node.conf",
    }
}

/// The network selector line and the section name of a network.
fn network_selector(network: Network) -> (&'static str, &'static str) {
    match network {
        Network::Mainnet => ("", "main"),
        Network::Testnet => ("testnet=1\n", "test"),
        Network::Regtest | Network::Devnet => ("regtest=1\n", "regtest"),
    }
}

/// Render the conf file and command line of a node.
pub(crate) fn launch(layout: &NodeLayout, default_binary: &str) -> LaunchSpec {
    let program = layout
        .client
        .binary
        .clone()
        .unwrap_or_else(|| default_binary.to_string());
    let name = crate::binary_name(&program);
    let dialect = Dialect::of(name);
    let conf_path = layout.data_dir.join(conf_name(name));

    let mut base: Vec<(&str, String)> = vec![
        ("server", "1".into()),
        ("rpcuser", layout.rpc_user.clone()),
        ("rpcpassword", layout.rpc_password.clone()),
        ("rpcport", layout.rpc_port.to_string()),
        ("rpcbind", "127.0.0.1".into()),
        ("rpcallowip", "127.0.0.1".into()),
        ("port", layout.p2p_port.to_string()),
        ("bind", "127.0.0.1".into()),
        ("listen", "1".into()),
    ];
    if layout.network.is_local() {
        // Lets devnet wallets send without fee estimates; never guessed on real money.
        base.push(("fallbackfee", "0.0002".into()));
        base.push(("dnsseed", "0".into()));
        if layout.chain == chainfleet_spec::Chain::Litecoin {
            // Litecoin's regtest activates MWEB at height 432, after which plain
            // `generatetodescriptor` blocks are invalid (bad-txns-vin-empty);
            // a start time in the far future keeps the deployment undefined.
            base.push(("vbparams", "mweb:9999999999:99999999999".into()));
        }
    }
    if layout.role == Role::Archive {
        base.push(("txindex", "1".into()));
    }
    for port in &layout.peer_p2p_ports {
        base.push(("addnode", format!("127.0.0.1:{port}")));
    }
    let settings = crate::render_config_lines(&base, &layout.client.config);
    let (selector, section) = network_selector(layout.network);
    let contents = match dialect {
        Dialect::Sections => format!("{selector}[{section}]\n{settings}"),
        Dialect::Flat => format!("{selector}{settings}"),
    };

    let mut args = vec![
        format!("-conf={}", conf_path.display()),
        format!("-datadir={}", layout.data_dir.display()),
        "-printtoconsole=1".to_string(),
    ];
    if dialect == Dialect::Sections {
        // The runtime captures stdout; a second copy in debug.log only fills the disk.
        args.push("-nodebuglogfile".into());
    }
    args.extend(layout.client.args.iter().cloned());
    LaunchSpec {
        program,
        args,
        config_file: Some((conf_path, contents)),
    }
}

/// Ask the node for height, best hash, head time, peers, sync state and version.
pub(crate) async fn probe(rpc: &RpcClient, ep: &Endpoint) -> Result<ProbeStatus, ChainError> {
    let calls = [
        ("getblockchaininfo", json!([])),
        ("getnetworkinfo", json!([])),
    ];
    let answers = rpc.batch(ep, PATH, &calls).await?;
    let [chain_info, net_info] = answers.as_slice() else {
        return Err(ChainError::BadResponse {
            url: ep.url.clone(),
            detail: "batch answer has the wrong length".into(),
        });
    };
    let mut status = parse_status(chain_info, net_info).map_err(|e| field::locate(e, &ep.url))?;
    let header = rpc
        .call(ep, PATH, "getblockheader", json!([status.best_hash, true]))
        .await?;
    status.head_time = Some(parse_header_time(&header).map_err(|e| field::locate(e, &ep.url))?);
    Ok(status)
}

/// Status from `getblockchaininfo` and `getnetworkinfo` (head time is filled in later).
///
/// Sync rule: outside regtest, the node's own `initialblockdownload`. On
/// regtest that flag stays true until a block newer than a day exists (a fresh
/// devnet is "in IBD" forever), so there a node is syncing only while it has
/// headers it has not yet downloaded blocks for.
pub(crate) fn parse_status(
    chain_info: &Value,
    net_info: &Value,
) -> Result<ProbeStatus, ChainError> {
    let what = "getblockchaininfo";
    let height = field::u64_of(chain_info, what, "blocks")?;
    let best_hash = field::hash(
        chain_info.get("bestblockhash").unwrap_or(&Value::Null),
        "getblockchaininfo.bestblockhash",
        "",
        64,
    )?;
    let chain = field::str_of(chain_info, what, "chain")?;
    let syncing = if chain == "regtest" {
        field::u64_of(chain_info, what, "headers")? > height
    } else {
        chain_info
            .get("initialblockdownload")
            .and_then(Value::as_bool)
            .ok_or_else(|| ChainError::BadResponse {
                url: String::new(),
                detail: format!("{what}: field `initialblockdownload` is missing or not a boolean"),
            })?
    };
    let what = "getnetworkinfo";
    let peers = field::count_u32(field::u64_of(net_info, what, "connections")?, what)?;
    let client_version = field::text(field::str_of(net_info, what, "subversion")?);
    Ok(ProbeStatus {
        height,
        best_hash,
        head_time: None,
        peers,
        syncing,
        client_version,
    })
}

/// The block time of a `getblockheader` answer.
pub(crate) fn parse_header_time(header: &Value) -> Result<u64, ChainError> {
    field::u64_of(header, "getblockheader", "time")
}

/// The default address a devnet block pays on this chain, if the chain has one.
///
/// All are the chain's regtest address of the script `OP_TRUE` (anyone can
/// spend), so devnet coins stay usable without a wallet:
/// - Litecoin: P2WSH(OP_TRUE) from `litecoin-cli -regtest decodescript 51`
///   (litecoind 0.21.2), checked with `validateaddress` and `generatetoaddress`.
/// - Bitcoin: the same script under hrp `bcrt`; Bitcoin Core's functional tests
///   use this exact address (`ADDRESS_BCRT1_P2WSH_OP_TRUE`).
/// - Dash, Dogecoin (no segwit): base58 P2SH(OP_TRUE) with their regtest script
///   prefixes 19 and 196, computed by hand (not checked against those daemons).
/// - Zcash: none; zcashd has no `generatetoaddress`, so `generate` is used.
pub(crate) fn default_reward_address(chain: Chain) -> Option<&'static str> {
    match chain {
        Chain::Litecoin => Some("rltc1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqc6h8ge"),
        Chain::Bitcoin => Some("bcrt1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqseac85"),
        Chain::Dash => Some("8zJctvfrzGZ5s1zQ3kagwyW1DsPYSQ4V2P"),
        Chain::Dogecoin => Some("2ND8PB9RrfCaAcjfjP1Y6nAgFd9zWHYX4DN"),
        _ => None,
    }
}

/// Mine one block on a regtest node, paying `reward_address` or the chain's default.
///
/// If the node rejects the *default* address (a fork with other prefixes),
/// the block pays `raw(51)` (OP_TRUE) through `generatetodescriptor`. An
/// address the operator gave is never replaced: its rejection is returned.
pub(crate) async fn produce(
    rpc: &RpcClient,
    ep: &Endpoint,
    chain: Chain,
    reward_address: Option<&str>,
) -> Result<ProducedBlock, ChainError> {
    let hashes = match (reward_address, default_reward_address(chain)) {
        (Some(address), _) => {
            rpc.call(ep, PATH, "generatetoaddress", json!([1, address]))
                .await?
        }
        (None, Some(address)) => {
            match rpc
                .call(ep, PATH, "generatetoaddress", json!([1, address]))
                .await
            {
                Err(ChainError::Rpc {
                    code: INVALID_ADDRESS,
                    ..
                }) => {
                    tracing::debug!(%chain, "default reward address rejected; mining to raw(51)");
                    rpc.call(ep, PATH, "generatetodescriptor", json!([1, "raw(51)"]))
                        .await?
                }
                other => other?,
            }
        }
        (None, None) => rpc.call(ep, PATH, "generate", json!([1])).await?,
    };
    produced(rpc, ep, &hashes).await
}

/// The block a `generate*` call answered with, and its height.
async fn produced(
    rpc: &RpcClient,
    ep: &Endpoint,
    hashes: &Value,
) -> Result<ProducedBlock, ChainError> {
    let hash = parse_produced(hashes).map_err(|e| field::locate(e, &ep.url))?;
    let header = rpc
        .call(ep, PATH, "getblockheader", json!([hash, true]))
        .await?;
    Ok(ProducedBlock {
        height: header.get("height").and_then(Value::as_u64),
        hash,
    })
}

/// The coinbase script that carries a producer epoch: `<8-byte LE epoch> OP_DROP OP_TRUE`.
/// Anyone reading the chain can decode which epoch produced each block.
pub(crate) fn epoch_script(epoch: u64) -> String {
    let bytes: String = epoch
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("08{bytes}7551")
}

/// The epoch in a coinbase output script written by [`epoch_script`], if it is one.
pub(crate) fn parse_epoch_script(script_hex: &str) -> Option<u64> {
    let body = script_hex.strip_prefix("08")?.strip_suffix("7551")?;
    if body.len() != 16 {
        return None;
    }
    let mut bytes = [0u8; 8];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(body.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(u64::from_le_bytes(bytes))
}

/// Mine one block paying the epoch-carrying script.
pub(crate) async fn produce_tagged(
    rpc: &RpcClient,
    ep: &Endpoint,
    epoch: u64,
) -> Result<ProducedBlock, ChainError> {
    let descriptor = format!("raw({})", epoch_script(epoch));
    let hashes = rpc
        .call(ep, PATH, "generatetodescriptor", json!([1, descriptor]))
        .await?;
    produced(rpc, ep, &hashes).await
}

/// The producer epoch of the block at `height`, if its coinbase carries one.
pub(crate) async fn block_epoch(
    rpc: &RpcClient,
    ep: &Endpoint,
    height: u64,
) -> Result<Option<u64>, ChainError> {
    let hash = rpc.call(ep, PATH, "getblockhash", json!([height])).await?;
    let block = rpc.call(ep, PATH, "getblock", json!([hash, 2])).await?;
    let script = block
        .get("tx")
        .and_then(|txs| txs.get(0))
        .and_then(|coinbase| coinbase.get("vout"))
        .and_then(|outs| outs.get(0))
        .and_then(|out| out.get("scriptPubKey"))
        .and_then(|spk| spk.get("hex"))
        .and_then(Value::as_str);
    Ok(script.and_then(parse_epoch_script))
}

/// The one block hash of a `generate*` answer.
pub(crate) fn parse_produced(hashes: &Value) -> Result<String, ChainError> {
    match hashes.as_array().map(Vec::as_slice) {
        Some([hash]) => field::hash(hash, "generatetoaddress", "", 64),
        _ => Err(ChainError::BadResponse {
            url: String::new(),
            detail: format!(
                "generatetoaddress: expected a list of one block hash, got {}",
                field::short(hashes)
            ),
        }),
    }
}

/// Ask the node to shut down cleanly.
pub(crate) async fn request_stop(rpc: &RpcClient, ep: &Endpoint) -> Result<(), ChainError> {
    rpc.call(ep, PATH, "stop", json!([])).await.map(|_| ())
}

/// Blocks this deep are treated as final (the usual six confirmations).
const DEEP: Cacheability = ImmutableWhenDeep(6);

/// Bitcoin Core's RPC methods (0.21 to 27) plus `generate` (zcashd, old forks).
///
/// `DEEP` answers settle as [`settles`] reads them: `getblockhash` and
/// `getblockstats` of an explicit height once that block is six deep; raw
/// (non-verbose) blocks, headers and transactions named by a block hash at
/// once, since they are content-addressed. Verbose block, header and
/// transaction answers carry `confirmations` and `nextblockhash`, which grow
/// with the chain, so they are never cached.
pub(crate) const CATALOG: &[MethodInfo] = &[
    // Blockchain.
    method("getbestblockhash", Read, Never),
    method("getblock", Read, DEEP),
    method("getblockchaininfo", Read, Never),
    method("getblockcount", Read, Never),
    method("getblockfilter", Read, DEEP),
    method("getblockhash", Read, DEEP),
    method("getblockheader", Read, DEEP),
    method("getblockstats", Read, DEEP),
    method("getchaintips", Read, Never),
    method("getchaintxstats", Read, Never),
    method("getdeploymentinfo", Read, Never),
    method("getdifficulty", Read, Never),
    method("getmempoolancestors", Read, Never),
    method("getmempooldescendants", Read, Never),
    method("getmempoolentry", Read, Never),
    method("getmempoolinfo", Read, Never),
    method("getrawmempool", Read, Never),
    method("gettxout", Read, Never),
    method("gettxoutproof", Read, DEEP),
    method("gettxoutsetinfo", Read, Never),
    // Answers only while the proof's block is on the best chain, and names no height.
    method("verifytxoutproof", Read, Never),
    method("scantxoutset", Read, Never),
    method("getindexinfo", Read, Never),
    method("preciousblock", Admin, Never),
    method("pruneblockchain", Admin, Never),
    method("savemempool", Admin, Never),
    method("verifychain", Admin, Never),
    method("invalidateblock", Admin, Never),
    method("reconsiderblock", Admin, Never),
    // Control.
    method("getmemoryinfo", Admin, Never),
    method("getrpcinfo", Admin, Never),
    method("help", Read, Never),
    method("logging", Admin, Never),
    method("stop", Admin, Never),
    method("uptime", Admin, Never),
    method("setmocktime", Admin, Never),
    method("getzmqnotifications", Admin, Never),
    // Mining and block generation.
    method("generate", Mining, Never),
    method("generateblock", Mining, Never),
    method("generatetoaddress", Mining, Never),
    method("generatetodescriptor", Mining, Never),
    method("getblocktemplate", Mining, Never),
    method("getmininginfo", Read, Never),
    method("getnetworkhashps", Read, Never),
    method("prioritisetransaction", Mining, Never),
    method("submitblock", Mining, Never),
    method("submitheader", Mining, Never),
    // Network.
    method("addnode", Network, Never),
    method("clearbanned", Network, Never),
    method("disconnectnode", Network, Never),
    method("getaddednodeinfo", Network, Never),
    method("getconnectioncount", Read, Never),
    method("getnettotals", Network, Never),
    method("getnetworkinfo", Read, Never),
    method("getnodeaddresses", Network, Never),
    method("getpeerinfo", Network, Never),
    method("listbanned", Network, Never),
    method("ping", Network, Never),
    method("setban", Network, Never),
    method("setnetworkactive", Network, Never),
    // Raw transactions. Pure encoders/decoders never change their answer.
    method("analyzepsbt", Read, Never),
    method("combinepsbt", Read, Immutable),
    method("combinerawtransaction", Read, Never),
    method("converttopsbt", Read, Immutable),
    method("createpsbt", Read, Immutable),
    method("createrawtransaction", Read, Immutable),
    method("decodepsbt", Read, Immutable),
    method("decoderawtransaction", Read, Immutable),
    method("decodescript", Read, Immutable),
    method("finalizepsbt", Read, Immutable),
    method("getrawtransaction", Read, DEEP),
    method("joinpsbts", Read, Immutable),
    method("sendrawtransaction", Write, Never),
    method("testmempoolaccept", Read, Never),
    method("utxoupdatepsbt", Read, Never),
    // Takes private keys in the request: wallet class, never cached.
    method("signrawtransactionwithkey", Wallet, Never),
    // Util.
    method("createmultisig", Read, Immutable),
    method("deriveaddresses", Read, Immutable),
    method("estimatesmartfee", Read, Never),
    method("getdescriptorinfo", Read, Immutable),
    method("signmessagewithprivkey", Wallet, Never),
    method("validateaddress", Read, Immutable),
    method("verifymessage", Read, Immutable),
    // Wallet.
    method("abandontransaction", Wallet, Never),
    method("abortrescan", Wallet, Never),
    method("addmultisigaddress", Wallet, Never),
    method("backupwallet", Wallet, Never),
    method("bumpfee", Wallet, Never),
    method("createwallet", Wallet, Never),
    method("dumpprivkey", Wallet, Never),
    method("dumpwallet", Wallet, Never),
    method("encryptwallet", Wallet, Never),
    method("getaddressesbylabel", Wallet, Never),
    method("getaddressinfo", Wallet, Never),
    method("getbalance", Wallet, Never),
    method("getbalances", Wallet, Never),
    method("getnewaddress", Wallet, Never),
    method("getrawchangeaddress", Wallet, Never),
    method("getreceivedbyaddress", Wallet, Never),
    method("getreceivedbylabel", Wallet, Never),
    method("gettransaction", Wallet, Never),
    method("getunconfirmedbalance", Wallet, Never),
    method("getwalletinfo", Wallet, Never),
    method("importaddress", Wallet, Never),
    method("importdescriptors", Wallet, Never),
    method("importmulti", Wallet, Never),
    method("importprivkey", Wallet, Never),
    method("importprunedfunds", Wallet, Never),
    method("importpubkey", Wallet, Never),
    method("importwallet", Wallet, Never),
    method("keypoolrefill", Wallet, Never),
    method("listaddressgroupings", Wallet, Never),
    method("listdescriptors", Wallet, Never),
    method("listlabels", Wallet, Never),
    method("listlockunspent", Wallet, Never),
    method("listreceivedbyaddress", Wallet, Never),
    method("listreceivedbylabel", Wallet, Never),
    method("listsinceblock", Wallet, Never),
    method("listtransactions", Wallet, Never),
    method("listunspent", Wallet, Never),
    method("listwalletdir", Wallet, Never),
    method("listwallets", Wallet, Never),
    method("loadwallet", Wallet, Never),
    method("lockunspent", Wallet, Never),
    method("psbtbumpfee", Wallet, Never),
    method("removeprunedfunds", Wallet, Never),
    method("rescanblockchain", Wallet, Never),
    method("send", Wallet, Never),
    method("sendmany", Wallet, Never),
    method("sendtoaddress", Wallet, Never),
    method("sethdseed", Wallet, Never),
    method("setlabel", Wallet, Never),
    method("settxfee", Wallet, Never),
    method("setwalletflag", Wallet, Never),
    method("signmessage", Wallet, Never),
    method("signrawtransactionwithwallet", Wallet, Never),
    method("unloadwallet", Wallet, Never),
    method("upgradewallet", Wallet, Never),
    method("walletcreatefundedpsbt", Wallet, Never),
    method("walletlock", Wallet, Never),
    method("walletpassphrase", Wallet, Never),
    method("walletpassphrasechange", Wallet, Never),
    method("walletprocesspsbt", Wallet, Never),
];

/// When the answer to a `DEEP` method settles (see [`CATALOG`]).
pub(crate) fn settles(method: &str, params: Option<&Value>, _result: &[u8]) -> Settles {
    let Some(params) = params else {
        return Settles::Never;
    };
    let arg = |index: usize, name: &str| param(params, index, name);
    match method {
        "getblockhash" => arg(0, "height").map_or(Settles::Never, height),
        "getblockstats" => match arg(0, "hash_or_height") {
            Some(Value::String(hash)) if is_hash(hash) => Settles::Now,
            Some(value) => height(value),
            None => Settles::Never,
        },
        // Raw (verbosity 0 or `false`) is content-addressed; the default
        // verbosity 1 and up add confirmations.
        "getblock" => raw_by_hash(arg(0, "blockhash"), is_raw(arg(1, "verbosity"), false)),
        "getblockheader" => raw_by_hash(
            arg(0, "blockhash"),
            matches!(arg(1, "verbose"), Some(Value::Bool(false))),
        ),
        // The filter and its header follow from the block and its ancestors.
        "getblockfilter" => raw_by_hash(arg(0, "blockhash"), true),
        // Without a block hash the proof is of wherever the transaction is now.
        "gettxoutproof" => raw_by_hash(arg(1, "blockhash"), true),
        // A transaction in a named block, raw: content-addressed. Without the
        // block, a mempool copy may differ in its witness from the mined one.
        "getrawtransaction" => raw_by_hash(arg(2, "blockhash"), is_raw(arg(1, "verbose"), true)),
        _ => Settles::Never,
    }
}

/// Methods [`settles`] has a rule for (kept equal to the `DEEP` entries by a test).
#[cfg(test)]
pub(crate) const SETTLING: &[&str] = &[
    "getblockhash",
    "getblockstats",
    "getblock",
    "getblockheader",
    "getblockfilter",
    "gettxoutproof",
    "getrawtransaction",
];

/// An explicit block height (a JSON integer; `as_u64` takes nothing else).
fn height(value: &Value) -> Settles {
    Settles::at(value.as_u64())
}

/// Whether a verbosity param asks for the raw answer (`default` when absent).
fn is_raw(verbosity: Option<&Value>, default: bool) -> bool {
    match verbosity {
        None => default,
        Some(Value::Bool(verbose)) => !verbose,
        Some(Value::Number(n)) => n.as_u64() == Some(0),
        Some(_) => false,
    }
}

/// `Now` for a raw answer about a well-formed block hash.
fn raw_by_hash(hash: Option<&Value>, raw: bool) -> Settles {
    match hash {
        Some(Value::String(hash)) if raw && is_hash(hash) => Settles::Now,
        _ => Settles::Never,
    }
}

/// A 32-byte hash in hex, as block hashes and txids are written.
fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The hash of the block at `height` on the node's best chain.
pub(crate) async fn block_hash_at(
    rpc: &RpcClient,
    ep: &Endpoint,
    height: u64,
) -> Result<String, ChainError> {
    let answer = rpc.call(ep, PATH, "getblockhash", json!([height])).await?;
    field::hash(&answer, "getblockhash", "", 64).map_err(|e| field::locate(e, &ep.url))
}

/// Mainnet block interval of a bitcoin-family chain.
pub(crate) fn block_interval_secs(chain: Chain) -> u64 {
    match chain {
        Chain::Litecoin | Chain::Dash => 150,
        Chain::Zcash => 75,
        Chain::Dogecoin => 60,
        _ => 600,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use chainfleet_spec::Client;

    use super::*;

    /// How `method` with raw `params` settles for a non-null answer.
    fn settle(method: &str, params: &str) -> Settles {
        crate::Adapter::for_chain(Chain::Litecoin).settles(method, Some(params), br#""x""#)
    }

    const HASH: &str = "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9";

    #[test]
    fn getblockhash_settles_at_an_explicit_height_only() {
        assert_eq!(settle("getblockhash", "[16]"), Settles::AtHeight(16));
        assert_eq!(
            settle("getblockhash", r#"{"height":16}"#),
            Settles::AtHeight(16)
        );
        for bad in [
            "[-1]",
            "[1.5]",
            r#"["16"]"#,
            r#"["latest"]"#,
            "[1e30]",
            "[18446744073709551616]",
            "[]",
            "{}",
            "[null]",
            "not json",
            "[16",
            "16",
            r#"{"height":1,"height":2}"#,
        ] {
            assert_eq!(settle("getblockhash", bad), Settles::Never, "{bad}");
        }
        let adapter = crate::Adapter::for_chain(Chain::Litecoin);
        assert_eq!(
            adapter.settles("getblockhash", None, b"\"x\""),
            Settles::Never
        );
        assert_eq!(
            adapter.settles("getblockhash", Some("[1]"), b"null"),
            Settles::Never
        );
    }

    #[test]
    fn raw_blocks_settle_now_and_verbose_ones_with_confirmations_never() {
        let with = |rest: &str| format!(r#"["{HASH}"{rest}]"#);
        assert_eq!(settle("getblock", &with(",0")), Settles::Now);
        assert_eq!(settle("getblock", &with(",false")), Settles::Now);
        assert_eq!(
            settle(
                "getblock",
                &format!(r#"{{"blockhash":"{HASH}","verbosity":0}}"#)
            ),
            Settles::Now
        );
        // The default verbosity (1) and above carry `confirmations`.
        for rest in ["", ",1", ",2", ",true", ",\"0\"", ",-0.5"] {
            assert_eq!(settle("getblock", &with(rest)), Settles::Never, "{rest}");
        }
        assert_eq!(settle("getblock", r#"["nothex",0]"#), Settles::Never);
        assert_eq!(settle("getblock", "[1,0]"), Settles::Never);
        assert_eq!(settle("getblockheader", &with(",false")), Settles::Now);
        assert_eq!(settle("getblockheader", &with("")), Settles::Never);
        assert_eq!(settle("getblockheader", &with(",true")), Settles::Never);
        assert_eq!(settle("getblockstats", &with("")), Settles::Now);
        assert_eq!(settle("getblockstats", "[100]"), Settles::AtHeight(100));
        assert_eq!(settle("getblockstats", r#"["latest"]"#), Settles::Never);
        assert_eq!(settle("getblockfilter", &with("")), Settles::Now);
    }

    #[test]
    fn transactions_settle_only_when_named_with_their_block_and_raw() {
        let tx = HASH;
        assert_eq!(
            settle("getrawtransaction", &format!(r#"["{tx}"]"#)),
            Settles::Never
        );
        assert_eq!(
            settle("getrawtransaction", &format!(r#"["{tx}",false,"{HASH}"]"#)),
            Settles::Now
        );
        assert_eq!(
            settle("getrawtransaction", &format!(r#"["{tx}",0,"{HASH}"]"#)),
            Settles::Now
        );
        assert_eq!(
            settle("getrawtransaction", &format!(r#"["{tx}",true,"{HASH}"]"#)),
            Settles::Never
        );
        assert_eq!(
            settle("gettxoutproof", &format!(r#"[["{tx}"]]"#)),
            Settles::Never
        );
        assert_eq!(
            settle("gettxoutproof", &format!(r#"[["{tx}"],"{HASH}"]"#)),
            Settles::Now
        );
        assert_eq!(settle("verifytxoutproof", r#"["00"]"#), Settles::Never);
        assert_eq!(settle("getblockcount", "[]"), Settles::Never);
        assert_eq!(settle("decoderawtransaction", r#"["00"]"#), Settles::Now);
    }

    fn layout(binary: Option<&str>, network: Network) -> NodeLayout {
        NodeLayout {
            name: "ltc-0".into(),
            chain: Chain::Litecoin,
            network,
            role: Role::Full,
            client: Client {
                binary: binary.map(str::to_string),
                version: None,
                args: vec!["-maxconnections=8".into()],
                config: BTreeMap::new(),
            },
            data_dir: PathBuf::from("/data/ltc-0"),
            rpc_port: 19443,
            p2p_port: 19444,
            rpc_user: "cf".into(),
            rpc_password: "secret".into(),
            peer_p2p_ports: vec![19454, 19464],
        }
    }

    fn conf(spec: &LaunchSpec) -> &str {
        spec.config_file
            .as_ref()
            .map(|(_, c)| c.as_str())
            .unwrap_or_default()
    }

    #[test]
    fn launch_renders_a_regtest_section_and_args() {
        let spec = launch(&layout(None, Network::Regtest), "litecoind");
        assert_eq!(spec.program, "litecoind");
        assert_eq!(
            spec.args,
            [
                "-conf=/data/ltc-0/litecoin.conf",
                "-datadir=/data/ltc-0",
                "-printtoconsole=1",
                "-nodebuglogfile",
                "-maxconnections=8"
            ]
        );
        let path = spec.config_file.as_ref().map(|(p, _)| p.clone());
        assert_eq!(path, Some(PathBuf::from("/data/ltc-0/litecoin.conf")));
        let text = conf(&spec);
        assert!(text.starts_with("regtest=1\n[regtest]\n"), "{text}");
        for line in [
            "server=1",
            "rpcuser=cf",
            "rpcpassword=secret",
            "rpcport=19443",
            "rpcbind=127.0.0.1",
            "rpcallowip=127.0.0.1",
            "port=19444",
            "bind=127.0.0.1",
            "listen=1",
            "fallbackfee=0.0002",
            "vbparams=mweb:9999999999:99999999999",
            "addnode=127.0.0.1:19454",
            "addnode=127.0.0.1:19464",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(!text.contains("txindex"), "{text}");
    }

    #[test]
    fn launch_sections_follow_the_network() {
        let main = launch(&layout(None, Network::Mainnet), "litecoind");
        assert!(conf(&main).starts_with("[main]\n"));
        assert!(!conf(&main).contains("fallbackfee"));
        let test = launch(&layout(None, Network::Testnet), "litecoind");
        assert!(conf(&test).starts_with("testnet=1\n[test]\n"));
        let dev = launch(&layout(None, Network::Devnet), "litecoind");
        assert!(conf(&dev).starts_with("regtest=1\n[regtest]\n"));
    }

    #[test]
    fn launch_archive_gets_txindex_and_overrides_win() {
        let mut l = layout(Some("/opt/bin/bitcoind"), Network::Regtest);
        l.role = Role::Archive;
        l.client.config.insert("rpcport".into(), "1234".into());
        l.client.config.insert("dbcache".into(), "300".into());
        let spec = launch(&l, "litecoind");
        assert_eq!(spec.program, "/opt/bin/bitcoind");
        assert!(spec
            .args
            .first()
            .is_some_and(|a| a.ends_with("/bitcoin.conf")));
        let text = conf(&spec);
        assert!(text.lines().any(|l| l == "txindex=1"), "{text}");
        assert!(text.lines().any(|l| l == "rpcport=1234"), "{text}");
        assert!(!text.lines().any(|l| l == "rpcport=19443"), "{text}");
        assert!(text.lines().any(|l| l == "dbcache=300"), "{text}");
    }

    #[test]
    fn launch_old_forks_get_a_flat_file() {
        let spec = launch(&layout(Some("zcashd"), Network::Regtest), "litecoind");
        assert!(!conf(&spec).contains('['), "{}", conf(&spec));
        assert!(conf(&spec).starts_with("regtest=1\n"));
        assert!(!spec.args.iter().any(|a| a == "-nodebuglogfile"));
        let spec = launch(&layout(Some("weird-coind"), Network::Regtest), "litecoind");
        assert!(spec.args.first().is_some_and(|a| a.ends_with("/node.conf")));
    }

    fn chain_info() -> Value {
        json!({
            "chain": "main", "blocks": 2500000, "headers": 2500000,
            "bestblockhash": "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9",
            "initialblockdownload": false, "verificationprogress": 0.9999
        })
    }

    fn net_info() -> Value {
        json!({"subversion": "/LitecoinCore:0.21.2.1/", "connections": 8})
    }

    #[test]
    fn parse_status_reads_a_real_shaped_answer() {
        let status = parse_status(&chain_info(), &net_info()).expect("valid answer");
        assert_eq!(status.height, 2_500_000);
        assert_eq!(status.peers, 8);
        assert!(!status.syncing);
        assert_eq!(status.client_version, "/LitecoinCore:0.21.2.1/");
    }

    #[test]
    fn regtest_sync_follows_headers_not_ibd() {
        let mut info = chain_info();
        info["chain"] = json!("regtest");
        info["initialblockdownload"] = json!(true);
        info["blocks"] = json!(0);
        info["headers"] = json!(0);
        assert!(!parse_status(&info, &net_info()).expect("valid").syncing);
        info["headers"] = json!(5);
        assert!(parse_status(&info, &net_info()).expect("valid").syncing);
        let mut main = chain_info();
        main["initialblockdownload"] = json!(true);
        assert!(parse_status(&main, &net_info()).expect("valid").syncing);
    }

    #[test]
    fn hostile_answers_are_errors_not_panics() {
        let hostile = [
            json!("<html>502 Bad Gateway</html>"),
            json!(null),
            json!([]),
            json!({}),
            json!({"chain": "main", "blocks": -1, "bestblockhash": "00", "initialblockdownload": false}),
            json!({"chain": "main", "blocks": 1e300, "bestblockhash": "00", "initialblockdownload": false}),
            json!({"chain": "main", "blocks": "12", "bestblockhash": "00", "initialblockdownload": false}),
            json!({"chain": "main", "blocks": 1, "bestblockhash": "zz".repeat(32), "initialblockdownload": false}),
            json!({"chain": "main", "blocks": 1, "bestblockhash": "00".repeat(32), "initialblockdownload": "no"}),
            json!({"chain": 7, "blocks": 1, "bestblockhash": "00".repeat(32), "initialblockdownload": false}),
            json!({"chain": "regtest", "blocks": 1, "bestblockhash": "00".repeat(32)}),
        ];
        for info in &hostile {
            assert!(parse_status(info, &net_info()).is_err(), "accepted {info}");
        }
        let bad_net = [
            json!({"subversion": "/x/", "connections": 99999999999u64}),
            json!({"subversion": "/x/", "connections": -3}),
            json!({"subversion": 5, "connections": 1}),
            json!({"connections": 1}),
            json!("nope"),
        ];
        for net in &bad_net {
            assert!(parse_status(&chain_info(), net).is_err(), "accepted {net}");
        }
        let long = json!({"subversion": "x".repeat(100_000), "connections": 1});
        let status = parse_status(&chain_info(), &long).expect("long names are cut, not refused");
        assert_eq!(status.client_version.len(), field::MAX_TEXT_CHARS);
        for header in [
            json!({"time": -5}),
            json!({"time": "now"}),
            json!([]),
            json!({"time": 1.5}),
        ] {
            assert!(parse_header_time(&header).is_err(), "accepted {header}");
        }
        assert_eq!(
            parse_header_time(&json!({"time": 1296688602})).ok(),
            Some(1296688602)
        );
    }

    #[test]
    fn produced_answer_must_be_one_hash() {
        let good = "64".repeat(32);
        assert_eq!(parse_produced(&json!([good])).ok(), Some(good.clone()));
        for bad in [
            json!([]),
            json!([good, good]),
            json!(good),
            json!([1]),
            json!(["xyz"]),
        ] {
            assert!(parse_produced(&bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn default_addresses_match_their_chain() {
        let ltc = default_reward_address(Chain::Litecoin).unwrap_or_default();
        assert!(ltc.starts_with("rltc1q"));
        let btc = default_reward_address(Chain::Bitcoin).unwrap_or_default();
        assert!(btc.starts_with("bcrt1q"));
        // Same witness program (sha256 of OP_TRUE), different hrp and checksum.
        assert_eq!(ltc.get(6..58), btc.get(6..58));
        assert_eq!(default_reward_address(Chain::Zcash), None);
    }
}
