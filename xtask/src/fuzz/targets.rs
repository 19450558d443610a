//! The fuzz targets: one function per input format, each returning an *outcome* string
//! (a success's shape or an error's message with its numbers blanked) that the mutation
//! loop uses as feedback. A target panics when an invariant of its format breaks (a log
//! line that does not read back as the record written, an archive that does not survive
//! a write and a re-read); the worker treats that as a crash like any other panic.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use lava_coordinator::{GroupLimits, Groups, Outcome};
use lava_device::Renderer;
use lava_pipeline::{Device, JobParser, ParseOptions, StrategyRegistry};
use serde_yaml::{Mapping, Value};

use crate::shared::workspace_root;

/// One fuzz target.
pub struct Target {
    /// Its name on the command line.
    pub name: &'static str,
    /// One line for `--list`.
    pub about: &'static str,
    /// Fixture directories (from the workspace root) whose files are seeds too.
    pub fixtures: &'static [&'static str],
    /// Only the fixture files ending with this are seeds.
    pub fixture_suffix: &'static str,
    /// Tokens the mutator inserts.
    pub dictionary: &'static [&'static str],
    /// What the target needs, built once per worker.
    pub setup: fn() -> Result<State>,
    /// Run one input; the outcome's shape.
    pub run: fn(&mut State, &[u8]) -> String,
}

/// What targets keep between inputs.
#[derive(Default)]
pub struct State {
    registry: Option<StrategyRegistry>,
    device: Option<Device>,
    renderer: Option<Renderer>,
    scratch: Option<tempfile::TempDir>,
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const ALL: &[Target] = &[
    Target {
        name: "yaml",
        about: "lava-yaml's size and depth prescan, then the YAML parser on what it lets through",
        fixtures: &["fixtures"],
        fixture_suffix: ".yaml",
        dictionary: YAML_TOKENS,
        setup: no_setup,
        run: yaml,
    },
    Target {
        name: "job",
        about: "job parsing (lava-pipeline's JobParser with every built-in strategy), validate, describe",
        fixtures: &[
            "fixtures/local-shell",
            "fixtures/qemu",
            "fixtures/ssh",
            "fixtures/bench",
        ],
        fixture_suffix: "job.yaml",
        dictionary: JOB_TOKENS,
        setup: job_setup,
        run: job,
    },
    Target {
        name: "definition",
        about: "the job definition checks (check_job: key paths, timeouts, test definitions)",
        fixtures: &[
            "fixtures/local-shell",
            "fixtures/qemu",
            "fixtures/ssh",
            "fixtures/multinode",
        ],
        fixture_suffix: ".yaml",
        dictionary: JOB_TOKENS,
        setup: job_setup,
        run: definition,
    },
    Target {
        name: "device",
        about: "device dictionary rendering (lava-device over fixtures/ and LAVA's device types), then loading",
        fixtures: &["fixtures/devices"],
        fixture_suffix: ".jinja2",
        dictionary: JINJA_TOKENS,
        setup: device_setup,
        run: device,
    },
    Target {
        name: "frame",
        about: "coordinator frames (lava-multinode codec) into requests handled by the coordinator's groups",
        fixtures: &[],
        fixture_suffix: "",
        dictionary: FRAME_TOKENS,
        setup: no_setup,
        run: frame,
    },
    Target {
        name: "log",
        about: "a log record written as LAVA's one-line YAML and read back by a YAML reader",
        fixtures: &[],
        fixture_suffix: "",
        dictionary: YAML_TOKENS,
        setup: no_setup,
        run: log,
    },
    Target {
        name: "cpio",
        about: "lava-artefacts' newc reader; what it reads survives a write and a re-read",
        fixtures: &[],
        fixture_suffix: "",
        dictionary: CPIO_TOKENS,
        setup: no_setup,
        run: cpio,
    },
    Target {
        name: "tar",
        about: "lava-artefacts' tar reader (ustar, GNU long names, pax records)",
        fixtures: &[],
        fixture_suffix: "",
        dictionary: TAR_TOKENS,
        setup: no_setup,
        run: tar,
    },
    Target {
        name: "unpack",
        about: "lava-shell's test definition archive unpacking: nothing written outside its directory",
        fixtures: &[],
        fixture_suffix: "",
        dictionary: TAR_TOKENS,
        setup: scratch_setup,
        run: unpack,
    },
];

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    ALL.iter().find(|t| t.name == name)
}

