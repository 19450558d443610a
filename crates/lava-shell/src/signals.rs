//! The console signal parser: an incremental scanner over the bytes the device
//! prints, recognising LAVA's markers anywhere in the stream.
//!
//! | printed | [`Signal`] |
//! |---|---|
//! | `<LAVA_SIGNAL_STARTRUN 0_smoke 1234_1.1.2.1>` | [`Signal::StartRun`] |
//! | `<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass>` | [`Signal::TestCase`] |
//! | `<LAVA_TEST_RUNNER EXIT>` | [`Signal::RunnerExit`] |
//! | `<LAVA_MULTI_NODE> <LAVA_SEND id k=v>` | [`Signal::Multinode`] |

use indexmap::IndexMap;
use regex::bytes::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// LAVA's general signal pattern.
pub const SIGNAL_PATTERN: &str = r"<LAVA_SIGNAL_(\S+) ([^>]+)>";
/// LAVA's MultiNode request pattern.
pub const MULTINODE_PATTERN: &str = r"<LAVA_MULTI_NODE> <LAVA_(\S+) ([^>]+)>";
/// Printed by the runner when it ends: the end of the test action.
pub const RUNNER_EXIT: &str = "<LAVA_TEST_RUNNER EXIT>";
/// Printed by the runner when an install.sh failed.
pub const RUNNER_INSTALL_FAIL: &str = "<LAVA_TEST_RUNNER INSTALL_FAIL>";

static SIGNAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(SIGNAL_PATTERN).unwrap());
static MULTINODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(MULTINODE_PATTERN).unwrap());
static SEND_SPLIT: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\s+").unwrap());

/// A MultiNode request printed by `lava-send`, `lava-wait`, `lava-wait-all`, `lava-sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum MultinodeRequest {
    /// `lava-send <message-id> [key=value ...]`: send a message to the group.
    Send {
        /// The message ID.
        message_id: String,
        /// The `key=value` pairs sent with it.
        data: IndexMap<String, String>,
    },
    /// `lava-wait <message-id>`: wait for a message.
    Wait {
        /// The message ID.
        message_id: String,
    },
    /// `lava-wait-all <message-id> [<role>]`: wait for every member (of a role) to send.
    WaitAll {
        /// The message ID.
        message_id: String,
        /// The role to wait for; `None` waits for all roles.
        role: Option<String>,
    },
    /// `lava-sync <message-id>`: wait until every member reaches this point.
    Sync {
        /// The sync point's message ID.
        message_id: String,
    },
    /// An API name LAVA does not know (its reference dispatcher stops monitoring).
    Unknown {
        /// The API name as printed.
        api: String,
        /// The raw parameter text.
        params: String,
    },
    /// A known API with the wrong number of arguments (TestError in LAVA).
    Invalid {
        /// The API name.
        api: String,
        /// The raw parameter text.
        params: String,
        /// What is wrong with the arguments.
        reason: String,
    },
}

impl MultinodeRequest {
    /// The API name as printed (`SEND`, `WAIT_ALL`…).
    pub fn api(&self) -> &str {
        match self {
            MultinodeRequest::Send { .. } => "SEND",
            MultinodeRequest::Wait { .. } => "WAIT",
            MultinodeRequest::WaitAll { .. } => "WAIT_ALL",
            MultinodeRequest::Sync { .. } => "SYNC",
            MultinodeRequest::Unknown { api, .. } | MultinodeRequest::Invalid { api, .. } => api,
        }
    }

