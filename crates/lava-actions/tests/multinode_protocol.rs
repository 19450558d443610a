//! The protocol object and the test-shell hook against our coordinator on a
//! loopback port: registration, calls from actions, delayed start, the
//! hook's console replies, timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lava_actions::protocols::multinode::hook::ShellHook;
use lava_actions::protocols::multinode::protocol::{
    CallReply, ErrorClass, MultinodeError, MultinodeProtocol, ProtocolParams,
};
use lava_coordinator::{BrokerSettings, Coordinator, CoordinatorHandle};
use lava_multinode::ClientSettings;
use lava_multinode::split::{SplitOptions, assign_roles, split_with};
use lava_shell::signals::MultinodeOutcome;
use lava_shell::{MultinodeHook, MultinodeRequest};
use serde_yaml::{Mapping, Value};

/// Our coordinator on a loopback port, served by a runtime of its own: the
/// synchronous hook blocks the thread that calls it, and a broker on that
/// same (current-thread) runtime would then never answer.
struct Broker {
    runtime: Option<tokio::runtime::Runtime>,
    handle: CoordinatorHandle,
}

impl Broker {
    fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    fn stats(&self) -> lava_coordinator::BrokerStats {
        self.handle.stats()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn broker() -> Broker {
    broker_at("127.0.0.1:0".parse().unwrap()).await
}

/// [`broker`] on `listen` (a coordinator restarted on the address of one that died).
async fn broker_at(listen: SocketAddr) -> Broker {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.block_on(async {
            let settings = BrokerSettings {
                listen,
                ..BrokerSettings::default()
            };
            Coordinator::bind(settings, 1).await.unwrap().spawn()
        });
        Broker {
            runtime: Some(runtime),
            handle,
        }
    })
    .join()
    .unwrap()
}

fn settings(address: SocketAddr, push: bool) -> ClientSettings {
    let mut settings = ClientSettings::for_address(address);
    settings.push = push;
    settings.poll_delay = Duration::from_millis(50);
    settings.max_backoff = Duration::from_millis(200);
    settings
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml::from_str(text).unwrap()
}

