//! `cargo xtask bench coordinator`: our `lava-coordinator` against Debian's
//! (LAVA 2023.01) on the same loads, both as separate processes on loopback.
//!
//! (a) group sync: N clients register, N-1 enter `lava_sync`, then the last
//!     one; measured: time from the last arrival to all released, and failed
//!     requests (refused/reset/timed-out connections, empty replies).
//! (b) hammer: 64 clients loop `lava_send` + `lava_wait` (one connection
//!     each) for a fixed time; measured: req/s, p50/p99 latency, failures.
//!
//! Both sides use our client. Against LAVA's daemon the push field is
//! ignored and the client polls every `poll_delay` exactly like LAVA's own
//! client; against ours it is held and answered at once.
//!
//! Options: `--sizes 2,10,50,200` `--poll-delay 3` `--duration 5`
//! `--clients 64` `--ours-only`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lava_multinode::{ClientSettings, CoordinatorClient, Identity, Payload, Response};

use crate::shared::{build_release_bin, workspace_root};

const LAVA_DAEMON: &str = "/usr/bin/lava-coordinator";
const PHASE_TIMEOUT: Duration = Duration::from_secs(180);

struct Options {
    sizes: Vec<usize>,
    poll_delay: u64,
    duration: Duration,
    clients: usize,
    ours_only: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        sizes: vec![2, 10, 50, 200],
        poll_delay: 3,
        duration: Duration::from_secs(5),
        clients: 64,
        ours_only: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().context(format!("{arg} needs a value"));
        match arg.as_str() {
            "--sizes" => {
                options.sizes = value()?
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--poll-delay" => options.poll_delay = value()?.parse()?,
            "--duration" => options.duration = Duration::from_secs(value()?.parse()?),
            "--clients" => options.clients = value()?.parse()?,
            "--ours-only" => options.ours_only = true,
            other => bail!("unknown option {other:?}"),
        }
    }
    Ok(options)
}

