//! Our client against our coordinator over real loopback TCP: the MultiNode
//! operations across several clients, with push and with plain polling.

mod support;

use std::time::{Duration, Instant};

use indexmap::IndexMap;
use lava_multinode::{ClientError, CoordinatorClient, Payload};
use support::{client, start_ours};

const T: Duration = Duration::from_secs(10);

fn payload(pairs: &[(&str, &str)]) -> Payload {
    let map: IndexMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.into()
}

async fn register_all(clients: &[CoordinatorClient]) {
    let size = clients.len() as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        let c = c.clone();
        tasks.spawn(async move { c.register(size, T).await });
    }
    while let Some(result) = tasks.join_next().await {
        let roles = result.unwrap().expect("registration");
        assert_eq!(roles.len(), clients.len());
    }
}

async fn scenario(push: bool) {
    let server = start_ours(|_| {}).await;
    let address = server.local_addr();
    let group = if push { "group-push" } else { "group-poll" };
    let members = [
        client(address, group, "7001", "server", push),
        client(address, group, "7002", "client", push),
        client(address, group, "7003", "client", push),
    ];
    register_all(&members).await;

    // lava_wait before the send, released by it.
    let waiter = {
        let c = members[1].clone();
        tokio::spawn(async move { c.wait("server-ready", T).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = payload(&[("ip", "10.20.0.7"), ("port", "5201")]);
    members[0]
        .send("server-ready", sent.clone(), T)
        .await
        .unwrap();
    let received = waiter.await.unwrap().unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received["7001"], sent);

    // lava_wait_all without role: everyone sends, everyone gets all three.
    let mut tasks = tokio::task::JoinSet::new();
    for (index, c) in members.iter().enumerate() {
        let c = c.clone();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(30 * index as u64)).await;
            let value = c.envelope().client_name.clone();
            c.send("done", payload(&[("who", &value)]), T).await?;
            c.wait_all("done", None, T).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        let senders = result.unwrap().unwrap();
        assert_eq!(
            senders.keys().collect::<Vec<_>>().len(),
            3,
            "all three senders"
        );
    }

    // lava_wait_all with a role (delayed start).
    let starter = {
        let c = members[2].clone();
        tokio::spawn(async move { c.wait_for_start("server", T).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    members[0]
        .send("lava_start", Payload::empty(), T)
        .await
        .unwrap();
    let started = starter.await.unwrap().unwrap();
    assert!(started.contains_key("7001"));

    // lava_sync across all.
    let mut tasks = tokio::task::JoinSet::new();
    for (index, c) in members.iter().enumerate() {
        let c = c.clone();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50 * index as u64)).await;
            c.sync("iperf-done", T).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }

    for c in &members {
        c.clear_group(3, T).await.unwrap();
    }
    assert_eq!(server.stats().groups.groups, 0, "cleared groups are gone");
    if push {
        assert!(server.stats().held > 0, "push requests were held");
        for c in &members {
            let stats = c.stats();
            assert_eq!(stats.transport_failures, 0);
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_across_clients_with_push() {
    scenario(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_across_clients_with_polling() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_releases_a_sync_promptly_and_without_polling() {
    let server = start_ours(|_| {}).await;
    let address = server.local_addr();
    let count = 40;
    let members: Vec<_> = (0..count)
        .map(|i| {
            let mut c = client(address, "sync-push", &format!("{}", 100 + i), "peer", true);
            // A long poll delay: only push can make this fast.
            let mut settings = c.settings().clone();
            settings.poll_delay = Duration::from_secs(5);
            c = lava_multinode::CoordinatorClient::new(
                settings,
                lava_multinode::Identity {
                    group_name: "sync-push".into(),
                    client_name: c.envelope().client_name.clone(),
                    role: "peer".into(),
                    hostname: "w".into(),
                },
            );
            c
        })
        .collect();
    register_all(&members).await;
    let mut tasks = tokio::task::JoinSet::new();
    for c in &members[..count - 1] {
        let c = c.clone();
        tasks.spawn(async move { c.sync("go", T).await.map(|_| Instant::now()) });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last_arrival = Instant::now();
    members[count - 1].sync("go", T).await.unwrap();
    let mut latest = last_arrival;
    while let Some(result) = tasks.join_next().await {
        latest = latest.max(result.unwrap().unwrap());
    }
    let spread = latest - last_arrival;
    assert!(
        spread < Duration::from_millis(1000),
        "released {spread:?} after the last arrival"
    );
    let polls: u64 = members.iter().map(|c| c.stats().requests).sum();
    assert!(
        polls < 4 * count as u64,
        "{polls} requests: push should not poll"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shared_secret_refuses_clients_without_it() {
    let server = start_ours(|s| s.token = Some("s3cret".into())).await;
    let address = server.local_addr();
    let stranger = client(address, "g", "1", "r", true);
    match stranger.register(1, T).await {
        Err(ClientError::Nack { .. }) => {}
        other => panic!("expected nack, got {other:?}"),
    }
    let mut settings = stranger.settings().clone();
    settings.token = Some("s3cret".into());
    let friend = CoordinatorClient::new(
        settings,
        lava_multinode::Identity {
            group_name: "g".into(),
            client_name: "1".into(),
            role: "r".into(),
            hostname: "w".into(),
        },
    );
    friend.register(1, T).await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_timeouts_are_bounded_waiting_and_unreachable() {
    let server = start_ours(|_| {}).await;
    let c = client(server.local_addr(), "g", "1", "r", true);
    c.register(1, T).await.unwrap();
    let started = Instant::now();
    let result = c.wait("never-sent", Duration::from_millis(300)).await;
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    server.shutdown().await.unwrap();

    // Nobody listening: connection failures are retried, still bounded.
    let port = lava_test_support::paths::free_loopback_port();
    let gone = client(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "g",
        "1",
        "r",
        true,
    );
    let started = Instant::now();
    let result = gone.register(1, Duration::from_millis(500)).await;
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(gone.stats().transport_failures >= 1);
}

#[tokio::test]
async fn oversized_requests_are_refused_before_sending() {
    let server = start_ours(|_| {}).await;
    let c = client(server.local_addr(), "g", "1", "r", true);
    c.register(1, T).await.unwrap();
    let big = payload(&[("blob", &"x".repeat(70_000))]);
    let result = c.send("big", big, T).await;
    assert!(
        matches!(result, Err(ClientError::TooLong { .. })),
        "{result:?}"
    );
    server.shutdown().await.unwrap();
}
