//! The QEMU command line from our device YAML, and (when QEMU and the test system are
//! available) real boots of the test-system kernel: to the shell prompt, and to a kernel
//! panic that ends as a named JobError with the panic text in the log.

use lava_actions::runtime::console::ConsoleConnection;
use lava_actions::runtime::image_download::download_image;
use lava_actions::runtime::qemu::{
    DebianPackage, GuestDrive, ImageArg, NfsRoot, QemuData, QemuInputs, debian_package_in_status,
    deployed_image_keys, qemu_argv, start_qemu, wait_for_kernel_start,
    wait_for_prompt_watching_panic,
};
use lava_pipeline::{Device, ErrorKind, Job, JobLogger, LavaResult, RunContext};
use lava_test_support::ci::{require_tool, skip_or_fail};
use lava_test_support::paths::{test_system, workspace};
use lava_test_support::runtime::{ActionSpec, StepAction, StepFn, step};
use serde_yaml::Mapping;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn device() -> Device {
    Device::load(&workspace().join("fixtures/qemu/device.yaml")).unwrap()
}

/// Runs `f` as action `name` (level 2.1.1 of boot) with `params` and `timeout` seconds.
async fn run_step(
    ctx: &mut RunContext,
    name: &str,
    params: &Mapping,
    timeout: u64,
    f: StepFn,
) -> LavaResult<()> {
    let spec = ActionSpec::new(name, "boot", "2.1.1")
        .timeout(timeout)
        .connection_timeout(timeout)
        .timeout_kind(ErrorKind::Job)
        .parameters(params.clone());
    spec.run(ctx, Box::new(StepAction::new(name, f))).await
}

#[test]
fn command_line_from_the_device_and_images() {
    let inputs = QemuInputs {
        images: vec![
            ImageArg {
                label: "kernel".into(),
                image_arg: r#"-kernel {kernel} -append "console=ttyS0,115200 root=/dev/ram0""#
                    .into(),
                file: "/tmp/job/kernel/vmlinuz".into(),
            },
            ImageArg {
                label: "ramdisk".into(),
                image_arg: "-initrd {ramdisk}".into(),
                file: "/tmp/job/ramdisk/initrd.cpio.gz".into(),
            },
        ],
        uefi_dir: None,
        guest: None,
        ..QemuInputs::default()
    };
    let argv = qemu_argv(&device(), &inputs).unwrap();
    assert_eq!(
        argv,
        [
            "qemu-system-x86_64",
            "-nographic",
            "-net",
            "none",
            "-m",
            "256",
            "-monitor",
            "none",
            "-accel",
            "tcg",
            "-kernel",
            "/tmp/job/kernel/vmlinuz",
            "-append",
            "console=ttyS0,115200 root=/dev/ram0",
            "-initrd",
            "/tmp/job/ramdisk/initrd.cpio.gz",
        ]
    );

    let inputs = QemuInputs {
        images: vec![ImageArg {
            label: "rootfs".into(),
            image_arg: "-drive format=raw,file={rootfs}".into(),
            file: "/j/rootfs.img".into(),
        }],
        uefi_dir: Some("/j/uefi".into()),
        guest: Some(GuestDrive {
            file: "/j/lava-guest.qcow2".into(),
            interface: "ide".into(),
            driveid: "lavatest".into(),
        }),
        ..QemuInputs::default()
    };
    let argv = qemu_argv(&device(), &inputs).unwrap();
    assert_eq!(
        &argv[10..],
        [
            "-drive",
            "format=raw,file=/j/rootfs.img",
            "-L",
            "/j/uefi",
            "-monitor",
            "none",
            "-drive",
            "format=qcow2,file=/j/lava-guest.qcow2,media=disk,if=ide,id=lavatest",
        ]
    );
    // A device without a qemu method is a configuration error.
    let bare = Device::from_yaml(
        "constants: {}\nactions: {boot: {methods: {minimal: }}}",
        None,
    )
    .unwrap();
    assert_eq!(
        qemu_argv(&bare, &inputs).unwrap_err().kind,
        ErrorKind::Configuration
    );
}