/// Node protocols for every job of a fixture, with job ids from 7001.
fn group(fixture: &str, group: &str, address: SocketAddr, push: bool) -> Vec<MultinodeProtocol> {
    let path = format!(
        "{}/../../fixtures/multinode/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let submission: Mapping = yaml(&std::fs::read_to_string(path).unwrap());
    let mut jobs = split_with(&submission, group, SplitOptions::MASTER).unwrap();
    assign_roles(&mut jobs, 7001);
    jobs.iter()
        .enumerate()
        .map(|(i, job)| {
            let protocols = job.definition["protocols"].as_mapping().unwrap();
            assert!(ProtocolParams::accepts(protocols));
            let params = ProtocolParams::from_job_protocols(protocols).unwrap();
            assert!(params.validate().is_empty());
            MultinodeProtocol::new(
                params,
                &(7001 + i).to_string(),
                "worker-test",
                settings(address, push),
            )
        })
        .collect()
}

/// A node job split from a submission carries the roles, its sub id and the group
/// timeout in the block its protocol object reads.
#[test]
fn split_node_jobs_carry_the_block_the_protocol_reads() {
    let path = format!(
        "{}/../../fixtures/multinode/server-client.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let submission: Mapping = yaml(&std::fs::read_to_string(path).unwrap());
    let mut jobs = split_with(&submission, "group-1", SplitOptions::MASTER).unwrap();
    let roles = assign_roles(&mut jobs, 98);
    let params =
        ProtocolParams::from_block(&jobs[2].definition["protocols"]["lava-multinode"]).unwrap();
    assert_eq!(params.roles, roles);
    assert_eq!(params.sub_id, Some(2));
    assert_eq!(params.timeout, Some(Duration::from_secs(600)));
}

async fn set_up_all(nodes: &[MultinodeProtocol]) {
    let mut tasks = tokio::task::JoinSet::new();
    for node in nodes {
        let node = node.clone();
        tasks.spawn(async move { node.set_up().await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().expect("set_up");
    }
}

async fn server_and_clients(push: bool) {
    let server = broker().await;
    let group_name = if push { "sc-push" } else { "sc-poll" };
    let nodes = group("server-client.yaml", group_name, server.local_addr(), push);
    let (srv, cli1, cli2) = (&nodes[0], &nodes[1], &nodes[2]);
    set_up_all(&nodes).await;
    assert_eq!(srv.group().len(), 3);
    assert_eq!(cli2.group()["7001"], "server");

    // A client waits for data from an action's protocol block, before the send.
    let calls: Value = yaml(
        "lava-multinode:\n\
         - {action: prepare-scp-overlay, request: lava-wait, messageID: ipv4, \
            message: {ipaddr: $ipaddr}, timeout: {seconds: 20}}\n\
         - {action: other-action, request: lava-sync, messageID: never}\n",
    );
    let waiter = {
        let cli1 = cli1.clone();
        tokio::spawn(async move {
            cli1.calls_for_action("prepare-scp-overlay", Some(&calls))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiter.is_finished());
    let sent = srv
        .call(&yaml(
            "{request: lava-send, messageID: ipv4, message: {ipaddr: 10.0.0.5, port: '22'}}",
        ))
        .await
        .unwrap();
    assert_eq!(sent, CallReply::Word("ack"));
    let stored = waiter.await.unwrap().unwrap();
    assert_eq!(
        stored,
        vec![("ipv4".to_string(), yaml::<Mapping>("ipaddr: 10.0.0.5"))]
    );
    // The call's timeout sticks for later calls.
    assert_eq!(cli1.poll_timeout(), Duration::from_secs(20));

    // wait-all for a role: released by the (only) server.
    let reply = cli2
        .call(&yaml(
            "{request: lava-wait-all, messageID: ipv4, role: server}",
        ))
        .await
        .unwrap();
    let CallReply::Senders(senders) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(senders.keys().collect::<Vec<_>>(), ["7001"]);

    // wait-all for everybody before anybody sent: nack, at once.
    let started = Instant::now();
    let reply = cli2
        .call(&yaml("{request: lava-wait-all, messageID: nobody}"))
        .await
        .unwrap();
    assert!(reply.is_nack());
    assert!(started.elapsed() < Duration::from_secs(2));

    // A barrier across the three nodes.
    let mut tasks = tokio::task::JoinSet::new();
    for node in &nodes {
        let node = node.clone();
        tasks.spawn(async move {
            node.call(&yaml("{request: lava-sync, messageID: done}"))
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), CallReply::Text("done".into()));
    }

    // Calls that are not made or not supported.
    let error = srv
        .call(&yaml("{request: lava-frobnicate, messageID: x}"))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "Unsupported api call: lava_frobnicate");
    assert_eq!(error.class(), ErrorClass::Test);
    let error = srv
        .call(&yaml("{request: aggregate, messageID: x}"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Pipeline submission has not been implemented."
    );

    // Finalise: once per node; the group is gone after the last.
    assert_eq!(server.stats().groups.groups, 1);
    for node in &nodes {
        node.finalise().await.unwrap();
        node.finalise().await.unwrap();
        assert!(node.is_cleared());
    }
    assert_eq!(server.stats().groups.groups, 0);
    drop(server);
}

#[tokio::test]
async fn server_and_clients_with_push() {
    server_and_clients(true).await;
}

#[tokio::test]
async fn server_and_clients_polling() {
    server_and_clients(false).await;
}

#[tokio::test]
async fn guests_start_when_the_host_sends_lava_start() {
    let server = broker().await;
    let nodes = group("host-guest.yaml", "hg", server.local_addr(), true);
    let (host, guests) = (&nodes[0], &nodes[1..]);
    assert_eq!(host.params().delayed_start_role(), None);
    for guest in guests {
        assert_eq!(guest.params().delayed_start_role(), Some("host"));
        // The role's timeout (15 min) is the guest's system timeout.
        assert_eq!(guest.system_timeout(), Duration::from_secs(900));
    }
    assert_eq!(host.system_timeout(), Duration::from_secs(90));

    let mut starting = tokio::task::JoinSet::new();
    for guest in guests {
        let guest = guest.clone();
        starting.spawn(async move { guest.set_up().await });
    }
    host.set_up().await.unwrap();
    // Registered, but the guests wait for the host's signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(starting.len(), 2);
    assert!(starting.try_join_next().is_none());

    // Our `request: lava-start` in an action block sends `lava_start`.
    let reply = host
        .call(&yaml("{request: lava-start, message: {ip: 10.0.0.9}}"))
        .await
        .unwrap();
    assert_eq!(reply, CallReply::Word("ack"));
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(result) = starting.join_next().await {
            result.unwrap().unwrap();
        }
    })
    .await;
    assert!(released.is_ok(), "guests were not released");
    // The start message is available to the guests.
    let reply = guests[0].wait("lava_start").await.unwrap();
    let CallReply::Senders(senders) = reply else {
        panic!("{reply:?}")
    };
    assert!(senders.contains_key("7001"));

    for node in &nodes {
        node.finalise().await.unwrap();
    }
    assert_eq!(server.stats().groups.groups, 0);
    drop(server);
}

#[tokio::test]
async fn registration_times_out_with_the_named_error_and_clears_once() {
    let server = broker().await;
    let nodes = group("server-client.yaml", "lonely", server.local_addr(), true);
    let node = &nodes[0];
    node.set_system_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let error = node.set_up().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, MultinodeError::Timeout { .. }), "{error}");
    assert!(error.is_timeout());
    assert_eq!(error.class(), ErrorClass::MultinodeTimeout);
    assert!(
        error
            .to_string()
            .starts_with("protocol lava-multinode timed out")
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    // The group was left at the timeout (and so deleted: its only member
    // cleared); the finalize step does not clear again.
    assert!(node.is_cleared());
    assert_eq!(server.stats().groups.groups, 0);
    let before = server.stats().requests;
    node.finalise().await.unwrap();
    assert_eq!(server.stats().requests, before);
    drop(server);
}

#[tokio::test]
async fn an_unreachable_coordinator_times_out_too() {
    // A port nobody listens on.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let nodes = group("server-client.yaml", "nowhere", address, true);
    nodes[0].set_system_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let error = nodes[0].register().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    // Registration (1 s) plus the clear after it (1 s), bounded.
    assert!(started.elapsed() < Duration::from_secs(6));
}

fn outcome(passed: bool, reply: Option<&str>) -> MultinodeOutcome {
    MultinodeOutcome {
        passed,
        reply: reply.map(str::to_string),
    }
}

fn request(api: &str, id: &str) -> MultinodeRequest {
    match api {
        "WAIT" => MultinodeRequest::Wait {
            message_id: id.into(),
        },
        "SYNC" => MultinodeRequest::Sync {
            message_id: id.into(),
        },
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn the_hook_answers_markers_like_lavas_test_shell() {
    let server = broker().await;
    let nodes = group("server-client.yaml", "hooks", server.local_addr(), true);
    set_up_all(&nodes).await;
    // The job-level timeout (10 min) becomes the poll timeout of shell calls.
    let mut server_hook = ShellHook::new(nodes[0].clone());
    assert_eq!(nodes[0].poll_timeout(), Duration::from_secs(600));
    let mut client_hook = ShellHook::new(nodes[1].clone());

    // SEND: no reply line, pass. Called through the synchronous trait from
    // inside this (current-thread) runtime.
    let send = MultinodeRequest::Send {
        message_id: "server-ready".into(),
        data: [("ip", "10.20.0.7"), ("port", "5201")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(server_hook.handle(&send), outcome(true, None));
    assert!(server_hook.take_failure().is_none());

    // WAIT with data.
    assert_eq!(
        client_hook.handle(&request("WAIT", "server-ready")),
        outcome(
            true,
            Some("<LAVA_WAIT_COMPLETE 7001:ip=10.20.0.7 7001:port=5201>")
        )
    );
    // WAIT_ALL for a role, through the async entry point.
    let wait_all = MultinodeRequest::WaitAll {
        message_id: "server-ready".into(),
        role: Some("server".into()),
    };
    assert_eq!(
        client_hook.handle_async(&wait_all).await,
        outcome(
            true,
            Some("<LAVA_WAIT_ALL_COMPLETE 7001:ip=10.20.0.7 7001:port=5201>")
        )
    );
    // WAIT_ALL without role before anybody sent: nack, still a pass.
    let nack = MultinodeRequest::WaitAll {
        message_id: "results-in".into(),
        role: None,
    };
    assert_eq!(
        client_hook.handle(&nack),
        outcome(true, Some("<LAVA_WAIT_ALL_COMPLETE nack>"))
    );
    // An empty send gives a plain completion.
    let empty = MultinodeRequest::Send {
        message_id: "go".into(),
        data: Default::default(),
    };
    assert_eq!(server_hook.handle(&empty), outcome(true, None));
    assert_eq!(
        client_hook.handle(&request("WAIT", "go")),
        outcome(true, Some("<LAVA_WAIT_COMPLETE>"))
    );

    // SYNC across the group, each hook on its own thread.
    let mut threads = Vec::new();
    for node in &nodes {
        let node = node.clone();
        threads.push(std::thread::spawn(move || {
            ShellHook::new(node).handle(&request("SYNC", "iperf-done"))
        }));
    }
    for thread in threads {
        assert_eq!(
            thread.join().unwrap(),
            outcome(true, Some("<LAVA_SYNC_COMPLETE>"))
        );
    }

    // A wrong argument count is a test error, no reply.
    let invalid = MultinodeRequest::Invalid {
        api: "WAIT".into(),
        params: "a b".into(),
        reason: "wrong number of arguments".into(),
    };
    assert_eq!(client_hook.handle(&invalid), outcome(false, None));
    let failure = client_hook.take_failure().unwrap();
    assert_eq!(failure.class(), ErrorClass::Test);

    for node in &nodes {
        node.finalise().await.unwrap();
    }
    drop(server);
}

#[tokio::test]
async fn a_shell_wait_that_times_out_fails_its_case() {
    let server = broker().await;
    let nodes = group(
        "server-client.yaml",
        "shell-timeout",
        server.local_addr(),
        true,
    );
    set_up_all(&nodes).await;

    let mut hook = ShellHook::new(nodes[1].clone());
    nodes[1].set_poll_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let got = hook.handle(&request("WAIT", "never-sent"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Fail, and (our improvement) a nack so the device-side helper returns.
    assert_eq!(got, outcome(false, Some("<LAVA_WAIT_COMPLETE nack>")));
    let failure = hook.take_failure().unwrap();
    assert!(failure.is_timeout());
    assert_eq!(failure.class(), ErrorClass::MultinodeTimeout);
    assert!(nodes[1].is_cleared());

    // LAVA's behaviour: no reply at all.
    let mut quiet = ShellHook::new(nodes[2].clone()).reply_on_timeout(false);
    nodes[2].set_poll_timeout(Duration::from_secs(1));
    assert_eq!(
        quiet.handle_async(&request("SYNC", "alone")).await,
        outcome(false, None)
    );
    assert!(quiet.take_failure().unwrap().is_timeout());
    drop(server);
}

/// Chaos: the coordinator stops mid-group (its runtime shut down without waiting, so a
/// held request's connection is neither answered nor closed at once, as with a frozen or
/// partitioned coordinator) while a member waits for a message. The wait ends within its
/// timeout with LAVA's MultiNode timeout error, never hangs (it did, for the I/O timeout
/// and the hold, before the poll deadline bounded the exchange in flight).
#[tokio::test]
async fn a_coordinator_killed_mid_group_ends_waits_within_their_timeout() {
    let server = broker().await;
    let nodes = group(
        "server-client.yaml",
        "chaos-killed",
        server.local_addr(),
        true,
    );
    set_up_all(&nodes).await;
    nodes[1].set_poll_timeout(Duration::from_secs(2));
    // The clear_group sent after a timeout (LAVA's) is bounded by the system timeout.
    nodes[1].set_system_timeout(Duration::from_secs(1));
    let waiting = nodes[1].clone();
    let started = Instant::now();
    let wait = tokio::spawn(async move { waiting.wait("never-sent").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server);
    let result = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the wait ends on its own")
        .unwrap();
    let elapsed = started.elapsed();
    let error = result.expect_err("no coordinator, no answer");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(error.class(), ErrorClass::MultinodeTimeout);
    assert!(
        error
            .to_string()
            .starts_with("protocol lava-multinode timed out: lava_wait"),
        "{error}"
    );
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
}

/// Chaos: the coordinator is killed and a new one (knowing no group) starts on the same
/// address while members wait. Each call ends within its timeout with a MultiNode error
/// naming the operation (the group is gone with the old coordinator), and a new group
/// on the restarted coordinator works.
#[tokio::test]
async fn a_restarted_coordinator_ends_old_groups_calls_and_serves_new_groups() {
    let server = broker().await;
    let address = server.local_addr();
    let nodes = group("server-client.yaml", "chaos-restarted", address, true);
    set_up_all(&nodes).await;
    for node in &nodes {
        node.set_poll_timeout(Duration::from_secs(2));
        node.set_system_timeout(Duration::from_secs(1));
    }
    let started = Instant::now();
    let waiting = nodes[1].clone();
    let wait = tokio::spawn(async move { waiting.wait("never-sent").await });
    let syncing = nodes[2].clone();
    let sync = tokio::spawn(async move { syncing.sync("after-restart").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = broker_at(address).await;
    for (operation, call) in [("lava_wait", wait), ("lava_sync", sync)] {
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the call ends on its own")
            .unwrap();
        match result {
            // The new coordinator does not know the group: the call fails, named.
            Err(error) => {
                assert!(error.to_string().contains(operation), "{error}");
                assert!(
                    matches!(
                        error.class(),
                        ErrorClass::MultinodeTimeout | ErrorClass::Job
                    ),
                    "{error}"
                );
            }
            Ok(reply) => assert_eq!(reply, CallReply::Word("nack"), "{operation}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // A new group on the restarted coordinator runs.
    let fresh = group(
        "server-client.yaml",
        "chaos-fresh",
        restarted.local_addr(),
        true,
    );
    set_up_all(&fresh).await;
    fresh[0]
        .send("ready", lava_multinode::Payload::empty())
        .await
        .unwrap();
    let reply = fresh[1].wait("ready").await.unwrap();
    assert!(matches!(reply, CallReply::Senders(_)), "{reply:?}");
    drop(restarted);
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn futures_and_the_hook_are_send() {
    let params =
        ProtocolParams::from_block(&yaml("{target_group: g, role: a, group_size: 1}")).unwrap();
    let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let protocol = MultinodeProtocol::new(params, "1", "w", settings(address, true));
    let call: Mapping = yaml("{request: lava-sync, messageID: x}");
    assert_send(&protocol.set_up());
    assert_send(&protocol.call(&call));
    assert_send(&protocol.calls_for_action("a", None));
    assert_send(&protocol.finalise());
    let mut hook = ShellHook::new(protocol);
    let sync = request("SYNC", "x");
    assert_send(&hook.handle_async(&sync));
    assert_send(&hook);
}
