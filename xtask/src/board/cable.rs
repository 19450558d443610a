//! The rig's supervisor (`xtask test-board <board> --serve`, started by `bin/rig-up` in a
//! process group of its own, ended by `bin/rig-down`): it owns the serial cable and the rig's
//! servers as foreground children.
//!
//! The cable. A lab's console server keeps its serial line open whatever the board does, so a
//! dispatcher connected to it sees the first output of a board it has just power-cycled. Here
//! the console server is ser2net, which opens a serial device when a telnet client connects;
//! the board is QEMU, which exists only while powered. Between them the supervisor keeps a
//! pseudo-terminal for the life of the rig (its slave, linked as `run/console`, is ser2net's
//! serial device; the supervisor holds it open too, so the line never hangs up) and a Unix
//! socket (`run/cable.sock`) that each powered-on QEMU connects its UART to
//! (`-chardev socket,path=…`). Bytes are relayed between the socket of the board currently
//! plugged in and the pty's master. When a board plugs in, output left unread from before is
//! discarded (a switched-off board sends nothing); keystrokes with no board plugged in are
//! lost, as on a real line; output nobody reads for 2 s is dropped rather than stalling the
//! board's CPU.
//!
//! The servers: tftpd-hpa (`in.tftpd -L`, LAVA's `/srv/tftp`, on port 69 of the host's own
//! address, which the board reaches through QEMU's user-mode NAT) and ser2net (`-n`, a telnet
//! accepter on 127.0.0.1:<console port>), and for NFS roots (a rig with `nfs`) nfs-ganesha
//! (`-F`, NFSv3 over TCP, exporting LAVA's `/var/lib/lava/dispatcher/tmp`) with rpcbind
//! (`-f`; not started when the host runs one), see `nfs_server`. If one of them exits, the supervisor ends the others
//! and exits with an error (`run/failed`); `run/ready` says the console port answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{FlushArg, SetArg, cfmakeraw, tcflush, tcgetattr, tcsetattr};

use super::nfs_server;
use super::rig::{Rig, TFTP_ROOT};

/// How long board output may wait for the console server to read it before it is dropped.
const STALL_LIMIT: Duration = Duration::from_secs(2);
/// How long a server's port (NFS, then the console) may take to answer after the start.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Run the rig until a server exits or the supervisor is signalled.
pub fn serve(rig: &Rig) -> Result<()> {
    let run = rig.run();
    std::fs::create_dir_all(&run)?;
    let result = supervise(rig);
    if let Err(e) = &result {
        let _ = std::fs::write(run.join("failed"), format!("{e:#}\n"));
    }
    result
}

fn supervise(rig: &Rig) -> Result<()> {
    let run = rig.run();
    let pty = nix::pty::openpty(None, None).context("opening the cable's pseudo-terminal")?;
    let mut raw = tcgetattr(&pty.slave)?;
    cfmakeraw(&mut raw);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &raw)?;
    let slave_name = nix::unistd::ttyname(&pty.slave)?;
    let console = run.join("console");
    let _ = std::fs::remove_file(&console);
    std::os::unix::fs::symlink(&slave_name, &console)?;
    let socket = run.join("cable.sock");
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    eprintln!(
        "rig: cable {} <-> {} ({})",
        socket.display(),
        console.display(),
        slave_name.display()
    );

    // nfs-ganesha cannot run twice: held until the supervisor exits.
    let _nfs_lock = if rig.nfs {
        Some(nfs_server::lock(START_LIMIT)?)
    } else {
        None
    };
    let mut children = start_servers(rig)?;
    let nfs_ready = if rig.nfs {
        wait_for_port(2049, &mut children)
    } else {
        Ok(())
    };
    let ready = nfs_ready.and_then(|()| wait_for_port(rig.console_port, &mut children));
    if let Err(e) = ready {
        end(&mut children);
        return Err(e);
    }

    let master = Arc::new(pty.master);
    let slave = Arc::new(pty.slave);
    let board: Arc<Mutex<Option<UnixStream>>> = Arc::new(Mutex::new(None));
    {
        let (master, board) = (master.clone(), board.clone());
        std::thread::spawn(move || keystrokes_to_board(&master, &board));
    }
    {
        let (master, board) = (master.clone(), board.clone());
        std::thread::spawn(move || plug_boards(listener, &master, &slave, &board));
    }
    std::fs::write(run.join("ready"), "")?;
    eprintln!("rig: ready (console on 127.0.0.1:{})", rig.console_port);

    loop {
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                let name = name.clone();
                end(&mut children);
                bail!("rig: {name} exited ({status}); the rig is down");
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// tftpd-hpa and ser2net as foreground children, in the supervisor's process group.
fn start_servers(rig: &Rig) -> Result<Vec<(String, Child)>> {
    let run = rig.run();
    std::fs::create_dir_all(TFTP_ROOT).with_context(|| format!("creating {TFTP_ROOT}"))?;
    let ser2net_conf = run.join("ser2net.yaml");
    std::fs::write(
        &ser2net_conf,
        format!(
            "# The board's console (written by `cargo xtask test-board {board}`).\n\
             connection: &board\n  \
             accepter: telnet(rfc2217=false),tcp,127.0.0.1,{port}\n  \
             connector: serialdev,{console},115200n81,local\n  \
             options:\n    kickolduser: true\n",
            board = rig.board,
            port = rig.console_port,
            console = run.join("console").display(),
        ),
    )?;
    let mut children = Vec::new();
    let mut spawn = |name: &str, cmd: &mut Command| spawn_logged(&run, &mut children, name, cmd);
    // TFTP: foreground (-L), LAVA's directory as root (-s), files read as root (LAVA's job
    // directories are 0700), on the address the board reaches. One TFTP server can hold that
    // port: another rig's (every rig serves LAVA's /srv/tftp there) is named, not guessed at.
    if let Err(e) = std::net::UdpSocket::bind((rig.host_ip, 69)) {
        bail!(
            "port 69 of {} is taken ({e}): another TFTP server runs there, such as another \
             board rig's (`ss -ulpn sport = :69` names it); one rig at a time can serve TFTP",
            rig.host_ip
        );
    }
    spawn(
        "tftpd",
        Command::new("in.tftpd")
            .args(["-L", "-u", "root", "-s", TFTP_ROOT, "-a"])
            .arg(format!("{}:69", rig.host_ip)),
    )?;
    // NFS (NFSv3 over TCP) for LAVA's NFS deploy, which extracts roots under NFS_EXPORT.
    if rig.nfs {
        nfs_server::start(
            &run,
            "the U-Boot board rig (`cargo xtask test-board u-boot`)",
            nfs_server::Ports {
                nfs: 2049,
                mount: 20048,
            },
            &mut spawn,
        )?;
    }
    if rig.board == "u-boot" {
        spawn("http", &mut super::media::http_server())?;
    }
    spawn(
        "ser2net",
        Command::new("ser2net")
            .args(["-n", "-u", "-c"])
            .arg(&ser2net_conf)
            .arg("-P")
            .arg(run.join("ser2net.pid")),
    )?;
    Ok(children)
}

/// Start `cmd` as the rig's child `name` (pushed onto `children`), stdin closed, its output
/// appended to `<run>/<name>.log`.
pub(super) fn spawn_logged(
    run: &Path,
    children: &mut Vec<(String, Child)>,
    name: &str,
    cmd: &mut Command,
) -> Result<()> {
    let log = |name: &str| -> Result<Stdio> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.join(format!("{name}.log")))?
            .into())
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log(name)?)
        .stderr(log(name)?)
        .spawn()
        .with_context(|| format!("starting {name} ({cmd:?})"))?;
    eprintln!("rig: {name} started (pid {})", child.id());
    children.push((name.to_string(), child));
    Ok(())
}

