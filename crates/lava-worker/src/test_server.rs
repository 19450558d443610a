//! A fake lava-server for tests: the server side of the worker protocol on 127.0.0.1, with
//! lava-server 2023.01's rules (paths with their trailing slashes, `LAVA-Token` checks
//! answered 400, the version check answered 409, form bodies, JSON replies, the log
//! `index` rule), jobs the test submits and cancels, and a server that can go away (its
//! port closed, every connection dropped) and come back on the same port.
//!
//! HTTP plumbing and the log rule are lava-log-upload's test server's
//! (`lava_log_upload::test_server`).
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use lava_worker::test_server::FakeLava;
//! let lava = FakeLava::start("worker1", "2023.01").await?;
//! let worker_token = lava.worker_token();
//! let job = lava.submit("job_name: x\n", "device_type: qemu\n");
//! // ... a worker with lava.url() and worker_token runs the job ...
//! lava.stop();  // the server is away
//! lava.resume().await?; // and back
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lava_log_upload::test_server::{
    header, parse_lines, read_request, request_target, store_batch, write_response,
};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Each server of a test process takes the next block of 100 job ids.
static NEXT_BLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A job's state on the fake server (lava-server's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for the worker.
    Scheduled,
    /// The worker said RUNNING.
    Running,
    /// A cancel was asked for.
    Canceling,
    /// The worker said FINISHED.
    Finished,
}

/// One job as the fake server holds it.
#[derive(Debug, Clone)]
pub struct FakeJob {
    /// The job token.
    pub token: String,
    /// Where it stands.
    pub state: JobState,
    /// `definition`, `device`, `dispatcher`, `env`, `env-dut` served to the worker.
    pub files: BTreeMap<String, String>,
    /// Log records received (lava-run's upload).
    pub logs: Vec<String>,
    /// The FINISHED report's form fields.
    pub finished: Option<BTreeMap<String, String>>,
    /// How many times RUNNING was posted.
    pub running_posts: usize,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The `LAVA-Token` header.
    pub token: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The form fields of a POST.
    pub form: BTreeMap<String, String>,
}

#[derive(Debug)]
struct State {
    name: String,
    version: String,
    worker_token: Option<String>,
    next_id: u64,
    jobs: BTreeMap<u64, FakeJob>,
    requests: Vec<SeenRequest>,
    connections: Vec<JoinHandle<()>>,
}

