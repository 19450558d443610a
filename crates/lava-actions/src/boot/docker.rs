//! The `docker` boot: `docker run` the deployed image and use it as the device shell.

use crate::common::env::ExportDeviceEnvironment;
use crate::common::fastboot::test_has_shell;
use crate::common::login::ExpectShellSession;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("docker", |_| Box::new(BootDockerAction))
            .device_method("docker")
            .method("docker")
            .param("command", "\"command\" was not in boot parameters"),
    );
}

/// `boot-docker`.
#[derive(Debug, Default)]
pub struct BootDockerAction;

#[async_trait]
impl Action for BootDockerAction {
    action_identity!(
        "boot-docker",
        "BootDockerAction",
        "boot docker image",
        "boot docker image"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(CallDockerAction::default())?;
        if pipeline.param("prompts").is_some() && test_has_shell(pipeline) {
            pipeline.add(ExpectShellSession::new())?;
            pipeline.add(ExportDeviceEnvironment::new())?;
        }
        Ok(())
    }
}

/// The `docker run` options a device's `actions.boot.methods.docker.options` ask for.
pub fn docker_run_options(options: Option<&Mapping>) -> Vec<String> {
    let Some(options) = options else {
        return Vec::new();
    };
    let text = |v: &Value| lava_pipeline::value::scalar_string(v).unwrap_or_default();
    let list = |k: &str| {
        options
            .get(k)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (key, flag) in [("cpus", "--cpus"), ("memory", "--memory")] {
        if let Some(v) = options.get(key).filter(|v| truthy(Some(v))) {
            out.push(flag.to_string());
            out.push(text(v));
        }
    }
    if truthy(options.get("privileged")) {
        out.push("--privileged".into());
    }
    for (key, flag) in [
        ("capabilities", "--cap-add"),
        ("devices", "--device"),
        ("networks", "--network"),
        ("volumes", "--volume"),
    ] {
        for item in list(key) {
            out.push(flag.to_string());
            out.push(text(&item));
        }
    }
    for extra in list("extra_arguments") {
        out.push(text(&extra));
    }
    out
}

/// Whether an earlier `to: docker` deploy block exists in this namespace (LAVA checks the
/// image name the deploy stored).
fn has_docker_deploy(job_actions: Option<&Value>, namespace: &str) -> bool {
    job_actions
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|block| block.get("deploy"))
        .any(|deploy| {
            deploy.get("to").and_then(Value::as_str) == Some("docker")
                && deploy
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("common")
                    == namespace
        })
}

/// `docker-run`: start the container and connect to its shell.
#[derive(Debug, Default)]
pub struct CallDockerAction {
    /// The container name, `lava-[<prefix>-]<job id>-<level>`.
    pub container: String,
    /// `--host <remote>` when the docker daemon is remote.
    pub remote: Option<String>,
    /// Extra `docker run` options from the device's docker boot `options` (`--cpus`, `--memory`...).
    pub extra_options: Vec<String>,
    /// The command run in the container.
    pub command: Option<String>,
}

#[async_trait]
impl Action for CallDockerAction {
    action_identity!(
        "docker-run",
        "CallDockerAction",
        "call docker run on the image",
        "call docker run"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let options = device
            .boot_method("docker")
            .and_then(|v| v.get("options"))
            .and_then(Value::as_mapping);
        self.extra_options = docker_run_options(options);
        self.remote = options
            .and_then(|o| o.get("remote"))
            .filter(|v| truthy(Some(v)))
            .and_then(lava_pipeline::value::scalar_string);
        self.command = pipeline
            .param("command")
            .and_then(lava_pipeline::value::scalar_string);
        let job = pipeline.job();
        let level = format!(
            "{}.{}",
            pipeline.parent_level().unwrap_or("0"),
            pipeline.len() + 1
        );
        let prefix = job
            .parameters
            .get("dispatcher")
            .and_then(|d| d.get("prefix"))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        self.container = match prefix {
            Some(prefix) => format!("lava-{prefix}-{}-{level}", job.id),
            None => format!("lava-{}-{level}", job.id),
        };
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let namespace = ctx.meta.namespace().to_string();
        if !has_docker_deploy(ctx.job.parameters.get("actions"), &namespace) {
            return Err(lava_pipeline::LavaError::job(
                "Missing deploy action before boot",
            ));
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
    fn run_options_follow_the_device() {
        let options: Mapping = serde_yaml::from_str(
            "{cpus: 2, memory: 1G, privileged: true, capabilities: [NET_ADMIN], devices: [], networks: [lab], volumes: ['/a:/b'], extra_arguments: ['--rm'], remote: null}",
        )
        .unwrap();
        assert_eq!(
            docker_run_options(Some(&options)),
            [
                "--cpus",
                "2",
                "--memory",
                "1G",
                "--privileged",
                "--cap-add",
                "NET_ADMIN",
                "--network",
                "lab",
                "--volume",
                "/a:/b",
                "--rm"
            ]
        );
        let none: Mapping = serde_yaml::from_str("{cpus: 0, memory: 0}").unwrap();
        assert!(docker_run_options(Some(&none)).is_empty());
    }

    #[test]
    fn boot_needs_a_docker_deploy_in_its_namespace() {
        let actions: Value = serde_yaml::from_str(
            "[{deploy: {to: docker, image: x, namespace: a}}, {boot: {method: docker}}]",
        )
        .unwrap();
        assert!(has_docker_deploy(Some(&actions), "a"));
        assert!(!has_docker_deploy(Some(&actions), "common"));
    }
}
