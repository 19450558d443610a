//! Splitting our MultiNode submissions into node jobs, checked key by key.

use lava_multinode::split::{NodeJob, SplitOptions, assign_roles, is_multinode, split_with};
use serde_yaml::{Mapping, Value};

const GROUP: &str = "6c1e0c8e-0d7e-4b7c-9a51-2f5b1d0c9e11";

fn fixture(name: &str) -> Mapping {
    let path = format!(
        "{}/../../fixtures/multinode/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap()
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

fn keys(map: &Mapping) -> Vec<String> {
    let mut keys: Vec<String> = map
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

fn actions(job: &NodeJob) -> Vec<(String, Mapping)> {
    job.definition["actions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            let (k, v) = a.as_mapping().unwrap().iter().next().unwrap();
            (
                k.as_str().unwrap().to_string(),
                v.as_mapping().unwrap().clone(),
            )
        })
        .collect()
}

#[test]
fn server_and_two_clients() {
    let submission = fixture("server-client.yaml");
    assert!(is_multinode(&submission));
    let jobs = split_with(&submission, GROUP, SplitOptions::MASTER).unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        jobs.iter()
            .map(|j| (j.role.as_str(), j.sub_id))
            .collect::<Vec<_>>(),
        [("server", 0), ("client", 1), ("client", 2)]
    );
    assert!(jobs.iter().all(|j| j.device_backed));

    // Top level: copied keys, promoted role keys, nothing else.
    for job in &jobs {
        let d = &job.definition;
        assert_eq!(
            keys(d),
            [
                "actions",
                "context",
                "device_type",
                "job_name",
                "metadata",
                "notify",
                "priority",
                "protocols",
                "secrets",
                "timeouts",
                "visibility"
            ]
        );
        assert_eq!(d["job_name"], submission["job_name"]);
        assert_eq!(d["timeouts"], submission["timeouts"]);
        assert_eq!(d["priority"], yaml("medium"));
        assert_eq!(d["visibility"], yaml("public"));
        assert_eq!(d["notify"], submission["notify"]);
        assert_eq!(d["metadata"], submission["metadata"]);
        assert_eq!(d["secrets"], yaml("{token: s3cret}"));
        assert_eq!(d["device_type"], yaml("qemu"));
        assert_eq!(
            keys(d["protocols"].as_mapping().unwrap()),
            ["lava-multinode"]
        );
    }
    assert_eq!(jobs[0].definition["context"], yaml("{arch: amd64}"));
    assert_eq!(jobs[1].definition["context"], yaml("{arch: arm64}"));

    // The protocol block: group data, role keys but count, and the
    // group-wide timeout overriding the role's.
    assert_eq!(
        Value::Mapping(jobs[0].protocol_block().clone()),
        yaml(&format!(
            "{{target_group: {GROUP}, role: server, group_size: 3, sub_id: 0, \
             tags: [fast-net], essential: true, environment: {{IPERF_PORT: '5201'}}, \
             timeout: {{minutes: 10}}}}"
        ))
    );
    for (job, sub_id) in jobs[1..].iter().zip([1, 2]) {
        assert_eq!(
            Value::Mapping(job.protocol_block().clone()),
            yaml(&format!(
                "{{target_group: {GROUP}, role: client, group_size: 3, sub_id: {sub_id}, \
                 timeout: {{minutes: 10}}}}"
            ))
        );
    }

    // Actions: filtered in order, role replaced by the role name; a string
    // role is one role; `serv` does not match `server`.
    let server = actions(&jobs[0]);
    assert_eq!(
        server.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["deploy", "boot", "test"]
    );
    assert!(server.iter().all(|(_, v)| v["role"] == yaml("server")));
    assert_eq!(server[2].1["definitions"][0]["name"], yaml("srv"));
    assert_eq!(
        server[0].1["images"],
        yaml("{rootfs: {url: 'file:///images/rootfs.img'}}")
    );
    for client in &jobs[1..] {
        let list = actions(client);
        assert_eq!(
            list.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["deploy", "boot", "test"]
        );
        assert!(list.iter().all(|(_, v)| v["role"] == yaml("client")));
        assert_eq!(list[2].1["definitions"][0]["name"], yaml("cli"));
    }
    // The YAML dumps and reads back unchanged.
    let text = serde_yaml::to_string(&jobs[2].definition).unwrap();
    let back: Mapping = serde_yaml::from_str(&text).unwrap();
    assert_eq!(back, jobs[2].definition);
}

#[test]
fn bookworm_does_not_copy_secrets_but_copies_role_protocols() {
    let mut submission = fixture("server-client.yaml");
    let protocols = submission["protocols"].as_mapping_mut().unwrap();
    protocols.insert(
        "lava-vland".into(),
        yaml("{server: {vlan_one: {tags: [10G]}}, client: {vlan_one: {tags: [1G]}}}"),
    );
    let jobs = split_with(&submission, GROUP, SplitOptions::LAVA_2023_01).unwrap();
    assert!(!jobs[0].definition.contains_key("secrets"));
    assert_eq!(
        jobs[0].definition["protocols"]["lava-vland"],
        yaml("{vlan_one: {tags: [10G]}}")
    );
    assert_eq!(
        jobs[1].definition["protocols"]["lava-vland"],
        yaml("{vlan_one: {tags: [1G]}}")
    );
    let master = split_with(&submission, GROUP, SplitOptions::MASTER).unwrap();
    assert!(
        master[0].definition["protocols"]
            .get("lava-vland")
            .is_none()
    );
}

#[test]
fn host_and_secondary_connections() {
    let submission = fixture("host-guest.yaml");
    let mut jobs = split_with(&submission, GROUP, SplitOptions::MASTER).unwrap();
    assert_eq!(
        jobs.iter()
            .map(|j| (j.role.as_str(), j.sub_id, j.device_backed))
            .collect::<Vec<_>>(),
        [("host", 0, true), ("guest", 1, false), ("guest", 2, false)]
    );
    let host = &jobs[0].definition;
    assert_eq!(host["device_type"], yaml("qemu"));
    assert!(!host.contains_key("connection"));
    assert_eq!(
        Value::Mapping(jobs[0].protocol_block().clone()),
        yaml(&format!(
            "{{target_group: {GROUP}, role: host, group_size: 3, sub_id: 0, timeout: {{minutes: 8}}}}"
        ))
    );
    for guest in &jobs[1..] {
        let d = &guest.definition;
        assert!(!d.contains_key("device_type"));
        assert_eq!(d["connection"], yaml("ssh"));
        assert_eq!(d["host_role"], yaml("host"));
        let block = guest.protocol_block();
        assert_eq!(block["request"], yaml("lava-start"));
        assert_eq!(block["expect_role"], yaml("host"));
        assert_eq!(block["timeout"], yaml("{minutes: 15}"));
        assert_eq!(block["tags"], yaml("[ssh]"));
        assert!(!block.contains_key("host_role"));
        assert!(!block.contains_key("connection"));
        assert!(!block.contains_key("count"));
        let list = actions(guest);
        assert_eq!(
            list.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["deploy", "boot", "test"]
        );
        // The action-level protocol calls travel unchanged.
        assert_eq!(
            list[0].1["protocols"]["lava-multinode"][0]["action"],
            yaml("prepare-scp-overlay")
        );
    }

    // The scheduler's roles map lists the device-backed nodes only.
    let roles = assign_roles(&mut jobs, 7001);
    assert_eq!(roles.len(), 1);
    assert_eq!(roles["7001"], "host");
    for job in &jobs {
        assert_eq!(job.protocol_block()["roles"], yaml("{'7001': host}"));
    }
}

#[test]
fn roles_map_for_a_device_group() {
    let mut jobs = split_with(&fixture("server-client.yaml"), GROUP, SplitOptions::MASTER).unwrap();
    let roles = assign_roles(&mut jobs, 98);
    assert_eq!(
        roles
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("98", "server"), ("99", "client"), ("100", "client")]
    );
}

