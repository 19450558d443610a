//! Checks on the job definition that report every mistake at once, each naming the file,
//! the key path (`actions[2].boot.method`), what was found and what was expected, with a
//! "did you mean" for misspelt keys and method names.
//!
//! LAVA's dispatcher has no schema of its own; these checks follow LAVA's job schema
//! (`lava_common/schemas`) where the dispatcher would fail later with a less helpful
//! message, and stay lenient where LAVA's dispatcher is (unknown keys inside blocks are
//! left to the strategies).

use crate::device::Device;
use crate::strategy::{Section, StrategyRegistry};
use crate::timeout::{MAX_TIMEOUT_SECONDS, timeout_total, unit_seconds};
use crate::value::type_name;
use serde_yaml::{Mapping, Value};
use std::fmt;

/// One mistake in a job definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The job file.
    pub file: String,
    /// Key path, e.g. `actions[2].boot.method`.
    pub path: String,
    /// What is wrong, including what was found and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

/// Top-level keys of LAVA's job schema, plus keys lava-server adds when it splits a
/// MultiNode job and keys the dispatcher accepts.
const TOP_LEVEL_KEYS: &[&str] = &[
    "job_name",
    "device_type",
    "device",
    "worker",
    "timeouts",
    "visibility",
    "context",
    "metadata",
    "priority",
    "tags",
    "secrets",
    "environment",
    "protocols",
    "notify",
    "reboot_to_fastboot",
    "actions",
    "connection",
    "host_role",
    "target",
    "target_group",
    "role",
    "description",
    "compatibility",
];
const TIMEOUT_KEYS: &[&str] = &[
    "job",
    "action",
    "actions",
    "connection",
    "connections",
    "queue",
];
const TIMEOUT_UNITS: &[&str] = &["days", "hours", "minutes", "seconds", "skip"];

/// The longest test suite name LAVA's results database stores (`TestSuite.name`, 200
/// characters). A definition's suite is `<index>_<name>`, so its name must fit with the
/// index in front.
pub const MAX_SUITE_NAME_CHARS: usize = 200;
const ACTION_NAMES: &[&str] = &["deploy", "boot", "test", "command"];
const CONTEXT_KEYS: &[&str] = &[
    "arch",
    "boot_console",
    "boot_root",
    "cpu",
    "extra_options",
    "guestfs_driveid",
    "guestfs_interface",
    "guestfs_size",
    "machine",
    "memory",
    "model",
    "monitor",
    "netdevice",
    "no_kvm",
    "no_network",
    "serial",
    "vga",
    "booti_dtb_addr",
    "booti_kernel_addr",
    "booti_ramdisk_addr",
    "bootm_dtb_addr",
    "bootm_kernel_addr",
    "bootm_ramdisk_addr",
    "bootz_dtb_addr",
    "bootz_kernel_addr",
    "bootz_ramdisk_addr",
    "deploy_character_delay",
    "boot_character_delay",
    "boot_retry",
    "bootloader_prompt",
    "console_device",
    "custom_kernel_args",
    "extra_kernel_args",
    "extra_nfsroot_args",
    "failure_retry",
    "kernel_loglevel",
    "kernel_start_message",
    "lava_test_results_dir",
    "menu_interrupt_prompt",
    "mustang_menu_list",
    "test_character_delay",
    "tftp_mac_address",
    "uboot_extra_error_message",
    "uboot_needs_interrupt",
    "uboot_altbank",
];

/// Check a job text. `device` enables the checks against the device's methods.
pub fn check_job(
    text: &str,
    file: &str,
    device: Option<&Device>,
    registry: &StrategyRegistry,
) -> Vec<Diagnostic> {
    match parse_job_text(text, file) {
        Ok(value) => check_job_value(&value, file, device, registry),
        Err(diagnostics) => diagnostics,
    }
}

/// The job text within `lava_yaml`'s limits and parsed, or the diagnostic saying why not
/// (the first step of [`check_job`], for a caller that keeps the parsed job).
pub fn parse_job_text(text: &str, file: &str) -> Result<Value, Vec<Diagnostic>> {
    let mut out = Checker {
        file: file.to_string(),
        diagnostics: Vec::new(),
    };
    if let Err(e) = lava_yaml::check(text) {
        out.push("", e.to_string());
        return Err(out.diagnostics);
    }
    serde_yaml::from_str(text).map_err(|e| {
        out.push("", format!("not valid YAML: {e}"));
        out.diagnostics
    })
}