/// `method: qemu-nfs`: the kernel command line of the NFS root as LAVA builds it from the
/// device's `qemu-nfs` `append` parameters (LAVA's own test of kvm02 expects `--append`
/// and the quoted `console=… root=/dev/nfs nfsroot=…,tcp,hard rw ip=dhcp`), with
/// `{NFS_SERVER_IP}` also replaced in the image arguments; the overlay drive is not added.
#[test]
fn qemu_nfs_command_line_points_the_kernel_at_the_nfs_root() {
    let device = Device::from_yaml(
        r#"
actions:
  boot:
    methods:
      qemu-nfs:
        parameters:
          command: qemu-system-x86_64
          options: [-nographic, '-m 256']
          append:
            console: ttyS0
            root: /dev/nfs
            nfsrootargs: 'nfsroot={NFS_SERVER_IP}:{NFSROOTFS},tcp,hard,vers=3'
            ipargs: ip=dhcp
"#,
        None,
    )
    .unwrap();
    let nfs =
        NfsRoot::from_device(&device, Some("/var/lib/lava/dispatcher/tmp/7/root".into())).unwrap();
    let inputs = QemuInputs {
        images: vec![
            ImageArg {
                label: "kernel".into(),
                image_arg: "-kernel {kernel}".into(),
                file: "/j/vmlinux".into(),
            },
            ImageArg {
                label: "initrd".into(),
                image_arg: "-initrd {initrd} -fw_cfg name=opt/server,string={NFS_SERVER_IP}".into(),
                file: "/j/initrd.gz".into(),
            },
        ],
        guest: Some(GuestDrive {
            file: "/j/lava-guest.qcow2".into(),
            interface: "ide".into(),
            driveid: "lavatest".into(),
        }),
        nfs_server_ip: Some("10.0.2.2".into()),
        nfs: Some(nfs.clone()),
        ..QemuInputs::default()
    };
    let words = lava_actions::runtime::qemu::qemu_words(&device, &inputs).unwrap();
    assert_eq!(
        &words[3..],
        [
            "-kernel /j/vmlinux",
            "-initrd /j/initrd.gz -fw_cfg name=opt/server,string=10.0.2.2",
            "--append",
            "\"console=ttyS0 root=/dev/nfs \
             nfsroot=10.0.2.2:/var/lib/lava/dispatcher/tmp/7/root,tcp,hard,vers=3 rw ip=dhcp\"",
        ]
    );
    let argv = qemu_argv(&device, &inputs).unwrap();
    assert_eq!(
        argv.last().unwrap(),
        "console=ttyS0 root=/dev/nfs \
         nfsroot=10.0.2.2:/var/lib/lava/dispatcher/tmp/7/root,tcp,hard,vers=3 rw ip=dhcp"
    );
    // No root unpacked yet: the placeholder stays, as LAVA leaves it.
    let inputs = QemuInputs {
        nfs: Some(NfsRoot {
            root_dir: None,
            ..nfs
        }),
        ..inputs
    };
    let words = lava_actions::runtime::qemu::qemu_words(&device, &inputs).unwrap();
    assert!(
        words
            .last()
            .unwrap()
            .contains("nfsroot=10.0.2.2:{NFSROOTFS},tcp"),
        "{words:?}"
    );
    // A qemu-nfs method without its append parameters is the device's fault.
    let bare = Device::from_yaml(
        "actions: {boot: {methods: {qemu-nfs: {parameters: {command: qemu-system-x86_64}}}}}",
        None,
    )
    .unwrap();
    assert_eq!(
        NfsRoot::from_device(&bare, None).unwrap_err().kind,
        ErrorKind::Configuration
    );
}

#[test]
fn image_keys_follow_the_job_per_namespace() {
    let job: Mapping = serde_yaml::from_str(
        r#"
actions:
- deploy: {to: tmpfs, images: {kernel: {url: a}, ramdisk: {url: b}}}
- deploy: {to: tmpfs, namespace: other, images: {rootfs: {url: c}}}
- boot: {method: qemu}
"#,
    )
    .unwrap();
    assert_eq!(deployed_image_keys(&job, "common"), ["kernel", "ramdisk"]);
    assert_eq!(deployed_image_keys(&job, "other"), ["rootfs"]);
}

/// QEMU and the test system; `None` when one is missing (skipped; a failure under CI).
/// A dpkg `status` file's paragraphs, as `dpkg-query -W` sees them.
const DPKG_STATUS: &str = "\
Package: qemu-system-x86-xen
Status: install ok installed
Version: 9.9
Architecture: amd64

Package: qemu-system-arm
Status: deinstall ok not-installed
Architecture: amd64

Package: qemu-system-x86
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 1:10.0.2+ds-2+deb13u1~bpo12+1
Description: QEMU full system emulation binaries (x86)
 Package: qemu-system-ppc
 Version: 0
";

#[test]
fn the_qemu_package_is_read_from_dpkg_status_as_dpkg_query_answers() {
    assert_eq!(
        debian_package_in_status(DPKG_STATUS, "qemu-system-x86"),
        Some(DebianPackage {
            version: "1:10.0.2+ds-2+deb13u1~bpo12+1".into(),
            architecture: "amd64".into(),
        })
    );
    // A purged package, a name that only starts a longer one's, a description's line.
    assert_eq!(
        debian_package_in_status(DPKG_STATUS, "qemu-system-arm"),
        None
    );
    assert_eq!(debian_package_in_status(DPKG_STATUS, "qemu-system"), None);
    assert_eq!(
        debian_package_in_status(DPKG_STATUS, "qemu-system-ppc"),
        None
    );
}

