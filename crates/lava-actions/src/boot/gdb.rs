//! The `gdb` boot: load and start the image with gdb (optionally in docker).

use crate::common::fastboot::{WaitUSBSerialDeviceAction, has_hard_reset};
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("gdb", |_| Box::new(BootGDB))
            .device_method_with(
                "gdb",
                "\"gdb\" is not in the device configuration boot methods",
            )
            .method("gdb")
            .check(|device, params| {
                let Some(commands) = params.get("commands") else {
                    return Err("\"commands\" not in parameters".into());
                };
                let defined = device
                    .boot_method("gdb")
                    .and_then(Value::as_mapping)
                    .is_some_and(|m| m.contains_key(commands));
                if !defined {
                    let shown = lava_pipeline::value::scalar_string(commands).unwrap_or_default();
                    return Err(format!("commands \"{shown}\" undefined for the device"));
                }
                Ok(())
            }),
    );
}

/// `boot-gdb`.
#[derive(Debug, Default)]
pub struct BootGDB;

#[async_trait]
impl Action for BootGDB {
    action_identity!("boot-gdb", "BootGDB", "boot with gdb", "boot with gdb");
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(BootGDBRetry::default())
    }
}

/// `boot-gdb-retry`: run gdb with the device's command set for this job.
#[derive(Debug, Default)]
pub struct BootGDBRetry {
    /// The gdb binary.
    pub gdb: Option<String>,
    /// The gdb commands of the job's command set (its `commands`), run in order.
    pub commands: Vec<String>,
    /// The gdb command-line arguments (the command set's `arguments`).
    pub arguments: Vec<String>,
    /// Seconds to wait before `continue` (the gdb method's `wait_before_continue`, 0 if unset).
    pub wait_before_continue: u64,
    /// The docker image to run gdb in, when the command set uses docker.
    pub container: Option<String>,
    /// Device nodes passed into the gdb container (the command set's `docker.devices`).
    pub devices: Vec<String>,
}

#[async_trait]
impl Action for BootGDBRetry {
    action_identity!(
        "boot-gdb-retry",
        "BootGDBRetry",
        "boot with gdb with retry and optional docker support",
        "boot with gdb with retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let method = device.boot_method("gdb");
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_sequence)
                .map(|s| {
                    s.iter()
                        .filter_map(lava_pipeline::value::scalar_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        self.gdb = method
            .and_then(|m| lava_pipeline::value::lookup(m, &["parameters", "command"]))
            .and_then(lava_pipeline::value::scalar_string);
        self.wait_before_continue = method
            .and_then(|m| lava_pipeline::value::lookup(m, &["parameters", "wait_before_continue"]))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if let Some(set) = pipeline
            .param("commands")
            .and_then(|c| method.and_then(|m| m.get(c)))
        {
            self.commands = strings(set.get("commands"));
            self.arguments = strings(set.get("arguments"));
            let docker = set.get("docker");
            if truthy(docker.and_then(|d| d.get("use"))) {
                self.container = pipeline
                    .param("container")
                    .or_else(|| docker.and_then(|d| d.get("container")))
                    .and_then(lava_pipeline::value::scalar_string);
                self.devices = strings(docker.and_then(|d| d.get("devices")));
            }
        }
        if has_hard_reset(device) {
            pipeline.add(ResetDevice::new())?;
        }
        pipeline.add(WaitUSBSerialDeviceAction::new())?;
        pipeline.add(ConnectDevice::new())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let device = &ctx.job.device;
        let Some(method) = device.boot_method("gdb") else {
            return Ok(());
        };
        let Some(parameters) = method.get("parameters") else {
            ctx.error("\"parameters\" not defined in device configuration");
            return Ok(());
        };
        let Some(gdb) = parameters
            .get("command")
            .and_then(lava_pipeline::value::scalar_string)
        else {
            ctx.error("\"command\" not defined under \"parameters\" in device configuration");
            return Ok(());
        };
        crate::common::power::require_tool(&gdb)?;
        let name = ctx
            .meta
            .parameters
            .get("commands")
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_default();
        let Some(set) = method.get(name.as_str()) else {
            ctx.error(format!("'{name}' not available"));
            return Ok(());
        };
        if !matches!(set.get("commands"), Some(Value::Sequence(_))) {
            ctx.error("'commands' should be a list");
        }
        if !matches!(set.get("arguments"), Some(Value::Sequence(_))) {
            ctx.error("'arguments' should be a list");
        }
        let uses_docker = truthy(set.get("docker").and_then(|d| d.get("use")));
        if uses_docker {
            crate::common::power::require_tool("docker")?;
            if self.container.is_none() {
                ctx.error("a docker container should be defined");
            }
        } else if truthy(ctx.meta.parameters.get("container")) {
            ctx.error("Requesting a docker container while docker is not used for this device");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

#[cfg(test)]
mod tests {

    use lava_pipeline::Device;
    use serde_yaml::Mapping;

    #[test]
    fn strategy_needs_a_defined_command_set() {
        let device =
            Device::from_yaml("actions: {boot: {methods: {gdb: {openocd: {}}}}}", None).unwrap();
        let ok: Mapping = serde_yaml::from_str("{method: gdb, commands: openocd}").unwrap();
        assert!(
            crate::strategy(lava_pipeline::Section::Boot, "gdb")
                .accepts(&device, &ok)
                .is_ok()
        );
        let bad: Mapping = serde_yaml::from_str("{method: gdb, commands: jlink}").unwrap();
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Boot, "gdb")
                .accepts(&device, &bad)
                .unwrap_err(),
            "commands \"jlink\" undefined for the device"
        );
    }
}
