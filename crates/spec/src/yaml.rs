//! YAML loading that remembers where each value came from.
//!
//! The manifest is parsed once into a `serde_json::Value` (for serde) plus a
//! map from field path (`instances[2].replicas`) to its line and column, so
//! validation errors found after deserialization can still point at the file.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

/// Deepest nesting accepted; deeper input is hostile or broken.
const MAX_DEPTH: usize = 64;

/// A 1-based position in the manifest file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number.
    pub column: usize,
}

impl Position {
    fn from_marker(marker: &Marker) -> Self {
        Position {
            line: marker.line().max(1),
            column: marker.col() + 1,
        }
    }
}

/// A parsed YAML document with the position of every field path.
#[derive(Debug, Clone)]
pub struct MarkedDocument {
    /// The document as JSON-like data.
    pub value: Value,
    /// Field path to the position of its value.
    pub positions: HashMap<String, Position>,
    /// Field path to the position of its key, for mapping entries.
    pub key_positions: HashMap<String, Position>,
}

impl MarkedDocument {
    /// Position of `path`, or of the nearest ancestor that has one.
    pub fn position_of(&self, path: &str) -> Option<Position> {
        let mut current = path.to_string();
        loop {
            if let Some(position) = self.positions.get(&current) {
                return Some(*position);
            }
            let cut = current.rfind(['.', '['])?;
            current.truncate(cut);
        }
    }
}

/// A YAML syntax or structure error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// What is wrong.
    pub message: String,
    /// Where it is.
    pub position: Position,
}

enum Frame {
    Sequence {
        path: String,
        items: Vec<Value>,
    },
    Mapping {
        path: String,
        entries: Map<String, Value>,
        pending_key: Option<String>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    positions: HashMap<String, Position>,
    key_positions: HashMap<String, Position>,
    error: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, message: String, marker: &Marker) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                message,
                position: Position::from_marker(marker),
            });
        }
    }

    /// Path of the value about to be placed in the innermost container.
    fn next_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, items }) => Some(format!("{path}[{}]", items.len())),
            Some(Frame::Mapping {
                path, pending_key, ..
            }) => pending_key.as_ref().map(|key| join_path(path, key)),
        }
    }

    /// Whether the next scalar is a mapping key rather than a value.
    fn expects_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Mapping {
                pending_key: None,
                ..
            })
        )
    }

    fn place(&mut self, value: Value, marker: &Marker) {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping {
                entries,
                pending_key,
                ..
            }) => {
                if let Some(key) = pending_key.take() {
                    if entries.contains_key(&key) {
                        let message = format!("duplicate key `{key}`");
                        self.fail(message, marker);
                        return;
                    }
                    entries.insert(key, value);
                }
            }
        }
    }

    fn open(&mut self, frame_for: impl FnOnce(String) -> Frame, marker: &Marker) {
        if self.expects_key() {
            self.fail(
                "a mapping key must be a plain value, not a list or mapping".into(),
                marker,
            );
            return;
        }
        if self.stack.len() >= MAX_DEPTH {
            self.fail(format!("nesting deeper than {MAX_DEPTH} levels"), marker);
            return;
        }
        let path = self.next_path().unwrap_or_default();
        self.positions
            .entry(path.clone())
            .or_insert(Position::from_marker(marker));
        self.stack.push(frame_for(path));
    }
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn scalar_value(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match Yaml::from_str(&text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(text)),
        _ => Value::String(text),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Alias(_) => self.fail(
                "YAML aliases (*name) are not supported in manifests; write the value out".into(),
                &marker,
            ),
            Event::Scalar(text, style, _, _) => {
                if self.expects_key() {
                    if let Some(Frame::Mapping {
                        path, pending_key, ..
                    }) = self.stack.last_mut()
                    {
                        let full = join_path(path, &text);
                        self.key_positions
                            .entry(full)
                            .or_insert(Position::from_marker(&marker));
                        *pending_key = Some(text);
                    }
                } else {
                    if let Some(path) = self.next_path() {
                        self.positions
                            .entry(path)
                            .or_insert(Position::from_marker(&marker));
                    }
                    self.place(scalar_value(text, style), &marker);
                }
            }
            Event::SequenceStart(..) => self.open(
                |path| Frame::Sequence {
                    path,
                    items: Vec::new(),
                },
                &marker,
            ),
            Event::MappingStart(..) => self.open(
                |path| Frame::Mapping {
                    path,
                    entries: Map::new(),
                    pending_key: None,
                },
                &marker,
            ),
            Event::SequenceEnd | Event::MappingEnd => {
                let value = match self.stack.pop() {
                    Some(Frame::Sequence { items, .. }) => Value::Array(items),
                    Some(Frame::Mapping { entries, .. }) => Value::Object(entries),
                    None => return,
                };
                self.place(value, &marker);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Parse one YAML document, keeping the position of every field.
pub fn parse(text: &str) -> Result<MarkedDocument, YamlError> {
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
        positions: HashMap::new(),
        key_positions: HashMap::new(),
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(scan) = parser.load(&mut builder, false) {
        return Err(YamlError {
            message: scan.info().to_string(),
            position: Position::from_marker(scan.marker()),
        });
    }
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(MarkedDocument {
        value: builder.root.unwrap_or(Value::Null),
        positions: builder.positions,
        key_positions: builder.key_positions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_paths() {
        let doc = parse("a: 1\nlist:\n  - name: x\n    n: 2\n").expect("valid yaml");
        assert_eq!(doc.value["list"][0]["n"], 2);
        let pos = doc.positions.get("list[0].n").expect("position");
        assert_eq!((pos.line, pos.column), (4, 8));
        let key = doc.key_positions.get("list[0].n").expect("key position");
        assert_eq!((key.line, key.column), (4, 5));
        assert_eq!(doc.position_of("list[0].n.deeper").map(|p| p.line), Some(4));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let doc = parse("a: '10'\nb: 10\nc: true\nd: ~\n").expect("valid yaml");
        assert_eq!(doc.value["a"], "10");
        assert_eq!(doc.value["b"], 10);
        assert_eq!(doc.value["c"], true);
        assert!(doc.value["d"].is_null());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let cases = [
            "a: &x [1]\nb: *x\n",
            "a: 1\na: 2\n",
            "? [1, 2]\n: 3\n",
            "a: [\n",
        ];
        for case in cases {
            assert!(parse(case).is_err(), "accepted {case:?}");
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(parse(&deep).is_err());
    }
}
