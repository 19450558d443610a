//! The dispatcher-side MultiNode protocol object of one node job
//! (multinode.md §4–§6, coordinator-protocol.md §8).
//!
//! Life cycle, as in LAVA's dispatcher:
//!
//! 1. [`ProtocolParams::from_job_protocols`] reads the job's
//!    `protocols.lava-multinode` block; [`ProtocolParams::validate`] gives
//!    LAVA's validation errors.
//! 2. [`MultinodeProtocol::set_up`] before the first action: registration
//!    (`group_data` with `group_size`, system timeout) and, for a
//!    delayed-start role, [`MultinodeProtocol::delayed_start`]
//!    (`lava_wait_all` on `lava_start` for `expect_role`).
//! 3. During the job: [`MultinodeProtocol::call`] /
//!    [`MultinodeProtocol::calls_for_action`] for `protocols:` blocks inside
//!    actions, and the test-shell operations used by [`super::hook`].
//! 4. [`MultinodeProtocol::finalise`] in the job's finalize step:
//!    `clear_group`, sent **exactly once** per job (LAVA's client can send it
//!    twice after a timeout, which tears the group down early).
//!
//! Timeouts: the system timeout (90 s, or the role's `timeout` for a
//! delayed-start role) bounds registration, the start wait and the clear;
//! the poll timeout (30 s at first) bounds API calls and is changed,
//! for that call and all later ones, by any call carrying `timeout`. When a
//! bound is hit the call fails with [`MultinodeError::Timeout`], which the
//! dispatcher reports as LAVA's `MultinodeProtocolTimeoutError`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value};

use lava_multinode::client::{ClientError, ClientSettings, CoordinatorClient, Identity};
use lava_multinode::config::{ConfigError, CoordinatorConfig};
use lava_multinode::split::PROTOCOL_NAME;
use lava_multinode::wire::{Delivered, MessageId, Payload, Response, SenderPayloads};

/// LAVA's `LAVA_MULTINODE_SYSTEM_TIMEOUT`.
pub const SYSTEM_TIMEOUT: Duration = Duration::from_secs(90);
/// The poll timeout before any call sets one (LAVA's default action timeout).
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// The messageID of the delayed-start signal.
pub const LAVA_START: &str = "lava_start";

/// Which of LAVA's exception classes an error corresponds to; the
/// dispatcher maps it onto its own error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `InfrastructureError`.
    Infrastructure,
    /// `ConfigurationError`.
    Configuration,
    /// `JobError`.
    Job,
    /// `TestError`.
    Test,
    /// `MultinodeProtocolTimeoutError` (`ErrorKind::MultinodeTimeout`).
    MultinodeTimeout,
}

/// Errors of the MultiNode protocol.
#[derive(Debug, thiserror::Error)]
pub enum MultinodeError {
    /// The coordinator configuration file is absent (InfrastructureError).
    #[error("Missing coordinator configuration")]
    MissingConfiguration(#[source] ConfigError),
    /// The configuration file is not JSON (ConfigurationError).
    #[error("Invalid JSON settings for lava-multinode: {0}")]
    InvalidConfiguration(#[source] ConfigError),
    /// The job's protocol block is unusable; `path` names the key.
    #[error("Invalid lava-multinode parameters: {path}: {message}")]
    Parameters {
        /// The key path in the protocol block.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A coordinator call did not complete in time (MultinodeProtocolTimeoutError).
    #[error("protocol lava-multinode timed out: {operation} after {waited:?}")]
    Timeout {
        /// The coordinator call that timed out (e.g. `lava-sync`).
        operation: String,
        /// How long it waited.
        waited: Duration,
    },
    /// A bad API call or an unusable reply (JobError).
    #[error("{0}")]
    Job(String),
    /// A refused or unsupported API call (TestError).
    #[error("{0}")]
    Test(String),
    /// `set_up` has not run (the dispatcher's bug, not the job's).
    #[error("lava-multinode protocol used before set_up")]
    NotSetUp,
}

impl MultinodeError {
    /// LAVA's exception class for this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            MultinodeError::MissingConfiguration(_) | MultinodeError::NotSetUp => {
                ErrorClass::Infrastructure
            }
            MultinodeError::InvalidConfiguration(_) => ErrorClass::Configuration,
            MultinodeError::Parameters { .. } | MultinodeError::Job(_) => ErrorClass::Job,
            MultinodeError::Test(_) => ErrorClass::Test,
            MultinodeError::Timeout { .. } => ErrorClass::MultinodeTimeout,
        }
    }

