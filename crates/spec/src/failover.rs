//! Producer groups: one active block producer, lease-fenced.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{DurationText, Finding, Fleet, Role};

/// Settings of one producer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProducerGroup {
    /// How long a lease lives without renewal, e.g. `3s`.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: DurationText,
    /// Most blocks a standby may be behind the best known height to take over.
    #[serde(default = "default_max_lag")]
    pub max_lag: u64,
    /// Where leases live.
    #[serde(default)]
    pub backend: LeaseBackend,
}

impl Default for ProducerGroup {
    fn default() -> Self {
        ProducerGroup {
            lease_ttl: default_lease_ttl(),
            max_lag: default_max_lag(),
            backend: LeaseBackend::default(),
        }
    }
}

fn default_lease_ttl() -> DurationText {
    DurationText(Duration::from_secs(3))
}
fn default_max_lag() -> u64 {
    2
}

/// Where a group's leases live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", tag = "type")]
pub enum LeaseBackend {
    /// In this control plane's own store: one control plane runs the whole group.
    #[default]
    Embedded,
    /// In an etcd cluster shared by several control planes.
    Etcd {
        /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
        endpoints: Vec<String>,
        /// Key prefix for this fleet's leases.
        #[serde(default = "default_prefix")]
        prefix: String,
    },
}

fn default_prefix() -> String {
    "/chainfleet/".into()
}

/// Problems with producer groups.
pub(crate) fn check(fleet: &Fleet, out: &mut Vec<Finding>) {
    for (name, group) in &fleet.producer_groups {
        let at = format!("producerGroups.{name}");
        let ttl = group.lease_ttl.get();
        if ttl < Duration::from_millis(300) || ttl > Duration::from_secs(600) {
            out.push(Finding::new(
                format!("{at}.leaseTtl"),
                "must be between 300ms and 10m",
            ));
        }
        if let LeaseBackend::Etcd { endpoints, prefix } = &group.backend {
            if endpoints.is_empty() {
                out.push(Finding::new(
                    format!("{at}.backend.endpoints"),
                    "list at least one etcd URL",
                ));
            }
            for (index, url) in endpoints.iter().enumerate() {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    out.push(Finding::new(
                        format!("{at}.backend.endpoints[{index}]"),
                        "must be an http:// or https:// URL",
                    ));
                }
            }
            if !prefix.starts_with('/') {
                out.push(Finding::new(
                    format!("{at}.backend.prefix"),
                    "must start with `/`",
                ));
            }
        }
        if !fleet
            .instances
            .iter()
            .any(|i| i.producer_group.as_deref() == Some(name.as_str()))
        {
            out.push(Finding::new(
                at,
                "no instance names this group in `producerGroup`",
            ));
        }
    }
    for (index, instance) in fleet.instances.iter().enumerate() {
        let Some(group) = &instance.producer_group else {
            continue;
        };
        let at = format!("instances[{index}].producerGroup");
        if instance.role != Role::Producer {
            out.push(Finding::new(
                at.clone(),
                "only `role: producer` instances join a producer group",
            ));
        }
        if !fleet.producer_groups.contains_key(group)
            && fleet.producer_groups.keys().all(|g| g != group)
        {
            let names: Vec<&str> = fleet.producer_groups.keys().map(String::as_str).collect();
            let hint = crate::nearest(group, &names)
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_else(|| "; declare it under `producerGroups`".into());
            out.push(Finding::new(
                at,
                format!("no producer group is named `{group}`{hint}"),
            ));
        }
    }
}
