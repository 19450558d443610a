//! `cargo xtask support-matrix`: which deploy, boot and test methods run in lava-rs, which
//! are validate-only, what stops them and which test proves them, written to
//! `docs/support-matrix.md` from the strategies' own capability so that it cannot drift.
//!
//! How it is made:
//! - **Capability** is each action's [`Action::runnable`](lava_pipeline::Action), the same
//!   answer `lava-run --validate` gives. Actions only exist in built pipelines, so every
//!   job shape we have is built (never validated or run): the repository's fixture jobs
//!   with their devices (`fixtures/support-matrix/` holds shapes for strategies no other
//!   fixture or corpus job builds) and, when `../shared` is present, every case of LAVA's
//!   pipeline corpora. Each job block is credited to the strategy the registry selects for it, with
//!   every action of its subtree and whether that action runs (and, for actions that run
//!   in some forms only, the missing form).
//! - **The census** (`docs/support-matrix.yaml`, generated) keeps that per strategy, so the
//!   checks do not need `../shared`: the document is rendered from the census and the
//!   registry's strategy list alone.
//! - **Proofs** are declared in [`PROOFS`]: the test that runs a strategy for real, named
//!   `file::function`; a proof naming a test that does not exist fails the check.
//!
//! The checks (unit tests below, part of `cargo xtask test`'s workspace tests): the
//! document is exactly what the census renders; every registered strategy is in the
//! census; every action the fixture jobs build (and, with `../shared`, the corpus jobs) is
//! in the census with the capability the code now reports, so an action turning runnable
//! (or a new branch) fails the check until `cargo xtask support-matrix` is run again.

use anyhow::{Context, Result, bail};
use lava_pipeline::{ActionNode, Device, JobParser, ParseOptions, Runnable, Section};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::shared::{shared_dir, workspace_root};

/// The generated document, relative to the workspace.
pub const DOC: &str = "docs/support-matrix.md";
/// The generated census, relative to the workspace.
pub const CENSUS: &str = "docs/support-matrix.yaml";
/// What to run when the document or census is stale.
const REGENERATE: &str = "cargo xtask support-matrix";

/// A test that runs a strategy for real: `file::function` (a `fn` in that file) and the
/// rig it runs on.
pub struct Proof {
    /// `deploy`, `boot` or `test`.
    pub section: &'static str,
    /// The strategy's name (`to:` / `method:` value, test method).
    pub strategy: &'static str,
    /// `path/to/test.rs::function_name`.
    pub test: &'static str,
    /// The rig, in a few words.
    pub rig: &'static str,
}