const YAML_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\n- ",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "!!float ",
    "!!map ",
    "? ",
    "|\n  ",
    ">-\n  ",
    "'",
    "\"",
    "\\u0085",
    "\\x00",
    "\\",
    "#",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "~",
    "null",
    ".nan",
    "\u{85}",
    "\u{2028}",
    "\u{feff}",
    "\t",
    "\r",
    "\0",
];

const JOB_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\n    ",
    "&a ",
    "*a",
    "<<: *a",
    "timeout: {minutes: 1}",
    "timeouts: {job: {days: 400}}",
    "{seconds: -1}",
    "failure_retry: 99999",
    "failure_retry_interval: 99999999999",
    "repeat: 3",
    "namespace: ns",
    "protocols: {lava-multinode: {role: a, timeout: {minutes: 1}}}",
    "- deploy: {to: tmpfs, images: {kernel: {url: 'http://x/k'}}}",
    "- boot: {method: qemu, prompts: ['# ']}",
    "- boot: {method: minimal}",
    "- test: {definitions: [{from: inline, name: t, path: p, repository: {}}]}",
    "- command: {name: hard_reset}",
    "from: git",
    "from: url",
    "from: tar",
    "repository: --upload-pack=x",
    "path: ../x",
    "parameters: {A: 1}",
    "params: {'1x': 2}",
    "lava-lxc",
    "lava-multinode",
    "context: {}",
    "secrets: {a: b}",
    "device_type: qemu",
    "job_name: x",
    "priority: medium",
    "visibility: public",
    "metadata: {}",
    "stage: 2",
    "role: [a]",
    "expect_role: b",
    "connection: ssh",
    "postprocess: {}",
    "docker: {image: x}",
    "downloads",
    "overlays",
    "compression: gz",
    "sha256sum: 00",
    "~",
    "null",
    "''",
];

const JINJA_TOKENS: &[&str] = &[
    "{% extends 'qemu.jinja2' %}\n",
    "{% extends 'local-shell.jinja2' %}\n",
    "{% extends 'beaglebone-black.jinja2' %}\n",
    "{% extends 'base-uboot.jinja2' %}\n",
    "{% extends 'x86.jinja2' %}\n",
    "{% set ",
    " = ",
    " %}",
    "{{ ",
    " }}",
    "{% if x %}",
    "{% endif %}",
    "{% for i in range(3) %}",
    "{% endfor %}",
    "{% block body %}",
    "{% endblock %}",
    "{% include 'qemu.jinja2' %}",
    "{% macro m() %}{{ m() }}{% endmacro %}",
    "{{ m() }}",
    "|tojson",
    "|yaml_quote",
    "|join(',')",
    "'",
    "\"",
    "[",
    "]",
    "{",
    "}",
    "connection_command",
    "hard_reset_command",
    "power_off_command",
    "extra_kernel_args",
    "mac_addr",
    "netdevice",
    "memory",
    "arch",
    "console_device",
    "baud_rate",
    "boot_character_delay",
    "action_timeout_",
    "connection_list",
    "connection_commands",
    "connection_tags",
    "usb_vendor_id",
    "static_info",
    "flasher_deploy_commands",
    "['a', 'b']",
    "{'a': 'b'}",
    "99999999999999999999",
    "-1",
    "none",
    "true",
    "\n",
];

const FRAME_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "null",
    "true",
    "0",
    "-1",
    "1e999",
    "\"request\": ",
    "\"client_name\": ",
    "\"group_name\": ",
    "\"group_size\": ",
    "\"role\": ",
    "\"hostname\": ",
    "\"messageID\": ",
    "\"message\": ",
    "\"poll_delay\": ",
    "\"blocksize\": ",
    "\"host\": ",
    "\"port\": ",
    "\"token\": ",
    "\"aggregate\": ",
    "\"lava_send\"",
    "\"lava_wait\"",
    "\"lava_wait_all\"",
    "\"lava_sync\"",
    "\"group_data\"",
    "\"clear_group\"",
    "\"complete\"",
    "\"ack\"",
    "\"nack\"",
    "\"wait\"",
    "00000000",
    "0000ffff",
    "ffffffff",
];