/// [`check_job`] on a job already parsed by [`parse_job_text`].
pub fn check_job_value(
    value: &Value,
    file: &str,
    device: Option<&Device>,
    registry: &StrategyRegistry,
) -> Vec<Diagnostic> {
    let mut out = Checker {
        file: file.to_string(),
        diagnostics: Vec::new(),
    };
    let Some(job) = value.as_mapping() else {
        out.push(
            "",
            format!("expected a mapping of job keys, found {}", type_name(value)),
        );
        return out.diagnostics;
    };
    out.top_level(job);
    if let Some(actions) = job.get("actions") {
        out.actions(actions, device, registry);
    }
    out.diagnostics
}

struct Checker {
    file: String,
    diagnostics: Vec<Diagnostic>,
}

impl Checker {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            path: path.into(),
            message: message.into(),
        });
    }

    fn unknown_key(&mut self, path: &str, key: &str, known: &[&str]) {
        let hint = did_you_mean(key, known.iter().copied());
        self.push(
            path,
            format!(
                "unknown key '{key}'{hint}; expected one of: {}",
                known.join(", ")
            ),
        );
    }

    fn top_level(&mut self, job: &Mapping) {
        for key in job.keys() {
            match key.as_str() {
                Some(k) if TOP_LEVEL_KEYS.contains(&k) => {}
                Some(k) => self.unknown_key(k, k, TOP_LEVEL_KEYS),
                None => self.push(
                    "",
                    format!("expected string keys, found {}", type_name(key)),
                ),
            }
        }
        for required in ["job_name", "timeouts", "visibility", "actions"] {
            if !job.contains_key(required) {
                self.push(required, "missing required key");
            }
        }
        self.expect_string(job, "job_name");
        self.expect_string(job, "device_type");
        match job.get("timeouts") {
            Some(Value::Mapping(t)) => {
                for (key, value) in t {
                    let k = key.as_str().unwrap_or("");
                    let path = format!("timeouts.{k}");
                    match k {
                        "actions" | "connections" => match value.as_mapping() {
                            Some(named) => {
                                for (name, timeout) in named {
                                    let path = format!("{path}.{}", name.as_str().unwrap_or("?"));
                                    self.timeout(&path, timeout);
                                }
                            }
                            None => self.push(
                                path,
                                format!(
                                    "expected a mapping of action names to timeouts, found {}",
                                    type_name(value)
                                ),
                            ),
                        },
                        k if TIMEOUT_KEYS.contains(&k) => self.timeout(&path, value),
                        _ => self.unknown_key(&path, k, TIMEOUT_KEYS),
                    }
                }
                if !t.contains_key("job") {
                    self.push(
                        "timeouts.job",
                        "missing required key: the job timeout, e.g. {minutes: 30}",
                    );
                }
            }
            Some(other) => self.push(
                "timeouts",
                format!("expected a mapping, found {}", type_name(other)),
            ),
            None => {}
        }
        if let Some(v) = job.get("visibility") {
            let ok = matches!(v.as_str(), Some("public" | "personal"))
                || v.as_mapping()
                    .is_some_and(|m| m.get("group").is_some_and(Value::is_sequence));
            if !ok {
                self.push(
                    "visibility",
                    format!(
                        "expected 'public', 'personal' or {{group: [names]}}, found {}",
                        short(v)
                    ),
                );
            }
        }
        if let Some(v) = job.get("priority") {
            let ok = matches!(v.as_str(), Some("high" | "medium" | "low"))
                || v.as_u64().is_some_and(|n| n <= 100);
            if !ok {
                self.push(
                    "priority",
                    format!("expected high, medium, low or 0-100, found {}", short(v)),
                );
            }
        }
        if let Some(v) = job.get("context") {
            match v.as_mapping() {
                Some(context) => {
                    for key in context.keys() {
                        let k = key.as_str().unwrap_or("?");
                        if !CONTEXT_KEYS.contains(&k) {
                            // lava-server may configure extra context keys: a hint, not an error,
                            // unless it looks like a misspelling of a known key.
                            let hint = did_you_mean(k, CONTEXT_KEYS.iter().copied());
                            if !hint.is_empty() {
                                self.push(
                                    format!("context.{k}"),
                                    format!("unknown context key '{k}'{hint}"),
                                );
                            }
                        }
                    }
                }
                None => self.push(
                    "context",
                    format!("expected a mapping, found {}", type_name(v)),
                ),
            }
        }
        for key in ["metadata", "secrets", "environment", "protocols", "notify"] {
            if let Some(v) = job.get(key).filter(|v| !v.is_mapping()) {
                self.push(key, format!("expected a mapping, found {}", type_name(v)));
            }
        }
        if let Some(v) = job.get("tags").filter(|v| !v.is_sequence()) {
            self.push(
                "tags",
                format!("expected a list of strings, found {}", type_name(v)),
            );
        }
        if let Some(v) = job.get("reboot_to_fastboot").filter(|v| !v.is_bool()) {
            self.push(
                "reboot_to_fastboot",
                format!("expected true or false, found {}", type_name(v)),
            );
        }
    }

    fn expect_string(&mut self, map: &Mapping, key: &str) {
        if let Some(v) = map.get(key).filter(|v| !v.is_string()) {
            self.push(key, format!("expected a string, found {}", type_name(v)));
        }
    }

    fn timeout(&mut self, path: &str, value: &Value) {
        let Some(map) = value.as_mapping() else {
            self.push(
                path,
                format!(
                    "expected a timeout mapping such as {{minutes: 5}}, found {}",
                    type_name(value)
                ),
            );
            return;
        };
        for (unit, amount) in map {
            let u = unit.as_str().unwrap_or("?");
            if !TIMEOUT_UNITS.contains(&u) {
                self.unknown_key(&format!("{path}.{u}"), u, TIMEOUT_UNITS);
            } else if u == "skip" {
                if !amount.is_bool() {
                    self.push(
                        format!("{path}.skip"),
                        format!("expected true or false, found {}", type_name(amount)),
                    );
                }
            } else if !amount.is_u64() {
                self.push(
                    format!("{path}.{u}"),
                    format!("expected a whole number, found {}", short(amount)),
                );
            } else if let Some(alone) = amount
                .as_f64()
                .zip(unit_seconds(u))
                .map(|(n, factor)| n * factor)
                .filter(|s| *s > MAX_TIMEOUT_SECONDS as f64)
            {
                self.push(format!("{path}.{u}"), too_long(alone));
                return;
            }
        }
        if let Some(total) = timeout_total(value).filter(|s| *s > MAX_TIMEOUT_SECONDS as f64) {
            self.push(path, too_long(total));
        }
    }

    fn actions(&mut self, actions: &Value, device: Option<&Device>, registry: &StrategyRegistry) {
        let Some(list) = actions.as_sequence() else {
            self.push(
                "actions",
                format!(
                    "expected a list of action blocks, found {}",
                    type_name(actions)
                ),
            );
            return;
        };
        if list.is_empty() {
            self.push("actions", "expected at least one action block");
        }
        let mut namespaces = Vec::new();
        for (index, item) in list.iter().enumerate() {
            let at = format!("actions[{index}]");
            let Some(map) = item.as_mapping() else {
                self.push(
                    at,
                    format!(
                        "expected a mapping with one of deploy, boot, test or command, found {}",
                        type_name(item)
                    ),
                );
                continue;
            };
            if map.len() != 1 {
                self.push(
                    &at,
                    format!(
                        "expected exactly one key (deploy, boot, test or command), found {}",
                        map.len()
                    ),
                );
            }
            for (key, block) in map {
                let name = key.as_str().unwrap_or("?");
                let path = format!("{at}.{name}");
                if !ACTION_NAMES.contains(&name) {
                    self.unknown_key(&path, name, ACTION_NAMES);
                    continue;
                }
                let Some(block) = block.as_mapping() else {
                    self.push(
                        path,
                        format!("expected a mapping, found {}", type_name(block)),
                    );
                    continue;
                };
                namespaces.push(
                    block
                        .get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("common")
                        .to_string(),
                );
                if let Some(t) = block.get("timeout") {
                    self.timeout(&format!("{path}.timeout"), t);
                }
                if let Some(v) = block
                    .get("failure_retry_interval")
                    .filter(|v| v.as_u64().is_some_and(|n| n > MAX_TIMEOUT_SECONDS))
                {
                    self.push(
                        format!("{path}.failure_retry_interval"),
                        format!(
                            "{} seconds exceeds the longest timeout allowed, {MAX_TIMEOUT_SECONDS} seconds (365 days)",
                            short(v)
                        ),
                    );
                }
                for count in ["failure_retry", "repeat", "failure_retry_interval"] {
                    if let Some(v) = block
                        .get(count)
                        .filter(|v| v.as_u64().is_none_or(|n| n < 1))
                    {
                        self.push(
                            format!("{path}.{count}"),
                            format!("expected a whole number >= 1, found {}", short(v)),
                        );
                    }
                }
                if block.contains_key("failure_retry") && block.contains_key("repeat") {
                    self.push(
                        &path,
                        "repeat and failure_retry cannot be used together, use a repeat block",
                    );
                }
                match name {
                    "deploy" => {
                        self.selector(&path, block, "to", Section::Deploy, device, registry)
                    }
                    "boot" => {
                        self.selector(&path, block, "method", Section::Boot, device, registry)
                    }
                    "test" => {
                        let kinds = ["definitions", "interactive", "monitors", "services"];
                        if !kinds.iter().any(|k| block.contains_key(*k)) {
                            self.push(path, format!("expected one of: {}", kinds.join(", ")));
                        } else if let Some(defs) = block.get("definitions") {
                            self.definitions(&format!("{path}.definitions"), defs);
                        }
                    }
                    _ => {
                        if !block.get("name").is_some_and(Value::is_string) {
                            self.push(
                                format!("{path}.name"),
                                "expected the name of a device command",
                            );
                        }
                    }
                }
            }
        }
        if namespaces.iter().any(|n| n == "common") && namespaces.iter().any(|n| n != "common") {
            self.push("actions", "either all action blocks set a namespace or none does ('common' mixed with other namespaces)");
        }
    }

    fn selector(
        &mut self,
        path: &str,
        block: &Mapping,
        key: &str,
        section: Section,
        device: Option<&Device>,
        registry: &StrategyRegistry,
    ) {
        let Some(value) = block.get(key) else {
            self.push(format!("{path}.{key}"), "missing required key");
            return;
        };
        let Some(method) = value.as_str() else {
            self.push(
                format!("{path}.{key}"),
                format!("expected a string, found {}", type_name(value)),
            );
            return;
        };
        let known = registry.names(section);
        if !known.is_empty() && !known.iter().any(|k| k == method) {
            let hint = did_you_mean(method, known.iter().map(String::as_str));
            self.push(
                format!("{path}.{key}"),
                format!(
                    "unknown {} '{method}'{hint}",
                    if key == "to" {
                        "deployment"
                    } else {
                        "boot method"
                    }
                ),
            );
            return;
        }
        // Whether the device supports it is the strategies' own decision (their `accepts`).
        if let Some(device) = device
            && let Err(err) = registry.select(section, device, block)
        {
            let supported: Vec<&str> = match section {
                Section::Deploy => device.deploy_methods(),
                _ => device.boot_methods(),
            }
            .map(|m| m.keys().filter_map(Value::as_str).collect())
            .unwrap_or_default();
            let hint = did_you_mean(method, supported.iter().copied());
            let reasons = err.message.lines().skip(1).collect::<Vec<_>>().join("; ");
            let detail = if reasons.is_empty() {
                err.message.clone()
            } else {
                reasons
            };
            self.push(
                format!("{path}.{key}"),
                format!(
                    "the device does not accept {} '{method}'{hint}; the device lists: {}; {}",
                    if key == "to" {
                        "deployment"
                    } else {
                        "boot method"
                    },
                    supported.join(", "),
                    detail
                ),
            );
        }
    }

    fn definitions(&mut self, path: &str, defs: &Value) {
        let Some(list) = defs.as_sequence() else {
            self.push(
                path,
                format!(
                    "expected a list of test definitions, found {}",
                    type_name(defs)
                ),
            );
            return;
        };
        for (i, def) in list.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let Some(def) = def.as_mapping() else {
                self.push(at, format!("expected a mapping, found {}", type_name(def)));
                continue;
            };
            for key in ["from", "repository", "path", "name"] {
                if !def.contains_key(key) {
                    self.push(format!("{at}.{key}"), "missing required key");
                }
            }
            if let Some(from) = def.get("from").and_then(Value::as_str) {
                let kinds = ["git", "url", "inline", "tar"];
                if !kinds.contains(&from) {
                    let hint = did_you_mean(from, kinds.iter().copied());
                    self.push(
                        format!("{at}.from"),
                        format!(
                            "unknown source '{from}'{hint}; expected one of: {}",
                            kinds.join(", ")
                        ),
                    );
                }
            }
            if let Some(name) = def.get("name").and_then(Value::as_str) {
                let suite = format!("{i}_{name}");
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                {
                    self.push(format!("{at}.name"), format!("invalid test definition name '{name}': use only letters, digits, '_' and '-'"));
                } else if suite.chars().count() > MAX_SUITE_NAME_CHARS {
                    self.push(
                        format!("{at}.name"),
                        format!(
                            "test definition name of {} characters is too long: its suite name '{i}_…' must fit in {MAX_SUITE_NAME_CHARS} characters",
                            name.chars().count()
                        ),
                    );
                }
            }
            self.definition_paths_and_refs(&at, def);
        }
    }

    /// What would fail the run at once: a path leaving the repository, a git ref that
    /// git would read as an option, a parameter name that is not a shell variable name.
    fn definition_paths_and_refs(&mut self, at: &str, def: &Mapping) {
        if let Some(path) = def.get("path").and_then(Value::as_str)
            && let Some(problem) = relative_path_problem(path)
        {
            self.push(
                format!("{at}.path"),
                format!("invalid test definition path '{path}': {problem}; expected a path relative to the repository"),
            );
        }
        let from_git = def.get("from").and_then(Value::as_str) == Some("git");
        if from_git
            && let Some(repository) = def.get("repository").and_then(Value::as_str)
            && repository_problem(repository).is_some()
        {
            self.push(
                format!("{at}.repository"),
                format!(
                    "invalid git repository '{repository}': expected a URL or path, not an option"
                ),
            );
        }
        for key in ["branch", "revision"] {
            let Some(value) = def.get(key) else { continue };
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    self.push(
                        format!("{at}.{key}"),
                        format!("expected a string, found {}", type_name(other)),
                    );
                    continue;
                }
            };
            if let Some(problem) = git_ref_problem(&text) {
                self.push(
                    format!("{at}.{key}"),
                    format!("invalid git {key} '{text}': {problem}"),
                );
            }
        }
        for key in ["parameters", "params"] {
            let Some(value) = def.get(key) else { continue };
            let Some(map) = value.as_mapping() else {
                self.push(
                    format!("{at}.{key}"),
                    format!(
                        "expected a mapping of parameter names to values, found {}",
                        type_name(value)
                    ),
                );
                continue;
            };
            for name in map.keys() {
                let shown = name.as_str().map_or_else(|| short(name), str::to_string);
                if !name.as_str().is_some_and(is_shell_variable_name) {
                    self.push(
                        format!("{at}.{key}.{shown}"),
                        format!("invalid parameter name '{shown}': expected a shell variable name (a letter or '_', then letters, digits or '_')"),
                    );
                }
            }
        }
    }
}

