//! `cargo xtask quiet-host [--kill]`: the rigs need this host quiet. Every rig serves on
//! fixed ports (TFTP's 69, the consoles, NFS, the web server, the NBD range) and boards are
//! QEMU under TCG, which takes a whole core each: a rig left running (by a clone that was
//! removed, a run that was killed, or a process that outlived its session) makes the next
//! run's rigs fail to come up and its timings drift.
//!
//! The rigs' fixed ports lie below the kernel's ephemeral range (`ip_local_port_range`,
//! 32768–60999 by default): a port in that range is also the local port of outgoing
//! connections, and one such connection's TIME_WAIT (60 s after any test's short-lived
//! loopback connection) makes a listener's bind fail with "Address already in use" even
//! with SO_REUSEADDR. A test checks it on this host.
//!
//! The check names what holds one of [`RIG_PORTS`] (from `ss -Hltunp`) and every process of
//! a rig (a command line naming a `target/board-*` or `target/test-system` file, or a
//! `test-board` supervisor), whichever clone it came from. `--kill` ends those of this
//! project's programs ([`RIG_PROGRAMS`]: SIGTERM, SIGKILL after 5 s) and fails when
//! something else holds a rig port. `.ci/run` runs it with `--kill` before the rigs are
//! prepared: CI's host must be quiet, and a leftover is named in its log.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// (protocol, first port, last port) of every port a rig serves on.
pub const RIG_PORTS: &[(&str, u16, u16)] = &[
    ("udp", 69, 69),
    ("tcp", 2049, 2049),
    ("tcp", 20048, 20048),
    ("tcp", super::CONSOLE_PORT, super::CONSOLE_PORT),
    ("tcp", super::pc::CONSOLE_PORT, super::pc::CONSOLE_PORT),
    (
        "tcp",
        super::grub_efi::CONSOLE_PORT,
        super::grub_efi::MONITOR_PORT,
    ),
    (
        "tcp",
        super::qemu_nfs::NFS_PORT,
        super::qemu_nfs::MOUNT_PORT,
    ),
    ("tcp", super::media::HTTP_PORT, super::media::HTTP_PORT),
    // The U-Boot rig's dispatcher range for nbd-server (bins/lava-dispatch/tests/e2e_board.rs).
    ("tcp", 22_350, 22_400),
];

/// The programs a rig runs: the only ones `--kill` ends.
pub const RIG_PROGRAMS: &[&str] = &[
    "qemu-system-aarch64",
    "qemu-system-x86_64",
    "qemu-system-arm",
    "in.tftpd",
    "ser2net",
    "ganesha.nfsd",
    "nbd-server",
    "python3",
    "xtask",
];

/// One process found: its pid, program name and why it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: u32,
    pub program: String,
    pub why: String,
}

pub fn run(args: &[String]) -> Result<()> {
    let kill = match args {
        [] => false,
        [flag] if flag == "--kill" => true,
        other => bail!("quiet-host takes only `--kill`, not {other:?}"),
    };
    let found = leftovers();
    if found.is_empty() {
        println!("quiet-host: no rig port is held and no rig process runs");
        return Ok(());
    }
    for l in &found {
        println!("quiet-host: pid {} ({}): {}", l.pid, l.program, l.why);
    }
    if !kill {
        return Ok(());
    }
    let (ours, foreign): (Vec<&Leftover>, Vec<&Leftover>) = found
        .iter()
        .partition(|l| RIG_PROGRAMS.contains(&l.program.as_str()));
    let pids: Vec<u32> = ours.iter().map(|l| l.pid).collect();
    end(&pids);
    if !foreign.is_empty() {
        bail!(
            "quiet-host: rig ports are held by programs that are not a rig's (above): the \
             rigs cannot come up on this host"
        );
    }
    let still = leftovers();
    if !still.is_empty() {
        bail!("quiet-host: still running after SIGKILL: {still:?}");
    }
    println!("quiet-host: ended {} leftover rig process(es)", pids.len());
    Ok(())
}

/// Every process holding a rig port or belonging to a rig, this process and its
/// ancestors left out, each once.
pub fn leftovers() -> Vec<Leftover> {
    let mut found: Vec<Leftover> = Vec::new();
    let mut add = |pid: u32, why: String| {
        if let Some(existing) = found.iter_mut().find(|l| l.pid == pid) {
            existing.why.push_str("; ");
            existing.why.push_str(&why);
        } else {
            found.push(Leftover {
                pid,
                program: program(pid),
                why,
            });
        }
    };
    if let Ok(output) = std::process::Command::new("ss").arg("-Hltunp").output() {
        for (protocol, port, pid) in port_holders(&String::from_utf8_lossy(&output.stdout)) {
            if RIG_PORTS
                .iter()
                .any(|(p, first, last)| *p == protocol && (*first..=*last).contains(&port))
            {
                add(pid, format!("holds {protocol} port {port}"));
            }
        }
    }
    let spared = ancestors(std::process::id());
    for pid in lava_procfs::pids() {
        if spared.contains(&pid) {
            continue;
        }
        let Some(args) = lava_procfs::arguments(pid) else {
            continue;
        };
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        if is_rig_process(&args) {
            add(pid, format!("a rig process: {}", args.join(" ")));
        }
    }
    found.retain(|l| !spared.contains(&l.pid));
    found.sort_by_key(|l| l.pid);
    found
}

