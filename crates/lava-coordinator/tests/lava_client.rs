//! LAVA's own dispatcher-side client against our coordinator, compared with
//! Debian's `lava-coordinator` (2023.01) running the identical scenario.
//!
//! Scenarios:
//! * test-shell markers in a three-node group (server 7001, clients 7002
//!   and 7003): `lava-send` with and without a payload, `lava-wait`,
//!   `lava-wait-all` with and without a role (including LAVA's `nack` for an
//!   ID nobody sent), `lava-sync`, then `clear_group`;
//! * calls from actions' `protocols:` blocks (hyphenated names, a numeric
//!   messageID, a non-map message, non-string and non-ASCII values);
//! * delayed start (`request: lava-start`): a guest that starts only after
//!   the host's `lava-send lava_start`.
//!
//! Members are played by:
//! * LAVA's `MultinodeProtocol` class from the installed `lava_dispatcher`,
//!   fed by LAVA's test-shell signal director (`support/lava_protocol_driver.py`):
//!   LAVA's framing, polling (1 s), request dicts, API results and the line
//!   it would type on the device console;
//! * our [`MultinodeProtocol`], called with the same request dicts.
//!
//! Each group runs against our coordinator and against LAVA's at the same
//! time; every member's replies must be the expected ones and the same on
//! both. Skipped with a printed reason when python3 with `lava_dispatcher`
//! or `/usr/bin/lava-coordinator` is missing, unless CI=true.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lava_actions::protocols::multinode::protocol::{CallReply, MultinodeProtocol, ProtocolParams};
use lava_multinode::ClientSettings;
use lava_test_support::coordinator::{CoordinatorDaemon, lava_daemon_available};
use serde_json::{Value, json};
use support::{DriverMember, ScriptOutput, ScriptProcess, lava_protocol_driver, start_ours};

/// Which implementation plays a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// LAVA's `MultinodeProtocol` in a Python process.
    Lavas,
    /// Our `MultinodeProtocol`.
    Ours,
}

/// A group and what each member must get.
struct Scenario {
    members: &'static [&'static Member],
    /// What each marker must give a member, whichever client plays it.
    expected: fn(&Member) -> Vec<Expected>,
}

/// What one marker must give: the API result, and the line LAVA's signal
/// director types on the console (senders sorted), if any.
type Expected = (Value, Option<&'static str>);

/// One member of a scenario's group and what it asks, in order.
#[derive(Debug)]
struct Member {
    job_id: &'static str,
    role: &'static str,
    /// Delayed start (`request: lava-start`): the role to wait for.
    expect_role: Option<&'static str>,
    markers: &'static [&'static str],
}

/// What a member went through.
#[derive(Debug, Clone)]
struct MemberOutcome {
    /// Wall clock (s since the epoch) when set-up (registration and any
    /// delayed start) returned.
    set_up_done_at: f64,
    steps: Vec<Step>,
}

/// What one marker gave a member.
#[derive(Debug, Clone)]
struct Step {
    marker: String,
    /// Wall clock (s since the epoch) when the call began.
    started_at: f64,
    /// The API result: `"ack"`, `"nack"`, sender → payload, the sync ID.
    reply: Value,
    /// The line LAVA's signal director typed, senders sorted (LAVA only).
    console: Option<String>,
    /// The dict LAVA's signal director gave the protocol (LAVA only).
    request: Option<Value>,
}

const POLL_DELAY_SECS: u64 = 1;
/// The job-level protocol timeout every call carries.
const CALL_TIMEOUT_SECS: u64 = 20;
/// Bound on a whole group run, set-up to clear.
const RUN_DEADLINE: Duration = Duration::from_secs(90);

const SERVER: Member = Member {
    job_id: "7001",
    role: "server",
    expect_role: None,
    markers: &[
        "WAIT_ALL nobody-sent-this",
        "SEND server-ready ip=10.20.0.7 port=5201",
        "SEND server-up",
        "SEND all-ready who=server",
        "WAIT_ALL all-ready",
        "WAIT_ALL all-ready client",
        "SEND server-done result=pass",
        "SYNC finished",
    ],
};

const CLIENT_A: Member = Member {
    job_id: "7002",
    role: "client",
    expect_role: None,
    markers: &[
        "WAIT server-ready",
        "WAIT server-up",
        "SEND all-ready who=7002",
        "WAIT_ALL all-ready",
        "WAIT_ALL server-done server",
        "SYNC finished",
    ],
};

