//! Hostile and broken clients over loopback: the broker keeps serving
//! everybody else, closes what is bad, and holds no memory for it.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lava_multinode::Payload;
use support::{client, start_ours};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

/// Send raw bytes, half-close, and read whatever comes back (bounded).
async fn raw(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(T, stream.read_to_end(&mut reply))
        .await
        .expect("server answers or closes in time")
        .ok();
    reply
}

/// A well-formed exchange still works.
async fn assert_serving(address: SocketAddr, group: &str) {
    let started = Instant::now();
    let c = client(address, group, "1", "r", true);
    c.register(1, T).await.expect("still serving");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn bad_frames_are_closed_without_reply() {
    let server = start_ours(|s| s.max_frame_bytes = 4096).await;
    let address = server.local_addr();
    // Bad hex in the header.
    assert_eq!(raw(address, b"0000001G{}").await, b"");
    assert_eq!(raw(address, b"GET / HTTP/1.0\r\n\r\n").await, b"");
    // Truncated: header claims 100 bytes, 10 arrive, then EOF.
    assert_eq!(raw(address, b"00000064{\"request\"").await, b"");
    // Truncated header.
    assert_eq!(raw(address, b"0000").await, b"");
    // Length claim past the limit: refused at once, the body never read.
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"FFFFFFFF").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut reply))
        .await
        .expect("closed without waiting for 4 GiB")
        .ok();
    assert!(reply.is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
    // Not JSON.
    assert_eq!(raw(address, b"00000005hello").await, b"");
    // Invalid UTF-8.
    assert_eq!(raw(address, b"00000002\xff\xfe").await, b"");
    assert_eq!(server.stats().bad_frames, 7);
    // JSON but not a request object: nack, as LAVA's "no request key".
    assert_eq!(
        raw(address, b"00000002[]").await,
        b"00000014{\"response\": \"nack\"}"
    );
    assert_eq!(
        raw(address, b"00000002{}").await,
        b"00000014{\"response\": \"nack\"}"
    );
    assert_serving(address, "after-bad-frames").await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn lava_style_split_writes_and_lowercase_hex_are_accepted() {
    let server = start_ours(|_| {}).await;
    let body = br#"{"client_name": "1", "group_name": "g", "role": "r", "hostname": "h", "request": "group_data", "group_size": 1}"#;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream
        .write_all(format!("{:08x}", body.len()).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(&body[10..]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert_eq!(
        reply,
        b"0000002F{\"response\": \"group_data\", \"roles\": {\"1\": \"r\"}}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_that_never_finish_do_not_block_others() {
    let server = start_ours(|s| s.read_deadline = Duration::from_millis(500)).await;
    let address = server.local_addr();
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(b"0000").await.unwrap();
        stalled.push(stream);
    }
    // Others are served while 200 connections hang mid-header.
    assert_serving(address, "while-stalled").await;
    // The stalled ones are cut at the read deadline.
    for mut stream in stalled {
        let mut buffer = Vec::new();
        // Ok (EOF) or a reset both mean "closed"; hanging past 3 s fails.
        let _closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut buffer))
            .await
            .expect("server closes a stalled connection after its deadline");
        assert!(buffer.is_empty(), "no reply to a stalled request");
    }
    let stats = server.stats();
    assert_eq!(stats.open, 0, "{stats:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_opened_and_dropped() {
    let server = start_ours(|_| {}).await;
    let address = server.local_addr();
    let started = Instant::now();
    let total = 10_000;
    let batch = 250;
    let mut opened = 0;
    while opened < total {
        let mut set = tokio::task::JoinSet::new();
        for index in 0..batch {
            set.spawn(async move {
                let mut stream = TcpStream::connect(address).await?;
                // Half of them send a partial header before vanishing.
                if index % 2 == 0 {
                    stream.write_all(b"000").await?;
                }
                drop(stream);
                std::io::Result::Ok(())
            });
        }
        while let Some(result) = set.join_next().await {
            result.unwrap().expect("loopback connect");
        }
        opened += batch;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "bounded in time"
        );
    }
    // Others are still served.
    assert_serving(address, "after-10k").await;
    // Every connection is accounted for and released.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = server.stats();
        if stats.accepted > total as u64 && stats.open == 0 {
            assert_eq!(
                stats.groups.groups, 1,
                "no state kept for dropped connections"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections not released: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn inputs_that_crash_lavas_coordinator_are_answered() {
    let server = start_ours(|_| {}).await;
    let address = server.local_addr();
    let a = client(address, "crashers", "1", "host", true);
    let b = client(address, "crashers", "2", "guest", true);
    let (ra, rb) = tokio::join!(a.register(2, T), b.register(2, T));
    ra.unwrap();
    rb.unwrap();
    // lava_wait_all with a role nobody has.
    let result = b.wait_all("x", Some("typo"), T).await;
    assert!(
        matches!(result, Err(lava_multinode::ClientError::Nack { .. })),
        "{result:?}"
    );
    // lava_send after lava_sync with the same ID from the same client.
    let (sa, sb) = tokio::join!(a.sync("same", T), b.sync("same", T));
    sa.unwrap();
    sb.unwrap();
    a.send("same", Payload::empty(), T).await.unwrap();
    let delivered = b.wait("same", T).await.unwrap();
    assert!(delivered.contains_key("1"));
    // Missing group_name / hostname: nack, not a crash.
    let body = br#"{"client_name": "3", "request": "group_data", "group_size": 1}"#;
    let mut frame = format!("{:08X}", body.len()).into_bytes();
    frame.extend_from_slice(body);
    assert_eq!(
        raw(address, &frame).await,
        b"00000014{\"response\": \"nack\"}"
    );
    assert_serving(address, "after-crashers").await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn per_group_limits_hold() {
    let server = start_ours(|s| {
        s.limits.max_message_ids_per_group = 3;
        s.limits.max_payload_bytes_per_group = 10_000;
    })
    .await;
    let c = client(server.local_addr(), "limited", "1", "r", true);
    c.register(1, T).await.unwrap();
    for id in ["a", "b", "c"] {
        c.send(id, Payload::empty(), T).await.unwrap();
    }
    assert!(c.send("d", Payload::empty(), T).await.is_err());
    let mut big = indexmap::IndexMap::new();
    big.insert("k".to_string(), "x".repeat(20_000));
    assert!(c.send("a", big.into(), T).await.is_err());
    assert!(server.stats().groups.payload_bytes < 10_000);
    server.shutdown().await.unwrap();
}