/// The tests that prove a strategy runs. Add a line when a strategy gets its rig.
pub const PROOFS: &[Proof] = &[
    Proof {
        section: "deploy",
        strategy: "iso-installer",
        test: "bins/lava-dispatch/tests/e2e_iso.rs::the_installer_installs_and_the_tests_run_on_the_installed_disk",
        rig: "installer ISO rig (tiny installer, preseed over TFTP)",
    },
    Proof {
        section: "boot",
        strategy: "qemu-iso",
        test: "bins/lava-dispatch/tests/e2e_iso.rs::the_installer_installs_and_the_tests_run_on_the_installed_disk",
        rig: "installer ISO rig (tiny installer, preseed over TFTP)",
    },
    Proof {
        section: "deploy",
        strategy: "tmpfs",
        test: "bins/lava-dispatch/tests/e2e.rs::qemu_jobs_in_lavas_overlay_shapes_run_their_tests",
        rig: "embedded QEMU device",
    },
    Proof {
        section: "deploy",
        strategy: "tmpfs",
        test: "bins/lava-dispatch/tests/e2e.rs::qemu_ext4_rootfs_with_appended_overlay_runs_its_tests",
        rig: "embedded QEMU device, ext4 root filesystem",
    },
    Proof {
        section: "deploy",
        strategy: "overlay",
        test: "bins/lava-dispatch/tests/e2e.rs::local_shell_job_runs_its_test_shell",
        rig: "local-shell device",
    },
    Proof {
        section: "deploy",
        strategy: "ssh",
        test: "bins/lava-dispatch/tests/e2e_ssh.rs::ssh_job_deploys_boots_and_runs_its_test_shell_over_ssh",
        rig: "private sshd",
    },
    Proof {
        section: "deploy",
        strategy: "tftp",
        test: "bins/lava-dispatch/tests/e2e_board.rs::ramdisk_job_gives_lavas_result_set",
        rig: "U-Boot board rig",
    },
    Proof {
        section: "deploy",
        strategy: "tftp",
        test: "bins/lava-dispatch/tests/e2e_uboot_fake.rs::tftp_uboot_ramdisk_job_runs_the_test_shell_on_the_board",
        rig: "fake U-Boot board",
    },
    Proof {
        section: "deploy",
        strategy: "nfs",
        test: "bins/lava-dispatch/tests/e2e_board.rs::nfs_job_runs_its_tests_on_the_nfs_root",
        rig: "U-Boot board rig",
    },
    Proof {
        section: "deploy",
        strategy: "qemu-nfs",
        test: "bins/lava-dispatch/tests/e2e_qemu_nfs.rs::qemu_nfs_job_runs_its_tests_on_the_nfs_root",
        rig: "qemu-nfs rig (QEMU, NFS root)",
    },
    Proof {
        section: "boot",
        strategy: "qemu-nfs",
        test: "bins/lava-dispatch/tests/e2e_qemu_nfs.rs::qemu_nfs_job_runs_its_tests_on_the_nfs_root",
        rig: "qemu-nfs rig (QEMU, NFS root)",
    },
    Proof {
        section: "deploy",
        strategy: "nbd",
        test: "bins/lava-dispatch/tests/e2e_board.rs::nbd_job_runs_its_tests_on_the_nbd_root",
        rig: "U-Boot board rig, root over NBD (nbd-server)",
    },
    Proof {
        section: "deploy",
        strategy: "flasher",
        test: "bins/lava-dispatch/tests/e2e_board.rs::flasher_job_writes_the_stick_from_the_worker_and_boots_from_it",
        rig: "U-Boot board rig, USB stick written by the dictionary's flasher command",
    },
    Proof {
        section: "deploy",
        strategy: "usb",
        test: "bins/lava-dispatch/tests/e2e_board.rs::usb_job_writes_the_stick_and_boots_from_it",
        rig: "U-Boot board rig, USB stick written by dd-image",
    },
    Proof {
        section: "deploy",
        strategy: "sata",
        test: "bins/lava-dispatch/tests/e2e_board.rs::sata_job_writes_the_disk_and_boots_from_it",
        rig: "U-Boot board rig, SATA disk (AHCI) written by dd-image, booted with `commands: sata`",
    },
    Proof {
        section: "deploy",
        strategy: "sd",
        test: "bins/lava-dispatch/tests/e2e_board.rs::sd_job_writes_the_card_the_ramdisk_reads",
        rig: "U-Boot board rig, SD card written by dd-image and read back; not booted (the rig's U-Boot has no MMC)",
    },
    Proof {
        section: "boot",
        strategy: "qemu",
        test: "bins/lava-dispatch/tests/e2e.rs::qemu_job_boots_the_guest_and_runs_its_test_shell",
        rig: "embedded QEMU device",
    },
    Proof {
        section: "boot",
        strategy: "ipxe",
        test: "bins/lava-dispatch/tests/e2e_pc_board.rs::ipxe_ramdisk_job_runs_its_tests",
        rig: "PC board rig (QEMU pc, iPXE)",
    },
    Proof {
        section: "boot",
        strategy: "grub",
        test: "bins/lava-dispatch/tests/e2e_pc_board.rs::grub_ramdisk_job_runs_its_tests",
        rig: "PC board rig (QEMU pc, GRUB over PXE; ramdisk form)",
    },
    Proof {
        section: "boot",
        strategy: "grub-efi",
        test: "bins/lava-dispatch/tests/e2e_grub_efi_board.rs::grub_efi_job_boots_through_ovmf_and_grub_and_runs_its_tests",
        rig: "OVMF rig (QEMU q35, OVMF PXE-booting a network GRUB; no numbered menu)",
    },
    Proof {
        section: "boot",
        strategy: "grub-efi",
        test: "bins/lava-dispatch/tests/e2e_uefi_fake.rs::grub_efi_job_selects_grub_in_the_uefi_menu_and_types_its_commands",
        rig: "fake EDK2 BDS board (menu selection)",
    },
    Proof {
        section: "boot",
        strategy: "uefi",
        test: "bins/lava-dispatch/tests/e2e_grub_efi_board.rs::uefi_shell_job_fetches_the_kernel_with_the_shells_tftp_and_runs_its_tests",
        rig: "OVMF rig (OVMF's UEFI shell, no shell menu)",
    },
    Proof {
        section: "boot",
        strategy: "uefi-menu",
        test: "bins/lava-dispatch/tests/e2e_uefi_fake.rs::uefi_menu_job_adds_its_boot_entry_boots_it_and_runs_the_test_shell",
        rig: "fake EDK2 BDS board",
    },
    Proof {
        section: "boot",
        strategy: "minimal",
        test: "bins/lava-dispatch/tests/e2e.rs::local_shell_job_runs_its_test_shell",
        rig: "local-shell device",
    },
    Proof {
        section: "boot",
        strategy: "ssh",
        test: "bins/lava-dispatch/tests/e2e_ssh.rs::ssh_job_deploys_boots_and_runs_its_test_shell_over_ssh",
        rig: "private sshd",
    },
    Proof {
        section: "boot",
        strategy: "u-boot",
        test: "bins/lava-dispatch/tests/e2e_board.rs::ramdisk_job_gives_lavas_result_set",
        rig: "U-Boot board rig",
    },
    Proof {
        section: "boot",
        strategy: "bootloader",
        test: "bins/lava-dispatch/tests/e2e_board.rs::interactive_at_the_u_boot_prompt",
        rig: "U-Boot board rig",
    },
    Proof {
        section: "boot",
        strategy: "new_connection",
        test: "bins/lava-dispatch/tests/e2e_uboot_fake.rs::a_second_console_from_the_device_connections",
        rig: "fake U-Boot board",
    },
    Proof {
        section: "test",
        strategy: "lava-test-shell",
        test: "bins/lava-dispatch/tests/e2e.rs::local_shell_job_runs_its_test_shell",
        rig: "local-shell device",
    },
    Proof {
        section: "test",
        strategy: "lava-test-interactive",
        test: "bins/lava-dispatch/tests/e2e_board.rs::interactive_at_the_u_boot_prompt",
        rig: "U-Boot board rig",
    },
    Proof {
        section: "test",
        strategy: "lava-test-monitor",
        test: "bins/lava-dispatch/tests/e2e_board.rs::monitors_read_the_boards_boot_checks",
        rig: "U-Boot board rig",
    },
    Proof {
        section: "test",
        strategy: "multinode-test",
        test: "bins/lava-dispatch/tests/e2e_multinode.rs::two_roles_exchange_a_message_and_sync_on_the_embedded_coordinator",
        rig: "local-shell pair, embedded coordinator",
    },
];

