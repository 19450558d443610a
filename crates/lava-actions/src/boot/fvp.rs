//! The `fvp` boot: run an Arm Fixed Virtual Platform model in docker and use its
//! telnet-exposed serial console.

use crate::common::fastboot::test_has_shell;
use crate::common::login::{AutoLoginAction, ExpectShellSession, OverlayUnpack};
use crate::common::power::ReadFeedback;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, LavaError, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("fvp", |_| Box::new(BootFVPAction))
            .device_method("fvp")
            .method("fvp")
            .param("image", "\"image\" was not in boot parameters"),
    );
}

/// `boot-fvp`.
#[derive(Debug, Default)]
pub struct BootFVPAction;

#[async_trait]
impl Action for BootFVPAction {
    action_identity!("boot-fvp", "BootFVPAction", "boot fvp", "boot fvp");
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(BootFVPMain)?;
        if pipeline.param("prompts").is_some() {
            pipeline.add(ReadFeedback::new(false, false))?;
            pipeline.add(AutoLoginAction::new())?;
            if test_has_shell(pipeline) {
                pipeline.add(ExpectShellSession::new())?;
                if pipeline.param("transfer_overlay").is_some() {
                    pipeline.add(OverlayUnpack::new())?;
                }
            }
        }
        if truthy(pipeline.param("erpc_app")) {
            pipeline.add(RunFVPeRPCApp::default())?;
        }
        if truthy(pipeline.param("commands")) {
            pipeline.add(RunFVPShellCommands)?;
        }
        Ok(())
    }
}

/// `boot-fvp-main`.
#[derive(Debug, Default)]
pub struct BootFVPMain;

#[async_trait]
impl Action for BootFVPMain {
    action_identity!("boot-fvp-main", "BootFVPMain", "boot fvp", "boot fvp");
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(FvpModelAction::new(FvpStep::CheckVersion))?;
        pipeline.add(FvpModelAction::new(FvpStep::Start))?;
        if pipeline.param("use_telnet").is_none_or(|v| truthy(Some(v))) {
            pipeline.add(GetFVPSerialAction)?;
            pipeline.add(ReadFeedback::new(false, false))?;
        }
        Ok(())
    }
}

/// The two docker runs of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FvpStep {
    /// `check-fvp-version`: run the model's `--version`.
    #[default]
    CheckVersion,
    /// `run-fvp`: start the model and wait for its console string.
    Start,
}

/// The docker settings of a model run, from the block's `docker` and the device's
/// `actions.boot.methods.fvp.options`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FvpDocker {
    /// The docker image the model runs in (the block's `docker.name`).
    pub image: Option<String>,
    /// Use the image already on the worker, without pulling (`docker.local`).
    pub local: bool,
    /// `--cpus`, `--memory`, `--privileged`, `--device`, `--network`, `--volume`.
    pub extra_options: Vec<String>,
    /// The environment variable carrying the licence server (the block's `license_variable`).
    pub license_variable: Option<String>,
    /// The UBL licence code (the block's `ubl_license`, else the device's fvp option).
    pub ubl_license: Option<String>,
    /// Extra environment entries for the model (the block's `environment`).
    pub environment: Vec<String>,
}

