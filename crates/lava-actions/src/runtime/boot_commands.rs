//! Run-time: the job's data substituted into a bootloader's command list
//! (`bootloader-overlay`), as LAVA's `BootloaderCommandOverlay` and `substitute()` do.
//!
//! [`Substitutions`] is the ordered table of placeholders (`{SERVER_IP}`, `{KERNEL}`,
//! `{BOOTX}`...) and their values, built by [`Substitutions::from_inputs`] from plain
//! [`OverlayInputs`] (what the deployment recorded in the namespace data, the device's load
//! addresses, the dispatcher's address) so that the table is testable without a job;
//! [`substitute`] applies it to the command list with LAVA's rules: a placeholder whose
//! value is empty or absent drops the whole command line, a placeholder not in the table is
//! left as written. [`dispatcher_ip`] is LAVA's choice of the worker's address.

use serde_yaml::{Mapping, Value};

/// The ordered substitution table: `(placeholder, value)`, `None` or `""` meaning "no
/// value" (a line using it is dropped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Substitutions {
    entries: Vec<(String, Option<String>)>,
}

impl Substitutions {
    /// Sets `key` (e.g. `{KERNEL}`), keeping the position of an earlier entry as a Python
    /// dictionary does.
    pub fn set(&mut self, key: &str, value: Option<String>) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_string(), value)),
        }
    }

    /// The value of `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The entries in insertion order.
    pub fn entries(&self) -> &[(String, Option<String>)] {
        &self.entries
    }

    /// The table as LAVA saves it (`bootloader-overlay/<method>/substitutions`): a mapping
    /// with `null` for absent values.
    pub fn to_value(&self) -> Value {
        let mut map = Mapping::new();
        for (k, v) in &self.entries {
            map.insert(
                Value::from(k.as_str()),
                v.clone().map(Value::from).unwrap_or(Value::Null),
            );
        }
        Value::Mapping(map)
    }

    /// The table as LAVA logs it: one `- KEY: value` per entry, keys sorted, `None` for an
    /// absent value.
    pub fn log_lines(&self) -> Vec<String> {
        let mut sorted: Vec<&(String, Option<String>)> = self.entries.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted
            .into_iter()
            .map(|(k, v)| format!("- {k}: {}", v.as_deref().unwrap_or("None")))
            .collect()
    }

    /// LAVA's `substitute([line], table)` without dropping: each placeholder with a
    /// non-empty value is replaced, the others are left as written (the UEFI menu's
    /// entries).
    pub fn apply(&self, line: &str) -> String {
        let mut line = line.to_string();
        for (key, value) in &self.entries {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                line = line.replace(key.as_str(), value);
            }
        }
        line
    }

    /// LAVA's table from what the job recorded (see [`OverlayInputs`]), in LAVA's order.
    pub fn from_inputs(inputs: &OverlayInputs) -> Substitutions {
        let mut table = Substitutions::default();
        table.set("{SERVER_IP}", Some(inputs.server_ip.clone()));
        table.set("{PRESEED_CONFIG}", inputs.preseed_config.clone());
        table.set("{PRESEED_LOCAL}", inputs.preseed_local.clone());
        table.set("{DTB}", inputs.dtb.clone());
        table.set("{RAMDISK}", inputs.ramdisk.clone());
        table.set("{INITRD}", inputs.ramdisk.clone());
        table.set("{KERNEL}", inputs.kernel.clone());
        table.set("{LAVA_MAC}", inputs.lava_mac.clone());
        table.set("{TEE}", inputs.tee.clone());
        if let Some(kernel) = &inputs.prepared_kernel {
            table.set("{KERNEL}", Some(kernel.clone()));
        }
        if let Some(addresses) = &inputs.boot_addresses {
            let ramdisk_addr = if !inputs.has_ramdisk || !inputs.ramdisk_has_uboot_header {
                "-".to_string()
            } else {
                addresses.ramdisk.clone().unwrap_or_default()
            };
            let first = if inputs.has_tee {
                addresses.tee.clone().unwrap_or_else(|| "None".into())
            } else {
                addresses.kernel.clone().unwrap_or_else(|| "None".into())
            };
            let dtb = addresses.dtb.clone().unwrap_or_else(|| "None".into());
            let bootx = if inputs.has_initrd {
                // No U-Boot header: the size follows the address (`${initrd_size}`).
                format!(
                    "{} {first} {ramdisk_addr}:${{initrd_size}} {dtb}",
                    addresses.command
                )
            } else {
                format!("{} {first} {ramdisk_addr} {dtb}", addresses.command)
            };
            table.set("{BOOTX}", Some(bootx));
            table.set("{KERNEL_ADDR}", addresses.kernel.clone());
            table.set("{DTB_ADDR}", addresses.dtb.clone());
            table.set("{RAMDISK_ADDR}", Some(ramdisk_addr));
            table.set("{TEE_ADDR}", addresses.tee.clone());
        }
        match &inputs.nfs {
            Some(NfsRoot::Extracted { directory }) => {
                table.set("{NFSROOTFS}", directory.clone());
                table.set("{NFS_SERVER_IP}", Some(inputs.server_ip.clone()));
            }
            Some(NfsRoot::Persistent { address, server }) => {
                table.set("{NFSROOTFS}", Some(address.clone()));
                table.set("{NFS_SERVER_IP}", server.clone());
            }
            None => {}
        }
        if let Some(nbd) = &inputs.nbd {
            table.set("{NBDSERVERIP}", Some(nbd.ip.clone()));
            table.set("{NBDSERVERPORT}", Some(nbd.port.clone()));
        }
        table.set("{ROOT}", inputs.root_uuid.clone());
        table.set("{ROOT_PART}", inputs.root_part.clone());
        table
    }
}

