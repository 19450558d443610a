//! Splitting a MultiNode submission into one job definition per node, as
//! lava-server does before scheduling (multinode.md §3).
//!
//! For every role, in submission order, a template is built:
//!
//! * the top-level keys `job_name`, `timeouts`, `priority`, `visibility`,
//!   `notify`, `metadata`, `reboot_to_fastboot` (and `secrets`, like LAVA's
//!   master) are copied;
//! * the role keys `device_type`, `connection`, `host_role` and `context`
//!   are promoted to the top level;
//! * `protocols.lava-multinode` gets `target_group`, `role`, `group_size`,
//!   `sub_id` and every other role key except `count`, then every key of
//!   the submission's own block except `roles`/`role` (so a group-wide
//!   `timeout` wins over a role's);
//! * the actions whose `role` list names the role are kept in order, with
//!   `role` replaced by the role name.
//!
//! Then `count` copies are emitted per role, `sub_id` running from 0 across
//! the whole group. The `roles` map (job id → role) is only known once the
//! scheduler has created the jobs; [`assign_roles`] injects it the way the
//! scheduler does.
//!
//! Before splitting, the submission is checked like lava-server checks it
//! (job schema for the MultiNode parts, then its extra rules); every error
//! names the key path it is about.

use indexmap::IndexMap;
use serde_yaml::{Mapping, Value};

/// The protocol's name, the key under `protocols`.
pub const PROTOCOL_NAME: &str = "lava-multinode";

/// Top-level keys copied into every node job.
const COPIED: [&str; 8] = [
    "job_name",
    "timeouts",
    "priority",
    "visibility",
    "notify",
    "metadata",
    "reboot_to_fastboot",
    "secrets",
];

/// Role keys that become top-level keys of the node job.
const PROMOTED: [&str; 4] = ["device_type", "connection", "host_role", "context"];

/// Keys a device role may have (job schema).
const DEVICE_ROLE_KEYS: [&str; 9] = [
    "device_type",
    "count",
    "device",
    "worker",
    "context",
    "tags",
    "environment",
    "essential",
    "timeout",
];

/// Keys a connection (secondary connection) role may have (job schema).
const CONNECTION_ROLE_KEYS: [&str; 9] = [
    "connection",
    "count",
    "expect_role",
    "host_role",
    "essential",
    "request",
    "tags",
    "timeout",
    "context",
];

/// A submission that cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SplitError {
    /// Where in the submission, e.g. `protocols.lava-multinode.roles.guest.host_role`.
    pub path: String,
    /// What is wrong (LAVA's wording where LAVA has one).
    pub message: String,
}

impl SplitError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        SplitError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Which lava-server's splitting to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitOptions {
    /// Copy the top-level `secrets` into node jobs (master: yes; 2023.01: no).
    pub copy_secrets: bool,
    /// Copy `protocols.lava-vland.<role>` / `protocols.lava-lxc.<role>` into
    /// the node job's `protocols` (2023.01: yes; master dropped it).
    pub copy_role_protocols: bool,
}

impl SplitOptions {
    /// LAVA's current master.
    pub const MASTER: SplitOptions = SplitOptions {
        copy_secrets: true,
        copy_role_protocols: false,
    };
    /// LAVA 2023.01 (Debian bookworm).
    pub const LAVA_2023_01: SplitOptions = SplitOptions {
        copy_secrets: false,
        copy_role_protocols: true,
    };
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions::MASTER
    }
}

/// One node's job definition.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeJob {
    /// The node's role.
    pub role: String,
    /// Its `protocols.lava-multinode.sub_id` (0-based across the group).
    pub sub_id: u64,
    /// Whether the node has a device of its own (`device_type`), as opposed
    /// to a secondary connection (`connection`).
    pub device_backed: bool,
    /// The job definition, ready to be dumped as YAML.
    pub definition: Mapping,
}

