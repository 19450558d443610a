//! End-to-end: LAVA's installer jobs (`deploy: to: iso-installer` + `boot: method:
//! qemu-iso`) through the real `lava-run`, with the tiny installer ISO of
//! `cargo xtask iso-installer` (docs/qemu-iso.md). Skipped outside CI when the ISO or QEMU
//! is missing.

mod common;

use common::{has, lava_run, results};
use lava_test_support::ci::skip_or_fail;
use lava_test_support::paths::workspace;
use lava_test_support::process::processes_with;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `cargo xtask iso-installer` wrote, or why the tests cannot run.
struct Rig {
    dir: PathBuf,
}

impl Rig {
    fn find() -> Result<Rig, String> {
        let dir = workspace().join("target/iso-installer");
        for file in [
            "installer.iso",
            "preseed.cfg",
            "device.yaml",
            "dispatcher.yaml",
            "qemu-iso.yaml",
        ] {
            if !dir.join(file).is_file() {
                return Err(format!(
                    "target/iso-installer/{file} is missing (run `cargo xtask iso-installer`)"
                ));
            }
        }
        let qemu = Command::new("qemu-system-x86_64")
            .arg("--version")
            .stdout(Stdio::null())
            .status();
        if !qemu.is_ok_and(|s| s.success()) {
            return Err("qemu-system-x86_64 does not run".into());
        }
        if !lava_test_support::ci::tool_exists("xorriso") {
            return Err("xorriso is not installed (Debian package xorriso)".into());
        }
        Ok(Rig { dir })
    }

    fn run(&self, job: &Path, job_id: &str) -> Outcome {
        let out = tempfile::tempdir().unwrap().keep();
        let status = Command::new(lava_run())
            .args(["--job-id", job_id, "--output-dir"])
            .arg(&out)
            .arg("--device")
            .arg(self.dir.join("device.yaml"))
            .arg("--dispatcher")
            .arg(self.dir.join("dispatcher.yaml"))
            .arg(job)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let outcome = Outcome {
            code: status.code().unwrap_or(-1),
            result: std::fs::read_to_string(out.join("result.yaml")).unwrap(),
            log: std::fs::read_to_string(out.join("logs.yaml")).unwrap(),
        };
        // The job's own QEMU processes name files of its scratch directory.
        let left = processes_with(&format!("/{job_id}/prepare-empty-image"));
        assert!(left.is_empty(), "QEMU left behind: {left:?}");
        assert!(
            !self.dir.join("tftp").join(job_id).exists(),
            "the job's TFTP directory is removed"
        );
        outcome
    }
}

struct Outcome {
    code: i32,
    result: String,
    log: String,
}

impl Outcome {
    fn tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }
}

#[test]
fn the_installer_installs_and_the_tests_run_on_the_installed_disk() {
    let rig = match Rig::find() {
        Ok(rig) => rig,
        Err(why) => return skip_or_fail(why),
    };
    let o = rig.run(&rig.dir.join("qemu-iso.yaml"), "9201");
    assert_eq!(o.code, 0, "{}", o.tail());
    let r = results(&o.log);
    for case in [
        "validate",
        "prepare-empty-image",
        "pull-installer-files",
        "monitor-installer-connection",
        "login-action",
        "job",
    ] {
        assert!(has(&r, "lava", case, "pass"), "{case}: {r:?}");
    }
    for (case, outcome) in [
        ("root-on-installed-disk", "pass"),
        ("installed-by-preseed", "pass"),
        ("preseed-hostname", "pass"),
        ("booted-by-installed-loader", "pass"),
        ("installation-cd-mounted", "fail"),
    ] {
        assert!(has(&r, "0_installed", case, outcome), "{case}: {r:?}");
    }
    // The installer got the preseed over TFTP, by its path under the TFTP root.
    assert!(
        o.log
            .contains("preseed/url=tftp://10.0.2.2/9201/deploy-iso-installer-1/preseed.cfg"),
        "the preseed URL"
    );
    let position = |needle: &str| {
        o.log
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the log"))
    };
    // The installer ran to its end, then the installed disk booted on its own.
    let installed = position("lava-rs-installer: Installation complete");
    let powered_down = installed
        + o.log[installed..]
            .find("reboot: Power down")
            .expect("the installer powers off");
    let reboot = position("\"msg\": \"start: 2.3 reboot-into-installed");
    let loader = position("Loading initial ramdisk");
    let login = position("lava-rs-installed login:");
    assert!(installed < powered_down && powered_down < reboot);
    assert!(reboot < loader && loader < login);
    let reboot_command = o.log[reboot..]
        .lines()
        .find_map(|l| l.split_once("\"msg\": \"Boot command: ").map(|(_, c)| c))
        .expect("the reboot's command line");
    assert!(
        !reboot_command.contains("-kernel") && !reboot_command.contains("installer.iso"),
        "the installed system boots from its disk alone: {reboot_command}"
    );
    assert!(
        reboot_command.contains("hd.img"),
        "the installed disk: {reboot_command}"
    );
}

#[test]
fn an_installer_failure_fails_the_job_with_the_installers_message() {
    let rig = match Rig::find() {
        Ok(rig) => rig,
        Err(why) => return skip_or_fail(why),
    };
    let dir = tempfile::tempdir().unwrap();
    // A preseed naming no disk: the installer stops at its first step.
    let preseed = std::fs::read_to_string(rig.dir.join("preseed.cfg")).unwrap();
    let broken: String = preseed
        .lines()
        .filter(|l| !l.contains("partman-auto/disk"))
        .map(|l| format!("{l}\n"))
        .collect();
    let preseed_path = dir.path().join("no-disk.cfg");
    std::fs::write(&preseed_path, broken).unwrap();
    let job = std::fs::read_to_string(rig.dir.join("qemu-iso.yaml"))
        .unwrap()
        .replace(
            &format!("file://{}/preseed.cfg", rig.dir.display()),
            &format!("file://{}", preseed_path.display()),
        );
    assert!(job.contains("no-disk.cfg"));
    let job_path = dir.path().join("qemu-iso-no-disk.yaml");
    std::fs::write(&job_path, job).unwrap();

    let o = rig.run(&job_path, "9202");
    assert_eq!(o.code, 1, "{}", o.tail());
    assert!(o.result.contains("error_type: Job"), "{}", o.result);
    assert!(
        o.result
            .contains("Installer failed: ERROR: Installation step failed"),
        "{}",
        o.result
    );
    assert!(o.log.contains("the preseed names no disk"), "{}", o.tail());
    assert!(
        !o.log.contains("start: 2.3 reboot-into-installed"),
        "no reboot after a failed installation"
    );
    let r = results(&o.log);
    assert!(
        has(&r, "lava", "monitor-installer-connection", "fail"),
        "{r:?}"
    );
}
