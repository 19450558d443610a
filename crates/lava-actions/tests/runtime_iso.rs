//! The `iso-installer` deployment's run-time steps without QEMU: `prepare-empty-image`
//! makes the raw disk with `qemu-img`, `pull-installer-files` copies the kernel and initrd
//! out of a real ISO (made here with `xorriso`) and fails on a path the ISO does not hold,
//! and `prepare-qemu-commands` serves the preseed from the TFTP root and records LAVA's
//! installer command line. (The installer itself runs in lava-dispatch's `e2e_iso.rs`.)

use lava_actions::runtime::iso::{
    create_empty_image, prepare_installer_command, pull_installer_files,
};
use lava_pipeline::value::scalar_string;
use lava_pipeline::{Device, ErrorKind, RunContext};
use lava_test_support::ci::require_tool;
use lava_test_support::runtime::{ActionSpec, StepAction, capturing_context, step};
use serde_yaml::{Mapping, Value};
use std::path::Path;
use std::process::Command;

const DEVICE: &str = r#"
constants: {failure_retry: 1}
actions:
  boot:
    methods:
      qemu:
        parameters:
          command: qemu-system-x86_64
          boot_options: {root: /dev/sda1, console: 'ttyS0,115200', boot_order: c}
          options: [-nographic, -m 256]
"#;

fn context(job_id: &str, parameters: Mapping) -> RunContext {
    let device = Device::from_yaml(DEVICE, None).unwrap();
    let job_id = format!("{}{job_id}", std::process::id());
    capturing_context(&job_id, parameters, device, 120)
}

fn data(ctx: &RunContext, action: &str, label: &str, key: &str) -> Option<String> {
    ctx.get_data(action, label, key).and_then(scalar_string)
}

#[tokio::test]
async fn the_empty_image_has_the_installation_size() {
    if !require_tool("qemu-img", "Debian package qemu-utils") {
        return;
    }
    let mut ctx = context("71", Mapping::new());
    let spec = ActionSpec::new("prepare-empty-image", "deploy", "1.1");
    let action = StepAction::new(
        spec.name(),
        step(|ctx| {
            Box::pin(async move { create_empty_image(ctx, 64 * 1024 * 1024).await.map(|_| ()) })
        }),
    );
    spec.run(&mut ctx, Box::new(action)).await.unwrap();
    let output = data(&ctx, "prepare-empty-image", "prepare-empty-image", "output").unwrap();
    assert!(
        output.ends_with("/prepare-empty-image-1-1/hd.img"),
        "{output}"
    );
    assert_eq!(std::fs::metadata(&output).unwrap().len(), 64 * 1024 * 1024);
    let _ = std::fs::remove_dir_all(&ctx.job.scratch_dir);
}

/// An ISO holding `install.amd/vmlinuz` and `install.amd/initrd.gz`, in `dir`.
fn iso(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("tree/install.amd");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("vmlinuz"), "a kernel\n").unwrap();
    std::fs::write(tree.join("initrd.gz"), "an initrd\n").unwrap();
    let downloads = dir.join("downloads/iso");
    std::fs::create_dir_all(&downloads).unwrap();
    let iso = downloads.join("installer.iso");
    let status = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-r", "-o"])
        .arg(&iso)
        .arg(dir.join("tree"))
        .status()
        .unwrap();
    assert!(status.success());
    iso
}

async fn pull(ctx: &mut RunContext, files: Vec<(String, String)>) -> lava_pipeline::LavaResult<()> {
    let spec =
        ActionSpec::new("pull-installer-files", "deploy", "1.4").timeout_kind(ErrorKind::Job);
    let action = StepAction::new(
        spec.name(),
        step(move |ctx| {
            let files = files.clone();
            Box::pin(async move { pull_installer_files(ctx, &files).await })
        }),
    );
    spec.run(ctx, Box::new(action)).await
}

