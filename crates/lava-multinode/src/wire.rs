//! The coordinator's JSON messages: requests, responses and their payloads.
//!
//! Field names and values are LAVA's exactly (`request`, `group_name`,
//! `client_name`, `messageID`, `waitrole`, `nodeID`, …; replies `wait`,
//! `ack`, `nack`, `group_data`). Two optional request fields are our own
//! extensions; LAVA's coordinator ignores unknown fields, so they are safe to
//! send to it:
//!
//! * [`HOLD_FIELD`] (`lava_rs_hold_ms`): "if the answer would be `wait`, keep
//!   this connection open for up to this many milliseconds and answer as soon
//!   as the condition holds". A server that honours it marks its `wait`
//!   replies with [`HELD_FIELD`] so the client knows it may ask again at once.
//! * [`TOKEN_FIELD`] (`lava_rs_token`): the optional shared secret.

use indexmap::IndexMap;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Request field asking the server to hold a `wait` answer (our extension).
pub const HOLD_FIELD: &str = "lava_rs_hold_ms";
/// Reply field set on a `wait` that was held by a push-capable server.
pub const HELD_FIELD: &str = "lava_rs_held";
/// Request field carrying the optional shared secret (our extension).
pub const TOKEN_FIELD: &str = "lava_rs_token";

/// The operations of the coordinator protocol, spelled as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `group_data`: ask for the role of every member once the group is complete.
    GroupData,
    /// `lava_send`: store a message under a message ID for the group.
    LavaSend,
    /// `lava_wait`: wait until a message was sent under a message ID, and receive it.
    LavaWait,
    /// `lava_wait_all`: wait until every member (of a role) has sent a message ID.
    LavaWaitAll,
    /// `lava_sync`: wait until every member has reached the same sync point.
    LavaSync,
    /// `clear_group`: a member leaves; the group is removed when all have left.
    ClearGroup,
    /// `aggregate`: LAVA's legacy result-bundle aggregation; the `.0` sub-job receives every member's bundle.
    Aggregate,
    /// `complete`: the client has finished talking to the coordinator; the connection is closed.
    Complete,
}

impl Operation {
    /// The wire spelling (`lava_send`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::GroupData => "group_data",
            Operation::LavaSend => "lava_send",
            Operation::LavaWait => "lava_wait",
            Operation::LavaWaitAll => "lava_wait_all",
            Operation::LavaSync => "lava_sync",
            Operation::ClearGroup => "clear_group",
            Operation::Aggregate => "aggregate",
            Operation::Complete => "complete",
        }
    }

    /// Parse a wire name; API names with hyphens (`lava-send`) are accepted
    /// too, as the dispatcher converts them before sending.
    pub fn from_api_name(name: &str) -> Option<Operation> {
        Some(match name.replace('-', "_").as_str() {
            "group_data" => Operation::GroupData,
            "lava_send" => Operation::LavaSend,
            "lava_wait" => Operation::LavaWait,
            "lava_wait_all" => Operation::LavaWaitAll,
            "lava_sync" => Operation::LavaSync,
            "clear_group" => Operation::ClearGroup,
            "aggregate" => Operation::Aggregate,
            "complete" => Operation::Complete,
            _ => return None,
        })
    }

    /// Whether a `wait` answer to this operation means "ask again later" (and
    /// so whether a server may hold it open).
    pub fn is_waitable(self) -> bool {
        matches!(
            self,
            Operation::GroupData
                | Operation::LavaWait
                | Operation::LavaWaitAll
                | Operation::LavaSync
        )
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message body: what a `lava_send` carries and what `lava_sync` may
/// carry. Objects keep their key order (LAVA's replies do, and the console
/// reply to the device lists keys in that order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Payload {
    /// The normal case: key → value (string → string from the test shell).
    Map(IndexMap<String, Value>),
    /// A plain string (the sync reply carries the messageID this way).
    Text(String),
    /// Anything else a client chose to send.
    Other(Value),
}

impl Payload {
    /// An empty map, LAVA's stand-in for "no message".
    pub fn empty() -> Payload {
        Payload::Map(IndexMap::new())
    }