const CLIENT_B: Member = Member {
    job_id: "7003",
    role: "client",
    expect_role: None,
    markers: &[
        "WAIT server-ready",
        "WAIT server-up",
        "SEND all-ready who=7003",
        "WAIT_ALL all-ready",
        "WAIT_ALL server-done server",
        "SYNC finished",
    ],
};

/// Test-shell markers in a three-node group.
const TEST_SHELL: Scenario = Scenario {
    members: &[&SERVER, &CLIENT_A, &CLIENT_B],
    expected: test_shell_replies,
};

fn test_shell_replies(member: &Member) -> Vec<Expected> {
    let everybody =
        json!({"7001": {"who": "server"}, "7002": {"who": "7002"}, "7003": {"who": "7003"}});
    let all_ready = "<LAVA_WAIT_ALL_COMPLETE 7001:who=server 7002:who=7002 7003:who=7003>";
    let ack = || (json!("ack"), None);
    let finished = (json!("finished"), Some("<LAVA_SYNC_COMPLETE>"));
    if member.role == "server" {
        vec![
            (json!("nack"), Some("<LAVA_WAIT_ALL_COMPLETE nack>")),
            ack(),
            ack(),
            ack(),
            (everybody.clone(), Some(all_ready)),
            (everybody, Some(all_ready)),
            ack(),
            finished,
        ]
    } else {
        vec![
            (
                json!({"7001": {"ip": "10.20.0.7", "port": "5201"}}),
                Some("<LAVA_WAIT_COMPLETE 7001:ip=10.20.0.7 7001:port=5201>"),
            ),
            (json!({"7001": {}}), Some("<LAVA_WAIT_COMPLETE>")),
            ack(),
            (everybody, Some(all_ready)),
            (
                json!({"7001": {"result": "pass"}}),
                Some("<LAVA_WAIT_ALL_COMPLETE 7001:result=pass>"),
            ),
            finished,
        ]
    }
}

const HOST: Member = Member {
    job_id: "7001",
    role: "host",
    expect_role: None,
    markers: &[
        r#"{"action": "prepare-scp-overlay", "request": "lava-send", "messageID": "ipv4", "message": {"ipaddr": "10.0.0.5", "port": 22, "owner": "Jos\u00e9 \u2713"}}"#,
        r#"{"request": "lava-send", "messageID": 42, "message": {"n": "forty-two"}}"#,
        r#"{"request": "lava-send", "messageID": "note", "message": "plain"}"#,
        r#"{"request": "lava-sync", "messageID": "done", "timeout": {"seconds": 20}}"#,
    ],
};

const GUEST: Member = Member {
    job_id: "7002",
    role: "guest",
    expect_role: None,
    markers: &[
        r#"{"action": "prepare-scp-overlay", "request": "lava-wait", "messageID": "ipv4", "message": {"ipaddr": "$ipaddr"}}"#,
        r#"{"request": "lava-wait-all", "messageID": "ipv4", "role": "host"}"#,
        r#"{"request": "lava-wait", "messageID": 42}"#,
        r#"{"request": "lava-wait", "messageID": "note"}"#,
        r#"{"request": "lava-sync", "messageID": "done", "timeout": 20}"#,
    ],
};

/// Calls from actions' `protocols:` blocks (hyphenated names, non-string
/// values, a numeric messageID, a non-map message, non-ASCII text) in a
/// two-node group.
const ACTION_CALLS: Scenario = Scenario {
    members: &[&HOST, &GUEST],
    expected: action_call_replies,
};

fn action_call_replies(member: &Member) -> Vec<Expected> {
    let ipv4 = json!({"7001": {"ipaddr": "10.0.0.5", "port": 22, "owner": "Jos\u{e9} \u{2713}"}});
    if member.role == "host" {
        vec![
            (json!("ack"), None),
            (json!("ack"), None),
            (json!("ack"), None),
            (json!("done"), None),
        ]
    } else {
        vec![
            (ipv4.clone(), None),
            (ipv4, None),
            (json!({"7001": {"n": "forty-two"}}), None),
            (json!({"7001": {"plain": null}}), None),
            (json!("done"), None),
        ]
    }
}

const STARTER: Member = Member {
    job_id: "7001",
    role: "host",
    expect_role: None,
    markers: &[
        "SEND lava_start",
        "SEND ipv4 ipaddr=10.0.0.5",
        "SYNC booted",
    ],
};

