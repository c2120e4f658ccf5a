//! The `access:` section of an instance: gateway policy (to be written).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Finding, Fleet};

/// Gateway access policy of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Access {}

/// Problems in every instance's `access:` section.
pub(crate) fn check(_fleet: &Fleet, _out: &mut Vec<Finding>) {}