    /// Whether LAVA's `if not message` would treat this as empty.
    pub fn is_empty(&self) -> bool {
        match self {
            Payload::Map(map) => map.is_empty(),
            Payload::Text(text) => text.is_empty(),
            Payload::Other(value) => match value {
                Value::Null => true,
                Value::Bool(b) => !b,
                Value::Array(items) => items.is_empty(),
                Value::Number(n) => n.as_f64() == Some(0.0),
                _ => false,
            },
        }
    }
}

impl From<IndexMap<String, String>> for Payload {
    fn from(map: IndexMap<String, String>) -> Payload {
        Payload::Map(
            map.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    }
}

/// Per-sender payloads as delivered by `lava_wait` / `lava_wait_all`:
/// sender `client_name` → that sender's payload, in sending order.
pub type SenderPayloads = IndexMap<String, Payload>;

/// What an `ack` can carry in its `message` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Delivered {
    /// `lava_wait` / `lava_wait_all`: sender → payload.
    Senders(SenderPayloads),
    /// `lava_sync`: the messageID (or the sync's own message).
    Text(String),
    /// Anything else (a sync carrying a non-string message, …).
    Other(Value),
}

/// A coordinator reply. Serialises to LAVA's exact shapes:
/// `{"response": "wait"}`, `{"response": "ack"}`,
/// `{"response": "ack", "message": …}`, `{"response": "nack"}`,
/// `{"response": "group_data", "roles": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// Not yet: ask again. `held` is our extension (see [`HELD_FIELD`]); it is
    /// only ever set in answer to a request that asked to be held.
    Wait {
        /// Whether the server held the request before answering (LAVA's `lava_rs_held`, our extension).
        #[serde(rename = "lava_rs_held", default, skip_serializing_if = "is_false")]
        held: bool,
    },
    /// Accepted, possibly with data.
    Ack {
        /// The data for a `lava_wait`/`lava_wait_all`, by sender.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Delivered>,
    },
    /// Refused.
    Nack,
    /// The group is complete: client_name → role.
    GroupData {
        /// Each member's role, by client name (sub-job ID).
        roles: IndexMap<String, String>,
    },
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Response {
    /// A plain `{"response": "wait"}`.
    pub const WAIT: Response = Response::Wait { held: false };
    /// A plain `{"response": "ack"}`.
    pub const ACK: Response = Response::Ack { message: None };

    /// Whether this is a `wait` (held or not).
    pub fn is_wait(&self) -> bool {
        matches!(self, Response::Wait { .. })
    }

    /// LAVA's API layer result: `message` when present, else the response
    /// string (`"ack"`, `"nack"`, …).
    pub fn api_result(&self) -> ApiResult {
        match self {
            Response::Ack {
                message: Some(message),
            } => ApiResult::Message(message.clone()),
            Response::Ack { message: None } => ApiResult::Word("ack"),
            Response::Nack => ApiResult::Word("nack"),
            Response::Wait { .. } => ApiResult::Word("wait"),
            Response::GroupData { .. } => ApiResult::Word("group_data"),
        }
    }
}

/// What the dispatcher's API layer hands to its callers (see
/// [`Response::api_result`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ApiResult {
    /// The message data a `wait` or `wait_all` received.
    Message(Delivered),
    /// The bare response word (`ack`, `nack`, `wait`, `group_data`).
    Word(&'static str),
}

/// A request as it travels on the wire. Every field is optional so that a
/// server can parse whatever a client sends and answer `nack` to what is
/// missing; [`Envelope::request`] builds well-formed ones. Field order is
/// LAVA's: envelope first, then the request fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The coordinator's port, as the client's configuration has it (`port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Value>,
    /// The client's `blocksize` setting, copied into every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocksize: Option<Value>,
    /// The client's `poll_delay` setting, copied into every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_delay: Option<Value>,
    /// The coordinator host name the client connected to (`host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Value>,
    /// Host name of the worker sending the request (`hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The sending sub-job's ID (`client_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The MultiNode group's name (`group_name`, the target group of the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "text_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    /// The sender's role (`role`); a number on the wire is read as its text.
    pub role: Option<String>,
    /// The operation, kept as text so that unknown names can be answered
    /// with `nack` rather than failing to parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Number of members the group will have (`group_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_size: Option<u64>,
    /// The message ID of a send, wait or sync (`messageID`).
    #[serde(rename = "messageID", default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// `lava_send` payload; `null` on the wire reads as `Some(Other(Null))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Payload>,
    #[serde(
        default,
        deserialize_with = "text_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    /// The role waited for (`waitrole`); absent means all roles.
    pub waitrole: Option<String>,
    /// The sender's node ID (`nodeID`, the same as `client_name`).
    #[serde(rename = "nodeID", default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The result bundle of an `aggregate` request (`bundle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<Value>,
    /// The sub-job ID of an `aggregate` request (`sub_id`, e.g. `"7001.0"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_id: Option<Value>,
    /// Our extension: hold a `wait` for up to this many milliseconds.
    #[serde(
        rename = "lava_rs_hold_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hold_ms: Option<u64>,
    /// Our extension: the shared secret.
    #[serde(
        rename = "lava_rs_token",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<String>,
}

