//! The `ssh` deploy family: prepare the overlay and copy it to a device reached over
//! ssh (`scp-overlay`).
//!
//! A deployment may name a disposable chroot (`chroot: NAME`, LAVA's schroot
//! deployments); the name must be one the device offers (`actions.deploy.methods.schroot`,
//! a list of names, or the device type's `actions.boot.methods.schroot.name`), else the
//! job is refused at validation. `login-ssh` then enters a session of that chroot
//! (`schroot-login`, see `runtime::schroot`) and `finalize` ends it.

use crate::common::env::DeployDeviceEnvironment;
use crate::common::lava_overlay::OverlayAction;
use crate::common::prepare_overlay::{ExtractModules, ExtractRootfs};
use lava_pipeline::params::namespace;
use lava_pipeline::{
    Action, Declared, Device, Job, LavaResult, Pipeline, PipelineBuilder, RunContext,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// `scp-overlay`: the overlay, then copying it over ssh, then the device environment.
///
/// LAVA lists `firmware`, `kernel`, `dtb`, `rootfs` and `modules` as downloadable items
/// but only after building the pipeline, so no download is ever added here.
#[derive(Debug, Default)]
pub struct ScpOverlay;

#[async_trait]
impl Action for ScpOverlay {
    action_identity!(
        "scp-overlay",
        "ScpOverlay",
        "prepare overlay and scp to device",
        "copy overlay to device"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(OverlayAction::new())?;
        pipeline.add(PrepareOverlayScp::default())?;
        pipeline.add(DeployDeviceEnvironment::new())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.job.test_has_shell(namespace(&ctx.meta.parameters)) {
            ctx.error("Scp overlay needs a test action.");
            return Ok(());
        }
        let serial = ctx
            .job
            .device
            .actions
            .deploy
            .connections
            .contains_key("serial");
        if !serial {
            ctx.error("Device not configured to support serial connection.");
        }
        if let Some(error) = check_chroot(&ctx.job.device, &ctx.meta.parameters) {
            ctx.error(error);
        }
        Ok(())
    }
}

/// The `chroot` of the `to: ssh` deployment in `namespace`, when it names one.
pub fn deployed_chroot(job: &Job, namespace_name: &str) -> Option<String> {
    job.parameters
        .get("actions")
        .and_then(Value::as_sequence)?
        .iter()
        .filter_map(|block| block.get("deploy").and_then(Value::as_mapping))
        .filter(|deploy| namespace(deploy) == namespace_name)
        .filter(|deploy| deploy.get("to").and_then(Value::as_str) == Some("ssh"))
        .find_map(|deploy| {
            deploy
                .get("chroot")
                .and_then(lava_pipeline::value::scalar_string)
        })
        .filter(|name| !name.is_empty())
}

/// The chroot names a device offers: `actions.deploy.methods.schroot` (a list, LAVA's
/// documented form), else `actions.boot.methods.schroot.name` (LAVA's ssh device type).
pub fn offered_chroots(device: &Device) -> Vec<String> {
    let names = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(lava_pipeline::value::scalar_string)
                .collect(),
            Some(other) => lava_pipeline::value::scalar_string(other)
                .filter(|s| !s.is_empty())
                .into_iter()
                .collect(),
            None => Vec::new(),
        }
    };
    let deploy = names(device.deploy_method("schroot"));
    if !deploy.is_empty() {
        return deploy;
    }
    names(device.boot_method("schroot").and_then(|m| m.get("name")))
}

/// The validation error of a deployment's `chroot`, when it names no chroot the device
/// offers.
pub fn check_chroot(device: &Device, params: &Mapping) -> Option<String> {
    let wanted = params.get("chroot")?;
    let Some(name) = lava_pipeline::value::scalar_string(wanted).filter(|n| !n.is_empty()) else {
        return Some(format!(
            "deploy.chroot: expected the name of a chroot, found {}",
            lava_pipeline::value::python_repr(wanted)
        ));
    };
    let offered = offered_chroots(device);
    if offered.contains(&name) {
        return None;
    }
    if offered.is_empty() {
        Some(format!(
            "deploy.chroot: '{name}' requested but the device offers no schroot (actions.deploy.methods.schroot)"
        ))
    } else {
        Some(format!(
            "deploy.chroot: '{name}' is not a chroot of this device; expected one of: {}",
            offered.join(", ")
        ))
    }
}

