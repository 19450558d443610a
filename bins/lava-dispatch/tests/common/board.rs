//! The board rigs for the board tests, the U-Boot board (`cargo xtask test-board u-boot
//! --prepare`) and the x86 PC (`cargo xtask test-board ipxe --prepare`, booting through iPXE
//! or GRUB): started for a test and ended after it ([`Board`]), their jobs written from
//! `fixtures/board/` with the rig's artefact URLs, and the result set the U-Boot ramdisk job
//! gives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use lava_test_support::paths::{board_rig, fixture, pc_board_rig};

use super::rig::RigUp;

/// One board: tests of a binary take turns.
static BOARD: Mutex<()> = Mutex::new(());

/// The ramdisk job's test cases (`fixtures/board/uboot-ramdisk.yaml`) as LAVA 2023.01 reports
/// them on this rig: (case, result, measurement, units) of suite `0_board-smoke`.
pub const RAMDISK_CASES: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("always-fail", "fail", None, None),
    ("always-pass", "pass", None, None),
    ("arch", "pass", None, None),
    ("declared-fail", "fail", None, None),
    ("hostname", "pass", None, None),
    ("measured", "pass", Some("42.0"), Some("widgets")),
];

/// [`RAMDISK_CASES`] as the result set names them, in `suite` (`0_board-smoke` on the U-Boot
/// board, `0_pc-smoke` on the PC).
pub fn ramdisk_cases(suite: &str) -> Vec<super::reference::TestCase> {
    RAMDISK_CASES
        .iter()
        .map(
            |(case, result, measurement, units)| super::reference::TestCase {
                suite: suite.into(),
                case: case.to_string(),
                result: result.to_string(),
                measurement: measurement.map(str::to_string),
                units: units.map(str::to_string),
            },
        )
        .collect()
}

/// The SD job's test cases (`fixtures/board/uboot-sd.yaml`: the card the ramdisk wrote, read
/// back), as LAVA 2023.01 reports them on this rig: (case, result) of suite `0_board-sd`,
/// sorted as a result set sorts them.
pub const SD_CASES: &[(&str, &str)] = &[
    ("card-by-id", "pass"),
    ("card-has-kernel", "pass"),
    ("card-label", "pass"),
    ("card-partition", "pass"),
    ("declared-fail", "fail"),
];

/// [`SD_CASES`] as the result set names them.
pub fn sd_cases() -> Vec<super::reference::TestCase> {
    SD_CASES
        .iter()
        .map(|(case, result)| super::reference::TestCase {
            suite: "0_board-sd".into(),
            case: case.to_string(),
            result: result.to_string(),
            measurement: None,
            units: None,
        })
        .collect()
}

/// The flasher job's test cases (`fixtures/board/uboot-flasher.yaml`, suite
/// `0_board-flasher`) as LAVA 2023.01 reports them on this rig.
pub const FLASHER_CASES: &[(&str, &str)] = &[
    ("always-fail", "fail"),
    ("always-pass", "pass"),
    ("declared-fail", "fail"),
    ("root-on-stick", "pass"),
];

/// [`FLASHER_CASES`] as the result set names them.
pub fn flasher_cases() -> Vec<super::reference::TestCase> {
    FLASHER_CASES
        .iter()
        .map(|(case, result)| super::reference::TestCase {
            suite: "0_board-flasher".into(),
            case: case.to_string(),
            result: result.to_string(),
            measurement: None,
            units: None,
        })
        .collect()
}

/// The rig, up for as long as this value lives (`bin/rig-up` … `bin/rig-down`).
pub struct Board {
    dir: PathBuf,
    /// The rendered device file.
    pub device: PathBuf,
    /// The dispatcher configuration (`dispatcher_ip`).
    pub dispatcher: PathBuf,
    urls: BTreeMap<String, String>,
    /// Declared before the turn: the rig is down before the next test's turn.
    _rig: RigUp,
    _turn: MutexGuard<'static, ()>,
}

impl Board {
    /// The rig, started; `None` (after saying why, or failing under `CI=true`) when it is not
    /// prepared or its tools are missing.
    pub fn up() -> Option<Board> {
        Board::start(
            board_rig(),
            "rig.txt",
            "u-boot",
            &[
                "qemu-system-aarch64",
                "ser2net",
                "in.tftpd",
                "telnet",
                "mkimage",
                "ganesha.nfsd",
                "rpcbind",
            ],
        )
    }

    /// The x86 PC rig, started, as the device booting through `firmware` (`ipxe` or `grub`);
    /// `None` as for [`Board::up`].
    pub fn pc(firmware: &str) -> Option<Board> {
        Board::start(
            pc_board_rig(),
            &format!("rig-{firmware}.txt"),
            firmware,
            &[
                "qemu-system-x86_64",
                "ser2net",
                "in.tftpd",
                "telnet",
                "grub-mknetdir",
            ],
        )
    }

    fn start(dir: PathBuf, summary_file: &str, name: &str, tools: &[&str]) -> Option<Board> {
        let turn = BOARD
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (rig, urls) = RigUp::start(
            &dir,
            summary_file,
            tools,
            "scripts/install-test-deps.sh installs the board rigs",
            "the board rig",
            &format!("cargo xtask test-board {name} --prepare"),
        )?;
        // The power log is read per test: start each from an empty one.
        let _ = std::fs::remove_file(dir.join("run/power.log"));
        let _ = std::fs::remove_file(dir.join("run/fault-hang"));
        Some(Board {
            device: PathBuf::from(&urls["device"]),
            dispatcher: PathBuf::from(&urls["dispatcher"]),
            dir,
            urls,
            _rig: rig,
            _turn: turn,
        })
    }

