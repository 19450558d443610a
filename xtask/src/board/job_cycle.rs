//! `bench job --board`'s second reference: the device's own work for the bench's job, done
//! without a dispatcher. Where [`super::boot_check`] is the board's bare cycle (a short
//! command list, one command at the shell), this is the cycle *this job* asks of the board:
//!
//! - the same files over TFTP: the kernel and DTB the job deploys, and the job's ramdisk
//!   rebuilt as the deployment rebuilds it (the job's test overlay appended, recompressed
//!   as the job says, the device's U-Boot header added), built once before the rounds;
//! - the same power control: the device's `hard_reset` commands, then its `power_off`;
//! - the same U-Boot commands: the device's command list the boot block names, substituted
//!   by lava-actions' own table (so the same lines, the same kernel command line), each
//!   typed after the bootloader prompt with the device's `boot` character delay;
//! - at the shell, the job's test definition run by hand: the overlay's runner for stage 0,
//!   awaited to its `<LAVA_TEST_RUNNER EXIT>` (and checked to have ended its run).
//!
//! A dispatcher's wall time minus this cycle is then its own time on the job: what it adds
//! to the device's work (deploying, parsing, waiting, round trips, logging).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lava_actions::common::prepare_overlay::map_kernel_uboot;
use lava_actions::runtime::boot_commands::{
    BootAddresses, OverlayInputs, Substitutions, dispatcher_ip, substitute,
};
use lava_device::DeviceConfig;
use lava_shell::{DefinitionSource, OverlayBuilder, OverlayRequest, PlannedDefinition, TestBlock};
use serde_yaml::Value;

use super::artefacts::{Artefacts, BANNER, PROMPT};
use super::boot_check::Console;
use super::rig::{Rig, TFTP_ROOT};

/// The cycle's directory under the TFTP root (its own: the bare boot's is another).
const DIR_NAME: &str = "lava-rs-board-job-cycle";
/// The overlay's job id: the results directory on the board is `/lava-<this>`.
const JOB_ID: &str = "cycle";
/// What the runner prints when it ends, however it ends.
const RUNNER_EXIT: &str = "<LAVA_TEST_RUNNER EXIT>";
/// What the runner prints when a definition's run ended.
const END_RUN: &str = "<LAVA_SIGNAL_ENDRUN";

/// Wall times of one job cycle, each from the start of the reset.
#[derive(Debug, Clone, Copy)]
pub struct JobCycleReport {
    /// The bootloader's prompt, after the interrupt.
    pub bootloader: Duration,
    /// The kernel's first message, after the job's U-Boot commands.
    pub kernel: Duration,
    /// The root's shell prompt.
    pub shell: Duration,
    /// The test definition's run ended at the shell.
    pub tests: Duration,
    /// The board powered off: the whole cycle.
    pub total: Duration,
}

/// The job's device work, prepared: files under the TFTP root (removed on drop), the
/// commands to type, the power commands.
#[derive(Debug)]
pub struct JobCycle {
    dir: PathBuf,
    console_port: u16,
    hard_reset: Vec<Vec<String>>,
    power_off: Vec<Vec<String>>,
    interrupt_prompt: String,
    bootloader_prompt: String,
    commands: Vec<String>,
    character_delay: Duration,
    runner: String,
}