/// The MultiNode `messageID`s a `prepare-scp-overlay` waits for (host keys), or the
/// validation errors of the protocol blocks addressed to it.
pub fn scp_host_keys(params: &Mapping) -> Result<Vec<String>, Vec<String>> {
    let mut keys = Vec::new();
    let Some(protocols) = params.get("protocols") else {
        return Ok(keys);
    };
    let calls = protocols
        .get("lava-multinode")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let mut errors = Vec::new();
    for call in &calls {
        if call.is_string() {
            errors.push("Invalid protocol action setting - needs to be a list.".to_string());
            continue;
        }
        if call.get("action").and_then(Value::as_str) != Some("prepare-scp-overlay") {
            continue;
        }
        let Some(id) = call.get("messageID") else {
            errors.push(format!(
                "Invalid protocol block: {}",
                lava_pipeline::value::python_repr(call)
            ));
            return Err(errors);
        };
        if !call.get("message").is_some_and(Value::is_mapping) {
            errors.push("Missing message block for scp deployment".into());
            return Err(errors);
        }
        keys.push(lava_pipeline::value::scalar_string(id).unwrap_or_default());
    }
    if errors.is_empty() {
        Ok(keys)
    } else {
        Err(errors)
    }
}

/// `prepare-scp-overlay`: unpack the rootfs and modules to include, then (at run time)
/// learn the host addresses from MultiNode messages.
#[derive(Debug, Default)]
pub struct PrepareOverlayScp {
    /// MultiNode message ids carrying the host addresses.
    pub host_keys: Vec<String>,
}

#[async_trait]
impl Action for PrepareOverlayScp {
    action_identity!(
        "prepare-scp-overlay",
        "PrepareOverlayScp",
        "copy the overlay over an existing ssh connection",
        "scp the overlay to the remote device"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        if let Ok(keys) = scp_host_keys(pipeline.parameters()) {
            self.host_keys = keys;
        }
        pipeline.add(ExtractRootfs::new())?;
        pipeline.add(ExtractModules::new())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if let Err(errors) = scp_host_keys(&ctx.meta.parameters) {
            ctx.add_errors(errors);
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        children.run_actions(ctx).await?;
        crate::runtime::ssh::prepare_scp_overlay(ctx, &self.host_keys).await
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::deploy("ssh", |_| Box::new(ScpOverlay))
            .device_method_with(
                "ssh",
                "\"ssh\" is not in the device configuration deploy methods",
            )
            .to_only("ssh"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(methods: &str) -> Device {
        let text = format!(
            "actions:\n  deploy:\n    connections: {{serial: }}\n    methods:\n      ssh: {{host: h}}\n{methods}  boot:\n    connections: {{ssh: }}\n    methods: {{ssh: }}\n"
        );
        Device::from_yaml(&text, None).unwrap()
    }

    fn params(text: &str) -> Mapping {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn a_chroot_must_be_one_the_device_offers() {
        let offering = device("      schroot: [unstable, bookworm]\n");
        assert_eq!(offered_chroots(&offering), ["unstable", "bookworm"]);
        assert_eq!(
            check_chroot(&offering, &params("{to: ssh, chroot: bookworm}")),
            None
        );
        assert_eq!(check_chroot(&offering, &params("{to: ssh}")), None);
        let error = check_chroot(&offering, &params("{to: ssh, chroot: trusty}")).unwrap();
        assert!(
            error.contains("'trusty'") && error.contains("unstable, bookworm"),
            "{error}"
        );
        let error = check_chroot(&offering, &params("{to: ssh, chroot: [a]}")).unwrap();
        assert!(error.contains("expected the name of a chroot"), "{error}");

        let plain = device("");
        let error = check_chroot(&plain, &params("{to: ssh, chroot: unstable}")).unwrap();
        assert!(error.contains("offers no schroot"), "{error}");
    }
}
