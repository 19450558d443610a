//! Typed access to a block's parameters: the job's `deploy`, `boot`, `test` or `command`
//! mapping as every action of the block sees it.
//!
//! [`BlockParams`] wraps the mapping with the key path it came from
//! (`actions[1].boot`), so a wrong value is reported where it is:
//! `actions[1].boot.commands: expected a string or a list of strings, found a mapping`.
//! Optional getters answer `Ok(None)` for a missing or null key and an error for a
//! value of the wrong type; [`BlockLookups::flag`] follows LAVA's (Python's) truthiness.
//!
//! ```
//! use lava_pipeline::params::{BlockLookups, BlockParams};
//! let block: serde_yaml::Mapping =
//!     serde_yaml::from_str("{method: u-boot, commands: [boot], reset: false, timeout: {minutes: 2}}")
//!         .unwrap();
//! let params = BlockParams::from_mapping(&block, "actions[1].boot");
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

use crate::action::Params;
use crate::error::LavaError;
use crate::value::{scalar_string, truthy, type_name};
use serde_yaml::{Mapping, Value};
use std::sync::Arc;

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

/// The namespace of a block's parameters (`common` unless set): the one helper every
/// action uses.
pub fn namespace(params: &Mapping) -> &str {
    params
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("common")
}

/// LAVA's lenient lookups on a block mapping, shared by [`BlockParams`] (through its
/// `Deref`) and the helpers that take a raw `&Mapping`.
pub trait BlockLookups {
    /// The block's namespace (`common` unless set).
    fn namespace(&self) -> &str;
    /// A boot block's `method`, when it is a string.
    fn method(&self) -> Option<&str>;
    /// A deploy block's `to`, when it is a string.
    fn to(&self) -> Option<&str>;
    /// LAVA's truthiness of `key` (absent, null, false, 0 and empty are false).
    fn flag(&self, key: &str) -> bool;
    /// LAVA's truthiness of `key`, `default` when it is absent.
    fn flag_or(&self, key: &str, default: bool) -> bool;
    /// `key` when it is set and true (LAVA's `if parameters.get(key):`).
    fn truthy_value(&self, key: &str) -> Option<&Value>;
}

impl BlockLookups for Mapping {
    fn namespace(&self) -> &str {
        namespace(self)
    }
    fn method(&self) -> Option<&str> {
        self.get("method").and_then(Value::as_str)
    }
    fn to(&self) -> Option<&str> {
        self.get("to").and_then(Value::as_str)
    }
    fn flag(&self, key: &str) -> bool {
        truthy(self.get(key))
    }
    fn flag_or(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            some => truthy(some),
        }
    }
    fn truthy_value(&self, key: &str) -> Option<&Value> {
        self.get(key).filter(|v| truthy(Some(v)))
    }
}

/// A block's parameters with typed getters whose errors carry the key path. It shares
/// the block's mapping (an `Arc`), so actions keep it while they add children or run.
#[derive(Debug, Clone)]
pub struct BlockParams {
    map: Params,
    path: String,
}

impl BlockParams {
    /// The parameters `map`, found at `path` in the job.
    pub fn new(map: Params, path: impl Into<String>) -> Self {
        BlockParams {
            map,
            path: path.into(),
        }
    }

    /// A copy of `map`, found at `path` in the job.
    pub fn from_mapping(map: &Mapping, path: impl Into<String>) -> Self {
        Self::new(Arc::new(map.clone()), path)
    }

    /// No parameters at all.
    pub fn empty() -> Self {
        Self::new(Arc::new(Mapping::new()), "parameters")
    }

    /// The key path of the mapping.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The whole mapping: the escape hatch for code that reads arbitrary keys.
    pub fn raw(&self) -> &Mapping {
        &self.map
    }

    /// The key path of `key` in this mapping.
    pub fn key_path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The raw value of `key`, if present (null included).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// Whether `key` is present (even with a null value).
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn present(&self, key: &str) -> Option<&Value> {
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
    pub fn str(&self, key: &str) -> Result<Option<&str>, ParamError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    /// `key` as a string, which must be there.
    pub fn required_str(&self, key: &str) -> Result<&str, ParamError> {
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
    pub fn list(&self, key: &str) -> Result<Option<&[Value]>, ParamError> {
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

    /// `key` as a mapping (`None` when absent or null).
    pub fn raw_mapping(&self, key: &str) -> Result<Option<&Mapping>, ParamError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Mapping(map)) => Ok(Some(map)),
            Some(other) => Err(self.wrong(key, "a mapping", other)),
        }
    }

    /// `key` as a nested mapping with typed getters, whose errors name `path.key`.
    pub fn mapping(&self, key: &str) -> Result<Option<BlockParams>, ParamError> {
        Ok(self
            .raw_mapping(key)?
            .map(|map| BlockParams::from_mapping(map, self.key_path(key))))
    }
}

/// The raw mapping, for code that reads arbitrary keys or hands the block to a helper
/// taking `&Mapping`.
impl std::ops::Deref for BlockParams {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        &self.map
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
        let p = BlockParams::from_mapping(&map, "actions[0].deploy");
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
        let p = BlockParams::from_mapping(&map, "x");
        assert!(!p.flag("a") && !p.flag("b") && p.flag("c") && !p.flag("d") && p.flag("e"));
        assert!(p.flag_or("absent", true));
        assert!(!p.flag_or("d", true));
        assert_eq!(p.namespace(), "common");
        assert_eq!(BlockParams::empty().method(), None);
    }

    #[test]
    fn strings_take_one_or_many() {
        let map = block("{one: boot, many: [a, 1], bad: {x: 1}}");
        let p = BlockParams::from_mapping(&map, "actions[2].boot");
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
