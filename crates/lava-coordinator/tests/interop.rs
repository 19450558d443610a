//! Interoperability with Debian's `lava-coordinator` (2023.01), in both
//! directions, over loopback:
//!
//! * our client against LAVA's daemon, with our push extension asked for
//!   (the daemon ignores it, so the client must fall back to polling) and
//!   without: registration, send, wait, wait-all with and without a role
//!   (LAVA's `nack` for an ID nobody sent included), delayed start, sync and
//!   clear must all work, with LAVA's payloads, and the daemon must survive;
//! * LAVA's client wire, byte for byte (our Python stand-in,
//!   `support/lava_wire_client.py`), against our daemon and against LAVA's:
//!   both must give the same replies. `lava_client.rs` goes further and
//!   drives LAVA's own protocol class from the installed `lava_dispatcher`.
//!
//! Skipped with a printed reason when `/usr/bin/lava-coordinator` is absent,
//! unless CI=true.

mod support;

use std::time::Duration;

use indexmap::IndexMap;
use lava_multinode::{ClientError, CoordinatorClient, Payload};
use lava_test_support::coordinator::{CoordinatorDaemon, lava_daemon_available};
use serde_json::{Value, json};
use support::{client, collect, lava_wire_client, start_ours};

const T: Duration = Duration::from_secs(20);

fn payload(pairs: &[(&str, &str)]) -> Payload {
    let map: IndexMap<String, String> = pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    map.into()
}