/// Wait until something accepts on `port` of the loopback (a connection closed at once),
/// failing when one of `children` exits first or after [`START_LIMIT`].
pub(super) fn wait_for_port(port: u16, children: &mut [(String, Child)]) -> Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
            .is_ok()
        {
            return Ok(());
        }
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}) while the rig started; see its log");
            }
        }
        if Instant::now() > deadline {
            bail!("nothing answers on 127.0.0.1:{port} after {START_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kill and reap every child.
pub(super) fn end(children: &mut [(String, Child)]) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// What the console server writes (the pty's master side) goes to the board plugged in, if
/// any; with none, it is lost.
fn keystrokes_to_board(master: &OwnedFd, board: &Mutex<Option<UnixStream>>) {
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("rig: cable: poll: {e}");
                return;
            }
        }
        let n = match nix::unistd::read(master, &mut buf) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EIO) => {
                // Nobody has the line open this instant: not an end, the supervisor holds it.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                eprintln!("rig: cable: read: {e}");
                return;
            }
        };
        let mut plugged = board.lock().expect("cable lock");
        if let Some(stream) = plugged.as_mut()
            && stream.write_all(&buf[..n]).is_err()
        {
            *plugged = None;
        }
    }
}

/// Each QEMU that powers on connects here: it becomes the board plugged in, and its output is
/// written to the pty's master until it disconnects.
fn plug_boards(
    listener: UnixListener,
    master: &Arc<OwnedFd>,
    slave: &Arc<OwnedFd>,
    board: &Arc<Mutex<Option<UnixStream>>>,
) {
    // Non-blocking writes on the master: a console server that stopped reading must not stall
    // the board (see STALL_LIMIT).
    let flags = nix::fcntl::fcntl(master.as_fd(), nix::fcntl::FcntlArg::F_GETFL)
        .map(nix::fcntl::OFlag::from_bits_truncate)
        .unwrap_or(nix::fcntl::OFlag::empty());
    let _ = nix::fcntl::fcntl(
        master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(flags | nix::fcntl::OFlag::O_NONBLOCK),
    );
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        // Output the console server has not read yet is from before this power-on.
        let _ = tcflush(slave.as_fd(), FlushArg::TCIFLUSH);
        let Ok(writer) = conn.try_clone() else {
            continue;
        };
        *board.lock().expect("cable lock") = Some(writer);
        eprintln!("rig: cable: board plugged in");
        let master = master.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                write_to_line(&master, &buf[..n]);
            }
            eprintln!("rig: cable: board unplugged");
        });
    }
}

/// Write board output to the line, waiting at most [`STALL_LIMIT`] for room.
fn write_to_line(master: &OwnedFd, mut data: &[u8]) {
    let deadline = Instant::now() + STALL_LIMIT;
    while !data.is_empty() {
        match nix::unistd::write(master, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLOUT)];
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            Err(_) => return,
        }
    }
}

/// Whether the rig's supervisor is running (its pid file names a live process).
pub fn running(run: &Path) -> bool {
    std::fs::read_to_string(run.join("rig.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}
