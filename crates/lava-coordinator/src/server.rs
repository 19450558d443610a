//! The TCP side: accept connections concurrently, read one bounded frame
//! each, apply it to the groups, hold it open if asked (push), reply, close.
//!
//! Resources are bounded together, not only per connection: connections
//! served at once fit the process's descriptor limit ([`fit_to_descriptors`],
//! with a log line when the setting is lowered); the request bytes being
//! read at once, all connections together, stay within
//! `max_reading_bytes` (a frame's bytes are admitted after its header,
//! before its body is read); `accept` failing (out of descriptors) backs off
//! instead of spinning; and a held request ends as soon as its client has
//! gone (end of file while holding: our client keeps its side open when it
//! asks for a hold).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lava_multinode::codec::{self, FrameError};
use lava_multinode::wire::{Request, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::CoordinatorError;
use crate::groups::{Groups, GroupsSummary, Outcome};
use crate::settings::BrokerSettings;

/// How long shutdown waits for connections still being served.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Descriptors kept for everything but client connections (the listener,
/// log file, standard streams, the runtime's own).
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The first and the longest pause after `accept` fails.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Counters of the server.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    bad_frames: AtomicU64,
    requests: AtomicU64,
    held: AtomicU64,
    reading_bytes: AtomicU64,
    peak_reading_bytes: AtomicU64,
    departed: AtomicU64,
    accept_failures: AtomicU64,
}

/// A snapshot of the server's counters and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BrokerStats {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections being served now.
    pub open: u64,
    /// Connections closed without a reply because their frame was bad
    /// (bad hex, too long, truncated, too slow, not JSON).
    pub bad_frames: u64,
    /// Requests parsed and answered.
    pub requests: u64,
    /// Requests that were held open at least once.
    pub held: u64,
    /// Most request bytes ever being read at once (admitted, not yet parsed).
    pub peak_reading_bytes: u64,
    /// Held requests ended because their client had gone.
    pub departed: u64,
    /// Times `accept` failed (out of descriptors and the like).
    pub accept_failures: u64,
    /// Size of the group table now.
    pub groups: GroupsSummary,
}

struct Shared {
    settings: BrokerSettings,
    groups: Mutex<Groups>,
    counters: Counters,
    /// One permit per request byte that may be read at once.
    reading: Arc<Semaphore>,
}

