//! A serial port: the slave side of a pseudo-terminal stands in for /dev/ttyUSB0.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use common::in_secs;
use lava_connection::{ErrorKind, MemoryLog, SerialTransport, SessionConfig, ShellSession};
use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};

#[tokio::test]
async fn serial_port_session() {
    let mut master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let path = ptsname_r(&master).unwrap();

    let transport = SerialTransport::open(&path, 115_200).unwrap();
    let log = Arc::new(MemoryLog::new());
    let config = SessionConfig::default().with_prompts(&["=> "]);
    let mut shell = ShellSession::new(transport, log.clone(), config).unwrap();

    master.write_all(b"U-Boot 2024.01\r\n=> ").unwrap();
    let found = shell.wait_for_prompt(in_secs(5.0)).await.unwrap();
    assert_eq!(found.before, "U-Boot 2024.01\r\n");
    shell.sendline("version").await.unwrap();
    let typed = tokio::task::spawn_blocking(move || {
        let mut typed = [0u8; 8];
        master.read_exact(&mut typed).unwrap();
        typed
    })
    .await
    .unwrap();
    assert_eq!(&typed, b"version\n");
    shell.finalise();
    assert_eq!(log.target_lines(), ["U-Boot 2024.01", "=> "]);
    assert_eq!(log.input_lines(), ["version"]);
}

#[tokio::test]
async fn missing_port_is_an_infrastructure_error() {
    let err = SerialTransport::open("/dev/lava-no-such-tty", 115_200).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    assert!(err.to_string().contains("/dev/lava-no-such-tty"), "{err}");
}
