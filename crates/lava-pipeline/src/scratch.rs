//! The job's scratch directory on the worker, LAVA's `Job.tmp_dir`:
//! `/var/lib/lava/dispatcher/tmp/<prefix><job id>`, `prefix` being the dispatcher
//! configuration's (`--dispatcher`). Downloads, overlays and every other per-job file of
//! the actions go below it ([`crate::Job::scratch_dir`]); the executor creates it when the
//! job starts and removes it in cleanup (LAVA's "Root tmp directory removed at").
//!
//! The job directory is created mode 0700: what is below it (downloaded images, overlays
//! carrying the job's secrets) is readable by the dispatcher's user only.
//!
//! Where [`DISPATCHER_DOWNLOAD_DIR`] cannot be used (not root, not writable: a test writer
//! running `lava-run` as a user), [`usable_root`] falls back to
//! `$TMPDIR/lava-dispatcher-<uid>`, a mode 0700 directory of that user (when such a path
//! exists and is not a directory of the user's, `$TMPDIR/lava-dispatcher-<uid>-<pid>`).
//! A dispatcher configuration key `tmp_dir` (a lava-rs extension) names another root.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// LAVA's root of job scratch directories.
pub const DISPATCHER_DOWNLOAD_DIR: &str = "/var/lib/lava/dispatcher/tmp";

/// The scratch directory of job `job_id` under `root`: `<root>/<prefix><job id>`.
pub fn job_dir(root: &Path, prefix: &str, job_id: &str) -> PathBuf {
    root.join(format!("{prefix}{job_id}"))
}

/// The root this process uses: [`DISPATCHER_DOWNLOAD_DIR`] when it can be created and
/// written, else the per-user fallback (decided once per process).
pub fn usable_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| root_or_fallback(Path::new(DISPATCHER_DOWNLOAD_DIR)))
        .clone()
}

/// `candidate` when a directory can be created in it, else the per-user fallback.
pub fn root_or_fallback(candidate: &Path) -> PathBuf {
    if writable(candidate) {
        return candidate.to_path_buf();
    }
    let uid = rustix::process::geteuid().as_raw();
    let shared = std::env::temp_dir().join(format!("lava-dispatcher-{uid}"));
    if create_private_dir_all(&shared).is_ok() && owned_directory(&shared, uid) {
        return shared;
    }
    let own = std::env::temp_dir().join(format!("lava-dispatcher-{uid}-{}", std::process::id()));
    let _ = create_private_dir_all(&own);
    own
}

/// Whether `dir` exists (or can be created) and a directory can be made in it.
fn writable(dir: &Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".lava-rs-probe-{}", std::process::id()));
    let made = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    made
}

/// A real directory (not a symlink) owned by `uid` and closed to others.
fn owned_directory(dir: &Path, uid: u32) -> bool {
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
}

/// Create `dir` and its missing parents mode 0700, and make `dir` itself 0700 if it
/// already existed.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_directories_carry_the_prefix() {
        assert_eq!(
            job_dir(Path::new(DISPATCHER_DOWNLOAD_DIR), "lab1-", "42"),
            Path::new("/var/lib/lava/dispatcher/tmp/lab1-42")
        );
        assert_eq!(job_dir(Path::new("/r"), "", "42"), Path::new("/r/42"));
    }

    #[test]
    fn an_unusable_root_falls_back_to_a_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        let usable = dir.path().join("tmp");
        assert_eq!(root_or_fallback(&usable), usable);
        // Below a regular file nothing can be created.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let fallback = root_or_fallback(&file.join("tmp"));
        assert!(
            fallback.starts_with(std::env::temp_dir()),
            "{}",
            fallback.display()
        );
        let meta = std::fs::symlink_metadata(&fallback).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, 0o700);
    }

    #[test]
    fn private_directories_are_0700() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("a/b/42");
        create_private_dir_all(&job).unwrap();
        let mode = std::fs::metadata(&job).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir_all(&job).unwrap();
        assert_eq!(std::fs::metadata(&job).unwrap().mode() & 0o777, 0o700);
    }
}
