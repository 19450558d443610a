//! The TCP side: accept connections concurrently, read one bounded frame
//! each, apply it to the groups, hold it open if asked (push), reply, close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lava_multinode::codec::{self, read_frame};
use lava_multinode::wire::{Request, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::CoordinatorError;
use crate::groups::{Groups, GroupsSummary, Outcome};
use crate::settings::BrokerSettings;

/// How long shutdown waits for connections still being served.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Counters of the server.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    bad_frames: AtomicU64,
    requests: AtomicU64,
    held: AtomicU64,
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
    pub groups: GroupsSummary,
}

struct Shared {
    settings: BrokerSettings,
    groups: Mutex<Groups>,
    counters: Counters,
}

impl Shared {
    fn stats(&self) -> BrokerStats {
        BrokerStats {
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            open: self.counters.open.load(Ordering::Relaxed),
            bad_frames: self.counters.bad_frames.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            held: self.counters.held.load(Ordering::Relaxed),
            groups: self.lock_groups().summary(),
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
        settings: BrokerSettings,
        bind_attempts: u32,
    ) -> Result<Self, CoordinatorError> {
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
        Ok(Coordinator {
            listener,
            shared: Arc::new(Shared {
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
                    if let Some(idle) = shared.settings.group_idle_expiry {
                        shared.lock_groups().expire_idle(idle, std::time::Instant::now());
                    }
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of descriptors and the like: pause instead of spinning.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
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

async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let settings = &shared.settings;
    let body = match read_frame(
        &mut stream,
        settings.max_frame_bytes,
        settings.read_deadline,
    )
    .await
    {
        Ok(Some(body)) => body,
        Ok(None) => return,
        Err(error) => {
            shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("Invalid message from {peer}: {error}");
            return;
        }
    };
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(&body) else {
        shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "JSON error for '{}' from {peer}",
            String::from_utf8_lossy(&body[..body.len().min(100)])
        );
        return;
    };
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let outcome = match serde_json::from_value::<Request>(document) {
        Ok(request) if authorised(settings, &request) => answer(shared, &request).await,
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
async fn answer(shared: &Shared, request: &Request) -> Outcome {
    let hold = request
        .hold_ms
        .map(Duration::from_millis)
        .unwrap_or_default()
        .min(shared.settings.max_hold);
    let holdable = !hold.is_zero() && request.operation().is_some_and(|op| op.is_waitable());
    let release_at = Instant::now() + hold;
    let mut counted = false;
    loop {
        let (outcome, changes) = {
            let mut groups = shared.lock_groups();
            let outcome = groups.handle(request, std::time::Instant::now());
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
        match tokio::time::timeout_at(release_at, changes.changed()).await {
            // Changed, or the group was deleted: look again.
            Ok(_) => continue,
            Err(_) => return Outcome::Reply(Response::Wait { held: true }),
        }
    }
}