const DELAYED: Member = Member {
    job_id: "7002",
    role: "guest",
    expect_role: Some("host"),
    markers: &["WAIT ipv4", "SYNC booted"],
};

/// A guest whose start is delayed until the host's `lava-send lava_start`.
const DELAYED_START: Scenario = Scenario {
    members: &[&STARTER, &DELAYED],
    expected: delayed_start_replies,
};

fn delayed_start_replies(member: &Member) -> Vec<Expected> {
    let booted = (json!("booted"), Some("<LAVA_SYNC_COMPLETE>"));
    if member.role == "host" {
        vec![(json!("ack"), None), (json!("ack"), None), booted]
    } else {
        vec![
            (
                json!({"7001": {"ipaddr": "10.0.0.5"}}),
                Some("<LAVA_WAIT_COMPLETE 7001:ipaddr=10.0.0.5>"),
            ),
            booted,
        ]
    }
}

/// What the protocol object is called with for a marker: a JSON marker as
/// it is (an action's call), a test-shell marker as LAVA's handler builds it.
fn call_dict(marker: &str) -> Value {
    if marker.starts_with('{') {
        serde_json::from_str(marker).expect("a JSON marker is a JSON object")
    } else {
        handler_request(marker)
    }
}

/// The dict LAVA's test-shell signal director hands the protocol for a
/// marker (multinode.md §7.4), the job-level timeout included. Our protocol
/// is called with it; the all-LAVA test checks it against LAVA's own.
fn handler_request(marker: &str) -> Value {
    let mut words = marker.split_whitespace();
    let api = words.next().expect("marker has an API name");
    let message_id = words.next().expect("marker has a messageID");
    let rest: Vec<&str> = words.collect();
    let mut request = match api {
        "SEND" => {
            let payload: serde_json::Map<String, Value> = rest
                .iter()
                .filter_map(|pair| pair.split_once('='))
                .map(|(key, value)| (key.to_string(), json!(value)))
                .collect();
            json!({"request": "lava_send", "messageID": message_id, "message": payload})
        }
        "WAIT" => json!({"request": "lava_wait", "messageID": message_id, "message": null}),
        "WAIT_ALL" => {
            json!({"request": "lava_wait_all", "messageID": message_id, "role": rest.first()})
        }
        "SYNC" => json!({"request": "lava_sync", "messageID": message_id, "message": null}),
        other => panic!("no such marker API {other}"),
    };
    request["timeout"] = json!(CALL_TIMEOUT_SECS);
    request
}

/// `<LAVA_X_COMPLETE b:k=v a:k=v>` with its items sorted: senders of one
/// message ID are listed in sending order, which races between clients.
fn console_with_sorted_senders(line: &str) -> String {
    let inner = line.strip_suffix('>').unwrap_or(line);
    let mut words = inner.split(' ');
    let prefix = words.next().unwrap_or_default();
    let mut items: Vec<&str> = words.collect();
    items.sort_unstable();
    let mut sorted = prefix.to_string();
    for item in items {
        sorted.push(' ');
        sorted.push_str(item);
    }
    sorted.push('>');
    sorted
}

/// A scenario being played against one coordinator.
struct GroupRun {
    label: String,
    scenario: &'static Scenario,
    members: Vec<MemberRun>,
}

enum MemberRun {
    Lavas(ScriptProcess),
    Ours(tokio::task::JoinHandle<Result<MemberOutcome, String>>),
}

impl GroupRun {
    /// Start every member of `scenario` at once against `address`, in group
    /// `target_group`, member `i` played by `clients[i]`.
    fn start(
        runtime: &tokio::runtime::Runtime,
        label: &str,
        address: SocketAddr,
        target_group: &str,
        scenario: &'static Scenario,
        clients: &[Client],
    ) -> GroupRun {
        assert_eq!(
            clients.len(),
            scenario.members.len(),
            "one client per member"
        );
        let group_size = scenario.members.len() as u64;
        let members = scenario
            .members
            .iter()
            .zip(clients)
            .map(|(member, client)| match client {
                Client::Lavas => MemberRun::Lavas(lava_protocol_driver(
                    address,
                    POLL_DELAY_SECS,
                    &DriverMember {
                        target_group,
                        group_size,
                        role: member.role,
                        job_id: member.job_id,
                        timeout_secs: CALL_TIMEOUT_SECS,
                        expect_role: member.expect_role,
                        markers: member.markers,
                    },
                )),
                Client::Ours => MemberRun::Ours(runtime.spawn(play_ours(
                    address,
                    target_group.to_string(),
                    group_size,
                    member,
                ))),
            })
            .collect();
        GroupRun {
            label: label.to_string(),
            scenario,
            members,
        }
    }