/// (protocol, local port, pid) of every socket in `ss -Hltunp`'s output.
fn port_holders(ss: &str) -> Vec<(String, u16, u32)> {
    let mut holders = Vec::new();
    for line in ss.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(protocol), Some(local)) = (fields.first(), fields.get(4)) else {
            continue;
        };
        let Some(port) = local.rsplit(':').next().and_then(|p| p.parse().ok()) else {
            continue;
        };
        for part in line.split("pid=").skip(1) {
            if let Ok(pid) = part
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
            {
                holders.push((protocol.to_string(), port, pid));
            }
        }
    }
    holders
}

/// A board's QEMU or a rig's supervisor or server, by its command line.
fn is_rig_process(args: &[String]) -> bool {
    let Some(program) = args.first() else {
        return false;
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    let names_a_rig_file = args
        .iter()
        .any(|a| a.contains("/target/board-") || a.contains("/target/test-system/"));
    let supervisor = name == "xtask" && args.iter().any(|a| a == "--serve");
    supervisor || (RIG_PROGRAMS.contains(&name) && name != "xtask" && names_a_rig_file)
}

/// The program name of `pid` (`comm`'s full form: the first argument's file name).
fn program(pid: u32) -> String {
    lava_procfs::arguments(pid)
        .and_then(|args| args.first().cloned())
        .map(|a| {
            let a = a.to_string_lossy().into_owned();
            a.rsplit('/').next().unwrap_or(&a).to_string()
        })
        .unwrap_or_default()
}

/// `pid` and every process above it.
fn ancestors(pid: u32) -> Vec<u32> {
    let mut chain = vec![pid];
    let mut current = pid;
    while let Ok(stat) = lava_procfs::ProcessStat::read(current) {
        if stat.ppid == 0 || chain.contains(&stat.ppid) {
            break;
        }
        chain.push(stat.ppid);
        current = stat.ppid;
    }
    chain
}

/// SIGTERM to every pid, SIGKILL to those still running after 5 s.
fn end(pids: &[u32]) {
    let signal = |pid: u32, signal: libc::c_int| {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill(2) on a pid just found; a process gone meanwhile gives ESRCH.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    };
    for pid in pids {
        signal(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && pids.iter().any(|p| lava_procfs::is_running(*p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in pids {
        if lava_procfs::is_running(*pid) {
            signal(*pid, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && pids.iter().any(|p| lava_procfs::is_running(*p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_read_from_ss() {
        let ss = "udp   UNCONN 0      0        192.0.2.2:69        0.0.0.0:*    users:((\"in.tftpd\",pid=4242,fd=4))\n\
                  tcp   LISTEN 0      5        127.0.0.1:22150     0.0.0.0:*    users:((\"qemu-system-x86\",pid=77,fd=9),(\"qemu-system-x86\",pid=78,fd=9))\n\
                  tcp   LISTEN 0      128           [::]:22           [::]:*\n";
        assert_eq!(
            port_holders(ss),
            vec![
                ("udp".to_string(), 69, 4242),
                ("tcp".to_string(), 22150, 77),
                ("tcp".to_string(), 22150, 78),
            ]
        );
    }

    #[test]
    fn rig_processes_are_told_by_their_command_lines() {
        let args = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert!(is_rig_process(&args(
            "qemu-system-x86_64 -pidfile /work/x/target/board-grub-efi/run/qemu.pid"
        )));
        assert!(is_rig_process(&args(
            "/work/x/target/debug/xtask test-board u-boot --serve --console-port 22011"
        )));
        assert!(is_rig_process(&args(
            "ganesha.nfsd -F -f /work/x/target/board-u-boot/run/ganesha.conf"
        )));
        // A QEMU of somebody else's, and an editor on a rig file: not a rig's.
        assert!(!is_rig_process(&args(
            "qemu-system-x86_64 -hda /srv/vm.img"
        )));
        assert!(!is_rig_process(&args(
            "vim /work/x/target/board-u-boot/rig.txt"
        )));
    }

    #[test]
    fn this_process_and_its_parents_are_spared() {
        let chain = ancestors(std::process::id());
        assert_eq!(chain[0], std::process::id());
        assert!(chain.len() >= 2, "{chain:?}");
        assert!(leftovers().iter().all(|l| !chain.contains(&l.pid)));
    }

    #[test]
    fn rig_ports_lie_below_the_ephemeral_range() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap_or_else(|_| "32768 60999".to_string());
        let bounds: Vec<u16> = range
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let (first, last) = (bounds[0], bounds[1]);
        for (protocol, low, high) in RIG_PORTS {
            assert!(
                *high < first || *low > last,
                "{protocol} ports {low}-{high} overlap this host's ephemeral range \
                 ({range}): outgoing connections' TIME_WAIT would block the rig's bind"
            );
        }
    }
}
