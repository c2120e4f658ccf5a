//! RPC method catalogs: what each method is for and whether its answer can change.

use serde::Serialize;

/// What a method does, for access policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodClass {
    /// Reads chain state.
    Read,
    /// Submits transactions or otherwise changes chain state.
    Write,
    /// Controls the node itself (stop, config, debug).
    Admin,
    /// Touches a wallet held by the node.
    Wallet,
    /// Mining and block production.
    Mining,
    /// Peer and network management.
    Network,
}

/// Whether a method's answer can be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cacheability {
    /// The answer may change at any time (e.g. depends on "latest").
    Never,
    /// The answer never changes once given (e.g. a block by hash).
    Immutable,
    /// The answer stops changing once the referenced block is this many
    /// blocks deep. Which block that is, if any, the family reads from the
    /// call and its answer ([`crate::Adapter::settles`]); param shapes that
    /// name no block by number (tags such as "latest") never settle.
    ImmutableWhenDeep(u32),
}

/// When one answer stops changing, as its family's rules read the call and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settles {
    /// It may still change (or the call is not understood): never cache it.
    Never,
    /// It can never change (e.g. content-addressed by a hash): cache it now.
    Now,
    /// It belongs to the block at this height: final once that block is deep enough.
    AtHeight(u64),
}

impl Settles {
    /// At `height` when there is one; otherwise the answer never settles.
    pub(crate) fn at(height: Option<u64>) -> Settles {
        height.map_or(Settles::Never, Settles::AtHeight)
    }

    /// Whether the answer is final when the best height is `best` and the
    /// method's catalog entry asks for `depth` blocks on top.
    pub fn is_final(self, best: Option<u64>, depth: u32) -> bool {
        match self {
            Settles::Never => false,
            Settles::Now => true,
            Settles::AtHeight(height) => match (best, height.checked_add(u64::from(depth))) {
                (Some(best), Some(needed)) => best >= needed,
                _ => false,
            },
        }
    }
}

/// Parsed call params, or `None` when they are missing, not JSON, or hold
/// an object with a repeated key (a node may read the other copy than we do).
pub(crate) fn parse_params(params: Option<&str>) -> Option<serde_json::Value> {
    let text = params?;
    serde_json::from_str::<NoRepeatedKeys>(text).ok()?;
    serde_json::from_str(text).ok()
}

/// Param `index` of a positional list, or `name` of a named object.
pub(crate) fn param<'a>(
    params: &'a serde_json::Value,
    index: usize,
    name: &str,
) -> Option<&'a serde_json::Value> {
    match params {
        serde_json::Value::Array(list) => list.get(index),
        serde_json::Value::Object(map) => map.get(name),
        _ => None,
    }
}

/// A raw JSON result that says nothing: `null` (not found, not yet there).
pub(crate) fn is_null(result: &[u8]) -> bool {
    result.trim_ascii() == b"null"
}

/// A non-negative JSON integer, or a decimal string of one (the way
/// CometBFT writes int64). Floats, signs and overflow are not heights.
pub(crate) fn plain_u64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) if !s.is_empty() && s.len() <= 20 => {
            if s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Validates that no JSON object anywhere repeats a key.
struct NoRepeatedKeys;

impl<'de> serde::Deserialize<'de> for NoRepeatedKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoRepeatedKeysVisitor)
    }
}

struct NoRepeatedKeysVisitor;

impl<'de> serde::de::Visitor<'de> for NoRepeatedKeysVisitor {
    type Value = NoRepeatedKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON without repeated object keys")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_unit<E>(self) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<NoRepeatedKeys, A::Error> {
        while seq.next_element::<NoRepeatedKeys>()?.is_some() {}
        Ok(NoRepeatedKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<NoRepeatedKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("repeated key"));
            }
            map.next_value::<NoRepeatedKeys>()?;
        }
        Ok(NoRepeatedKeys)
    }
}

