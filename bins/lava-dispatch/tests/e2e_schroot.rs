//! End-to-end: disposable chroots on an ssh device. The test registers a real schroot
//! (`type=file`: a busybox tarball unpacked afresh for every session) in
//! `/etc/schroot/chroot.d`, offers it in the ssh fixture device
//! (`actions.deploy.methods.schroot`), and runs `fixtures/ssh/schroot-job.yaml` twice
//! through `lava-run` against the private loopback sshd: each job's test shell runs inside
//! a new session, a file the first job writes is gone in the second, and finalize leaves
//! no session behind. A chroot the device does not offer is refused at validation.
//!
//! Needs `schroot` (Debian package), `busybox` and root (schroot's configuration);
//! skipped outside CI without them, a failure under CI.

mod common;

use common::{has, lava_run, results};
use lava_test_support::ci::{require_tool, skip_or_fail};
use lava_test_support::paths::workspace;
use lava_test_support::sshd::Sshd;
use lava_test_support::unique_job_id;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A file-type schroot registered for the test, removed (with any session left) on drop.
struct TestChroot {
    name: String,
    config: PathBuf,
    profile: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestChroot {
    fn create() -> Option<TestChroot> {
        if !require_tool("schroot", "apt-get install -y schroot") {
            return None;
        }
        let busybox = ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(busybox) = busybox else {
            skip_or_fail("busybox is missing (apt-get install -y busybox-static)");
            return None;
        };
        let chroot_d = Path::new("/etc/schroot/chroot.d");
        let writable = std::fs::metadata(chroot_d).is_ok_and(|m| !m.permissions().readonly())
            && current_uid() == 0;
        if !writable {
            skip_or_fail("registering a schroot needs root and /etc/schroot/chroot.d");
            return None;
        }
        let name = format!("lava-rs-test-{}", unique_job_id());
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for sub in ["bin", "etc", "root", "tmp", "proc", "sys", "dev"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        let applets = Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&applets.stdout).split_whitespace() {
            let link = root.join("bin").join(applet);
            if applet != "busybox" && !link.exists() {
                std::os::unix::fs::symlink("busybox", link).unwrap();
            }
        }
        std::fs::write(root.join("etc/lava-chroot"), format!("{name}\n")).unwrap();
        std::fs::write(
            root.join("etc/profile"),
            "PS1='root@lava-chroot:/# '\nexport PS1\n",
        )
        .unwrap();
        let tarball = dir.path().join("chroot.tar.gz");
        let packed = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-czf")
            .arg(&tarball)
            .arg(".")
            .status()
            .unwrap();
        assert!(packed.success());
        // A profile of its own (schroot reads profiles under /etc/schroot only): /dev
        // too, as the test shell writes to /dev/null; the host's users.
        let profile = Path::new("/etc/schroot").join(&name);
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(
            profile.join("fstab"),
            "/proc /proc none rw,bind 0 0\n/sys /sys none rw,bind 0 0\n/dev /dev none rw,bind 0 0\n",
        )
        .unwrap();
        std::fs::write(profile.join("copyfiles"), "").unwrap();
        std::fs::write(profile.join("nssdatabases"), "passwd\ngroup\n").unwrap();
        let config = chroot_d.join(&name);
        std::fs::write(
            &config,
            format!(
                "[{name}]\ntype=file\nfile={}\nprofile={name}\nusers=root\nroot-users=root\n",
                tarball.display(),
            ),
        )
        .unwrap();
        Some(TestChroot {
            name,
            config,
            profile,
            _dir: dir,
        })
    }

    /// The open sessions of this chroot.
    fn sessions(&self) -> Vec<String> {
        let out = Command::new("schroot")
            .args(["--list", "--all-sessions"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_start_matches("session:").to_string())
            .filter(|l| l.starts_with(&format!("{}-", self.name)))
            .collect()
    }
}

impl Drop for TestChroot {
    fn drop(&mut self) {
        for session in self.sessions() {
            let _ = Command::new("schroot")
                .args(["-e", "-c", &session])
                .status();
        }
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn current_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(u32::MAX)
}

/// The ssh fixture device offering `offered`, and the schroot job asking for `chroot`,
/// written in `dir`; returns (device, job).
fn write_fixture(dir: &Path, sshd: &Sshd, offered: &str, chroot: &str) -> (PathBuf, PathBuf) {
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let root = workspace();
    let device = std::fs::read_to_string(root.join("fixtures/ssh/device.yaml"))
        .unwrap()
        .replacen(
            "    methods:\n      ssh:\n",
            &format!("    methods:\n      schroot: ['{offered}']\n      ssh:\n"),
            1,
        )
        .replace("@SSH_HOST@", sshd.host())
        .replace("@SSH_PORT@", &sshd.port().to_string())
        .replace("@SSH_USER@", sshd.user())
        .replace(
            "@SSH_IDENTITY_FILE@",
            &sshd.identity_file().display().to_string(),
        )
        .replace("@SCRATCH@", &scratch.display().to_string());
    assert!(
        device.contains("schroot: ["),
        "the fixture's deploy methods moved"
    );
    let job = std::fs::read_to_string(root.join("fixtures/ssh/schroot-job.yaml"))
        .unwrap()
        .replace("@CHROOT@", chroot);
    let (device_path, job_path) = (dir.join("device.yaml"), dir.join("job.yaml"));
    std::fs::write(&device_path, device).unwrap();
    std::fs::write(&job_path, job).unwrap();
    (device_path, job_path)
}

/// Runs `lava-run` on the fixture; returns (exit code, logs.yaml).
fn run_job(dir: &Path, device: &Path, job: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let job_id = unique_job_id();
    let out = dir.join(format!("out-{job_id}"));
    let status = Command::new(lava_run())
        .args(["--job-id", &job_id, "--output-dir"])
        .arg(&out)
        .args(extra)
        .arg("--device")
        .arg(device)
        .arg(job)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("lava-rs-{job_id}")));
    let log = std::fs::read_to_string(out.join("logs.yaml")).unwrap_or_default();
    (status.code(), log)
}

#[test]
fn two_jobs_run_in_fresh_sessions_of_a_disposable_chroot() {
    let Some(chroot) = TestChroot::create() else {
        return;
    };
    let Some(sshd) = Sshd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (device, job) = write_fixture(dir.path(), &sshd, &chroot.name, &chroot.name);
    assert!(
        !Path::new("/root/written-by-a-job").exists(),
        "a file of an earlier run on the host"
    );
    for run in ["first", "second"] {
        let (code, log) = run_job(dir.path(), &device, &job, &[]);
        assert_eq!(code, Some(0), "{run} job:\n{log}\nsshd:\n{}", sshd.log());
        let r = results(&log);
        for case in [
            "in-the-chroot",
            "in-a-session",
            "nothing-left-behind",
            "write-a-file",
        ] {
            assert!(
                has(&r, "0_in-chroot", case, "pass"),
                "{run} job, {case}: {r:?}"
            );
        }
        assert!(has(&r, "lava", "job", "pass"), "{run}: {r:?}");
        for line in [
            "start: 2.5 schroot-login",
            &format!("Entering {} schroot", chroot.name),
            &format!("of {} ended", chroot.name),
        ] {
            assert!(log.contains(line), "{run} job: no '{line}' in\n{log}");
        }
        assert_eq!(
            chroot.sessions(),
            Vec::<String>::new(),
            "{run} job left a session"
        );
        // The overlay was moved into the session and the test shell's results directory
        // was the chroot's: nothing of the job on the host.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("scratch"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{run} job left {left:?} on the host");
    }
    // Written in the chroot's sessions only.
    assert!(!Path::new("/root/written-by-a-job").exists());
}

#[test]
fn a_chroot_the_device_does_not_offer_is_refused_at_validation() {
    let Some(sshd) = Sshd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (device, job) = write_fixture(dir.path(), &sshd, "bookworm", "trusty");
    let (code, log) = run_job(dir.path(), &device, &job, &["--validate"]);
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains(
            "deploy.chroot: 'trusty' is not a chroot of this device; expected one of: bookworm"
        ),
        "{log}"
    );
}