/// One action a strategy builds, and whether it runs here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Capability {
    /// The action's name.
    pub action: String,
    /// Whether it runs (in this form).
    pub runs: bool,
    /// For an action that runs in other forms, the form that does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

impl Capability {
    fn of(node: &ActionNode) -> Self {
        let (runs, missing) = match node.action.runnable(&node.meta) {
            Runnable::Yes => (true, None),
            Runnable::NotYet { missing } => (false, missing.map(str::to_string)),
        };
        Capability {
            action: node.meta.name.clone(),
            runs,
            missing,
        }
    }
}

/// What the job shapes showed of one strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyCensus {
    /// `deploy`, `boot` or `test`.
    pub section: String,
    /// The strategy's name.
    pub strategy: String,
    /// Every action its blocks built, once per form.
    pub actions: BTreeSet<Capability>,
}

/// The census: every registered strategy, with what its blocks built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Census {
    /// Keyed by `section/strategy`.
    pub strategies: BTreeMap<String, StrategyCensus>,
}

fn key(section: &str, strategy: &str) -> String {
    format!("{section}/{strategy}")
}

/// One job to build: its text, its device configuration and the optional extras.
struct Shape {
    name: String,
    job: String,
    device: String,
    dispatcher: Option<String>,
    env_dut: Option<String>,
}

