//! The U-Boot reference runs: jobs on the fake U-Boot board (fixtures/uboot-fake) under our
//! `lava-run` and under Debian's LAVA `lava-run` (`/usr/bin/lava-run`, 2023.01) must send
//! the board the same boot commands and give the same result set (every test-suite case
//! with its result, and the `lava` suite's `job` result).
//!
//! Both dispatchers serve the files from tftpd-hpa's directory (`/etc/default/tftpd-hpa`,
//! where LAVA's `tftp` deploy puts them), and LAVA keeps its jobs under
//! `/var/lib/lava/dispatcher/tmp`: the test needs both writable (root, as on a worker). With
//! `CI=true` every prerequisite must be present; elsewhere the test says which one is
//! missing and skips.

mod common;

use common::{lava_run, results};
use lava_test_support::ci::{require_tool, skip_or_fail};
use lava_test_support::paths::workspace;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// LAVA's dispatcher, as Debian's `lava-dispatcher` installs it.
const LAVA_RUN: &str = "/usr/bin/lava-run";
/// Where LAVA's `lava-run` keeps each job's files.
const LAVA_WORK_DIR: &str = "/var/lib/lava/dispatcher/tmp";

/// The TFTP root both dispatchers use, if this machine can run the reference.
fn prerequisites() -> Option<PathBuf> {
    if !(require_tool("in.tftpd", "tftpd-hpa")
        && require_tool("mkimage", "u-boot-tools")
        && require_tool("cpio", "cpio"))
    {
        return None;
    }
    if !Path::new(LAVA_RUN).exists() {
        skip_or_fail(format!(
            "{LAVA_RUN} is missing (apt install lava-dispatcher)"
        ));
        return None;
    }
    let config = std::fs::read_to_string("/etc/default/tftpd-hpa").unwrap_or_default();
    let Some(root) = config.lines().find_map(|l| {
        l.trim()
            .strip_prefix("TFTP_DIRECTORY=")
            .map(|v| PathBuf::from(v.trim_matches('"')))
    }) else {
        skip_or_fail("/etc/default/tftpd-hpa names no TFTP_DIRECTORY");
        return None;
    };
    let writable =
        |dir: &Path| std::fs::create_dir_all(dir).is_ok() && tempfile::tempfile_in(dir).is_ok();
    if !writable(&root) || !writable(Path::new(LAVA_WORK_DIR)) {
        skip_or_fail(format!(
            "{} and {LAVA_WORK_DIR} must be writable (run as root)",
            root.display()
        ));
        return None;
    }
    Some(root)
}

