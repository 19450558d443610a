//! The `docker` test: run the test definitions in a docker container on the worker, with
//! the device reachable from the container (adb/fastboot over USB).

use crate::common::lava_overlay::CreateOverlay;
use crate::common::power::{DisconnectDevice, ReadFeedback};
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, ErrorKind, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, TestNeeds, ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::test("docker", |_| Box::new(DockerTestAction))
            .priority(10)
            .check(|_, params| {
                let has_definitions =
                    params.contains_key("definition") || params.contains_key("definitions");
                if has_definitions && params.contains_key("docker") {
                    Ok(())
                } else {
                    Err("docker or definition(s) not in parameters".into())
                }
            })
            .needs(|_| TestNeeds::OVERLAY),
    );
}

/// The first `device_info` entry's `board_id`, which the container needs to find the DUT.
pub fn board_id(device: &Device) -> Option<String> {
    device
        .lookup(&["device_info"])
        .and_then(Value::as_sequence)
        .and_then(|s| s.first())
        .and_then(|d| d.get("board_id"))
        .and_then(lava_pipeline::value::scalar_string)
}

/// `lava-docker-test`.
#[derive(Debug, Default)]
pub struct DockerTestAction;

#[async_trait]
impl Action for DockerTestAction {
    action_identity!(
        "lava-docker-test",
        "DockerTestAction",
        "Runs tests in a docker container",
        "Runs tests in a docker container, with the DUT available via adb/fastboot over USB"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(DockerTestSetEnvironment::default())?;
        pipeline.add(CreateOverlay::new())?;
        if truthy(pipeline.param("disconnect_connection")) {
            pipeline.add(DisconnectDevice::new())?;
        }
        let multinode = pipeline.param("role").is_some();
        pipeline.add(DockerTestShell::new(multinode))?;
        pipeline.add(ReadFeedback::new(false, false))
    }
}

/// `lava-docker-test-set-environment`: the environment the container's test shell gets.
#[derive(Debug, Default)]
pub struct DockerTestSetEnvironment {
    /// The first `device_info` entry's `board_id`, which the container needs to find the DUT.
    pub board_id: Option<String>,
}

#[async_trait]
impl Action for DockerTestSetEnvironment {
    action_identity!(
        "lava-docker-test-set-environment",
        "DockerTestSetEnvironment",
        "Adds necessary environments variables for docker-test-shell",
        "Adds necessary environments variables for docker-test-shell"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.board_id = board_id(pipeline.device());
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// Check the dispatcher's `test_docker_bind_mounts`: `[source, destination]` or
/// `[source, destination, "rw"]`, strings only. Returns the first error.
pub fn check_bind_mounts(mounts: Option<&Value>) -> Option<String> {
    let mounts = mounts.and_then(Value::as_sequence)?;
    for mount in mounts {
        let items = mount.as_sequence().cloned().unwrap_or_default();
        let all_strings = items.iter().all(Value::is_string);
        let ok = match items.len() {
            2 => all_strings,
            3 => all_strings && items[2].as_str() == Some("rw"),
            _ => false,
        };
        if !ok {
            let shown = lava_pipeline::value::python_repr(mount);
            return Some(format!(
                "Invalid bind mount specification in dispatcher configuration: {shown}; \
                 Use [source,destination], or [source,destination,\"rw\"]"
            ));
        }
    }
    None
}

/// `lava-docker-test-shell` (or `lava-multinode-docker-test-shell` for MultiNode roles).
#[derive(Debug, Default)]
pub struct DockerTestShell {
    /// True for a MultiNode role (`lava-multinode-docker-test-shell`).
    pub multinode: bool,
    /// The first `device_info` entry's `board_id`, which the container needs to find the DUT.
    pub board_id: Option<String>,
}

impl DockerTestShell {
    /// The test shell, the MultiNode one when `multinode`.
    pub fn new(multinode: bool) -> Self {
        DockerTestShell {
            multinode,
            board_id: None,
        }
    }
}

#[async_trait]
impl Action for DockerTestShell {
    fn name(&self) -> &str {
        if self.multinode {
            "lava-multinode-docker-test-shell"
        } else {
            "lava-docker-test-shell"
        }
    }
    fn class_name(&self) -> &str {
        if self.multinode {
            "MultinodeDockerTestShell"
        } else {
            "DockerTestShell"
        }
    }
    fn description(&self) -> &str {
        if self.multinode {
            "Runs multinode lava-test-shell in a docker container"
        } else {
            "Runs lava-test-shell in a docker container"
        }
    }
    fn summary(&self) -> &str {
        self.description()
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.board_id = board_id(pipeline.device());
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mounts = ctx
            .job
            .parameters
            .get("dispatcher")
            .and_then(|d| d.get("test_docker_bind_mounts"));
        if let Some(error) = check_bind_mounts(mounts) {
            ctx.error(error);
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
    use lava_pipeline::Device;
    use serde_yaml::Mapping;

    #[test]
    fn strategy_needs_docker_and_definitions() {
        let device = Device::default();
        let yes: Mapping = serde_yaml::from_str("{docker: {image: x}, definitions: []}").unwrap();
        assert!(
            crate::strategy(lava_pipeline::Section::Test, "docker")
                .accepts(&device, &yes)
                .is_ok()
        );
        let no: Mapping = serde_yaml::from_str("{definitions: []}").unwrap();
        assert!(
            crate::strategy(lava_pipeline::Section::Test, "docker")
                .accepts(&device, &no)
                .is_err()
        );
    }

    #[test]
    fn bind_mounts() {
        let ok: Value = serde_yaml::from_str("[[/a, /b], [/c, /d, rw]]").unwrap();
        assert_eq!(check_bind_mounts(Some(&ok)), None);
        let bad: Value = serde_yaml::from_str("[[/a, /b, ro]]").unwrap();
        let error = check_bind_mounts(Some(&bad)).unwrap();
        assert!(error.contains("['/a', '/b', 'ro']"), "{error}");
        let short: Value = serde_yaml::from_str("[[/a]]").unwrap();
        assert!(check_bind_mounts(Some(&short)).is_some());
    }

    #[test]
    fn board_id_comes_from_the_first_device_info() {
        let device =
            Device::from_yaml("device_info: [{board_id: '1234'}, {board_id: '5'}]", None).unwrap();
        assert_eq!(board_id(&device).as_deref(), Some("1234"));
        assert_eq!(board_id(&Device::default()), None);
    }
}