    /// Every member's outcome, in the scenario's order, once all are done.
    fn finish(self, runtime: &tokio::runtime::Runtime, deadline: Instant) -> Vec<MemberOutcome> {
        let label = self.label;
        self.members
            .into_iter()
            .zip(self.scenario.members)
            .map(|(run, member)| match run {
                MemberRun::Lavas(driver) => {
                    outcome_of_driver(&label, member, driver.finish(deadline))
                }
                MemberRun::Ours(task) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match runtime.block_on(async { tokio::time::timeout(left, task).await }) {
                        Ok(Ok(Ok(outcome))) => outcome,
                        Ok(Ok(Err(error))) => panic!("{label}: our {}: {error}", member.job_id),
                        Ok(Err(panicked)) => panic!("{label}: our {}: {panicked}", member.job_id),
                        Err(_) => panic!("{label}: our {} did not finish in time", member.job_id),
                    }
                }
            })
            .collect()
    }
}

/// What a LAVA driver reported; it must have set up, run every marker and
/// finalised.
fn outcome_of_driver(label: &str, member: &Member, output: ScriptOutput) -> MemberOutcome {
    let log = &output.stderr;
    assert!(
        output.success,
        "{label}: LAVA's {} failed; lines {:?}; log:\n{log}",
        member.job_id, output.lines
    );
    let lines = &output.lines;
    assert_eq!(lines.len(), member.markers.len() + 2, "{label}: {log}");
    let set_up_done_at = lines[0]["set_up_done_at"]
        .as_f64()
        .expect("set-up line first");
    assert_eq!(
        lines[lines.len() - 1],
        json!({"finalised": true}),
        "{label}: {}",
        member.job_id
    );
    let steps = lines[1..lines.len() - 1]
        .iter()
        .map(|line| {
            assert_eq!(line["handled"], json!(true), "{label}: {line}");
            Step {
                marker: line["marker"].as_str().unwrap_or_default().to_string(),
                started_at: line["started_at"].as_f64().unwrap_or_default(),
                reply: line["reply"].clone(),
                console: line["console"].as_str().map(console_with_sorted_senders),
                request: Some(line["request"].clone()),
            }
        })
        .collect();
    MemberOutcome {
        set_up_done_at,
        steps,
    }
}

/// One member played by our protocol object: set-up (registration), each
/// marker's call as LAVA's dispatcher would make it, then finalise.
async fn play_ours(
    address: SocketAddr,
    target_group: String,
    group_size: u64,
    member: &'static Member,
) -> Result<MemberOutcome, String> {
    let mut block = json!({
        "target_group": target_group,
        "role": member.role,
        "group_size": group_size,
        "timeout": {"seconds": CALL_TIMEOUT_SECS},
    });
    if let Some(role) = member.expect_role {
        block["request"] = json!("lava-start");
        block["expect_role"] = json!(role);
    }
    let params = ProtocolParams::from_block(&serde_json::from_value(block).unwrap())
        .map_err(|e| e.to_string())?;
    let mut settings = ClientSettings::for_address(address);
    settings.poll_delay = Duration::from_secs(POLL_DELAY_SECS);
    let protocol = MultinodeProtocol::new(params, member.job_id, "worker-test", settings);
    protocol
        .set_up()
        .await
        .map_err(|e| format!("set_up: {e}"))?;
    let set_up_done_at = wall_clock();
    let mut steps = Vec::new();
    for marker in member.markers {
        let call = serde_json::from_value(call_dict(marker)).unwrap();
        let started_at = wall_clock();
        let reply = protocol
            .call(&call)
            .await
            .map_err(|e| format!("{marker}: {e}"))?;
        steps.push(Step {
            marker: marker.to_string(),
            started_at,
            reply: api_result(reply),
            console: None,
            request: None,
        });
    }
    protocol
        .finalise()
        .await
        .map_err(|e| format!("finalise: {e}"))?;
    Ok(MemberOutcome {
        set_up_done_at,
        steps,
    })
}

/// Seconds since the epoch, comparable with Python's `time.time()`.
fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs_f64()
}