impl Request {
    /// The parsed operation, if the `request` field names a known one
    /// (underscores only, as LAVA's coordinator demands).
    pub fn operation(&self) -> Option<Operation> {
        let name = self.request.as_deref()?;
        if name.contains('-') {
            return None;
        }
        Operation::from_api_name(name)
    }

    /// The `lava_send` payload with LAVA's defaults: absent or `null` is `{}`.
    pub fn payload_or_empty(&self) -> Payload {
        match &self.message {
            None | Some(Payload::Other(Value::Null)) => Payload::empty(),
            Some(payload) => payload.clone(),
        }
    }
}

/// Read a name that comes from the job definition (`messageID`, `role`,
/// `waitrole`). LAVA's dispatcher passes YAML values through, so a
/// `messageID: 42` in an action's `protocols:` block arrives as the number
/// 42, which LAVA's coordinator takes as any other key; a number is read
/// here as its decimal text.
fn text_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<MessageId>::deserialize(deserializer)?.map(|name| name.text))
}

/// A `messageID` as the job definition gave it. LAVA's dispatcher passes YAML values
/// through, so `messageID: 42` in an action's `protocols:` block goes on the wire as the
/// JSON number 42, and LAVA's coordinator keys 42 and "42" apart: a number is kept a
/// number when sent. Everywhere else it is its text (`Deref<Target = str>`); our broker
/// reads both forms as the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageId {
    text: String,
    /// The same value as a JSON number, when it travels as one.
    number: Option<serde_json::Number>,
}

impl MessageId {
    /// A numeric ID (`number` is its decimal text, e.g. from a YAML or JSON number).
    /// Text that is not a JSON number stays text.
    pub fn number(number: impl Into<String>) -> Self {
        let text = number.into();
        let number = text.parse::<serde_json::Number>().ok();
        MessageId { text, number }
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it travels as a JSON number.
    pub fn is_number(&self) -> bool {
        self.number.is_some()
    }
}

impl std::ops::Deref for MessageId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&str> for MessageId {
    fn from(text: &str) -> Self {
        MessageId::from(text.to_string())
    }
}

impl From<String> for MessageId {
    fn from(text: String) -> Self {
        MessageId { text, number: None }
    }
}

impl From<&String> for MessageId {
    fn from(text: &String) -> Self {
        MessageId::from(text.as_str())
    }
}

impl From<&MessageId> for MessageId {
    fn from(id: &MessageId) -> Self {
        id.clone()
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.number {
            Some(number) => number.serialize(serializer),
            None => serializer.serialize_str(&self.text),
        }
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(MessageId::from(text)),
            Value::Number(number) => Ok(MessageId {
                text: number.to_string(),
                number: Some(number),
            }),
            other => Err(D::Error::custom(format!(
                "expected a string or a number, found {other}"
            ))),
        }
    }
}

/// The identity and settings every request of one sub-job carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The MultiNode `target_group`.
    pub group_name: String,
    /// The sub-job's job id, as a string of digits.
    pub client_name: String,
    /// This sub-job's role.
    pub role: String,
    /// Host name of the worker running the client.
    pub hostname: String,
    /// Copies of the coordinator configuration, sent as LAVA's client does.
    pub coordinator_host: String,
    /// The coordinator's port (`port`).
    pub port: u16,
    /// The `blocksize` of the configuration.
    pub blocksize: u32,
    /// The `poll_delay` of the configuration, in seconds.
    pub poll_delay: u64,
}

