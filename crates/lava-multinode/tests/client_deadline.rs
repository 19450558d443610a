//! Chaos: a coordinator that accepts a request and then neither answers nor closes (frozen,
//! partitioned, its runtime gone). The client's poll ends at the caller's timeout, not at
//! its I/O timeout plus the hold it asked for (60 s and more).

use std::time::{Duration, Instant};

use lava_multinode::{ClientError, ClientSettings, CoordinatorClient, Identity};

#[tokio::test]
async fn a_silent_coordinator_cannot_keep_a_poll_past_its_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Accept every connection and keep it open, silent.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    for push in [true, false] {
        let mut settings = ClientSettings::for_address(address);
        settings.push = push;
        let client = CoordinatorClient::new(
            settings,
            Identity {
                group_name: "frozen".into(),
                client_name: "7001".into(),
                role: "client".into(),
                hostname: "worker".into(),
            },
        );
        let request = client.envelope().lava_wait("never");
        let started = Instant::now();
        let error = client
            .poll(request, Duration::from_millis(500))
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(error, ClientError::Timeout { .. }),
            "push {push}: {error}"
        );
        assert!(elapsed < Duration::from_secs(3), "push {push}: {elapsed:?}");
    }
    silent.abort();
}