/// A protocol reply as LAVA's API layer returns it to its caller.
fn api_result(reply: CallReply) -> Value {
    match reply {
        CallReply::Word(word) => json!(word),
        CallReply::Senders(senders) => serde_json::to_value(senders).unwrap(),
        CallReply::Text(text) => json!(text),
        CallReply::Other(value) => value,
    }
}

/// Every member got the expected replies (and, for LAVA's class, console
/// lines and request dicts).
fn assert_expected(label: &str, scenario: &Scenario, outcomes: &[MemberOutcome]) {
    for (member, outcome) in scenario.members.iter().zip(outcomes) {
        let steps = &outcome.steps;
        let expected = (scenario.expected)(member);
        assert_eq!(steps.len(), expected.len(), "{label}: {}", member.job_id);
        for ((step, marker), (reply, console)) in steps.iter().zip(member.markers).zip(expected) {
            let at = format!("{label}: {} {marker}", member.job_id);
            assert_eq!(step.marker, *marker, "{at}");
            assert_eq!(step.reply, reply, "{at}");
            if let Some(request) = &step.request {
                assert_eq!(request, &call_dict(marker), "{at}: request dict");
                assert_eq!(step.console.as_deref(), console, "{at}: console line");
            }
        }
    }
}

/// The same replies, member by member, from both coordinators.
fn assert_agree(label: &str, ours: &[MemberOutcome], lavas: &[MemberOutcome]) {
    let replies = |outcomes: &[MemberOutcome]| -> Vec<Vec<(String, Value, Option<String>)>> {
        outcomes
            .iter()
            .map(|member| {
                member
                    .steps
                    .iter()
                    .map(|s| (s.marker.clone(), s.reply.clone(), s.console.clone()))
                    .collect()
            })
            .collect()
    };
    assert_eq!(
        replies(ours),
        replies(lavas),
        "{label}: our coordinator vs LAVA's"
    );
}

/// One run's label and its members' outcomes on ours and on LAVA's.
type Outcomes = (String, Vec<MemberOutcome>, Vec<MemberOutcome>);

/// Both coordinators, and the runtime that serves ours and our clients.
struct Coordinators {
    ours: lava_coordinator::CoordinatorHandle,
    lavas: CoordinatorDaemon,
    runtime: tokio::runtime::Runtime,
}