impl Envelope {
    /// A request for `operation` carrying this envelope.
    pub fn request(&self, operation: Operation) -> Request {
        Request {
            port: Some(Value::from(self.port)),
            blocksize: Some(Value::from(self.blocksize)),
            poll_delay: Some(Value::from(self.poll_delay)),
            host: Some(Value::from(self.coordinator_host.clone())),
            hostname: Some(self.hostname.clone()),
            client_name: Some(self.client_name.clone()),
            group_name: Some(self.group_name.clone()),
            role: Some(self.role.clone()),
            request: Some(operation.as_str().to_string()),
            ..Request::default()
        }
    }

    /// `group_data` with the group size (registration barrier).
    pub fn group_data(&self, group_size: u64) -> Request {
        Request {
            group_size: Some(group_size),
            ..self.request(Operation::GroupData)
        }
    }

    /// `clear_group` with the group size, as LAVA's finalize step sends it.
    pub fn clear_group(&self, group_size: u64) -> Request {
        Request {
            group_size: Some(group_size),
            ..self.request(Operation::ClearGroup)
        }
    }

    /// `lava_send` of `payload` under `message_id`.
    pub fn lava_send(&self, message_id: impl Into<MessageId>, payload: Payload) -> Request {
        Request {
            message_id: Some(message_id.into()),
            message: Some(payload),
            ..self.request(Operation::LavaSend)
        }
    }

    /// `lava_wait` for `message_id` (with `nodeID`, as LAVA's client sends).
    pub fn lava_wait(&self, message_id: impl Into<MessageId>) -> Request {
        Request {
            message_id: Some(message_id.into()),
            node_id: Some(self.client_name.clone()),
            ..self.request(Operation::LavaWait)
        }
    }

    /// `lava_wait_all` for `message_id`, optionally only for `waitrole`.
    pub fn lava_wait_all(
        &self,
        message_id: impl Into<MessageId>,
        waitrole: Option<&str>,
    ) -> Request {
        Request {
            message_id: Some(message_id.into()),
            waitrole: waitrole.map(str::to_string),
            ..self.request(Operation::LavaWaitAll)
        }
    }

    /// `lava_sync` on `message_id`.
    pub fn lava_sync(&self, message_id: impl Into<MessageId>) -> Request {
        Request {
            message_id: Some(message_id.into()),
            ..self.request(Operation::LavaSync)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> Envelope {
        Envelope {
            group_name: "6c1e0c8e-0d7e-4b7c-9a51-2f5b1d0c9e11".into(),
            client_name: "7001".into(),
            role: "server".into(),
            hostname: "worker-a".into(),
            coordinator_host: "coord.lab".into(),
            port: 3079,
            blocksize: 4096,
            poll_delay: 3,
        }
    }

    #[test]
    fn responses_have_lavas_shapes() {
        let cases = [
            (Response::WAIT, json!({"response": "wait"})),
            (Response::ACK, json!({"response": "ack"})),
            (Response::Nack, json!({"response": "nack"})),
            (
                Response::Ack {
                    message: Some(Delivered::Text("iperf-done".into())),
                },
                json!({"response": "ack", "message": "iperf-done"}),
            ),
            (
                Response::GroupData {
                    roles: [("7001".to_string(), "server".to_string())].into(),
                },
                json!({"response": "group_data", "roles": {"7001": "server"}}),
            ),
        ];
        for (response, expected) in cases {
            assert_eq!(serde_json::to_value(&response).unwrap(), expected);
            let back: Response = serde_json::from_value(expected).unwrap();
            assert_eq!(back, response);
        }
    }

    #[test]
    fn held_wait_is_marked_and_still_a_wait() {
        let held = Response::Wait { held: true };
        let value = serde_json::to_value(&held).unwrap();
        assert_eq!(value, json!({"response": "wait", "lava_rs_held": true}));
        assert!(serde_json::from_value::<Response>(value).unwrap().is_wait());
    }

    #[test]
    fn wait_reply_delivers_senders_in_order() {
        let text = r#"{"response": "ack", "message": {"7002": {"z": "1", "a": "2"}, "7001": {}}}"#;
        let response: Response = serde_json::from_str(text).unwrap();
        let Response::Ack {
            message: Some(Delivered::Senders(senders)),
        } = response
        else {
            panic!("expected senders, got {response:?}");
        };
        assert_eq!(senders.keys().collect::<Vec<_>>(), ["7002", "7001"]);
        let Payload::Map(first) = &senders["7002"] else {
            panic!("expected a map");
        };
        assert_eq!(first.keys().collect::<Vec<_>>(), ["z", "a"]);
    }

    #[test]
    fn send_request_matches_lavas_field_set_and_order() {
        let mut payload = IndexMap::new();
        payload.insert("ip".to_string(), "10.20.0.7".to_string());
        payload.insert("port".to_string(), "5201".to_string());
        let request = envelope().lava_send("server-ready", payload.into());
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"port":3079,"blocksize":4096,"poll_delay":3,"host":"coord.lab","hostname":"worker-a","client_name":"7001","group_name":"6c1e0c8e-0d7e-4b7c-9a51-2f5b1d0c9e11","role":"server","request":"lava_send","messageID":"server-ready","message":{"ip":"10.20.0.7","port":"5201"}}"#
        );
    }

