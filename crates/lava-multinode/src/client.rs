//! The async coordinator client: one TCP connection per request, polling
//! until the answer is not `wait`, with our push extension.
//!
//! * Each request is written as one buffer (header + body), the sending side
//!   is half-closed, and the reply is read until EOF; an empty reply counts
//!   as `wait` (LAVA's rule).
//! * With push enabled, the request asks the server to hold a `wait` for up
//!   to [`ClientSettings::max_hold`]. Our coordinator answers the moment the
//!   condition holds (a held `wait` is marked, and the client asks again at
//!   once). LAVA's coordinator ignores the field and answers a plain `wait`;
//!   the client then sleeps `poll_delay` like LAVA's own client.
//! * Connection failures back off (poll_delay, then +2 s per failure, capped)
//!   and, unlike LAVA's client, are bounded by the same wall-clock deadline,
//!   which also ends an exchange in flight (a coordinator that stops answering
//!   without closing its connections).
//! * The client never sends `clear_group` by itself; the caller decides when
//!   (LAVA's client double-sends it on a timeout, which tears groups down early).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indexmap::IndexMap;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::codec::{self, FrameError, LAVA_CLIENT_MAX_REQUEST};
use crate::config::CoordinatorConfig;
use crate::wire::{Delivered, Envelope, Payload, Request, Response, SenderPayloads};

/// Errors of a coordinator call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request is longer than the client may send (`max_request_bytes`, LAVA's `0xFFFE` by default).
    #[error("Message was too long to send! {length} > {limit}")]
    TooLong {
        /// The request's length in bytes.
        length: usize,
        /// The client's `max_request_bytes`.
        limit: usize,
    },
    /// The coordinator could not be reached.
    #[error("cannot reach the coordinator at {address}: {source}")]
    Connect {
        /// The `host:port` of the coordinator.
        address: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Sending the request or reading the reply failed.
    #[error("coordinator exchange failed: {0}")]
    Exchange(#[from] FrameError),
    /// The reply is not one of the coordinator's responses.
    #[error("coordinator reply is not a valid response: {0}")]
    BadReply(String),
    /// No answer other than `wait` (or a transport failure) before the caller's timeout.
    #[error("{operation} timed out after {waited:?} ({attempts} requests)")]
    Timeout {
        /// The operation waited for (e.g. `lava_sync`).
        operation: String,
        /// How long was waited.
        waited: Duration,
        /// How many requests were sent.
        attempts: u64,
    },
    /// The coordinator answered `nack`.
    #[error("coordinator refused {operation} (nack)")]
    Nack {
        /// The refused operation.
        operation: String,
    },
    /// The coordinator answered with a response that does not fit the operation.
    #[error("unexpected reply to {operation}: {reply:?}")]
    Unexpected {
        /// The operation asked for.
        operation: String,
        /// The reply received.
        reply: Response,
    },
}

impl ClientError {
    /// Whether the failure was in the transport (worth retrying).
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Connect { .. } | ClientError::Exchange(_))
    }
}

/// How the client talks to the coordinator.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Host name or address of the coordinator.
    pub host: String,
    /// The coordinator's TCP port (`port`, 3079 by default).
    pub port: u16,
    /// Copied into every envelope, as LAVA does.
    pub blocksize: u32,
    /// Sleep between polls of a server that does not hold requests.
    pub poll_delay: Duration,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Bound on one exchange (write + reply), on top of any hold.
    pub io_timeout: Duration,
    /// Ask the server to hold `wait` answers (our extension).
    pub push: bool,
    /// Longest hold asked for in one request.
    pub max_hold: Duration,
    /// Largest request body sent (LAVA's client: 0xFFFE).
    pub max_request_bytes: usize,
    /// Longest sleep between attempts after connection failures.
    pub max_backoff: Duration,
    /// Shared secret to send, if the coordinator requires one.
    pub token: Option<String>,
}

impl ClientSettings {
    /// Settings from LAVA's configuration file contents, push enabled.
    pub fn from_config(config: &CoordinatorConfig) -> Self {
        ClientSettings {
            host: config.coordinator_hostname.clone(),
            port: config.port,
            blocksize: config.blocksize,
            poll_delay: Duration::from_secs(config.poll_delay.max(1)),
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(60),
            push: true,
            max_hold: Duration::from_secs(30),
            max_request_bytes: LAVA_CLIENT_MAX_REQUEST,
            max_backoff: Duration::from_secs(10),
            token: config.lava_rs_token.clone(),
        }
    }

    /// Settings for a coordinator at `address`, everything else default.
    pub fn for_address(address: SocketAddr) -> Self {
        let mut settings = Self::from_config(&CoordinatorConfig::default());
        settings.host = address.ip().to_string();
        settings.port = address.port();
        settings
    }
}

