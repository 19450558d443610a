//! What every rig of the end-to-end tests shares: its tools checked, its summary (`key: value`
//! lines, written by `cargo xtask test-board <name> --prepare`) read, and `bin/rig-up` run
//! ([`RigUp::up`], which names what holds the host's ports when the rig does not come up),
//! with `bin/rig-down` run when the [`RigUp`] guard drops, even on a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lava_test_support::ci::{require_tool, skip_or_fail};

/// A rig started by [`RigUp::start`]; `bin/rig-down` ends it when this value drops.
pub struct RigUp {
    dir: PathBuf,
    what: &'static str,
}

impl RigUp {
    /// Check `tools` (naming `install_hint` when one is missing), read the summary file
    /// `summary_file` under the rig's directory `dir` and run `bin/rig-up`: the guard and the
    /// summary's keys. `None` (after saying why, or failing under `CI=true`) when a tool is
    /// missing or the rig is not prepared (`prepare` is the command that prepares it); `what`
    /// names the rig in messages.
    pub fn start(
        dir: &Path,
        summary_file: &str,
        tools: &[&str],
        install_hint: &str,
        what: &'static str,
        prepare: &str,
    ) -> Option<(RigUp, BTreeMap<String, String>)> {
        for tool in tools {
            if !require_tool(tool, install_hint) {
                return None;
            }
        }
        let summary = match std::fs::read_to_string(dir.join(summary_file)) {
            Ok(text) => text,
            Err(e) => {
                skip_or_fail(format!(
                    "{what} is not prepared ({}: {e}; run `{prepare}`)",
                    dir.join(summary_file).display()
                ));
                return None;
            }
        };
        let urls: BTreeMap<String, String> = summary
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some((RigUp::up(dir, &[], what), urls))
    }

    /// Run the rig's `bin/rig-up` with `args` and return its guard. A rig that does not come
    /// up fails the test with what rig-up printed and the sockets this host has listening
    /// (another rig, or a leftover of one, holding a port is the usual cause).
    pub fn up(dir: &Path, args: &[&str], what: &'static str) -> RigUp {
        let output = Command::new(dir.join("bin/rig-up"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running the rig's rig-up");
        let guard = RigUp {
            dir: dir.to_path_buf(),
            what,
        };
        if !output.status.success() {
            let listening = Command::new("ss")
                .args(["-Hltunp"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_else(|e| format!("(ss: {e})"));
            panic!(
                "{what} did not come up ({}); rig-up printed:\n{}{}\nlistening sockets \
                 of this host:\n{listening}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
        guard
    }
}

impl Drop for RigUp {
    fn drop(&mut self) {
        let status = Command::new(self.dir.join("bin/rig-down"))
            .stdin(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("{}'s rig-down failed: {status:?}", self.what);
        }
    }
}