const CPIO_TOKENS: &[&str] = &[
    "070701",
    "070702",
    "TRAILER!!!",
    "00000000",
    "FFFFFFFF",
    "0000A1FF",
    "000041ED",
    "000081A4",
    "../",
    "/",
    "\0",
    "..",
    "./",
];

const TAR_TOKENS: &[&str] = &[
    "ustar\0",
    "ustar  \0",
    "00",
    "0000644\0",
    "0000777\0",
    "00000000000\0",
    "77777777777\0",
    "././@LongLink",
    "path=",
    "linkpath=",
    "size=",
    "30 path=x\n",
    "\0",
    "../",
    "/",
    "..",
    "./",
    "L",
    "K",
    "x",
    "g",
    "0",
    "1",
    "2",
    "5",
];

fn no_setup() -> Result<State> {
    Ok(State::default())
}

fn job_setup() -> Result<State> {
    let path = workspace_root().join("fixtures/qemu/device.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let device = Device::from_yaml(&text, Some(&path))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(State {
        registry: Some(lava_actions::registry()),
        device: Some(device),
        ..State::default()
    })
}

fn device_setup() -> Result<State> {
    Ok(State {
        renderer: Some(Renderer::with_defaults([
            workspace_root().join("fixtures/device-types")
        ])),
        ..State::default()
    })
}

fn scratch_setup() -> Result<State> {
    Ok(State {
        scratch: Some(tempfile::tempdir().context("creating the fuzz scratch directory")?),
        ..State::default()
    })
}

/// An error's message as an outcome: digits blanked (so sizes and offsets do not make
/// every input new), cut to a length that keeps the first distinct words.
fn shape(prefix: &str, message: impl std::fmt::Display) -> String {
    let text: String = message
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .take(96)
        .collect();
    format!("{prefix}: {text}")
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

fn yaml(_: &mut State, data: &[u8]) -> String {
    let text = text(data);
    if let Err(error) = lava_yaml::check(&text) {
        return shape("refused", error);
    }
    assert!(lava_yaml::nesting_depth(&text) <= lava_yaml::MAX_YAML_DEPTH);
    match serde_yaml::from_str::<Value>(&text) {
        Ok(value) => format!("ok: {}", value_shape(&value, 3)),
        Err(error) => shape("parse", error),
    }
}

/// The kinds of a value's top levels (`map{seq,str}`), as a success's outcome.
fn value_shape(value: &Value, depth: usize) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "num",
        Value::String(_) => "str",
        Value::Sequence(_) => "seq",
        Value::Mapping(_) => "map",
        Value::Tagged(_) => "tag",
    };
    if depth == 0 {
        return kind.to_string();
    }
    let children: Vec<String> = match value {
        Value::Sequence(items) => items
            .iter()
            .take(4)
            .map(|v| value_shape(v, depth - 1))
            .collect(),
        Value::Mapping(map) => map
            .values()
            .take(6)
            .map(|v| value_shape(v, depth - 1))
            .collect(),
        _ => return kind.to_string(),
    };
    format!("{kind}{{{}}}", children.join(","))
}

fn job(state: &mut State, data: &[u8]) -> String {
    let text = text(data);
    let registry = state.registry.as_ref().expect("job setup");
    let device = state.device.clone().expect("job setup");
    let parsed = JobParser::new(registry, &lava_actions::FIXED).parse(
        &text,
        device,
        &ParseOptions::default(),
    );
    match parsed {
        Ok((job, mut pipeline)) => {
            let validated = pipeline.validate(&job);
            let description = lava_pipeline::description_yaml(&pipeline);
            match validated {
                Ok(()) => format!(
                    "ok: {} lines of description",
                    description.lines().count().min(50)
                ),
                Err(error) => shape("invalid", error),
            }
        }
        Err(error) => shape("parse", error),
    }
}