#[test]
fn the_qemu_version_is_lavas_debian_package_version_else_the_binarys() {
    if !require_tool("qemu-system-x86_64", "scripts/install-test-deps.sh") {
        return;
    }
    // What LAVA asks dpkg, on this (Debian) machine.
    let asked = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version} ${Architecture}", "qemu-system-x86"])
        .output();
    let Some(answer) = asked
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    else {
        skip_or_fail("dpkg-query knows no qemu-system-x86 (QEMU is not Debian's here)");
        return;
    };
    let (version, arch) = answer.split_once(' ').unwrap();
    let (data, line) = QemuData::find("amd64", "qemu-system-x86_64").unwrap();
    assert_eq!(
        data,
        QemuData {
            version: version.into(),
            host_arch: arch.into(),
            job_arch: "amd64".into(),
        }
    );
    assert_eq!(
        line,
        format!("qemu-system-x86, installed at version: {version}, host architecture: {arch}")
    );
    // No Debian package for the architecture: the binary's own `--version`.
    let (data, line) = QemuData::find("riscv64", "qemu-system-x86_64").unwrap();
    assert!(
        version.contains(&data.version),
        "{data:?} against {version}"
    );
    assert_eq!(data.host_arch, std::env::consts::ARCH);
    assert_eq!(data.job_arch, "riscv64");
    assert_eq!(
        line,
        format!(
            "qemu, installed at version: {}, host architecture: {}",
            data.version, data.host_arch
        )
    );
    assert_eq!(QemuData::find("riscv64", "/nonexistent/qemu"), None);
}

fn boot_prerequisites() -> Option<(PathBuf, PathBuf)> {
    let dir = test_system();
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initramfs.cpio.gz");
    if !require_tool("qemu-system-x86_64", "scripts/install-test-deps.sh") {
        return None;
    }
    if !kernel.is_file() || !initrd.is_file() {
        skip_or_fail(format!(
            "the test system is not built in {} (cargo xtask test-system)",
            dir.display()
        ));
        return None;
    }
    Some((kernel, initrd))
}

fn boot_context(images: &str) -> RunContext {
    let job: Mapping = serde_yaml::from_str(&format!(
        "context: {{arch: amd64, no_kvm: true}}\nactions:\n- deploy: {{to: tmpfs, images: {images}}}\n"
    ))
    .unwrap();
    let job = Job::new("1", job, device(), 600);
    RunContext::new(Arc::new(job), JobLogger::capturing())
}