type Edit = Box<dyn FnOnce(&mut Mapping)>;

fn split_error(edit: impl FnOnce(&mut Mapping)) -> String {
    let mut submission = fixture("host-guest.yaml");
    edit(&mut submission);
    split_with(&submission, GROUP, SplitOptions::MASTER)
        .unwrap_err()
        .to_string()
}

fn role(submission: &mut Mapping, name: &str) -> Mapping {
    submission["protocols"]["lava-multinode"]["roles"][name]
        .as_mapping()
        .unwrap()
        .clone()
}

fn set_role(submission: &mut Mapping, name: &str, value: Mapping) {
    submission["protocols"]["lava-multinode"]["roles"][name] = Value::Mapping(value);
}

#[test]
fn bad_submissions_name_the_key() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|s| {
                s.insert("device_type".into(), "qemu".into());
            }),
            "device_type: \"device_type\" should not be used with multinode",
        ),
        (
            Box::new(|s| {
                s["actions"][2]["boot"]
                    .as_mapping_mut()
                    .unwrap()
                    .remove("role");
            }),
            "actions[2].boot.role: Every action of a multinode job should have roles",
        ),
        (
            Box::new(|s| {
                let mut guest = role(s, "guest");
                guest.insert("host_role".into(), "hots".into());
                set_role(s, "guest", guest);
            }),
            "protocols.lava-multinode.roles.guest.host_role: 'host_role' 'hots' does not exist",
        ),
        (
            Box::new(|s| {
                let mut guest = role(s, "guest");
                guest.insert("expect_role".into(), "nobody".into());
                set_role(s, "guest", guest);
            }),
            "protocols.lava-multinode.roles.guest.expect_role: 'expect_role' 'nobody' does not exist",
        ),
        (
            Box::new(|s| {
                let mut guest = role(s, "guest");
                guest.remove("host_role");
                set_role(s, "guest", guest);
            }),
            "protocols.lava-multinode.roles.guest: connection specified without a host_role",
        ),
        (
            Box::new(|s| {
                let mut guest = role(s, "guest");
                guest.insert("device_type".into(), "qemu".into());
                set_role(s, "guest", guest);
            }),
            "protocols.lava-multinode.roles.guest: lava-multinode protocol cannot support device_type and connection for a single role.",
        ),
        (
            Box::new(|s| {
                let mut host = role(s, "host");
                host.insert("count".into(), 2.into());
                set_role(s, "host", host);
            }),
            "protocols.lava-multinode.roles.host.count: The count for a role designated as a host_role must be 1.",
        ),
        (
            Box::new(|s| {
                let mut host = role(s, "host");
                host.remove("count");
                set_role(s, "host", host);
            }),
            "protocols.lava-multinode.roles.host.count: required key not provided",
        ),
        (
            Box::new(|s| {
                let mut host = role(s, "host");
                host.insert("colour".into(), "red".into());
                set_role(s, "host", host);
            }),
            "protocols.lava-multinode.roles.host.colour: extra keys not allowed",
        ),
        (
            Box::new(|s| {
                let mut host = role(s, "host");
                host.insert("device".into(), "qemu01".into());
                host.insert("count".into(), 2.into());
                set_role(s, "host", host);
            }),
            "protocols.lava-multinode.roles.host.count: lava-multinode roles using a specific device must set count to 1.",
        ),
        (
            Box::new(|s| {
                s["protocols"]["lava-multinode"]
                    .as_mapping_mut()
                    .unwrap()
                    .insert("timeout".into(), yaml("{minutes: soon}"));
            }),
            "protocols.lava-multinode.timeout.minutes: expected a non-negative integer",
        ),
        (
            Box::new(|s| {
                s["actions"].as_sequence_mut().unwrap().retain(|a| {
                    a.get("test").is_none_or(|t| t["role"] != yaml("[guest]"))
                        && a.get("boot").is_none_or(|t| t["role"] != yaml("[guest]"))
                        && a.get("deploy").is_none_or(|t| t["role"] != yaml("[guest]"))
                });
            }),
            "actions: no action has role 'guest'",
        ),
    ];
    for (edit, expected) in cases {
        assert_eq!(split_error(edit), expected);
    }
    // Not MultiNode at all.
    let single: Mapping =
        serde_yaml::from_str("job_name: x\ndevice_type: qemu\nactions: []\n").unwrap();
    assert!(!is_multinode(&single));
    assert_eq!(
        split_with(&single, GROUP, SplitOptions::MASTER)
            .unwrap_err()
            .path,
        "protocols.lava-multinode"
    );
}

#[test]
fn a_role_with_count_zero_needs_no_actions_and_adds_no_node() {
    let mut submission = fixture("server-client.yaml");
    let roles = submission["protocols"]["lava-multinode"]["roles"]
        .as_mapping_mut()
        .unwrap();
    roles.insert("observer".into(), yaml("{device_type: qemu, count: 0}"));
    let jobs = split_with(&submission, GROUP, SplitOptions::MASTER).unwrap();
    assert_eq!(jobs.len(), 3);
    assert!(
        jobs.iter()
            .all(|j| j.protocol_block()["group_size"] == yaml("3"))
    );
}
