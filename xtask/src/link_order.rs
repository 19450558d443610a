//! `cargo xtask link-order`: rewrite `bins/lava-dispatch/link-order.txt`, the order in which
//! rust-lld lays out the functions of the release `lava-run` (`bins/lava-dispatch/build.rs`).
//!
//! The functions listed are those the job bench's job (`fixtures/qemu/
//! qemu-ramdisk-overlays.yaml` on the test system, a whole QEMU job: validate, downloads,
//! `append-overlays`, boot, test shell, finalize) executes: first every function callgrind
//! sees it run, then, pass after pass, the functions in which a native run still takes a page
//! fault outside the listed ones (code valgrind's CPU never reaches, such as the SHA-NI and
//! AVX2 paths, found with `perf record -e page-faults`), relinking after each pass, until a
//! pass adds none or after four. Symbol names carry a hash that does not change with the
//! code, so the file stays valid as the code changes; functions added since are placed after
//! the listed ones, as they would be without the file. Rerun it when the dispatcher's RSS
//! grows (`cargo xtask bench job` reports it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::job_bench::ramdisk_overlays_job;
use crate::shared::{build_release_bin, workspace_root};
use crate::test_system;

/// Native passes at most.
const PERF_PASSES: usize = 4;

pub fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("unknown argument {arg:?}: `cargo xtask link-order` takes none");
    }
    ensure!(
        test_system::qemu_available(),
        "qemu-system-x86_64 is not on PATH: the job runs on the embedded QEMU device"
    );
    ensure!(
        tool_runs("valgrind"),
        "valgrind is missing (apt-get install valgrind)"
    );
    let order_file = workspace_root().join("bins/lava-dispatch/link-order.txt");
    let ts = test_system::build(&test_system::cache_dir(), false)?;
    let out = workspace_root().join("target/link-order");
    std::fs::create_dir_all(&out)?;
    let job = ramdisk_overlays_job(&ts, &out)?;
    let run = JobRun {
        device: test_system::device_yaml(),
        job,
        out,
    };

    let lava_run = build_release_bin("lava-dispatch", "lava-run")?;
    let mut order = run.callgrind_functions(&lava_run)?;
    println!("link-order: callgrind: {} functions", order.len());
    write_order(&order_file, &order)?;
    if !tool_runs("perf") {
        println!("link-order: perf is missing: no native pass (apt-get install linux-perf)");
        build_release_bin("lava-dispatch", "lava-run")?;
        return Ok(());
    }
    let mut listed: HashSet<String> = order.iter().cloned().collect();
    for pass in 1..=PERF_PASSES {
        build_release_bin("lava-dispatch", "lava-run")?;
        let added: Vec<String> = run
            .faulting_functions(&lava_run)?
            .into_iter()
            .filter(|f| listed.insert(f.clone()))
            .collect();
        println!(
            "link-order: native pass {pass}: {} functions added",
            added.len()
        );
        if added.is_empty() {
            break;
        }
        order.extend(added);
        write_order(&order_file, &order)?;
    }
    build_release_bin("lava-dispatch", "lava-run")?;
    println!(
        "link-order: {} functions in {}",
        order.len(),
        order_file.display()
    );
    Ok(())
}

/// The job and where its runs write.
struct JobRun {
    device: PathBuf,
    job: PathBuf,
    out: PathBuf,
}

impl JobRun {
    /// Runs the job with `lava_run` under `tool` (the tool's arguments first) as run `id`
    /// (its output and scratch directories are its own); the job must pass.
    fn run_under(&self, tool: &str, tool_args: &[&str], lava_run: &Path, id: u32) -> Result<()> {
        let output = self.out.join(format!("output-{id}"));
        let _ = std::fs::remove_dir_all(&output);
        let status = Command::new(tool)
            .args(tool_args)
            .arg(lava_run)
            .arg("--job-id")
            .arg(format!("{}", std::process::id() * 10 + id))
            .arg("--output-dir")
            .arg(&output)
            .arg("--device")
            .arg(&self.device)
            .arg(&self.job)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {tool}"))?;
        ensure!(status.success(), "the job under {tool}: {status}");
        Ok(())
    }