    /// `fixtures/board/<name>.yaml` with the artefact URLs in place, written under `scratch`.
    pub fn job(&self, name: &str, scratch: &Path) -> PathBuf {
        let text = std::fs::read_to_string(fixture(&format!("board/{name}.yaml")))
            .expect("a board fixture");
        let mut text = text;
        for (placeholder, key) in [
            ("@KERNEL_URL@", "kernel"),
            ("@RAMDISK_URL@", "ramdisk"),
            ("@DTB_URL@", "dtb"),
            ("@MODULES_URL@", "modules"),
            ("@NFSROOTFS_URL@", "nfsrootfs"),
            ("@INITRD_NBD_URL@", "initrd-nbd"),
            ("@NBDROOT_URL@", "nbdroot"),
            ("@USB_IMAGE_URL@", "usb_image"),
        ] {
            if let Some(url) = self.urls.get(key) {
                text = text.replace(placeholder, url);
            }
        }
        assert!(
            !text.contains("_URL@"),
            "{name}: a placeholder the rig's summary has no URL for (prepare the rig again)"
        );
        let path = scratch.join(format!("{name}.yaml"));
        std::fs::write(&path, text).expect("writing the job");
        path
    }

    /// The board's device file rendered again from the rig's dictionary with `settings`
    /// (`{% set … %}` lines, as a lab admin adds them to the dictionary) after its own, with
    /// the rig's device-type templates; written under `scratch`.
    pub fn device_with(&self, settings: &str, scratch: &Path) -> PathBuf {
        let name = self
            .device
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("the device file's name")
            .to_string();
        let dictionary = self.dir.join("devices").join(format!("{name}.jinja2"));
        let text = std::fs::read_to_string(&dictionary)
            .unwrap_or_else(|e| panic!("the rig's dictionary {}: {e}", dictionary.display()));
        let extended = scratch.join(format!("{name}.jinja2"));
        std::fs::write(&extended, format!("{text}{settings}\n")).expect("writing the dictionary");
        let rendered = lava_device::Renderer::new([self.dir.join("device-types")])
            .render_file(&extended, &Default::default())
            .unwrap_or_else(|e| panic!("rendering {}: {e}", extended.display()));
        let device = scratch.join(format!("{name}.yaml"));
        std::fs::write(&device, rendered).expect("writing the device file");
        device
    }

    /// The board's device file with a flasher (`flasher_deploy_commands`, as a lab admin
    /// writes it in the dictionary): `dd` of the downloaded image onto the board's stick,
    /// from the worker, while the board is off. Written under `scratch`.
    pub fn flasher_device(&self, scratch: &Path) -> PathBuf {
        self.device_with(
            &format!(
                "{{% set flasher_deploy_commands = ['dd if={{IMAGE}} of={} \
                 conv=notrunc,fsync status=none'] %}}",
                self.stick().display()
            ),
            scratch,
        )
    }

    /// Whether the rig's summary lists artefact `key` (a rig prepared before it existed
    /// does not).
    pub fn has_artefact(&self, key: &str) -> bool {
        self.urls.contains_key(key)
    }

    /// One of the rig's scripts (`power-off`, `board-fault`, …).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// The board's USB stick: the disk image QEMU attaches at power-on.
    pub fn stick(&self) -> PathBuf {
        self.dir.join("run/usb-disk.img")
    }

    /// Blanks the board's removable media (the USB stick, the SATA disk and the SD card under
    /// `run/`, zeroed in place, same size): a job booting from one of them, or reading what
    /// it wrote, must have written it, and no other medium carries the image's label.
    pub fn blank_media(&self) {
        for file in ["usb-disk.img", "sata-disk.img", "sd-card.img"] {
            let path = self.dir.join("run").join(file);
            let size = std::fs::metadata(&path)
                .unwrap_or_else(|e| {
                    panic!(
                        "the board's medium {}: {e} (cargo xtask test-board u-boot --prepare)",
                        path.display()
                    )
                })
                .len();
            let file = std::fs::File::create(&path).expect("truncating the board's medium");
            file.set_len(size).expect("sizing the board's medium");
        }
    }

    /// Whether the board is powered (QEMU's pid file, which `power-off` removes).
    pub fn powered(&self) -> bool {
        self.dir.join("run/qemu.pid").exists()
    }

    /// What the power scripts did since [`Board::up`], one event a line (`power-on`,
    /// `power-off`, `hard-reset`, `power-on: hung board (fault injected)`), times dropped.
    pub fn power_events(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("run/power.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, event)| event.to_string()))
            .collect()
    }

    /// Assert that the job powered the board on through `hard-reset` and that finalize
    /// powered it off last.
    pub fn assert_reset_then_powered_off(&self) {
        let events = self.power_events();
        assert!(
            events.iter().any(|e| e == "hard-reset")
                && events.last().map(String::as_str) == Some("power-off"),
            "power events: {events:?}"
        );
    }
}