    /// The message id of a valid request.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            MultinodeRequest::Send { message_id, .. }
            | MultinodeRequest::Wait { message_id }
            | MultinodeRequest::WaitAll { message_id, .. }
            | MultinodeRequest::Sync { message_id } => Some(message_id),
            _ => None,
        }
    }

    /// The test case LAVA records for this call: `multinode-<api>-<id>`, lower case.
    pub fn case_name(&self) -> Option<String> {
        self.message_id()
            .map(|id| format!("multinode-{}-{}", self.api(), id).to_lowercase())
    }

    fn parse(api: &str, params: &str) -> MultinodeRequest {
        let invalid = |reason: &str| MultinodeRequest::Invalid {
            api: api.to_string(),
            params: params.to_string(),
            reason: reason.to_string(),
        };
        if api == "SEND" {
            let parts = split_send(params);
            let Some((id, rest)) = parts.split_first() else {
                return invalid("missing message id");
            };
            if id.is_empty() {
                return invalid("missing message id");
            }
            let mut data = IndexMap::new();
            for part in rest {
                if let Some((k, v)) = part.split_once('=') {
                    data.insert(k.to_string(), v.to_string());
                }
            }
            return MultinodeRequest::Send {
                message_id: id.clone(),
                data,
            };
        }
        let words: Vec<&str> = params.split_whitespace().collect();
        match (api, words.as_slice()) {
            ("WAIT", [id]) => MultinodeRequest::Wait {
                message_id: id.to_string(),
            },
            ("SYNC", [id]) => MultinodeRequest::Sync {
                message_id: id.to_string(),
            },
            ("WAIT_ALL", [id]) => MultinodeRequest::WaitAll {
                message_id: id.to_string(),
                role: None,
            },
            ("WAIT_ALL", [id, role]) => MultinodeRequest::WaitAll {
                message_id: id.to_string(),
                role: Some(role.to_string()),
            },
            ("WAIT" | "SYNC" | "WAIT_ALL", _) => invalid("wrong number of arguments"),
            _ => MultinodeRequest::Unknown {
                api: api.to_string(),
                params: params.to_string(),
            },
        }
    }
}

/// Splits SEND parameters like LAVA's `re.split(r"\s+(?=\w+=)", …)`: at whitespace
/// followed by a word and `=`.
fn split_send(params: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut start = 0;
    for gap in SEND_SPLIT.find_iter(params) {
        let after = &params[gap.end()..];
        let word_len: usize = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .map(char::len_utf8)
            .sum();
        if word_len > 0 && after[word_len..].starts_with('=') {
            parts.push(params[start..gap.start()].to_string());
            start = gap.end();
        }
    }
    parts.push(params[start..].to_string());
    parts
}

/// The dispatcher's answer to a waiting MultiNode call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MultinodeReply {
    /// Data by sender job id, then key → value. Empty for a plain completion.
    Data(IndexMap<String, IndexMap<String, String>>),
    /// The coordinator answered `nack`.
    Nack,
}

/// The line typed into the console for `api` (`WAIT`, `WAIT_ALL`, `SYNC`):
/// `<LAVA_WAIT_COMPLETE 7001:ip=10.0.0.1>`, `<LAVA_SYNC_COMPLETE>`, `<LAVA_WAIT_COMPLETE nack>`.
pub fn multinode_reply_line(api: &str, reply: &MultinodeReply) -> String {
    let mut line = format!("<LAVA_{api}_COMPLETE");
    match reply {
        MultinodeReply::Nack => line.push_str(" nack"),
        MultinodeReply::Data(senders) if api != "SYNC" => {
            for (sender, data) in senders {
                for (key, value) in data {
                    line.push_str(&format!(" {sender}:{key}={value}"));
                }
            }
        }
        MultinodeReply::Data(_) => {}
    }
    line.push('>');
    line
}

/// What to do with a MultiNode request; the MultiNode work implements this.
pub trait MultinodeHook {
    /// Handles one request. Returns whether the call succeeded (the result of the
    /// `multinode-<api>-<id>` case) and the reply line to type, if any.
    fn handle(&mut self, request: &MultinodeRequest) -> MultinodeOutcome;
}

