//! [`SshClient`]: one authenticated SSH connection to a device.
//!
//! [`SshClient::connect`] reads the identity file, resolves the host, opens the TCP
//! connection, runs the SSH handshake (checking the host key by the
//! [`HostKeyPolicy`]) and authenticates with the key, each step bounded by the
//! caller's deadline and `ConnectTimeout`. Each failure is an [`SshError`] naming
//! `host:port` and the step. The connection then serves commands
//! ([`SshClient::exec`]), file copies ([`SshClient::upload`], in `copy.rs`) and, once,
//! an interactive shell on a pseudo-terminal ([`SshClient::into_shell`], which hands
//! the connection over to the returned [`SshTransport`]).
//!
//! The private key is read into memory that is wiped when dropped, goes to the
//! protocol library, and is never formatted into a message.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, DisconnectReason};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Disconnect, Preferred, compression};
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::error::SshError;
use super::params::{HostKeyPolicy, SshParams};
use super::transport::SshTransport;

/// Output kept from one stream of a command.
const MAX_CAPTURE: usize = 1024 * 1024;

/// The pseudo-terminal asked for with a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyRequest {
    /// `TERM` on the device.
    pub term: String,
    /// Terminal width in characters.
    pub cols: u32,
    /// Terminal height in lines.
    pub rows: u32,
}

impl Default for PtyRequest {
    /// A `dumb` terminal (no colour or bracketed-paste escapes in the log) wide enough
    /// that the commands the dispatcher types are never wrapped or scrolled by the
    /// device's line editor.
    fn default() -> Self {
        PtyRequest {
            term: "dumb".into(),
            cols: 1024,
            rows: 24,
        }
    }
}

/// What a command run with [`SshClient::exec`] left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit status, when the server reported one.
    pub exit_status: Option<u32>,
    /// The signal that ended the command, when one did.
    pub exit_signal: Option<String>,
    /// Standard output (the first MiB).
    pub stdout: Vec<u8>,
    /// Standard error (the first MiB).
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }

    /// The exit status or signal, and standard error, for an error message.
    pub fn describe_failure(&self) -> String {
        let status = match (&self.exit_status, &self.exit_signal) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit status".to_string(),
        };
        let stderr = String::from_utf8_lossy(&self.stderr);
        let stderr = stderr.trim();
        if stderr.is_empty() {
            status
        } else {
            format!("{status}: {stderr}")
        }
    }
}

/// An authenticated SSH connection.
pub struct SshClient {
    handle: client::Handle<SessionEvents>,
    params: SshParams,
    shared: Arc<SessionState>,
    server_key: String,
}

impl std::fmt::Debug for SshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshClient")
            .field("to", &self.params.describe())
            .field("server_key", &self.server_key)
            .finish_non_exhaustive()
    }
}

