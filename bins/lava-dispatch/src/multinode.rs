//! `lava-run multinode SUBMISSION`: a whole MultiNode job on one machine.
//!
//! What lava-server and the workers do for a MultiNode submission, done here: the submission
//! is split into one job per node (`lava_multinode::split`, job ids assigned consecutively and
//! the `roles` map injected as the scheduler does), an embedded coordinator
//! (`lava_coordinator`) listens on a free loopback port (or `--coordinator HOST:PORT` names
//! one already running, LAVA's own included), and every node's job runs in its own
//! `lava-run` process (this executable, with LAVA's flags plus `--coordinator-config`), as a
//! worker would start it. Each node writes `<output-dir>/<job id>/{job.yaml, logs.yaml,
//! result.yaml, output.log}`; the command prints each node's results and exits 0 only when
//! every node's job passed.
//!
//! Nothing outlives the command: a signal (SIGINT, SIGTERM, SIGHUP) is passed on to the node
//! jobs as SIGTERM (they run their finalize step), a node past its job timeout plus the cleanup
//! budget is ended the same way, and every child is reaped before the coordinator stops.

use crate::report::{Report, TestResult};
use crate::results::read_results;
use anyhow::{Context, Result, bail};
use lava_coordinator::{BrokerSettings, Coordinator};
use lava_multinode::split::{NodeJob, assign_roles, is_multinode, split};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Grace given to a node job between SIGTERM and SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(30);
/// Added to the longest node job timeout before the command ends a node itself.
const CLEANUP_MARGIN: Duration = Duration::from_secs(lava_pipeline::execute::CLEANUP_TIMEOUT + 60);

#[derive(clap::Args, Debug)]
pub struct MultinodeArgs {
    /// The MultiNode submission (a job with `protocols: lava-multinode: roles:`).
    pub submission: PathBuf,
    /// The device of a role, as ROLE=PATH (a device YAML or a device dictionary *.jinja2).
    /// Give one per role; every node of that role uses it.
    #[arg(long = "device", value_name = "ROLE=PATH", required = true)]
    pub devices: Vec<String>,
    /// Directory for the node jobs' outputs (one sub-directory per job id).
    #[arg(long)]
    pub output_dir: PathBuf,
    /// Job id of the first node; the others follow consecutively.
    #[arg(long, default_value_t = 1)]
    pub job_id: u64,
    /// Device-type template directories for device dictionaries.
    #[arg(long = "device-types")]
    pub device_types: Vec<PathBuf>,
    /// Seconds between polls for clients that poll like LAVA's (ours are answered at once).
    #[arg(long, default_value_t = 1)]
    pub poll_delay: u64,
    /// Use the coordinator already listening at HOST:PORT (ours or LAVA's) instead of
    /// starting one.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: Option<String>,
}

/// One node job being run.
struct Node {
    job_id: String,
    role: String,
    dir: PathBuf,
    child: Child,
    exit: Option<std::process::ExitStatus>,
}

/// Split, run every node, print the results; the exit code is 0 when every node passed.
pub fn run(args: &MultinodeArgs) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_group(args))
}