impl JobCycle {
    /// Prepares the cycle of `job` (the job's YAML as the bench runs it) on the rig's device.
    pub fn prepare(rig: &Rig, artefacts: &Artefacts, job: &str) -> Result<JobCycle> {
        let job: Value = serde_yaml::from_str(job).context("parsing the bench's job")?;
        let deploy = block(&job, "deploy")?;
        let boot = block(&job, "boot")?;
        let test = block(&job, "test")?;
        ensure!(
            deploy.get("to").and_then(Value::as_str) == Some("tftp")
                && boot.get("method").and_then(Value::as_str) == Some("u-boot"),
            "the board's job cycle knows a TFTP deployment booted by U-Boot only"
        );
        let device = DeviceConfig::load(rig.device())?;
        let uboot = device
            .lookup(&["actions", "boot", "methods", "u-boot"])
            .context("the device has no u-boot boot method")?;
        let commands = match boot.get("commands") {
            Some(Value::String(name)) => strings(
                uboot
                    .get(name.as_str())
                    .and_then(|c| c.get("commands"))
                    .with_context(|| format!("the device has no u-boot command list {name:?}"))?,
            ),
            Some(list @ Value::Sequence(_)) => strings(list),
            _ => bail!("the job's boot block names no commands"),
        };
        let parameter = |key: &str| {
            device
                .actions
                .boot
                .method_parameters("u-boot")
                .and_then(|p| p.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
                .with_context(|| format!("the device's u-boot parameters have no {key}"))
        };

        let dir = PathBuf::from(TFTP_ROOT).join(DIR_NAME);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut cycle = JobCycle {
            dir: dir.clone(),
            console_port: rig.console_port,
            hard_reset: argvs(&device.hard_reset_command())?,
            power_off: argvs(&device.power_off_command())?,
            interrupt_prompt: parameter("interrupt_prompt")?,
            bootloader_prompt: parameter("bootloader_prompt")?,
            commands: Vec::new(),
            character_delay: Duration::from_millis(device.character_delay_ms("boot")),
            runner: String::new(),
        };
        ensure!(
            !cycle.hard_reset.is_empty() && !cycle.power_off.is_empty(),
            "the device has no hard_reset or power_off command"
        );

        // The files: kernel and DTB as deployed, the ramdisk rebuilt with the job's overlay.
        for file in [&artefacts.kernel, &artefacts.dtb] {
            copy_servable(file, &dir)?;
        }
        let scratch = tempfile::tempdir()?;
        let overlay = build_overlay(test, scratch.path())?;
        cycle.runner = overlay.runner;
        let compression = deploy
            .get("ramdisk")
            .and_then(|r| r.get("compression"))
            .and_then(Value::as_str);
        let ramdisk = dir.join(match compression {
            Some(name) => format!("ramdisk.cpio.{name}"),
            None => "ramdisk.cpio".into(),
        });
        lava_artefacts::ramdisk::append_overlays_blocking(
            &artefacts.ramdisk,
            &[lava_artefacts::ramdisk::OverlaySource::Tarball {
                archive: overlay.tarball,
                at: "/".into(),
            }],
            compression.and_then(lava_artefacts::Compression::from_name),
            &ramdisk,
        )?;
        let header = device.lookup_str(&["actions", "deploy", "parameters", "add_header"]);
        let ramdisk = if header == Some("u-boot") {
            let arch = device
                .lookup_str(&["actions", "deploy", "parameters", "mkimage_arch"])
                .context("the device's deploy parameters have no mkimage_arch")?;
            let with_header = PathBuf::from(format!("{}.uboot", ramdisk.display()));
            let status = Command::new("mkimage")
                .args(["-A", arch, "-T", "ramdisk", "-C", "none", "-d"])
                .arg(&ramdisk)
                .arg(&with_header)
                .stdout(std::process::Stdio::null())
                .status()
                .context("running mkimage")?;
            ensure!(status.success(), "mkimage failed ({status})");
            with_header
        } else {
            ramdisk
        };
        make_servable(&ramdisk)?;

        // The commands, substituted by the dispatcher's own table.
        let name = |path: &Path| {
            format!(
                "{DIR_NAME}/{}",
                path.file_name().expect("a file").to_string_lossy()
            )
        };
        let dispatcher: Value = serde_yaml::from_str(&std::fs::read_to_string(rig.dispatcher())?)?;
        let kernel_type = deploy
            .get("kernel")
            .and_then(|k| k.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let device_parameters = device.lookup(&["parameters"]);
        let inputs = OverlayInputs {
            server_ip: dispatcher_ip(Some(&dispatcher), None)
                .context("the rig's dispatcher configuration has no dispatcher_ip")?,
            kernel: Some(name(&artefacts.kernel)),
            ramdisk: Some(name(&ramdisk)),
            dtb: Some(name(&artefacts.dtb)),
            boot_addresses: Some(BootAddresses::from_device_parameters(
                map_kernel_uboot(kernel_type, device_parameters),
                device_parameters,
            )),
            has_ramdisk: true,
            ramdisk_has_uboot_header: header == Some("u-boot"),
            ..OverlayInputs::default()
        };
        cycle.commands = substitute(&commands, &Substitutions::from_inputs(&inputs));
        Ok(cycle)
    }

    /// The U-Boot commands the cycle types, in order.
    pub fn commands(&self) -> &[String] {
        &self.commands
    }

    /// Runs the cycle once and times it; the rig must be up. What the board said is
    /// written to `transcript`. The board is powered off at the end of the cycle, and also
    /// when the cycle fails.
    pub fn run(&self, limit: Duration, transcript: &Path) -> Result<JobCycleReport> {
        let mut console = Console::connect(self.console_port)?;
        let result = self.boot_and_test(&mut console, limit);
        if result.is_err() {
            let _ = self.power_off();
        }
        std::fs::write(transcript, &console.seen)
            .with_context(|| format!("writing {}", transcript.display()))?;
        result
    }

    fn boot_and_test(&self, console: &mut Console, limit: Duration) -> Result<JobCycleReport> {
        let start = Instant::now();
        let deadline = start + limit;
        for argv in &self.hard_reset {
            run_lab_command(argv)?;
        }
        console.wait_for(&self.interrupt_prompt, deadline)?;
        console.send("\r")?;
        console.wait_for(&self.bootloader_prompt, deadline)?;
        let bootloader = start.elapsed();
        let (last, before) = self
            .commands
            .split_last()
            .context("the job's command list is empty")?;
        for command in before {
            self.type_line(console, command)?;
            console.wait_for(&self.bootloader_prompt, deadline)?;
            if console.seen.contains("TFTP error") || console.seen.contains("Retry count exceeded")
            {
                bail!("U-Boot: {command} failed:\n{}", console.tail());
            }
        }
        self.type_line(console, last)?;
        console.wait_for("Linux version", deadline)?;
        let kernel = start.elapsed();
        console.wait_for(BANNER, deadline)?;
        console.wait_for(PROMPT, deadline)?;
        let shell = start.elapsed();
        self.type_line(console, &self.runner)?;
        console.wait_for(END_RUN, deadline)?;
        console.wait_for(RUNNER_EXIT, deadline)?;
        console.wait_for(PROMPT, deadline)?;
        let tests = start.elapsed();
        self.power_off()?;
        Ok(JobCycleReport {
            bootloader,
            kernel,
            shell,
            tests,
            total: start.elapsed(),
        })
    }

    /// Types `line` and a carriage return, pausing the device's character delay after each
    /// character as a dispatcher does.
    fn type_line(&self, console: &mut Console, line: &str) -> Result<()> {
        if self.character_delay.is_zero() {
            return console.send(&format!("{line}\r"));
        }
        let mut utf8 = [0u8; 4];
        for c in line.chars().chain(['\r']) {
            console.send(c.encode_utf8(&mut utf8))?;
            std::thread::sleep(self.character_delay);
        }
        Ok(())
    }

    fn power_off(&self) -> Result<()> {
        for argv in &self.power_off {
            run_lab_command(argv)?;
        }
        Ok(())
    }
}

impl Drop for JobCycle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The job's first action block of `kind`.
fn block<'a>(job: &'a Value, kind: &str) -> Result<&'a Value> {
    job.get("actions")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .find_map(|action| action.get(kind))
        .with_context(|| format!("the bench's job has no {kind} action"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(lava_pipeline::value::scalar_string)
        .collect()
}

fn argvs(commands: &[String]) -> Result<Vec<Vec<String>>> {
    commands
        .iter()
        .map(|c| lava_python::shlex_split(c).with_context(|| format!("splitting {c:?}")))
        .collect()
}

fn run_lab_command(argv: &[String]) -> Result<()> {
    let (program, args) = argv.split_first().context("an empty lab command")?;
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    ensure!(status.success(), "{program} failed ({status})");
    Ok(())
}

/// The job's overlay: its tarball, and the command that runs stage 0 on the board.
struct CycleOverlay {
    tarball: PathBuf,
    runner: String,
}

/// The job's test definitions in an overlay as the deployment builds one (lava-shell).
fn build_overlay(test: &Value, scratch: &Path) -> Result<CycleOverlay> {
    let definitions = test
        .get("definitions")
        .and_then(Value::as_sequence)
        .context("the job's test block has no definitions")?;
    let mut block = TestBlock {
        definitions: Vec::new(),
        needs_character_delay: false,
    };
    for (i, entry) in definitions.iter().enumerate() {
        block.definitions.push(PlannedDefinition {
            source: DefinitionSource::from_value(entry)?,
            repo_action_level: format!("1.1.3.{}", i + 1),
        });
    }
    let request = OverlayRequest {
        job_id: JOB_ID.into(),
        namespace: "common".into(),
        test_blocks: vec![block],
        ..OverlayRequest::default()
    };
    let location = scratch.join("overlay");
    std::fs::create_dir_all(&location)?;
    let overlay = OverlayBuilder::default().build(&request, &location)?;
    let tarball = scratch.join("overlay.tar.gz");
    lava_shell::tarball::build_tarball(&overlay.location, &overlay.results_dir, &tarball)?;
    Ok(CycleOverlay {
        tarball,
        runner: overlay.runner_command(0),
    })
}

fn copy_servable(file: &Path, dir: &Path) -> Result<()> {
    let to = dir.join(file.file_name().expect("a file"));
    std::fs::copy(file, &to).with_context(|| format!("copying {}", file.display()))?;
    make_servable(&to)
}

/// Readable by the TFTP server (files written here may be private to us).
fn make_servable(file: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("making {} readable", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn fixture_job() -> Value {
        let path = crate::shared::workspace_root().join("fixtures/board/uboot-ramdisk.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let text = ["@KERNEL_URL@", "@RAMDISK_URL@", "@DTB_URL@"]
            .iter()
            .fold(text, |t, p| t.replace(p, "file:///nowhere"));
        serde_yaml::from_str(&text).unwrap()
    }

    #[test]
    fn the_overlay_holds_the_jobs_definition_and_its_runner() {
        let job = fixture_job();
        let scratch = tempfile::tempdir().unwrap();
        let overlay = build_overlay(block(&job, "test").unwrap(), scratch.path()).unwrap();
        assert_eq!(
            overlay.runner,
            "/lava-cycle/bin/lava-test-runner /lava-cycle/0"
        );
        assert!(std::fs::metadata(&overlay.tarball).unwrap().len() > 0);
        let run = walk(scratch.path())
            .into_iter()
            .find(|p| p.ends_with("0/tests/0_board-smoke/run.sh"))
            .expect("the definition's run.sh in the overlay");
        let run = std::fs::read_to_string(run).unwrap();
        assert!(
            run.contains("lava-test-case measured --result pass --measurement 42"),
            "{run}"
        );
    }

    #[test]
    fn lines_are_typed_with_the_boot_character_delay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cycle = JobCycle {
            dir: PathBuf::from("/nonexistent/job-cycle-test"),
            console_port: port,
            hard_reset: Vec::new(),
            power_off: Vec::new(),
            interrupt_prompt: String::new(),
            bootloader_prompt: String::new(),
            commands: Vec::new(),
            character_delay: Duration::from_millis(30),
            runner: String::new(),
        };
        let mut console = Console::connect(port).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let started = Instant::now();
        cycle.type_line(&mut console, "dhcp").unwrap();
        // Five characters (the line and its carriage return), each followed by the delay.
        assert!(started.elapsed() >= Duration::from_millis(150));
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"dhcp\r");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
        found
    }
}