pub fn bench(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let ours_bin = build_release_bin("lava-coordinator-bin", "lava-coordinator")?;
    let lava_present = Path::new(LAVA_DAEMON).exists();
    if !lava_present && !options.ours_only {
        eprintln!(
            "note: {LAVA_DAEMON} not found (apt-get install -y lava-coordinator); benchmarking ours only"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let scratch = tempfile::tempdir()?;
    let mut daemons = vec![Daemon::start(
        "lava-rs",
        &ours_bin,
        scratch.path(),
        &options,
    )?];
    if lava_present && !options.ours_only {
        daemons.push(Daemon::start(
            "LAVA 2023.01",
            Path::new(LAVA_DAEMON),
            scratch.path(),
            &options,
        )?);
    }
    println!(
        "coordinator bench (loopback, poll_delay {} s, workspace {})",
        options.poll_delay,
        workspace_root().display()
    );
    println!("\n(a) group sync: last arrival -> all released");
    println!(
        "{:<14} {:>5} {:>14} {:>10} {:>10}",
        "server", "N", "released after", "failed", "requests"
    );
    for &size in &options.sizes {
        for daemon in &daemons {
            // A round that times out is a result, not the end of the bench.
            match runtime.block_on(sync_round(daemon, size, options.poll_delay)) {
                Ok(result) => println!(
                    "{:<14} {:>5} {:>14} {:>10} {:>10}",
                    daemon.name,
                    size,
                    format!("{:.1} ms", result.released_after.as_secs_f64() * 1000.0),
                    result.failed,
                    result.requests
                ),
                Err(error) => println!("{:<14} {:>5} failed: {error:#}", daemon.name, size),
            }
        }
    }
    println!(
        "\n(b) {} clients hammering lava_send/lava_wait for {:?}",
        options.clients, options.duration
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "server", "requests", "req/s", "p50", "p99", "failed"
    );
    for daemon in &daemons {
        let result = runtime.block_on(hammer(daemon, options.clients, options.duration))?;
        println!(
            "{:<14} {:>10} {:>10.0} {:>10} {:>10} {:>10}",
            daemon.name,
            result.requests,
            result.requests as f64 / result.elapsed.as_secs_f64(),
            format!("{:.2} ms", result.p50.as_secs_f64() * 1000.0),
            format!("{:.2} ms", result.p99.as_secs_f64() * 1000.0),
            result.failed
        );
    }
    drop(daemons);
    Ok(())
}

/// A coordinator process on a loopback port, killed (by its id) on drop.
struct Daemon {
    name: &'static str,
    child: Child,
    address: SocketAddr,
    poll_delay: u64,
}

impl Daemon {
    fn start(
        name: &'static str,
        program: &Path,
        scratch: &Path,
        options: &Options,
    ) -> Result<Daemon> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config: PathBuf = scratch.join(format!("coordinator-{port}.conf"));
        let mut file = std::fs::File::create(&config)?;
        // lava_rs_listen keeps ours on loopback; LAVA's daemon ignores it
        // (it always binds 0.0.0.0) and is only ever contacted on loopback.
        write!(
            file,
            r#"{{"port": {port}, "blocksize": 4096, "poll_delay": {}, "coordinator_hostname": "127.0.0.1", "lava_rs_listen": "127.0.0.1"}}"#,
            options.poll_delay
        )?;
        let child = Command::new(program)
            .args(["--logfile", "/dev/null", "--loglevel", "ERROR", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let address: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut daemon = Daemon {
            name,
            child,
            address,
            poll_delay: options.poll_delay,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if started.elapsed() > Duration::from_secs(20) || daemon.child.try_wait()?.is_some() {
                bail!("{name} did not start listening on {address}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(daemon)
    }

    fn client(&self, group: &str, client: usize, role: &str) -> CoordinatorClient {
        let mut settings = ClientSettings::for_address(self.address);
        settings.poll_delay = Duration::from_secs(self.poll_delay);
        settings.max_backoff = Duration::from_secs(self.poll_delay + 10);
        CoordinatorClient::new(
            settings,
            Identity {
                group_name: group.to_string(),
                client_name: (1000 + client).to_string(),
                role: role.to_string(),
                hostname: "bench".to_string(),
            },
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct SyncResult {
    released_after: Duration,
    failed: u64,
    requests: u64,
}

async fn sync_round(daemon: &Daemon, size: usize, poll_delay: u64) -> Result<SyncResult> {
    let group = format!("sync-{size}-{}", std::process::id());
    let clients: Vec<_> = (0..size)
        .map(|i| daemon.client(&group, i, "node"))
        .collect();
    let mut registrations = tokio::task::JoinSet::new();
    for c in &clients {
        let c = c.clone();
        registrations.spawn(async move { c.register(size as u64, PHASE_TIMEOUT).await });
    }
    while let Some(result) = registrations.join_next().await {
        result?.context("registration")?;
    }
    let before: Vec<_> = clients.iter().map(|c| c.stats()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for c in &clients[..size - 1] {
        let c = c.clone();
        tasks.spawn(async move { c.sync("bench", PHASE_TIMEOUT).await.map(|_| Instant::now()) });
    }
    // Let the others arrive (and, with polling, settle into their loop).
    tokio::time::sleep(Duration::from_millis(500) + Duration::from_secs(poll_delay)).await;
    let last_arrival = Instant::now();
    clients[size - 1]
        .sync("bench", PHASE_TIMEOUT)
        .await
        .context("sync")?;
    let mut released = Instant::now();
    while let Some(result) = tasks.join_next().await {
        released = released.max(result?.context("sync")?);
    }
    let (failed, requests) = clients.iter().zip(&before).fold((0, 0), |(f, r), (c, b)| {
        let s = c.stats();
        (
            f + (s.transport_failures - b.transport_failures) + (s.empty_replies - b.empty_replies),
            r + (s.requests - b.requests),
        )
    });
    let mut clears = tokio::task::JoinSet::new();
    for c in &clients {
        clears.spawn({
            let c = c.clone();
            async move { c.clear_group(size as u64, Duration::from_secs(30)).await }
        });
    }
    while let Some(result) = clears.join_next().await {
        result?.ok();
    }
    Ok(SyncResult {
        released_after: released - last_arrival,
        failed,
        requests,
    })
}

struct HammerResult {
    requests: u64,
    failed: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn hammer(daemon: &Daemon, count: usize, duration: Duration) -> Result<HammerResult> {
    let group = format!("hammer-{}", std::process::id());
    let clients: Vec<_> = (0..count)
        .map(|i| daemon.client(&group, i, "peer"))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for c in &clients {
        let c = c.clone();
        tasks.spawn(async move { c.register(count as u64, PHASE_TIMEOUT).await.map(|_| ()) });
    }
    while let Some(result) = tasks.join_next().await {
        result?.context("registration")?;
    }
    let started = Instant::now();
    let stop_at = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for c in &clients {
        let c = c.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            let mut round = 0u64;
            while Instant::now() < stop_at {
                let id = format!("m{}", round % 32);
                round += 1;
                for request in [
                    c.envelope().lava_send(&id, Payload::empty()),
                    c.envelope().lava_wait(&id),
                ] {
                    let sent = Instant::now();
                    match c.exchange(&request).await {
                        Ok(Response::Ack { .. }) => latencies.push(sent.elapsed()),
                        Ok(_) | Err(_) => failed += 1,
                    }
                }
            }
            (latencies, failed)
        });
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    while let Some(result) = workers.join_next().await {
        let (mut l, f) = result?;
        latencies.append(&mut l);
        failed += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    for c in &clients {
        tasks.spawn({
            let c = c.clone();
            async move { c.clear_group(count as u64, Duration::from_secs(30)).await }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result?.ok();
    }
    Ok(HammerResult {
        requests: latencies.len() as u64,
        failed,
        elapsed,
        p50: percentile(0.50),
        p99: percentile(0.99),
    })
}