impl SshClient {
    /// Connects and authenticates, every step finished by `deadline` (and by the
    /// parameters' `connect_timeout` until the handshake is done).
    pub async fn connect(params: &SshParams, deadline: Instant) -> Result<Self, SshError> {
        let address = params.address();
        let key = load_identity(&params.identity_file).await?;
        let started = Instant::now();
        let connect_deadline = params
            .connect_timeout
            .map_or(deadline, |limit| (started + limit).min(deadline));
        let timed_out = |step| SshError::TimedOut {
            address: address.clone(),
            step,
            waited: started.elapsed(),
        };

        let lookup = tokio::net::lookup_host((params.host.as_str(), params.port));
        let addresses: Vec<SocketAddr> = match timeout_at(connect_deadline, lookup).await {
            Err(_) => return Err(timed_out("resolving the host name")),
            Ok(Err(e)) => {
                return Err(SshError::Resolve {
                    host: params.host.clone(),
                    reason: e.to_string(),
                });
            }
            Ok(Ok(found)) => found.collect(),
        };
        let stream = match timeout_at(connect_deadline, connect_tcp(&addresses)).await {
            Err(_) => return Err(timed_out("opening the TCP connection")),
            Ok(Err(e)) => return Err(tcp_error(&address, e)),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);

        let shared = Arc::new(SessionState::default());
        let events = SessionEvents {
            policy: params.host_key_policy.clone(),
            host: params.host.clone(),
            port: params.port,
            shared: shared.clone(),
        };
        let config = Arc::new(client_config(params));
        let handshake = client::connect_stream(config, stream, events);
        let mut handle = match timeout_at(connect_deadline, handshake).await {
            Err(_) => return Err(timed_out("SSH handshake")),
            Ok(Err(e)) => return Err(handshake_error(&address, &shared, e)),
            Ok(Ok(handle)) => handle,
        };
        let server_key = shared.server_key().unwrap_or_default();

        let hash = if key.algorithm().is_rsa() {
            match timeout_at(deadline, handle.best_supported_rsa_hash()).await {
                Err(_) => return Err(timed_out("authentication")),
                // No answer from the server: rsa-sha2-256, which every current server accepts.
                Ok(Ok(None)) | Ok(Err(_)) => Some(HashAlg::Sha256),
                Ok(Ok(Some(hash))) => hash,
            }
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(key, hash);
        let auth = handle.authenticate_publickey(params.user.clone(), key);
        match timeout_at(deadline, auth).await {
            Err(_) => return Err(timed_out("authentication")),
            Ok(Err(e)) => {
                return Err(SshError::Disconnected {
                    address,
                    during: "during authentication".into(),
                    reason: shared.lost_reason().unwrap_or_else(|| e.to_string()),
                });
            }
            Ok(Ok(AuthResult::Success)) => {}
            Ok(Ok(AuthResult::Failure {
                remaining_methods, ..
            })) => {
                let accepted: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
                return Err(SshError::AuthFailed {
                    user: params.user.clone(),
                    address,
                    identity_file: params.identity_file.clone(),
                    accepted: if accepted.is_empty() {
                        "nothing".into()
                    } else {
                        accepted.join(", ")
                    },
                });
            }
        }
        Ok(SshClient {
            handle,
            params: params.clone(),
            shared,
            server_key,
        })
    }

    /// Where this client is connected.
    pub fn params(&self) -> &SshParams {
        &self.params
    }

    /// The server's host key: algorithm and SHA256 fingerprint.
    pub fn server_key(&self) -> &str {
        &self.server_key
    }

    /// Runs `command` (through the user's shell on the device, as `ssh host command`
    /// does) with no input and collects its output.
    pub async fn exec(&self, command: &str, deadline: Instant) -> Result<ExecOutput, SshError> {
        self.run_channel(command, None::<tokio::io::Empty>, deadline)
            .await
    }

    /// Opens a shell on a pseudo-terminal. The connection now belongs to the
    /// transport: it ends when the transport is closed or dropped.
    pub async fn into_shell(
        self,
        pty: &PtyRequest,
        deadline: Instant,
    ) -> Result<SshTransport, SshError> {
        let mut channel = self.open_channel(deadline).await?;
        let mut early_output = Vec::new();
        channel
            .request_pty(true, &pty.term, pty.cols, pty.rows, 0, 0, &[])
            .await
            .map_err(|e| self.lost("asking for a pseudo-terminal", e))?;
        self.await_reply(
            &mut channel,
            &mut early_output,
            deadline,
            "a pseudo-terminal",
        )
        .await?;
        channel
            .request_shell(true)
            .await
            .map_err(|e| self.lost("starting a shell", e))?;
        self.await_reply(&mut channel, &mut early_output, deadline, "a shell")
            .await?;
        Ok(SshTransport::new(
            channel,
            self.handle,
            early_output,
            &self.params,
            self.shared,
        ))
    }

    /// Ends the connection politely (bounded by `grace`).
    pub async fn disconnect(self, grace: Duration) {
        let goodbye = self
            .handle
            .disconnect(Disconnect::ByApplication, "lava-rs is done", "en");
        let _ = tokio::time::timeout(grace, goodbye).await;
    }

    /// Runs `command` with `stdin` sent as its input (then end of file), collecting
    /// its output until the server closes the channel.
    pub(super) async fn run_channel<R: AsyncRead + Unpin>(
        &self,
        command: &str,
        stdin: Option<R>,
        deadline: Instant,
    ) -> Result<ExecOutput, SshError> {
        let started = Instant::now();
        let channel = self.open_channel(deadline).await?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.lost("starting a command", e))?;
        let (mut reader, writer) = channel.split();
        let send = async {
            if let Some(input) = stdin {
                writer.data(input).await?;
            }
            writer.eof().await
        };
        let receive = async {
            let mut output = ExecOutput::default();
            loop {
                match reader.wait().await {
                    Some(ChannelMsg::Data { data }) => capture(&mut output.stdout, &data),
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        capture(&mut output.stderr, &data)
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        output.exit_status = Some(exit_status)
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        output.exit_signal = Some(format!("{signal_name:?}"))
                    }
                    Some(ChannelMsg::Failure) => {
                        return Err(SshError::Refusal {
                            address: self.params.address(),
                            what: format!("to run {command:?}"),
                        });
                    }
                    Some(ChannelMsg::Close) => return Ok(output),
                    Some(_) => {}
                    None => return Err(self.lost_now("while a command ran")),
                }
            }
        };
        let both = async {
            tokio::pin!(send);
            tokio::pin!(receive);
            let mut sending = true;
            loop {
                tokio::select! {
                    sent = &mut send, if sending => {
                        sending = false;
                        if let Err(e) = sent {
                            // The command stopped reading: its exit status tells why.
                            tracing::debug!("ssh: sending input stopped: {e}");
                        }
                    }
                    received = &mut receive => return received,
                }
            }
        };
        match timeout_at(deadline, both).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out("running a command", started)),
        }
    }

    async fn open_channel(&self, deadline: Instant) -> Result<Channel<client::Msg>, SshError> {
        let started = Instant::now();
        match timeout_at(deadline, self.handle.channel_open_session()).await {
            Err(_) => Err(self.timed_out("opening a channel", started)),
            Ok(Err(russh::Error::ChannelOpenFailure(reason))) => Err(SshError::Refusal {
                address: self.params.address(),
                what: format!("a session channel ({reason:?})"),
            }),
            Ok(Err(e)) => Err(self.lost("opening a channel", e)),
            Ok(Ok(channel)) => Ok(channel),
        }
    }

    /// Waits for the server's answer to a request sent with `want_reply`; output that
    /// arrives first is kept in `early_output`.
    async fn await_reply(
        &self,
        channel: &mut Channel<client::Msg>,
        early_output: &mut Vec<u8>,
        deadline: Instant,
        what: &str,
    ) -> Result<(), SshError> {
        let started = Instant::now();
        loop {
            let message = timeout_at(deadline, channel.wait()).await.map_err(|_| {
                self.timed_out("waiting for a channel request to be granted", started)
            })?;
            match message {
                Some(ChannelMsg::Success) => return Ok(()),
                Some(ChannelMsg::Failure) => {
                    return Err(SshError::Refusal {
                        address: self.params.address(),
                        what: what.to_string(),
                    });
                }
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    early_output.extend_from_slice(&data)
                }
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) => {
                    return Err(SshError::Disconnected {
                        address: self.params.address(),
                        during: format!("while asking for {what}"),
                        reason: "the server closed the channel".into(),
                    });
                }
                Some(_) => {}
                None => return Err(self.lost_now(&format!("while asking for {what}"))),
            }
        }
    }

    fn timed_out(&self, step: &'static str, started: Instant) -> SshError {
        SshError::TimedOut {
            address: self.params.address(),
            step,
            waited: started.elapsed(),
        }
    }

    fn lost(&self, during: &str, e: russh::Error) -> SshError {
        SshError::Disconnected {
            address: self.params.address(),
            during: format!("while {during}"),
            reason: self.shared.lost_reason().unwrap_or_else(|| e.to_string()),
        }
    }

    fn lost_now(&self, during: &str) -> SshError {
        SshError::Disconnected {
            address: self.params.address(),
            during: during.to_string(),
            reason: self
                .shared
                .lost_reason()
                .unwrap_or_else(|| "the connection ended".into()),
        }
    }
}