#[tokio::test]
async fn kernel_and_initrd_are_pulled_out_of_the_iso() {
    if !require_tool("xorriso", "Debian package xorriso") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let iso = iso(dir.path());
    let mut ctx = context("72", Mapping::new());
    ctx.set_data("download-action", "iso", "file", iso.display().to_string());
    let files = vec![
        ("kernel".to_string(), "/install.amd/vmlinuz".to_string()),
        ("initrd".to_string(), "/install.amd/initrd.gz".to_string()),
    ];
    pull(&mut ctx, files.clone()).await.unwrap();
    let kernel = data(
        &ctx,
        "pull-installer-files",
        "pull-installer-files",
        "kernel",
    )
    .unwrap();
    let initrd = data(
        &ctx,
        "pull-installer-files",
        "pull-installer-files",
        "initrd",
    )
    .unwrap();
    let next_to_iso = iso.parent().unwrap();
    assert_eq!(Path::new(&kernel), next_to_iso.join("vmlinuz"));
    assert_eq!(std::fs::read_to_string(&kernel).unwrap(), "a kernel\n");
    assert_eq!(std::fs::read_to_string(&initrd).unwrap(), "an initrd\n");
    // Pulled again (a retried deployment): the files are replaced, not refused.
    pull(&mut ctx, files).await.unwrap();

    let missing = vec![(
        "kernel".to_string(),
        "/install.amd/no-such-file".to_string(),
    )];
    let error = pull(&mut ctx, missing).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Job, "{error}");
}

#[tokio::test]
async fn without_the_iso_download_the_pull_is_a_job_error() {
    let mut ctx = context("73", Mapping::new());
    let files = vec![("kernel".to_string(), "/vmlinuz".to_string())];
    let error = pull(&mut ctx, files).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Job);
    assert_eq!(
        error.message,
        "installer image path is not present in the namespace."
    );
}

#[tokio::test]
async fn the_preseed_is_served_from_the_tftp_root_by_its_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    let tftp = dir.path().join("tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    let preseed = dir.path().join("preseed.cfg");
    std::fs::write(&preseed, "d-i partman-auto/disk string /dev/sda\n").unwrap();
    let job: Mapping = serde_yaml::from_str(&format!(
        "dispatcher: {{dispatcher_ip: 10.0.2.2, tftp_dir: '{}'}}",
        tftp.display()
    ))
    .unwrap();
    let mut ctx = context("74", job);
    ctx.set_data(
        "download-action",
        "preseed",
        "file",
        preseed.display().to_string(),
    );
    ctx.set_data(
        "pull-installer-files",
        "pull-installer-files",
        "kernel",
        "/d/vmlinuz",
    );
    let params: Mapping = serde_yaml::from_str(
        r#"
to: iso-installer
deployment_data:
  base: 'auto=true install '
  locale: debian-installer/locale=en_US
  keymaps: keyboard-configuration/xkb-keymap=us
  netcfg: netcfg/choose_interface=auto
  prompts: ['ERROR: Installation step failed', 'reboot: Power down']
"#,
    )
    .unwrap();
    let spec = ActionSpec::new("prepare-qemu-commands", "deploy", "1.5").parameters(params);
    let action = StepAction::new(
        spec.name(),
        step(|ctx| Box::pin(async move { prepare_installer_command(ctx).await })),
    );
    spec.run(&mut ctx, Box::new(action)).await.unwrap();
    let job_id = ctx.job.id.clone();
    let served = tftp
        .join(&job_id)
        .join("deploy-iso-installer-1/preseed.cfg");
    assert_eq!(
        std::fs::read_to_string(&served).unwrap(),
        "d-i partman-auto/disk string /dev/sda\n"
    );
    assert_eq!(
        data(&ctx, "deploy-iso-installer", "iso", "suffix").unwrap(),
        format!("{job_id}/deploy-iso-installer-1")
    );
    let append = data(
        &ctx,
        "prepare-qemu-commands",
        "prepare-qemu-commands",
        "append",
    )
    .unwrap();
    assert!(
        append.contains(&format!(
            "preseed/url=tftp://10.0.2.2/{job_id}/deploy-iso-installer-1/preseed.cfg --- console=ttyS0,115200"
        )),
        "{append}"
    );
    let words: Vec<String> = match ctx.get_data(
        "prepare-qemu-commands",
        "prepare-qemu-commands",
        "sub_command",
    ) {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar_string).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        words,
        [
            "qemu-system-x86_64",
            "-nographic",
            "-m 256",
            "-drive format=raw,file={emptyimage}",
            "-boot c",
            "-kernel /d/vmlinuz",
        ]
    );
    // The job's TFTP directory goes when the job ends.
    assert!(
        ctx.override_dirs().iter().any(|d| d == &tftp.join(&job_id)),
        "{:?}",
        ctx.override_dirs()
    );
}
