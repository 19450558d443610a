//! The `docker` deploy: name the image the `docker` boot runs, and prepare the overlay.

use crate::common::env::DeployDeviceEnvironment;
use crate::common::fastboot::{test_needs_deployment, test_needs_overlay};
use crate::common::lava_overlay::OverlayAction;
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, ValidateContext,
    action_identity, async_trait,
};
use regex::Regex;
use serde_yaml::Value;
use std::sync::LazyLock;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("docker", |_| Box::new(DockerAction::default()))
            .device_method_with(
                "docker",
                "'docker' not in the device configuration deploy methods",
            )
            .to_only("docker")
            .param("image", "\"image\" is not in the deployment parameters"),
    );
}

/// The image names docker accepts (LAVA's `docker_image_format_pattern`).
static IMAGE_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+[a-z0-9._/:-]*[a-z0-9]+(:[a-zA-Z0-9_]+[a-zA-Z0-9._-]*)?$")
        .expect("valid pattern")
});

/// Whether docker accepts this image name.
pub fn valid_image_name(name: &str) -> bool {
    IMAGE_NAME.is_match(name)
}

/// The image of a `docker` parameter: a name, or `{name, local}`. Returns the name and
/// whether the image is local (not pulled).
pub fn image_of(image: Option<&Value>) -> (Option<String>, bool) {
    match image {
        Some(Value::String(name)) => (Some(name.clone()), false),
        Some(Value::Mapping(m)) => (
            m.get("name").and_then(lava_pipeline::value::scalar_string),
            truthy(m.get("local")),
        ),
        _ => (None, false),
    }
}

/// `deploy-docker`.
#[derive(Debug, Default)]
pub struct DockerAction {
    /// The image to run, from the block's `image`.
    pub image_name: Option<String>,
    /// Use the local image, do not pull.
    pub local: bool,
    /// `--host <remote>` when the device's docker daemon is remote.
    pub remote: Vec<String>,
}

#[async_trait]
impl Action for DockerAction {
    action_identity!(
        "deploy-docker",
        "DockerAction",
        "deploy docker images",
        "deploy docker"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        (self.image_name, self.local) = image_of(pipeline.param("image"));
        let remote = pipeline
            .device()
            .deploy_method("docker")
            .and_then(|v| v.get("options"))
            .and_then(|v| v.get("remote"));
        if truthy(remote) {
            let host = remote
                .and_then(lava_pipeline::value::scalar_string)
                .unwrap_or_default();
            self.remote = vec!["--host".into(), host];
        }
        if test_needs_deployment(pipeline) {
            pipeline.add(DeployDeviceEnvironment::new())?;
        }
        if test_needs_overlay(pipeline) {
            pipeline.add(OverlayAction::new())?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        // LAVA also asks the docker daemon for its version here; lava-rs only needs the
        // client at this point and talks to the daemon when the job runs.
        crate::common::power::require_tool("docker")?;
        let name = self.image_name.clone().unwrap_or_default();
        if !valid_image_name(&name) {
            ctx.error(format!("image name '{name}' is invalid"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_pipeline::Device;
    use serde_yaml::Mapping;

    #[test]
    fn image_names() {
        assert!(valid_image_name("debian:bookworm"));
        assert!(valid_image_name("registry.example.org/lava/tools:1.2-3"));
        assert!(!valid_image_name("Debian"));
        assert!(!valid_image_name("a"));
    }

    #[test]
    fn image_parameter_forms() {
        let plain = Value::String("alpine".into());
        assert_eq!(image_of(Some(&plain)), (Some("alpine".into()), false));
        let local: Value = serde_yaml::from_str("{name: foo, local: true}").unwrap();
        assert_eq!(image_of(Some(&local)), (Some("foo".into()), true));
        assert_eq!(image_of(None), (None, false));
    }

    #[test]
    fn strategy_needs_an_image() {
        let device = Device::from_yaml(
            "actions: {deploy: {methods: {docker: {options: {}}}}}",
            None,
        )
        .unwrap();
        let params: Mapping = serde_yaml::from_str("to: docker").unwrap();
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Deploy, "docker")
                .accepts(&device, &params)
                .unwrap_err(),
            "\"image\" is not in the deployment parameters"
        );
        let params: Mapping = serde_yaml::from_str("{to: docker, image: x}").unwrap();
        assert!(
            crate::strategy(lava_pipeline::Section::Deploy, "docker")
                .accepts(&device, &params)
                .is_ok()
        );
    }
}
