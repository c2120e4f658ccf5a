//! The `access:` section of an instance: who may call which RPC methods
//! through the gateway, and the limits that apply.
//!
//! ```yaml
//! access:
//!   allow: [read]            # method classes or method names
//!   deny: [admin, wallet]    # deny wins over allow
//!   maxLag: 2                # replicas further behind the best height get no requests
//!   maxBodyBytes: 1048576
//!   maxBatch: 100
//!   keyRps: 100              # defaults for keys created without their own limits
//!   keyBurst: 200
//!   keyConcurrency: 32
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Finding, Fleet};

/// Method classes a rule may name (the adapters' catalog classes).
pub const METHOD_CLASSES: [&str; 6] = ["read", "write", "admin", "wallet", "mining", "network"];

/// Longest method name or class a rule may hold.
pub const MAX_RULE_LEN: usize = 100;

/// Gateway access policy of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Access {
    /// Methods end users may call: classes (`read`, `write`, `admin`, `wallet`,
    /// `mining`, `network`) or method names. Default: `[read]`.
    #[serde(default = "default_allow")]
    pub allow: Vec<String>,
    /// Methods nobody may call through the gateway, by class or name. Deny wins.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Most blocks a replica may be behind the best height and still get requests.
    #[serde(default = "default_max_lag")]
    pub max_lag: u64,
    /// Largest request body in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Most calls in one batch.
    #[serde(default = "default_max_batch")]
    pub max_batch: u32,
    /// Requests per second of a key created without its own rate.
    #[serde(default = "default_key_rps")]
    pub key_rps: u32,
    /// Burst of a key created without its own burst.
    #[serde(default = "default_key_burst")]
    pub key_burst: u32,
    /// Concurrent requests of a key created without its own limit.
    #[serde(default = "default_key_concurrency")]
    pub key_concurrency: u32,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            allow: default_allow(),
            deny: Vec::new(),
            max_lag: default_max_lag(),
            max_body_bytes: default_max_body_bytes(),
            max_batch: default_max_batch(),
            key_rps: default_key_rps(),
            key_burst: default_key_burst(),
            key_concurrency: default_key_concurrency(),
        }
    }
}

fn default_allow() -> Vec<String> {
    vec!["read".to_string()]
}
fn default_max_lag() -> u64 {
    2
}
fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
fn default_max_batch() -> u32 {
    100
}
fn default_key_rps() -> u32 {
    100
}
fn default_key_burst() -> u32 {
    200
}
fn default_key_concurrency() -> u32 {
    32
}

/// Why a method rule is not acceptable, if it is not.
pub fn rule_problem(rule: &str) -> Option<String> {
    if rule.is_empty() {
        return Some("an empty rule matches nothing; remove it".into());
    }
    if rule.len() > MAX_RULE_LEN {
        return Some(format!("longer than {MAX_RULE_LEN} characters"));
    }
    if rule.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "`{}` contains whitespace; give one class ({}) or one method name",
            rule.escape_debug(),
            METHOD_CLASSES.join(", ")
        ));
    }
    None
}

/// Problems in one list of rules at `at` (e.g. `instances[0].access.allow`).
pub fn check_rules(rules: &[String], at: &str, out: &mut Vec<Finding>) {
    for (index, rule) in rules.iter().enumerate() {
        if let Some(problem) = rule_problem(rule) {
            out.push(Finding::new(format!("{at}[{index}]"), problem));
        }
    }
}

/// Problems in every instance's `access:` section.
pub(crate) fn check(fleet: &Fleet, out: &mut Vec<Finding>) {
    for (index, instance) in fleet.instances.iter().enumerate() {
        let at = format!("instances[{index}].access");
        let access = &instance.access;
        check_rules(&access.allow, &format!("{at}.allow"), out);
        check_rules(&access.deny, &format!("{at}.deny"), out);
        for (position, rule) in access.allow.iter().enumerate() {
            if access.deny.contains(rule) {
                out.push(Finding::new(
                    format!("{at}.allow[{position}]"),
                    format!("`{rule}` is both allowed and denied (deny wins); remove one"),
                ));
            }
        }
        if !(1024..=64 * 1024 * 1024).contains(&access.max_body_bytes) {
            out.push(Finding::new(
                format!("{at}.maxBodyBytes"),
                "must be between 1024 and 67108864 (64 MiB)",
            ));
        }
        if !(1..=10_000).contains(&access.max_batch) {
            out.push(Finding::new(
                format!("{at}.maxBatch"),
                "must be between 1 and 10000",
            ));
        }
        if access.max_lag > 1_000_000 {
            out.push(Finding::new(
                format!("{at}.maxLag"),
                "must be at most 1000000 blocks",
            ));
        }
        for (field, value) in [
            ("keyRps", access.key_rps),
            ("keyBurst", access.key_burst),
            ("keyConcurrency", access.key_concurrency),
        ] {
            if value == 0 {
                out.push(Finding::new(format!("{at}.{field}"), "must be at least 1"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(access_yaml: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: chainfleet.dev/v1alpha1\nkind: Fleet\ninstances:\n  - name: ltc\n    chain: litecoin\n    access: {access_yaml}\n"
        );
        match crate::parse(&text, "t.yaml") {
            Ok(_) => Vec::new(),
            Err(err) => vec![err.to_string()],
        }
    }

    #[test]
    fn defaults_are_read_only() {
        let access = Access::default();
        assert_eq!(access.allow, vec!["read".to_string()]);
        assert!(access.deny.is_empty());
        assert!(findings("{}").is_empty());
    }

    #[test]
    fn a_full_section_parses() {
        assert!(findings(
            "{allow: [read, sendrawtransaction], deny: [admin, wallet], maxLag: 3, maxBodyBytes: 2048, maxBatch: 10, keyRps: 5, keyBurst: 5, keyConcurrency: 2}"
        )
        .is_empty());
    }

    #[test]
    fn bad_values_are_reported_with_their_field() {
        let found = findings("{allow: ['get block', read], deny: [read], maxBatch: 0, keyRps: 0}")
            .join("\n");
        for field in ["allow[0]", "allow[1]", "maxBatch", "keyRps"] {
            assert!(found.contains(field), "{field} missing in {found}");
        }
        assert!(!findings("{allwo: [read]}").is_empty());
    }
}
