//! The worker token: read from and stored in the token file as LAVA does (mode 0600, a
//! trailing newline ignored when read), obtained by auto-registration when needed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::WorkerError;

/// The token in `path`, if the file exists (trailing newline stripped).
pub fn read_token_file(path: &Path) -> Result<Option<String>, WorkerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim_end_matches(['\n', '\r']).to_string();
            if token.is_empty() {
                Ok(None)
            } else {
                Ok(Some(token))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WorkerError::io(path, e)),
    }
}

/// Store `token` in `path` with mode 0600 (its directory created if needed).
pub fn write_token_file(path: &Path, token: &str) -> Result<(), WorkerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| WorkerError::io(dir, e))?;
    }
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // An existing file keeps its mode on open: make it 0600 as well.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(token.as_bytes())
    };
    write().map_err(|e| WorkerError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_token_file_is_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w/token");
        assert_eq!(read_token_file(&path).unwrap(), None);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_token_file(&path).unwrap().as_deref(), Some("old"));
        write_token_file(&path, "abc").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
