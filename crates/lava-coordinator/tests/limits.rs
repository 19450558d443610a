//! Limits that keep one kind of client from starving the others: frame size,
//! the budget of request bytes read at once, held requests of departed
//! clients (issue 17's probe).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lava_coordinator::CoordinatorHandle;
use support::{client, start_ours};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

/// Send a whole frame with `body`, half-close, read the reply (empty: closed).
async fn exchange(address: SocketAddr, body: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut frame = format!("{:08X}", body.len()).into_bytes();
    frame.extend_from_slice(body);
    stream.write_all(&frame).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(T, stream.read_to_end(&mut reply))
        .await
        .expect("answered or closed in time");
    reply
}

/// A `group_data` request padded to exactly `length` bytes.
fn padded_request(group: &str, length: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"request": "group_data", "group_name": "{group}", "client_name": "1", "role": "r", "hostname": "h", "group_size": 2, "pad": ""#
    );
    let mut body = head.into_bytes();
    body.resize(length - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
}

async fn wait_for(
    server: &CoordinatorHandle,
    what: &str,
    done: impl Fn(&lava_coordinator::BrokerStats) -> bool,
) {
    let deadline = Instant::now() + T;
    loop {
        let stats = server.stats();
        if done(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn frames_beyond_what_lavas_client_sends_are_refused_by_default() {
    let server = start_ours(|_| {}).await;
    let address = server.local_addr();
    // LAVA's client sends at most 65534 bytes: that is served.
    let reply = exchange(address, &padded_request("biggest", 65534)).await;
    assert!(
        String::from_utf8_lossy(&reply).contains("wait"),
        "{reply:?}"
    );
    // A frame announcing 1 MiB (the old default limit) is refused unread.
    let reply = exchange(address, &padded_request("huge", 1024 * 1024)).await;
    assert!(reply.is_empty());
    assert_eq!(server.stats().bad_frames, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_sending_large_frames_stay_within_the_reading_budget() {
    const FRAME: usize = 60 * 1024;
    const BUDGET: usize = 4 * FRAME + 8 * 1024;
    let server = start_ours(|s| {
        s.max_reading_bytes = BUDGET;
        s.read_deadline = Duration::from_secs(3);
    })
    .await;
    let address = server.local_addr();
    // 50 clients announce a 60 KiB frame and send half of it, then stall:
    // without a budget the broker would hold 50 × 60 KiB at once.
    let mut stalled = Vec::new();
    for n in 0..50 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let body = padded_request(&format!("big-{n}"), FRAME);
        let mut frame = format!("{FRAME:08X}").into_bytes();
        frame.extend_from_slice(&body[..FRAME / 2]);
        stream.write_all(&frame).await.unwrap();
        stalled.push(stream);
    }
    wait_for(&server, "the budget fills up", |s| {
        s.peak_reading_bytes >= 4 * FRAME as u64
    })
    .await;
    // A normal request still fits beside them.
    let c = client(address, "small", "1", "r", false);
    c.register(1, T)
        .await
        .expect("served while the budget is in use");
    drop(stalled);
    wait_for(&server, "every connection ends", |s| s.open == 0).await;
    let stats = server.stats();
    assert!(
        stats.peak_reading_bytes <= BUDGET as u64,
        "read {} bytes at once, budget {BUDGET}",
        stats.peak_reading_bytes
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_ends_when_its_client_goes() {
    let server = start_ours(|s| s.max_hold = Duration::from_secs(60)).await;
    let address = server.local_addr();
    // The group needs two members; the only one waits, held by the server.
    let waiting = tokio::spawn(async move {
        let c = client(address, "left", "1", "r", true);
        c.register(2, Duration::from_secs(120)).await
    });
    wait_for(&server, "the request is held", |s| {
        s.held >= 1 && s.open == 1
    })
    .await;
    // The job is killed: its socket closes while the request is held.
    waiting.abort();
    let _ = waiting.await;
    wait_for(&server, "the held request notices", |s| {
        s.departed == 1 && s.open == 0
    })
    .await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_held_registration_does_not_bring_its_cleared_group_back() {
    let server = start_ours(|s| s.max_hold = Duration::from_secs(60)).await;
    let address = server.local_addr();
    // A registration held by the server (the group needs two members), its client still
    // connected: as when our client's registration times out and the client clears.
    let body = br#"{"request": "group_data", "group_name": "gone", "client_name": "1", "role": "r", "hostname": "h", "group_size": 2, "lava_rs_hold_ms": 60000}"#;
    let mut held = TcpStream::connect(address).await.unwrap();
    let mut frame = format!("{:08X}", body.len()).into_bytes();
    frame.extend_from_slice(body);
    held.write_all(&frame).await.unwrap();
    wait_for(&server, "the registration is held", |s| s.held >= 1).await;
    // The member leaves the group: the group is deleted.
    client(address, "gone", "1", "r", false)
        .clear_group(2, T)
        .await
        .unwrap();
    // The held request is answered (wait: ask again) instead of being applied again,
    // which would make the group anew from a registration its client gave up.
    let mut reply = Vec::new();
    tokio::time::timeout(T, held.read_to_end(&mut reply))
        .await
        .expect("the held registration is answered when its group goes")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("\"wait\""), "{reply}");
    assert_eq!(server.stats().groups.groups, 0);
    server.shutdown().await.unwrap();
}