impl NodeJob {
    /// The node's `protocols.lava-multinode` block.
    pub fn protocol_block(&self) -> &Mapping {
        self.definition
            .get("protocols")
            .and_then(|p| p.get(PROTOCOL_NAME))
            .and_then(Value::as_mapping)
            .expect("a node job always has protocols.lava-multinode")
    }

    fn protocol_block_mut(&mut self) -> &mut Mapping {
        self.definition
            .get_mut("protocols")
            .and_then(|p| p.get_mut(PROTOCOL_NAME))
            .and_then(Value::as_mapping_mut)
            .expect("a node job always has protocols.lava-multinode")
    }
}

/// Whether `submission` is a MultiNode submission (has `protocols.lava-multinode`).
pub fn is_multinode(submission: &Mapping) -> bool {
    submission
        .get("protocols")
        .and_then(|p| p.get(PROTOCOL_NAME))
        .is_some_and(|b| !b.is_null())
}

/// A fresh `target_group`: a random UUID4 string, as lava-server makes.
pub fn new_target_group() -> String {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn fill_random(bytes: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut file) = std::fs::File::open("/dev/urandom")
        && file.read_exact(bytes).is_ok()
    {
        return;
    }
    // No /dev/urandom: std's per-process random hash keys, a counter and the clock.
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_usize(i);
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(now.as_nanos());
        }
        let value = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&value[..chunk.len()]);
    }
}

/// Split with a fresh random `target_group` and master's rules.
pub fn split(submission: &Mapping) -> Result<Vec<NodeJob>, SplitError> {
    split_with(submission, &new_target_group(), SplitOptions::default())
}

/// Check `submission` like lava-server does and split it into node jobs
/// sharing `target_group`, in role order then count order.
pub fn split_with(
    submission: &Mapping,
    target_group: &str,
    options: SplitOptions,
) -> Result<Vec<NodeJob>, SplitError> {
    let block = multinode_block(submission)?;
    let roles = check_roles(block)?;
    check_top_level(submission)?;
    let actions = check_actions(submission)?;

    let group_size: u64 = roles.values().map(|r| r.count).sum();

    let mut jobs = Vec::new();
    let mut sub_id = 0u64;
    for (name, role) in &roles {
        // The action list: LAVA fails (KeyError) on a role with nodes but no actions.
        let mut role_actions = Vec::new();
        for action in &actions {
            if action.roles.iter().any(|r| r == name) {
                let mut body = action.body.clone();
                body.insert("role".into(), Value::String(name.clone()));
                let mut entry = Mapping::new();
                entry.insert(Value::String(action.kind.clone()), Value::Mapping(body));
                role_actions.push(Value::Mapping(entry));
            }
        }
        if role.count > 0 && role_actions.is_empty() {
            return Err(SplitError::new(
                "actions",
                format!("no action has role '{name}'"),
            ));
        }

        let mut template = Mapping::new();
        for key in COPIED {
            if key == "secrets" && !options.copy_secrets {
                continue;
            }
            if let Some(value) = submission.get(key) {
                template.insert(key.into(), value.clone());
            }
        }
        for key in PROMOTED {
            if let Some(value) = role.params.get(key) {
                template.insert(key.into(), value.clone());
            }
        }
        let mut params = Mapping::new();
        params.insert("target_group".into(), target_group.into());
        params.insert("role".into(), Value::String(name.clone()));
        params.insert("group_size".into(), group_size.into());
        params.insert("sub_id".into(), 0u64.into());
        for (key, value) in &role.params {
            let key_str = key.as_str().unwrap_or_default();
            if key_str == "count" || PROMOTED.contains(&key_str) {
                continue;
            }
            params.insert(key.clone(), value.clone());
        }
        for (key, value) in block {
            if matches!(key.as_str(), Some("roles" | "role")) {
                continue;
            }
            params.insert(key.clone(), value.clone());
        }
        let mut protocols = Mapping::new();
        protocols.insert(PROTOCOL_NAME.into(), Value::Mapping(params));
        if options.copy_role_protocols {
            for other in ["lava-vland", "lava-lxc"] {
                if let Some(value) = submission
                    .get("protocols")
                    .and_then(|p| p.get(other))
                    .and_then(|p| p.get(name.as_str()))
                {
                    protocols.insert(other.into(), value.clone());
                }
            }
        }
        template.insert("protocols".into(), Value::Mapping(protocols));
        template.insert("actions".into(), Value::Sequence(role_actions));

        for _ in 0..role.count {
            let mut job = NodeJob {
                role: name.clone(),
                sub_id,
                device_backed: role.params.contains_key("device_type"),
                definition: template.clone(),
            };
            job.protocol_block_mut()
                .insert("sub_id".into(), sub_id.into());
            jobs.push(job);
            sub_id += 1;
        }
    }
    Ok(jobs)
}