/// Request bytes admitted for reading; given back when dropped.
struct ReadingBytes<'a> {
    counters: &'a Counters,
    bytes: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ReadingBytes<'_> {
    fn drop(&mut self) {
        self.counters
            .reading_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Shared {
    fn stats(&self) -> BrokerStats {
        BrokerStats {
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            open: self.counters.open.load(Ordering::Relaxed),
            bad_frames: self.counters.bad_frames.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            held: self.counters.held.load(Ordering::Relaxed),
            peak_reading_bytes: self.counters.peak_reading_bytes.load(Ordering::Relaxed),
            departed: self.counters.departed.load(Ordering::Relaxed),
            accept_failures: self.counters.accept_failures.load(Ordering::Relaxed),
            groups: self.lock_groups().summary(),
        }
    }

    /// Wait until `length` more request bytes fit in the reading budget.
    async fn admit_reading(&self, length: usize) -> ReadingBytes<'_> {
        let permits = u32::try_from(length).unwrap_or(u32::MAX);
        let permit = self
            .reading
            .clone()
            .acquire_many_owned(permits)
            .await
            .expect("the reading budget is never closed");
        let bytes = u64::from(permits);
        let now = self
            .counters
            .reading_bytes
            .fetch_add(bytes, Ordering::Relaxed)
            + bytes;
        self.counters
            .peak_reading_bytes
            .fetch_max(now, Ordering::Relaxed);
        ReadingBytes {
            counters: &self.counters,
            bytes,
            _permit: permit,
        }
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, Groups> {
        // A panic while holding the lock would be a bug in groups.rs; keep
        // serving with whatever state is there rather than dying.
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A coordinator bound to its port, not yet serving.
pub struct Coordinator {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Coordinator {
    /// Bind the listening socket (SO_REUSEADDR, backlog 1024). Like LAVA's
    /// daemon, retry with a doubling delay when the port is busy, but give
    /// up after `bind_attempts` tries.
    pub async fn bind(
        mut settings: BrokerSettings,
        bind_attempts: u32,
    ) -> Result<Self, CoordinatorError> {
        settings.max_connections = fit_to_descriptors(settings.max_connections);
        let mut delay = Duration::from_secs(1);
        let mut attempt = 1;
        let listener = loop {
            tracing::info!("[BTSP] binding to {}", settings.listen);
            match bind_listener(settings.listen) {
                Ok(listener) => break listener,
                Err(error) if attempt < bind_attempts => {
                    tracing::warn!(
                        "[BTSP] Unable to bind, trying again with delay={} msg={error}",
                        delay.as_secs()
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                    attempt += 1;
                }
                Err(source) => {
                    return Err(CoordinatorError::Bind {
                        address: settings.listen,
                        source,
                    });
                }
            }
        };
        let groups = Mutex::new(Groups::new(settings.limits));
        // A frame never waits for more bytes than the budget holds.
        let budget = settings
            .max_reading_bytes
            .max(settings.max_frame_bytes)
            .min(Semaphore::MAX_PERMITS);
        Ok(Coordinator {
            listener,
            shared: Arc::new(Shared {
                reading: Arc::new(Semaphore::new(budget)),
                settings,
                groups,
                counters: Counters::default(),
            }),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serve until `shutdown` is cancelled, then end every connection task.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), CoordinatorError> {
        let Coordinator { listener, shared } = self;
        let connections = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(shared.settings.max_connections));
        let mut expiry = tokio::time::interval(Duration::from_secs(60));
        let mut backoff = ACCEPT_BACKOFF.0;
        tracing::info!("Ready to accept new connections");
        loop {
            // Take a slot before accepting: beyond the limit, clients wait in
            // the kernel's backlog instead of costing us memory.
            let slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            };
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = expiry.tick() => {
                    shared
                        .lock_groups()
                        .expire_idle(shared.settings.expiry, std::time::Instant::now());
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => {
                    backoff = ACCEPT_BACKOFF.0;
                    pair
                }
                Err(error) => {
                    shared
                        .counters
                        .accept_failures
                        .fetch_add(1, Ordering::Relaxed);
                    // Out of descriptors and the like: pause longer each time
                    // instead of spinning, and log once per streak.
                    if backoff == ACCEPT_BACKOFF.0 {
                        tracing::warn!("accept failed: {error}; backing off");
                    }
                    drop(slot);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            };
            shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
            shared.counters.open.fetch_add(1, Ordering::Relaxed);
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = serve_connection(stream, peer, &shared) => {}
                }
                shared.counters.open.fetch_sub(1, Ordering::Relaxed);
                drop(slot);
            });
        }
        connections.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?} at shutdown");
        }
        Ok(())
    }

    /// Serve in a background task; the handle stops it.
    pub fn spawn(self) -> CoordinatorHandle {
        let address = self.local_addr();
        let shared = self.shared.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(self.serve(shutdown.clone()));
        CoordinatorHandle {
            address,
            shared,
            shutdown,
            task: Some(task),
        }
    }
}

/// `wanted` connections, lowered (with a log line) to what the process's
/// descriptor limit leaves after [`RESERVED_DESCRIPTORS`].
pub fn fit_to_descriptors(wanted: usize) -> usize {
    let fits = descriptor_limit().map_or(wanted, |limit| {
        usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS).max(1)).unwrap_or(usize::MAX)
    });
    if fits < wanted {
        tracing::warn!(
            "[INIT] serving at most {fits} connections at once, not {wanted}: the descriptor limit is {}",
            descriptor_limit().unwrap_or_default()
        );
    }
    wanted.min(fits)
}

/// The soft limit on open descriptors (`None`: unlimited).
pub fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raise the soft descriptor limit to the hard one (the daemon does this at
/// start); returns the soft limit now in force (`None`: unlimited).
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("[INIT] cannot raise the descriptor limit: {error}");
        }
    }
    descriptor_limit()
}

fn bind_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// A coordinator serving in the background. Dropping it stops the server.
pub struct CoordinatorHandle {
    address: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), CoordinatorError>>>,
}

impl CoordinatorHandle {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Counters and state summary.
    pub fn stats(&self) -> BrokerStats {
        self.shared.stats()
    }

