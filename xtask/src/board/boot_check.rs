//! `cargo xtask test-board u-boot --boot-check`: the board's bare boot, no dispatcher. Through
//! the rig's console (ser2net's telnet port) it powers the board on, interrupts U-Boot, types
//! the device type's ramdisk commands (DHCP, TFTP of kernel, ramdisk and DTB from a directory
//! of its own under `/srv/tftp`, `booti`), waits for the shell, runs one command and powers off,
//! timing each step from the power-on: the baseline a dispatcher's run on the board is
//! compared with (`cargo xtask bench job`), and the cost of a board test in CI.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::artefacts::{Artefacts, BANNER, PROMPT};
use super::rig::{Rig, TFTP_ROOT};

/// Wall times of a bare boot, each from the power-on.
#[derive(Debug, Clone, Copy)]
pub struct BootReport {
    /// U-Boot's prompt, after the interrupt.
    pub bootloader: Duration,
    /// The kernel's first message (`Linux version`), after the TFTP downloads.
    pub kernel: Duration,
    /// The root's shell prompt.
    pub shell: Duration,
    /// A command's answer at the shell, then the board powered off.
    pub total: Duration,
}

/// Boot the board once and time it; the rig must be up.
pub fn run(rig: &Rig, a: &Artefacts, limit: Duration) -> Result<BootReport> {
    let dir = PathBuf::from(TFTP_ROOT).join("lava-rs-board-check");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for f in [&a.kernel, &a.ramdisk_u_boot, &a.dtb] {
        std::fs::copy(f, dir.join(f.file_name().expect("a file")))?;
    }
    let result = boot(rig, a, limit);
    let off = Command::new(rig.bin("power-off")).status();
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        off.is_ok_and(|s| s.success()),
        "the board's power-off script failed"
    );
    result
}

fn boot(rig: &Rig, a: &Artefacts, limit: Duration) -> Result<BootReport> {
    let name = |p: &PathBuf| {
        format!(
            "lava-rs-board-check/{}",
            p.file_name().expect("a file").to_string_lossy()
        )
    };
    let mut console = Console::connect(rig.console_port)?;
    let start = Instant::now();
    let deadline = start + limit;
    let status = Command::new(rig.bin("power-on")).status()?;
    ensure!(status.success(), "the board's power-on script failed");
    console.wait_for("Hit any key to stop autoboot", deadline)?;
    console.send("\r")?;
    console.wait_for("=> ", deadline)?;
    let bootloader = start.elapsed();
    for command in [
        "setenv autoload no".to_string(),
        "dhcp".to_string(),
        format!("setenv serverip {}", rig.host_ip),
        format!("tftp 0x40400000 {}", name(&a.kernel)),
        format!("tftp 0x48000000 {}", name(&a.ramdisk_u_boot)),
        format!("tftp 0x47000000 {}", name(&a.dtb)),
        "setenv bootargs 'console=ttyAMA0,115200n8 root=/dev/ram0'".to_string(),
    ] {
        console.send(&format!("{command}\r"))?;
        console.wait_for("=> ", deadline)?;
        if console.seen.contains("TFTP error") || console.seen.contains("Retry count exceeded") {
            bail!("U-Boot: {command} failed:\n{}", console.tail());
        }
    }
    console.send("booti 0x40400000 0x48000000 0x47000000\r")?;
    console.wait_for("Linux version", deadline)?;
    let kernel = start.elapsed();
    console.wait_for(BANNER, deadline)?;
    console.wait_for(PROMPT, deadline)?;
    let shell = start.elapsed();
    console.send("echo board-$((6 * 7))\r")?;
    console.wait_for("board-42", deadline)?;
    let status = Command::new(rig.bin("power-off")).status()?;
    ensure!(status.success(), "the board's power-off script failed");
    Ok(BootReport {
        bootloader,
        kernel,
        shell,
        total: start.elapsed(),
    })
}

/// The board's console as a dispatcher sees it: ser2net's telnet port, read into `seen`.
pub(super) struct Console {
    stream: TcpStream,
    /// Everything received, as ASCII.
    pub(super) seen: String,
    /// Where the next match starts: each wait consumes what it matched.
    from: usize,
}

impl Console {
    pub(super) fn connect(port: u16) -> Result<Console> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connecting to the board's console on port {port}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Console {
            stream,
            seen: String::new(),
            from: 0,
        })
    }

    pub(super) fn send(&mut self, text: &str) -> Result<()> {
        self.stream.write_all(text.as_bytes())?;
        Ok(())
    }

    pub(super) fn wait_for(&mut self, pattern: &str, deadline: Instant) -> Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = self.seen[self.from..].find(pattern) {
                self.from += at + pattern.len();
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "no {pattern:?} from the board in time; it said:\n{}",
                    self.tail()
                );
            }
            match self.stream.read(&mut buf) {
                Ok(0) => bail!("the console closed; the board said:\n{}", self.tail()),
                // Telnet negotiation bytes (IAC …) are not text: dropped with the rest of
                // what is not ASCII.
                Ok(n) => self.seen.extend(
                    buf[..n]
                        .iter()
                        .filter(|b| b.is_ascii())
                        .map(|b| char::from(*b)),
                ),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(super) fn tail(&self) -> String {
        let lines: Vec<&str> = self.seen.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}