/// One board with its rendered device configuration (LAVA's `lava-run` takes YAML).
struct Board {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Board {
    fn new(tftp: &Path, fake_args: &str) -> Board {
        let tmp = tempfile::Builder::new()
            .prefix("lava-rs-uboot-ref-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = tmp.path().to_path_buf();
        for dir in ["state", "images", "src"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let board = Board { _tmp: tmp, root };
        let images = board.root.join("images");
        std::fs::write(images.join("Image"), b"kernel\n").unwrap();
        std::fs::write(images.join("board.dtb"), b"dtb\n").unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg("printf 'init\\n' > init && printf 'init\\n' | cpio --quiet -o -H newc | gzip -c > \"$0\"")
            .arg(images.join("ramdisk.cpio.gz"))
            .current_dir(board.root.join("src"))
            .status()
            .unwrap();
        assert!(status.success());
        let dictionary = board.root.join("device.jinja2");
        std::fs::write(
            &dictionary,
            format!(
                "{{% extends 'uboot-fake.jinja2' %}}\n\
                 {{% set state_dir = '{}' %}}\n\
                 {{% set tftp_dir = '{}' %}}\n\
                 {{% set fake_uboot = '{}' %}}\n\
                 {{% set fake_args = '{fake_args}' %}}\n",
                board.root.join("state").display(),
                tftp.display(),
                workspace()
                    .join("fixtures/uboot-fake/fake-uboot.sh")
                    .display()
            ),
        )
        .unwrap();
        let rendered = Command::new(lava_run())
            .arg("render-device")
            .arg("--path")
            .arg(workspace().join("fixtures/uboot-fake/device-types"))
            .arg(&dictionary)
            .output()
            .unwrap();
        assert!(rendered.status.success());
        std::fs::write(board.root.join("device.yaml"), rendered.stdout).unwrap();
        std::fs::write(
            board.root.join("dispatcher.yaml"),
            "dispatcher_ip: 10.0.2.2\n",
        )
        .unwrap();
        board
    }

    /// Runs fixture `job` with `dispatcher` (ours or LAVA's) as job `job_id`; returns the log.
    fn run(&self, dispatcher: &Path, job: &str, job_id: &str) -> String {
        let text = std::fs::read_to_string(workspace().join("fixtures/uboot-fake").join(job))
            .unwrap()
            .replace("IMAGES", &self.root.join("images").display().to_string());
        let job_file = self.root.join(format!("{job_id}.yaml"));
        std::fs::write(&job_file, text).unwrap();
        let output = self.root.join(format!("out-{job_id}"));
        let stderr = self.root.join(format!("{job_id}.stderr"));
        let status = Command::new(dispatcher)
            .args(["--job-id", job_id, "--output-dir"])
            .arg(&output)
            .arg("--device")
            .arg(self.root.join("device.yaml"))
            .arg("--dispatcher")
            .arg(self.root.join("dispatcher.yaml"))
            .arg(&job_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .status()
            .unwrap();
        let _ = status;
        // Ours writes logs.yaml; LAVA's log goes to stderr, one record a line without
        // logs.yaml's "- ".
        std::fs::read_to_string(output.join("logs.yaml")).unwrap_or_else(|_| {
            std::fs::read_to_string(&stderr)
                .unwrap_or_default()
                .lines()
                .map(|l| format!("- {l}\n"))
                .collect()
        })
    }
}

/// The boot commands a dispatcher logged ("Parsed boot commands:"), with the per-job TFTP
/// directory made comparable.
fn boot_commands(log: &str, job_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in log.lines() {
        if line.contains("\"msg\": \"Parsed boot commands:\"") {
            out.clear();
            inside = true;
            continue;
        }
        if inside {
            match line.split_once("\"msg\": \"- ") {
                Some((_, rest)) if line.contains("\"lvl\": \"info\"") => {
                    let command = rest.trim_end_matches("\"}").to_string();
                    out.push(comparable(&command).replace(&format!("{job_id}/"), "JOB/"));
                }
                _ => inside = false,
            }
        }
    }
    out
}

/// `text` with every `tftp-deploy-<name>` directory as `tftp-deploy-X` (LAVA's names are
/// random, ours are levels).
fn comparable(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("tftp-deploy-") {
        out.push_str(&rest[..at]);
        out.push_str("tftp-deploy-X");
        let after = &rest[at + "tftp-deploy-".len()..];
        let end = after.find('/').unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The result set: every test-suite case (sorted) and the `lava` suite's job result.
fn result_set(log: &str) -> (Vec<(String, String, String)>, Option<String>) {
    let all = results(log);
    let job = all
        .iter()
        .find(|(suite, case, _)| suite == "lava" && case == "job")
        .map(|(_, _, result)| result.clone());
    let mut cases: Vec<_> = all
        .into_iter()
        .filter(|(suite, _, _)| suite != "lava")
        .collect();
    cases.sort();
    (cases, job)
}

/// Runs fixture `job` under both dispatchers (job ids from this process and `slot`, one
/// per test) and compares.
fn compare(job: &str, slot: u32) {
    compare_with(job, "", slot);
}

/// [`compare`] on a board started with `fake_args`; returns both logs (ours, LAVA's).
fn compare_with(job: &str, fake_args: &str, slot: u32) -> Option<(String, String)> {
    let tftp = prerequisites()?;
    let base = std::process::id() % 100_000 * 10 + 1_000_000 + slot * 2;
    let (ours_id, lava_id) = (base.to_string(), (base + 1).to_string());
    let ours = Board::new(&tftp, fake_args).run(&lava_run(), job, &ours_id);
    let lava = Board::new(&tftp, fake_args).run(Path::new(LAVA_RUN), job, &lava_id);
    let (ours_commands, lava_commands) = (
        boot_commands(&ours, &ours_id),
        boot_commands(&lava, &lava_id),
    );
    assert!(
        lava.contains("Parsed boot commands:"),
        "LAVA's log:\n{lava}"
    );
    assert_eq!(ours_commands, lava_commands, "boot commands differ");
    let (ours_set, lava_set) = (result_set(&ours), result_set(&lava));
    assert!(lava_set.1.is_some(), "LAVA's log:\n{lava}");
    assert_eq!(ours_set, lava_set, "ours:\n{ours}\n\nLAVA's:\n{lava}");
    for id in [&ours_id, &lava_id] {
        assert!(
            !tftp.join(id).exists(),
            "the TFTP directory of job {id} is left"
        );
    }
    Some((ours, lava))
}

#[test]
fn a_failing_tftp_is_the_same_bootloader_error_as_lava() {
    let Some((ours, lava)) = compare_with("ramdisk-job.yaml", " --fail tftp", 2) else {
        return;
    };
    let error = "matched a bootloader error message: 'File not found' (7)";
    assert!(lava.contains(error), "LAVA's log:\n{lava}");
    assert!(ours.contains(error), "ours:\n{ours}");
}

#[test]
fn monitors_on_the_fake_board_match_lava() {
    compare("monitor-job.yaml", 0);
}

#[test]
fn interactive_tests_on_the_fake_board_match_lava() {
    compare("interactive-job.yaml", 1);
}