/// One RPC method of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MethodInfo {
    /// Method name as called.
    pub name: &'static str,
    /// Its class.
    pub class: MethodClass,
    /// Whether its answer can be cached.
    pub cache: Cacheability,
}

/// Shorthand for catalog tables.
pub(crate) const fn method(
    name: &'static str,
    class: MethodClass,
    cache: Cacheability,
) -> MethodInfo {
    MethodInfo { name, class, cache }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chainfleet_spec::Chain;

    use super::*;
    use crate::Adapter;

    /// One chain per family.
    const CHAINS: [Chain; 5] = [
        Chain::Litecoin,
        Chain::Ethereum,
        Chain::Monero,
        Chain::Cosmos,
        Chain::Solana,
    ];

    #[test]
    fn catalogs_have_no_duplicate_or_blank_names() {
        for chain in CHAINS {
            let catalog = Adapter::for_chain(chain).catalog();
            let mut seen = HashSet::new();
            for info in catalog {
                assert!(
                    seen.insert(info.name),
                    "{chain}: `{}` is listed twice",
                    info.name
                );
                assert!(
                    !info.name.is_empty() && !info.name.contains(char::is_whitespace),
                    "{chain}: bad name {:?}",
                    info.name
                );
            }
        }
    }

    #[test]
    fn every_family_has_read_write_and_admin_methods() {
        for chain in CHAINS {
            let classes: HashSet<MethodClass> = Adapter::for_chain(chain)
                .catalog()
                .iter()
                .map(|m| m.class)
                .collect();
            for class in [MethodClass::Read, MethodClass::Write, MethodClass::Admin] {
                assert!(classes.contains(&class), "{chain} has no {class:?} method");
            }
        }
    }

    #[test]
    fn every_deep_method_has_a_settling_rule_and_no_other_has() {
        let families: [(Chain, &[&str]); 5] = [
            (Chain::Litecoin, crate::bitcoin::SETTLING),
            (Chain::Ethereum, crate::evm::SETTLING),
            (Chain::Monero, crate::monero::SETTLING),
            (Chain::Cosmos, crate::cometbft::SETTLING),
            (Chain::Solana, crate::solana::SETTLING),
        ];
        for (chain, rules) in families {
            let mut deep: Vec<&str> = Adapter::for_chain(chain)
                .catalog()
                .iter()
                .filter(|m| matches!(m.cache, Cacheability::ImmutableWhenDeep(_)))
                .map(|m| m.name)
                .collect();
            let mut rules = rules.to_vec();
            deep.sort_unstable();
            rules.sort_unstable();
            assert_eq!(
                deep, rules,
                "{chain}: DEEP entries and settling rules differ"
            );
        }
    }

    #[test]
    fn settled_answers_are_final_only_deep_enough() {
        assert!(Settles::Now.is_final(None, 6));
        assert!(!Settles::Never.is_final(Some(u64::MAX), 0));
        assert!(!Settles::AtHeight(10).is_final(Some(15), 6));
        assert!(Settles::AtHeight(10).is_final(Some(16), 6));
        assert!(!Settles::AtHeight(10).is_final(None, 6));
        // height + depth overflows: never final, never a panic.
        assert!(!Settles::AtHeight(u64::MAX).is_final(Some(u64::MAX), 1));
    }

    #[test]
    fn params_with_repeated_keys_or_no_json_are_not_read() {
        assert_eq!(parse_params(Some("[1]")), Some(serde_json::json!([1])));
        assert_eq!(
            parse_params(Some(r#"{"height":1}"#)),
            Some(serde_json::json!({"height": 1}))
        );
        for bad in [
            r#"{"height":1,"height":2}"#,
            r#"[{"a":{"b":1,"b":2}}]"#,
            r#"{"a":1,"\u0061":2}"#,
            "[1",
            "",
            "[1,]",
        ] {
            assert_eq!(parse_params(Some(bad)), None, "{bad}");
        }
        assert_eq!(parse_params(None), None);
        assert_eq!(plain_u64(&serde_json::json!("12")), Some(12));
        for bad in [
            serde_json::json!("-1"),
            serde_json::json!("+1"),
            serde_json::json!(""),
            serde_json::json!("99999999999999999999999"),
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!(null),
        ] {
            assert_eq!(plain_u64(&bad), None, "{bad}");
        }
    }

    #[test]
    fn immutable_answers_settle_now_and_unknown_or_null_ones_never() {
        let evm = Adapter::for_chain(Chain::Ethereum);
        assert_eq!(
            evm.settles("eth_chainId", None, b"\"0x7a69\""),
            Settles::Now
        );
        assert_eq!(
            evm.settles("eth_blockNumber", None, b"\"0x10\""),
            Settles::Never
        );
        assert_eq!(evm.settles("eth_nope", Some("[]"), b"1"), Settles::Never);
        assert_eq!(
            evm.settles("eth_getBlockByHash", Some("[\"0x00\",false]"), b" null "),
            Settles::Never
        );
    }

    #[test]
    fn key_methods_are_classified_as_documented() {
        let check = |chain: Chain, name: &str, class: MethodClass, cache: Cacheability| {
            let info = Adapter::for_chain(chain).method(name);
            assert_eq!(
                info.map(|m| (m.class, m.cache)),
                Some((class, cache)),
                "{chain} {name}"
            );
        };
        use Cacheability::*;
        use MethodClass::*;
        check(Chain::Litecoin, "getblockcount", Read, Never);
        check(Chain::Litecoin, "getblockhash", Read, ImmutableWhenDeep(6));
        check(Chain::Litecoin, "sendrawtransaction", Write, Never);
        check(Chain::Litecoin, "stop", Admin, Never);
        check(Chain::Litecoin, "generatetoaddress", Mining, Never);
        check(Chain::Litecoin, "sendtoaddress", Wallet, Never);
        check(Chain::Ethereum, "eth_getBlockByHash", Read, Immutable);
        check(
            Chain::Ethereum,
            "eth_getTransactionReceipt",
            Read,
            ImmutableWhenDeep(12),
        );
        check(Chain::Ethereum, "eth_blockNumber", Read, Never);
        check(Chain::Ethereum, "eth_sendRawTransaction", Write, Never);
        check(Chain::Ethereum, "eth_sendTransaction", Wallet, Never);
        check(Chain::Ethereum, "evm_mine", Mining, Never);
        check(
            Chain::Ethereum,
            "eth_getBlockByNumber",
            Read,
            ImmutableWhenDeep(12),
        );
        // Its answer names no block: nothing says when it is deep.
        check(Chain::Ethereum, "debug_traceTransaction", Admin, Never);
        check(Chain::Litecoin, "getblock", Read, ImmutableWhenDeep(6));
        check(Chain::Litecoin, "verifytxoutproof", Read, Never);
        check(Chain::Monero, "get_info", Read, Never);
        check(
            Chain::Monero,
            "on_get_block_hash",
            Read,
            ImmutableWhenDeep(10),
        );
        // Block headers carry a depth that grows with every block.
        check(Chain::Monero, "get_block_header_by_height", Read, Never);
        check(Chain::Cosmos, "blockchain", Read, Never);
        check(Chain::Solana, "getBlock", Read, ImmutableWhenDeep(32));
        check(Chain::Monero, "generateblocks", Mining, Never);
        check(Chain::Monero, "/send_raw_transaction", Write, Never);
        check(Chain::Monero, "/stop_daemon", Admin, Never);
        check(Chain::Cosmos, "block_by_hash", Read, Immutable);
        check(Chain::Solana, "sendTransaction", Write, Never);
        assert!(Adapter::for_chain(Chain::Ethereum)
            .method("eth_nope")
            .is_none());
    }
}