    /// The functions of `lava_run` that run under callgrind, in the order its profile
    /// names them.
    fn callgrind_functions(&self, lava_run: &Path) -> Result<Vec<String>> {
        let profile = self.out.join("callgrind.out");
        let out_file = format!("--callgrind-out-file={}", profile.display());
        let args = [
            "--tool=callgrind",
            "--demangle=no",
            "--compress-strings=no",
            &out_file,
        ];
        self.run_under("valgrind", &args, lava_run, 1)?;
        let text = std::fs::read_to_string(&profile)?;
        Ok(callgrind_profile_functions(&text, lava_run))
    }

    /// The functions of `lava_run` in which a native run takes a page fault.
    fn faulting_functions(&self, lava_run: &Path) -> Result<Vec<String>> {
        let data = self.out.join("perf.data");
        let data_file = data.display().to_string();
        let args = [
            "record",
            "-q",
            "-e",
            "page-faults",
            "-c",
            "1",
            "-o",
            &data_file,
            "--",
        ];
        self.run_under("perf", &args, lava_run, 2)?;
        let script = Command::new("perf")
            .args(["script", "--no-demangle", "-F", "ip,sym,dso", "-i"])
            .arg(&data)
            .stderr(Stdio::null())
            .output()
            .context("running perf script")?;
        ensure!(script.status.success(), "perf script: {}", script.status);
        Ok(perf_script_functions(
            &String::from_utf8_lossy(&script.stdout),
            lava_run,
        ))
    }
}

/// The functions of object `binary` in a callgrind profile written with
/// `--compress-strings=no` (`ob=` then `fn=` lines), first seen first; recursion levels
/// (`name'2`) count as their function, addresses without a symbol are left out.
fn callgrind_profile_functions(profile: &str, binary: &Path) -> Vec<String> {
    let binary = binary.display().to_string();
    let mut in_binary = false;
    let mut seen = HashSet::new();
    let mut functions = Vec::new();
    for line in profile.lines() {
        if let Some(object) = line.strip_prefix("ob=") {
            in_binary = object == binary;
        } else if let Some(name) = line.strip_prefix("fn=")
            && in_binary
        {
            let name = name.split('\'').next().unwrap_or_default();
            if is_symbol(name) && seen.insert(name.to_string()) {
                functions.push(name.to_string());
            }
        }
    }
    functions
}

/// The functions of `binary` in `perf script -F ip,sym,dso` lines, first seen first.
fn perf_script_functions(script: &str, binary: &Path) -> Vec<String> {
    let dso = format!("({})", binary.display());
    let mut seen = HashSet::new();
    let mut functions = Vec::new();
    for line in script.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [_ip, name, object] = words[..]
            && object == dso
            && is_symbol(name)
            && seen.insert(name.to_string())
        {
            functions.push(name.to_string());
        }
    }
    functions
}

/// Whether a profile's function name is a symbol (not `0x2cbaa0`, `[unknown]`,
/// `(below main)`).
fn is_symbol(name: &str) -> bool {
    !name.is_empty() && !name.starts_with("0x") && !name.starts_with(['[', '('])
}

fn write_order(path: &Path, order: &[String]) -> Result<()> {
    let mut text = order.join("\n");
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Whether `tool --version` runs: on Debian `/usr/bin/perf` is a wrapper that is there
/// even when the running kernel's perf is not (so [`test_system::on_path`] would not do).
fn tool_runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_of_the_binary_from_callgrind_and_perf() {
        let bin = Path::new("/w/target/release/lava-run");
        let profile = "\
ob=/usr/lib/x86_64-linux-gnu/libc.so.6
fn=memcpy
ob=/w/target/release/lava-run
fn=_ZN4main17h0123E
fn=_ZN4walk17h4567E'2
fn=0x00000000002cbaa0
fn=_ZN4walk17h4567E
ob=/w/target/release/lava-run.other
fn=_ZN5other17h89abE
";
        assert_eq!(
            callgrind_profile_functions(profile, bin),
            ["_ZN4main17h0123E", "_ZN4walk17h4567E"]
        );
        let script = "\
    564ceb8d5490 __TMC_END__ (/w/target/release/lava-run)
    7f343e8a8110 dl_close_state.2 (/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)
    564ceaf39040 [unknown] (/w/target/release/lava-run)
    564ceaf39040 _ZN4walk17h4567E (/w/target/release/lava-run)
    564ceaf39050 _ZN4walk17h4567E (/w/target/release/lava-run)
";
        assert_eq!(
            perf_script_functions(script, bin),
            ["__TMC_END__", "_ZN4walk17h4567E"]
        );
    }
}