/// `@NAME@` placeholders (filled in by the tests that run a fixture) as plain paths, and
/// `@NAME_URL@` ones as `file://` URLs, so that the job parses.
fn without_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        let after = &rest[start + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('@') {
            let name = &after[..name_len];
            out.push_str(&rest[..start]);
            if name.ends_with("_URL") {
                out.push_str("file://");
            }
            out.push_str(&format!("/lava-rs-placeholder/{name}"));
            rest = &after[name_len + 1..];
        } else {
            out.push_str(&rest[..=start]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The fixture jobs (files with a top-level `job_name`) of every fixture directory holding
/// rendered devices (`device.yaml`, then `device-*.yaml`): each job with the first of them
/// its pipeline builds on.
fn fixture_shapes() -> Result<Vec<Shape>> {
    let fixtures = workspace_root().join("fixtures");
    let mut shapes = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&fixtures)?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|d| d.join("device.yaml").is_file())
        .collect();
    dirs.sort();
    let registry = lava_actions::registry();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        let is_device = |p: &PathBuf| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "device.yaml" || n.starts_with("device-"))
        };
        let mut devices: Vec<String> = Vec::new();
        devices.push(std::fs::read_to_string(dir.join("device.yaml"))?);
        for device in files
            .iter()
            .filter(|p| is_device(p) && !p.ends_with("device.yaml"))
        {
            devices.push(std::fs::read_to_string(device)?);
        }
        for job in files.iter().filter(|p| !is_device(p)) {
            let text = without_placeholders(&std::fs::read_to_string(job)?);
            if !text.lines().any(|l| l.starts_with("job_name:")) {
                continue;
            }
            let builds = |device: &String| {
                Device::from_yaml(device, None).is_ok_and(|device| {
                    JobParser::new(&registry, &lava_actions::FIXED)
                        .parse(&text, device, &ParseOptions::default())
                        .is_ok()
                })
            };
            let device = devices.iter().find(|d| builds(d)).unwrap_or(&devices[0]);
            shapes.push(Shape {
                name: job.strip_prefix(workspace_root())?.display().to_string(),
                job: text,
                device: device.clone(),
                dispatcher: None,
                env_dut: None,
            });
        }
    }
    Ok(shapes)
}

/// Every case of LAVA's pipeline corpora, when `../shared` is present.
fn corpus_shapes() -> Result<Vec<Shape>> {
    let Some(shared) = shared_dir() else {
        return Ok(Vec::new());
    };
    let optional = |p: PathBuf| std::fs::read_to_string(p).ok();
    let mut shapes = Vec::new();
    for corpus in ["pipeline-cases", "pipeline-cases-extra"] {
        let Ok(entries) = std::fs::read_dir(shared.join("conformance").join(corpus)) else {
            continue;
        };
        let mut cases: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        cases.sort();
        for case in cases.iter().filter(|c| c.join("job.yaml").is_file()) {
            shapes.push(Shape {
                name: format!(
                    "{corpus}/{}",
                    case.file_name().unwrap_or_default().display()
                ),
                job: std::fs::read_to_string(case.join("job.yaml"))?,
                device: std::fs::read_to_string(case.join("device.yaml"))?,
                dispatcher: optional(case.join("dispatcher.yaml")),
                env_dut: optional(case.join("env-dut.yaml")),
            });
        }
    }
    Ok(shapes)
}

fn section_of(name: &str) -> Option<Section> {
    match name {
        "deploy" => Some(Section::Deploy),
        "boot" => Some(Section::Boot),
        "test" => Some(Section::Test),
        _ => None,
    }
}

fn collect(node: &ActionNode, into: &mut BTreeSet<Capability>) {
    into.insert(Capability::of(node));
    for child in &node.pipeline.actions {
        collect(child, into);
    }
}

