//! A cursor over the YAML tree that records every problem it meets with the key
//! path where it met it.
//!
//! serde stops at the first error; an operator fixing a file wants all of them
//! at once (`upstreams.api.backends[1].weight: must be at least 1`). So the
//! gateway's sections are read by hand through this cursor: each accessor
//! checks one value, and on a bad one pushes `path: message` and returns
//! `None`, letting validation carry on with the rest of the file.

use std::fmt;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

/// The longest duration any key accepts.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The largest size any key accepts: 1 TiB. Past it a value is a typo (a
/// unit too many), and byte counts stay far from overflowing a `u64`.
pub const MAX_SIZE: u64 = 1 << 40;

/// One problem in a config file, located by its key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Collects errors during one validation pass.
#[derive(Default, Debug)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// A value in the tree together with its path.
#[derive(Clone)]
pub struct Node<'a> {
    pub value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: String::new(),
        }
    }

    /// The node under `key`, whose value is `value`.
    pub fn child(&self, key: &str, value: &'a Value) -> Node<'a> {
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        Node { value, path }
    }

    /// The `i`th item of a list.
    pub fn item(&self, i: usize, value: &'a Value) -> Node<'a> {
        Node {
            value,
            path: format!("{}[{i}]", self.path),
        }
    }

    /// The path of a child key, for errors about keys that are absent.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl<'a> Node<'a> {
    pub fn path(&self) -> &str {
        &self.path
    }

    fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
            Value::Tagged(_) => "a tagged value",
        }
    }

    fn wrong(&self, errs: &mut Errors, wanted: &str) {
        errs.push(
            &self.path,
            format!("expected {wanted}, found {}", self.kind()),
        );
    }

    /// The node as a mapping whose keys must all be in `allowed`; an unknown
    /// key is an error (a typo must not silently disable a limit).
    pub fn mapping(&self, errs: &mut Errors, allowed: &[&str]) -> Option<&'a Mapping> {
        let Value::Mapping(map) = self.value else {
            self.wrong(errs, "a mapping");
            return None;
        };
        for key in map.keys() {
            match key.as_str() {
                Some(k) if allowed.contains(&k) => {}
                Some(k) => errs.push(
                    self.key_path(k),
                    format!("unknown key (expected one of: {})", allowed.join(", ")),
                ),
                None => errs.push(&self.path, "keys must be strings"),
            }
        }
        Some(map)
    }

    /// The node as a mapping with free-form string keys (names of upstreams, ...).
    pub fn named_entries(&self, errs: &mut Errors) -> Vec<(&'a str, &'a Value)> {
        match self.value {
            Value::Null => Vec::new(),
            Value::Mapping(map) => map
                .iter()
                .filter_map(|(k, v)| match k.as_str() {
                    Some(k) => Some((k, v)),
                    None => {
                        errs.push(&self.path, "names must be strings");
                        None
                    }
                })
                .collect(),
            _ => {
                self.wrong(errs, "a mapping of names");
                Vec::new()
            }
        }
    }

    pub fn seq(&self, errs: &mut Errors) -> Option<&'a Vec<Value>> {
        match self.value {
            Value::Sequence(s) => Some(s),
            _ => {
                self.wrong(errs, "a list");
                None
            }
        }
    }

    pub fn str(&self, errs: &mut Errors) -> Option<&'a str> {
        match self.value {
            Value::String(s) => Some(s),
            _ => {
                self.wrong(errs, "a string");
                None
            }
        }
    }

    pub fn bool(&self, errs: &mut Errors) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.wrong(errs, "true or false");
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    pub fn uint(&self, errs: &mut Errors, min: u64, max: u64) -> Option<u64> {
        let n = match self.value {
            Value::Number(n) => n,
            _ => {
                self.wrong(errs, "a whole number");
                return None;
            }
        };
        let Some(v) = n.as_u64() else {
            if n.as_i64().is_some() {
                errs.push(&self.path, format!("must be at least {min}"));
            } else {
                errs.push(&self.path, "expected a whole number");
            }
            return None;
        };
        if v < min {
            errs.push(&self.path, format!("must be at least {min}"));
            None
        } else if v > max {
            errs.push(&self.path, format!("must be at most {max}"));
            None
        } else {
            Some(v)
        }
    }

    /// A positive, finite number (fractions allowed).
    pub fn positive(&self, errs: &mut Errors) -> Option<f64> {
        let v = match self.value {
            Value::Number(n) => n.as_f64(),
            _ => None,
        };
        match v {
            Some(v) if v.is_finite() && v > 0.0 => Some(v),
            Some(_) => {
                errs.push(&self.path, "must be a number greater than 0");
                None
            }
            None => {
                self.wrong(errs, "a number");
                None
            }
        }
    }

    /// A duration written `500ms`, `1s`, `2m`.
    pub fn duration(&self, errs: &mut Errors) -> Option<Duration> {
        let text = match self.value {
            Value::String(s) => s.as_str(),
            Value::Number(_) => {
                errs.push(
                    &self.path,
                    "a duration needs a unit, e.g. `500ms`, `1s`, `2m`",
                );
                return None;
            }
            _ => {
                self.wrong(errs, "a duration such as `1s`");
                return None;
            }
        };
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                errs.push(&self.path, "must be longer than 0");
                None
            }
            // Timers and clock arithmetic add durations to instants: a value
            // of centuries would overflow them at run time.
            Ok(d) if d > MAX_DURATION => {
                errs.push(&self.path, "must be at most 365d");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(
                    &self.path,
                    format!("`{text}` is not a duration ({e}); write e.g. `500ms`, `1s`, `2m`"),
                );
                None
            }
        }
    }

    /// A size in bytes, written `512`, `64KiB`, `10MiB` (`KB`, `MB`: powers of
    /// 1000), at most [`MAX_SIZE`]. A bare `k`/`m`/`g` is refused as
    /// ambiguous: nginx reads `10m` as MiB, most size parsers as MB.
    pub fn size(&self, errs: &mut Errors) -> Option<u64> {
        let text = match self.value {
            Value::Number(_) => return self.uint(errs, 0, MAX_SIZE),
            Value::String(s) => s.trim(),
            _ => {
                self.wrong(errs, "a size such as `64KiB`");
                return None;
            }
        };
        let unit = text.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
        if unit.len() == 1 && !unit.eq_ignore_ascii_case("b") {
            errs.push(
                &self.path,
                format!("`{text}` is ambiguous: write `{text}iB` (1024-based) or `{text}B` (1000-based)"),
            );
            return None;
        }
        match parse_size::parse_size(text) {
            Ok(v) if v > MAX_SIZE => {
                errs.push(&self.path, "must be at most 1TiB");
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                errs.push(
                    &self.path,
                    format!("`{text}` is not a size ({e}); write e.g. `512`, `64KiB`, `10MiB`"),
                );
                None
            }
        }
    }

    /// A string that starts with `/`: a request path or prefix.
    pub fn absolute_path(&self, errs: &mut Errors) -> Option<String> {
        let s = self.str(errs)?;
        if s.starts_with('/') {
            Some(s.to_string())
        } else {
            errs.push(&self.path, "must start with `/`");
            None
        }
    }

    /// A list of strings (a single string is not accepted: it is a common slip).
    pub fn str_list(&self, errs: &mut Errors) -> Vec<(Node<'a>, &'a str)> {
        let mut out = Vec::new();
        if let Some(items) = self.seq(errs) {
            for (i, item) in items.iter().enumerate() {
                let node = self.item(i, item);
                if let Some(s) = node.str(errs) {
                    out.push((node, s));
                }
            }
        }
        out
    }

    /// The value under `key` of this mapping node, as a child node.
    pub fn field(&self, map: &'a Mapping, key: &str) -> Option<Node<'a>> {
        map.get(key).map(|v| self.child(key, v))
    }
}