    #[test]
    fn operations_parse_strictly_on_the_wire() {
        let mut request = envelope().lava_wait("x");
        assert_eq!(request.operation(), Some(Operation::LavaWait));
        assert_eq!(request.node_id.as_deref(), Some("7001"));
        request.request = Some("lava-wait".into());
        assert_eq!(
            request.operation(),
            None,
            "hyphens are nack'ed as LAVA does"
        );
        assert_eq!(
            Operation::from_api_name("lava-wait-all"),
            Some(Operation::LavaWaitAll)
        );
    }

    #[test]
    fn null_message_reads_as_empty_payload() {
        let request: Request =
            serde_json::from_value(json!({"request": "lava_send", "message": null})).unwrap();
        assert_eq!(request.payload_or_empty(), Payload::empty());
        let request: Request = serde_json::from_value(json!({"request": "lava_send"})).unwrap();
        assert_eq!(request.payload_or_empty(), Payload::empty());
    }

    #[test]
    fn numeric_names_from_job_definitions_read_as_text() {
        let request: Request = serde_json::from_value(json!({
            "request": "lava_wait_all", "messageID": 42, "role": 7, "waitrole": 1.5
        }))
        .unwrap();
        assert_eq!(request.message_id.as_deref(), Some("42"));
        assert_eq!(request.role.as_deref(), Some("7"));
        assert_eq!(request.waitrole.as_deref(), Some("1.5"));
        let request: Request =
            serde_json::from_value(json!({"request": "lava_wait", "messageID": null})).unwrap();
        assert_eq!(request.message_id, None);
        let refused = serde_json::from_value::<Request>(json!({"messageID": ["x"]}));
        assert!(refused.is_err(), "{refused:?}");
    }

    #[test]
    fn a_numeric_message_id_is_sent_as_a_number_as_lava_does() {
        let e = envelope();
        let numeric = e.lava_send(MessageId::number("42"), Payload::empty());
        let text = e.lava_send("42", Payload::empty());
        let wire = |r: &Request| serde_json::to_value(r).unwrap()["messageID"].clone();
        assert_eq!(wire(&numeric), json!(42));
        assert_eq!(wire(&text), json!("42"));
        assert_eq!(wire(&e.lava_wait(MessageId::number("1.5"))), json!(1.5));
        assert_eq!(
            wire(&e.lava_sync(MessageId::number("not-a-number"))),
            json!("not-a-number")
        );
        // Both forms are the same key to us, and each keeps its form through a round trip.
        let back: Request =
            serde_json::from_value(serde_json::to_value(&numeric).unwrap()).unwrap();
        assert_eq!(back.message_id.as_deref(), Some("42"));
        assert!(back.message_id.as_ref().is_some_and(MessageId::is_number));
        let back: Request = serde_json::from_value(serde_json::to_value(&text).unwrap()).unwrap();
        assert_eq!(back.message_id.as_deref(), Some("42"));
        assert!(!back.message_id.as_ref().is_some_and(MessageId::is_number));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let request: Request =
            serde_json::from_value(json!({"request": "group_data", "future": [1, 2]})).unwrap();
        assert_eq!(request.operation(), Some(Operation::GroupData));
    }
}
