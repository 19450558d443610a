//! Copying a file to the device: [`SshClient::upload`].
//!
//! LAVA copies the overlay with the `scp` program. Here the bytes go over an exec
//! channel into `cat`, which is all a device needs: a POSIX shell with `cat`, `wc` and
//! `mv`, the same tools the test shell itself relies on. The alternatives need more on
//! the device: the legacy `scp -t` sink protocol needs an `scp` binary there (minimal
//! images and dropbear-only systems often lack it, and OpenSSH is retiring that
//! protocol in favour of SFTP), and SFTP needs an `sftp-server` subsystem. The remote
//! command writes to `<destination>.lava-part`, checks that the byte count is the one
//! sent, and only then renames it into place, so a device never sees a half-written
//! file under the final name; any failure removes the partial file and the exit status
//! and standard error become the error message.

use lava_python::shlex_quote;
use std::path::Path;

use tokio::io::BufReader;
use tokio::time::Instant;

use super::client::SshClient;
use super::error::SshError;

/// Suffix of the file being written on the device until its size is checked.
pub const PARTIAL_SUFFIX: &str = ".lava-part";

/// Read size when sending a file.
const CHUNK: usize = 256 * 1024;

impl SshClient {
    /// Copies the local file `local` to `remote` (an absolute path on the device, its
    /// directory existing), byte for byte. Returns the number of bytes copied.
    pub async fn upload(
        &self,
        local: &Path,
        remote: &str,
        deadline: Instant,
    ) -> Result<u64, SshError> {
        let unreadable = |source| SshError::LocalFile {
            path: local.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::open(local).await.map_err(unreadable)?;
        let size = file.metadata().await.map_err(unreadable)?.len();
        let command = upload_command(remote, size);
        let output = self
            .run_channel(
                &command,
                Some(BufReader::with_capacity(CHUNK, file)),
                deadline,
            )
            .await?;
        if output.success() {
            Ok(size)
        } else {
            Err(SshError::Remote {
                address: self.params().address(),
                what: format!("Copying {} to {remote}", local.display()),
                reason: output.describe_failure(),
            })
        }
    }
}

/// The POSIX sh command receiving `size` bytes on its standard input into `remote`.
pub fn upload_command(remote: &str, size: u64) -> String {
    let destination = shlex_quote(remote);
    let partial = shlex_quote(&format!("{remote}{PARTIAL_SUFFIX}"));
    format!(
        "cat > {partial} && n=$(wc -c < {partial}) && \
         {{ [ $n -eq {size} ] || {{ echo \"received $n of {size} bytes\" >&2; false; }}; }} && \
         mv -f {partial} {destination} || {{ rm -f {partial}; exit 1; }}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_quotes_paths_and_checks_the_size() {
        let command = upload_command("/tmp/a dir/it's.tar.gz", 42);
        assert!(
            command.starts_with(r#"cat > '/tmp/a dir/it'"'"'s.tar.gz.lava-part' && "#),
            "{command}"
        );
        assert!(command.contains("[ $n -eq 42 ]"), "{command}");
        assert!(
            command.contains(
                r#"mv -f '/tmp/a dir/it'"'"'s.tar.gz.lava-part' '/tmp/a dir/it'"'"'s.tar.gz'"#
            ),
            "{command}"
        );
    }

    #[test]
    fn the_command_runs_in_a_posix_shell() {
        let dir = std::env::temp_dir().join(format!("lava-rs-upload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("file with space");
        let run = |size: u64, input: &[u8]| {
            use std::io::Write;
            let mut child = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(upload_command(target.to_str().unwrap(), size))
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(input).unwrap();
            child.wait_with_output().unwrap()
        };
        let ok = run(5, b"hello");
        assert!(ok.status.success());
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        let short = run(9, b"hi");
        assert!(!short.status.success());
        assert_eq!(
            String::from_utf8_lossy(&short.stderr).trim(),
            "received 2 of 9 bytes"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"hello", "left untouched");
        let mut partial = target.clone().into_os_string();
        partial.push(PARTIAL_SUFFIX);
        assert!(!Path::new(&partial).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