/// What the protocol task tells the client: the host key seen, why it was refused,
/// why the connection ended.
#[derive(Debug, Default)]
pub(super) struct SessionState {
    server_key: Mutex<Option<String>>,
    host_key_refusal: Mutex<Option<String>>,
    lost: Mutex<Option<String>>,
}

impl SessionState {
    fn set(slot: &Mutex<Option<String>>, value: String) {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    }

    fn get(slot: &Mutex<Option<String>>) -> Option<String> {
        slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn server_key(&self) -> Option<String> {
        Self::get(&self.server_key)
    }

    /// Why the connection ended, once it has.
    pub(super) fn lost_reason(&self) -> Option<String> {
        Self::get(&self.lost)
    }
}

/// The protocol task's callbacks.
pub(super) struct SessionEvents {
    policy: HostKeyPolicy,
    host: String,
    port: u16,
    shared: Arc<SessionState>,
}

impl client::Handler for SessionEvents {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key: PublicKey = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        let description = format!(
            "{} {}",
            key.algorithm().as_str(),
            key.fingerprint(HashAlg::Sha256)
        );
        SessionState::set(&self.shared.server_key, description.clone());
        let refusal = match &self.policy {
            HostKeyPolicy::AcceptAny => None,
            HostKeyPolicy::KnownHosts(file) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, &key, file) {
                    Ok(true) => None,
                    Ok(false) => Some(format!(
                        "{description} is not in {} (StrictHostKeyChecking=yes)",
                        file.display()
                    )),
                    Err(russh::keys::Error::KeyChanged { line }) => Some(format!(
                        "{description} differs from the key on line {line} of {}",
                        file.display()
                    )),
                    Err(e) => Some(format!("cannot read {}: {e}", file.display())),
                }
            }
        };
        match refusal {
            None => Ok(true),
            Some(reason) => {
                SessionState::set(&self.shared.host_key_refusal, reason);
                Ok(false)
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                let message = if info.message.is_empty() {
                    format!("the server disconnected ({:?})", info.reason_code)
                } else {
                    format!(
                        "the server disconnected ({:?}: {})",
                        info.reason_code, info.message
                    )
                };
                SessionState::set(&self.shared.lost, message);
                Ok(())
            }
            DisconnectReason::Error(e) => {
                SessionState::set(&self.shared.lost, e.to_string());
                Err(e)
            }
        }
    }
}

