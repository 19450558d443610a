//! The `qemu` boot family: start QEMU on the worker with the downloaded images
//! (`boot-image-retry` → `boot-qemu-image` → `execute-qemu`), then log in.

use crate::common::env::ExportDeviceEnvironment;

use crate::common::login::{AutoLoginAction, ExpectShellSession, OverlayUnpack};
use crate::runtime::qemu::QemuData;
use lava_pipeline::BlockLookups;
use lava_pipeline::params::namespace;
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext,
    Runnable, StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Where the kernel exposes KVM.
pub const SYS_CLASS_KVM: &str = "/sys/class/misc/kvm";

/// After the boot action itself: login when the block has `prompts`, and the shell,
/// overlay unpack and environment export when a test of the namespace needs a shell.
/// Shared by the boot families that log in after booting.
pub fn add_login_steps(pipeline: &mut PipelineBuilder<'_>, booting: bool) -> LavaResult<()> {
    let params = pipeline.params();
    if !params.contains_key("prompts") {
        return Ok(());
    }
    pipeline.add(if booting {
        AutoLoginAction::new()
    } else {
        AutoLoginAction::without_boot()
    })?;
    if pipeline.job().test_has_shell(namespace(&params)) {
        pipeline.add(ExpectShellSession::new())?;
        if params.contains_key("transfer_overlay") {
            pipeline.add(OverlayUnpack::new())?;
        }
        pipeline.add(ExportDeviceEnvironment::new())?;
    }
    Ok(())
}

/// `boot-image-retry`: boot QEMU, then log in (retried).
#[derive(Debug, Default)]
pub struct BootQEMUImageAction;

#[async_trait]
impl Action for BootQEMUImageAction {
    action_identity!(
        "boot-image-retry",
        "BootQEMUImageAction",
        "boot image with retry",
        "boot with retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(BootQemuRetry)?;
        add_login_steps(pipeline, true)
    }
}

/// `boot-qemu-image`: start QEMU (retried).
#[derive(Debug, Default)]
pub struct BootQemuRetry;

#[async_trait]
impl Action for BootQemuRetry {
    action_identity!(
        "boot-qemu-image",
        "BootQemuRetry",
        "boot image using QEMU command line",
        "boot QEMU image"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(CallQemuAction::default())
    }
}

/// The QEMU command line of the device: binary, `options` and `extra`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QemuCommand {
    /// The QEMU binary for the job's architecture.
    pub binary: String,
    /// Everything after the binary: the device's `options` and `extra`, in order.
    pub arguments: Vec<String>,
}

/// `execute-qemu`: build the QEMU command line and spawn it as the console.
#[derive(Debug, Default)]
pub struct CallQemuAction {
    /// The base command, filled at validation time for the run.
    pub command: Option<QemuCommand>,
    /// The QEMU version found at validation (LAVA's `qemu_data`), recorded as the
    /// results of the run.
    qemu_data: std::sync::Mutex<Option<QemuData>>,
}

