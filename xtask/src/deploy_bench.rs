//! `cargo xtask bench deploy [--size-mb N] [--only gz|xz]`: stream a large xz and gz
//! image from a local HTTP server (127.0.0.1) through lava-actions' download path
//! (download + SHA-256 + decompression + write, one pass) and compare its wall time with
//! `xz -dc FILE | sha256sum` (and `gzip -dc FILE | sha256sum`) on the same file.
//!
//! The measuring run is a release build of xtask (this command re-runs itself with
//! `cargo run --release` unless already optimised). Inputs are generated once under
//! `target/deploy-bench/`. Everything is bounded: each measured run has a time limit,
//! and the server listens on the loopback only.

use anyhow::{Context, Result, bail, ensure};
use lava_actions::runtime::image_download::{Checksums, Compression, stream_download};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::shared::workspace_root;

/// Bound on one measured run.
const RUN_LIMIT: Duration = Duration::from_secs(300);

pub fn bench(args: &[String]) -> Result<()> {
    if cfg!(debug_assertions) && !args.iter().any(|a| a == "--inner") {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["run", "--release", "--quiet", "--package", "xtask", "--"])
            .args(["bench", "deploy", "--inner"])
            .args(args)
            .current_dir(workspace_root())
            .status()
            .context("running the release build of xtask")?;
        ensure!(status.success(), "deploy benchmark failed ({status})");
        return Ok(());
    }
    let mut size_mb: u64 = 256;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--inner" => {}
            "--size-mb" => size_mb = it.next().context("--size-mb N")?.parse()?,
            "--only" => only = Some(it.next().context("--only gz|xz")?.clone()),
            other => bail!("unknown option {other:?} (expected --size-mb N, --only gz|xz)"),
        }
    }
    for tool in ["xz", "gzip", "sha256sum", "sh"] {
        ensure!(
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()?
                .status
                .success(),
            "{tool} is needed for the deploy benchmark"
        );
    }
    let dir = workspace_root().join("target/deploy-bench");
    std::fs::create_dir_all(&dir)?;
    let raw = dir.join(format!("image-{size_mb}M.img"));
    if !raw.exists() {
        eprintln!("generating {size_mb} MB of image data in {}", raw.display());
        generate(&raw, size_mb << 20)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut ratios = Vec::new();
    for (ext, compression, tool, level) in [
        ("xz", Compression::Xz, "xz", "-6"),
        ("gz", Compression::Gz, "gzip", "-6"),
    ] {
        if only.as_deref().is_some_and(|o| o != ext) {
            continue;
        }
        let packed = dir.join(format!("image-{size_mb}M.img.{ext}"));
        if !packed.exists() {
            eprintln!("compressing with {tool} {level} (once)");
            let tmp = packed.with_extension("partial");
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{tool} {level} -T0 -c '{}' > '{}' 2>/dev/null || {tool} {level} -c '{}' > '{}'",
                    raw.display(),
                    tmp.display(),
                    raw.display(),
                    tmp.display()
                ))
                .status()?;
            ensure!(status.success(), "{tool} failed");
            std::fs::rename(&tmp, &packed)?;
        }
        let ratio = rt.block_on(measure(&packed, ext, compression, tool))?;
        ratios.push((ext, ratio));
    }
    println!();
    for (ext, ratio) in &ratios {
        let verdict = if *ratio >= 0.9 { "ok" } else { "BELOW TARGET" };
        println!("{ext}: ours/reference speed ratio {ratio:.2}x (target >= 0.90x) {verdict}");
    }
    Ok(())
}

/// Image-like data: runs of text, zeros and pseudo-random bytes (about 3:1 with xz).
fn generate(path: &Path, size: u64) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut written = 0u64;
    let mut block = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    while written < size {
        n += 1;
        match n % 4 {
            0 => block.fill(0),
            1 | 2 => {
                for (i, b) in block.iter_mut().enumerate() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = if i % 3 == 0 {
                        (x >> 24) as u8
                    } else {
                        b"lorem ipsum dolor sit amet "[(x as usize + i) % 27]
                    };
                }
            }
            _ => {
                for b in block.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
        }
        let len = block.len().min((size - written) as usize);
        out.write_all(&block[..len])?;
        written += len as u64;
    }
    out.flush()?;
    Ok(())
}

/// Serves `file` at `/<name>` on 127.0.0.1 (HTTP/1.1, Content-Length, 1 MiB writes).
async fn serve(file: PathBuf) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let file = Arc::new(file);
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let file = file.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let Ok(mut f) = tokio::fs::File::open(&*file).await else {
                    return;
                };
                let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                );
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut chunk = vec![0u8; 1 << 20];
                loop {
                    match f.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if sock.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok((format!("http://{addr}/{name}"), task))
}

async fn measure(packed: &Path, ext: &str, compression: Compression, tool: &str) -> Result<f64> {
    let compressed = std::fs::metadata(packed)?.len();
    // Reference: the decompressor and sha256sum alone on the local file.
    let started = Instant::now();
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{tool} -dc '{}' | sha256sum", packed.display()))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, child)
        .await
        .context("reference run over its time limit")??;
    ensure!(out.status.success(), "{tool} -dc | sha256sum failed");
    let reference = started.elapsed().as_secs_f64();
    let reference_sum = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();

    // Ours: HTTP on the loopback → hash + decompress + write, one pass.
    let (url, server) = serve(packed.to_path_buf()).await?;
    let work = tempfile::tempdir_in(packed.parent().unwrap())?;
    let target = work.path().join("image.img");
    let logger = lava_pipeline::JobLogger::default();
    let started = Instant::now();
    let done = tokio::time::timeout(
        RUN_LIMIT,
        stream_download(
            &logger,
            &url,
            &serde_yaml::Mapping::new(),
            Some(compression),
            &target,
            &Checksums::default(),
            |_| {},
        ),
    )
    .await
    .context("our run over its time limit")?
    .map_err(|e| anyhow::anyhow!("{}: {}", e.kind, e.message))?;
    let ours = started.elapsed().as_secs_f64();
    server.abort();
    ensure!(done.size == compressed, "downloaded size differs");

    // The output must be what the reference decompressed.
    let check = std::process::Command::new("sha256sum")
        .arg(&target)
        .output()?;
    let ours_sum = String::from_utf8_lossy(&check.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    ensure!(
        ours_sum == reference_sum,
        "decompressed output differs from {tool} -dc"
    );

    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "{ext}: {:.0} MB compressed, {:.0} MB image",
        mb(compressed),
        mb(done.written)
    );
    println!(
        "  ours (http 127.0.0.1, sha256 + {ext} + write): {ours:.2} s, {:.1} MB/s compressed, {:.1} MB/s image",
        mb(compressed) / ours,
        mb(done.written) / ours
    );
    println!(
        "  reference ({tool} -dc | sha256sum):          {reference:.2} s, {:.1} MB/s compressed, {:.1} MB/s image",
        mb(compressed) / reference,
        mb(done.written) / reference
    );
    Ok(reference / ours)
}