/// Counters kept by a client (shared by its clones).
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    transport_failures: AtomicU64,
    empty_replies: AtomicU64,
    waits: AtomicU64,
}

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Connections attempted.
    pub requests: u64,
    /// Connect, write or read failures (refused, reset, timed out, truncated).
    pub transport_failures: u64,
    /// Replies with no bytes at all (treated as `wait`).
    pub empty_replies: u64,
    /// `wait` answers received.
    pub waits: u64,
}

/// A coordinator client for one sub-job. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    settings: Arc<ClientSettings>,
    envelope: Arc<Envelope>,
    counters: Arc<Counters>,
}

impl CoordinatorClient {
    /// A client for the sub-job described by `identity` (group, job id, role,
    /// worker host name); the envelope copies the settings as LAVA does.
    pub fn new(settings: ClientSettings, identity: Identity) -> Self {
        let envelope = Envelope {
            group_name: identity.group_name,
            client_name: identity.client_name,
            role: identity.role,
            hostname: identity.hostname,
            coordinator_host: settings.host.clone(),
            port: settings.port,
            blocksize: settings.blocksize,
            poll_delay: settings.poll_delay.as_secs(),
        };
        CoordinatorClient {
            settings: Arc::new(settings),
            envelope: Arc::new(envelope),
            counters: Arc::default(),
        }
    }

