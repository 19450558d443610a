//! Interoperability with Debian's `lava-coordinator` (2023.01), in both
//! directions, over loopback:
//!
//! * our client (push enabled) against LAVA's daemon: it must fall back to
//!   polling and every operation must work, and the daemon must survive;
//! * LAVA's client wire (our Python stand-in, `support/lava_wire_client.py`,
//!   because Debian's lava-dispatcher cannot be installed next to this
//!   image's qemu-utils) against our daemon, and the same script against
//!   LAVA's daemon: both must give the same replies.
//!
//! Skipped with a printed reason when `/usr/bin/lava-coordinator` is absent,
//! unless CI=true.

mod support;

use std::time::Duration;

use indexmap::IndexMap;
use lava_multinode::Payload;
use serde_json::{Value, json};
use support::{LAVA_DAEMON, LavaDaemon, client, collect, lava_wire_client, start_ours};

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_lavas_coordinator() {
    if !support::tool_available(LAVA_DAEMON, "Debian's lava-coordinator") {
        return;
    }
    let mut daemon = LavaDaemon::start();
    let address = daemon.address;
    let group = "6c1e0c8e-0d7e-4b7c-9a51-2f5b1d0c9e11";
    let server = client(address, group, "7001", "server", true);
    let guest = client(address, group, "7002", "client", true);
    let (a, b) = tokio::join!(server.register(2, T), guest.register(2, T));
    let roles = a.unwrap();
    assert_eq!(b.unwrap(), roles);
    assert_eq!(roles["7001"], "server");

    let mut data = IndexMap::new();
    data.insert("ip".to_string(), "10.20.0.7".to_string());
    data.insert("port".to_string(), "5201".to_string());
    let sent: Payload = data.into();
    let waiter = {
        let guest = guest.clone();
        tokio::spawn(async move { guest.wait("server-ready", T).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.send("server-ready", sent.clone(), T).await.unwrap();
    let delivered = waiter.await.unwrap().unwrap();
    assert_eq!(delivered["7001"], sent);

    // Delayed start: lava_wait_all with waitrole.
    let starter = {
        let guest = guest.clone();
        tokio::spawn(async move { guest.wait_for_start("server", T).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .send("lava_start", Payload::empty(), T)
        .await
        .unwrap();
    assert!(starter.await.unwrap().unwrap().contains_key("7001"));

    // wait_all without role.
    let (x, y) = tokio::join!(
        async {
            server.send("all", Payload::empty(), T).await?;
            server.wait_all("all", None, T).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            guest.send("all", Payload::empty(), T).await?;
            guest.wait_all("all", None, T).await
        }
    );
    assert_eq!(x.unwrap().len(), 2);
    assert_eq!(y.unwrap().len(), 2);

    let (x, y) = tokio::join!(server.sync("iperf-done", T), guest.sync("iperf-done", T));
    x.unwrap();
    y.unwrap();
    server.clear_group(2, T).await.unwrap();
    guest.clear_group(2, T).await.unwrap();

    // LAVA's daemon ignored the push field: it answered plain waits, which
    // made our client poll.
    assert!(guest.stats().waits > 0, "{:?}", guest.stats());
    assert!(daemon.alive(), "LAVA's coordinator survived our requests");
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
    if !support::tool_available(LAVA_DAEMON, "Debian's lava-coordinator") {
        return;
    }
    let mut daemon = LavaDaemon::start();
    let (lava_first, lava_second) = wire_scenario(daemon.address, "g-lava");
    assert_eq!(replies(&lava_first), first);
    assert_eq!(replies(&lava_second), second);
    assert!(daemon.alive());
}