fn definition(state: &mut State, data: &[u8]) -> String {
    let text = text(data);
    let registry = state.registry.as_ref().expect("job setup");
    let diagnostics =
        lava_pipeline::definition::check_job(&text, "fuzz.yaml", state.device.as_ref(), registry);
    match diagnostics.first() {
        None => "ok".to_string(),
        Some(first) => shape(&format!("{} errors", diagnostics.len().min(5)), first),
    }
}

fn device(state: &mut State, data: &[u8]) -> String {
    let text = text(data);
    let renderer = state.renderer.as_ref().expect("device setup");
    let rendered = match renderer.render_str("fuzz.jinja2", &text, &Mapping::new()) {
        Ok(rendered) => rendered,
        Err(error) => return shape("render", error),
    };
    match Device::from_yaml(&rendered, Some(Path::new("fuzz.yaml"))) {
        Ok(device) => format!("ok: {}", device.lookup(&["actions"]).map_or(0, |_| 1)),
        Err(error) => shape("load", error),
    }
}

/// Limit on a frame's announced length (the coordinator's default `lava_rs_max_frame_bytes`).
const FRAME_LIMIT: usize = 65536;

fn frame(_: &mut State, data: &[u8]) -> String {
    let mut groups = Groups::new(GroupLimits::default());
    let mut rest = data;
    let mut outcomes = Vec::new();
    while !rest.is_empty() && outcomes.len() < 8 {
        let body = match lava_multinode::codec::decode_frame(rest, FRAME_LIMIT) {
            Ok(lava_multinode::codec::Decoded::Frame { body, consumed }) => {
                rest = &rest[consumed..];
                body
            }
            Ok(lava_multinode::codec::Decoded::Incomplete) => {
                outcomes.push("incomplete".to_string());
                break;
            }
            Err(error) => {
                outcomes.push(shape("frame", error));
                break;
            }
        };
        let request = match serde_json::from_slice::<serde_json::Value>(body)
            .map_err(|e| shape("json", e))
            .and_then(|v| {
                serde_json::from_value::<lava_multinode::Request>(v)
                    .map_err(|e| shape("request", e))
            }) {
            Ok(request) => request,
            Err(outcome) => {
                outcomes.push(outcome);
                continue;
            }
        };
        let outcome = match groups.handle(&request, Instant::now()) {
            Outcome::Reply(response) => {
                let json = lava_multinode::codec::to_lava_json(&response);
                shape("reply", String::from_utf8_lossy(&json))
            }
            Outcome::Close => "close".to_string(),
        };
        outcomes.push(outcome);
    }
    let summary = groups.summary();
    format!(
        "{} | groups {}",
        outcomes.join(" / "),
        summary.groups.min(3)
    )
}

fn log(_: &mut State, data: &[u8]) -> String {
    let text = text(data).into_owned();
    let mut record = Mapping::new();
    record.insert("dt".into(), "2026-12-05T10:00:00.000000".into());
    record.insert("lvl".into(), "target".into());
    record.insert("msg".into(), Value::String(text.clone()));
    let line = lava_pipeline::log::dump_flow_mapping(&record);
    assert!(!line.contains('\n'), "a log record spans lines: {line:?}");
    let read: Vec<Mapping> = serde_yaml::from_str(&format!("- {line}\n"))
        .unwrap_or_else(|e| panic!("the log line {line:?} is not YAML: {e}"));
    assert_eq!(read.len(), 1);
    assert_eq!(
        read[0].get("msg"),
        Some(&Value::String(text.clone())),
        "the log line {line:?} reads back as another message"
    );
    // The same message as a structured value (a result record's shape), when it is YAML.
    let structured = match lava_yaml::check(&text)
        .ok()
        .and_then(|()| serde_yaml::from_str::<Value>(&text).ok())
    {
        Some(value) => value,
        None => return format!("string: {}", line.len().ilog2()),
    };
    let mut record = record;
    record.insert("msg".into(), structured.clone());
    let line = lava_pipeline::log::dump_flow_mapping(&record);
    assert!(!line.contains('\n'), "a log record spans lines: {line:?}");
    let read = match serde_yaml::from_str::<Vec<Mapping>>(&format!("- {line}\n")) {
        Ok(read) => read,
        // `{1: a, '1': b}`: LAVA writes every key as a string, so these two collide.
        Err(error) if error.to_string().contains("duplicate entry") => {
            return "structured: colliding keys".to_string();
        }
        Err(error) => panic!("the log line {line:?} (of {structured:?}) is not YAML: {error}"),
    };
    assert!(
        reads_back_as(&structured, read[0].get("msg").expect("msg")),
        "the log line {line:?} of {structured:?} reads back as {:?}",
        read[0].get("msg")
    );
    format!("structured: {}", value_shape(&structured, 2))
}

