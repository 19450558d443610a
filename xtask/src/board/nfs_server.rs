//! The rigs' NFS server: Debian's userspace nfs-ganesha (this kernel has no nfsd) serving
//! NFSv3 over TCP, exporting LAVA's [`NFS_EXPORT`] where LAVA's NFS deployments unpack
//! their roots, with rpcbind (NFSv3's port mapper) when the host runs none.
//!
//! nfs-ganesha always registers its programs with rpcbind, dropping whatever another
//! instance registered: two rigs' servers must not run at once. [`start`] therefore takes
//! an exclusive lock ([`LOCK_FILE`], `flock`) that its holder keeps for the life of the
//! server; a second rig waits for it (bounded) and then fails naming the lock.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

/// What LAVA's NFS deploy extracts under, exported by the rigs' NFS server.
pub const NFS_EXPORT: &str = "/var/lib/lava/dispatcher/tmp";
/// How long rpcbind, once started, may take to listen.
const RPCBIND_START: Duration = Duration::from_secs(10);
/// The lock a running NFS server of any rig holds.
pub const LOCK_FILE: &str = "/run/lock/lava-rs-nfs-server.lock";

/// The server's ports.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// NFS itself (`NFS_Port`).
    pub nfs: u16,
    /// The mount protocol (`MNT_Port`).
    pub mount: u16,
}

/// Held while a rig's NFS server runs.
pub struct NfsLock {
    _lock: Flock<File>,
}

/// Take [`LOCK_FILE`], waiting up to `wait` for another rig's server to end.
pub fn lock(wait: Duration) -> Result<NfsLock> {
    lock_at(Path::new(LOCK_FILE), wait)
}

fn lock_at(path: &Path, wait: Duration) -> Result<NfsLock> {
    let deadline = Instant::now() + wait;
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(NfsLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err((_, e)) => bail!(
                "another rig's NFS server holds {} ({e}); nfs-ganesha cannot run twice: stop \
                 that rig first",
                path.display()
            ),
        }
    }
}

/// Start rpcbind (unless the host runs one) and nfs-ganesha through `spawn` (which owns the
/// children), with the configuration, log and pid file under `run`. The caller holds the
/// [`NfsLock`] for as long as the server runs.
pub fn start(
    run: &Path,
    owner: &str,
    ports: Ports,
    spawn: &mut dyn FnMut(&str, &mut Command) -> Result<()>,
) -> Result<()> {
    let rpcbind_answers = || {
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], 111).into(), Duration::from_secs(1))
            .is_ok()
    };
    if !rpcbind_answers() {
        spawn("rpcbind", Command::new("rpcbind").args(["-f", "-w"]))?;
        // nfs-ganesha registers its programs at start and exits when rpcbind does not
        // answer yet ("Cannot register NFS V3 on TCP"), which a rig restarted at once met.
        let deadline = Instant::now() + RPCBIND_START;
        while !rpcbind_answers() {
            if Instant::now() >= deadline {
                bail!("rpcbind did not listen on port 111 within {RPCBIND_START:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::fs::create_dir_all(NFS_EXPORT).with_context(|| format!("creating {NFS_EXPORT}"))?;
    let conf = run.join("ganesha.conf");
    std::fs::write(
        &conf,
        format!(
            "# The NFS server of {owner}.\n\
             NFS_CORE_PARAM {{\n    Protocols = 3;\n    NFS_Port = {nfs};\n    \
             MNT_Port = {mount};\n    Enable_NLM = false;\n    Enable_RQUOTA = false;\n    \
             Enable_UDP = false;\n}}\n\
             NFSV4 {{ Graceless = true; }}\n\
             EXPORT {{\n    Export_Id = 1;\n    Path = {NFS_EXPORT};\n    \
             Pseudo = {NFS_EXPORT};\n    Access_Type = RW;\n    Squash = No_Root_Squash;\n    \
             SecType = sys;\n    Protocols = 3;\n    Transports = TCP;\n    \
             FSAL {{ Name = VFS; }}\n}}\n",
            nfs = ports.nfs,
            mount = ports.mount,
        ),
    )?;
    spawn(
        "ganesha",
        Command::new("ganesha.nfsd")
            .args(["-F", "-N", "NIV_EVENT", "-f"])
            .arg(&conf)
            .arg("-L")
            .arg(run.join("ganesha.log"))
            .arg("-p")
            .arg(run.join("ganesha.pid")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nfs.lock");
        let held = lock_at(&path, Duration::ZERO).unwrap();
        let started = Instant::now();
        let err = lock_at(&path, Duration::from_millis(600)).err().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(600), "it waited");
        assert!(
            err.to_string().contains("another rig's NFS server holds"),
            "{err}"
        );
        drop(held);
        lock_at(&path, Duration::ZERO).unwrap();
    }
}