/// The load addresses of the boot command (`parameters.<bootm|bootz|booti>` of the device).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootAddresses {
    /// The boot command (`bootm`, `bootz`, `booti`).
    pub command: String,
    /// `kernel` load address.
    pub kernel: Option<String>,
    /// `ramdisk` load address.
    pub ramdisk: Option<String>,
    /// `dtb` load address.
    pub dtb: Option<String>,
    /// `tee` load address.
    pub tee: Option<String>,
}

impl BootAddresses {
    /// The addresses of `command` from the device's `parameters` mapping.
    pub fn from_device_parameters(command: &str, parameters: Option<&Value>) -> BootAddresses {
        let entry = parameters.and_then(|p| p.get(command));
        let get = |k: &str| {
            entry
                .and_then(|e| e.get(k))
                .and_then(lava_pipeline::value::scalar_string)
        };
        BootAddresses {
            command: command.to_string(),
            kernel: get("kernel"),
            ramdisk: get("ramdisk"),
            dtb: get("dtb"),
            tee: get("tee"),
        }
    }
}

/// Where the NFS root filesystem comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum NfsRoot {
    /// An `nfsrootfs` unpacked on the worker (`extract-rootfs/file/nfsroot`).
    Extracted {
        /// The directory exported over NFS.
        directory: Option<String>,
    },
    /// A `persistent_nfs` export.
    Persistent {
        /// `server:/path` as the job gave it.
        address: String,
        /// The server part.
        server: Option<String>,
    },
}

/// The NBD server of an `nbd` deployment, as the bootloader commands name it.
#[derive(Debug, Clone, PartialEq)]
pub struct NbdAddress {
    /// `nbd-deploy/nbd/nbd_server_ip` (`None` when unset, Python's `str(None)`).
    pub ip: String,
    /// `nbd-deploy/nbd/nbd_server_port` (`None` when unset).
    pub port: String,
}

/// What `bootloader-overlay` reads from the job: plain values, so the table is testable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverlayInputs {
    /// The worker's address (`dispatcher_ip`).
    pub server_ip: String,
    /// `download-action/file/preseed`.
    pub preseed_config: Option<String>,
    /// `compress-ramdisk/file/preseed_local`.
    pub preseed_local: Option<String>,
    /// `download-action/file/dtb`.
    pub dtb: Option<String>,
    /// `compress-ramdisk/file/ramdisk`, or `download-action/file/initrd` after an `nbd`
    /// deployment (also `{INITRD}`).
    pub ramdisk: Option<String>,
    /// `download-action/file/kernel`.
    pub kernel: Option<String>,
    /// `prepare-kernel/file/kernel`: the converted kernel, used instead of `kernel`.
    pub prepared_kernel: Option<String>,
    /// The device's `lava_mac` (u-boot parameters), when valid.
    pub lava_mac: Option<String>,
    /// `download-action/file/tee`.
    pub tee: Option<String>,
    /// The boot command and its load addresses (`uboot-prepare-kernel/bootcommand`).
    pub boot_addresses: Option<BootAddresses>,
    /// A ramdisk was deployed (tftp or download).
    pub has_ramdisk: bool,
    /// The ramdisk carries a U-Boot header: the device's deploy `add_header` is `u-boot`,
    /// or the method is not U-Boot at all (LAVA passes the address then).
    pub ramdisk_has_uboot_header: bool,
    /// An `initrd` was downloaded (no header: `addr:${initrd_size}`).
    pub has_initrd: bool,
    /// A `tee` was downloaded (booted first instead of the kernel).
    pub has_tee: bool,
    /// The NFS root.
    pub nfs: Option<NfsRoot>,
    /// The job has a `lava-xnbd` protocol: `{NBDSERVERIP}` and `{NBDSERVERPORT}`.
    pub nbd: Option<NbdAddress>,
    /// `bootloader-from-media/uuid/root`.
    pub root_uuid: Option<String>,
    /// `bootloader-from-media/uuid/boot_part`.
    pub root_part: Option<String>,
}

