//! The uploader against the fake lava-server on 127.0.0.1: dropped connections, replies
//! later than the request timeout, 5xx and 4xx, `line_count` behind what was sent, a long
//! outage. Every record must arrive exactly once and in order.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use lava_log_upload::test_server::{FakeServer, Fault};
use lava_log_upload::{
    BatchLimits, HttpSettings, HttpSink, LogFile, SendError, USER_AGENT, UploadSettings, spawn,
};
use tokio::time::Instant;

const TOKEN: &str = "s3cr3t-job-token-0123456789abcdef";
const JOB: &str = "8124";

/// Fast pacing for tests: a 300 ms request timeout, short back-off.
fn settings() -> UploadSettings {
    UploadSettings {
        interval: Duration::from_millis(50),
        limits: BatchLimits {
            records: 1000,
            bytes: 1 << 20,
        },
        request_timeout: Duration::from_millis(300),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(80),
    }
}

fn sink(server: &FakeServer) -> HttpSink {
    let mut http = HttpSettings::new(&server.url(), TOKEN, JOB);
    http.request_timeout = Duration::from_millis(300);
    HttpSink::new(&http).unwrap()
}

fn record(i: usize) -> String {
    format!(
        "{{\"dt\": \"2026-12-05T13:00:00.{i:06}+00:00\", \"lvl\": \"target\", \"msg\": \"line {i} \\\"quoted\\\" & = + %\"}}"
    )
}

/// Append records `range` to the log as the logger does (one flushed line each), in
/// bursts of `burst` records with `pause` between bursts.
async fn write_records(path: &Path, range: std::ops::Range<usize>, burst: usize, pause: Duration) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in range {
        writeln!(file, "- {}", record(i)).unwrap();
        file.flush().unwrap();
        if (i + 1) % burst == 0 {
            tokio::time::sleep(pause).await;
        }
    }
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(record).collect()
}

fn assert_exactly_once(server: &FakeServer, n: usize) {
    let stored = server.stored();
    assert_eq!(stored.len(), n, "records stored (duplicated or lost)");
    assert_eq!(stored, expected(n), "records out of order or altered");
    assert!(
        server.gaps().is_empty(),
        "index beyond stored: {:?}",
        server.gaps()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_through_faults() {
    let server = FakeServer::start(TOKEN, JOB).await.unwrap();
    server.push_faults([
        Fault::Drop,
        Fault::Status(503),
        Fault::Delay(Duration::from_millis(800)),
        Fault::Status(400),
        Fault::Partial(7),
        Fault::DropAfterStore,
        Fault::Status(500),
        Fault::Partial(0),
        Fault::Delay(Duration::from_millis(800)),
        Fault::Partial(1),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.yaml");
    let uploader = spawn(LogFile::new(&path), sink(&server), settings());
    // 2600 records: bursts larger than a batch, while the faults play out.
    write_records(&path, 0..2600, 400, Duration::from_millis(40)).await;
    let report = uploader
        .finish(
            Instant::now() + Duration::from_secs(30),
            std::future::pending(),
        )
        .await;
    assert_eq!(report.pending, 0, "{report:?}");
    assert_eq!(report.accepted, 2600);
    assert_exactly_once(&server, 2600);

    let requests = server.requests();
    assert!(
        requests.len() >= 13,
        "every fault was met: {}",
        requests.len()
    );
    for request in &requests {
        assert_eq!(
            request.path,
            format!("/scheduler/internal/v1/jobs/{JOB}/logs/")
        );
        assert_eq!(request.token.as_deref(), Some(TOKEN));
        assert_eq!(request.user_agent.as_deref(), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("lava "));
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert!(
            request.records >= 1 && request.records <= 1000,
            "{request:?}"
        );
    }
    assert!(
        requests.iter().any(|r| r.records == 1000),
        "a backlog is sent in batches of 1000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_loses_nothing_and_holds_no_queue() {
    let server = FakeServer::start(TOKEN, JOB).await.unwrap();
    // The server is away for 40 attempts (back-off capped at 80 ms: over a second).
    server.push_faults(std::iter::repeat_n(Fault::Drop, 20));
    server.push_faults(std::iter::repeat_n(Fault::Status(502), 20));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.yaml");
    let uploader = spawn(LogFile::new(&path), sink(&server), settings());
    write_records(&path, 0..5000, 1000, Duration::from_millis(100)).await;
    let report = uploader
        .finish(
            Instant::now() + Duration::from_secs(30),
            std::future::pending(),
        )
        .await;
    assert_eq!(report.pending, 0, "{report:?}");
    assert_exactly_once(&server, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_ends_the_drain_at_the_deadline_with_the_token_masked() {
    let server = FakeServer::start(TOKEN, JOB).await.unwrap();
    server.push_faults(std::iter::repeat_n(Fault::Status(500), 10_000));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.yaml");
    write_records(&path, 0..30, 1000, Duration::ZERO).await;
    let uploader = spawn(LogFile::new(&path), sink(&server), settings());
    let started = Instant::now();
    let report = uploader
        .finish(
            Instant::now() + Duration::from_millis(700),
            std::future::pending(),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(report.accepted, 0);
    assert_eq!(report.pending, 30);
    let error = report.last_error.expect("the failure is reported");
    assert!(
        matches!(error, SendError::Status { code: 500, .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("[MASKED]"), "{text}");
    assert!(server.stored().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signal_ends_the_drain_and_an_unreachable_server_times_out() {
    // Nothing listens on this port once the listener is dropped.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut http = HttpSettings::new(&format!("http://127.0.0.1:{port}"), TOKEN, JOB);
    http.request_timeout = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.yaml");
    write_records(&path, 0..3, 1000, Duration::ZERO).await;
    let uploader = spawn(
        LogFile::new(&path),
        HttpSink::new(&http).unwrap(),
        settings(),
    );
    let started = Instant::now();
    let report = uploader
        .finish(
            Instant::now() + Duration::from_secs(60),
            tokio::time::sleep(Duration::from_millis(400)),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(report.pending, 3);
    let error = report.last_error.expect("the failure is reported");
    assert!(matches!(error, SendError::Transport(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_batches_are_halved() {
    let server = FakeServer::start(TOKEN, JOB).await.unwrap();
    server.push_faults([Fault::Status(413), Fault::Status(413)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.yaml");
    write_records(&path, 0..100, 1000, Duration::ZERO).await;
    let uploader = spawn(LogFile::new(&path), sink(&server), settings());
    let report = uploader
        .finish(
            Instant::now() + Duration::from_secs(30),
            std::future::pending(),
        )
        .await;
    assert_eq!(report.pending, 0);
    assert_exactly_once(&server, 100);
    let sizes: Vec<usize> = server.requests().iter().map(|r| r.records).collect();
    assert_eq!(&sizes[..3], &[100, 50, 25], "{sizes:?}");
}
