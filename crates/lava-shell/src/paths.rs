//! Path checks: every path that comes from a job or from a fetched repository goes
//! through here before the worker reads or writes it.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, ShellError};
use lava_pipeline::definition::relative_path_problem;

fn unsafe_path(path: &str, reason: &str) -> ShellError {
    ShellError::UnsafePath {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// Checks that `relative` is a relative path that stays below its base and names a file
/// (lava-pipeline's [`relative_path_problem`], the rule the job checks apply first). `.`
/// components are dropped.
pub fn checked_relative(relative: &str) -> Result<PathBuf> {
    if let Some(problem) = relative_path_problem(relative) {
        return Err(unsafe_path(relative, problem));
    }
    Ok(Path::new(relative)
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect())
}

/// Checks that `name` is one plain path component (a directory name), as
/// `git-repos` destinations must be.
pub fn checked_component(name: &str) -> Result<&str> {
    let clean = checked_relative(name)?;
    if clean.components().count() != 1 || name.contains('/') {
        return Err(unsafe_path(name, "must be a single path component"));
    }
    Ok(name)
}

/// Joins `relative` under `base` and checks, following symlinks that already
/// exist, that the result is still inside `base`. The file itself need not exist;
/// the deepest existing ancestor is resolved instead.
pub fn resolve_inside(base: &Path, relative: &str) -> Result<PathBuf> {
    let clean = checked_relative(relative)?;
    let joined = base.join(&clean);
    let base_real =
        fs::canonicalize(base).map_err(|e| ShellError::io("cannot resolve directory", base, e))?;
    let mut probe = joined.clone();
    let mut tail = Vec::new();
    let resolved = loop {
        match fs::canonicalize(&probe) {
            Ok(real) => break real,
            Err(_) => {
                // A dangling symlink cannot be canonicalized: refuse it rather than
                // write through it later.
                if fs::symlink_metadata(&probe)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false)
                {
                    return Err(unsafe_path(relative, "dangling symbolic link"));
                }
                match (probe.parent(), probe.file_name()) {
                    (Some(parent), Some(name)) => {
                        tail.push(name.to_owned());
                        probe = parent.to_path_buf();
                    }
                    _ => return Err(unsafe_path(relative, "cannot be resolved")),
                }
            }
        }
    };
    if !resolved.starts_with(&base_real) {
        return Err(unsafe_path(
            relative,
            "leaves its directory through a symbolic link",
        ));
    }
    Ok(tail
        .into_iter()
        .rev()
        .fold(resolved, |path, name| path.join(name)))
}

/// Writes `contents` to `dir/name`, refusing to write through a symlink that a
/// fetched repository may have placed there.
pub fn write_generated(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    if let Ok(meta) = fs::symlink_metadata(&path)
        && meta.file_type().is_symlink()
    {
        return Err(unsafe_path(
            &path.display().to_string(),
            "a symbolic link is in the place of a generated file",
        ));
    }
    fs::write(&path, contents).map_err(|e| ShellError::io("cannot write", &path, e))?;
    Ok(path)
}

/// Sets the permission bits of a file (no-op off Unix).
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| ShellError::io("cannot set permissions", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_must_stay_below() {
        assert!(checked_relative("inline/smoke.yaml").is_ok());
        assert_eq!(checked_relative("./a/./b").unwrap(), PathBuf::from("a/b"));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", ".", "a\0b"] {
            assert!(checked_relative(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn components_are_single() {
        assert!(checked_component("tools").is_ok());
        for bad in ["a/b", "..", ".", "", "/x"] {
            assert!(checked_component(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_tree_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        fs::create_dir_all(base.join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc", base.join("out")).unwrap();
        std::os::unix::fs::symlink("sub", base.join("in")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", base.join("dangling")).unwrap();
        assert!(resolve_inside(&base, "sub/new.yaml").is_ok());
        assert!(resolve_inside(&base, "in/new.yaml").is_ok());
        assert!(resolve_inside(&base, "out/passwd").is_err());
        assert!(resolve_inside(&base, "dangling").is_err());
        assert!(write_generated(&base, "dangling", b"x").is_err());
    }
}