    /// The envelope, to build requests with.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The settings in use.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Counters so far.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            transport_failures: self.counters.transport_failures.load(Ordering::Relaxed),
            empty_replies: self.counters.empty_replies.load(Ordering::Relaxed),
            waits: self.counters.waits.load(Ordering::Relaxed),
        }
    }

    /// One connection, one request, one reply. An empty reply is `wait`.
    pub async fn exchange(&self, request: &Request) -> Result<Response, ClientError> {
        let mut request = request.clone();
        if request.token.is_none() {
            request.token = self.settings.token.clone();
        }
        let body = codec::to_lava_json(&request);
        if body.len() > self.settings.max_request_bytes {
            return Err(ClientError::TooLong {
                length: body.len(),
                limit: self.settings.max_request_bytes,
            });
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let hold = Duration::from_millis(request.hold_ms.unwrap_or(0));
        let result = self
            .exchange_body(&body, self.settings.io_timeout + hold, hold.is_zero())
            .await;
        match &result {
            Err(error) if error.is_transport() => {
                self.counters
                    .transport_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) if response.is_wait() => {
                self.counters.waits.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        result
    }

    /// One request and its reply. A polled request half-closes after the
    /// frame, as LAVA's client does; a held one keeps its side open, so our
    /// coordinator reads end of file only when this client has gone and can
    /// stop holding (the reference daemon reads by length and does not care).
    async fn exchange_body(
        &self,
        body: &[u8],
        io_timeout: Duration,
        half_close: bool,
    ) -> Result<Response, ClientError> {
        let address = format!("{}:{}", self.settings.host, self.settings.port);
        let connect =
            tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(&address));
        let mut stream = match connect.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(ClientError::Connect { address, source }),
            Err(_) => {
                return Err(ClientError::Connect {
                    address,
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                });
            }
        };
        let _ = stream.set_nodelay(true);
        let frame = codec::frame_bytes(body);
        let write = async {
            stream.write_all(&frame).await?;
            if half_close {
                stream.shutdown().await?;
            }
            Ok(())
        };
        tokio::time::timeout(io_timeout, write)
            .await
            .map_err(|_| FrameError::Deadline(io_timeout))?
            .map_err(FrameError::Io)?;
        // A reply is small; the limit only guards against a hostile peer.
        let reply = codec::read_frame(&mut stream, 64 * 1024 * 1024, io_timeout).await?;
        let Some(reply) = reply else {
            self.counters.empty_replies.fetch_add(1, Ordering::Relaxed);
            return Ok(Response::WAIT);
        };
        serde_json::from_slice(&reply)
            .map_err(|_| ClientError::BadReply(String::from_utf8_lossy(&reply).into_owned()))
    }

    /// Ask `request` until the answer is not `wait` or `timeout` has passed.
    pub async fn poll(&self, request: Request, timeout: Duration) -> Result<Response, ClientError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let operation = request.request.clone().unwrap_or_default();
        let waitable = request.operation().is_some_and(|op| op.is_waitable());
        let mut attempts = 0u64;
        let mut failures = 0u32;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout {
                    operation,
                    waited: now - started,
                    attempts,
                });
            }
            let mut attempt = request.clone();
            if self.settings.push && waitable {
                let hold = (deadline - now).min(self.settings.max_hold);
                attempt.hold_ms = Some(hold.as_millis() as u64);
            }
            attempts += 1;
            // The deadline bounds the exchange in flight too: a coordinator that stops
            // answering without closing (frozen, partitioned, its runtime gone) must not
            // keep the caller past its timeout for the I/O timeout and hold on top.
            let Ok(result) = tokio::time::timeout_at(deadline, self.exchange(&attempt)).await
            else {
                return Err(ClientError::Timeout {
                    operation,
                    waited: started.elapsed(),
                    attempts,
                });
            };
            let pause = match result {
                Ok(Response::Wait { held: true }) => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok(Response::Wait { held: false }) => {
                    failures = 0;
                    self.settings.poll_delay
                }
                Ok(response) => return Ok(response),
                Err(error) if error.is_transport() => {
                    tracing::debug!(%error, "coordinator request failed, retrying");
                    failures += 1;
                    (self.settings.poll_delay + Duration::from_secs(2 * u64::from(failures - 1)))
                        .min(self.settings.max_backoff)
                }
                Err(error) => return Err(error),
            };
            let wake = (Instant::now() + pause).min(deadline);
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Registration barrier: `group_data` until the whole group is known.
    /// Returns the coordinator's client_name → role map.
    pub async fn register(
        &self,
        group_size: u64,
        timeout: Duration,
    ) -> Result<IndexMap<String, String>, ClientError> {
        match self
            .poll(self.envelope.group_data(group_size), timeout)
            .await?
        {
            Response::GroupData { roles } => Ok(roles),
            other => Err(unexpected("group_data", other)),
        }
    }

    /// `lava_send`: publish `payload` under `message_id`.
    pub async fn send(
        &self,
        message_id: &str,
        payload: Payload,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        match self
            .poll(self.envelope.lava_send(message_id, payload), timeout)
            .await?
        {
            Response::Ack { .. } => Ok(()),
            other => Err(unexpected("lava_send", other)),
        }
    }

    /// `lava_wait`: until anybody has sent `message_id`; sender → payload.
    pub async fn wait(
        &self,
        message_id: &str,
        timeout: Duration,
    ) -> Result<SenderPayloads, ClientError> {
        let response = self
            .poll(self.envelope.lava_wait(message_id), timeout)
            .await?;
        senders("lava_wait", response)
    }

    /// `lava_wait_all`: until every member (or the first member of
    /// `waitrole`) has sent `message_id`; sender → payload.
    pub async fn wait_all(
        &self,
        message_id: &str,
        waitrole: Option<&str>,
        timeout: Duration,
    ) -> Result<SenderPayloads, ClientError> {
        let request = self.envelope.lava_wait_all(message_id, waitrole);
        let response = self.poll(request, timeout).await?;
        senders("lava_wait_all", response)
    }

    /// `lava_sync`: barrier across the whole group.
    pub async fn sync(&self, message_id: &str, timeout: Duration) -> Result<(), ClientError> {
        match self
            .poll(self.envelope.lava_sync(message_id), timeout)
            .await?
        {
            Response::Ack { .. } => Ok(()),
            other => Err(unexpected("lava_sync", other)),
        }
    }

    /// Delayed start: wait until the first member of `expect_role` has sent
    /// `lava_start`.
    pub async fn wait_for_start(
        &self,
        expect_role: &str,
        timeout: Duration,
    ) -> Result<SenderPayloads, ClientError> {
        self.wait_all("lava_start", Some(expect_role), timeout)
            .await
    }

    /// `clear_group`: this member is done.
    pub async fn clear_group(&self, group_size: u64, timeout: Duration) -> Result<(), ClientError> {
        match self
            .poll(self.envelope.clear_group(group_size), timeout)
            .await?
        {
            Response::Ack { .. } => Ok(()),
            other => Err(unexpected("clear_group", other)),
        }
    }
}

/// Who a client is within its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The MultiNode `target_group`.
    pub group_name: String,
    /// The sub-job's job id (digits).
    pub client_name: String,
    /// This sub-job's role.
    pub role: String,
    /// The worker's host name.
    pub hostname: String,
}

fn unexpected(operation: &str, reply: Response) -> ClientError {
    match reply {
        Response::Nack => ClientError::Nack {
            operation: operation.to_string(),
        },
        reply => ClientError::Unexpected {
            operation: operation.to_string(),
            reply,
        },
    }
}

fn senders(operation: &str, response: Response) -> Result<SenderPayloads, ClientError> {
    match response {
        Response::Ack {
            message: Some(Delivered::Senders(senders)),
        } => Ok(senders),
        // LAVA's master accepts waits without a message.
        Response::Ack { message: None } => Ok(SenderPayloads::new()),
        other => Err(unexpected(operation, other)),
    }
}
