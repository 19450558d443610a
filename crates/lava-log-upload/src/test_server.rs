//! A fake lava-server log endpoint on 127.0.0.1 for tests: a minimal HTTP/1.1 server
//! (keep-alive, `Content-Length` bodies) that stores records with lava-server's rule for
//! `index` (the first `stored - index` records of a batch are duplicates and skipped) and
//! misbehaves on request, one scripted [`Fault`] per request.
//!
//! Its pieces are public for other fake servers (lava-worker's fake lava-server speaks the
//! whole worker protocol with them): [`read_request`], [`header`], [`request_target`],
//! [`write_response`], [`parse_lines`] and [`store_batch`] (lava-server's `index` rule).
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use lava_log_upload::test_server::{Fault, FakeServer};
//! let server = FakeServer::start("token", "42").await?;
//! server.push_faults([Fault::Drop, Fault::Status(503)]);
//! // ... upload to server.url() ...
//! assert!(server.gaps().is_empty());
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the server treats one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection without storing or replying.
    Drop,
    /// Store the records, then close the connection without replying (a lost reply).
    DropAfterStore,
    /// Store the records, then wait this long before replying.
    Delay(Duration),
    /// Reply with this status and an error body, storing nothing.
    Status(u16),
    /// Take only the first N records of the batch (`line_count` N).
    Partial(usize),
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// The request target.
    pub path: String,
    /// The `LAVA-Token` header.
    pub token: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `index` form field.
    pub index: Option<u64>,
    /// Records in the `lines` form field.
    pub records: usize,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

#[derive(Debug, Default)]
struct State {
    token: String,
    job_id: String,
    stored: Vec<String>,
    requests: Vec<SeenRequest>,
    faults: VecDeque<Fault>,
    gaps: Vec<(u64, usize)>,
}

/// The fake server; it stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Listen on a free port of 127.0.0.1 for job `job_id` with job token `token`.
    pub async fn start(token: &str, job_id: &str) -> io::Result<FakeServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            job_id: job_id.to_string(),
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Ok(FakeServer { addr, state, task })
    }

    /// The base URL to give the uploader (`http://127.0.0.1:PORT/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Apply these faults to the next requests, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    /// The records stored, in order.
    pub fn stored(&self) -> Vec<String> {
        self.lock().stored.clone()
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().requests.clone()
    }

    /// Requests whose `index` was beyond what was stored, as `(index, stored)`: records
    /// the sender believed accepted that never were (a loss).
    pub fn gaps(&self) -> Vec<(u64, usize)> {
        self.lock().gaps.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What to do with the connection after a request.
enum Reply {
    Send(u16, String),
    DelayedSend(Duration, u16, String),
    Close,
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let reply = handle(&state, &head, &body);
        let (status, text) = match reply {
            Reply::Close => return,
            Reply::Send(status, text) => (status, text),
            Reply::DelayedSend(delay, status, text) => {
                tokio::time::sleep(delay).await;
                (status, text)
            }
        };
        if write_response(&mut stream, status, &text).await.is_err() {
            return;
        }
    }
}

/// Write one HTTP/1.1 response with a JSON body (the connection stays open).
pub async fn write_response(stream: &mut TcpStream, status: u16, json: &str) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        if status == 200 { "OK" } else { "Error" },
        json.len()
    );
    stream.write_all(response.as_bytes()).await
}

/// One request from `stream` (`buf` keeps what was read beyond it, for the next request
/// of a kept-alive connection): the head (request line and headers) and the body. `None`
/// when the peer closed the connection.
pub async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some((head, body))
}

/// The value of header `name` (case-insensitive) in a request head.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// The request target (path and query) of a request head.
pub fn request_target(head: &str) -> String {
    head.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The records of a `lines` form field (`- ` + records joined with `\n- `).
pub fn parse_lines(lines: &str) -> Vec<String> {
    lines
        .split('\n')
        .map(|r| r.strip_prefix("- ").unwrap_or(r).to_string())
        .collect()
}

/// lava-server's rule for a batch: the first `stored - index` records are duplicates of
/// records already stored and skipped, the rest appended.
pub fn store_batch(stored: &mut Vec<String>, index: u64, records: &[String]) {
    let skip = stored.len().saturating_sub(index as usize);
    if skip < records.len() {
        stored.extend_from_slice(&records[skip..]);
    }
}

fn error(status: u16, message: &str) -> Reply {
    Reply::Send(status, format!("{{\"error\": \"{message}\"}}"))
}

fn handle(state: &Mutex<State>, head: &str, body: &[u8]) -> Reply {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let path = request_target(head);
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let lines = field("lines");
    let records = lines.as_deref().map(parse_lines).unwrap_or_default();
    let index = field("index").and_then(|i| i.parse::<u64>().ok());
    let token = header(head, "lava-token");
    let fault = state.faults.pop_front();
    state.requests.push(SeenRequest {
        path: path.clone(),
        token: token.clone(),
        user_agent: header(head, "user-agent"),
        content_type: header(head, "content-type"),
        index,
        records: records.len(),
        fault,
    });

    let expected = format!("/scheduler/internal/v1/jobs/{}/logs/", state.job_id);
    if path != expected {
        return error(404, &format!("Unknown job '{path}'"));
    }
    match token {
        None => return error(400, "Missing 'token'"),
        Some(t) if t != state.token => return error(400, "Invalid 'token'"),
        Some(_) => {}
    }
    if lines.is_none() {
        return error(400, "Missing 'lines'");
    }
    let Some(index) = index else {
        return error(400, "Missing or invalid 'index'");
    };
    match fault {
        Some(Fault::Drop) => return Reply::Close,
        Some(Fault::Status(code)) => {
            // The body echoes the token: the sender must mask it in its messages.
            let echo = state.token.clone();
            return error(code, &format!("injected failure (token {echo})"));
        }
        _ => {}
    }
    let taken = match fault {
        Some(Fault::Partial(n)) => n.min(records.len()),
        _ => records.len(),
    };
    let stored = state.stored.len();
    if index as usize > stored {
        state.gaps.push((index, stored));
    }
    store_batch(&mut state.stored, index, &records[..taken]);
    let text = format!("{{\"line_count\": {taken}}}");
    match fault {
        Some(Fault::DropAfterStore) => Reply::Close,
        Some(Fault::Delay(delay)) => Reply::DelayedSend(delay, 200, text),
        _ => Reply::Send(200, text),
    }
}