/// The outcome of [`MultinodeHook::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultinodeOutcome {
    /// Whether the call succeeded (the `multinode-<api>-<id>` case's result).
    pub passed: bool,
    /// The line to type on the device's console in reply, if any.
    pub reply: Option<String>,
}

/// One recognised console signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    /// `LAVA_SIGNAL_STARTRUN <test run id> <uuid>`: a test definition's run starts.
    StartRun {
        /// The run's ID (`<stage>_<name>`).
        test_run_id: String,
        /// The definition's UUID.
        uuid: String,
    },
    /// `LAVA_SIGNAL_ENDRUN <test run id> <uuid>`: a test definition's run ends.
    EndRun {
        /// The run's ID (`<stage>_<name>`).
        test_run_id: String,
        /// The definition's UUID.
        uuid: String,
    },
    /// `LAVA_SIGNAL_STARTTC <case>`: a test case starts (for `lava-test-case --shell`).
    StartTestCase {
        /// The test case name.
        case: String,
    },
    /// `LAVA_SIGNAL_ENDTC <case>`: a test case ends.
    EndTestCase {
        /// The test case name.
        case: String,
    },
    /// `KEY=value` params, keys lower-cased (`test_case_id`, `result`, `measurement`, `units`).
    TestCase {
        /// The parameters by lower-cased key.
        fields: IndexMap<String, String>,
    },
    /// `LAVA_SIGNAL_TESTSET START <name>`: following cases belong to this test set.
    TestSetStart {
        /// The test set name.
        name: String,
    },
    /// `LAVA_SIGNAL_TESTSET STOP`: the current test set ends.
    TestSetStop,
    /// `LAVA_SIGNAL_TESTREFERENCE <case> <result> <url>`: a result with a reference link.
    TestReference {
        /// The test case name.
        case: String,
        /// The result (`pass`, `fail`, ...).
        result: String,
        /// The reference URL.
        reference: String,
    },
    /// `LAVA_SIGNAL_TESTRAISE <message>`: the test asks to fail the job (`lava-test-raise`).
    TestRaise {
        /// The message to fail with.
        message: String,
    },
    /// `LAVA_SIGNAL_TESTEVENT <message>`: an event to log (`lava-test-event`).
    TestEvent {
        /// The event text.
        message: String,
    },
    /// `LAVA_SIGNAL_TESTFEEDBACK <namespace>`: show another namespace's console output.
    TestFeedback {
        /// The namespace to read feedback from.
        namespace: String,
    },
    /// `<LAVA_SIGNAL_RETRUNCODE n>` after a checked command.
    ReturnCode {
        /// The command's exit code.
        code: i64,
    },
    /// The runner has finished ([`RUNNER_EXIT`]).
    RunnerExit,
    /// An `install.sh` failed ([`RUNNER_INSTALL_FAIL`]).
    RunnerInstallFail,
    /// A MultiNode API call (`<LAVA_MULTI_NODE> <LAVA_...>`).
    Multinode {
        /// The parsed call.
        request: MultinodeRequest,
    },
    /// A `LAVA_SIGNAL_*` name LAVA does not act on.
    Other {
        /// The signal name after `LAVA_SIGNAL_`.
        name: String,
        /// Its parameters, split on white space.
        params: Vec<String>,
    },
    /// A known signal whose parameters cannot be used (TestError or an error log in LAVA).
    Invalid {
        /// The signal name.
        name: String,
        /// Its parameters, split on white space.
        params: Vec<String>,
        /// What is wrong with them.
        reason: String,
    },
}

/// A signal with the raw text it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalEvent {
    /// The signal name as LAVA logs it in `Received signal: <NAME> params`
    /// (for MultiNode requests the API, for runner markers `TEST_RUNNER`).
    pub name: String,
    /// The raw parameter text.
    pub params: String,
    /// The recognised signal.
    pub signal: Signal,
}