/// Builds every shape and credits each block's actions to its strategy. Every registered
/// strategy is in the census, with no actions when no shape selects it. Returns the census
/// and the shapes that did not build (with why).
fn harvest(shapes: &[Shape]) -> (Census, Vec<String>) {
    let registry = lava_actions::registry();
    let mut census = Census::default();
    for section in [Section::Deploy, Section::Boot, Section::Test] {
        for name in registry.names(section) {
            census
                .strategies
                .entry(key(section.as_str(), &name))
                .or_insert_with(|| StrategyCensus {
                    section: section.as_str().to_string(),
                    strategy: name,
                    actions: BTreeSet::new(),
                });
        }
    }
    let mut unbuilt = Vec::new();
    for shape in shapes {
        let options = ParseOptions {
            job_id: "1".into(),
            source: None,
            dispatcher_config: shape.dispatcher.clone(),
            env_dut: shape.env_dut.clone(),
        };
        let built = Device::from_yaml(&shape.device, None).and_then(|device| {
            let parsed = JobParser::new(&registry, &lava_actions::FIXED).parse(
                &shape.job,
                device.clone(),
                &options,
            );
            parsed.map(|(_, pipeline)| (device, pipeline))
        });
        let (device, pipeline) = match built {
            Ok(built) => built,
            Err(e) => {
                let first = e.message.lines().next().unwrap_or_default().to_string();
                unbuilt.push(format!("{}: {first}", shape.name));
                continue;
            }
        };
        for node in &pipeline.actions {
            let Some(section) = section_of(&node.meta.section) else {
                continue;
            };
            let Ok(strategy) = registry.select(section, &device, &node.meta.parameters) else {
                unbuilt.push(format!(
                    "{}: block {} selects no strategy again",
                    shape.name, node.meta.level
                ));
                continue;
            };
            let entry = census
                .strategies
                .entry(key(section.as_str(), strategy.name()))
                .or_insert_with(|| StrategyCensus {
                    section: section.as_str().to_string(),
                    strategy: strategy.name().to_string(),
                    actions: BTreeSet::new(),
                });
            collect(node, &mut entry.actions);
        }
    }
    (census, unbuilt)
}

fn census_path() -> PathBuf {
    workspace_root().join(CENSUS)
}

const CENSUS_HEADER: &str = "# Generated by `cargo xtask support-matrix` (xtask/src/support_matrix.rs): per\n\
# registered strategy, every action the job shapes built and whether it runs in lava-rs.\n\
# Do not edit; run the command again.\n";

fn render_census(census: &Census) -> Result<String> {
    Ok(format!("{CENSUS_HEADER}{}", serde_yaml::to_string(census)?))
}

fn load_census() -> Result<Census> {
    let path = census_path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run `{REGENERATE}`)", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Where a strategy stands.
fn status(entry: &StrategyCensus) -> &'static str {
    let stops: Vec<&Capability> = entry.actions.iter().filter(|c| !c.runs).collect();
    if entry.actions.is_empty() {
        "not built by any job shape"
    } else if stops.is_empty() {
        "runs"
    } else if stops.iter().all(|c| c.missing.is_some()) {
        "runs, some forms validate-only"
    } else {
        "validate-only"
    }
}

fn stops(entry: &StrategyCensus) -> String {
    let mut names: Vec<String> = entry
        .actions
        .iter()
        .filter(|c| !c.runs)
        .map(|c| match &c.missing {
            Some(missing) => format!("`{}` ({missing})", c.action),
            None => format!("`{}`", c.action),
        })
        .collect();
    names.dedup();
    if names.is_empty() {
        "—".into()
    } else {
        names.join(", ")
    }
}

fn proofs(section: &str, strategy: &str) -> String {
    let found: Vec<String> = PROOFS
        .iter()
        .filter(|p| p.section == section && p.strategy == strategy)
        .map(|p| {
            let (file, function) = p.test.rsplit_once("::").unwrap_or((p.test, ""));
            format!("`{function}` ({file}; {})", p.rig)
        })
        .collect();
    if found.is_empty() {
        "—".into()
    } else {
        found.join("<br>")
    }
}

/// The document for `census`.
pub fn render(census: &Census) -> String {
    let mut out = String::from(
        "# Support matrix\n\n\
         Generated by `cargo xtask support-matrix` (xtask/src/support_matrix.rs) from the\n\
         strategies' own capability; do not edit, run the command again. A check in\n\
         `cargo xtask test` fails when this file, or the census it is rendered from\n\
         (`docs/support-matrix.yaml`), is not what the code reports.\n\n\
         Every registered strategy (deploy `to:`, boot `method:`, test method) is listed with\n\
         the actions its job blocks build, from the repository's fixture jobs and LAVA's\n\
         pipeline corpora. **runs**: every action it builds has its run-time behaviour;\n\
         **validate-only**: `lava-run --validate` accepts the job and names the actions that\n\
         stop, and a run refuses before anything is powered; **runs, some forms\n\
         validate-only**: the listed forms stop, the others run. *Proved by* names the test\n\
         that runs it for real, and its rig.\n",
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in census.strategies.values() {
        *counts.entry(status(entry)).or_default() += 1;
    }
    out.push_str("\nIn all: ");
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    out.push_str(&summary.join(", "));
    out.push_str(".\n");
    for section in ["deploy", "boot", "test"] {
        let title = match section {
            "deploy" => "Deploy (`to:`)",
            "boot" => "Boot (`method:`)",
            _ => "Test",
        };
        out.push_str(&format!(
            "\n## {title}\n\n| strategy | status | what stops | proved by |\n|---|---|---|---|\n"
        ));
        for entry in census.strategies.values().filter(|e| e.section == section) {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                entry.strategy,
                status(entry),
                stops(entry),
                proofs(section, &entry.strategy)
            ));
        }
    }
    out
}

