//! End-to-end: real jobs through the real `lava-run` binary, on the local-shell device
//! (a shell on a pty) and on the embedded QEMU device (skipped outside CI when QEMU or the
//! test system is missing; `cargo xtask test-system` builds it).

mod common;

use common::{has, lava_run, qemu_fixture_job, results};
use lava_test_support::ci::skip_or_fail;
use lava_test_support::paths::workspace;
use lava_test_support::process::processes_with;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Outcome {
    code: i32,
    result: serde_yaml::Value,
    log: String,
}

fn run_job(job: &Path, device: &Path, job_id: &str) -> Outcome {
    let out = tempfile::tempdir().unwrap().keep();
    let status = Command::new(lava_run())
        .args(["--job-id", job_id, "--output-dir"])
        .arg(&out)
        .arg("--device")
        .arg(device)
        .arg(job)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let result = std::fs::read_to_string(out.join("result.yaml")).unwrap();
    Outcome {
        code: status.code().unwrap_or(-1),
        result: serde_yaml::from_str(&result).unwrap(),
        log: std::fs::read_to_string(out.join("logs.yaml")).unwrap(),
    }
}

#[test]
fn local_shell_job_runs_its_test_shell() {
    let root = workspace();
    let o = run_job(
        &root.join("fixtures/local-shell/inline-job.yaml"),
        &root.join("fixtures/local-shell/device.yaml"),
        "9101",
    );
    assert_eq!(o.code, 0, "{}", o.log);
    assert_eq!(
        o.result.get("result").and_then(|v| v.as_str()),
        Some("pass")
    );
    let r = results(&o.log);
    assert!(has(&r, "0_smoke", "always-pass", "pass"), "{r:?}");
    assert!(has(&r, "0_smoke", "always-fail", "fail"), "{r:?}");
    assert!(has(&r, "lava", "job", "pass"));
    assert!(o.log.contains("\"msg\": \"start: 3 lava-test-retry"));
    assert!(o.log.contains("\"lvl\": \"target\""));
}

#[test]
fn five_mistakes_are_reported_together_by_lava_run() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("bad.yaml");
    std::fs::write(
        &job,
        "job_name: bad\nvisibility: public\npriorty: high\ntimeouts: {action: {minuts: 1}}\nactions:\n- deploy: {to: overlayy}\n- boot: {method: minimal, prompts: ['$ ']}\n- tests: {definitions: []}\n",
    )
    .unwrap();
    let o = run_job(
        &job,
        &workspace().join("fixtures/local-shell/device.yaml"),
        "9102",
    );
    assert_eq!(o.code, 1);
    assert_eq!(
        o.result.get("error_type").and_then(|v| v.as_str()),
        Some("Job")
    );
    let msg = o.result.get("error_msg").and_then(|v| v.as_str()).unwrap();
    for expected in [
        "priorty: unknown key 'priorty' (did you mean 'priority'?)",
        "timeouts.action.minuts: unknown key 'minuts' (did you mean 'minutes'?)",
        "timeouts.job: missing required key",
        "actions[0].deploy.to: unknown deployment 'overlayy' (did you mean 'overlay'?)",
        "actions[2].tests: unknown key 'tests' (did you mean 'test'?)",
    ] {
        assert!(msg.contains(expected), "missing {expected:?} in {msg}");
    }
}

/// `lava-run` with `--validate` on a job and device.
fn validate_job(job: &Path, device: &Path, job_id: &str) -> Outcome {
    let out = tempfile::tempdir().unwrap().keep();
    let status = Command::new(lava_run())
        .args(["--job-id", job_id, "--validate", "--output-dir"])
        .arg(&out)
        .arg("--device")
        .arg(device)
        .arg(job)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let result = std::fs::read_to_string(out.join("result.yaml")).unwrap();
    Outcome {
        code: status.code().unwrap_or(-1),
        result: serde_yaml::from_str(&result).unwrap(),
        log: std::fs::read_to_string(out.join("logs.yaml")).unwrap(),
    }
}

