//! The device environment: `deploy-device-env` (reads `env_dut` and the shell file of
//! the deployment data) and `export-device-env` (writes it on the device after login).

use lava_pipeline::{
    Action, Job, LavaResult, Pipeline, RunContext, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;

/// LAVA's default line separator on the device.
pub const LINE_SEPARATOR: &str = "\n";

/// The environment to set on the device, computed from the job's `env_dut`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceEnvironment {
    /// The init file the variables are appended to (`lava_test_shell_file`).
    pub shell_file: Option<String>,
    /// Variables to export (`None` when the job gives no `env_dut`).
    pub variables: Option<BTreeMap<String, String>>,
    /// The line separator of the deployed OS.
    pub line_separator: String,
}

/// Build the device environment: `Ok` or the validation error messages.
pub fn device_environment(job: &Job, params: &Mapping) -> Result<DeviceEnvironment, Vec<String>> {
    let mut errors = Vec::new();
    let shell_file = job
        .get_constant("lava_test_shell_file", Some("posix"), params)
        .ok()
        .filter(|v| lava_pipeline::value::truthy(Some(v)))
        .and_then(|v| lava_pipeline::value::scalar_string(&v));
    if shell_file.is_none() {
        errors.push("Invalid deployment data - missing lava_test_shell_file".to_string());
    }
    let line_separator = params
        .get("deployment_data")
        .and_then(|d| d.get("line_separator"))
        .and_then(Value::as_str)
        .unwrap_or(LINE_SEPARATOR)
        .to_string();
    let mut env = DeviceEnvironment {
        shell_file: None,
        variables: None,
        line_separator,
    };
    if let Some(text) = job
        .parameters
        .get("env_dut")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        match serde_yaml::from_str::<Value>(text) {
            Ok(conf) => {
                env.variables = Some(environment_from(&conf));
                env.shell_file = shell_file;
            }
            Err(e) => {
                errors.push(e.to_string());
                return Err(errors);
            }
        }
    }
    if errors.is_empty() {
        Ok(env)
    } else {
        Err(errors)
    }
}

/// The variables of an `env_dut` document: the worker's environment unless `purge`,
/// minus `removes`, plus `overrides`.
fn environment_from(conf: &Value) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = if lava_pipeline::value::truthy(conf.get("purge")) {
        BTreeMap::new()
    } else {
        std::env::vars().collect()
    };
    if let Some(removes) = conf.get("removes").and_then(Value::as_sequence) {
        for key in removes.iter().filter_map(Value::as_str) {
            vars.remove(key);
        }
    }
    if let Some(overrides) = conf.get("overrides").and_then(Value::as_mapping) {
        for (k, v) in overrides {
            if let (Some(k), Some(v)) = (
                lava_pipeline::value::scalar_string(k),
                lava_pipeline::value::scalar_string(v),
            ) {
                vars.insert(k, v);
            }
        }
    }
    vars
}

/// `deploy-device-env`: check and record the device environment for the namespace.
#[derive(Debug, Default)]
pub struct DeployDeviceEnvironment;

impl DeployDeviceEnvironment {
    /// Creates the `deploy-device-env` action.
    pub fn new() -> Self {
        DeployDeviceEnvironment
    }
}

#[async_trait]
impl Action for DeployDeviceEnvironment {
    action_identity!(
        "deploy-device-env",
        "DeployDeviceEnvironment",
        "deploy device environment",
        "deploy device environment"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if let Err(errors) = device_environment(ctx.job, &ctx.meta.parameters) {
            ctx.add_errors(errors);
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let params = ctx.meta().params();
        let env = device_environment(&ctx.job, &params)
            .map_err(|e| lava_pipeline::LavaError::job(e.join(", ")))?;
        ctx.set_data(
            "deploy-device-env",
            "environment",
            "line_separator",
            env.line_separator.clone(),
        );
        if let Some(vars) = env.variables {
            let mut map = Mapping::new();
            for (k, v) in vars {
                map.insert(k.into(), v.into());
            }
            ctx.set_data("deploy-device-env", "environment", "env_dict", map);
            if let Some(file) = env.shell_file {
                ctx.set_data("deploy-device-env", "environment", "shell_file", file);
            }
        }
        Ok(())
    }
}

/// `export-device-env`: append the exports to the shell file on the device and source it.
#[derive(Debug, Default)]
pub struct ExportDeviceEnvironment;

impl ExportDeviceEnvironment {
    /// Creates the `export-device-env` action.
    pub fn new() -> Self {
        ExportDeviceEnvironment
    }
}

/// The shell lines `export-device-env` sends: one append per variable, then sourcing the
/// file, then the device's `dynamic_data` exports.
pub fn export_lines(
    shell_file: Option<&str>,
    variables: &BTreeMap<String, String>,
    dynamic_data: Option<&Mapping>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let file = shell_file.unwrap_or_default();
    for (k, v) in variables {
        lines.push(format!("echo export {k}=\\'{v}\\' >> {file}"));
    }
    if let Some(file) = shell_file {
        lines.push(format!(". {file}"));
    }
    for (k, v) in dynamic_data.into_iter().flatten() {
        if let (Some(k), Some(v)) = (
            lava_pipeline::value::scalar_string(k),
            lava_pipeline::value::scalar_string(v),
        ) {
            lines.push(format!("export {k}='{v}'"));
        }
    }
    lines
}

#[async_trait]
impl Action for ExportDeviceEnvironment {
    action_identity!(
        "export-device-env",
        "ExportDeviceEnvironment",
        "Exports environment variables to the device",
        "Exports environment variables action"
    );
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::console::export_device_env(ctx).await
    }
}
