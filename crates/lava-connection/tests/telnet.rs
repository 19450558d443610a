//! Telnet against a tiny loopback server that negotiates like ser2net.

mod common;

use std::sync::Arc;

use common::in_secs;
use lava_connection::{ErrorKind, MemoryLog, SessionConfig, ShellSession, TelnetTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const IAC: u8 = 255;
const WILL: u8 = 251;
const DO: u8 = 253;
const WONT: u8 = 252;
const SB: u8 = 250;
const SE: u8 = 240;

#[tokio::test]
async fn negotiation_is_answered_and_the_stream_is_clean() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // ser2net-like greeting: will echo, will suppress-go-ahead, do terminal-type,
        // a subnegotiation, then text with a doubled IAC and a CR NUL.
        socket
            .write_all(&[
                IAC, WILL, 1, IAC, WILL, 3, IAC, DO, 24, IAC, SB, 24, 1, IAC, SE,
            ])
            .await
            .unwrap();
        socket.write_all(b"ser2net port 7001\r\n").await.unwrap();
        socket
            .write_all(&[b'b', b'y', b't', b'e', b' ', IAC, IAC, b'\r', 0, b'\n'])
            .await
            .unwrap();
        socket.write_all(b"login: ").await.unwrap();
        // Replies first, then the typed line.
        let mut replies = [0u8; 9];
        socket.read_exact(&mut replies).await.unwrap();
        let mut typed = [0u8; 5];
        socket.read_exact(&mut typed).await.unwrap();
        socket.write_all(b"root\r\nroot@dut:~# ").await.unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
        (replies, typed)
    });

    let log = Arc::new(MemoryLog::new());
    let transport = TelnetTransport::connect("127.0.0.1", port).await.unwrap();
    let config = SessionConfig::default().with_prompts(&["root@dut:~# "]);
    let mut shell = ShellSession::new(transport, log.clone(), config).unwrap();
    let found = shell.expect(&["login: "], in_secs(5.0)).await.unwrap();
    assert_eq!(found.before, "ser2net port 7001\r\nbyte \u{FFFD}\r\n");
    shell.sendline("root").await.unwrap();
    let found = shell.wait_for_prompt(in_secs(5.0)).await.unwrap();
    assert_eq!(found.before, "root\r\n");
    shell.disconnect("done").await.unwrap();

    let (replies, typed) = server.await.unwrap();
    assert_eq!(replies, [IAC, DO, 1, IAC, DO, 3, IAC, WONT, 24]);
    assert_eq!(&typed, b"root\n");
    assert_eq!(
        log.target_lines(),
        [
            "ser2net port 7001",
            "byte \u{FFFD}",
            "login: root",
            "root@dut:~# "
        ]
    );
}

#[tokio::test]
async fn server_closing_is_connection_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.write_all(b"bye\r\n").await.unwrap();
    });
    let log = Arc::new(MemoryLog::new());
    let transport = TelnetTransport::connect("127.0.0.1", port).await.unwrap();
    let mut shell = ShellSession::new(transport, log.clone(), SessionConfig::default()).unwrap();
    let err = shell.expect(&["login:"], in_secs(5.0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed);
    assert_eq!(log.target_lines(), ["bye"]);
}

#[tokio::test]
async fn refused_connection_is_an_infrastructure_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = TelnetTransport::connect("127.0.0.1", port)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
}
