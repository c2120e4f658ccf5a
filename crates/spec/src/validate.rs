//! Checks that serde cannot express: ranges, names, references and clashes.

use std::collections::HashMap;
use std::time::Duration;

use crate::manifest::{Fleet, Instance, Role, API_VERSION, KIND};

/// One problem found in a manifest, before its position is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Field path such as `instances[2].replicas`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl Finding {
    /// A finding at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Longest instance name; node names add a replica suffix and must stay short.
pub const MAX_NAME_LEN: usize = 40;
/// Most replicas of one instance.
pub const MAX_REPLICAS: u32 = 64;

/// Every semantic problem of a fleet that deserialized.
pub fn check(fleet: &Fleet) -> Vec<Finding> {
    let mut out = Vec::new();
    if fleet.api_version != API_VERSION {
        out.push(Finding::new(
            "apiVersion",
            format!(
                "`{}` is not supported; use `{API_VERSION}`",
                fleet.api_version
            ),
        ));
    }
    if fleet.kind != KIND {
        out.push(Finding::new(
            "kind",
            format!("`{}` is not supported; use `{KIND}`", fleet.kind),
        ));
    }
    if let Some(message) = name_problem(&fleet.metadata.name) {
        out.push(Finding::new("metadata.name", message));
    }
    check_settings(fleet, &mut out);
    if fleet.instances.is_empty() {
        out.push(Finding::new(
            "instances",
            "a fleet needs at least one instance",
        ));
    }
    let mut first_index_of: HashMap<&str, usize> = HashMap::new();
    for (index, instance) in fleet.instances.iter().enumerate() {
        let at = format!("instances[{index}]");
        if let Some(first) = first_index_of.get(instance.name.as_str()) {
            out.push(Finding::new(
                format!("{at}.name"),
                format!(
                    "duplicate instance name `{}` (also at instances[{first}])",
                    instance.name
                ),
            ));
        } else {
            first_index_of.insert(&instance.name, index);
        }
        check_instance(instance, &at, &mut out);
    }
    check_peers(fleet, &first_index_of, &mut out);
    check_port_clashes(fleet, &mut out);
    crate::failover::check(fleet, &mut out);
    crate::alerting::check(fleet, &mut out);
    crate::access::check(fleet, &mut out);
    out
}

fn check_settings(fleet: &Fleet, out: &mut Vec<Finding>) {
    let settings = &fleet.settings;
    duration_in_range(
        "settings.probeInterval",
        settings.probe_interval.get(),
        Duration::from_millis(100),
        Duration::from_secs(3600),
        out,
    );
    if !(1..=4096).contains(&settings.log_max_mb) {
        out.push(Finding::new(
            "settings.logMaxMb",
            "must be between 1 and 4096",
        ));
    }
    if settings.log_keep > 100 {
        out.push(Finding::new("settings.logKeep", "must be at most 100"));
    }
    if let Some(user) = &settings.run_as {
        if user.is_empty() || user.contains(['\0', '\n', '/', ':']) {
            out.push(Finding::new("settings.runAs", "must be a plain user name"));
        }
    }
}