async fn run_group(args: &MultinodeArgs) -> Result<i32> {
    let submission = &args.submission;
    let text = std::fs::read_to_string(submission)
        .with_context(|| format!("reading the submission {}", submission.display()))?;
    lava_yaml::check(&text).with_context(|| format!("{}", submission.display()))?;
    let definition: Mapping = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not a YAML mapping", submission.display()))?;
    if !is_multinode(&definition) {
        bail!(
            "{}: protocols.lava-multinode: expected a MultiNode submission (a \
             `protocols: lava-multinode: roles:` block)",
            submission.display()
        );
    }
    let mut jobs = split(&definition)
        .map_err(|e| anyhow::anyhow!("{}: {}: {}", submission.display(), e.path, e.message))?;
    assign_roles(&mut jobs, args.job_id);
    let devices = role_devices(&args.devices, &jobs)?;

    let output_dir = std::path::absolute(&args.output_dir)?;
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("creating {}", output_dir.display()))?;

    let (coordinator, address) = match &args.coordinator {
        Some(external) => {
            let address = tokio::net::lookup_host(external.as_str())
                .await
                .ok()
                .and_then(|mut found| found.next())
                .with_context(|| format!("--coordinator {external}: expected HOST:PORT"))?;
            (None, address)
        }
        None => {
            let embedded = Coordinator::bind(
                BrokerSettings {
                    listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    ..BrokerSettings::default()
                },
                1,
            )
            .await
            .context("starting the embedded coordinator")?
            .spawn();
            let address = embedded.local_addr();
            (Some(embedded), address)
        }
    };
    let config = output_dir.join("lava-coordinator.conf");
    std::fs::write(&config, coordinator_config(address, args.poll_delay))
        .with_context(|| format!("writing {}", config.display()))?;
    let whose = if coordinator.is_some() {
        "embedded"
    } else {
        "external"
    };
    eprintln!(
        "==> {whose} coordinator at {address} ({})",
        config.display()
    );

    let mut nodes = Vec::new();
    let mut started = Ok(());
    for (index, job) in jobs.iter().enumerate() {
        let job_id = (args.job_id + index as u64).to_string();
        match start_node(
            args,
            job,
            &job_id,
            &devices[&job.role],
            &config,
            &output_dir,
        ) {
            Ok(node) => nodes.push(node),
            Err(error) => {
                started = Err(error);
                break;
            }
        }
    }
    if started.is_err() {
        terminate_all(&mut nodes).await;
    } else {
        let limit = longest_job_timeout(&jobs).saturating_add(CLEANUP_MARGIN);
        wait_all(&mut nodes, limit).await;
    }
    if let Some(coordinator) = coordinator
        && let Err(error) = coordinator.shutdown().await
    {
        eprintln!("warning: stopping the embedded coordinator: {error}");
    }
    started?;

    let mut all_passed = true;
    for node in &nodes {
        let report = Report {
            job_id: node.job_id.clone(),
            cases: read_results(&node.dir.join("logs.yaml")).unwrap_or_default(),
        };
        let outcome = report.job_result().map_or("incomplete", TestResult::as_str);
        all_passed &= outcome == "pass" && node.exit.is_some_and(|s| s.success());
        println!(
            "\n== job {} (role {}): {outcome} — {}",
            node.job_id,
            node.role,
            node.dir.display()
        );
        print!("{}", report.table(false));
    }
    println!(
        "\nMultiNode group: {} node job(s), {}",
        nodes.len(),
        if all_passed { "all passed" } else { "FAILED" }
    );
    Ok(if all_passed { 0 } else { 1 })
}

/// `ROLE=PATH` arguments as a map, checked against the roles of the submission.
fn role_devices(arguments: &[String], jobs: &[NodeJob]) -> Result<BTreeMap<String, PathBuf>> {
    let mut devices = BTreeMap::new();
    for argument in arguments {
        let Some((role, path)) = argument.split_once('=') else {
            bail!("--device {argument}: expected ROLE=PATH");
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("--device {argument}: {} is not a file", path.display());
        }
        devices.insert(role.to_string(), path);
    }
    for job in jobs {
        if !devices.contains_key(&job.role) {
            bail!(
                "no device for role '{}': add --device {}=PATH",
                job.role,
                job.role
            );
        }
    }
    let roles: Vec<&str> = jobs.iter().map(|j| j.role.as_str()).collect();
    if let Some(extra) = devices.keys().find(|r| !roles.contains(&r.as_str())) {
        bail!("--device {extra}=...: the submission has no role '{extra}' (roles: {roles:?})");
    }
    Ok(devices)
}

/// LAVA's coordinator configuration (JSON) for a coordinator at `address`.
fn coordinator_config(address: SocketAddr, poll_delay: u64) -> String {
    let config = serde_json::json!({
        "port": address.port(),
        "blocksize": 4096,
        "poll_delay": poll_delay.max(1),
        "coordinator_hostname": address.ip().to_string(),
    });
    serde_json::to_string_pretty(&config).expect("a JSON object serialises")
}