/// LAVA's `substitute(commands, table, drop=True)`: each placeholder with a value is
/// replaced; a line holding a placeholder without a value is dropped.
pub fn substitute(commands: &[String], table: &Substitutions) -> Vec<String> {
    commands
        .iter()
        .filter_map(|line| {
            let mut line = line.clone();
            for (key, value) in table.entries() {
                match value.as_deref() {
                    Some(v) if !v.is_empty() => line = line.replace(key.as_str(), v),
                    _ if line.contains(key.as_str()) => return None,
                    _ => {}
                }
            }
            Some(line)
        })
        .collect()
}

/// LAVA's `dispatcher_ip(dispatcher_config, protocol)`: `dispatcher_<protocol>_ip`, then
/// `dispatcher_ip` of the dispatcher configuration, else the IPv4 address of the
/// interface holding the default route. `None` when there is no default route.
pub fn dispatcher_ip(dispatcher: Option<&Value>, protocol: Option<&str>) -> Option<String> {
    let key = |k: &str| {
        dispatcher
            .and_then(|d| d.get(k))
            .and_then(lava_pipeline::value::scalar_string)
    };
    if let Some(ip) = protocol.and_then(|p| key(&format!("dispatcher_{p}_ip"))) {
        return Some(ip);
    }
    if let Some(ip) = key("dispatcher_ip") {
        return Some(ip);
    }
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let interface = default_route_interface(&routes)?;
    interface_ipv4(&interface)
}

/// The interface of the default route in a `/proc/net/route` table.
pub fn default_route_interface(routes: &str) -> Option<String> {
    routes.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let interface = fields.next()?;
        let destination = fields.next()?;
        (destination == "00000000").then(|| interface.to_string())
    })
}