fn too_long(seconds: f64) -> String {
    format!(
        "a timeout of {seconds:.0} seconds exceeds the longest allowed, {MAX_TIMEOUT_SECONDS} seconds (365 days)"
    )
}

// The rules below are the one copy for the tree: lava-shell applies them again where a
// definition is fetched and its files are written.

/// Why `path` cannot name a file inside a repository (empty, absolute, `..`, only `.`
/// parts), if it cannot.
pub fn relative_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        Some("the path is empty")
    } else if path.contains('\0') {
        Some("NUL byte in path")
    } else if path.starts_with('/') {
        Some("absolute paths are not allowed")
    } else if path.split('/').any(|part| part == "..") {
        Some("'..' is not allowed")
    } else if path.split('/').all(|part| part.is_empty() || part == ".") {
        Some("the path names no file")
    } else {
        None
    }
}

/// Why `repository` cannot be a git or url repository, if it cannot: empty, or starting
/// with `-` (git would read it as an option).
pub fn repository_problem(repository: &str) -> Option<&'static str> {
    if repository.is_empty() {
        Some("it is empty")
    } else if repository.starts_with('-') {
        Some("it starts with '-' and would be read as an option")
    } else {
        None
    }
}

/// Why `reference` cannot be a git branch or revision, if it cannot: empty, starting with
/// `-` (git would read an option such as `--upload-pack=`), or holding control characters.
pub fn git_ref_problem(reference: &str) -> Option<&'static str> {
    if reference.is_empty() {
        Some("it is empty")
    } else if reference.starts_with('-') {
        Some("it starts with '-' and would be read as an option")
    } else if reference.chars().any(char::is_control) {
        Some("it holds control characters")
    } else {
        None
    }
}

/// Whether `name` can be a POSIX shell variable name (test definition parameters are
/// exported to the test shell under their names).
pub fn is_shell_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `" (did you mean 'x'?)"` when a candidate is close, else empty.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let best = candidates
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1) && *d > 0)
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(" (did you mean '{c}'?)"),
        None => String::new(),
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A value as a person reads it in a message (`-5`, `'x'`, `[1, 2]`): not the log line's
/// flow YAML, whose `! "-5"` tags are for machines. Cut to 60 characters.
fn short(value: &Value) -> String {
    let text = crate::value::python_repr(value);
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}
