//! Actions shared by several strategy families (overlay, test definitions, downloads,
//! login, shell expectations, environment export, power, finalize, user commands).

pub mod apply_overlay;
pub mod bootloader;
pub mod command;
pub mod downloader;
pub mod env;
pub mod fastboot;
pub mod finalize;
pub mod lava_overlay;
pub mod login;
pub mod power;
pub mod prepare_overlay;
pub mod testdef;

use lava_pipeline::command::run_command;
use lava_pipeline::{ErrorKind, LavaResult, RunContext};
use lava_python::shlex_split;
use serde_yaml::Value;

/// The commands of a device or job setting that may be one string or a list of strings
/// (`commands.power_on`, user command `do`/`undo`...). Other values give no command.
pub fn command_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(lava_pipeline::value::scalar_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Run each shell-style command line on the worker, in order, under the current
/// deadline; a failure is an error of `kind` (InfrastructureError for lab commands).
pub async fn run_host_commands(
    ctx: &mut RunContext,
    commands: &[String],
    kind: ErrorKind,
) -> LavaResult<()> {
    for line in commands {
        let argv = shlex_split(line)?;
        if argv.is_empty() {
            continue;
        }
        let deadline = ctx.deadline();
        run_command(&ctx.logger, &argv, None, deadline, kind, false).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Pipeline shapes of the shared actions, on small jobs and devices.

    use lava_pipeline::{
        DescribedAction, Device, Job, JobParser, LavaResult, ParseOptions, Pipeline,
    };

    const DEVICE: &str = r#"
constants:
  failure_retry: 1
  boot_retry: 0
  posix:
    lava_test_results_dir: /lava-%s
    lava_test_sh_cmd: /bin/sh
    lava_test_shell_file: ~/.bashrc
actions:
  deploy:
    connections: {serial: }
    methods:
      image:
        parameters: {guest: {size: 512}}
  boot:
    connections: {serial: }
    methods:
      qemu:
        parameters: {command: qemu-system-x86_64, options: []}
      minimal:
commands:
  hard_reset: pdu reset 1
"#;

    /// `job` parsed by the built-in registry on `device`.
    fn parse(job: &str, device: &str) -> LavaResult<(Job, Pipeline)> {
        let registry = crate::registry();
        let device = Device::from_yaml(device, None).expect("device");
        JobParser::new(&registry, &crate::FIXED).parse(job, device, &ParseOptions::default())
    }

    /// The pipeline the built-in registry builds for `job` on `device`.
    fn pipeline(job: &str, device: &str) -> Pipeline {
        parse(job, device).expect("job parses").1
    }

    fn describe(job: &str, device: &str) -> Vec<DescribedAction> {
        pipeline(job, device).describe()
    }

    /// Why each action of `job` on `device` cannot run here, as lava-run reports it.
    fn not_runnable(job: &str, device: &str) -> Vec<String> {
        pipeline(job, device)
            .not_runnable()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn names(actions: &[DescribedAction]) -> Vec<&str> {
        actions.iter().map(|a| a.name.as_str()).collect()
    }

    const DEPLOY: &str = "
- deploy:
    to: tmpfs
    images:
      disk:
        url: http://example.invalid/disk.img
      bios:
        url: file:///tmp/bios.bin
";

    fn job(blocks: &str) -> String {
        format!("timeouts: {{job: {{minutes: 5}}}}\ncontext: {{arch: amd64}}\nactions:{blocks}")
    }

    #[test]
    fn overlay_only_when_a_test_needs_it() {
        let without = describe(&job(DEPLOY), DEVICE);
        assert_eq!(
            names(&without[0].pipeline),
            ["download-retry", "download-retry"]
        );
        let tests = "
- test:
    definitions:
    - {from: inline, name: smoke, path: inline/smoke.yaml, repository: {metadata: {name: smoke}}}
";
        let with = describe(&job(&format!("{DEPLOY}{tests}")), DEVICE);
        assert_eq!(
            names(&with[0].pipeline),
            [
                "lava-overlay",
                "deploy-device-env",
                "download-retry",
                "download-retry",
                "apply-overlay-guest"
            ]
        );
        let overlay = &with[0].pipeline[0];
        assert_eq!(
            names(&overlay.pipeline),
            [
                "lava-multinode-overlay",
                "test-definition",
                "compress-overlay"
            ]
        );
        assert_eq!(
            names(&overlay.pipeline[1].pipeline),
            [
                "inline-repo-action",
                "test-overlay",
                "test-install-overlay",
                "test-runscript-overlay"
            ]
        );
        assert_eq!(names(&with[1].pipeline), ["lava-test-shell"]);
    }

    #[test]
    fn download_child_follows_the_url_scheme() {
        let actions = describe(&job(DEPLOY), DEVICE);
        let deploy = &actions[0];
        assert_eq!(deploy.pipeline[0].pipeline[0].name, "http-download");
        assert_eq!(
            deploy.pipeline[0].pipeline[0].url.as_deref(),
            Some("http://example.invalid/disk.img")
        );
        assert_eq!(deploy.pipeline[1].pipeline[0].name, "file-download");
        assert_eq!(deploy.pipeline[0].max_retries, 1);
    }

    #[test]
    fn unsupported_scheme_is_a_job_error() {
        let text = job("
- deploy:
    to: tmpfs
    images: {disk: {url: 'gopher://example.invalid/disk'}}
");
        let err = parse(&text, DEVICE).unwrap_err();
        assert!(
            err.message
                .contains("Unsupported url protocol scheme: gopher")
        );
    }

    #[test]
    fn login_only_with_prompts_and_shell_only_with_a_test() {
        let boot = "
- boot:
    method: qemu
    media: tmpfs
";
        let plain = describe(&job(&format!("{DEPLOY}{boot}")), DEVICE);
        assert_eq!(names(&plain[1].pipeline), ["boot-qemu-image"]);
        let prompts = format!("{DEPLOY}{boot}    prompts: ['root@debian:~#']\n");
        let login = describe(&job(&prompts), DEVICE);
        assert_eq!(
            names(&login[1].pipeline),
            ["boot-qemu-image", "auto-login-action"]
        );
        let test = "
- test:
    definitions:
    - {from: git, name: smoke, path: smoke.yaml, repository: 'https://example.invalid/t.git'}
";
        let shell = describe(&job(&format!("{prompts}{test}")), DEVICE);
        assert_eq!(
            names(&shell[1].pipeline),
            [
                "boot-qemu-image",
                "auto-login-action",
                "expect-shell-connection",
                "export-device-env"
            ]
        );
        assert_eq!(names(&shell[1].pipeline[1].pipeline), ["login-action"]);
    }

    #[test]
    fn reset_device_uses_the_pdu_when_hard_reset_is_set() {
        let boot = "
- boot:
    method: minimal
";
        let with_pdu = describe(&job(boot), DEVICE);
        assert_eq!(
            names(&with_pdu[0].pipeline),
            ["connect-device", "reset-device"]
        );
        assert_eq!(names(&with_pdu[0].pipeline[1].pipeline), ["pdu-reboot"]);
        let no_pdu = DEVICE.replace("  hard_reset: pdu reset 1\n", "  power_on: pdu on 1\n");
        let soft = describe(&job(boot), &no_pdu);
        assert_eq!(
            names(&soft[0].pipeline[1].pipeline),
            ["send-reboot-commands"]
        );
        let no_reset = describe(&job("\n- boot: {method: minimal, reset: false}"), DEVICE);
        assert_eq!(names(&no_reset[0].pipeline), ["connect-device"]);
    }

    #[test]
    fn multinode_test_replaces_the_test_shell_in_a_group() {
        let text = "timeouts: {job: {minutes: 5}}
context: {arch: amd64}
protocols:
  lava-multinode: {target_group: abc, role: client, roles: {}}
actions:
- test:
    role: [client]
    definitions:
    - {from: git, name: smoke, path: smoke.yaml, repository: 'https://example.invalid/t.git'}
";
        let actions = describe(text, DEVICE);
        assert_eq!(names(&actions), ["multinode-test", "finalize"]);
        assert!(actions[0].pipeline.is_empty());
        let single = describe(
            &job("\n- test:\n    failure_retry: 3\n    timeout: {minutes: 3}\n    definitions: []"),
            DEVICE,
        );
        assert_eq!(single[0].name, "lava-test-retry");
        assert_eq!(single[0].max_retries, 3);
        assert_eq!(single[0].pipeline[0].timeout, 60);
    }

    #[test]
    fn finalize_and_user_command() {
        let actions = describe(&job("\n- command: {name: hard_reset}"), DEVICE);
        assert_eq!(names(&actions), ["user-command", "finalize"]);
        assert_eq!(names(&actions[1].pipeline), ["power-off", "read-feedback"]);
    }

    fn validation_errors(job: &str, device: &str) -> String {
        let (job, mut pipeline) = parse(job, device).expect("job parses");
        match pipeline.validate(&job) {
            Ok(()) => String::new(),
            Err(e) => e.message,
        }
    }

    #[test]
    fn user_command_validation() {
        let errors = validation_errors(&job("\n- command: {name: reboot_board}"), DEVICE);
        assert!(
            errors.contains("Device has no configured user commands"),
            "{errors}"
        );
        let with_users =
            format!("{DEVICE}  users:\n    relay_on: {{do: relay 1 on, undo: relay 1 off}}\n");
        let errors = validation_errors(&job("\n- command: {name: reboot_board}"), &with_users);
        assert!(
            errors.contains("Unknown user command 'reboot_board'"),
            "{errors}"
        );
        assert!(validation_errors(&job("\n- command: {name: relay_on}"), &with_users).is_empty());
        let errors = validation_errors(&job("\n- command: {name: power_off}"), DEVICE);
        assert!(
            errors.contains("Command 'power_off' not defined for this device"),
            "{errors}"
        );
    }

    #[test]
    fn test_definition_names_are_checked() {
        let text = job("
- deploy: {to: tmpfs, images: {disk: {url: 'downloads://disk.img'}}}
- test:
    definitions:
    - {from: inline, name: 'bad name', path: a.yaml, repository: {metadata: {name: a}}}
    - {from: inline, name: 'bad name', path: b.yaml, repository: {metadata: {name: b}}}
");
        let errors = validation_errors(&text, DEVICE);
        assert!(
            errors.contains("Invalid characters found in test definition name: bad name"),
            "{errors}"
        );
        assert!(
            errors.contains("Test definition names need to be unique."),
            "{errors}"
        );
    }

    #[test]
    fn urls_split_like_python() {
        use super::downloader::Url;
        let url = Url::parse("http://host:8080/path/file.img.gz?x=1");
        assert_eq!(
            (url.scheme.as_str(), url.netloc.as_str(), url.path.as_str()),
            ("http", "host:8080", "/path/file.img.gz")
        );
        assert_eq!(url.basename(), "file.img.gz");
        assert_eq!(Url::parse("/local/file").scheme, "");
        assert_eq!(Url::parse("downloads://disk.img").netloc, "disk.img");
    }

    #[test]
    fn actions_without_a_run_are_named_with_their_block_and_method() {
        let uboot_device = DEVICE.replace(
            "      minimal:\n",
            "      minimal:\n      u-boot:\n        parameters: {bootloader_prompt: '=>', boot_message: Starting kernel, uboot_ums_flash: true, uboot_mass_storage_device: /dev/sdz}\n        ramdisk:\n          commands: [boot]\n",
        );
        let text = job("
- deploy: {to: tmpfs, images: {disk: {url: 'downloads://disk.img'}}}
- boot: {method: u-boot, commands: ramdisk, prompts: ['# ']}
");
        let reasons = not_runnable(&text, &uboot_device);
        assert!(
            reasons.contains(
                &"actions[1].boot: action 'wait-device-path' (method u-boot) cannot run in lava-rs yet"
                    .to_string()
            ),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().all(|r| r.starts_with("actions[")),
            "{reasons:?}"
        );
        let error = pipeline(&text, &uboot_device).check_runnable().unwrap_err();
        assert_eq!(error.kind, lava_pipeline::ErrorKind::Job);
    }

    #[test]
    fn qemu_image_jobs_with_appended_overlays_can_run_here() {
        let refused = |text: &str| not_runnable(&job(text), DEVICE);
        let test = "
- test:
    definitions:
    - {from: inline, name: smoke, path: inline/smoke.yaml, repository: {metadata: {name: smoke}}}
";
        let ramdisk = "
- deploy: {to: tmpfs, images: {kernel: {url: 'file:///k'}, ramdisk: {url: 'file:///r'}}}
- boot: {method: qemu, media: tmpfs, prompts: ['# ']}";
        assert_eq!(refused(&format!("{ramdisk}{test}")), Vec::<String>::new());
        let appended = "
- deploy:
    to: tmpfs
    images:
      kernel: {url: 'file:///k'}
      ramdisk: {url: 'file:///r', format: cpio.newc, overlays: {lava: true}}
- boot: {method: qemu, media: tmpfs, prompts: ['# ']}";
        assert_eq!(refused(&format!("{appended}{test}")), Vec::<String>::new());
        let disk_only = "\n- deploy: {to: tmpfs, images: {disk: {url: 'file:///d'}}}";
        assert_eq!(refused(&format!("{disk_only}{test}")), Vec::<String>::new());
        for format in ["tar", "ext4"] {
            let image = format!(
                "
- deploy:
    to: tmpfs
    images:
      rootfs: {{url: 'file:///r', format: {format}, overlays: {{lava: true}}}}"
            );
            assert_eq!(
                refused(&format!("{image}{test}")),
                Vec::<String>::new(),
                "{format}"
            );
        }
    }

    #[test]
    fn iso_installer_jobs_describe_and_run_here() {
        let text = job("
- deploy:
    to: iso-installer
    os: debian_installer
    images:
      iso: {url: 'http://example.invalid/debian.iso'}
      preseed: {url: 'http://example.invalid/preseed.cfg'}
    iso: {kernel: /install.amd/vmlinuz, initrd: /install.amd/initrd.gz, installation_size: 2G}
- boot: {method: qemu-iso, media: img, prompts: ['root@debian:~#']}
");
        let actions = describe(&text, DEVICE);
        assert_eq!(
            names(&actions),
            ["deploy-iso-installer", "boot-installer-iso", "finalize"]
        );
        assert_eq!(
            names(&actions[0].pipeline),
            [
                "prepare-empty-image",
                "download-retry",
                "download-retry",
                "pull-installer-files",
                "prepare-qemu-commands"
            ]
        );
        assert_eq!(
            names(&actions[1].pipeline),
            [
                "execute-installer-command",
                "monitor-installer-connection",
                "reboot-into-installed",
                "auto-login-action",
                "expect-shell-connection",
                "export-device-env"
            ]
        );
        assert_eq!(not_runnable(&text, DEVICE), Vec::<String>::new());
        let bad_size = text.replace("installation_size: 2G", "installation_size: 2T");
        let errors = validation_errors(&bad_size, DEVICE);
        assert!(
            errors.contains("Unable to recognise size indication in 2T - use M or G"),
            "{errors}"
        );
    }
}
