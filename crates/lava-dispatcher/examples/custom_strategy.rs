//! A boot method that is not built in, added from outside the workspace's crates through
//! their public API only: an [`Action`] and a [`Strategy`] registered next to the built-in
//! ones, and the local-shell job run with `method: shell-console` instead of `minimal`.
//!
//! ```text
//! cargo run -q --example custom_strategy
//! ```
//!
//! The action connects to the device's console (its `commands: connect`), waits for the
//! block's prompt and logs in, the way `minimal` does, then leaves the console to the test
//! shell. The example prints the action's log lines and the test results, and exits 0
//! when the job passed.

use lava_actions::runtime::console;
use lava_dispatcher::{
    Action, Device, JobInput, JobRun, LavaResult, Mapping, Outcome, Pipeline, RunContext, RunError,
    Section, Strategy, ValidateContext, Value, action_identity, async_trait,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The new method's name, as a job's `boot: method:` gives it.
const METHOD: &str = "shell-console";

/// `shell-console-boot`: connect to the console and log in at the block's prompt.
struct ShellConsoleBoot;

#[async_trait]
impl Action for ShellConsoleBoot {
    action_identity!(
        "shell-console-boot",
        "ShellConsoleBoot",
        "connect to the device's console and log in",
        "shell console boot"
    );

    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        match ctx
            .meta
            .parameters
            .get("prompts")
            .and_then(Value::as_sequence)
        {
            Some(prompts) if !prompts.is_empty() => {}
            _ => ctx.error(format!("method: {METHOD} needs a non-empty 'prompts' list")),
        }
        Ok(())
    }

    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        let command = console::device_connect_command(ctx)?;
        ctx.logger
            .info(format!("{METHOD}: connecting with '{command}'"));
        console::connect_device(ctx, &command).await?;
        console::auto_login(ctx).await?;
        ctx.logger.info(format!("{METHOD}: the console is ready"));
        Ok(())
    }
}

/// `method: shell-console` on any device whose console has a connect command.
struct ShellConsole;

impl Strategy for ShellConsole {
    fn section(&self) -> Section {
        Section::Boot
    }
    fn name(&self) -> &str {
        METHOD
    }
    fn accepts(&self, device: &Device, params: &Mapping) -> Result<(), String> {
        if params.get("method").and_then(Value::as_str) != Some(METHOD) {
            return Err(format!("\"method\" was not \"{METHOD}\""));
        }
        if device.commands.connect.is_none() {
            return Err("the device has no 'commands: connect'".into());
        }
        Ok(())
    }
    fn action(&self, _params: &Mapping) -> Box<dyn Action> {
        Box::new(ShellConsoleBoot)
    }
}

fn main() -> ExitCode {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/local-shell");
    let output_dir = std::env::temp_dir().join(format!("lava-rs-{METHOD}-{}", std::process::id()));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_with_shell_console(&fixtures, &output_dir)) {
        Ok(outcome) => {
            let log = std::fs::read_to_string(&outcome.files.logs).unwrap_or_default();
            for line in log.lines().filter(|line| line.contains(METHOD)) {
                println!("{line}");
            }
            for case in outcome.test_cases() {
                println!("{} {} {}", case.suite, case.name, case.result);
            }
            println!(
                "job {}: {} ({})",
                outcome.job_id,
                outcome.status,
                output_dir.display()
            );
            if outcome.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The local-shell inline job with its boot block's `method: minimal` replaced by
/// `method: shell-console`, run with the built-in strategies plus [`ShellConsole`].
async fn run_with_shell_console(fixtures: &Path, output_dir: &Path) -> Result<Outcome, RunError> {
    let job = job_with_method(&fixtures.join("inline-job.yaml"), METHOD);
    let mut registry = lava_dispatcher::registry();
    registry.register(ShellConsole);
    JobRun::new(fixtures.join("device.yaml"), job)
        .registry(registry)
        .output_dir(output_dir)
        .run()
        .await
}

/// The job at `path` with its boot block's method set to `method`.
fn job_with_method(path: &PathBuf, method: &str) -> JobInput {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut definition: Mapping =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for action in definition["actions"]
        .as_sequence_mut()
        .into_iter()
        .flatten()
    {
        if let Some(boot) = action.get_mut("boot").and_then(Value::as_mapping_mut) {
            boot.insert("method".into(), method.into());
        }
    }
    JobInput::Parsed {
        name: path.display().to_string(),
        definition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_dispatcher::{JobStatus, TestResult};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/local-shell")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_new_boot_method_boots_the_device_and_the_test_shell_runs() {
        let output = tempfile::tempdir().unwrap();
        let outcome = run_with_shell_console(&fixtures(), output.path())
            .await
            .unwrap();
        let log = std::fs::read_to_string(&outcome.files.logs).unwrap();
        assert_eq!(outcome.status, JobStatus::Pass, "{log}");
        // Our action ran at level 2, in place of minimal's, and passed.
        let boot = outcome.find("lava", "shell-console-boot").unwrap();
        assert_eq!(boot.result, TestResult::Pass);
        assert!(boot.duration.is_some());
        assert!(
            log.contains("\"msg\": \"start: 2 shell-console-boot"),
            "{log}"
        );
        assert!(outcome.find("lava", "minimal-boot").is_none());
        assert!(log.contains("shell-console: the console is ready"), "{log}");
        let description =
            std::fs::read_to_string(outcome.files.description.as_ref().unwrap()).unwrap();
        assert!(
            description.contains("name: shell-console-boot"),
            "{description}"
        );
        // And the test shell ran on the console it opened.
        let pass = outcome.find("0_smoke", "always-pass").unwrap();
        assert_eq!(pass.result, TestResult::Pass);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_the_registration_the_method_is_refused() {
        let output = tempfile::tempdir().unwrap();
        let job = job_with_method(&fixtures().join("inline-job.yaml"), METHOD);
        let outcome = JobRun::new(fixtures().join("device.yaml"), job)
            .output_dir(output.path())
            .run()
            .await
            .unwrap();
        assert_eq!(outcome.status, JobStatus::Fail);
        let message = outcome.error.unwrap().message;
        assert!(
            message.contains("unknown boot method 'shell-console'"),
            "{message}"
        );
    }
}