/// The fake server; it stops when dropped.
pub struct FakeLava {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl FakeLava {
    /// A server knowing worker `name` (with a worker token) at version `version`, on a
    /// free port of 127.0.0.1.
    pub async fn start(name: &str, version: &str) -> io::Result<FakeLava> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            name: name.to_string(),
            version: version.to_string(),
            worker_token: Some(random_token(0)),
            // Job ids unique among the servers of all test processes: lava-run's scratch
            // directory (`/var/lib/lava/dispatcher/tmp/<id>`) is named by the id.
            next_id: u64::from(std::process::id()) * 100_000
                + NEXT_BLOCK.fetch_add(100, std::sync::atomic::Ordering::Relaxed),
            jobs: BTreeMap::new(),
            requests: Vec::new(),
            connections: Vec::new(),
        }));
        let server = FakeLava {
            addr,
            state,
            accept: Mutex::new(None),
        };
        server.listen(listener);
        Ok(server)
    }

    /// The base URL (`http://127.0.0.1:PORT/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The worker's token.
    pub fn worker_token(&self) -> String {
        self.lock().worker_token.clone().unwrap_or_default()
    }

    /// Forget the worker's token: the worker is not registered yet (auto-registration
    /// creates it).
    pub fn unregister_worker(&self) {
        self.lock().worker_token = None;
    }

    /// Schedule a job on the worker's device; returns its id.
    pub fn submit(&self, definition: &str, device: &str) -> u64 {
        self.submit_with(definition, device, "", "", "")
    }

    /// Schedule a job with a dispatcher configuration, `env` and `env-dut`.
    pub fn submit_with(
        &self,
        definition: &str,
        device: &str,
        dispatcher: &str,
        env: &str,
        env_dut: &str,
    ) -> u64 {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let files = [
            ("definition", definition),
            ("device", device),
            ("dispatcher", dispatcher),
            ("env", env),
            ("env-dut", env_dut),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        state.jobs.insert(
            id,
            FakeJob {
                token: random_token(id),
                state: JobState::Scheduled,
                files,
                logs: Vec::new(),
                finished: None,
                running_posts: 0,
            },
        );
        id
    }

    /// Ask for a cancel of job `id` (lava-server's Canceling).
    pub fn cancel(&self, id: u64) {
        if let Some(job) = self.lock().jobs.get_mut(&id)
            && job.state != JobState::Finished
        {
            job.state = JobState::Canceling;
        }
    }

    /// A copy of job `id`.
    pub fn job(&self, id: u64) -> Option<FakeJob> {
        self.lock().jobs.get(&id).cloned()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().requests.clone()
    }

    /// Wait until `done` holds for job `id` (checked every 50 ms), at most `timeout`;
    /// returns the job then, or panics naming `what`.
    pub async fn wait_for(
        &self,
        id: u64,
        timeout: Duration,
        what: &str,
        done: impl Fn(&FakeJob) -> bool,
    ) -> FakeJob {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(job) = self.job(id)
                && done(&job)
            {
                return job;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "job {id}: {what}: not within {timeout:?}; job: {:?}",
                    self.job(id)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server goes away: its port is closed and every open connection dropped.
    pub fn stop(&self) {
        if let Some(accept) = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take() {
            accept.abort();
        }
        for connection in self.lock().connections.drain(..) {
            connection.abort();
        }
    }

    /// The server comes back on the same port.
    pub async fn resume(&self) -> io::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        self.listen(listener);
        Ok(())
    }

    fn listen(&self, listener: TcpListener) {
        let state = self.state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = tokio::spawn(serve(stream, state.clone()));
                let mut locked = state.lock().unwrap_or_else(|p| p.into_inner());
                locked.connections.retain(|c| !c.is_finished());
                locked.connections.push(connection);
            }
        });
        *self.accept.lock().unwrap_or_else(|p| p.into_inner()) = Some(accept);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FakeLava {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A 32-character token, different per seed and per server.
fn random_token(seed: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut text = String::new();
    while text.len() < 32 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(seed);
        text.push_str(&format!("{:016x}", hasher.finish()));
    }
    text.truncate(32);
    text
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    while let Some((head, body)) = read_request(&mut stream, &mut buf).await {
        let (status, reply) = {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            handle(&mut state, &head, &body)
        };
        if write_response(&mut stream, status, &reply.to_string())
            .await
            .is_err()
        {
            return;
        }
    }
}

fn error(status: u16, message: String) -> (u16, serde_json::Value) {
    (status, json!({ "error": message }))
}

fn handle(state: &mut State, head: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let method = head
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let target = request_target(head);
    let form: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let token = header(head, "lava-token");
    state.requests.push(SeenRequest {
        method: method.clone(),
        target: target.clone(),
        token: token.clone(),
        user_agent: header(head, "user-agent"),
        content_type: header(head, "content-type"),
        form: form.clone(),
    });
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let Some(rest) = path.strip_prefix("/scheduler/internal/v1/") else {
        return error(404, format!("no such page {path}"));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["workers", ""]) => register(state, &form),
        ("POST", ["workers", _, ""]) => error(403, "POST is forbidden for such url".into()),
        ("GET", ["workers", name, ""]) => ping(state, name, query, token),
        (_, ["jobs", id, rest @ ..]) => {
            let Ok(id) = id.parse::<u64>() else {
                return error(404, format!("Unknown job '{id}'"));
            };
            let Some(job) = state.jobs.get_mut(&id) else {
                return error(404, format!("Unknown job '{id}'"));
            };
            match token {
                None => return error(400, "Missing 'token'".into()),
                Some(t) if t != job.token => return error(400, "Invalid 'token'".into()),
                Some(_) => {}
            }
            match (method.as_str(), rest) {
                ("GET", [""]) => (200, json!(job.files)),
                ("POST", [""]) => job_state(job, &form),
                ("POST", ["logs", ""]) => logs(job, &form),
                _ => error(404, format!("no such page {path}")),
            }
        }
        _ => error(404, format!("no such page {path}")),
    }
}

