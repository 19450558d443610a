//! The helper scripts installed in `<results_dir>/bin` on the device, embedded at
//! build time from `crates/lava-shell/scripts/`, and the header LAVA writes in front
//! of each copy.

use lava_python::single_quote;

/// One embedded helper script: its file name and its body (no shebang; the
/// header adds one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelperScript {
    /// The file name under `bin/` (e.g. `lava-test-case`).
    pub name: &'static str,
    /// The script's text.
    pub body: &'static str,
}

/// The generic helpers, sorted by name.
pub const GENERIC_SCRIPTS: &[HelperScript] = &[
    HelperScript {
        name: "lava-add-keys",
        body: include_str!("../scripts/lava-add-keys"),
    },
    HelperScript {
        name: "lava-add-sources",
        body: include_str!("../scripts/lava-add-sources"),
    },
    HelperScript {
        name: "lava-background-process-start",
        body: include_str!("../scripts/lava-background-process-start"),
    },
    HelperScript {
        name: "lava-background-process-stop",
        body: include_str!("../scripts/lava-background-process-stop"),
    },
    HelperScript {
        name: "lava-common-functions",
        body: include_str!("../scripts/lava-common-functions"),
    },
    HelperScript {
        name: "lava-echo-ipv4",
        body: include_str!("../scripts/lava-echo-ipv4"),
    },
    HelperScript {
        name: "lava-install-packages",
        body: include_str!("../scripts/lava-install-packages"),
    },
    HelperScript {
        name: "lava-installed-packages",
        body: include_str!("../scripts/lava-installed-packages"),
    },
    HelperScript {
        name: "lava-os-build",
        body: include_str!("../scripts/lava-os-build"),
    },
    HelperScript {
        name: "lava-probe-channel",
        body: include_str!("../scripts/lava-probe-channel"),
    },
    HelperScript {
        name: "lava-probe-ip",
        body: include_str!("../scripts/lava-probe-ip"),
    },
    HelperScript {
        name: "lava-target-ip",
        body: include_str!("../scripts/lava-target-ip"),
    },
    HelperScript {
        name: "lava-target-mac",
        body: include_str!("../scripts/lava-target-mac"),
    },
    HelperScript {
        name: "lava-target-storage",
        body: include_str!("../scripts/lava-target-storage"),
    },
    HelperScript {
        name: "lava-test-case",
        body: include_str!("../scripts/lava-test-case"),
    },
    HelperScript {
        name: "lava-test-event",
        body: include_str!("../scripts/lava-test-event"),
    },
    HelperScript {
        name: "lava-test-feedback",
        body: include_str!("../scripts/lava-test-feedback"),
    },
    HelperScript {
        name: "lava-test-raise",
        body: include_str!("../scripts/lava-test-raise"),
    },
    HelperScript {
        name: "lava-test-reference",
        body: include_str!("../scripts/lava-test-reference"),
    },
    HelperScript {
        name: "lava-test-runner",
        body: include_str!("../scripts/lava-test-runner"),
    },
    HelperScript {
        name: "lava-test-set",
        body: include_str!("../scripts/lava-test-set"),
    },
    HelperScript {
        name: "lava-test-shell",
        body: include_str!("../scripts/lava-test-shell"),
    },
];

/// Debian-family replacements (`distro/debian`, also used for `ubuntu`).
pub const DEBIAN_SCRIPTS: &[HelperScript] = &[
    HelperScript {
        name: "lava-add-keys",
        body: include_str!("../scripts/distro/debian/lava-add-keys"),
    },
    HelperScript {
        name: "lava-add-sources",
        body: include_str!("../scripts/distro/debian/lava-add-sources"),
    },
    HelperScript {
        name: "lava-install-packages",
        body: include_str!("../scripts/distro/debian/lava-install-packages"),
    },
    HelperScript {
        name: "lava-installed-packages",
        body: include_str!("../scripts/distro/debian/lava-installed-packages"),
    },
];

