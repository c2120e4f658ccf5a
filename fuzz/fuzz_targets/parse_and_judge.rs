//! Fuzz the gateway's request parsing and policy evaluation: no input may
//! panic, and every call it accepts must forward as valid JSON.

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