/// Whether `read` is what LAVA's log line of `written` reads back as: the same strings,
/// sequences and mappings, every other scalar (`! "12.5"`) as a string.
fn reads_back_as(written: &Value, read: &Value) -> bool {
    match (written, read) {
        // serde_yaml keeps the non-specific tag of `! "12.5"`.
        (_, Value::Tagged(tagged)) => {
            tagged.tag == "!"
                && matches!(tagged.value, Value::String(_))
                && reads_back_as(written, &tagged.value)
        }
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Null | Value::Bool(_) | Value::Number(_), Value::String(_)) => true,
        (Value::Sequence(a), Value::Sequence(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| reads_back_as(x, y))
        }
        (Value::Mapping(a), Value::Mapping(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| reads_back_as(ka, kb) && reads_back_as(va, vb))
        }
        (Value::Tagged(tagged), read) => reads_back_as(&tagged.value, read),
        _ => false,
    }
}

fn cpio(_: &mut State, data: &[u8]) -> String {
    let entries = match lava_artefacts::newc::read_newc(data) {
        Ok(entries) => entries,
        Err(error) => return shape("read", error),
    };
    let written = lava_artefacts::newc::write_newc(&entries);
    let again = lava_artefacts::newc::read_newc(&written)
        .unwrap_or_else(|e| panic!("an archive written from {entries:?} does not read back: {e}"));
    assert_eq!(
        again, entries,
        "an archive changes through a write and a re-read"
    );
    format!("ok: {} entries", entries.len().min(10))
}

fn tar(_: &mut State, data: &[u8]) -> String {
    match lava_artefacts::tar::read_tar(data) {
        Ok(members) => format!(
            "ok: {} members, {} dirs",
            members.len().min(10),
            members.iter().filter(|m| m.is_dir()).count().min(10)
        ),
        Err(error) => shape("read", error),
    }
}

fn unpack(state: &mut State, data: &[u8]) -> String {
    let scratch = state.scratch.as_ref().expect("unpack setup").path();
    let archive = scratch.join("input.tar");
    let dest = scratch.join("unpacked");
    let sentinel = scratch.join("sentinel");
    std::fs::write(&archive, data).expect("writing the fuzz archive");
    std::fs::write(&sentinel, b"untouched").expect("writing the sentinel");
    let strip = u32::from(data.first().copied().unwrap_or(0) & 1);
    let result =
        lava_shell::fetch::unpack_archive(&archive, None, strip, &dest, "fuzz://archive.tar");
    let mut outside: Vec<String> = std::fs::read_dir(scratch)
        .expect("listing the scratch directory")
        .map(|e| {
            e.expect("scratch entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| !["input.tar", "unpacked", "sentinel"].contains(&name.as_str()))
        .collect();
    outside.sort();
    assert!(
        outside.is_empty(),
        "unpacking wrote outside its directory: {outside:?}"
    );
    assert_eq!(
        std::fs::read(&sentinel).expect("reading the sentinel"),
        b"untouched",
        "unpacking wrote through a link to a file outside its directory"
    );
    let files = walk_count(&dest);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).expect("removing the unpacked tree");
    }
    match result {
        Ok(()) => format!("ok: {} paths", files.min(10)),
        Err(error) => shape("unpack", error),
    }
}

fn walk_count(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let path = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            1 + if is_dir { walk_count(&path) } else { 0 }
        })
        .sum()
}