/// The MultiNode helpers, installed only when the job has a MultiNode role.
pub const MULTINODE_SCRIPTS: &[HelperScript] = &[
    HelperScript {
        name: "lava-echo-config",
        body: include_str!("../scripts/multi_node/lava-echo-config"),
    },
    HelperScript {
        name: "lava-group",
        body: include_str!("../scripts/multi_node/lava-group"),
    },
    HelperScript {
        name: "lava-multi-node.lib",
        body: include_str!("../scripts/multi_node/lava-multi-node.lib"),
    },
    HelperScript {
        name: "lava-network",
        body: include_str!("../scripts/multi_node/lava-network"),
    },
    HelperScript {
        name: "lava-role",
        body: include_str!("../scripts/multi_node/lava-role"),
    },
    HelperScript {
        name: "lava-self",
        body: include_str!("../scripts/multi_node/lava-self"),
    },
    HelperScript {
        name: "lava-send",
        body: include_str!("../scripts/multi_node/lava-send"),
    },
    HelperScript {
        name: "lava-sync",
        body: include_str!("../scripts/multi_node/lava-sync"),
    },
    HelperScript {
        name: "lava-wait",
        body: include_str!("../scripts/multi_node/lava-wait"),
    },
    HelperScript {
        name: "lava-wait-all",
        body: include_str!("../scripts/multi_node/lava-wait-all"),
    },
];

/// The distro-specific replacements for `distro` (LAVA's `deployment_data.distro`).
/// Distros without their own set use the generic scripts only.
pub fn distro_scripts(distro: &str) -> &'static [HelperScript] {
    match distro {
        "debian" | "ubuntu" => DEBIAN_SCRIPTS,
        _ => &[],
    }
}

/// The helpers of a single-node overlay: the generic set with the distro's
/// replacements applied (same names replace generic ones), sorted by name.
pub fn helper_set(distro: Option<&str>) -> Vec<HelperScript> {
    let mut set: Vec<HelperScript> = GENERIC_SCRIPTS.to_vec();
    for replacement in distro.map(distro_scripts).unwrap_or(&[]) {
        match set.iter_mut().find(|s| s.name == replacement.name) {
            Some(slot) => *slot = *replacement,
            None => set.push(*replacement),
        }
    }
    set.sort_by_key(|s| s.name);
    set
}

/// Values baked into the helper copies.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BakedValues {
    /// The device's IP, for `lava-target-ip` (`TARGET_DEVICE_IP`).
    pub target_ip: String,
    /// The device's MAC address, for `lava-target-mac` (`TARGET_DEVICE_MAC`).
    pub target_mac: String,
    /// The probe's IP, for `lava-probe-ip` (`PROBE_DEVICE_IP`).
    pub probe_ip: String,
    /// The probe's channel, for `lava-probe-channel` (`PROBE_DEVICE_CHANNEL`).
    pub probe_channel: String,
    /// `storage_info` entries as (method, id).
    pub storage: Vec<(String, String)>,
}

/// MultiNode values baked into the MultiNode helpers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MultinodeValues {
    /// This node's role.
    pub role: String,
    /// Every job of the group: job id → role, in the order of the job's `roles` map.
    pub roles: Vec<(String, String)>,
}

/// The cache file of the MultiNode helpers on the device.
pub const MULTINODE_CACHE_FILE: &str = "/tmp/lava_multi_node_cache.txt";

/// The cache file of `lava-network` on the device (the V1 dispatcher's path): the
/// details every `collect` received, `<node>:<key>=<value>` a line. The variable
/// `LAVA_MULTI_NODE_NETWORK_CACHE` in the test shell's environment overrides it.
pub const MULTINODE_NETWORK_CACHE_FILE: &str = "/tmp/lava_multi_node_network_cache.txt";

fn baked(value: &str) -> String {
    single_quote(value)
}

/// The full text of a generic or distro helper as installed: `#!<sh>`, a blank
/// line, the injected variables for this file, then the body.
pub fn render_helper(script: &HelperScript, shell: &str, values: &BakedValues) -> String {
    let mut text = format!("#!{shell}\n\n");
    match script.name {
        "lava-target-mac" => text.push_str(&format!(
            "TARGET_DEVICE_MAC={}\n",
            baked(&values.target_mac)
        )),
        "lava-target-ip" => {
            text.push_str(&format!("TARGET_DEVICE_IP={}\n", baked(&values.target_ip)))
        }
        "lava-probe-ip" => text.push_str(&format!("PROBE_DEVICE_IP={}\n", baked(&values.probe_ip))),
        "lava-probe-channel" => text.push_str(&format!(
            "PROBE_DEVICE_CHANNEL={}\n",
            baked(&values.probe_channel)
        )),
        "lava-target-storage" => {
            text.push_str("LAVA_STORAGE=\"\n");
            for (method, id) in &values.storage {
                text.push_str(&format!(
                    "\\t{}\\t{}\\n",
                    escape_double(method),
                    escape_double(id)
                ));
            }
            text.push_str("\"\n");
        }
        _ => {}
    }
    text.push_str(script.body);
    text
}