/// `cargo xtask support-matrix`: harvest the fixtures and the corpus, write the census and
/// the document. Refuses without `../shared` (the census would lose the corpus' shapes)
/// unless `--fixtures-only`.
pub fn run(args: &[String]) -> Result<()> {
    let fixtures_only = args.iter().any(|a| a == "--fixtures-only");
    let check_only = args.iter().any(|a| a == "--check");
    if let Some(other) = args
        .iter()
        .find(|a| *a != "--fixtures-only" && *a != "--check")
    {
        bail!(
            "unknown argument {other} (usage: cargo xtask support-matrix [--check] [--fixtures-only])"
        );
    }
    if check_only {
        return check();
    }
    if shared_dir().is_none() && !fixtures_only {
        bail!(
            "../shared (LAVA's pipeline corpora) is absent: the census would lose their job \
             shapes; pass --fixtures-only to write it from the fixtures alone"
        );
    }
    let mut shapes = fixture_shapes()?;
    if !fixtures_only {
        shapes.extend(corpus_shapes()?);
    }
    if let Some(shared) = shared_dir().filter(|_| !fixtures_only) {
        // Some corpus jobs need host tools that are looked up (never run) while the
        // pipeline is built (uuu, bcu): the conformance run's stand-ins, so that the census
        // does not depend on what this machine has installed.
        let stubs = crate::pipeline::host_tool_stubs(&shared.join("conformance"))?;
        let path = std::env::join_paths(std::iter::once(stubs).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))?;
        // SAFETY: the command is single-threaded here; nothing reads the environment
        // concurrently.
        unsafe { std::env::set_var("PATH", path) };
    }
    let (census, unbuilt) = harvest(&shapes);
    for line in &unbuilt {
        println!("not built: {line}");
    }
    std::fs::write(census_path(), render_census(&census)?)?;
    let doc = workspace_root().join(DOC);
    std::fs::write(&doc, render(&census))?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in census.strategies.values() {
        *counts.entry(status(entry)).or_default() += 1;
    }
    println!(
        "{} job shapes built ({} not), {} strategies: {counts:?}; wrote {DOC} and {CENSUS}",
        shapes.len() - unbuilt.len(),
        unbuilt.len(),
        census.strategies.len()
    );
    Ok(())
}

/// `--check`: the document and census as the generator writes them, no drift against the
/// fixtures (and the corpus when present), every proof's test present.
fn check() -> Result<()> {
    let census = load_census()?;
    let doc = std::fs::read_to_string(workspace_root().join(DOC)).unwrap_or_default();
    let mut problems = Vec::new();
    if doc != render(&census) {
        problems.push(format!("{DOC} is not what its census renders"));
    }
    let mut shapes = fixture_shapes()?;
    shapes.extend(corpus_shapes()?);
    problems.extend(drift(&census, &shapes));
    problems.extend(missing_proofs(PROOFS));
    if !problems.is_empty() {
        bail!(
            "the support matrix is stale (run `{REGENERATE}`):\n{}",
            problems.join("\n")
        );
    }
    println!("{DOC} is up to date ({} job shapes)", shapes.len());
    Ok(())
}

/// The differences between what the code reports for `shapes` and `census`: an action
/// built now that the census lacks, or whose capability changed. Actions the census has
/// and `shapes` do not build are not differences (other shapes may build them).
fn drift(census: &Census, shapes: &[Shape]) -> Vec<String> {
    let (now, _) = harvest(shapes);
    let mut found = Vec::new();
    for (key, entry) in &now.strategies {
        let Some(recorded) = census.strategies.get(key) else {
            found.push(format!("{key}: a registered strategy the census lacks"));
            continue;
        };
        for capability in &entry.actions {
            if !recorded.actions.contains(capability) {
                let form = capability
                    .missing
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                let state = if capability.runs { "runs" } else { "stops" };
                found.push(format!(
                    "{key}: action '{}'{form} {state} now; the census does not say so",
                    capability.action
                ));
            }
        }
    }
    for key in census.strategies.keys() {
        if !now.strategies.contains_key(key) {
            found.push(format!("{key}: in the census but no longer registered"));
        }
    }
    found
}