/// The first IPv4 address of `interface` (`getifaddrs`).
fn interface_ipv4(interface: &str) -> Option<String> {
    let mut found = None;
    // SAFETY: getifaddrs fills a list we only read and then free with freeifaddrs; every
    // pointer is checked before it is dereferenced.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut item = list;
        while !item.is_null() {
            let entry = &*item;
            item = entry.ifa_next;
            if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
                continue;
            }
            if i32::from((*entry.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(entry.ifa_name).to_string_lossy();
            if name != interface {
                continue;
            }
            let address = &*(entry.ifa_addr as *const libc::sockaddr_in);
            let ip = std::net::Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr));
            found = Some(ip.to_string());
            break;
        }
        libc::freeifaddrs(list);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The commands of a U-Boot `ramdisk` boot as LAVA's base-uboot template renders them.
    fn ramdisk_commands() -> Vec<String> {
        lines(&[
            "setenv autoload no",
            "setenv initrd_high 0xffffffff",
            "setenv fdt_high 0xffffffff",
            "dhcp",
            "setenv serverip {SERVER_IP}",
            "tftp {KERNEL_ADDR} {KERNEL}",
            "tftp {RAMDISK_ADDR} {RAMDISK}",
            "tftp {TEE_ADDR} {TEE}",
            "setenv initrd_size ${filesize}",
            "tftp {DTB_ADDR} {DTB}",
            "setenv bootargs 'console=ttyS0,115200n8 root=/dev/ram0  ip=dhcp'",
            "{BOOTX}",
        ])
    }

    fn booti_inputs() -> OverlayInputs {
        OverlayInputs {
            server_ip: "10.0.2.2".into(),
            kernel: Some("12/tftp-deploy-abc/kernel/Image".into()),
            ramdisk: Some("12/tftp-deploy-abc/ramdisk/ramdisk.cpio.gz.uboot".into()),
            dtb: Some("12/tftp-deploy-abc/dtb/board.dtb".into()),
            boot_addresses: Some(BootAddresses {
                command: "booti".into(),
                kernel: Some("0x80000000".into()),
                ramdisk: Some("0x82000000".into()),
                dtb: Some("0x81000000".into()),
                tee: Some("0x83000000".into()),
            }),
            has_ramdisk: true,
            ramdisk_has_uboot_header: true,
            ..OverlayInputs::default()
        }
    }

    #[test]
    fn nbd_boot_names_the_server_and_the_initrd() {
        let inputs = OverlayInputs {
            ramdisk: Some("12/nbd-deploy-1/initrd/initrd.cpio.gz".into()),
            has_initrd: true,
            nbd: Some(NbdAddress {
                ip: "192.168.0.2".into(),
                port: "22350".into(),
            }),
            ..booti_inputs()
        };
        let table = Substitutions::from_inputs(&inputs);
        let commands = lines(&[
            "tftp {RAMDISK_ADDR} {RAMDISK}",
            "setenv bootargs 'console=ttyAMA0,115200n8 rw nbd.server={NBDSERVERIP} \
             nbd.port={NBDSERVERPORT} root=/dev/ram0'",
            "{BOOTX}",
        ]);
        assert_eq!(
            substitute(&commands, &table),
            lines(&[
                "tftp 0x82000000 12/nbd-deploy-1/initrd/initrd.cpio.gz",
                "setenv bootargs 'console=ttyAMA0,115200n8 rw nbd.server=192.168.0.2 \
                 nbd.port=22350 root=/dev/ram0'",
                "booti 0x80000000 0x82000000:${initrd_size} 0x81000000",
            ])
        );
        // Without the protocol the placeholders are not in the table and stay as written.
        let without = Substitutions::from_inputs(&OverlayInputs {
            nbd: None,
            ..inputs
        });
        assert_eq!(without.get("{NBDSERVERPORT}"), None);
        assert!(
            substitute(&commands, &without)[1].contains("nbd.port={NBDSERVERPORT}"),
            "{without:?}"
        );
    }

    #[test]
    fn ramdisk_boot_with_uboot_header() {
        let table = Substitutions::from_inputs(&booti_inputs());
        assert_eq!(
            substitute(&ramdisk_commands(), &table),
            lines(&[
                "setenv autoload no",
                "setenv initrd_high 0xffffffff",
                "setenv fdt_high 0xffffffff",
                "dhcp",
                "setenv serverip 10.0.2.2",
                "tftp 0x80000000 12/tftp-deploy-abc/kernel/Image",
                "tftp 0x82000000 12/tftp-deploy-abc/ramdisk/ramdisk.cpio.gz.uboot",
                // No tee deployed: the line is dropped.
                "setenv initrd_size ${filesize}",
                "tftp 0x81000000 12/tftp-deploy-abc/dtb/board.dtb",
                "setenv bootargs 'console=ttyS0,115200n8 root=/dev/ram0  ip=dhcp'",
                "booti 0x80000000 0x82000000 0x81000000",
            ])
        );
        assert_eq!(table.get("{TEE_ADDR}"), Some("0x83000000"));
    }

    #[test]
    fn apply_keeps_lines_with_placeholders_without_value() {
        let mut table = Substitutions::default();
        table.set("{SERVER_IP}", Some("10.0.2.2".into()));
        table.set("{DTB}", None);
        table.set("{RAMDISK}", Some(String::new()));
        assert_eq!(
            table.apply("{SERVER_IP}:{DTB} {RAMDISK}"),
            "10.0.2.2:{DTB} {RAMDISK}"
        );
    }

    #[test]
    fn no_ramdisk_or_no_header_passes_a_dash() {
        let mut inputs = booti_inputs();
        inputs.ramdisk_has_uboot_header = false;
        let table = Substitutions::from_inputs(&inputs);
        assert_eq!(table.get("{BOOTX}"), Some("booti 0x80000000 - 0x81000000"));
        // The address is "-" too, so `tftp - file` stays as LAVA sends it.
        assert_eq!(table.get("{RAMDISK_ADDR}"), Some("-"));

        let mut inputs = booti_inputs();
        inputs.has_ramdisk = false;
        inputs.ramdisk = None;
        let table = Substitutions::from_inputs(&inputs);
        let out = substitute(&ramdisk_commands(), &table);
        assert!(!out.iter().any(|l| l.contains("RAMDISK")), "{out:?}");
        assert_eq!(out.last().unwrap(), "booti 0x80000000 - 0x81000000");
    }

    #[test]
    fn initrd_and_tee_forms_of_bootx() {
        let mut inputs = booti_inputs();
        inputs.has_initrd = true;
        let table = Substitutions::from_inputs(&inputs);
        assert_eq!(
            table.get("{BOOTX}"),
            Some("booti 0x80000000 0x82000000:${initrd_size} 0x81000000")
        );
        inputs.has_tee = true;
        inputs.has_initrd = false;
        inputs.tee = Some("12/t/tee/tee.bin".into());
        let table = Substitutions::from_inputs(&inputs);
        assert_eq!(
            table.get("{BOOTX}"),
            Some("booti 0x83000000 0x82000000 0x81000000")
        );
        let out = substitute(&ramdisk_commands(), &table);
        assert!(out.contains(&"tftp 0x83000000 12/t/tee/tee.bin".to_string()));
    }

    #[test]
    fn without_boot_command_addresses_stay_as_written() {
        let mut inputs = booti_inputs();
        inputs.boot_addresses = None;
        let table = Substitutions::from_inputs(&inputs);
        let out = substitute(&ramdisk_commands(), &table);
        assert!(out.contains(&"tftp {KERNEL_ADDR} 12/tftp-deploy-abc/kernel/Image".to_string()));
        assert_eq!(out.last().unwrap(), "{BOOTX}");
    }

    #[test]
    fn prepared_kernel_and_nfs() {
        let mut inputs = booti_inputs();
        inputs.prepared_kernel = Some("12/tftp-deploy-abc/kernel/uImage".into());
        inputs.nfs = Some(NfsRoot::Extracted {
            directory: Some("/srv/tftp/12/extract-nfsrootfs-x".into()),
        });
        let table = Substitutions::from_inputs(&inputs);
        let out = substitute(
            &lines(&[
                "tftp {KERNEL_ADDR} {KERNEL}",
                "setenv bootargs 'root=/dev/nfs nfsroot={NFS_SERVER_IP}:{NFSROOTFS},tcp,hard'",
                "load usb 0:{ROOT_PART} {KERNEL_ADDR} {KERNEL}",
            ]),
            &table,
        );
        assert_eq!(
            out,
            lines(&[
                "tftp 0x80000000 12/tftp-deploy-abc/kernel/uImage",
                "setenv bootargs 'root=/dev/nfs nfsroot=10.0.2.2:/srv/tftp/12/extract-nfsrootfs-x,tcp,hard'",
            ])
        );
        inputs.nfs = Some(NfsRoot::Persistent {
            address: "192.168.0.2:/srv/nfs/x".into(),
            server: Some("192.168.0.2".into()),
        });
        let table = Substitutions::from_inputs(&inputs);
        assert_eq!(table.get("{NFSROOTFS}"), Some("192.168.0.2:/srv/nfs/x"));
        assert_eq!(table.get("{NFS_SERVER_IP}"), Some("192.168.0.2"));
    }

    #[test]
    fn log_lines_are_sorted_with_none() {
        let table = Substitutions::from_inputs(&booti_inputs());
        let log = table.log_lines();
        let mut sorted = log.clone();
        sorted.sort();
        assert_eq!(log, sorted);
        assert!(log.contains(&"- {TEE}: None".to_string()));
        assert!(log.contains(&"- {SERVER_IP}: 10.0.2.2".to_string()));
        assert_eq!(table.to_value().get("{LAVA_MAC}"), Some(&Value::Null));
    }

    #[test]
    fn dispatcher_ip_prefers_configuration() {
        let config: Value =
            serde_yaml::from_str("{dispatcher_ip: 10.0.2.2, dispatcher_nfs_ip: 10.0.0.9}").unwrap();
        assert_eq!(
            dispatcher_ip(Some(&config), None).as_deref(),
            Some("10.0.2.2")
        );
        assert_eq!(
            dispatcher_ip(Some(&config), Some("nfs")).as_deref(),
            Some("10.0.0.9")
        );
        assert_eq!(
            dispatcher_ip(Some(&config), Some("http")).as_deref(),
            Some("10.0.2.2")
        );
        let routes = "Iface\tDestination\tGateway\tFlags\n\
                      eth1\t0000FEA9\t00000000\t0001\n\
                      eth0\t00000000\t0102A8C0\t0003\n";
        assert_eq!(default_route_interface(routes).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }
}
