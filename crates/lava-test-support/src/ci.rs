//! The CI rule: in CI (`CI=true`) a missing prerequisite is a failure, never a skip;
//! elsewhere the test says what is missing and skips.

use std::fmt::Display;
use std::path::Path;

/// Whether the tests run in CI, where every prerequisite must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A prerequisite is missing: panics under CI, otherwise prints `skipping: <reason>` so
/// the caller can return (skip).
pub fn skip_or_fail(reason: impl Display) {
    if in_ci() {
        panic!("CI=true, but {reason}");
    }
    eprintln!("skipping: {reason} (set CI=true to require it)");
}

/// Whether `tool` (a path, or a program name looked up on `PATH`) is there; when it is
/// not, [`skip_or_fail`] with `install` (how to get it) in the reason.
pub fn require_tool(tool: &str, install: &str) -> bool {
    if tool_exists(tool) {
        return true;
    }
    skip_or_fail(format!("{tool} is not installed ({install})"));
    false
}

/// Whether `tool` exists: as given when it holds a `/`, else in a `PATH` directory.
pub fn tool_exists(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_by_path_or_name() {
        assert!(tool_exists("/bin/sh"));
        assert!(tool_exists("sh"));
        assert!(!tool_exists("/nonexistent/tool"));
        assert!(!tool_exists("no-such-tool-lava-rs"));
    }

    #[test]
    fn a_present_tool_is_required_without_skipping() {
        assert!(require_tool("sh", "it is POSIX"));
    }
}