impl CallQemuAction {
    /// LAVA's checks of the job context, device architectures and QEMU method.
    /// Returns the base command when it can be built; errors are pushed.
    pub fn check(
        job: &lava_pipeline::Job,
        params: &Mapping,
        errors: &mut Vec<String>,
    ) -> LavaResult<Option<QemuCommand>> {
        let arch = job
            .context_arch()
            .ok_or_else(|| LavaError::job("Missing 'arch' in job context"))?;
        let device = &job.device;
        match device.lookup(&["available_architectures"]) {
            None => {
                errors.push("Device lacks list of available architectures.".into());
                errors.push(
                    "Arch parameter must be set in the context section. Please check the \
                     device configuration for available architectures."
                        .into(),
                );
                return Ok(None);
            }
            Some(list) => {
                let known = list
                    .as_sequence()
                    .is_some_and(|l| l.iter().any(|a| a.as_str() == Some(arch.as_str())));
                if !known {
                    errors.push(
                        "Non existing architecture specified in context arch parameter. \
                         Please check the device configuration for available options."
                            .into(),
                    );
                    return Ok(None);
                }
            }
        }
        let method = params.method().unwrap_or("");
        if matches!(method, "qemu" | "qemu-nfs")
            && !params.contains_key("prompts")
            && job.test_has_shell(namespace(params))
        {
            errors.push("Unable to identify boot prompts from job definition.".into());
        }
        let methods = device.boot_methods().cloned().unwrap_or_default();
        let boot = methods.get("qemu").or_else(|| methods.get("qemu-nfs"));
        let mut command = None;
        match boot.and_then(|b| b.get("parameters")) {
            Some(p) if p.get("command").is_some() => {
                let binary = p
                    .get("command")
                    .and_then(lava_pipeline::value::scalar_string)
                    .unwrap_or_default();
                if binary.is_empty() {
                    errors.push("No QEMU binary command found - missing context.".into());
                }
                let binary = if params.contains_key("docker") || binary.is_empty() {
                    binary
                } else {
                    crate::common::power::require_tool(&binary)?
                        .display()
                        .to_string()
                };
                let list = |key: &str| -> Vec<String> {
                    p.get(key)
                        .and_then(Value::as_sequence)
                        .map(|s| {
                            s.iter()
                                .filter_map(lava_pipeline::value::scalar_string)
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let mut arguments = list("options");
                arguments.extend(list("extra"));
                command = Some(QemuCommand { binary, arguments });
            }
            _ => errors.push("Invalid device configuration - missing parameters".into()),
        }
        let Some(chosen) = methods.get(method) else {
            errors.push(format!("Unknown boot method '{method}'"));
            return Ok(command);
        };
        let wants_kvm = chosen
            .get("parameters")
            .and_then(|p| p.get("options"))
            .and_then(Value::as_sequence)
            .is_some_and(|o| o.iter().any(|x| x.as_str() == Some("-enable-kvm")));
        if wants_kvm && !std::path::Path::new(SYS_CLASS_KVM).exists() {
            errors.push(
                "Device configuration contains -enable-kvm option but kvm module is not enabled."
                    .into(),
            );
        }
        Ok(command)
    }
}

#[async_trait]
impl Action for CallQemuAction {
    action_identity!(
        "execute-qemu",
        "CallQemuAction",
        "call qemu to boot the image",
        "execute qemu to boot the image"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        let result = Self::check(ctx.job, &ctx.meta.parameters, &mut errors);
        if ctx.meta.parameters.contains_key("docker")
            && crate::common::power::which("docker").is_none()
        {
            errors.push(
                "The boot's 'docker' runs QEMU in a container, but no container runtime \
                 ('docker') is installed on this worker"
                    .into(),
            );
        }
        ctx.add_errors(errors);
        let command = result?;
        // LAVA looks the version up once the architecture checks passed; QEMU in a
        // container is refused above, so the host's QEMU is the one to run.
        if let Some(command) = command
            && !ctx.meta.parameters.contains_key("docker")
        {
            let arch = ctx.job.context_arch().unwrap_or_default();
            let found = QemuData::find(&arch, &command.binary);
            if let Some((_, line)) = &found {
                ctx.info(line.clone());
            }
            *self.qemu_data.lock().unwrap_or_else(|e| e.into_inner()) = found.map(|(data, _)| data);
        }
        Ok(())
    }
    /// QEMU inside a docker container (the boot's `docker`) is not started by lava-rs yet;
    /// the host's QEMU is never run in its place.
    fn runnable(&self, meta: &ActionMeta) -> Runnable {
        if meta.parameters.contains_key("docker") {
            Runnable::NotYet {
                missing: Some("QEMU in a docker container"),
            }
        } else {
            Runnable::Yes
        }
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        // LAVA sets these results at validation: a failed start reports them too.
        let data = self
            .qemu_data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(data) = data {
            data.record(ctx);
        }
        crate::runtime::qemu::start_qemu(ctx).await
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    for method in ["qemu", "qemu-nfs", "monitor"] {
        registry.register(
            Declared::boot(method, |_| Box::new(BootQEMUImageAction))
                .check(|device, _| {
                    if device.has_boot_method("qemu") || device.has_boot_method("qemu-nfs") {
                        Ok(())
                    } else {
                        Err("\"qemu\" or \"qemu-nfs\" was not in the device configuration boot methods".into())
                    }
                })
                .method_with(method, "\"method\" was not \"qemu\" or \"qemu-nfs\""),
        );
    }
}
