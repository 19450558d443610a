//! The `nodebooter` boot: run the nodebooter container that network-boots the DUT.

use crate::common::login::{AutoLoginAction, OverlayUnpack};
use crate::common::power::ResetDevice;
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, LavaError, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("nodebooter", |_| Box::new(BootNodebooterAction))
            .device_method("nodebooter")
            .method("nodebooter"),
    );
}

/// The number of NICs nodebooter can configure.
pub const NIC_NO_OF_SUPPORTED: usize = 4;

/// `boot-nodebooter`.
#[derive(Debug, Default)]
pub struct BootNodebooterAction;

#[async_trait]
impl Action for BootNodebooterAction {
    action_identity!(
        "boot-nodebooter",
        "BootNodebooterAction",
        "boot nodebooter",
        "boot nodebooter"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(RunNodebooterContainer::default())?;
        pipeline.add(ConfigureNodebooter)?;
        pipeline.add(ResetDevice::new())?;
        if pipeline.param("prompts").is_some() {
            pipeline.add(AutoLoginAction::new())?;
        }
        if pipeline.param("transfer_overlay").is_some() {
            pipeline.add(OverlayUnpack::new())?;
        }
        Ok(())
    }
}

/// The device `environment` checks shared by both nodebooter actions; returns `DUT_MAC`
/// and `DUT_IFACE`.
fn check_environment(device: &Device, ctx: &mut ValidateContext<'_>) -> (bool, bool) {
    match device.lookup(&["environment"]) {
        None => {
            ctx.error("Missing 'environment' variable in the device configuration");
            (false, false)
        }
        Some(Value::Mapping(env)) => (env.contains_key("DUT_MAC"), env.contains_key("DUT_IFACE")),
        Some(_) => {
            ctx.error("Incorrect environment format in device configuration");
            (false, false)
        }
    }
}

/// `run-nodebooter-container`.
#[derive(Debug, Default)]
pub struct RunNodebooterContainer {
    /// The block's `docker` settings, as written.
    pub docker: Option<Value>,
}

#[async_trait]
impl Action for RunNodebooterContainer {
    action_identity!(
        "run-nodebooter-container",
        "RunNodebooterContainer",
        "run nodebooter container based on image",
        "run nodebooter container"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.docker = pipeline.param("docker").cloned();
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.docker.is_none() {
            ctx.error("Specify docker parameter");
            return Err(LavaError::job("Not specified 'docker' in parameters"));
        }
        let (mac, iface) = check_environment(&ctx.job.device, ctx);
        if !mac {
            ctx.error("Missing DUT_MAC parameter in the device config 'environment' variable");
        }
        if !iface {
            ctx.error("Missing DUT_IFACE parameter in the device config 'environment' variable");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `configure-nodebooter`: set up nodebooter and register the DUT through its API.
#[derive(Debug, Default)]
pub struct ConfigureNodebooter;

#[async_trait]
impl Action for ConfigureNodebooter {
    action_identity!(
        "configure-nodebooter",
        "ConfigureNodebooter",
        "update nodebooter settings and add dut via API",
        "configure nodebooter"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let (mac, _) = check_environment(&ctx.job.device, ctx);
        if !mac {
            ctx.error("Missing DUT_MAC parameter in the device config 'environment' variable");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}