    /// Whether this is the MultiNode timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, MultinodeError::Timeout { .. })
    }

    fn parameters(path: impl Into<String>, message: impl Into<String>) -> Self {
        MultinodeError::Parameters {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Parse a LAVA timeout map (`{days, hours, minutes, seconds}`) like
/// `Timeout.parse`: whole seconds, a zero total meaning the 30 s default;
/// anything but a map is "Invalid timeout data".
pub fn parse_timeout_map(value: &Value) -> Result<Duration, String> {
    let map = value
        .as_mapping()
        .ok_or_else(|| "Invalid timeout data".to_string())?;
    let mut total = 0f64;
    for (unit, factor) in [
        ("days", 86400.0),
        ("hours", 3600.0),
        ("minutes", 60.0),
        ("seconds", 1.0),
    ] {
        if let Some(amount) = map.get(unit) {
            total += amount
                .as_f64()
                .ok_or_else(|| format!("Invalid timeout data: {unit} is not a number"))?
                * factor;
        }
    }
    if total <= 0.0 {
        return Ok(DEFAULT_POLL_TIMEOUT);
    }
    Ok(Duration::from_secs(total as u64))
}

/// The job's `protocols.lava-multinode` block, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolParams {
    /// The group's id (coordinator `group_name`).
    pub target_group: String,
    /// This node's role.
    pub role: String,
    /// Number of nodes in the group (all roles, connections included).
    pub group_size: u64,
    /// Index of this node in the group, if given.
    pub sub_id: Option<u64>,
    /// Job id → role of the device-backed nodes, injected by the scheduler.
    pub roles: IndexMap<String, String>,
    /// The block's `timeout` (group-wide, or the role's).
    pub timeout: Option<Duration>,
    /// `request` (only `lava-start` means anything).
    pub request: Option<String>,
    /// `expect_role` (who gives the start signal).
    pub expect_role: Option<String>,
    /// `essential` (used by the server only).
    pub essential: bool,
    /// The role's `environment`, exported by the overlay.
    pub environment: Option<Value>,
    /// The whole block as given.
    pub raw: Mapping,
}

impl ProtocolParams {
    /// Whether a job with this top-level `protocols` map gets the MultiNode
    /// protocol (LAVA's `accepts`: the block has `target_group`).
    pub fn accepts(protocols: &Mapping) -> bool {
        protocols
            .get(PROTOCOL_NAME)
            .and_then(|b| b.get("target_group"))
            .is_some()
    }

    /// From the job's top-level `protocols` map.
    pub fn from_job_protocols(protocols: &Mapping) -> Result<Self, MultinodeError> {
        let block = protocols.get(PROTOCOL_NAME).ok_or_else(|| {
            MultinodeError::parameters("protocols.lava-multinode", "missing protocol block")
        })?;
        Self::from_block(block)
    }

    /// From the `protocols.lava-multinode` block itself.
    pub fn from_block(block: &Value) -> Result<Self, MultinodeError> {
        const P: &str = "protocols.lava-multinode";
        let map = block
            .as_mapping()
            .ok_or_else(|| MultinodeError::parameters(P, "expected a dictionary"))?;
        let text = |key: &str, required: bool| -> Result<Option<String>, MultinodeError> {
            match map.get(key) {
                None | Some(Value::Null) if !required => Ok(None),
                None | Some(Value::Null) => Err(MultinodeError::parameters(
                    format!("{P}.{key}"),
                    "required key not provided",
                )),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(MultinodeError::parameters(
                    format!("{P}.{key}"),
                    "expected a string",
                )),
            }
        };
        let target_group = text("target_group", true)?.unwrap_or_default();
        let role = text("role", true)?.unwrap_or_default();
        let group_size = map
            .get("group_size")
            .ok_or_else(|| {
                MultinodeError::parameters(format!("{P}.group_size"), "required key not provided")
            })?
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                MultinodeError::parameters(format!("{P}.group_size"), "expected an integer > 0")
            })?;
        let sub_id = match map.get("sub_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                MultinodeError::parameters(format!("{P}.sub_id"), "expected an integer")
            })?),
        };
        let mut roles = IndexMap::new();
        match map.get("roles") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (job, job_role) in m {
                    let job = match job {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(MultinodeError::parameters(
                                format!("{P}.roles"),
                                "job ids must be numbers or strings",
                            ));
                        }
                    };
                    // The submitted form (`roles: {server: {device_type…}}`) is
                    // not a group map; only job id → role strings are kept.
                    if let Some(r) = job_role.as_str() {
                        roles.insert(job, r.to_string());
                    }
                }
            }
            Some(_) => {
                return Err(MultinodeError::parameters(
                    format!("{P}.roles"),
                    "expected a dictionary",
                ));
            }
        }
        let timeout = match map.get("timeout") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                parse_timeout_map(v)
                    .map_err(|m| MultinodeError::parameters(format!("{P}.timeout"), m))?,
            ),
        };
        Ok(ProtocolParams {
            target_group,
            role,
            group_size,
            sub_id,
            roles,
            timeout,
            request: text("request", false)?,
            expect_role: text("expect_role", false)?,
            essential: map
                .get("essential")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            environment: map.get("environment").cloned(),
            raw: map.clone(),
        })
    }

    /// LAVA's validation of the block (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.request.as_deref() == Some("lava-start")
            && self.expect_role.as_deref() == Some(self.role.as_str())
        {
            errors.push("expect_role must not match the role declaring lava_start".to_string());
        }
        errors
    }

    /// The role to wait for before starting, for a delayed-start node
    /// (`request: lava-start` with an `expect_role` other than its own role).
    pub fn delayed_start_role(&self) -> Option<&str> {
        match (&self.request, &self.expect_role) {
            (Some(request), Some(expect)) if request == "lava-start" && *expect != self.role => {
                Some(expect)
            }
            _ => None,
        }
    }

    /// Bound on registration, delayed start and clear: 90 s, or the role's
    /// `timeout` for a delayed-start node.
    pub fn system_timeout(&self) -> Duration {
        match (self.delayed_start_role(), self.timeout) {
            (Some(_), Some(timeout)) => timeout,
            _ => SYSTEM_TIMEOUT,
        }
    }

    /// What the overlay bakes into `lava-role` and `lava-group`.
    pub fn overlay_values(&self) -> lava_shell::MultinodeValues {
        lava_shell::MultinodeValues {
            role: self.role.clone(),
            roles: self
                .roles
                .iter()
                .map(|(job, role)| (job.clone(), role.clone()))
                .collect(),
        }
    }
}