fn client_config(params: &SshParams) -> client::Config {
    let compression: &'static [compression::Name] = if params.compression {
        &[
            compression::ZLIB_LEGACY,
            compression::ZLIB,
            compression::NONE,
        ]
    } else {
        &[compression::NONE]
    };
    client::Config {
        preferred: Preferred {
            compression: compression.into(),
            ..Preferred::default()
        },
        keepalive_interval: params.keepalive_interval,
        keepalive_max: params.keepalive_max,
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    }
}

/// Reads the identity file into memory wiped on drop and decodes it. Errors name the
/// file and describe the problem in fixed words: no text from the file reaches them.
async fn load_identity(path: &Path) -> Result<Arc<PrivateKey>, SshError> {
    let unusable = |reason: String| SshError::IdentityFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = zeroize::Zeroizing::new(
        tokio::fs::read(path)
            .await
            .map_err(|e| unusable(e.to_string()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| unusable("not a text (OpenSSH or PEM) private key file".into()))?;
    let key = russh::keys::decode_secret_key(text, None).map_err(|e| {
        unusable(
            match e {
                russh::keys::Error::KeyIsEncrypted => {
                    "the key is protected by a passphrase (LAVA uses keys without one)"
                }
                russh::keys::Error::UnsupportedKeyType { .. } => "unsupported key type",
                russh::keys::Error::KeyIsCorrupt => "the key is corrupt",
                russh::keys::Error::IO(_) => "the key cannot be read",
                _ => "not a private key in OpenSSH or PEM format",
            }
            .to_string(),
        )
    })?;
    Ok(Arc::new(key))
}

async fn connect_tcp(addresses: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "the host name has no address",
    );
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn tcp_error(address: &str, e: std::io::Error) -> SshError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => SshError::Refused {
            address: address.to_string(),
        },
        _ => SshError::Unreachable {
            address: address.to_string(),
            reason: e.to_string(),
        },
    }
}

fn handshake_error(address: &str, shared: &SessionState, e: russh::Error) -> SshError {
    if let Some(reason) = SessionState::get(&shared.host_key_refusal) {
        return SshError::HostKey {
            address: address.to_string(),
            reason,
        };
    }
    SshError::Handshake {
        address: address.to_string(),
        reason: shared.lost_reason().unwrap_or_else(|| e.to_string()),
    }
}

fn capture(into: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_CAPTURE.saturating_sub(into.len());
    into.extend_from_slice(&data[..data.len().min(room)]);
}