fn start_node(
    args: &MultinodeArgs,
    job: &NodeJob,
    job_id: &str,
    device: &Path,
    coordinator_config: &Path,
    output_dir: &Path,
) -> Result<Node> {
    let dir = output_dir.join(job_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let definition = dir.join("job.yaml");
    std::fs::write(
        &definition,
        serde_yaml::to_string(&Value::Mapping(job.definition.clone()))?,
    )
    .with_context(|| format!("writing {}", definition.display()))?;
    let output = std::fs::File::create(dir.join("output.log"))
        .with_context(|| format!("creating {}/output.log", dir.display()))?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--job-id")
        .arg(job_id)
        .arg("--output-dir")
        .arg(&dir)
        .arg("--device")
        .arg(device)
        .arg("--coordinator-config")
        .arg(coordinator_config);
    for templates in &args.device_types {
        command.arg("--device-types").arg(templates);
    }
    command
        .arg(&definition)
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .process_group(0)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .with_context(|| format!("starting the node job {job_id}"))?;
    eprintln!(
        "==> job {job_id} (role {}) on {}: {}",
        job.role,
        device.display(),
        dir.display()
    );
    Ok(Node {
        job_id: job_id.to_string(),
        role: job.role.clone(),
        dir,
        child,
        exit: None,
    })
}

/// The longest `timeouts.job` among the node jobs (LAVA's default when none is given).
fn longest_job_timeout(jobs: &[NodeJob]) -> Duration {
    jobs.iter()
        .map(|job| {
            job.definition
                .get("timeouts")
                .and_then(|t| t.get("job"))
                .and_then(|t| lava_pipeline::timeout::parse_timeout(t).ok())
                .map_or(Duration::from_secs(24 * 3600), Duration::from_secs)
        })
        .max()
        .unwrap_or_default()
}

/// Wait for every node to end; a signal or the time limit ends the rest.
async fn wait_all(nodes: &mut [Node], limit: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut hangup = signal(SignalKind::hangup()).ok();
    let deadline = lava_pipeline::timeout::deadline_in(limit);
    loop {
        let Some(index) = nodes.iter().position(|n| n.exit.is_none()) else {
            return;
        };
        let node = &mut nodes[index];
        tokio::select! {
            status = node.child.wait() => {
                node.exit = Some(status.unwrap_or_else(|_| failed_status()));
                let outcome = if node.exit.is_some_and(|s| s.success()) { "passed" } else { "failed" };
                eprintln!("==> job {} (role {}) {outcome}", node.job_id, node.role);
            }
            _ = recv(&mut interrupt) => { eprintln!("==> interrupted: ending the node jobs"); break; }
            _ = recv(&mut terminate) => { eprintln!("==> terminated: ending the node jobs"); break; }
            _ = recv(&mut hangup) => { eprintln!("==> hang-up: ending the node jobs"); break; }
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("==> the group ran past {} s: ending the node jobs", limit.as_secs());
                break;
            }
        }
    }
    terminate_all(nodes).await;
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// SIGTERM to every running node job (it runs its finalize step), SIGKILL after the grace.
async fn terminate_all(nodes: &mut [Node]) {
    for node in nodes.iter_mut().filter(|n| n.exit.is_none()) {
        if let Some(pid) = node.child.id() {
            // The node's own process group: its QEMU or shell goes with it if it lingers.
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_raw(pid as i32).expect("a child pid is positive"),
                rustix::process::Signal::TERM,
            );
        }
    }
    for node in nodes.iter_mut().filter(|n| n.exit.is_none()) {
        let status = match tokio::time::timeout(TERMINATE_GRACE, node.child.wait()).await {
            Ok(status) => status.unwrap_or_else(|_| failed_status()),
            Err(_) => {
                let _ = node.child.start_kill();
                node.child.wait().await.unwrap_or_else(|_| failed_status())
            }
        };
        node.exit = Some(status);
    }
}

fn failed_status() -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw(1 << 8)
}