/// What a protocol call returned: LAVA's API layer hands back the reply's
/// `message` when present, else the response word.
#[derive(Debug, Clone, PartialEq)]
pub enum CallReply {
    /// `"ack"` or `"nack"` (sends, clears, refusals).
    Word(&'static str),
    /// Sender job id → payload (`lava_wait`, `lava_wait_all`).
    Senders(SenderPayloads),
    /// A string (`lava_sync`'s messageID).
    Text(String),
    /// Anything else the coordinator put in `message`.
    Other(Json),
}

impl CallReply {
    /// Whether the coordinator refused the call.
    pub fn is_nack(&self) -> bool {
        *self == CallReply::Word("nack")
    }
}

/// Mutable state of a protocol object.
#[derive(Debug)]
struct State {
    /// Rebuilt when a call changes `poll_delay`.
    client: CoordinatorClient,
    poll_timeout: Duration,
    system_timeout: Duration,
    set_up_started: bool,
    cleared: bool,
    group: IndexMap<String, String>,
}

#[derive(Debug)]
struct Inner {
    params: ProtocolParams,
    job_id: String,
    state: Mutex<State>,
}

/// The MultiNode protocol object of one node job. Cheap to clone; clones
/// share state (the hook holds one).
#[derive(Debug, Clone)]
pub struct MultinodeProtocol {
    inner: Arc<Inner>,
}

impl MultinodeProtocol {
    /// A protocol object for job `job_id` on worker `hostname`, talking to
    /// the coordinator described by `settings`.
    pub fn new(
        params: ProtocolParams,
        job_id: &str,
        hostname: &str,
        settings: ClientSettings,
    ) -> Self {
        let client = CoordinatorClient::new(
            settings,
            Identity {
                group_name: params.target_group.clone(),
                client_name: job_id.to_string(),
                role: params.role.clone(),
                hostname: hostname.to_string(),
            },
        );
        let system_timeout = params.system_timeout();
        MultinodeProtocol {
            inner: Arc::new(Inner {
                params,
                job_id: job_id.to_string(),
                state: Mutex::new(State {
                    client,
                    poll_timeout: DEFAULT_POLL_TIMEOUT,
                    system_timeout,
                    set_up_started: false,
                    cleared: false,
                    group: IndexMap::new(),
                }),
            }),
        }
    }