/// The full text of a MultiNode helper as installed.
pub fn render_multinode_helper(
    script: &HelperScript,
    shell: &str,
    results_dir: &str,
    job_id: &str,
    values: &MultinodeValues,
) -> String {
    let mut text = format!("#!{shell}\n\n");
    match script.name {
        "lava-group" => {
            text.push_str("LAVA_GROUP=\"\n");
            for (job, role) in &values.roles {
                text.push_str(&format!(
                    "{}\\t{}\\n",
                    escape_double(job),
                    escape_double(role)
                ));
            }
            text.push_str("\"\n");
        }
        "lava-role" => text.push_str(&format!("TARGET_ROLE={}\n", baked(&values.role))),
        "lava-self" => text.push_str(&format!("LAVA_HOSTNAME={}\n", baked(job_id))),
        "lava-network" => {
            text.push_str(&format!(
                "LAVA_TEST_BIN={}\n",
                baked(&format!("{results_dir}/bin"))
            ));
            text.push_str(&format!(
                "LAVA_MULTI_NODE_NETWORK_CACHE=${{LAVA_MULTI_NODE_NETWORK_CACHE:-{}}}\n",
                baked(MULTINODE_NETWORK_CACHE_FILE)
            ));
            text.push_str("LAVA_MULTI_NODE_DEBUG='yes'\n");
        }
        _ => {
            text.push_str(&format!(
                "LAVA_TEST_BIN={}\n",
                baked(&format!("{results_dir}/bin"))
            ));
            text.push_str(&format!(
                "LAVA_MULTI_NODE_CACHE={}\n",
                baked(MULTINODE_CACHE_FILE)
            ));
            text.push_str("LAVA_MULTI_NODE_DEBUG='yes'\n");
        }
    }
    text.push_str(script.body);
    text
}

/// Inside double quotes only `"`, `\\`, `$` and `` ` `` are special; a value
/// carrying them is escaped so it cannot run anything on the device.
fn escape_double(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_sorted_and_distro_replaces() {
        let generic = helper_set(None);
        assert!(generic.windows(2).all(|w| w[0].name < w[1].name));
        let install = generic
            .iter()
            .find(|s| s.name == "lava-install-packages")
            .unwrap();
        assert!(install.body.contains("unsupported distro"));
        let debian = helper_set(Some("debian"));
        assert_eq!(debian.len(), generic.len());
        let install = debian
            .iter()
            .find(|s| s.name == "lava-install-packages")
            .unwrap();
        assert!(install.body.contains("apt-get"));
    }

    #[test]
    fn no_body_carries_a_shebang() {
        for s in GENERIC_SCRIPTS
            .iter()
            .chain(DEBIAN_SCRIPTS)
            .chain(MULTINODE_SCRIPTS)
        {
            assert!(!s.body.starts_with("#!"), "{}", s.name);
        }
    }

    #[test]
    fn headers_inject_values() {
        let ip = GENERIC_SCRIPTS
            .iter()
            .find(|s| s.name == "lava-target-ip")
            .unwrap();
        let values = BakedValues {
            target_ip: "10.0.0.2".into(),
            ..Default::default()
        };
        assert!(
            render_helper(ip, "/bin/sh", &values)
                .starts_with("#!/bin/sh\n\nTARGET_DEVICE_IP='10.0.0.2'\n# lava-target-ip")
        );
        let group = MULTINODE_SCRIPTS
            .iter()
            .find(|s| s.name == "lava-group")
            .unwrap();
        let mn = MultinodeValues {
            role: "client".into(),
            roles: vec![
                ("7001".into(), "server".into()),
                ("7002".into(), "client".into()),
            ],
        };
        let text = render_multinode_helper(group, "/bin/sh", "/lava-7002", "7002", &mn);
        assert!(
            text.starts_with("#!/bin/sh\n\nLAVA_GROUP=\"\n7001\\tserver\\n7002\\tclient\\n\"\n")
        );
        let send = MULTINODE_SCRIPTS
            .iter()
            .find(|s| s.name == "lava-send")
            .unwrap();
        let text = render_multinode_helper(send, "/bin/sh", "/lava-7002", "7002", &mn);
        assert!(text.starts_with("#!/bin/sh\n\nLAVA_TEST_BIN='/lava-7002/bin'\nLAVA_MULTI_NODE_CACHE='/tmp/lava_multi_node_cache.txt'\nLAVA_MULTI_NODE_DEBUG='yes'\n"));
    }
}