impl SignalEvent {
    /// The debug line LAVA logs before handling a `LAVA_SIGNAL_*` signal.
    pub fn received_message(&self) -> String {
        format!("Received signal: <{}> {}", self.name, self.params)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn interpret(name: &str, params_text: &str) -> Signal {
    let params: Vec<String> = params_text.split_whitespace().map(str::to_string).collect();
    let invalid = |reason: &str| Signal::Invalid {
        name: name.to_string(),
        params: params.clone(),
        reason: reason.to_string(),
    };
    match name {
        "STARTRUN" | "ENDRUN" => match params.as_slice() {
            [run, uuid, ..] => {
                let (test_run_id, uuid) = (run.clone(), uuid.clone());
                if name == "STARTRUN" {
                    Signal::StartRun { test_run_id, uuid }
                } else {
                    Signal::EndRun { test_run_id, uuid }
                }
            }
            _ => invalid("Invalid signal"),
        },
        "STARTTC" | "ENDTC" => match params.first() {
            Some(case) if name == "STARTTC" => Signal::StartTestCase { case: case.clone() },
            Some(case) => Signal::EndTestCase { case: case.clone() },
            None => invalid("Invalid signal"),
        },
        "TESTCASE" => {
            let mut fields = IndexMap::new();
            for param in &params {
                match param.split_once('=') {
                    Some((k, v)) => {
                        fields.insert(k.to_lowercase(), v.to_string());
                    }
                    None => {
                        return invalid(&format!(
                            "Ignoring malformed parameter for signal: \"{param}\". "
                        ));
                    }
                }
            }
            Signal::TestCase { fields }
        }
        "TESTSET" => match params.as_slice() {
            [action, name, ..] if action == "START" => Signal::TestSetStart { name: name.clone() },
            [action] if action == "START" => invalid("Test set declared without a name"),
            [action, ..] if action == "STOP" => Signal::TestSetStop,
            _ => Signal::Other {
                name: name.to_string(),
                params,
            },
        },
        "TESTREFERENCE" => match params.as_slice() {
            [case, result, reference] => Signal::TestReference {
                case: case.clone(),
                result: result.clone(),
                reference: reference.clone(),
            },
            _ => invalid("Invalid use of TESTREFERENCE"),
        },
        "TESTRAISE" => Signal::TestRaise {
            message: params.join(" "),
        },
        "TESTEVENT" => Signal::TestEvent {
            message: params.join(" "),
        },
        "TESTFEEDBACK" => match params.first() {
            Some(ns) => Signal::TestFeedback {
                namespace: ns.clone(),
            },
            None => invalid("Invalid signal"),
        },
        "RETRUNCODE" => match params.first().and_then(|p| p.parse::<i64>().ok()) {
            Some(code) => Signal::ReturnCode { code },
            None => invalid("Invalid return code"),
        },
        _ => Signal::Other {
            name: name.to_string(),
            params,
        },
    }
}

/// Finds every signal in `line`, in order (earliest match first, no overlaps).
pub fn parse_line(line: &str) -> Vec<SignalEvent> {
    let mut events = Vec::new();
    scan(line.as_bytes(), 0, &mut events);
    events
}

/// Scans `bytes` from `from`; returns the end offset of the last match.
fn scan(bytes: &[u8], mut from: usize, events: &mut Vec<SignalEvent>) -> usize {
    loop {
        let rest = &bytes[from..];
        let mut best: Option<(usize, usize, SignalEvent)> = None;
        let mut consider = |start: usize, end: usize, make: &dyn Fn() -> SignalEvent| {
            if best.as_ref().is_none_or(|(s, _, _)| start < *s) {
                best = Some((start, end, make()));
            }
        };
        if let Some(c) = SIGNAL.captures(rest) {
            let m = c.get(0).unwrap();
            let (name, params) = (text(&c[1]), text(&c[2]));
            consider(m.start(), m.end(), &|| SignalEvent {
                signal: interpret(&name, &params),
                name: name.clone(),
                params: params.clone(),
            });
        }
        if let Some(c) = MULTINODE.captures(rest) {
            let m = c.get(0).unwrap();
            let (api, params) = (text(&c[1]), text(&c[2]));
            consider(m.start(), m.end(), &|| SignalEvent {
                signal: Signal::Multinode {
                    request: MultinodeRequest::parse(&api, &params),
                },
                name: api.clone(),
                params: params.clone(),
            });
        }
        for (marker, signal, params) in [
            (RUNNER_EXIT, Signal::RunnerExit, "EXIT"),
            (
                RUNNER_INSTALL_FAIL,
                Signal::RunnerInstallFail,
                "INSTALL_FAIL",
            ),
        ] {
            if let Some(start) = find(rest, marker.as_bytes()) {
                consider(start, start + marker.len(), &|| SignalEvent {
                    name: "TEST_RUNNER".into(),
                    params: params.into(),
                    signal: signal.clone(),
                });
            }
        }
        match best {
            Some((_, end, event)) => {
                events.push(event);
                from += end;
            }
            None => return from,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Incremental parser: feed it console output in any chunks; complete markers are
/// reported as soon as their closing `>` arrives, each once.
#[derive(Debug, Clone, Default)]
pub struct SignalParser {
    line: Vec<u8>,
    /// Offset in `line` up to which signals were already reported.
    reported: usize,
}

/// Longest partial line kept; markers are short, older bytes of an endless line
/// are dropped.
const MAX_PENDING: usize = 64 * 1024;
const KEEP_AFTER_TRIM: usize = 4 * 1024;

impl SignalParser {
    /// A parser with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk of console output and returns the signals it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SignalEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..newline]);
            scan(&self.line, self.reported, &mut events);
            self.line.clear();
            self.reported = 0;
            rest = &rest[newline + 1..];
        }
        self.line.extend_from_slice(rest);
        self.reported = scan(&self.line, self.reported, &mut events);
        if self.line.len() > MAX_PENDING {
            let drop = self.line.len() - KEEP_AFTER_TRIM;
            self.line.drain(..drop);
            self.reported = self.reported.saturating_sub(drop);
        }
        events
    }

    /// Feeds text (see [`SignalParser::feed`]).
    pub fn feed_str(&mut self, chunk: &str) -> Vec<SignalEvent> {
        self.feed(chunk.as_bytes())
    }
}

/// Hands MultiNode requests among `events` to `hook`, returning (request, outcome)
/// pairs in order.
pub fn dispatch_multinode<'a>(
    events: &'a [SignalEvent],
    hook: &mut dyn MultinodeHook,
) -> Vec<(&'a MultinodeRequest, MultinodeOutcome)> {
    events
        .iter()
        .filter_map(|e| match &e.signal {
            Signal::Multinode { request } => Some((request, hook.handle(request))),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_marker() {
        let s = |line: &str| {
            parse_line(line)
                .into_iter()
                .map(|e| e.signal)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            s("<LAVA_SIGNAL_STARTRUN 0_smoke 1234_1.1.2.1>"),
            vec![Signal::StartRun {
                test_run_id: "0_smoke".into(),
                uuid: "1234_1.1.2.1".into()
            }]
        );
        assert_eq!(
            s("[  12.3] <0><LAVA_SIGNAL_ENDRUN 0_smoke 1_2>\r"),
            vec![Signal::EndRun {
                test_run_id: "0_smoke".into(),
                uuid: "1_2".into()
            }]
        );
        let tc = s("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass UNITS=s MEASUREMENT=1.5>");
        let Signal::TestCase { fields } = &tc[0] else {
            panic!()
        };
        assert_eq!(fields["test_case_id"], "a");
        assert_eq!(fields["measurement"], "1.5");
        assert_eq!(s("<LAVA_SIGNAL_TESTSET STOP>"), vec![Signal::TestSetStop]);
        assert_eq!(
            s("<LAVA_SIGNAL_TESTSET START net>"),
            vec![Signal::TestSetStart { name: "net".into() }]
        );
        assert!(matches!(
            s("<LAVA_SIGNAL_TESTREFERENCE a pass>")[0],
            Signal::Invalid { .. }
        ));
        assert_eq!(
            s("<LAVA_SIGNAL_RETRUNCODE 0>"),
            vec![Signal::ReturnCode { code: 0 }]
        );
        assert_eq!(s("x <LAVA_TEST_RUNNER EXIT> y"), vec![Signal::RunnerExit]);
        assert_eq!(s("<LAVA_SIGNAL_STARTTC a><LAVA_SIGNAL_ENDTC a>").len(), 2);
        assert!(s("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass").is_empty());
    }

    #[test]
    fn multinode_requests() {
        let r = |line: &str| match parse_line(line).remove(0).signal {
            Signal::Multinode { request } => request,
            other => panic!("{other:?}"),
        };
        let send = r("<LAVA_MULTI_NODE> <LAVA_SEND id k1=hello world k2=x=y>");
        let MultinodeRequest::Send { message_id, data } = &send else {
            panic!()
        };
        assert_eq!(message_id, "id");
        assert_eq!(data["k1"], "hello world");
        assert_eq!(data["k2"], "x=y");
        assert_eq!(send.case_name().unwrap(), "multinode-send-id");
        assert_eq!(
            r("<LAVA_MULTI_NODE> <LAVA_WAIT_ALL done client>"),
            MultinodeRequest::WaitAll {
                message_id: "done".into(),
                role: Some("client".into())
            }
        );
        assert_eq!(
            r("<LAVA_MULTI_NODE> <LAVA_WAIT_ALL Done>")
                .case_name()
                .unwrap(),
            "multinode-wait_all-done"
        );
        assert!(matches!(
            r("<LAVA_MULTI_NODE> <LAVA_SYNC a b>"),
            MultinodeRequest::Invalid { .. }
        ));
        assert!(matches!(
            r("<LAVA_MULTI_NODE> <LAVA_FOO x>"),
            MultinodeRequest::Unknown { .. }
        ));
        assert!(parse_line("<LAVA_WAIT_COMPLETE 7001:a=b>").is_empty());
    }

    #[test]
    fn replies() {
        let mut data = IndexMap::new();
        data.insert(
            "7001".to_string(),
            IndexMap::from([
                ("ip".to_string(), "10.0.0.1".to_string()),
                ("port".to_string(), "5201".to_string()),
            ]),
        );
        data.insert("7002".to_string(), IndexMap::new());
        assert_eq!(
            multinode_reply_line("WAIT_ALL", &MultinodeReply::Data(data)),
            "<LAVA_WAIT_ALL_COMPLETE 7001:ip=10.0.0.1 7001:port=5201>"
        );
        assert_eq!(
            multinode_reply_line("SYNC", &MultinodeReply::Data(IndexMap::new())),
            "<LAVA_SYNC_COMPLETE>"
        );
        assert_eq!(
            multinode_reply_line("WAIT", &MultinodeReply::Nack),
            "<LAVA_WAIT_COMPLETE nack>"
        );
    }

    #[test]
    fn incremental_feeding_reports_once() {
        let mut p = SignalParser::new();
        assert!(p.feed(b"noise <LAVA_SIGNAL_STAR").is_empty());
        let e = p.feed(b"TTC a> more");
        assert_eq!(e.len(), 1);
        assert!(p.feed(b" text\n").is_empty(), "reported twice");
        let e = p.feed(b"<LAVA_SIGNAL_ENDTC a>\n<LAVA_TEST_RUNNER EX");
        assert_eq!(e.len(), 1);
        assert_eq!(p.feed(b"IT>\r\n")[0].signal, Signal::RunnerExit);
    }
}
