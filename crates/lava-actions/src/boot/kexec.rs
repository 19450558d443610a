//! The `kexec` boot family: replace the running kernel with kexec from the existing
//! shell (`kexec-boot` → `call-kexec`), then log in again.

use crate::common::env::ExportDeviceEnvironment;
use crate::common::login::{AutoLoginAction, ExpectShellSession, OverlayUnpack};
use lava_pipeline::BlockLookups;
use lava_pipeline::value::scalar_string;
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// `kexec-boot`: kexec, login, shell, overlay unpack and environment (retried).
#[derive(Debug, Default)]
pub struct BootKexecAction;

#[async_trait]
impl Action for BootKexecAction {
    action_identity!(
        "kexec-boot",
        "BootKexecAction",
        "replace current kernel using kexec",
        "kexec a new kernel"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(KexecAction)?;
        pipeline.add(AutoLoginAction::new())?;
        pipeline.add(ExpectShellSession::new())?;
        if pipeline.parameters().contains_key("transfer_overlay") {
            pipeline.add(OverlayUnpack::new())?;
        }
        pipeline.add(ExportDeviceEnvironment::new())
    }
}

/// The two shell commands of a kexec boot: loading the kernel and executing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KexecCommands {
    /// The kexec command that loads the kernel (`--load`, or `--load-panic` with `on_panic`), dtb and initrd.
    pub load: String,
    /// The command that starts it: `<command> -e`, or a sysrq crash with `on_panic`.
    pub execute: String,
}

/// Build LAVA's kexec commands from the block (`command`, `kernel`, `dtb`, `initrd`,
/// `options`, `on_panic`).
pub fn kexec_commands(params: &Mapping) -> KexecCommands {
    let command = params
        .get("command")
        .and_then(scalar_string)
        .unwrap_or_else(|| "/sbin/kexec".to_string());
    let on_panic = params.flag("on_panic");
    let mut load = command.clone();
    let execute = if on_panic {
        "echo c > /proc/sysrq-trigger".to_string()
    } else {
        format!("{command} -e")
    };
    let text = |key: &str| params.get(key).and_then(scalar_string);
    if let Some(kernel) = text("kernel") {
        let flag = if on_panic { "--load-panic" } else { "--load" };
        load.push_str(&format!(" {flag} {kernel}"));
    }
    if let Some(dtb) = text("dtb") {
        load.push_str(&format!(" --dtb {dtb}"));
    }
    if let Some(initrd) = text("initrd") {
        load.push_str(&format!(" --initrd {initrd}"));
    }
    for option in params
        .get("options")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(scalar_string)
    {
        load.push_str(&format!(" {option}"));
    }
    KexecCommands { load, execute }
}

/// `call-kexec`: load the new kernel and kexec into it.
#[derive(Debug, Default)]
pub struct KexecAction;

#[async_trait]
impl Action for KexecAction {
    action_identity!(
        "call-kexec",
        "KexecAction",
        "call kexec with specified arguments",
        "attempt to kexec new kernel"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if kexec_commands(&ctx.meta.parameters).load == "/sbin/kexec" {
            ctx.error(
                "Default kexec handler needs at least a kernel to pass to the --load command",
            );
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(Declared::boot("kexec", |_| Box::new(BootKexecAction)).method("kexec"));
}