async fn download_all(ctx: &mut RunContext, tmp: &Path, images: Vec<(&'static str, Mapping)>) {
    for (key, params) in images {
        let dir = tmp.join(key);
        run_step(
            ctx,
            "file-download",
            &Mapping::new(),
            60,
            step(move |ctx| {
                let params = params.clone();
                let dir = dir.clone();
                Box::pin(async move { download_image(ctx, key, &dir, &params).await.map(|_| ()) })
            }),
        )
        .await
        .unwrap();
    }
}

fn image(url: &Path, image_arg: &str) -> Mapping {
    let mut m = Mapping::new();
    m.insert("url".into(), format!("file://{}", url.display()).into());
    m.insert("image_arg".into(), image_arg.into());
    m
}

fn boot_params() -> Mapping {
    serde_yaml::from_str("{method: qemu, media: tmpfs, prompts: ['/ # ']}").unwrap()
}

/// Ends the connection as finalize does and checks QEMU is gone at once.
async fn finalise(ctx: &mut RunContext) {
    let mut connection = ctx.connections.remove("common").expect("a connection");
    let pid = connection
        .as_any_mut()
        .downcast_mut::<ConsoleConnection>()
        .unwrap()
        .pid();
    let started = std::time::Instant::now();
    connection.finalise().await;
    let proc = PathBuf::from(format!("/proc/{pid}"));
    // Reaped: the pid no longer exists (no zombie left).
    while proc.exists() && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!proc.exists(), "QEMU {pid} survived finalise");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "finalise was slow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_the_test_system_to_a_shell() {
    let Some((kernel, initrd)) = boot_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut ctx = boot_context("{kernel: {url: k}, ramdisk: {url: r}}");
    let mut ramdisk = image(&initrd, "-initrd {ramdisk}");
    ramdisk.insert("compression".into(), "gz".into());
    download_all(
        &mut ctx,
        tmp.path(),
        vec![
            (
                "kernel",
                image(
                    &kernel,
                    r#"-kernel {kernel} -append "console=ttyS0,115200""#,
                ),
            ),
            ("ramdisk", ramdisk),
        ],
    )
    .await;
    let result = run_step(
        &mut ctx,
        "execute-qemu",
        &boot_params(),
        240,
        step(|ctx| {
            Box::pin(async move {
                start_qemu(ctx).await?;
                wait_for_kernel_start(ctx, "qemu").await?;
                wait_for_prompt_watching_panic(ctx, &["/ # ".to_string()])
                    .await
                    .map(|_| ())
            })
        }),
    )
    .await;
    let log = ctx.logger.captured().join("\n");
    if let Err(e) = &result {
        panic!("{e:?}\n{log}");
    }
    assert!(log.contains("Boot command: /"), "{log}");
    assert!(log.contains("-initrd"), "{log}");
    assert!(log.contains("Linux version"), "{log}");
    finalise(&mut ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_panic_is_a_named_job_error_with_the_whole_text() {
    let Some((kernel, _)) = boot_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // No initramfs and no root device: the kernel cannot mount a root fs and panics.
    let mut ctx = boot_context("{kernel: {url: k}}");
    download_all(
        &mut ctx,
        tmp.path(),
        vec![(
            "kernel",
            image(
                &kernel,
                r#"-kernel {kernel} -append "console=ttyS0,115200 panic=0""#,
            ),
        )],
    )
    .await;
    let result = run_step(
        &mut ctx,
        "execute-qemu",
        &boot_params(),
        240,
        step(|ctx| {
            Box::pin(async move {
                start_qemu(ctx).await?;
                wait_for_kernel_start(ctx, "qemu").await?;
                wait_for_prompt_watching_panic(ctx, &["/ # ".to_string()])
                    .await
                    .map(|_| ())
            })
        }),
    )
    .await;
    let log = ctx.logger.captured().join("\n");
    let err = result.expect_err("the boot must fail");
    assert_eq!(err.kind, ErrorKind::Job, "{err:?}\n{log}");
    assert!(
        err.message.contains("Kernel panic - not syncing"),
        "{err:?}"
    );
    assert!(log.contains("Kernel panic - not syncing: VFS"), "{log}");
    assert!(log.contains("end Kernel panic"), "{log}");
    assert!(log.contains("kernel 'panic'"), "{log}");
    finalise(&mut ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_hang_is_the_action_timeout() {
    let Some(_) = boot_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // A "kernel" that is not one: QEMU's firmware never starts Linux.
    let fake = tmp.path().join("blank");
    std::fs::write(&fake, vec![0u8; 4096]).unwrap();
    let mut ctx = boot_context("{rootfs: {url: r}}");
    download_all(
        &mut ctx,
        tmp.path(),
        vec![("rootfs", image(&fake, "-drive format=raw,file={rootfs}"))],
    )
    .await;
    let started = std::time::Instant::now();
    let result = run_step(
        &mut ctx,
        "execute-qemu",
        &boot_params(),
        4,
        step(|ctx| {
            Box::pin(async move {
                start_qemu(ctx).await?;
                wait_for_kernel_start(ctx, "qemu").await
            })
        }),
    )
    .await;
    let log = ctx.logger.captured().join("\n");
    let err = result.expect_err("no kernel");
    assert_eq!(err.kind, ErrorKind::Job, "{err:?}");
    assert_eq!(err.message, "execute-qemu timed out after 4 seconds");
    assert!(log.contains("Boot hang"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(15));
    finalise(&mut ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_uefi_firmware_reaches_qemu_as_its_bios_directory() {
    use lava_actions::deploy::tmpfs::DeployImagesAction;
    use lava_actions::runtime::qemu::{inputs_from_context, qemu_words};
    let mut ctx = boot_context("{kernel: {url: 'file:///k', image_arg: '-kernel {kernel}'}}");
    let spec = ActionSpec::new("deployimages", "deploy", "1");
    spec.run(&mut ctx, Box::new(DeployImagesAction::new(false)))
        .await
        .unwrap();
    assert_eq!(
        inputs_from_context(&ctx).uefi_dir,
        None,
        "no firmware, no -L"
    );

    spec.run(&mut ctx, Box::new(DeployImagesAction::new(true)))
        .await
        .unwrap();
    let expected = ctx
        .job
        .scratch_dir
        .join("downloads/uefi")
        .display()
        .to_string();
    let inputs = inputs_from_context(&ctx);
    assert_eq!(inputs.uefi_dir.as_deref(), Some(expected.as_str()));
    let words = qemu_words(&device(), &inputs).unwrap();
    let at = words
        .iter()
        .position(|w| w == "-L")
        .expect("-L in the command line");
    assert_eq!(words[at..at + 4], ["-L", &expected, "-monitor", "none"]);
}