/// What the scheduler does once every node has a device: job ids are
/// `first_job_id`, `first_job_id + 1`, … in node order (one transaction,
/// role order), and every node job gets `protocols.lava-multinode.roles` =
/// job id → role for the **device-backed** nodes, in job-id order. Returns
/// that map.
pub fn assign_roles(jobs: &mut [NodeJob], first_job_id: u64) -> IndexMap<String, String> {
    let ids: Vec<String> = (0..jobs.len() as u64)
        .map(|i| (first_job_id + i).to_string())
        .collect();
    inject_roles(jobs, &ids)
}

/// [`assign_roles`] with explicit job ids (`ids[i]` is the id of `jobs[i]`).
///
/// # Panics
/// If `ids` and `jobs` differ in length.
pub fn inject_roles(jobs: &mut [NodeJob], ids: &[String]) -> IndexMap<String, String> {
    assert_eq!(jobs.len(), ids.len(), "one job id per node job");
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| (ids[i].parse::<u64>().unwrap_or(u64::MAX), ids[i].clone()));
    let roles: IndexMap<String, String> = order
        .into_iter()
        .filter(|&i| jobs[i].device_backed)
        .map(|i| (ids[i].clone(), jobs[i].role.clone()))
        .collect();
    let value: Mapping = roles
        .iter()
        .map(|(id, role)| (Value::String(id.clone()), Value::String(role.clone())))
        .collect();
    for job in jobs.iter_mut() {
        job.protocol_block_mut()
            .insert("roles".into(), Value::Mapping(value.clone()));
    }
    roles
}

struct Role {
    count: u64,
    params: Mapping,
}

struct ActionEntry {
    kind: String,
    roles: Vec<String>,
    body: Mapping,
}

const BLOCK_PATH: &str = "protocols.lava-multinode";