    /// Stop accepting, end all connections, wait for the server task.
    pub async fn shutdown(mut self) -> Result<(), CoordinatorError> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| CoordinatorError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for CoordinatorHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Read one frame within the read deadline, its body admitted to the
/// reading budget first; the admission is held until the caller drops it.
async fn read_request<'a>(
    stream: &mut TcpStream,
    shared: &'a Shared,
) -> Result<Option<(Vec<u8>, ReadingBytes<'a>)>, FrameError> {
    let settings = &shared.settings;
    let read = async {
        let Some(length) = codec::read_header(stream, settings.max_frame_bytes).await? else {
            return Ok(None);
        };
        let admitted = shared.admit_reading(length).await;
        let body = codec::read_body(stream, length).await?;
        Ok(Some((body, admitted)))
    };
    tokio::time::timeout(settings.read_deadline, read)
        .await
        .map_err(|_| FrameError::Deadline(settings.read_deadline))?
}

async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let settings = &shared.settings;
    let (body, admitted) = match read_request(&mut stream, shared).await {
        Ok(Some(read)) => read,
        Ok(None) => return,
        Err(error) => {
            shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("Invalid message from {peer}: {error}");
            return;
        }
    };
    let parsed = serde_json::from_slice::<serde_json::Value>(&body);
    drop(body);
    drop(admitted);
    let Ok(document) = parsed else {
        shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "JSON error from {peer}: {}",
            parsed.err().map(|e| e.to_string()).unwrap_or_default()
        );
        return;
    };
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let outcome = match serde_json::from_value::<Request>(document) {
        Ok(request) if authorised(settings, &request) => {
            answer(shared, &request, &stream, peer).await
        }
        Ok(_) => {
            tracing::warn!("request from {peer} without the right token: nack");
            Outcome::Reply(Response::Nack)
        }
        Err(error) => {
            tracing::warn!("malformed request from {peer}: {error}");
            Outcome::Reply(Response::Nack)
        }
    };
    let Outcome::Reply(response) = outcome else {
        return;
    };
    let frame = codec::encode_frame(&response);
    let write = async {
        stream.write_all(&frame).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(settings.read_deadline, write).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!("reply to {peer} failed: {error}"),
        Err(_) => tracing::debug!("reply to {peer} timed out"),
    }
}

fn authorised(settings: &BrokerSettings, request: &Request) -> bool {
    let Some(expected) = settings.token.as_deref() else {
        return true;
    };
    let given = request.token.as_deref().unwrap_or("");
    // Compare without an early exit on the first differing byte.
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Apply the request; if the answer is `wait` and the client asked to be
/// held, keep re-applying it whenever its group changes, until it is
/// answerable or the hold ends.
async fn answer(
    shared: &Shared,
    request: &Request,
    stream: &TcpStream,
    peer: SocketAddr,
) -> Outcome {
    let hold = request
        .hold_ms
        .map(Duration::from_millis)
        .unwrap_or_default()
        .min(shared.settings.max_hold);
    let holdable = !hold.is_zero() && request.operation().is_some_and(|op| op.is_waitable());
    let release_at = Instant::now() + hold;
    let mut counted = false;
    let gone = departed(stream);
    tokio::pin!(gone);
    loop {
        let (outcome, changes) = {
            let mut groups = shared.lock_groups();
            let outcome = groups.handle_from(request, Some(peer.ip()), std::time::Instant::now());
            let changes = match (&outcome, request.group_name.as_deref()) {
                (outcome, Some(group)) if holdable && outcome.is_wait() => groups.subscribe(group),
                _ => None,
            };
            (outcome, changes)
        };
        let Some(mut changes) = changes else {
            return outcome;
        };
        if !counted {
            shared.counters.held.fetch_add(1, Ordering::Relaxed);
            counted = true;
        }
        tokio::select! {
            changed = tokio::time::timeout_at(release_at, changes.changed()) => match changed {
                // Changed: look again.
                Ok(Ok(())) => continue,
                // The group was deleted (its members cleared it, or it expired): the held
                // request is not applied again, which would bring the group back from a
                // request its client may have abandoned (a registration that timed out,
                // then cleared). A client still waiting asks again.
                Ok(Err(_)) | Err(_) => return Outcome::Reply(Response::Wait { held: true }),
            },
            () = &mut gone => {
                shared.counters.departed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("{peer} left while its request was held");
                return Outcome::Close;
            }
        }
    }
}

/// Resolves when the client of a held request has gone: end of file or an
/// error on its side. Bytes after the frame (not LAVA's protocol) are left
/// unread and the request is held to its end.
async fn departed(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}