/// Proofs naming a file or test function that does not exist.
fn missing_proofs(proofs: &[Proof]) -> Vec<String> {
    let mut missing = Vec::new();
    for proof in proofs {
        let Some((file, function)) = proof.test.rsplit_once("::") else {
            missing.push(format!("{}: not file::function", proof.test));
            continue;
        };
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap_or_default();
        let declared = text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with(&format!("fn {function}("))
                || l.starts_with(&format!("async fn {function}("))
        });
        if !declared {
            missing.push(format!(
                "{}: no test function {function} in {file}",
                proof.test
            ));
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_support_matrix_is_what_its_census_renders() {
        let census = load_census().unwrap();
        let doc = std::fs::read_to_string(workspace_root().join(DOC)).unwrap_or_default();
        assert!(
            doc == render(&census),
            "{DOC} is not what its census renders: run `{REGENERATE}`"
        );
        let text = std::fs::read_to_string(census_path()).unwrap();
        assert!(
            text == render_census(&census).unwrap(),
            "{CENSUS} is not in the generator's form: run `{REGENERATE}`"
        );
    }

    #[test]
    fn the_census_holds_what_the_fixture_jobs_build_now() {
        let census = load_census().unwrap();
        let drift = drift(&census, &fixture_shapes().unwrap());
        assert!(
            drift.is_empty(),
            "the support matrix is stale: run `{REGENERATE}`\n{}",
            drift.join("\n")
        );
    }

    #[test]
    fn the_census_holds_what_the_corpus_jobs_build_now() {
        if shared_dir().is_none() {
            println!("../shared is absent: the corpus half of the check is skipped");
            return;
        }
        let census = load_census().unwrap();
        let drift = drift(&census, &corpus_shapes().unwrap());
        assert!(
            drift.is_empty(),
            "the support matrix is stale: run `{REGENERATE}`\n{}",
            drift.join("\n")
        );
    }

    #[test]
    fn every_declared_proof_names_an_existing_test() {
        let missing = missing_proofs(PROOFS);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        for proof in PROOFS {
            assert!(
                ["deploy", "boot", "test"].contains(&proof.section),
                "{}: section {}",
                proof.test,
                proof.section
            );
            let census = load_census().unwrap();
            assert!(
                census
                    .strategies
                    .contains_key(&key(proof.section, proof.strategy)),
                "{}: no registered {} strategy {}",
                proof.test,
                proof.section,
                proof.strategy
            );
        }
    }

    #[test]
    fn placeholders_become_paths() {
        assert_eq!(
            without_placeholders("url: @KERNEL_URL@ # a@b, @x@ @@ file://@A1@/k"),
            "url: file:///lava-rs-placeholder/KERNEL_URL # a@b, @x@ @@ file:///lava-rs-placeholder/A1/k"
        );
    }

    #[test]
    fn a_changed_capability_or_a_missing_proof_is_found() {
        let shapes = fixture_shapes().unwrap();
        let (mut census, _) = harvest(&shapes);
        assert!(drift(&census, &shapes).is_empty());
        let entry = census.strategies.get_mut("deploy/tmpfs").unwrap();
        let first = entry.actions.iter().next().unwrap().clone();
        entry.actions.remove(&first);
        entry.actions.insert(Capability {
            runs: !first.runs,
            ..first.clone()
        });
        let found = drift(&census, &shapes);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains(&first.action), "{found:?}");
        let bogus = [
            Proof {
                section: "boot",
                strategy: "qemu",
                test: "bins/lava-dispatch/tests/e2e.rs::no_such_test",
                rig: "none",
            },
            Proof {
                section: "boot",
                strategy: "qemu",
                test: "bins/lava-dispatch/tests/no-such-file.rs::local_shell_job_runs_its_test_shell",
                rig: "none",
            },
        ];
        assert_eq!(missing_proofs(&bogus).len(), 2);
    }
}