    /// Read the coordinator configuration (LAVA: `/etc/lava-coordinator/
    /// lava-coordinator.conf`) into client settings; a missing file is an
    /// infrastructure error, a file that is not JSON a configuration error.
    pub fn load_settings(path: &std::path::Path) -> Result<ClientSettings, MultinodeError> {
        match CoordinatorConfig::from_file(path) {
            Ok(config) => Ok(ClientSettings::from_config(&config)),
            Err(error @ ConfigError::Missing { .. }) => {
                Err(MultinodeError::MissingConfiguration(error))
            }
            Err(error @ ConfigError::Invalid { .. }) => {
                Err(MultinodeError::InvalidConfiguration(error))
            }
        }
    }

    /// The block this object was built from.
    pub fn params(&self) -> &ProtocolParams {
        &self.inner.params
    }

    /// This node's job id (the coordinator `client_name`).
    pub fn job_id(&self) -> &str {
        &self.inner.job_id
    }

    /// The protocol's name.
    pub fn name(&self) -> &'static str {
        PROTOCOL_NAME
    }

    /// The coordinator client in use.
    pub fn client(&self) -> CoordinatorClient {
        self.state().client.clone()
    }

    /// The current poll timeout (API calls).
    pub fn poll_timeout(&self) -> Duration {
        self.state().poll_timeout
    }

    /// The current system timeout (registration, start, clear).
    pub fn system_timeout(&self) -> Duration {
        self.state().system_timeout
    }

    /// Override the system timeout (tests; a dispatcher setting).
    pub fn set_system_timeout(&self, timeout: Duration) {
        self.state().system_timeout = timeout;
    }

    /// Override the poll timeout (as a call with `timeout` would).
    pub fn set_poll_timeout(&self, timeout: Duration) {
        self.state().poll_timeout = timeout;
    }

    /// The coordinator's job id → role map, once registered.
    pub fn group(&self) -> IndexMap<String, String> {
        self.state().group.clone()
    }