#[test]
fn a_method_lava_rs_cannot_run_yet_fails_validation_and_the_run_refuses_before_power() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("device.yaml");
    let local_shell = std::fs::read_to_string(root.join("fixtures/local-shell/device.yaml"))
        .unwrap()
        .replace(
            "constants:\n",
            "constants:\n  u-boot: {interrupt-prompt: 'Hit any key', interrupt-character: ' '}\n",
        )
        .replace(
            "      minimal:\n",
            "      minimal:\n      u-boot:\n        parameters: {bootloader_prompt: '=>', boot_message: Starting kernel}\n        ramdisk: {commands: [boot]}\n",
        );
    std::fs::write(&device, local_shell).unwrap();
    let job = dir.path().join("uboot.yaml");
    std::fs::write(
        &job,
        "job_name: u-boot\nvisibility: public\ntimeouts: {job: {minutes: 2}}\nactions:\n- deploy: {to: overlay}\n\
         - boot: {method: u-boot, commands: ramdisk, prompts: ['# '], transfer_overlay: {transfer_method: zmodem, unpack_command: tar -xzf}}\n\
         - test: {definitions: [{from: inline, name: smoke, path: inline/smoke.yaml, repository: {metadata: {name: smoke}}}]}\n",
    )
    .unwrap();
    // The zmodem overlay transfer is not written yet.
    let expected = "actions[1].boot: action 'overlay-unpack' (method u-boot) (zmodem transfer) cannot run in lava-rs yet";

    let validated = validate_job(&job, &device, "9105");
    assert_eq!(validated.code, 1, "{}", validated.log);
    assert_eq!(
        validated.result.get("error_type").and_then(|v| v.as_str()),
        Some("Job")
    );
    let msg = validated
        .result
        .get("error_msg")
        .and_then(|v| v.as_str())
        .unwrap();
    assert!(msg.contains(expected), "{msg}");

    let ran = run_job(&job, &device, "9106");
    assert_eq!(ran.code, 1);
    assert!(ran.log.contains(expected), "{}", ran.log);
    assert!(
        !ran.log.contains("start: 1 ") && !ran.log.contains("start: 2 "),
        "nothing ran: {}",
        ran.log
    );
}

#[test]
fn the_local_shell_and_qemu_jobs_validate() {
    let root = workspace();
    let local = validate_job(
        &root.join("fixtures/local-shell/inline-job.yaml"),
        &root.join("fixtures/local-shell/device.yaml"),
        "9107",
    );
    assert_eq!(local.code, 0, "{}", local.log);
    // The built job names real files; the fixture's placeholder paths still say whether
    // every action can run here.
    let built = root.join("target/test-system/qemu-smoke.yaml");
    let job = if built.exists() {
        built.clone()
    } else {
        root.join("fixtures/qemu/qemu-smoke.yaml")
    };
    let qemu = validate_job(&job, &root.join("fixtures/qemu/device.yaml"), "9108");
    assert!(
        !qemu.log.contains("cannot run in lava-rs yet"),
        "{}",
        qemu.log
    );
    if built.exists() {
        assert_eq!(qemu.code, 0, "{}", qemu.log);
    }
}

