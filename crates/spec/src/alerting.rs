//! The `alerting:` section and per-instance reference endpoints (to be written).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Finding, Fleet};

/// Alert rule overrides and notification channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Alerting {}

/// An external RPC endpoint of the same chain, used as a height reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReferenceEndpoint {
    /// Its RPC URL.
    pub url: String,
}

/// Problems in the `alerting:` section and reference endpoints.
pub(crate) fn check(_fleet: &Fleet, _out: &mut Vec<Finding>) {}
