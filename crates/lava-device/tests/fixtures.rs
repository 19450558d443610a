//! Snapshot tests on our own device types and devices (`fixtures/device-types`,
//! `fixtures/devices`): the rendered text must stay byte-for-byte what it is (the snapshots
//! were checked against Python Jinja2 configured LAVA's way), and must load as a device
//! configuration with the expected typed values.
//!
//! Set `UPDATE_SNAPSHOTS=1` to rewrite the snapshots after an intended change.

use lava_device::{Context, DeviceConfig, Renderer, render_device};
use lava_test_support::paths::workspace;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn renderer() -> Renderer {
    Renderer::new([workspace().join("fixtures/device-types")])
}

fn device(name: &str) -> PathBuf {
    workspace()
        .join("fixtures/devices")
        .join(format!("{name}.jinja2"))
}

fn check_snapshot(name: &str) -> String {
    let rendered = renderer()
        .render_file(&device(name), &Context::new())
        .unwrap();
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.yaml"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap();
    assert_eq!(
        rendered,
        expected,
        "{name} differs from {}",
        snapshot.display()
    );
    rendered
}

#[test]
fn every_fixture_device_has_a_snapshot() {
    let mut names: Vec<String> = std::fs::read_dir(workspace().join("fixtures/devices"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "jinja2").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    assert_eq!(names, ["local-shell01", "qemu01", "ssh01"]);
    for name in names {
        check_snapshot(&name);
    }
}

#[test]
fn qemu01_snapshot_and_config() {
    let text = check_snapshot("qemu01");
    assert!(!text.ends_with('\n'), "Jinja2 drops the final newline");
    let dev = DeviceConfig::from_yaml_str(&text, "qemu01").unwrap();
    assert_eq!(dev.hostname.as_deref(), Some("unnamed"));
    assert_eq!(dev.power_state, "off");
    assert_eq!(dev.power_off_command(), ["pkill -f qemu01", "sleep 1"]);
    assert_eq!(
        dev.available_architectures,
        ["amd64", "arm64", "i386", "riscv64"]
    );
    assert_eq!(
        dev.timeouts.actions["power-off"].duration(),
        Duration::from_secs(5)
    );
    assert_eq!(
        dev.timeouts.connections["lava-test-shell"].duration(),
        Duration::from_secs(10)
    );
    let qemu = dev.actions.boot.method_parameters("qemu").unwrap();
    assert_eq!(qemu["command"].as_str(), Some("qemu-system-x86_64"));
    let options: Vec<&str> = qemu["options"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        options.contains(&"-m 1024") && options.contains(&"-smp 2"),
        "{options:?}"
    );
    assert_eq!(
        dev.lookup(&[
            "actions",
            "deploy",
            "methods",
            "image",
            "parameters",
            "guest",
            "interface"
        ])
        .and_then(|v| v.as_str()),
        Some("ide")
    );
    assert_eq!(
        dev.lookup(&["constants", "posix", "lava_test_results_dir"])
            .and_then(Value::as_str),
        Some("/lava-%s")
    );
}

#[test]
fn local_shell01_snapshot_and_config() {
    check_snapshot("local-shell01");
    let dev = render_device(&renderer(), &device("local-shell01"), &Context::new()).unwrap();
    assert_eq!(
        dev.connect_command().unwrap(),
        "env -C '/tmp/lava rs/scratch' /bin/sh -i"
    );
    assert_eq!(dev.hard_reset_command(), ["/bin/true"]);
    assert!(dev.actions.deploy.has_method("overlay"));
    assert!(dev.actions.boot.has_method("minimal"));
    assert_eq!(
        dev.lookup(&["constants", "default-shell-prompt"])
            .and_then(Value::as_str),
        Some("local-shell\\$ ")
    );
}

#[test]
fn ssh01_snapshot_and_config() {
    check_snapshot("ssh01");
    let dev = render_device(&renderer(), &device("ssh01"), &Context::new()).unwrap();
    assert!(dev.actions.deploy.has_method("ssh"));
    assert!(dev.actions.boot.has_method("ssh"));
    let ssh = |key: &str| {
        dev.lookup(&["actions", "deploy", "methods", "ssh", key])
            .cloned()
    };
    assert_eq!(ssh("host").unwrap().as_str(), Some("192.0.2.10"));
    assert_eq!(ssh("port").unwrap().as_u64(), Some(2222));
    assert_eq!(ssh("user").unwrap().as_str(), Some("lava"));
    assert_eq!(
        ssh("identity_file").unwrap().as_str(),
        Some("/etc/lava-rs/keys/ssh01")
    );
    let options: Vec<String> = serde_yaml::from_value(ssh("options").unwrap()).unwrap();
    assert_eq!(
        options,
        [
            "-o",
            "Compression=yes",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "ConnectTimeout=10"
        ]
    );
    assert_eq!(
        dev.timeouts.actions["ssh-connection"].duration(),
        Duration::from_secs(45)
    );
}

#[test]
fn context_reaches_the_templates() {
    let ctx: Context = serde_yaml::from_str(
        "scheduled_device_name: qemu-ctx\narch: arm64\nnetdevice: tap\nguestfs_interface: scsi\n",
    )
    .unwrap();
    let dev = render_device(&renderer(), &device("qemu01"), &ctx).unwrap();
    assert_eq!(dev.hostname.as_deref(), Some("qemu-ctx"));
    let qemu = dev.actions.boot.method_parameters("qemu").unwrap();
    assert_eq!(qemu["command"].as_str(), Some("qemu-system-aarch64"));
    let interface = dev.lookup(&[
        "actions",
        "deploy",
        "methods",
        "image",
        "parameters",
        "guest",
        "interface",
    ]);
    assert_eq!(interface.and_then(|v| v.as_str()), Some("scsi"));
}