fn multinode_block(submission: &Mapping) -> Result<&Mapping, SplitError> {
    let block = submission
        .get("protocols")
        .and_then(|p| p.get(PROTOCOL_NAME))
        .ok_or_else(|| SplitError::new(BLOCK_PATH, "not a MultiNode submission"))?;
    let block = block
        .as_mapping()
        .ok_or_else(|| SplitError::new(BLOCK_PATH, "expected a dictionary"))?;
    for key in block.keys() {
        match key.as_str() {
            Some("roles") => {}
            Some("timeout") => check_timeout(&block["timeout"], &format!("{BLOCK_PATH}.timeout"))?,
            _ => {
                return Err(SplitError::new(
                    format!("{BLOCK_PATH}.{}", key_text(key)),
                    "extra keys not allowed",
                ));
            }
        }
    }
    Ok(block)
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

fn check_timeout(value: &Value, path: &str) -> Result<(), SplitError> {
    let map = value
        .as_mapping()
        .ok_or_else(|| SplitError::new(path, "expected a dictionary"))?;
    for (unit, amount) in map {
        match unit.as_str() {
            Some("days" | "hours" | "minutes" | "seconds") => {
                if amount.as_u64().is_none() {
                    return Err(SplitError::new(
                        format!("{path}.{}", key_text(unit)),
                        "expected a non-negative integer",
                    ));
                }
            }
            Some("skip") => {}
            _ => {
                return Err(SplitError::new(
                    format!("{path}.{}", key_text(unit)),
                    "extra keys not allowed",
                ));
            }
        }
    }
    Ok(())
}

fn check_roles(block: &Mapping) -> Result<IndexMap<String, Role>, SplitError> {
    let roles_path = format!("{BLOCK_PATH}.roles");
    let roles_value = block
        .get("roles")
        .ok_or_else(|| SplitError::new(&roles_path, "required key not provided"))?;
    let roles_map = roles_value
        .as_mapping()
        .ok_or_else(|| SplitError::new(&roles_path, "expected a dictionary"))?;
    if roles_map.is_empty() {
        return Err(SplitError::new(&roles_path, "no roles"));
    }
    let mut roles = IndexMap::new();
    for (name, params) in roles_map {
        let Some(name) = name.as_str() else {
            return Err(SplitError::new(
                format!("{roles_path}.{}", key_text(name)),
                "role names must be strings",
            ));
        };
        let path = format!("{roles_path}.{name}");
        let params = params
            .as_mapping()
            .ok_or_else(|| SplitError::new(&path, "expected a dictionary"))?;
        let has = |key: &str| params.contains_key(key);
        if has("device_type") && has("connection") {
            return Err(SplitError::new(
                &path,
                "lava-multinode protocol cannot support device_type and connection for a single role.",
            ));
        }
        let (allowed, required): (&[&str], &[&str]) = if has("connection") {
            (
                &CONNECTION_ROLE_KEYS,
                &["connection", "count", "expect_role", "host_role"],
            )
        } else {
            (&DEVICE_ROLE_KEYS, &["device_type", "count"])
        };
        if has("connection") && (has("device") || has("worker")) {
            return Err(SplitError::new(
                &path,
                "lava-multinode connection roles cannot specify device or worker.",
            ));
        }
        if has("connection") && !has("host_role") {
            return Err(SplitError::new(
                &path,
                "connection specified without a host_role",
            ));
        }
        for key in params.keys() {
            let text = key_text(key);
            if !allowed.contains(&text.as_str()) {
                return Err(SplitError::new(
                    format!("{path}.{text}"),
                    "extra keys not allowed",
                ));
            }
        }
        for key in required {
            if !has(key) {
                return Err(SplitError::new(
                    format!("{path}.{key}"),
                    "required key not provided",
                ));
            }
        }
        for key in [
            "device_type",
            "connection",
            "expect_role",
            "host_role",
            "request",
            "device",
            "worker",
        ] {
            if let Some(value) = params.get(key)
                && !value.is_string()
            {
                return Err(SplitError::new(format!("{path}.{key}"), "expected str"));
            }
        }
        let count = params["count"]
            .as_u64()
            .ok_or_else(|| SplitError::new(format!("{path}.count"), "expected an integer >= 0"))?;
        if let Some(value) = params.get("essential")
            && !value.is_bool()
        {
            return Err(SplitError::new(
                format!("{path}.essential"),
                "expected bool",
            ));
        }
        if let Some(tags) = params.get("tags")
            && !tags
                .as_sequence()
                .is_some_and(|t| t.iter().all(Value::is_string))
        {
            return Err(SplitError::new(
                format!("{path}.tags"),
                "expected a list of strings",
            ));
        }
        for key in ["context", "environment"] {
            if let Some(value) = params.get(key)
                && !value.is_mapping()
            {
                return Err(SplitError::new(
                    format!("{path}.{key}"),
                    "expected a dictionary",
                ));
            }
        }
        if let Some(timeout) = params.get("timeout") {
            check_timeout(timeout, &format!("{path}.timeout"))?;
        }
        if has("device") && count != 1 {
            return Err(SplitError::new(
                format!("{path}.count"),
                "lava-multinode roles using a specific device must set count to 1.",
            ));
        }
        roles.insert(
            name.to_string(),
            Role {
                count,
                params: params.clone(),
            },
        );
    }
    // lava-server's checks across roles.
    for (name, role) in &roles {
        let path = format!("{roles_path}.{name}");
        let host_role = role.params.get("host_role").and_then(Value::as_str);
        let expect_role = role.params.get("expect_role").and_then(Value::as_str);
        match (host_role, expect_role) {
            (Some(host), _) if !roles.contains_key(host) => {
                return Err(SplitError::new(
                    format!("{path}.host_role"),
                    format!("'host_role' '{host}' does not exist"),
                ));
            }
            (Some(_), Some(expect)) if !roles.contains_key(expect) => {
                return Err(SplitError::new(
                    format!("{path}.expect_role"),
                    format!("'expect_role' '{expect}' does not exist"),
                ));
            }
            (Some(host), _) => {
                if roles[host].count != 1 {
                    return Err(SplitError::new(
                        format!("{roles_path}.{host}.count"),
                        "The count for a role designated as a host_role must be 1.",
                    ));
                }
            }
            (None, Some(_)) => {
                return Err(SplitError::new(
                    format!("{path}.expect_role"),
                    "'expect_role' without 'host_role'",
                ));
            }
            (None, None) => {}
        }
    }
    Ok(roles)
}

fn check_top_level(submission: &Mapping) -> Result<(), SplitError> {
    for extra in ["device_type", "environment", "context", "tags"] {
        if let Some(value) = submission.get(extra)
            && is_truthy(value)
        {
            return Err(SplitError::new(
                extra,
                format!("\"{extra}\" should not be used with multinode"),
            ));
        }
    }
    Ok(())
}

/// Python truthiness of a YAML value (LAVA checks `if extra_value`).
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Tagged(t) => is_truthy(&t.value),
    }
}