#[test]
fn sigterm_mid_test_runs_finalize_and_leaves_no_process() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("hang.yaml");
    // A unique sleep length marks the test's process tree in /proc.
    std::fs::write(
        &job,
        "job_name: hang\nvisibility: public\ntimeouts: {job: {minutes: 5}}\nactions:\n- deploy: {to: overlay}\n- boot: {method: minimal, prompts: ['local-shell\\$ ']}\n- test:\n    timeout: {minutes: 4}\n    definitions:\n    - from: inline\n      name: hang\n      path: inline/hang.yaml\n      repository:\n        metadata: {format: Lava-Test Test Definition 1.0, name: hang, description: hang}\n        run: {steps: ['sleep 4711']}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(lava_run())
        .args(["--job-id", "9103", "--output-dir"])
        .arg(&out)
        .arg("--device")
        .arg(root.join("fixtures/local-shell/device.yaml"))
        .arg(&job)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while processes_with("sleep 4711").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the test never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let result = std::fs::read_to_string(out.join("result.yaml")).unwrap();
    assert!(result.contains("error_type: Canceled"), "{result}");
    let log = std::fs::read_to_string(out.join("logs.yaml")).unwrap();
    assert!(log.contains("\"msg\": \"start: 4 finalize"), "finalize ran");
    assert!(
        log.trim_end().ends_with("\"error_type\": \"Canceled\"}}"),
        "the log is complete"
    );
    let left = processes_with("sleep 4711");
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

#[test]
fn qemu_job_boots_the_guest_and_runs_its_test_shell() {
    let root = workspace();
    let job = root.join("target/test-system/qemu-smoke.yaml");
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if !qemu || !job.exists() {
        skip_or_fail("QEMU or target/test-system is missing (run `cargo xtask test-system`)");
        return;
    }
    let o = run_job(&job, &root.join("fixtures/qemu/device.yaml"), "9104");
    assert_eq!(
        o.code,
        0,
        "{}",
        o.log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    let r = results(&o.log);
    for (case, outcome) in [
        ("always-pass", "pass"),
        ("always-fail", "fail"),
        ("hostname", "pass"),
        ("declared-fail", "fail"),
        ("measured", "pass"),
    ] {
        assert!(has(&r, "0_qemu-smoke", case, outcome), "{case}: {r:?}");
    }
    assert!(
        o.log.contains("lava-rs test system ready"),
        "the guest's console is in the log"
    );
    // finalize: power-off ends QEMU itself, and read-feedback reads its last words (QEMU
    // reports the signal) to end of file before the connection is finalised.
    let position = |needle: &str| {
        o.log
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the log"))
    };
    let powered_off = position("Powering off the device of namespace 'common': ending");
    let last_words = position("terminating on signal 15");
    let finalised = position("Finalising connection for namespace 'common'");
    assert!(powered_off < last_words && last_words < finalised);
    assert!(
        o.log[..finalised]
            .lines()
            .any(|l| l.contains("\"feedback\"") && l.contains("terminating on signal 15")),
        "QEMU's last words are a feedback record"
    );
}

/// The `Boot command` QEMU was started with, from a log.
fn boot_command(log: &str) -> String {
    log.lines()
        .find_map(|l| {
            l.split_once("\"msg\": \"Boot command: ")
                .map(|(_, c)| c.to_string())
        })
        .unwrap_or_else(|| panic!("no Boot command in the log"))
}

#[test]
fn qemu_jobs_in_lavas_overlay_shapes_run_their_tests() {
    let dir = tempfile::tempdir().unwrap();
    let device = workspace().join("fixtures/qemu/device.yaml");
    let jobs = ["qemu-ramdisk-overlays.yaml", "qemu-disk-image.yaml"]
        .map(|fixture| qemu_fixture_job(fixture, dir.path()));
    let [Ok(ramdisk_job), Ok(disk_job)] = jobs else {
        skip_or_fail(format!("the QEMU overlay jobs cannot run: {jobs:?}"));
        return;
    };

    // `overlays: lava: true`: the overlay is appended to the ramdisk, no overlay disk.
    let o = run_job(&ramdisk_job, &device, "9111");
    let tail = o.log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert_eq!(o.code, 0, "{tail}");
    let r = results(&o.log);
    for (case, outcome) in [
        ("always-pass", "pass"),
        ("always-fail", "fail"),
        ("no-overlay-disk", "pass"),
        ("runner-in-ramdisk", "pass"),
        ("measured", "pass"),
    ] {
        assert!(
            has(&r, "0_ramdisk-overlays", case, outcome),
            "{case}: {r:?}"
        );
    }
    assert!(
        o.log.contains("\"msg\": \"start: 1.4.2 append-overlays"),
        "append-overlays ran"
    );
    assert!(
        o.log.contains("Overlay already applied"),
        "apply-overlay-guest skipped"
    );
    assert!(
        !boot_command(&o.log).contains("lavatest"),
        "no overlay disk attached"
    );

    // A disk image job: the overlay on LAVA's qcow2 overlay disk, mounted by UUID.
    let o = run_job(&disk_job, &device, "9112");
    let tail = o.log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert_eq!(o.code, 0, "{tail}");
    let r = results(&o.log);
    for (case, outcome) in [
        ("always-pass", "pass"),
        ("always-fail", "fail"),
        ("rootfs-mounts", "pass"),
        ("rootfs-content", "pass"),
        ("overlay-on-its-disk", "pass"),
        ("rootfs-missing-file", "fail"),
    ] {
        assert!(has(&r, "0_disk-image", case, outcome), "{case}: {r:?}");
    }
    let command = boot_command(&o.log);
    assert!(command.contains("-drive format=raw,file="), "{command}");
    assert!(
        command.contains("lava-guest.qcow2,media=disk,if=ide,id=lavatest"),
        "{command}"
    );
    assert!(
        o.log.contains("mount /dev/disk/by-uuid/"),
        "the test shell mounts the disk"
    );
}

#[test]
fn qemu_ext4_rootfs_with_appended_overlay_runs_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    let device = workspace().join("fixtures/qemu/device.yaml");
    let job = match qemu_fixture_job("qemu-ext4-overlays.yaml", dir.path()) {
        Ok(job) => job,
        Err(why) => {
            skip_or_fail(format!("the QEMU ext4 overlay job cannot run: {why}"));
            return;
        }
    };
    // `overlays: lava: true` on a `format: ext4` image: the overlay is written into the
    // root filesystem the guest switches to.
    let o = run_job(&job, &device, "9113");
    let tail = o.log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert_eq!(o.code, 0, "{tail}");
    let r = results(&o.log);
    for (case, outcome) in [
        ("always-pass", "pass"),
        ("always-fail", "fail"),
        ("root-is-ext4", "pass"),
        ("runner-on-rootfs", "pass"),
        ("no-overlay-disk", "pass"),
        ("rootfs-missing-file", "fail"),
    ] {
        assert!(has(&r, "0_ext4-overlays", case, outcome), "{case}: {r:?}");
    }
    assert!(
        o.log.contains("append-overlays") && o.log.contains("Calling: debugfs -w -f "),
        "append-overlays wrote the overlay with debugfs"
    );
    assert!(
        o.log.contains("Overlay already applied"),
        "apply-overlay-guest skipped"
    );
    assert!(
        o.log
            .contains("switching to the root filesystem on /dev/sda"),
        "the guest runs from the ext4 image"
    );
    assert!(
        !boot_command(&o.log).contains("lavatest"),
        "no overlay disk attached"
    );
}

#[test]
fn a_qemu_boot_in_docker_is_refused_at_validation_never_run_on_the_host() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let smoke = std::fs::read_to_string(root.join("fixtures/qemu/qemu-smoke.yaml")).unwrap();
    let job = dir.path().join("docker.yaml");
    let docker = smoke.replace(
        "    method: qemu\n",
        "    method: qemu\n    docker:\n      image: example.invalid/qemu:latest\n",
    );
    assert_ne!(docker, smoke);
    std::fs::write(&job, docker).unwrap();
    let device = root.join("fixtures/qemu/device.yaml");
    let o = validate_job(&job, &device, "9113");
    assert_eq!(o.code, 1, "{}", o.log);
    let msg = o.result.get("error_msg").and_then(|v| v.as_str()).unwrap();
    assert!(
        msg.contains("action 'execute-qemu' (method qemu) (QEMU in a docker container) cannot run in lava-rs yet"),
        "{msg}"
    );
    let has_docker = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("docker").is_file());
    if !has_docker {
        assert!(
            o.log
                .contains("no container runtime ('docker') is installed"),
            "{}",
            o.log
        );
    }
    let ran = run_job(&job, &device, "9114");
    assert_eq!(ran.code, 1);
    assert!(
        !ran.log.contains("Boot command:"),
        "QEMU never started: {}",
        ran.log
    );
}