/// Problems of one instance on its own; `at` is its path.
pub(crate) fn check_instance(instance: &Instance, at: &str, out: &mut Vec<Finding>) {
    if let Some(message) = name_problem(&instance.name) {
        out.push(Finding::new(format!("{at}.name"), message));
    }
    if instance.replicas < 1 {
        out.push(Finding::new(format!("{at}.replicas"), "must be at least 1"));
    } else if instance.replicas > MAX_REPLICAS {
        out.push(Finding::new(
            format!("{at}.replicas"),
            format!("must be at most {MAX_REPLICAS}"),
        ));
    }
    if let Some(binary) = &instance.client.binary {
        if binary.trim().is_empty() || binary.contains(['\0', '\n']) {
            out.push(Finding::new(
                format!("{at}.client.binary"),
                "must be a program name or path",
            ));
        }
    }
    for (index, arg) in instance.client.args.iter().enumerate() {
        if arg.contains(['\0', '\n', '\r']) {
            out.push(Finding::new(
                format!("{at}.client.args[{index}]"),
                "must not contain NUL or line breaks",
            ));
        }
    }
    for (key, value) in &instance.client.config {
        let key_ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !key_ok {
            out.push(Finding::new(
                format!("{at}.client.config.{key}"),
                "config keys may use only letters, digits, `_`, `-` and `.`",
            ));
        }
        if value.contains(['\0', '\n', '\r']) {
            out.push(Finding::new(
                format!("{at}.client.config.{key}"),
                "config values must not contain NUL or line breaks",
            ));
        }
    }
    for (field, port) in [("rpc", instance.ports.rpc), ("p2p", instance.ports.p2p)] {
        let Some(port) = port else { continue };
        let last = u32::from(port) + instance.replicas.saturating_sub(1);
        if port == 0 {
            out.push(Finding::new(
                format!("{at}.ports.{field}"),
                "must be between 1 and 65535; omit it to have one assigned",
            ));
        } else if last > u32::from(u16::MAX) {
            out.push(Finding::new(
                format!("{at}.ports.{field}"),
                format!(
                    "{port} plus {} replicas runs past port 65535",
                    instance.replicas
                ),
            ));
        }
    }
    match (&instance.production, instance.network.is_local()) {
        (Some(_), false) => out.push(Finding::new(
            format!("{at}.production"),
            "block production is only for regtest and devnet networks",
        )),
        (Some(_), true) if instance.role != Role::Producer => out.push(Finding::new(
            format!("{at}.production"),
            "block production needs `role: producer`",
        )),
        _ => {}
    }
    if let Some(production) = &instance.production {
        duration_in_range(
            &format!("{at}.production.blockInterval"),
            production.block_interval.get(),
            Duration::from_millis(100),
            Duration::from_secs(86_400),
            out,
        );
        if let Some(address) = &production.reward_address {
            if address.is_empty()
                || address.len() > 256
                || !address.chars().all(|c| c.is_ascii_graphic())
            {
                out.push(Finding::new(
                    format!("{at}.production.rewardAddress"),
                    "must be a non-empty address without spaces",
                ));
            }
        }
    }
    duration_in_range(
        &format!("{at}.stopTimeout"),
        instance.stop_timeout.get(),
        Duration::from_secs(1),
        Duration::from_secs(3600),
        out,
    );
    if let Some(cpus) = instance.resources.cpus {
        if !(cpus.is_finite() && cpus > 0.0) {
            out.push(Finding::new(
                format!("{at}.resources.cpus"),
                "must be a positive number",
            ));
        }
    }
}

fn check_peers(fleet: &Fleet, index_of: &HashMap<&str, usize>, out: &mut Vec<Finding>) {
    for (index, instance) in fleet.instances.iter().enumerate() {
        for (peer_index, peer) in instance.peers.iter().enumerate() {
            let path = format!("instances[{index}].peers[{peer_index}]");
            match index_of.get(peer.as_str()) {
                None => {
                    let names: Vec<&str> = index_of.keys().copied().collect();
                    let hint = crate::nearest(peer, &names)
                        .map(|near| format!("; did you mean `{near}`?"))
                        .unwrap_or_default();
                    out.push(Finding::new(
                        path,
                        format!("no instance is named `{peer}`{hint}"),
                    ));
                }
                Some(&other) if other == index => out.push(Finding::new(
                    path,
                    "an instance's replicas peer with each other already; list other instances",
                )),
                Some(&other) => {
                    let other_chain = fleet.instances[other].chain;
                    if other_chain != instance.chain {
                        out.push(Finding::new(
                            path,
                            format!(
                                "`{peer}` runs {other_chain}, not {}; peers must share a chain",
                                instance.chain
                            ),
                        ));
                    }
                }
            }
        }
    }
}

fn check_port_clashes(fleet: &Fleet, out: &mut Vec<Finding>) {
    // (first port, last port, path) for every explicit port range.
    let mut ranges: Vec<(u32, u32, String)> = Vec::new();
    for (index, instance) in fleet.instances.iter().enumerate() {
        for (field, port) in [("rpc", instance.ports.rpc), ("p2p", instance.ports.p2p)] {
            let Some(port) = port.filter(|p| *p != 0) else {
                continue;
            };
            let first = u32::from(port);
            let last = first + instance.replicas.max(1) - 1;
            let path = format!("instances[{index}].ports.{field}");
            if let Some((_, _, other)) = ranges
                .iter()
                .find(|(start, end, _)| first <= *end && *start <= last)
            {
                out.push(Finding::new(
                    path.clone(),
                    format!("ports {first}-{last} clash with {other}"),
                ));
            }
            ranges.push((first, last, path));
        }
    }
}

fn duration_in_range(
    path: &str,
    value: Duration,
    min: Duration,
    max: Duration,
    out: &mut Vec<Finding>,
) {
    if value < min || value > max {
        out.push(Finding::new(
            path,
            format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
}

/// Why `name` is not a valid fleet or instance name, if it is not.
fn name_problem(name: &str) -> Option<String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() {
        Some("must not be empty".into())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("must be at most {MAX_NAME_LEN} characters"))
    } else if !valid_chars || name.starts_with('-') || name.ends_with('-') {
        Some(format!(
            "`{name}` must use only lower-case letters, digits and `-`, and not start or end with `-`"
        ))
    } else {
        None
    }
}
