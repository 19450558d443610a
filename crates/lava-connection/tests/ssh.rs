//! SSH against a real OpenSSH server started by the test (`lava_test_support::sshd`): login
//! with LAVA's options, a shell session, commands, byte-exact file copies, a connection
//! dropped mid-session, wrong and encrypted keys, refused and silent ports.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lava_connection::{
    ConnectionError, ErrorKind, HostKeyPolicy, MemoryLog, PtyRequest, SessionConfig, ShellSession,
    SshClient, SshError, SshParams,
};
use lava_test_support::sshd::Sshd;
use tokio::time::Instant;

/// LAVA's device-type default options plus what its ssh actions add.
const LAVA_OPTIONS: [&str; 10] = [
    "-o",
    "Compression=yes",
    "-o",
    "PasswordAuthentication=no",
    "-o",
    "LogLevel=FATAL",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "StrictHostKeyChecking=no",
];

/// The prompt the tests set; typed split in two so the echo never matches it.
const PROMPT: &str = "lava-ssh# ";
const SET_PROMPT: &str = "PS1='lava''-ssh# '";

fn in_secs(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

fn params_for(sshd: &Sshd) -> SshParams {
    let mut params = SshParams::new(sshd.host(), sshd.port(), sshd.user(), sshd.identity_file());
    let ignored = params.apply_options(&LAVA_OPTIONS).unwrap();
    assert_eq!(ignored.len(), 2, "{ignored:?}");
    params
}

/// A shell session over SSH with the test prompt set.
async fn shell(sshd: &Sshd, log: Arc<MemoryLog>) -> ShellSession {
    let client = SshClient::connect(&params_for(sshd), in_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert!(client.server_key().starts_with("ssh-ed25519 SHA256:"));
    let transport = client
        .into_shell(&PtyRequest::default(), in_secs(20))
        .await
        .unwrap();
    let config = SessionConfig::default().with_prompts(&[PROMPT]);
    let mut session = ShellSession::new(transport, log, config).unwrap();
    session.sendline(SET_PROMPT).await.unwrap();
    session.wait_for_prompt(in_secs(30)).await.unwrap();
    session
}

fn assert_no_key_material(message: &str, key_file: &Path) {
    let text = std::fs::read_to_string(key_file).unwrap();
    for line in text
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 8)
    {
        assert!(
            !message.contains(line),
            "key material in the message: {message}"
        );
    }
}

#[tokio::test]
async fn login_and_command_output_through_a_shell_session() {
    let Some(sshd) = Sshd::start() else { return };
    let log = Arc::new(MemoryLog::new());
    let mut session = shell(&sshd, log.clone()).await;
    assert_eq!(
        session.describe(),
        format!("ssh {}@127.0.0.1:{}", sshd.user(), sshd.port())
    );
    session.sendline("echo lava-$((6 * 7)); tty").await.unwrap();
    let found = session
        .expect(&[r"lava-(\d+)\s+(/dev/pts/\d+)"], in_secs(10))
        .await
        .unwrap();
    assert_eq!(found.group(1), Some("42"));
    session.wait_for_prompt(in_secs(10)).await.unwrap();
    session.disconnect("done").await.unwrap();
    assert!(log.target_lines().iter().any(|l| l.starts_with("lava-42")));
    assert!(log.input_lines().iter().any(|l| l == SET_PROMPT));
}

#[tokio::test]
async fn exec_reports_output_exit_status_and_stderr() {
    let Some(sshd) = Sshd::start() else { return };
    let client = SshClient::connect(&params_for(&sshd), in_secs(20))
        .await
        .unwrap();
    let output = client
        .exec("echo out; echo err >&2; exit 3", in_secs(10))
        .await
        .unwrap();
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");
    assert_eq!(output.exit_status, Some(3));
    assert_eq!(output.describe_failure(), "exit status 3: err");
    client.disconnect(Duration::from_secs(2)).await;
}

/// Bytes that compress badly and cover every byte value.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn upload_is_byte_exact() {
    let Some(sshd) = Sshd::start() else { return };
    let client = SshClient::connect(&params_for(&sshd), in_secs(20))
        .await
        .unwrap();
    let local = tempfile::tempdir().unwrap();
    let remote = sshd.dir().join("received dir");
    std::fs::create_dir(&remote).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("every-byte", (0..=255u8).cycle().take(4096).collect()),
        ("eight-mib.tar.gz", noise(8 * 1024 * 1024 + 17, 42)),
    ];
    for (name, content) in &cases {
        let source = local.path().join(name);
        std::fs::write(&source, content).unwrap();
        let target = remote.join(format!("{name} copy"));
        let started = std::time::Instant::now();
        let copied = client
            .upload(&source, target.to_str().unwrap(), in_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: {copied} bytes in {:?}", started.elapsed());
        assert_eq!(copied, content.len() as u64);
        assert!(
            std::fs::read(&target).unwrap() == *content,
            "{name} differs"
        );
    }
    // A directory that does not exist: the device's error comes back.
    let source = local.path().join("empty");
    let err = client
        .upload(&source, "/nonexistent-lava-rs/dir/file", in_secs(10))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("/nonexistent-lava-rs/dir/file")
            && message.contains(&format!("127.0.0.1:{}", sshd.port()))
            && message.contains("exit status 1"),
        "{message}"
    );
    client.disconnect(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn rsa_keys_log_in_too() {
    let Some(sshd) = Sshd::start() else { return };
    let key = sshd.new_key("rsa_key", "rsa", "", true);
    let mut params = params_for(&sshd);
    params.identity_file = key;
    let client = SshClient::connect(&params, in_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert!(client.exec("true", in_secs(10)).await.unwrap().success());
}

#[tokio::test]
async fn a_dropped_connection_is_an_infrastructure_error_naming_the_host() {
    let Some(sshd) = Sshd::start() else { return };
    let log = Arc::new(MemoryLog::new());
    let mut session = shell(&sshd, log).await;
    session.sendline("sleep 600").await.unwrap();
    assert!(!sshd.session_pids().is_empty());
    sshd.kill_sessions();
    let started = std::time::Instant::now();
    let err = session
        .wait_for_prompt(in_secs(20))
        .await
        .expect_err("the connection is gone");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "noticed at once"
    );
    assert_eq!(err.kind(), ErrorKind::Infrastructure, "{err}");
    assert!(err.is_infrastructure());
    let message = err.to_string();
    assert!(
        message.contains(&format!("ssh connection to 127.0.0.1:{} lost", sshd.port())),
        "{message}"
    );
    // Ending the session afterwards neither fails nor waits.
    session.finalise();
}

#[tokio::test]
async fn the_shell_exiting_is_end_of_file_and_nothing_is_left_running() {
    let Some(sshd) = Sshd::start() else { return };
    let log = Arc::new(MemoryLog::new());
    let mut session = shell(&sshd, log).await;
    session.sendline("exit").await.unwrap();
    let err = session.wait_for_prompt(in_secs(10)).await.unwrap_err();
    assert!(
        matches!(err, ConnectionError::ConnectionClosed { .. }),
        "{err}"
    );
    session.disconnect("done").await.unwrap();
    let start = std::time::Instant::now();
    while !sshd.session_pids().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sessions left: {:?}",
            sshd.session_pids()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn disconnecting_ends_the_remote_session() {
    let Some(sshd) = Sshd::start() else { return };
    let log = Arc::new(MemoryLog::new());
    let mut session = shell(&sshd, log).await;
    session.sendline("sleep 4242").await.unwrap();
    session.disconnect("done").await.unwrap();
    drop(session);
    let start = std::time::Instant::now();
    while !sshd.session_pids().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sessions left: {:?}",
            sshd.session_pids()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_wrong_key_names_the_identity_file_and_not_its_content() {
    let Some(sshd) = Sshd::start() else { return };
    let key = sshd.new_key("stranger_key", "ed25519", "", false);
    let mut params = params_for(&sshd);
    params.identity_file = key.clone();
    let err = SshClient::connect(&params, in_secs(20)).await.unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    let message = err.to_string();
    assert!(message.contains(&key.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("{}@127.0.0.1:{}", sshd.user(), sshd.port()))
            || message.contains(&format!("127.0.0.1:{}", sshd.port())),
        "{message}"
    );
    assert!(message.contains("publickey"), "{message}");
    assert_no_key_material(&message, &key);
    assert_no_key_material(&format!("{err:?}"), &key);
}

#[tokio::test]
async fn a_key_with_a_passphrase_is_refused_without_showing_either() {
    let Some(sshd) = Sshd::start() else { return };
    let passphrase = "correct horse battery staple";
    let key = sshd.new_key("locked_key", "ed25519", passphrase, true);
    let mut params = params_for(&sshd);
    params.identity_file = key.clone();
    let err = SshClient::connect(&params, in_secs(20)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    let message = format!("{err} {err:?}");
    assert!(message.contains("passphrase"), "{message}");
    assert!(message.contains(&key.display().to_string()), "{message}");
    assert!(!message.contains(passphrase));
    assert_no_key_material(&message, &key);

    params.identity_file = sshd.dir().join("no-such-key");
    let err = SshClient::connect(&params, in_secs(20)).await.unwrap_err();
    assert!(err.to_string().contains("no-such-key"), "{err}");
}

#[tokio::test]
async fn a_refused_port_fails_at_once_naming_the_address() {
    let port = lava_test_support::paths::free_loopback_port();
    // The key is read before connecting: borrow a real one from a server.
    let Some(sshd) = Sshd::start() else { return };
    let mut params = SshParams::new("127.0.0.1", port, "root", sshd.identity_file());
    params.connect_timeout = Some(Duration::from_secs(10));
    let started = std::time::Instant::now();
    let err = SshClient::connect(&params, in_secs(20)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, SshError::Refused { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("ssh connection to 127.0.0.1:{port} refused")
    );
}

#[tokio::test]
async fn a_silent_server_times_out_at_connect_timeout() {
    let Some(sshd) = Sshd::start() else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let mut params = SshParams::new("127.0.0.1", port, "root", sshd.identity_file());
    params.apply_options(&["-o", "ConnectTimeout=2"]).unwrap();
    let started = std::time::Instant::now();
    let err = SshClient::connect(&params, in_secs(20)).await.unwrap_err();
    let waited = started.elapsed();
    silent.abort();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && message.contains("SSH handshake"),
        "{message}"
    );
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
}

#[tokio::test]
async fn strict_host_key_checking_uses_known_hosts() {
    let Some(sshd) = Sshd::start() else { return };
    let known = sshd.dir().join("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {}", sshd.port(), sshd.host_public_key()),
    )
    .unwrap();
    let strict = |file: &Path| {
        let mut params = params_for(&sshd);
        params.host_key_policy = HostKeyPolicy::KnownHosts(file.to_path_buf());
        params
    };
    let client = SshClient::connect(&strict(&known), in_secs(20)).await;
    assert!(client.is_ok(), "{:?}", client.err());

    let empty = sshd.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let err = SshClient::connect(&strict(&empty), in_secs(20))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::HostKey { .. }), "{err}");
    assert!(err.to_string().contains("empty_known_hosts"), "{err}");
}
