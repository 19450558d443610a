//! Release builds of `lava-run` and `lava-dispatch` are linked with their functions in the
//! order a job runs them (`link-order.txt`, one symbol per line, written by `cargo xtask
//! link-order`): the code a job executes then sits together at the front of `.text`, and the
//! kernel's fault-around (it maps up to 64 KiB of a file around each page a process touches)
//! maps much less of the binary into the dispatcher. A symbol the file names but the binary
//! lacks (the code changed since) is skipped; a function the file misses goes after the
//! ordered ones, as without the file.
//!
//! The option is rust-lld's (the linker of `x86_64-unknown-linux-gnu` since Rust 1.90); with
//! another target, or a linker chosen by the builder, the binary is linked as usual.

use std::env;

fn main() {
    println!("cargo::rerun-if-changed=link-order.txt");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let default_linker = || {
        env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu")
            && env::var_os("RUSTC_LINKER").is_none()
            && !env::var("CARGO_ENCODED_RUSTFLAGS")
                .is_ok_and(|flags| flags.contains("linker") || flags.contains("fuse-ld"))
            && rustc_links_with_lld()
    };
    let order =
        std::path::Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("link-order.txt");
    if release && order.is_file() && default_linker() {
        println!(
            "cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether `rustc` is 1.90 or later, where rust-lld links `x86_64-unknown-linux-gnu`.
fn rustc_links_with_lld() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
