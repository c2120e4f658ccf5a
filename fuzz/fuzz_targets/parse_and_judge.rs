//! Fuzz the gateway's request parsing, policy evaluation and cache rules: no
//! input may panic, every call it accepts must forward as valid JSON, and
//! `eth_getBlockByNumber("latest")` never settles at a height.

#![no_main]

use chainfleet_chains::Adapter;
use chainfleet_gateway::jsonrpc::{self, Element};
use chainfleet_gateway::policy::{self, Policy};
use chainfleet_spec::Chain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rules = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let instance = Policy::new(
        &rules(&["read", "eth_sendRawTransaction"]),
        &rules(&["admin", "wallet"]),
    );
    let key = Policy::new(&rules(&["read"]), &rules(&["eth_getLogs"]));
    for chain in [Chain::Ethereum, Chain::Litecoin, Chain::Monero] {
        let adapter = Adapter::for_chain(chain);
        let Ok(request) = jsonrpc::parse(data, 100) else {
            continue;
        };
        assert!(!request.elements.is_empty());
        let mut calls = Vec::new();
        for element in &request.elements {
            if let Element::Call(call) = element {
                let info = adapter.method(&call.method);
                let verdict = policy::judge(&instance, &key, &call.method, info.map(|m| m.class));
                if let Err(denial) = &verdict {
                    assert!(denial.message(&call.method).contains(&call.method));
                }
                // The input doubles as the node's answer to the call.
                let settles = adapter.settles(&call.method, call.params.as_deref(), data);
                // A block by number takes its height from the params only.
                if call.method == "eth_getBlockByNumber"
                    && call.params.as_deref().is_some_and(|p| p.contains("\"latest\""))
                {
                    assert!(
                        !matches!(settles, chainfleet_chains::Settles::AtHeight(_)),
                        "a call naming `latest` settled at a height: {call:?}"
                    );
                }
                calls.push(call);
            }
        }
        if !calls.is_empty() {
            let body = jsonrpc::upstream_body(&calls, calls.len() > 1);
            assert!(
                serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                "forwarded body is not JSON: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = jsonrpc::parse_answer(text);
    }
    let _ = jsonrpc::parse_batch_answer(data, 8);
});