fn register(state: &mut State, form: &BTreeMap<String, String>) -> (u16, serde_json::Value) {
    let Some(name) = form.get("name") else {
        return error(400, "Missing 'name'".into());
    };
    if *name != state.name || state.worker_token.is_some() {
        return error(403, format!("Worker '{name}' already registered"));
    }
    let token = random_token(u64::MAX);
    state.worker_token = Some(token.clone());
    (200, json!({ "name": name, "token": token }))
}

fn ping(
    state: &mut State,
    name: &str,
    query: &str,
    token: Option<String>,
) -> (u16, serde_json::Value) {
    if name != state.name || state.worker_token.is_none() {
        return error(404, format!("Unknown worker '{name}'"));
    }
    match token {
        None => return error(400, "Missing 'token'".into()),
        Some(t) if Some(&t) != state.worker_token.as_ref() => {
            return error(400, "Invalid 'token'".into());
        }
        Some(_) => {}
    }
    let version = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "version")
        .map(|(_, v)| v.into_owned());
    let Some(version) = version else {
        return error(400, "Missing 'version'".into());
    };
    let matching = version == state.version;
    let list = |wanted: JobState| -> Vec<serde_json::Value> {
        state
            .jobs
            .iter()
            .filter(|(_, job)| job.state == wanted)
            .map(|(id, job)| json!({ "id": id, "token": job.token }))
            .collect()
    };
    let start = if matching {
        list(JobState::Scheduled)
    } else {
        Vec::new()
    };
    let cancel = list(JobState::Canceling);
    let running = list(JobState::Running);
    if !matching && cancel.is_empty() && running.is_empty() {
        return error(
            409,
            format!("Version mismatch '{version}' vs '{}'", state.version),
        );
    }
    (
        200,
        json!({ "cancel": cancel, "running": running, "start": start }),
    )
}

fn job_state(job: &mut FakeJob, form: &BTreeMap<String, String>) -> (u16, serde_json::Value) {
    let Some(raw) = form.get("state") else {
        return error(400, "Missing 'state'".into());
    };
    // lava-server capitalises the first letter, lowers the rest.
    let mut normalised = raw.to_lowercase();
    if let Some(first) = normalised.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    match normalised.as_str() {
        "Running" => {
            job.running_posts += 1;
            if job.state == JobState::Scheduled {
                job.state = JobState::Running;
            }
            (200, json!({}))
        }
        "Finished" => {
            let result = form.get("result").map(String::as_str).unwrap_or_default();
            if result != "pass" && result != "fail" {
                return error(400, format!("Invalid health '{result}'"));
            }
            if job.state != JobState::Finished {
                job.state = JobState::Finished;
                job.finished = Some(form.clone());
            }
            (200, json!({}))
        }
        "Scheduled" | "Canceling" | "Submitted" => {
            error(400, format!("Not handled state '{normalised}'"))
        }
        _ => error(400, format!("Invalid state '{raw}'")),
    }
}

fn logs(job: &mut FakeJob, form: &BTreeMap<String, String>) -> (u16, serde_json::Value) {
    let Some(lines) = form.get("lines") else {
        return error(400, "Missing 'lines'".into());
    };
    let Some(index) = form.get("index") else {
        return error(400, "Missing 'index'".into());
    };
    let Ok(index) = index.parse::<u64>() else {
        return error(400, "Invalid 'index'".into());
    };
    let records = parse_lines(lines);
    store_batch(&mut job.logs, index, &records);
    (200, json!({ "line_count": records.len() }))
}
