//! Method policy: allow and deny rules by method class or name. Deny wins,
//! and a call must pass both its instance's and its key's policy.

use std::collections::HashSet;

use chainfleet_chains::MethodClass;

/// The name a rule uses for a class.
pub fn class_name(class: MethodClass) -> &'static str {
    match class {
        MethodClass::Read => "read",
        MethodClass::Write => "write",
        MethodClass::Admin => "admin",
        MethodClass::Wallet => "wallet",
        MethodClass::Mining => "mining",
        MethodClass::Network => "network",
    }
}

fn class_bit(class: MethodClass) -> u8 {
    match class {
        MethodClass::Read => 1,
        MethodClass::Write => 2,
        MethodClass::Admin => 4,
        MethodClass::Wallet => 8,
        MethodClass::Mining => 16,
        MethodClass::Network => 32,
    }
}

fn class_of_rule(rule: &str) -> Option<MethodClass> {
    Some(match rule {
        "read" => MethodClass::Read,
        "write" => MethodClass::Write,
        "admin" => MethodClass::Admin,
        "wallet" => MethodClass::Wallet,
        "mining" => MethodClass::Mining,
        "network" => MethodClass::Network,
        _ => return None,
    })
}

/// One side of a policy, compiled for fast checks.
#[derive(Debug, Clone, Default)]
struct RuleSet {
    classes: u8,
    names: HashSet<String>,
}

impl RuleSet {
    fn new(rules: &[String]) -> Self {
        let mut set = RuleSet::default();
        for rule in rules {
            match class_of_rule(rule) {
                Some(class) => set.classes |= class_bit(class),
                None => {
                    set.names.insert(rule.clone());
                }
            }
        }
        set
    }

    /// The rule matching `method`, if any: its name first, then its class.
    fn matching(&self, method: &str, class: Option<MethodClass>) -> Option<String> {
        if self.names.contains(method) {
            return Some(method.to_string());
        }
        let class = class?;
        (self.classes & class_bit(class) != 0).then(|| class_name(class).to_string())
    }
}

/// An allow/deny policy (of an instance or of a key).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: RuleSet,
    deny: RuleSet,
    allow_text: String,
}

/// Whose policy denied a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The instance's `access:` section.
    Instance,
    /// The API key.
    Key,
}

impl Scope {
    /// `instance` or `key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Instance => "instance",
            Scope::Key => "key",
        }
    }
}

/// Why a call was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Whose rule it was.
    pub scope: Scope,
    /// The rule, e.g. `deny: admin` or `allow: read` (when not allowed).
    pub rule: String,
}

impl Denial {
    /// The message a client sees.
    pub fn message(&self, method: &str) -> String {
        if self.rule.starts_with("deny") {
            format!(
                "method `{method}` is denied by the {} rule `{}`",
                self.scope.as_str(),
                self.rule
            )
        } else {
            format!(
                "method `{method}` is not allowed: the {} rule is `{}`",
                self.scope.as_str(),
                self.rule
            )
        }
    }
}

impl Policy {
    /// A policy from allow and deny rules (class names or method names).
    pub fn new(allow: &[String], deny: &[String]) -> Self {
        Policy {
            allow: RuleSet::new(allow),
            deny: RuleSet::new(deny),
            allow_text: format!("allow: [{}]", allow.join(", ")),
        }
    }

    /// `Err(rule)` when this policy does not let `method` (of `class`, if in the catalog) through.
    fn judge(&self, method: &str, class: Option<MethodClass>) -> Result<(), String> {
        if let Some(rule) = self.deny.matching(method, class) {
            return Err(format!("deny: {rule}"));
        }
        match self.allow.matching(method, class) {
            Some(_) => Ok(()),
            None => Err(self.allow_text.clone()),
        }
    }
}

/// Judge one call against its instance's and its key's policy; deny wins.
pub fn judge(
    instance: &Policy,
    key: &Policy,
    method: &str,
    class: Option<MethodClass>,
) -> Result<(), Denial> {
    let instance_verdict = instance.judge(method, class);
    let key_verdict = key.judge(method, class);
    // An explicit deny anywhere is the clearest reason; report it first.
    for (scope, verdict) in [
        (Scope::Instance, &instance_verdict),
        (Scope::Key, &key_verdict),
    ] {
        if let Err(rule) = verdict {
            if rule.starts_with("deny") {
                return Err(Denial {
                    scope,
                    rule: rule.clone(),
                });
            }
        }
    }
    instance_verdict.map_err(|rule| Denial {
        scope: Scope::Instance,
        rule,
    })?;
    key_verdict.map_err(|rule| Denial {
        scope: Scope::Key,
        rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(allow: &[&str], deny: &[&str]) -> Policy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Policy::new(&s(allow), &s(deny))
    }

    #[test]
    fn read_only_default_allows_reads_only() {
        let inst = p(&["read"], &[]);
        let key = p(&["read"], &[]);
        assert!(judge(&inst, &key, "getblockcount", Some(MethodClass::Read)).is_ok());
        let denial = judge(&inst, &key, "sendrawtransaction", Some(MethodClass::Write))
            .expect_err("writes are denied");
        assert_eq!(denial.scope, Scope::Instance);
        assert!(denial
            .message("sendrawtransaction")
            .contains("allow: [read]"));
    }

    #[test]
    fn deny_wins_over_allow_at_any_level() {
        let inst = p(&["read", "admin"], &[]);
        let key = p(&["read", "admin"], &["stop"]);
        let denial = judge(&inst, &key, "stop", Some(MethodClass::Admin)).expect_err("denied");
        assert_eq!(
            denial,
            Denial {
                scope: Scope::Key,
                rule: "deny: stop".into()
            }
        );
        assert!(judge(&inst, &key, "uptime", Some(MethodClass::Admin)).is_ok());
        let inst = p(&["read"], &["getblock"]);
        let denial = judge(
            &inst,
            &p(&["getblock"], &[]),
            "getblock",
            Some(MethodClass::Read),
        )
        .expect_err("denied");
        assert_eq!(denial.rule, "deny: getblock");
        assert!(denial
            .message("getblock")
            .contains("denied by the instance rule"));
    }

    #[test]
    fn unknown_methods_need_an_allow_by_name() {
        let inst = p(&["read", "custom_x"], &[]);
        assert!(judge(&inst, &p(&["read"], &[]), "custom_x", None).is_err());
        assert!(judge(&inst, &p(&["custom_x"], &[]), "custom_x", None).is_ok());
        assert!(judge(&inst, &p(&["read"], &[]), "nope", None).is_err());
    }
}