    /// Whether `clear_group` has been sent.
    pub fn is_cleared(&self) -> bool {
        self.state().cleared
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Before the first action: register and wait for the whole group, then
    /// wait for the start signal if this node's start is delayed. A failure
    /// (timeout) fails the job before any action ran; `clear_group` has then
    /// already been sent.
    pub async fn set_up(&self) -> Result<(), MultinodeError> {
        self.register().await?;
        self.delayed_start().await?;
        Ok(())
    }

    /// Registration barrier: `group_data` with `group_size` until every
    /// node has registered. Returns the coordinator's job id → role map.
    pub async fn register(&self) -> Result<IndexMap<String, String>, MultinodeError> {
        let (client, timeout) = {
            let mut state = self.state();
            state.set_up_started = true;
            (state.client.clone(), state.system_timeout)
        };
        tracing::debug!(group = %self.inner.params.target_group, "Initialising group");
        let result = client.register(self.inner.params.group_size, timeout).await;
        let roles = self.finish("group_data", result).await?;
        self.state().group = roles.clone();
        Ok(roles)
    }

    /// Delayed start: for a node with `request: lava-start` and another
    /// `expect_role`, wait (system timeout) until the first node of that
    /// role has sent `lava_start`. Returns the start message's senders →
    /// payloads (empty when the start is not delayed).
    pub async fn delayed_start(&self) -> Result<SenderPayloads, MultinodeError> {
        let Some(expect_role) = self.inner.params.delayed_start_role() else {
            tracing::debug!("lava-multinode protocol initialised");
            return Ok(SenderPayloads::new());
        };
        let (client, timeout) = {
            let state = self.state();
            (state.client.clone(), state.system_timeout)
        };
        tracing::info!(
            "lava-multinode protocol initialised - start is delayed by up to {} seconds",
            timeout.as_secs()
        );
        let result = client.wait_for_start(expect_role, timeout).await;
        match result {
            Err(ClientError::Nack { .. }) => Err(MultinodeError::Job(format!(
                "coordinator refused the lava_start wait for role '{expect_role}'"
            ))),
            other => self.finish("lava_wait_all", other).await,
        }
    }

    /// The job's finalize step: `clear_group` with `group_size` (system
    /// timeout), exactly once, and only if set-up had started. LAVA ignores
    /// the result; the error is returned for logging.
    pub async fn finalise(&self) -> Result<(), MultinodeError> {
        let (client, timeout) = {
            let mut state = self.state();
            if !state.set_up_started || state.cleared {
                return Ok(());
            }
            state.cleared = true;
            (state.client.clone(), state.system_timeout)
        };
        let result = client
            .clear_group(self.inner.params.group_size, timeout)
            .await;
        tracing::debug!("lava-multinode protocol finalised.");
        result.map_err(|e| map_client_error("clear_group", e))
    }

    /// Turn a client result into ours; on a timeout or an unusable reply,
    /// leave the group first (as LAVA does), once.
    async fn finish<T>(
        &self,
        operation: &str,
        result: Result<T, ClientError>,
    ) -> Result<T, MultinodeError> {
        match result {
            Ok(value) => Ok(value),
            Err(error) => {
                let leave = matches!(
                    error,
                    ClientError::Timeout { .. } | ClientError::BadReply(_)
                );
                if leave && let Err(clear) = self.finalise().await {
                    tracing::warn!(%clear, "clear_group after {operation} failed");
                }
                Err(map_client_error(operation, error))
            }
        }
    }

    /// One API call, LAVA's `protocol(dict)`: `request` (`lava-send`,
    /// `lava-wait`, `lava-wait-all`, `lava-sync`, and our `lava-start`),
    /// `messageID`, optional `message`, `role` (wait-all), `timeout` (map or
    /// seconds; sticks for later calls), `poll_delay` (seconds; sticks).
    pub async fn call(&self, call: &Mapping) -> Result<CallReply, MultinodeError> {
        let request = call
            .get("request")
            .ok_or_else(|| {
                MultinodeError::Job("Bad API call over protocol - missing request".into())
            })?
            .as_str()
            .ok_or_else(|| {
                MultinodeError::Job("Bad API call over protocol - missing request".into())
            })?
            .replace('-', "_");
        if request == "aggregate" {
            return Err(MultinodeError::Job(
                "Pipeline submission has not been implemented.".into(),
            ));
        }
        if let Some(delay) = call.get("poll_delay") {
            let seconds = delay
                .as_u64()
                .or_else(|| delay.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| MultinodeError::Job("Invalid poll_delay request".into()))?;
            self.set_poll_delay(Duration::from_secs(seconds));
        }
        if let Some(timeout) = call.get("timeout") {
            let duration = match timeout {
                Value::Mapping(_) => parse_timeout_map(timeout).map_err(MultinodeError::Job)?,
                Value::Number(n) => n
                    .as_f64()
                    .filter(|f| *f >= 0.0)
                    .map(|f| Duration::from_secs(f as u64))
                    .ok_or_else(|| MultinodeError::Job("Invalid timeout request".into()))?,
                _ => return Err(MultinodeError::Job("Invalid timeout request".into())),
            };
            tracing::debug!("Setting poll timeout of {} seconds", duration.as_secs());
            self.set_poll_timeout(duration);
        }
        let message_id = match call.get("messageID") {
            Some(Value::String(id)) => MessageId::from(id),
            // Sent as a number, as LAVA passes the YAML value through.
            Some(Value::Number(n)) => MessageId::number(n.to_string()),
            // Our `lava-start` defaults to the reserved ID.
            None if request == "lava_start" => MessageId::from(LAVA_START),
            _ => return Err(MultinodeError::Job("Missing messageID".into())),
        };
        let message = call.get("message").filter(|m| !m.is_null());
        match request.as_str() {
            "lava_send" | "lava_start" => {
                let id = if request == "lava_start" {
                    MessageId::from(LAVA_START)
                } else {
                    message_id.clone()
                };
                let payload = match message {
                    None => Payload::empty(),
                    Some(Value::Mapping(m)) => Payload::Map(
                        m.iter()
                            .map(|(k, v)| (key_string(k), yaml_to_json(v)))
                            .collect(),
                    ),
                    // LAVA sends a non-map message `v` as `{v: null}`.
                    Some(other) => Payload::Map(IndexMap::from([(key_string(other), Json::Null)])),
                };
                self.send(id, payload).await
            }
            "lava_wait" => self.wait(&message_id).await,
            "lava_wait_all" => {
                let role = call.get("role").and_then(Value::as_str);
                self.wait_all(&message_id, role).await
            }
            "lava_sync" => self.sync(&message_id).await,
            other => Err(MultinodeError::Test(format!(
                "Unsupported api call: {other}"
            ))),
        }
    }

    fn set_poll_delay(&self, delay: Duration) {
        let mut state = self.state();
        let mut settings = state.client.settings().clone();
        settings.poll_delay = delay.max(Duration::from_millis(1));
        let envelope = state.client.envelope();
        let identity = Identity {
            group_name: envelope.group_name.clone(),
            client_name: envelope.client_name.clone(),
            role: envelope.role.clone(),
            hostname: envelope.hostname.clone(),
        };
        state.client = CoordinatorClient::new(settings, identity);
    }

    fn call_setup(&self) -> Result<(CoordinatorClient, Duration), MultinodeError> {
        let state = self.state();
        if !state.set_up_started {
            return Err(MultinodeError::NotSetUp);
        }
        Ok((state.client.clone(), state.poll_timeout))
    }

    /// `lava_send` of `payload` under `message_id` (poll timeout).
    /// `Word("ack")`, or `Word("nack")` when refused.
    pub async fn send(
        &self,
        message_id: impl Into<MessageId>,
        payload: Payload,
    ) -> Result<CallReply, MultinodeError> {
        let (client, timeout) = self.call_setup()?;
        let request = client.envelope().lava_send(message_id, payload);
        let result = client.poll(request, timeout).await;
        self.reply("lava_send", result).await
    }

    /// `lava_wait` (poll timeout): senders → payloads, or `Word("nack")`.
    pub async fn wait(
        &self,
        message_id: impl Into<MessageId>,
    ) -> Result<CallReply, MultinodeError> {
        let (client, timeout) = self.call_setup()?;
        let request = client.envelope().lava_wait(message_id);
        let result = client.poll(request, timeout).await;
        self.reply("lava_wait", result).await
    }

    /// `lava_wait_all`, optionally for `role` only (poll timeout).
    pub async fn wait_all(
        &self,
        message_id: impl Into<MessageId>,
        role: Option<&str>,
    ) -> Result<CallReply, MultinodeError> {
        let (client, timeout) = self.call_setup()?;
        let request = client.envelope().lava_wait_all(message_id, role);
        let result = client.poll(request, timeout).await;
        self.reply("lava_wait_all", result).await
    }

    /// `lava_sync` (poll timeout): `Text(messageID)`, or `Word("nack")`.
    pub async fn sync(
        &self,
        message_id: impl Into<MessageId>,
    ) -> Result<CallReply, MultinodeError> {
        let (client, timeout) = self.call_setup()?;
        let request = client.envelope().lava_sync(message_id);
        let result = client.poll(request, timeout).await;
        self.reply("lava_sync", result).await
    }

    async fn reply(
        &self,
        operation: &str,
        result: Result<Response, ClientError>,
    ) -> Result<CallReply, MultinodeError> {
        let response = self.finish(operation, result).await?;
        Ok(match response {
            Response::Ack { message: None } => CallReply::Word("ack"),
            Response::Ack {
                message: Some(Delivered::Senders(senders)),
            } => CallReply::Senders(senders),
            Response::Ack {
                message: Some(Delivered::Text(text)),
            } => CallReply::Text(text),
            Response::Ack {
                message: Some(Delivered::Other(value)),
            } => CallReply::Other(value),
            Response::Nack => CallReply::Word("nack"),
            Response::GroupData { .. } | Response::Wait { .. } => {
                return Err(MultinodeError::Job(format!(
                    "Invalid call to lava-multinode: unexpected reply to {operation}"
                )));
            }
        })
    }

    /// The calls an action makes: every entry of the action's
    /// `protocols: {lava-multinode: [...]}` list whose `action` is
    /// `action_name`, in order. Each reply is collated (master's rules); the
    /// returned pairs are to be stored in the job's namespace data under
    /// `lava-multinode` / `lava-multinode` / `<messageID>`.
    ///
    /// `action_protocols` is the action's own `protocols` parameter (not the
    /// job-level block that the parser merges in as `lava-multinode`).
    pub async fn calls_for_action(
        &self,
        action_name: &str,
        action_protocols: Option<&Value>,
    ) -> Result<Vec<(String, Mapping)>, MultinodeError> {
        let Some(list) = action_protocols.and_then(|p| p.get(PROTOCOL_NAME)) else {
            return Ok(Vec::new());
        };
        let calls: Vec<&Mapping> = match list {
            Value::Sequence(items) => items.iter().filter_map(Value::as_mapping).collect(),
            Value::Mapping(m) => vec![m],
            _ => Vec::new(),
        };
        let mut stored = Vec::new();
        for call in calls {
            if call.get("action").and_then(Value::as_str) != Some(action_name) {
                continue;
            }
            tracing::debug!(action = action_name, "calling lava-multinode: {call:?}");
            let reply = self.call(call).await?;
            if let Some(pair) = collate(&reply, call)? {
                stored.push(pair);
            }
        }
        Ok(stored)
    }
}

/// LAVA master's `collate`: turn a call's reply into the data to store, if
/// any. `ack` and strings give nothing; a wait without `message` or
/// without `$` placeholders gives nothing; otherwise the first sender's
/// payload supplies the placeholder keys, stored as `messageID → {key:
/// value}`. (LAVA keeps only the first placeholder; all are kept here.)
pub fn collate(
    reply: &CallReply,
    params: &Mapping,
) -> Result<Option<(String, Mapping)>, MultinodeError> {
    let senders = match reply {
        CallReply::Word(_) | CallReply::Text(_) => return Ok(None),
        CallReply::Senders(senders) => Some(senders),
        CallReply::Other(_) => None,
    };
    let Some(message) = params.get("message") else {
        return Ok(None);
    };
    let unusable = || {
        MultinodeError::Job(format!(
            "Unable to identify replaceable values in the parameters: {}",
            serde_json::to_string(&yaml_to_json(&Value::Mapping(params.clone())))
                .unwrap_or_default()
        ))
    };
    let senders = senders.filter(|s| !s.is_empty()).ok_or_else(unusable)?;
    let Some(message) = message.as_mapping() else {
        return Err(unusable());
    };
    let placeholders: Vec<String> = message
        .iter()
        .filter(|(_, v)| v.as_str().is_some_and(|s| s.starts_with('$')))
        .map(|(k, _)| key_string(k))
        .collect();
    if placeholders.is_empty() {
        return Ok(None);
    }
    let first = senders.values().next().expect("not empty");
    let Payload::Map(data) = first else {
        return Err(unusable());
    };
    let mut values = Mapping::new();
    for key in placeholders {
        match data.get(&key) {
            Some(value) => {
                values.insert(Value::String(key), json_to_yaml(value));
            }
            None => tracing::warn!("Skipping {key} - not found in {data:?}"),
        }
    }
    let message_id = match params.get("messageID") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(unusable()),
    };
    if values.is_empty() {
        return Err(unusable());
    }
    Ok(Some((message_id, values)))
}

