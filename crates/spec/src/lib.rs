//! The Chainfleet fleet manifest: types, defaults, validation with field
//! paths and line numbers, and a JSON Schema for editors.

pub mod access;
pub mod alerting;
pub mod failover;
mod manifest;
mod validate;
pub mod yaml;

use std::fmt;
use std::path::Path;

pub use manifest::*;
pub use validate::{Finding, MAX_NAME_LEN, MAX_REPLICAS};
use yaml::{MarkedDocument, Position};

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// A problem in a manifest, with its field path and position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path such as `instances[2].replicas`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
    /// Where in the file, when known.
    pub position: Option<Position>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(position) = self.position {
            write!(f, " (line {}, column {})", position.line, position.column)?;
        }
        Ok(())
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read manifest {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest {file} is {size} bytes; the limit is {MAX_MANIFEST_BYTES} bytes")]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        size: usize,
    },
    /// The manifest has one or more problems.
    #[error("{file}: {} problem(s) in manifest:\n{}", problems.len(), list(problems))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A manifest that parsed and passed validation, with its source positions.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The fleet it declares.
    pub fleet: Fleet,
    /// The text it was parsed from.
    pub source: String,
    /// The file name it came from (for messages).
    pub file: String,
    document: MarkedDocument,
}

impl Manifest {
    /// Turn findings (e.g. from chain adapters) into positioned problems.
    pub fn locate(&self, findings: Vec<Finding>) -> Vec<Problem> {
        findings
            .into_iter()
            .map(|f| locate(&self.document, f))
            .collect()
    }

    /// Fail with these extra findings, if there are any.
    pub fn reject_if_any(&self, findings: Vec<Finding>) -> Result<(), SpecError> {
        if findings.is_empty() {
            return Ok(());
        }
        Err(SpecError::Invalid {
            file: self.file.clone(),
            problems: self.locate(findings),
        })
    }
}

fn locate(document: &MarkedDocument, finding: Finding) -> Problem {
    Problem {
        position: document.position_of(&finding.path),
        path: finding.path,
        message: finding.message,
    }
}

/// Read and validate a manifest file.
pub fn load_file(path: &Path) -> Result<Manifest, SpecError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| SpecError::Read {
        file: file.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|err| SpecError::Invalid {
        file: file.clone(),
        problems: vec![Problem {
            path: String::new(),
            message: format!(
                "the file is not valid UTF-8 (byte {})",
                err.utf8_error().valid_up_to()
            ),
            position: None,
        }],
    })?;
    parse(&text, &file)
}

/// Parse and validate manifest text; `file` names it in messages.
pub fn parse(text: &str, file: &str) -> Result<Manifest, SpecError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(SpecError::TooLarge {
            file: file.to_string(),
            size: text.len(),
        });
    }
    let invalid = |problems| SpecError::Invalid {
        file: file.to_string(),
        problems,
    };
    let document = yaml::parse(text).map_err(|err| {
        invalid(vec![Problem {
            path: String::new(),
            message: format!("not valid YAML: {}", err.message),
            position: Some(err.position),
        }])
    })?;
    let fleet = deserialize_collecting(&document).map_err(invalid)?;
    let findings = validate::check(&fleet);
    if !findings.is_empty() {
        let problems = findings.into_iter().map(|f| locate(&document, f)).collect();
        return Err(invalid(problems));
    }
    Ok(Manifest {
        fleet,
        source: text.to_string(),
        file: file.to_string(),
        document,
    })
}

