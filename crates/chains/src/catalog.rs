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
    /// The answer stops changing once the referenced block is this many blocks deep.
    ImmutableWhenDeep(u32),
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
            "debug_traceTransaction",
            Admin,
            ImmutableWhenDeep(12),
        );
        check(Chain::Monero, "get_info", Read, Never);
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
