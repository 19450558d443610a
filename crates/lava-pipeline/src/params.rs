//! Typed access to a block's parameters: the job's `deploy`, `boot`, `test` or `command`
//! mapping as every action of the block sees it.
//!
//! [`BlockParams`] wraps the mapping with the key path it came from
//! (`actions[1].boot`), so a wrong value is reported where it is:
//! `actions[1].boot.commands: expected a string or a list of strings, found a mapping`.
//! Optional getters answer `Ok(None)` for a missing or null key and an error for a
//! value of the wrong type; [`BlockParams::flag`] follows LAVA's (Python's) truthiness.
//!
//! ```
//! use lava_pipeline::params::BlockParams;
//! let block: serde_yaml::Mapping =
//!     serde_yaml::from_str("{method: u-boot, commands: [boot], reset: false, timeout: {minutes: 2}}")
//!         .unwrap();
//! let params = BlockParams::new(&block, "actions[1].boot");
//! assert_eq!(params.method(), Some("u-boot"));
//! assert_eq!(params.namespace(), "common");
//! assert!(!params.flag_or("reset", true));
//! assert_eq!(params.strings("commands").unwrap(), ["boot"]);
//! assert_eq!(
//!     params.str("commands").unwrap_err().to_string(),
//!     "actions[1].boot.commands: expected a string, found a list"
//! );
//! let timeout = params.mapping("timeout").unwrap().unwrap();
//! assert_eq!(timeout.u64("minutes").unwrap(), Some(2));
//! ```

use crate::error::LavaError;
use crate::value::{scalar_string, truthy, type_name};
use serde_yaml::{Mapping, Value};
use std::borrow::Cow;

/// A block parameter that is missing or not of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A required key is absent.
    #[error("{path}: missing required key")]
    Missing {
        /// The key path (`actions[1].boot.commands`).
        path: String,
    },
    /// The value has the wrong type.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// The key path.
        path: String,
        /// What was expected (`a string`).
        expected: &'static str,
        /// What was found (`a list`).
        found: &'static str,
    },
}

impl From<ParamError> for LavaError {
    /// A bad block parameter is the submission's fault: a JobError.
    fn from(error: ParamError) -> Self {
        LavaError::job(error.to_string())
    }
}

/// The key path of a block from an action's level and section (`actions[1].boot` for
/// level `2.3`); `parameters` when the level names no job block.
pub fn block_path(level: &str, section: &str) -> String {
    let block = level
        .split('.')
        .next()
        .and_then(|root| root.parse::<usize>().ok())
        .and_then(|root| root.checked_sub(1));
    match block {
        Some(index) if !section.is_empty() => format!("actions[{index}].{section}"),
        _ => "parameters".to_string(),
    }
}

/// A block's parameters with typed getters whose errors carry the key path.
#[derive(Debug, Clone)]
pub struct BlockParams<'a> {
    map: &'a Mapping,
    path: Cow<'a, str>,
}

/// An empty mapping for [`BlockParams::empty`] and absent nested mappings.
static EMPTY: std::sync::LazyLock<Mapping> = std::sync::LazyLock::new(Mapping::new);

impl<'a> BlockParams<'a> {
    /// The parameters `map`, found at `path` in the job.
    pub fn new(map: &'a Mapping, path: impl Into<Cow<'a, str>>) -> Self {
        BlockParams {
            map,
            path: path.into(),
        }
    }