fn key_string(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Null => "None".to_string(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

fn yaml_to_json(value: &Value) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

fn json_to_yaml(value: &Json) -> Value {
    serde_yaml::to_value(value).unwrap_or(Value::Null)
}

fn map_client_error(operation: &str, error: ClientError) -> MultinodeError {
    match error {
        ClientError::Timeout { waited, .. } => MultinodeError::Timeout {
            operation: operation.to_string(),
            waited,
        },
        ClientError::TooLong { .. } => MultinodeError::Job("Message was too long to send!".into()),
        ClientError::Nack { operation } => {
            MultinodeError::Job(format!("coordinator refused {operation} (nack)"))
        }
        other => MultinodeError::Job(format!("Invalid call to lava-multinode {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn params_from_a_node_block() {
        let params = ProtocolParams::from_block(&block(
            "target_group: g\nrole: guest\ngroup_size: 3\nsub_id: 2\n\
             roles: {'7001': host, 7002: other}\nrequest: lava-start\n\
             expect_role: host\ntimeout: {minutes: 2}\n",
        ))
        .unwrap();
        assert_eq!(params.group_size, 3);
        assert_eq!(params.sub_id, Some(2));
        assert_eq!(params.roles["7001"], "host");
        assert_eq!(params.roles["7002"], "other");
        assert_eq!(params.delayed_start_role(), Some("host"));
        assert_eq!(params.system_timeout(), Duration::from_secs(120));
        assert!(params.validate().is_empty());
    }

    #[test]
    fn lava_start_for_own_role_is_invalid() {
        let params = ProtocolParams::from_block(&block(
            "target_group: g\nrole: host\ngroup_size: 2\nrequest: lava-start\nexpect_role: host\n",
        ))
        .unwrap();
        assert_eq!(
            params.validate(),
            ["expect_role must not match the role declaring lava_start"]
        );
        assert_eq!(params.delayed_start_role(), None);
        assert_eq!(params.system_timeout(), SYSTEM_TIMEOUT);
    }

    #[test]
    fn a_timeout_without_delayed_start_keeps_the_system_timeout() {
        let params = ProtocolParams::from_block(&block(
            "target_group: g\nrole: a\ngroup_size: 2\ntimeout: {seconds: 5}\n",
        ))
        .unwrap();
        assert_eq!(params.timeout, Some(Duration::from_secs(5)));
        assert_eq!(params.system_timeout(), SYSTEM_TIMEOUT);
    }

    #[test]
    fn bad_blocks_name_the_key() {
        let error =
            ProtocolParams::from_block(&block("target_group: g\ngroup_size: 2\n")).unwrap_err();
        assert!(
            error.to_string().contains("protocols.lava-multinode.role"),
            "{error}"
        );
        let error =
            ProtocolParams::from_block(&block("target_group: g\nrole: a\ngroup_size: two\n"))
                .unwrap_err();
        assert!(error.to_string().contains("group_size"), "{error}");
        let error = ProtocolParams::from_block(&block(
            "target_group: g\nrole: a\ngroup_size: 2\ntimeout: 30\n",
        ))
        .unwrap_err();
        assert!(
            error.to_string().contains("Invalid timeout data"),
            "{error}"
        );
        assert_eq!(error.class(), ErrorClass::Job);
    }

    #[test]
    fn timeout_maps_parse_like_lava() {
        let t = |s: &str| parse_timeout_map(&block(s)).unwrap();
        assert_eq!(t("{minutes: 10}"), Duration::from_secs(600));
        assert_eq!(t("{hours: 1, seconds: 5}"), Duration::from_secs(3605));
        assert_eq!(t("{}"), DEFAULT_POLL_TIMEOUT);
        assert!(parse_timeout_map(&block("[1]")).is_err());
    }

    fn mapping(text: &str) -> Mapping {
        serde_yaml::from_str(text).unwrap()
    }

    fn senders(pairs: &[(&str, &[(&str, &str)])]) -> CallReply {
        CallReply::Senders(
            pairs
                .iter()
                .map(|(sender, data)| {
                    let map: IndexMap<String, String> = data
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    (sender.to_string(), Payload::from(map))
                })
                .collect(),
        )
    }

    #[test]
    fn collation_follows_master() {
        let wait = mapping("request: lava-wait\nmessageID: ipv4\nmessage: {ipaddr: $ipaddr}\n");
        let reply = senders(&[
            ("7001", &[("ipaddr", "10.0.0.5")]),
            ("7003", &[("ipaddr", "x")]),
        ]);
        let (key, value) = collate(&reply, &wait).unwrap().unwrap();
        assert_eq!(key, "ipv4");
        assert_eq!(value, mapping("ipaddr: 10.0.0.5"));
        // No data for sends, syncs, waits without message or placeholders.
        assert_eq!(collate(&CallReply::Word("ack"), &wait).unwrap(), None);
        assert_eq!(collate(&CallReply::Text("s".into()), &wait).unwrap(), None);
        let plain = mapping("request: lava-wait\nmessageID: ipv4\n");
        assert_eq!(collate(&reply, &plain).unwrap(), None);
        let fixed = mapping("request: lava-wait\nmessageID: ipv4\nmessage: {ipaddr: fixed}\n");
        assert_eq!(collate(&reply, &fixed).unwrap(), None);
        // A wait whose placeholders find nothing is a job error.
        let missing = mapping("request: lava-wait\nmessageID: ipv4\nmessage: {mac: $mac}\n");
        let error = collate(&reply, &missing).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("Unable to identify replaceable values")
        );
        assert!(collate(&CallReply::Senders(IndexMap::new()), &wait).is_err());
    }

    #[tokio::test]
    async fn calls_need_set_up_and_valid_fields() {
        let params =
            ProtocolParams::from_block(&block("target_group: g\nrole: a\ngroup_size: 2\n"))
                .unwrap();
        let settings = ClientSettings::for_address("127.0.0.1:9".parse().unwrap());
        let protocol = MultinodeProtocol::new(params, "7001", "worker", settings);
        let error = protocol
            .call(&mapping("request: lava-sync\nmessageID: x\n"))
            .await
            .unwrap_err();
        assert!(matches!(error, MultinodeError::NotSetUp));
        let error = protocol
            .call(&mapping("request: lava-sync\n"))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "Missing messageID");
        let error = protocol.call(&mapping("messageID: x\n")).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "Bad API call over protocol - missing request"
        );
        let error = protocol
            .call(&mapping(
                "request: lava-sync\nmessageID: x\ntimeout: soon\n",
            ))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "Invalid timeout request");
        // The timeout was parsed before the failure on a bad one: a valid one sticks.
        let _ = protocol
            .call(&mapping(
                "request: lava-sync\nmessageID: x\ntimeout: {minutes: 3}\n",
            ))
            .await;
        assert_eq!(protocol.poll_timeout(), Duration::from_secs(180));
        // Finalising a protocol that never set up sends nothing.
        protocol.finalise().await.unwrap();
        assert!(!protocol.is_cleared());
    }
}