fn check_actions(submission: &Mapping) -> Result<Vec<ActionEntry>, SplitError> {
    let actions = submission
        .get("actions")
        .ok_or_else(|| SplitError::new("actions", "required key not provided"))?
        .as_sequence()
        .ok_or_else(|| SplitError::new("actions", "expected a list"))?;
    let mut entries = Vec::new();
    for (index, action) in actions.iter().enumerate() {
        let path = format!("actions[{index}]");
        let Some(map) = action.as_mapping().filter(|m| m.len() == 1) else {
            return Err(SplitError::new(
                path,
                "expected a dictionary with one action",
            ));
        };
        let (kind, body) = map.iter().next().expect("one entry");
        let kind = key_text(kind);
        if !matches!(kind.as_str(), "deploy" | "boot" | "test" | "command") {
            return Err(SplitError::new(
                format!("{path}.{kind}"),
                "unknown action type",
            ));
        }
        let path = format!("{path}.{kind}");
        let Some(body) = body.as_mapping() else {
            return Err(SplitError::new(path, "expected a dictionary"));
        };
        let role_path = format!("{path}.role");
        let roles = match body.get("role") {
            None => {
                return Err(SplitError::new(
                    role_path,
                    "Every action of a multinode job should have roles",
                ));
            }
            // A plain string is one role (exact match, not LAVA's substring test).
            Some(Value::String(role)) => vec![role.clone()],
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| SplitError::new(&role_path, "expected a list of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(SplitError::new(role_path, "expected a list of strings"));
            }
        };
        entries.push(ActionEntry {
            kind,
            roles,
            body: body.clone(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_group_is_a_uuid4() {
        let a = new_target_group();
        let b = new_target_group();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn truthiness_follows_python() {
        assert!(!is_truthy(&Value::Null));
        assert!(!is_truthy(&Value::String(String::new())));
        assert!(!is_truthy(&Value::Mapping(Mapping::new())));
        assert!(is_truthy(&Value::String("qemu".into())));
    }
}