    /// No parameters at all.
    pub fn empty() -> BlockParams<'static> {
        BlockParams {
            map: &EMPTY,
            path: Cow::Borrowed("parameters"),
        }
    }

    /// The key path of the mapping.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The whole mapping: the escape hatch for code that reads arbitrary keys.
    pub fn raw(&self) -> &'a Mapping {
        self.map
    }

    /// The key path of `key` in this mapping.
    pub fn key_path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The raw value of `key`, if present (null included).
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// Whether `key` is present (even with a null value).
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The block's namespace (`common` unless set).
    pub fn namespace(&self) -> &'a str {
        self.map
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("common")
    }

    /// A boot block's `method`, when it is a string.
    pub fn method(&self) -> Option<&'a str> {
        self.map.get("method").and_then(Value::as_str)
    }

    /// A deploy block's `to`, when it is a string.
    pub fn to(&self) -> Option<&'a str> {
        self.map.get("to").and_then(Value::as_str)
    }

    /// LAVA's truthiness of `key` (absent, null, false, 0 and empty are false).
    pub fn flag(&self, key: &str) -> bool {
        truthy(self.map.get(key))
    }

    /// LAVA's truthiness of `key`, `default` when it is absent.
    pub fn flag_or(&self, key: &str, default: bool) -> bool {
        match self.map.get(key) {
            None => default,
            some => truthy(some),
        }
    }

    fn present(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn wrong(&self, key: &str, expected: &'static str, found: &Value) -> ParamError {
        ParamError::WrongType {
            path: self.key_path(key),
            expected,
            found: type_name(found),
        }
    }

    /// `key` as a string; `None` when absent or null.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, ParamError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    /// `key` as a string, which must be there.
    pub fn required_str(&self, key: &str) -> Result<&'a str, ParamError> {
        self.str(key)?.ok_or_else(|| ParamError::Missing {
            path: self.key_path(key),
        })
    }

    /// `key` as text: a string, number or boolean written as Python prints it.
    pub fn text(&self, key: &str) -> Result<Option<String>, ParamError> {
        match self.present(key) {
            None => Ok(None),
            Some(value) => scalar_string(value)
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a string, number or boolean", value)),
        }
    }

    /// `key` as a non-negative integer.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, ParamError> {
        match self.present(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a non-negative integer", value)),
        }
    }

    /// `key` as a list.
    pub fn list(&self, key: &str) -> Result<Option<&'a [Value]>, ParamError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Sequence(items)) => Ok(Some(items)),
            Some(other) => Err(self.wrong(key, "a list", other)),
        }
    }

    /// `key` as one string or a list of scalars (LAVA accepts both for commands);
    /// empty when absent.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, ParamError> {
        const EXPECTED: &str = "a string or a list of strings";
        match self.present(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| scalar_string(item).ok_or_else(|| self.wrong(key, EXPECTED, item)))
                .collect(),
            Some(other) => Err(self.wrong(key, EXPECTED, other)),
        }
    }

    /// `key` as a nested mapping, whose own errors name `path.key`.
    pub fn mapping(&self, key: &str) -> Result<Option<BlockParams<'a>>, ParamError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Mapping(map)) => Ok(Some(BlockParams::new(map, self.key_path(key)))),
            Some(other) => Err(self.wrong(key, "a mapping", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Mapping {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn paths_come_from_level_and_section() {
        assert_eq!(block_path("2.3.1", "boot"), "actions[1].boot");
        assert_eq!(block_path("1", "deploy"), "actions[0].deploy");
        assert_eq!(block_path("", ""), "parameters");
    }

    #[test]
    fn missing_and_null_are_none_and_wrong_types_name_the_key() {
        let map = block("{to: tftp, os: ~, kernel: {url: x}, count: -1, n: 3}");
        let p = BlockParams::new(&map, "actions[0].deploy");
        assert_eq!(p.str("os"), Ok(None));
        assert_eq!(p.str("absent"), Ok(None));
        assert_eq!(p.u64("n"), Ok(Some(3)));
        assert_eq!(
            p.u64("count").unwrap_err().to_string(),
            "actions[0].deploy.count: expected a non-negative integer, found a number"
        );
        assert_eq!(
            p.required_str("image").unwrap_err().to_string(),
            "actions[0].deploy.image: missing required key"
        );
        let kernel = p.mapping("kernel").unwrap().unwrap();
        assert_eq!(
            kernel.list("url").unwrap_err().to_string(),
            "actions[0].deploy.kernel.url: expected a list, found a string"
        );
        let err: LavaError = p.list("to").unwrap_err().into();
        assert_eq!(err.kind, crate::ErrorKind::Job);
    }

    #[test]
    fn truthiness_is_lavas() {
        let map = block("{a: 0, b: '', c: [x], d: false, e: yes}");
        let p = BlockParams::new(&map, "x");
        assert!(!p.flag("a") && !p.flag("b") && p.flag("c") && !p.flag("d") && p.flag("e"));
        assert!(p.flag_or("absent", true));
        assert!(!p.flag_or("d", true));
        assert_eq!(p.namespace(), "common");
        assert_eq!(BlockParams::empty().method(), None);
    }

    #[test]
    fn strings_take_one_or_many() {
        let map = block("{one: boot, many: [a, 1], bad: {x: 1}}");
        let p = BlockParams::new(&map, "actions[2].boot");
        assert_eq!(p.strings("one").unwrap(), ["boot"]);
        assert_eq!(p.strings("many").unwrap(), ["a", "1"]);
        assert!(p.strings("none").unwrap().is_empty());
        assert!(
            p.strings("bad")
                .unwrap_err()
                .to_string()
                .starts_with("actions[2].boot.bad: expected a string or a list of strings")
        );
    }
}
