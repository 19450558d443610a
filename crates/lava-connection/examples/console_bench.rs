//! Throughput of the console pipeline (decode, split into log lines, match prompts) on
//! synthetic kernel-log-like output. Run by `cargo xtask bench console`.
//!
//! Options: `--mb N` (data size, default 128), `--runs N` (default 5), `--chunk BYTES`
//! (read size, default 4096 like a pty read), `--signals` (also wait for test-shell
//! signals, as the lava-test-shell loop does).

use std::time::Instant;

use lava_connection::{Patterns, ReceivedText};

const PROMPT: &str = "root@debian:~# ";

const MESSAGES: &[&str] = &[
    "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
    "EXT4-fs (mmcblk0p2): mounted filesystem with ordered data mode. Opts: (null)",
    "systemd[1]: Started Journal Service.",
    "random: crng init done",
    "eth0: link becomes ready",
    "Freeing unused kernel memory: 2048K",
    "audit: type=1400 audit(1700000000.123:2): apparmor=\"STATUS\" operation=\"profile_load\"",
    "\x1b[0;32m  OK  \x1b[0m] Reached target Multi-User System.",
    "mmc0: new HS200 MMC card at address 0001",
    "NET: Registered PF_INET6 protocol family",
    "+ lava-test-case smoke-ls --shell ls -la /",
    "drwxr-xr-x  19 root root  4096 Jan  1 00:00 usr — ünïcödé ✓",
];

/// About `megabytes` of console output with `prompts` prompts and as many signals.
fn console_text(megabytes: usize) -> (Vec<u8>, usize, usize) {
    let target = megabytes * 1024 * 1024;
    let mut out = Vec::with_capacity(target + 4096);
    let (mut lines, mut prompts, mut signals) = (0u64, 0, 0);
    while out.len() < target {
        lines += 1;
        let seconds = lines as f64 * 0.000_731;
        let message = MESSAGES[(lines * 7 % MESSAGES.len() as u64) as usize];
        out.extend_from_slice(format!("[{seconds:12.6}] {message}\r\n").as_bytes());
        if lines % 5_000 == 0 {
            out.extend_from_slice(
                format!("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=case{lines} RESULT=pass>\r\n")
                    .as_bytes(),
            );
            signals += 1;
        }
        if lines % 20_000 == 0 {
            out.extend_from_slice(PROMPT.as_bytes());
            prompts += 1;
        }
    }
    (out, prompts, signals)
}

struct Options {
    megabytes: usize,
    runs: usize,
    chunk: usize,
    signals: bool,
}

fn options() -> Options {
    let mut options = Options {
        megabytes: 128,
        runs: 5,
        chunk: 4096,
        signals: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).and_then(|v| v.parse().ok());
        match args[i].as_str() {
            "--mb" => options.megabytes = value().expect("--mb N"),
            "--runs" => options.runs = value().expect("--runs N"),
            "--chunk" => options.chunk = value().expect("--chunk BYTES"),
            "--signals" => {
                options.signals = true;
                i += 1;
                continue;
            }
            other => panic!("unknown option {other:?}"),
        }
        i += 2;
    }
    options
}

fn main() {
    let options = options();
    let (data, prompts, signals) = console_text(options.megabytes);
    let patterns = if options.signals {
        Patterns::new(&[
            regex::escape(PROMPT),
            r"<LAVA_SIGNAL_(\S+) ([^>]+)>".to_string(),
            r"<LAVA_TEST_RUNNER EXIT>".to_string(),
        ])
    } else {
        Patterns::new(&[
            regex::escape(PROMPT),
            "Kernel panic - not syncing".to_string(),
        ])
    }
    .expect("valid patterns");
    let expected_matches = prompts + if options.signals { signals } else { 0 };

    let mut rates = Vec::new();
    let mut cpu_rates = Vec::new();
    for _ in 0..options.runs {
        let cpu_started = thread_cpu_seconds();
        let mut received = ReceivedText::default();
        let (mut lines, mut line_bytes, mut matches) = (0usize, 0usize, 0usize);
        let started = Instant::now();
        for chunk in data.chunks(options.chunk) {
            received.push_bytes(chunk, |line| {
                lines += 1;
                line_bytes += line.len();
            });
            while received.find(&patterns).is_some() {
                matches += 1;
            }
        }
        received.finish(|_| lines += 1);
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(
            matches, expected_matches,
            "every prompt/signal matched once"
        );
        assert!(lines > 0 && line_bytes > 0);
        let cpu = thread_cpu_seconds() - cpu_started;
        rates.push(data.len() as f64 / elapsed / 1e6);
        cpu_rates.push(data.len() as f64 / cpu / 1e6);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    cpu_rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates[rates.len() / 2];
    println!(
        "console: {:.1} MB in {}-byte reads, {} patterns ({} matches per run), {} runs: \
         median {median:.0} MB/s wall (min {:.0}, max {:.0}); median {:.0} MB/s per CPU second",
        data.len() as f64 / 1e6,
        options.chunk,
        patterns.len(),
        expected_matches,
        options.runs,
        rates[0],
        rates[rates.len() - 1],
        cpu_rates[cpu_rates.len() / 2],
    );
}

/// CPU time used by this thread: unlike wall time, not inflated by other processes
/// sharing the machine.
fn thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer, which is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}