/// Deserialize the fleet, one instance at a time, so one bad instance does
/// not hide the problems of the others.
fn deserialize_collecting(document: &MarkedDocument) -> Result<Fleet, Vec<Problem>> {
    let mut root = document.value.clone();
    let serde_json::Value::Object(map) = &mut root else {
        return Err(vec![Problem {
            path: String::new(),
            message: "a manifest must be a mapping with `apiVersion`, `kind` and `instances`"
                .into(),
            position: document.position_of(""),
        }]);
    };
    let instance_values = match map.remove("instances") {
        Some(serde_json::Value::Array(items)) => items,
        Some(serde_json::Value::Null) | None => Vec::new(),
        Some(_) => {
            return Err(vec![Problem {
                path: "instances".into(),
                message: "must be a list of instances".into(),
                position: document.position_of("instances"),
            }])
        }
    };
    let mut problems = Vec::new();
    let mut fleet = match deserialize_at::<Fleet>(root, "", document) {
        Ok(fleet) => Some(fleet),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let mut instances = Vec::new();
    for (index, value) in instance_values.into_iter().enumerate() {
        let at = format!("instances[{index}]");
        match deserialize_at::<Instance>(value, &at, document) {
            Ok(instance) => instances.push((at, instance)),
            Err(problem) => problems.push(problem),
        }
    }
    match (&mut fleet, problems.is_empty()) {
        (Some(fleet), true) => {
            fleet.instances = instances.into_iter().map(|(_, i)| i).collect();
            Ok(fleet.clone())
        }
        _ => {
            // Still report what is wrong with the instances that did parse.
            for (at, instance) in &instances {
                let mut findings = Vec::new();
                validate::check_instance(instance, at, &mut findings);
                problems.extend(findings.into_iter().map(|f| locate(document, f)));
            }
            Err(problems)
        }
    }
}

fn deserialize_at<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
    document: &MarkedDocument,
) -> Result<T, Problem> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let inner = err.path().to_string();
        let mut path = match (prefix.is_empty(), inner == ".") {
            (true, _) => inner.clone(),
            (false, true) => prefix.to_string(),
            (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
            (false, false) => format!("{prefix}.{inner}"),
        };
        if path == "." {
            path.clear();
        }
        let message = explain_serde_error(&err.into_inner().to_string());
        // Unknown fields are reported at the parent; point at the field itself.
        let field_path = unknown_name(&message)
            .map(|field| {
                if path.is_empty() || path == field || path.ends_with(&format!(".{field}")) {
                    if path.is_empty() {
                        field.to_string()
                    } else {
                        path.clone()
                    }
                } else {
                    format!("{path}.{field}")
                }
            })
            .filter(|p| document.key_positions.contains_key(p));
        let position = match &field_path {
            Some(field) => document.key_positions.get(field).copied(),
            None => document.position_of(&path),
        };
        Problem {
            path: field_path.unwrap_or(path),
            message,
            position,
        }
    })
}

/// The name in a serde "unknown field/variant `x`" message.
fn unknown_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Reword serde's message and add a "did you mean" for unknown names.
fn explain_serde_error(message: &str) -> String {
    let kind = if message.starts_with("unknown field `") {
        "field"
    } else if message.starts_with("unknown variant `") {
        "value"
    } else {
        return message.to_string();
    };
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let Some((unknown, expected)) = quoted.split_first() else {
        return message.to_string();
    };
    let allowed = expected.join(", ");
    match nearest(unknown, expected) {
        Some(near) => {
            format!("unknown {kind} `{unknown}`; did you mean `{near}`? (allowed: {allowed})")
        }
        None => format!("unknown {kind} `{unknown}` (allowed: {allowed})"),
    }
}

/// The candidate closest to `word`, if any is close enough to be a typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lowered = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            let candidate = c.to_ascii_lowercase();
            let shared_prefix = lowered
                .chars()
                .zip(candidate.chars())
                .take_while(|(a, b)| a == b)
                .count();
            (strsim::levenshtein(&lowered, &candidate), shared_prefix, *c)
        })
        .filter(|(distance, _, c)| *distance <= (c.len() / 3).max(2))
        // Ties go to the candidate sharing the longest prefix: typos are rarer up front.
        .min_by_key(|(distance, shared_prefix, _)| (*distance, std::cmp::Reverse(*shared_prefix)))
        .map(|(_, _, c)| c)
}

/// The JSON Schema of the manifest, for editors.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Fleet);
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests;