impl Coordinators {
    /// `None` (test skipped) when LAVA's pieces are missing outside CI.
    fn start() -> Option<Coordinators> {
        if !support::lava_dispatcher_available() || !lava_daemon_available() {
            return None;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ours = runtime.block_on(start_ours(|_| {}));
        Some(Coordinators {
            ours,
            lavas: CoordinatorDaemon::lavas(),
            runtime,
        })
    }

    /// Play `scenario` with `clients` on both coordinators at once, each run
    /// in its own group; check each member got the expected replies on both.
    fn play_on_both(&self, label: &str, scenario: &'static Scenario, clients: &[Client]) {
        let group = label.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        self.check_both(vec![(
            label.to_string(),
            self.start_on_both(label, &group, scenario, clients),
        )]);
    }

    /// Play `scenario` on both coordinators with each of `mixes` at once.
    fn play_mixes_on_both(
        &self,
        scenario: &'static Scenario,
        mixes: &[(&str, &[Client])],
    ) -> Vec<Outcomes> {
        let runs = mixes
            .iter()
            .map(|(label, clients)| {
                let group = label.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
                let pair = self.start_on_both(label, &group, scenario, clients);
                (label.to_string(), pair)
            })
            .collect();
        self.check_both(runs)
    }

    fn start_on_both(
        &self,
        label: &str,
        group: &str,
        scenario: &'static Scenario,
        clients: &[Client],
    ) -> (GroupRun, GroupRun) {
        let on_ours = GroupRun::start(
            &self.runtime,
            &format!("{label} on our coordinator"),
            self.ours.local_addr(),
            &format!("{group}-ours"),
            scenario,
            clients,
        );
        let on_lavas = GroupRun::start(
            &self.runtime,
            &format!("{label} on LAVA's coordinator"),
            self.lavas.address,
            &format!("{group}-lavas"),
            scenario,
            clients,
        );
        (on_ours, on_lavas)
    }

    /// Wait for every run; check each member got the expected replies and
    /// that both coordinators agree. Returns the outcomes (ours, LAVA's).
    fn check_both(&self, runs: Vec<(String, (GroupRun, GroupRun))>) -> Vec<Outcomes> {
        let deadline = Instant::now() + RUN_DEADLINE;
        runs.into_iter()
            .map(|(label, (on_ours, on_lavas))| {
                let scenario = on_ours.scenario;
                let (ours_label, lavas_label) = (on_ours.label.clone(), on_lavas.label.clone());
                let ours = on_ours.finish(&self.runtime, deadline);
                let lavas = on_lavas.finish(&self.runtime, deadline);
                assert_expected(&lavas_label, scenario, &lavas);
                assert_expected(&ours_label, scenario, &ours);
                assert_agree(&label, &ours, &lavas);
                (label, ours, lavas)
            })
            .collect()
    }

    /// Every group was cleared from ours and LAVA's daemon is still up.
    fn assert_clean(mut self) {
        assert_eq!(
            self.ours.stats().groups.groups,
            0,
            "clear_group removed every group"
        );
        assert!(self.lavas.alive(), "LAVA's coordinator survived");
        self.runtime.block_on(self.ours.shutdown()).unwrap();
    }
}

#[test]
fn lavas_protocol_class_gets_the_same_replies_from_our_coordinator_as_from_lavas() {
    let Some(coordinators) = Coordinators::start() else {
        return;
    };
    let started = Instant::now();
    coordinators.play_on_both("LAVA's class", &TEST_SHELL, &[Client::Lavas; 3]);
    coordinators.assert_clean();
    eprintln!("both runs took {:?}", started.elapsed());
}

#[test]
fn mixed_groups_of_lavas_class_and_our_protocol_agree_on_both_coordinators() {
    let Some(coordinators) = Coordinators::start() else {
        return;
    };
    let started = Instant::now();
    coordinators.play_mixes_on_both(
        &TEST_SHELL,
        &[
            (
                "LAVA's server, our clients",
                &[Client::Lavas, Client::Ours, Client::Ours],
            ),
            (
                "our server, LAVA's clients",
                &[Client::Ours, Client::Lavas, Client::Lavas],
            ),
        ],
    );
    coordinators.assert_clean();
    eprintln!("four runs took {:?}", started.elapsed());
}

#[test]
fn action_protocol_calls_of_lavas_class_get_the_same_replies_from_both_coordinators() {
    let Some(coordinators) = Coordinators::start() else {
        return;
    };
    let started = Instant::now();
    coordinators.play_on_both("action calls", &ACTION_CALLS, &[Client::Lavas; 2]);
    coordinators.assert_clean();
    eprintln!("both runs took {:?}", started.elapsed());
}

/// The numeric `messageID: 42` crosses between LAVA's class and our protocol object
/// both ways: on LAVA's coordinator 42 and "42" are different keys, so our side must send
/// the number as a number for the waiting side to be released.
#[test]
fn action_calls_with_a_numeric_message_id_agree_in_mixed_groups_on_both_coordinators() {
    let Some(coordinators) = Coordinators::start() else {
        return;
    };
    let started = Instant::now();
    coordinators.play_mixes_on_both(
        &ACTION_CALLS,
        &[
            ("LAVA's host, our guest", &[Client::Lavas, Client::Ours]),
            ("our host, LAVA's guest", &[Client::Ours, Client::Lavas]),
        ],
    );
    coordinators.assert_clean();
    eprintln!("four runs took {:?}", started.elapsed());
}

#[test]
fn delayed_start_waits_for_lava_start_with_either_client_on_both_coordinators() {
    let Some(coordinators) = Coordinators::start() else {
        return;
    };
    let started = Instant::now();
    let runs = coordinators.play_mixes_on_both(
        &DELAYED_START,
        &[
            ("LAVA's host and guest", &[Client::Lavas, Client::Lavas]),
            ("LAVA's host, our guest", &[Client::Lavas, Client::Ours]),
            ("our host, LAVA's guest", &[Client::Ours, Client::Lavas]),
        ],
    );
    for (label, ours, lavas) in runs {
        for (coordinator, outcome) in [("ours", ours), ("LAVA's", lavas)] {
            let lava_start_sent_from = outcome[0].steps[0].started_at;
            assert!(
                outcome[1].set_up_done_at > lava_start_sent_from,
                "{label} on {coordinator}: the guest started before the host sent lava_start"
            );
        }
    }
    coordinators.assert_clean();
    eprintln!("six runs took {:?}", started.elapsed());
}