/// Until `client` has been answered `wait` more than `before` times, i.e.
/// its pending call is really waiting (bounded by `T`).
async fn until_waiting(client: &CoordinatorClient, before: u64) {
    tokio::time::timeout(T, async {
        while client.stats().waits <= before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the call is answered `wait` at least once");
}

/// Two members of a fresh group on LAVA's daemon, every operation.
async fn our_client_scenario(daemon: &mut CoordinatorDaemon, group: &str, push: bool) {
    let address = daemon.address;
    let server = client(address, group, "7001", "server", push);
    let guest = client(address, group, "7002", "client", push);
    let (a, b) = tokio::join!(server.register(2, T), guest.register(2, T));
    let roles = a.unwrap();
    assert_eq!(b.unwrap(), roles);
    assert_eq!(roles["7001"], "server");
    assert_eq!(roles["7002"], "client");

    // lava_wait, waiting before the send and released by it.
    let sent = payload(&[("ip", "10.20.0.7"), ("port", "5201")]);
    let before = guest.stats().waits;
    let waiter = {
        let guest = guest.clone();
        tokio::spawn(async move { guest.wait("server-ready", T).await })
    };
    until_waiting(&guest, before).await;
    server.send("server-ready", sent.clone(), T).await.unwrap();
    let delivered = waiter.await.unwrap().unwrap();
    assert_eq!(
        delivered,
        IndexMap::from([("7001".to_string(), sent.clone())])
    );

    // lava_wait_all without role for an ID nobody sent: LAVA's nack.
    let refused = guest.wait_all("nobody-sent-this", None, T).await;
    assert!(
        matches!(refused, Err(ClientError::Nack { .. })),
        "{refused:?}"
    );

    // lava_wait_all with a role: released by that role's first member,
    // with the caller's mailbox for the ID.
    let before = guest.stats().waits;
    let waiter = {
        let guest = guest.clone();
        tokio::spawn(async move { guest.wait_all("server-done", Some("server"), T).await })
    };
    until_waiting(&guest, before).await;
    let result = payload(&[("result", "pass")]);
    server.send("server-done", result.clone(), T).await.unwrap();
    let delivered = waiter.await.unwrap().unwrap();
    assert_eq!(delivered, IndexMap::from([("7001".to_string(), result)]));

    // Delayed start: lava_wait_all on lava_start with waitrole.
    let before = guest.stats().waits;
    let starter = {
        let guest = guest.clone();
        tokio::spawn(async move { guest.wait_for_start("server", T).await })
    };
    until_waiting(&guest, before).await;
    server
        .send("lava_start", Payload::empty(), T)
        .await
        .unwrap();
    let started = starter.await.unwrap().unwrap();
    assert_eq!(
        started,
        IndexMap::from([("7001".to_string(), Payload::empty())])
    );

    // lava_wait_all without role: held until both sent, both payloads.
    server
        .send("all", payload(&[("who", "server")]), T)
        .await
        .unwrap();
    let before = server.stats().waits;
    let server_waits = {
        let server = server.clone();
        tokio::spawn(async move { server.wait_all("all", None, T).await })
    };
    until_waiting(&server, before).await;
    guest
        .send("all", payload(&[("who", "client")]), T)
        .await
        .unwrap();
    let everybody = IndexMap::from([
        ("7001".to_string(), payload(&[("who", "server")])),
        ("7002".to_string(), payload(&[("who", "client")])),
    ]);
    assert_eq!(server_waits.await.unwrap().unwrap(), everybody);
    assert_eq!(guest.wait_all("all", None, T).await.unwrap(), everybody);

    // lava_sync: both released.
    let (x, y) = tokio::join!(server.sync("iperf-done", T), guest.sync("iperf-done", T));
    x.unwrap();
    y.unwrap();
    server.clear_group(2, T).await.unwrap();
    guest.clear_group(2, T).await.unwrap();

    // LAVA's daemon answered plain waits (it ignores the push field), so
    // our client polled.
    assert!(guest.stats().waits > 0, "{:?}", guest.stats());
    assert_eq!(guest.stats().transport_failures, 0, "{:?}", guest.stats());
    assert!(daemon.alive(), "LAVA's coordinator survived our requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_lavas_coordinator() {
    if !lava_daemon_available() {
        return;
    }
    let mut daemon = CoordinatorDaemon::lavas();
    our_client_scenario(&mut daemon, "6c1e0c8e-0d7e-4b7c-9a51-2f5b1d0c9e11", true).await;
    our_client_scenario(&mut daemon, "5d2f1b7a-polling-only", false).await;
}

/// One two-node scenario in LAVA's client's wire format; returns each
/// client's replies.
fn wire_scenario(address: std::net::SocketAddr, group: &str) -> (Vec<Value>, Vec<Value>) {
    let first = lava_wire_client(
        address,
        0.1,
        group,
        2,
        "7001",
        "server",
        &[
            "group_data",
            "send:server-ready:ip=10.20.0.7,port=5201",
            "wait_all:server-ready",
            "sync:iperf-done",
            "clear_group",
        ],
    );
    let second = lava_wire_client(
        address,
        0.1,
        group,
        2,
        "7002",
        "client",
        &[
            "group_data",
            "wait:server-ready",
            "wait_all:server-ready:server",
            "send:server-ready:ok=1",
            "sync:iperf-done",
            "clear_group",
        ],
    );
    (collect(first), collect(second))
}

fn replies(lines: &[Value]) -> Vec<Value> {
    lines.iter().map(|line| line["reply"].clone()).collect()
}

#[test]
fn lavas_client_wire_against_our_coordinator_matches_lavas() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ours = runtime.block_on(start_ours(|_| {}));
    let (first, second) = wire_scenario(ours.local_addr(), "g-ours");
    let first = replies(&first);
    let second = replies(&second);
    assert_eq!(
        first[0],
        json!({"response": "group_data", "roles": {"7001": "server", "7002": "client"}})
    );
    assert_eq!(first[1], json!({"response": "ack"}));
    assert_eq!(
        first[2]["message"],
        json!({"7001": {"ip": "10.20.0.7", "port": "5201"}, "7002": {"ok": "1"}})
    );
    assert_eq!(
        first[3],
        json!({"response": "ack", "message": "iperf-done"})
    );
    assert_eq!(
        second[1],
        json!({"response": "ack", "message": {"7001": {"ip": "10.20.0.7", "port": "5201"}}})
    );
    assert_eq!(
        second[4],
        json!({"response": "ack", "message": "iperf-done"})
    );
    assert_eq!(ours.stats().groups.groups, 0, "group cleared");
    assert_eq!(ours.stats().held, 0, "LAVA's client is never held");
    runtime.block_on(ours.shutdown()).unwrap();

    // The same script against LAVA's own daemon gives the same replies,
    // which shows the stand-in speaks LAVA's wire.
    if !lava_daemon_available() {
        return;
    }
    let mut daemon = CoordinatorDaemon::lavas();
    let (lava_first, lava_second) = wire_scenario(daemon.address, "g-lava");
    assert_eq!(replies(&lava_first), first);
    assert_eq!(replies(&lava_second), second);
    assert!(daemon.alive());
}