impl FvpDocker {
    fn read(device: &Device, params: &Mapping) -> Self {
        let docker = params.get("docker");
        let options = device
            .boot_method("fvp")
            .and_then(|v| v.get("options"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let text = |v: &Value| lava_pipeline::value::scalar_string(v).unwrap_or_default();
        let mut extra = Vec::new();
        for (key, flag) in [("cpus", "--cpus"), ("memory", "--memory")] {
            if let Some(v) = options.get(key).filter(|v| truthy(Some(v))) {
                extra.push(flag.to_string());
                extra.push(text(v));
            }
        }
        if truthy(options.get("privileged")) {
            extra.push("--privileged".into());
        }
        for (key, flag) in [
            ("devices", "--device"),
            ("networks", "--network"),
            ("volumes", "--volume"),
        ] {
            for item in options
                .get(key)
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                extra.push(flag.to_string());
                extra.push(text(item));
            }
        }
        let ubl_license = params
            .get("ubl_license")
            .or_else(|| options.get("ubl_license").filter(|v| truthy(Some(v))))
            .map(text);
        FvpDocker {
            image: docker
                .and_then(|d| d.get("name"))
                .and_then(lava_pipeline::value::scalar_string),
            local: truthy(docker.and_then(|d| d.get("local"))),
            extra_options: extra,
            license_variable: params.get("license_variable").map(text),
            ubl_license,
            environment: params
                .get("environment")
                .and_then(Value::as_sequence)
                .map(|s| s.iter().map(text).collect())
                .unwrap_or_default(),
        }
    }
}

/// `check-fvp-version` or `run-fvp`.
#[derive(Debug, Default)]
pub struct FvpModelAction {
    /// Which of the two FVP actions this is.
    pub step: FvpStep,
    /// The docker settings of the model run.
    pub docker: FvpDocker,
    /// The container name (`<container_name>-lava-<job>` or `lava-<job>-<level>`).
    pub container: String,
}

impl FvpModelAction {
    /// The action for `step`; its docker settings are read from the block and device.
    pub fn new(step: FvpStep) -> Self {
        FvpModelAction {
            step,
            ..Self::default()
        }
    }
}

#[async_trait]
impl Action for FvpModelAction {
    fn name(&self) -> &str {
        match self.step {
            FvpStep::CheckVersion => "check-fvp-version",
            FvpStep::Start => "run-fvp",
        }
    }
    fn class_name(&self) -> &str {
        match self.step {
            FvpStep::CheckVersion => "CheckFVPVersionAction",
            FvpStep::Start => "StartFVPAction",
        }
    }
    fn description(&self) -> &str {
        match self.step {
            FvpStep::CheckVersion => "call docker run with fvp version entry point",
            FvpStep::Start => "call docker run with fvp boot entry point",
        }
    }
    fn summary(&self) -> &str {
        match self.step {
            FvpStep::CheckVersion => "check fvp version",
            FvpStep::Start => "run fvp model",
        }
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.docker = FvpDocker::read(pipeline.device(), pipeline.parameters());
        let job = pipeline.job();
        let level = format!(
            "{}.{}",
            pipeline.parent_level().unwrap_or("0"),
            pipeline.len() + 1
        );
        self.container = match pipeline
            .param("docker")
            .and_then(|d| d.get("container_name"))
            .and_then(Value::as_str)
        {
            Some(name) => format!("{name}-lava-{}", job.id),
            None => format!("lava-{}-{level}", job.id),
        };
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = ctx.meta.params();
        if params.get("docker").and_then(|d| d.get("name")).is_none() {
            ctx.error("Specify docker image name");
            return Err(LavaError::job("Not specified 'docker' in parameters"));
        }
        if self.step == FvpStep::Start {
            if !params.contains_key("console_string") {
                ctx.error("'console_string' is not set.");
            }
            if !params.contains_key("arguments") {
                ctx.error("'arguments' is not set.");
            }
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `fvp-serial-connect`: telnet to the model's serial port.
#[derive(Debug, Default)]
pub struct GetFVPSerialAction;

#[async_trait]
impl Action for GetFVPSerialAction {
    action_identity!(
        "fvp-serial-connect",
        "GetFVPSerialAction",
        "connect to the fvp serial connection via telnet",
        "connect to the fvp serial output"
    );
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `run-fvp-erpc-app`: run the eRPC host application against the model.
#[derive(Debug, Default)]
pub struct RunFVPeRPCApp {
    /// The eRPC host application to run (the block's `erpc_app`).
    pub app: String,
}

#[async_trait]
impl Action for RunFVPeRPCApp {
    action_identity!(
        "run-fvp-erpc-app",
        "RunFVPeRPCApp",
        "run FVP eRPC app",
        "run FVP eRPC app"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.app = pipeline
            .param("erpc_app")
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_default();
        Ok(())
    }
    fn validate(&self, _ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.app.is_empty() {
            return Err(LavaError::job("'erpc_app' cannot be empty"));
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `run-fvp-shell-commands`: run the block's `commands` in the model's container.
#[derive(Debug, Default)]
pub struct RunFVPShellCommands;

#[async_trait]
impl Action for RunFVPShellCommands {
    action_identity!(
        "run-fvp-shell-commands",
        "RunFVPShellCommands",
        "run shell commands in FVP docker container",
        "run shell commands in FVP docker container"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        match ctx.meta.parameters.get("commands") {
            None => ctx.error("'commands' cannot be empty"),
            Some(v) if !truthy(Some(v)) => ctx.error("'commands' cannot be empty"),
            Some(Value::Sequence(_)) => {}
            Some(_) => ctx.error("'commands' must be a list"),
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_settings_prefer_the_job_ubl_license() {
        let device = Device::from_yaml(
            "actions: {boot: {methods: {fvp: {options: {cpus: 4, memory: 0, volumes: ['/x:/y'], ubl_license: dev}}}}}",
            None,
        )
        .unwrap();
        let params: Mapping =
            serde_yaml::from_str("{docker: {name: fvp:1, local: true}, ubl_license: job}").unwrap();
        let docker = FvpDocker::read(&device, &params);
        assert_eq!(docker.image.as_deref(), Some("fvp:1"));
        assert!(docker.local);
        assert_eq!(docker.extra_options, ["--cpus", "4", "--volume", "/x:/y"]);
        assert_eq!(docker.ubl_license.as_deref(), Some("job"));
        let params: Mapping = serde_yaml::from_str("{docker: {name: fvp}}").unwrap();
        assert_eq!(
            FvpDocker::read(&device, &params).ubl_license.as_deref(),
            Some("dev")
        );
    }
}
