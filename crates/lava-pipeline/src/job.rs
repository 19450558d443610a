//! A parsed job: its parameters (the job YAML plus what `lava-run` injects), the device,
//! the job timeout and the per-namespace test information deploy and boot actions consult.

use crate::device::Device;
use crate::error::LavaResult;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// What a test block in a namespace asks of earlier deploy/boot blocks.
#[derive(Debug, Clone)]
pub struct TestInfo {
    /// The selected test strategy's name.
    pub strategy: String,
    /// The test block as written in the job (`definitions`, `timeout`, ...).
    pub parameters: Mapping,
    /// Whether the test needs a LAVA overlay (test definitions) deployed.
    pub needs_overlay: bool,
    /// Whether the test needs deployment data (the target's shell conventions).
    pub needs_deployment_data: bool,
    /// Whether the test runs in a shell on the target.
    pub has_shell: bool,
    /// Whether input to the target needs a per-character delay.
    pub needs_character_delay: bool,
}

/// A job being built, validated or run.
#[derive(Debug)]
pub struct Job {
    /// The job ID (`--job-id`), used in paths such as `/lava-<job id>`.
    pub id: String,
    /// The job file, for messages.
    pub source: Option<PathBuf>,
    /// The job map, with `dispatcher` and `env_dut` injected.
    pub parameters: Mapping,
    /// The device the job runs on (its rendered device dictionary).
    pub device: Device,
    /// `timeouts.job` in seconds.
    pub timeout: u64,
    /// The job's scratch directory on the worker (see [`crate::scratch`]): created when
    /// the job starts, removed by cleanup.
    pub scratch_dir: PathBuf,
    /// namespace → tests declared in it (and under their `connection-namespace`).
    pub test_info: BTreeMap<String, Vec<TestInfo>>,
    warnings: Mutex<Vec<String>>,
}

impl Job {
    /// A job with `parameters` for `device`; `timeout` is `timeouts.job` in seconds.
    pub fn new(id: impl Into<String>, parameters: Mapping, device: Device, timeout: u64) -> Self {
        let id = id.into();
        let root = parameters
            .get("dispatcher")
            .and_then(|d| d.get("tmp_dir"))
            .and_then(Value::as_str)
            .map_or_else(crate::scratch::usable_root, PathBuf::from);
        let prefix = parameters
            .get("dispatcher")
            .and_then(|d| d.get("prefix"))
            .and_then(crate::value::scalar_string)
            .unwrap_or_default();
        Job {
            scratch_dir: crate::scratch::job_dir(&root, &prefix, &id),
            id,
            source: None,
            parameters,
            device,
            timeout,
            test_info: BTreeMap::new(),
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// LAVA's `Action.get_constant`: job `context`, then the block's `deployment_data`,
    /// then the device constants.
    pub fn get_constant(
        &self,
        key: &str,
        prefix: Option<&str>,
        params: &Mapping,
    ) -> LavaResult<Value> {
        if let Some(context) = self.parameters.get("context").and_then(Value::as_mapping)
            && let Some(v) = context.get(key)
        {
            return Ok(v.clone());
        }
        if let Some(data) = params.get("deployment_data").and_then(Value::as_mapping)
            && let Some(v) = data.get(key)
        {
            return Ok(v.clone());
        }
        Ok(self.device.get_constant(key, prefix)?.clone())
    }

    /// The job's `context.arch` (the architecture QEMU jobs name), as text.
    pub fn context_arch(&self) -> Option<String> {
        self.parameters
            .get("context")
            .and_then(|c| c.get("arch"))
            .and_then(crate::value::scalar_string)
    }

    /// Tests declared in `namespace`.
    pub fn tests_in(&self, namespace: &str) -> &[TestInfo] {
        self.test_info
            .get(namespace)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether a test in `namespace` needs an overlay.
    pub fn test_needs_overlay(&self, namespace: &str) -> bool {
        self.tests_in(namespace).iter().any(|t| t.needs_overlay)
    }

    /// Whether a test in `namespace` expects a shell.
    pub fn test_has_shell(&self, namespace: &str) -> bool {
        self.tests_in(namespace).iter().any(|t| t.has_shell)
    }

    /// Whether a test in `namespace` needs deployment data.
    pub fn test_needs_deployment_data(&self, namespace: &str) -> bool {
        self.tests_in(namespace)
            .iter()
            .any(|t| t.needs_deployment_data)
    }

    /// Whether a test in `namespace` needs character delays.
    pub fn test_needs_character_delay(&self, namespace: &str) -> bool {
        self.tests_in(namespace)
            .iter()
            .any(|t| t.needs_character_delay)
    }

    /// Whether the job has this protocol block (e.g. `lava-multinode`).
    pub fn has_protocol(&self, name: &str) -> bool {
        self.parameters
            .get("protocols")
            .and_then(Value::as_mapping)
            .is_some_and(|p| p.contains_key(name))
    }

    /// Record a build-time warning (logged when the logger is up).
    pub fn warn(&self, message: String) {
        if let Ok(mut w) = self.warnings.lock() {
            w.push(message);
        }
    }

    /// Take the warnings recorded while building.
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}
