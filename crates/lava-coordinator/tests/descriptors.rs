//! The descriptor limit (its own test binary: it changes the process's
//! RLIMIT_NOFILE): raised at start, connections capped to fit, and `accept`
//! backing off instead of spinning when descriptors run out anyway.

mod support;

use std::time::{Duration, Instant};

use lava_coordinator::server::{
    RESERVED_DESCRIPTORS, descriptor_limit, fit_to_descriptors, raise_descriptor_limit,
};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use support::{client, start_ours};
use tokio::net::TcpStream;

fn set_soft_limit(soft: u64) {
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: hard,
        },
    )
    .expect("lowering the soft limit is always allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_limits_are_raised_fitted_and_survived() {
    // Raised to the hard limit at start.
    set_soft_limit(512);
    let hard = getrlimit(Resource::Nofile).maximum;
    assert_eq!(raise_descriptor_limit(), hard);
    // Connections are capped to what the limit leaves.
    set_soft_limit(512);
    assert_eq!(
        fit_to_descriptors(16384),
        512 - RESERVED_DESCRIPTORS as usize
    );
    assert_eq!(fit_to_descriptors(100), 100);
    assert_eq!(descriptor_limit(), Some(512));

    // Out of descriptors anyway (the limit lowered after binding, with the
    // clients in this same process): accept backs off, and a normal request
    // is served once the idle connections go.
    let server = start_ours(|_| {}).await;
    let address = server.local_addr();
    set_soft_limit(256);
    let mut idle = Vec::new();
    while idle.len() < 200 {
        match TcpStream::connect(address).await {
            Ok(stream) => idle.push(stream),
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failures = server.stats().accept_failures;
    assert!(failures > 0, "the test did not run out of descriptors");
    // Exponential back-off from 10 ms to 1 s: a handful of failures in 2 s,
    // not a spinning loop.
    assert!(failures <= 20, "accept spun: {failures} failures in 2 s");
    drop(idle);
    set_soft_limit(hard.unwrap_or(4096).min(4096));
    let started = Instant::now();
    let c = client(address, "after", "1", "r", false);
    c.register(1, Duration::from_secs(10))
        .await
        .expect("served");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.shutdown().await.unwrap();
}
