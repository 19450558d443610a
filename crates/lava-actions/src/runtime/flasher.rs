//! Run-time: `deploy-flasher`, the `to: flasher` deployment. A lab whose board is flashed by
//! its own tool (a vendor flasher, a script, a USB recovery mode) lists the commands in the
//! device dictionary (`actions: deploy: methods: flasher: commands:`); after the job's
//! images are downloaded, each command runs on the dispatcher, in order, in the downloads
//! directory, with these substituted (LAVA 2023.01's table):
//! - `{KEY}` for each image `key` of the job: the downloaded file relative to the downloads
//!   directory (`kernel/uImage`: lava-rs downloads each image into a directory of its own;
//!   LAVA into one directory, `uImage`; the command runs where the path resolves either
//!   way), or the image's URL itself when it has `download: false`;
//! - `{HARD_RESET_COMMAND}`, `{SOFT_REBOOT_COMMAND}`, `{PRE_OS_COMMAND}`,
//!   `{PRE_POWER_COMMAND}`, `{POWER_ON_COMMAND}`, `{POWER_OFF_COMMAND}`: the device's
//!   `commands:` entry as Python's `str()` gives it (a string as is, a list as its repr);
//! - `{DEVICE_INFO}`, `{STATIC_INFO}`: the device's `device_info` / `static_info` lists as
//!   YAML (block style, keys sorted, as PyYAML's `dump` writes them).
//!
//! A value that is empty leaves its placeholder in the command (LAVA's `substitute`:
//! `runtime::substitute_line`). Each command is split as a shell would (`shlex`) and run
//! without a shell; one that fails ends the deployment with LAVA's JobError "Unable to flash
//! the device".

use super::substitute_line;
use lava_pipeline::command::run_command;
use lava_pipeline::value::{python_repr, scalar_string, truthy};
use lava_pipeline::{ErrorKind, LavaError, LavaResult, RunContext};
use lava_python::shlex_split;
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// LAVA's message when a flasher command fails.
pub const FLASH_FAILED: &str = "Unable to flash the device";

/// Run the device's flasher commands for the current deploy action.
pub async fn flash(ctx: &mut RunContext) -> LavaResult<()> {
    let commands = device_commands(ctx)?;
    let downloads = crate::runtime::test_overlay::job_tmp_dir(ctx).join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| {
        LavaError::infrastructure(format!("Unable to create {}: {e}", downloads.display()))
    })?;
    let table = substitutions(ctx, &downloads);
    for command in &commands {
        let line = substitute_line(command, &table);
        let argv = shlex_split(&line)?;
        if argv.is_empty() {
            continue;
        }
        let deadline = ctx.deadline();
        let output = run_command(
            &ctx.logger,
            &argv,
            Some(&downloads),
            deadline,
            ErrorKind::Job,
            true,
        )
        .await?;
        if output.status != 0 {
            ctx.logger
                .error(format!("Unable to run {}", python_repr(&strings(&argv))));
            return Err(LavaError::job(FLASH_FAILED));
        }
    }
    Ok(())
}

/// The device's `actions.deploy.methods.flasher.commands` (validation made sure it is a
/// list).
fn device_commands(ctx: &RunContext) -> LavaResult<Vec<String>> {
    match ctx
        .job
        .device
        .deploy_method("flasher")
        .and_then(|m| m.get("commands"))
    {
        Some(Value::Sequence(items)) => Ok(items.iter().filter_map(scalar_string).collect()),
        _ => Err(LavaError::configuration(
            "device: actions.deploy.methods.flasher.commands: expected a list of commands",
        )),
    }
}

/// The placeholder table, in LAVA's order (images first).
fn substitutions(ctx: &RunContext, downloads: &Path) -> Vec<(String, String)> {
    let mut table = Vec::new();
    let params = &ctx.meta().parameters;
    if let Some(images) = params.get("images").and_then(Value::as_mapping) {
        for (key, entry) in images {
            let Some(key) = scalar_string(key) else {
                continue;
            };
            let value = if entry.get("download").is_some_and(|d| !truthy(Some(d))) {
                entry.get("url").and_then(scalar_string).unwrap_or_default()
            } else {
                ctx.get_data("download-action", &key, "file")
                    .and_then(scalar_string)
                    .map(|file| relative_to(Path::new(&file), downloads))
                    .unwrap_or_default()
            };
            table.push((format!("{{{}}}", key.to_uppercase()), value));
        }
    }
    let device = &ctx.job.device;
    for (placeholder, command) in [
        ("{HARD_RESET_COMMAND}", "hard_reset"),
        ("{SOFT_REBOOT_COMMAND}", "soft_reboot"),
        ("{PRE_OS_COMMAND}", "pre_os_command"),
        ("{PRE_POWER_COMMAND}", "pre_power_command"),
        ("{POWER_ON_COMMAND}", "power_on"),
        ("{POWER_OFF_COMMAND}", "power_off"),
    ] {
        let value = device.lookup(&["commands", command]);
        table.push((placeholder.to_string(), python_str(value)));
    }
    for (placeholder, key) in [
        ("{DEVICE_INFO}", "device_info"),
        ("{STATIC_INFO}", "static_info"),
    ] {
        let value = device
            .get(key)
            .cloned()
            .unwrap_or(Value::Sequence(Vec::new()));
        table.push((placeholder.to_string(), pyyaml_dump(&value)));
    }
    table
}

/// `file` relative to `dir` (the whole path when it is not under `dir`).
fn relative_to(file: &Path, dir: &Path) -> String {
    file.strip_prefix(dir)
        .map(PathBuf::from)
        .unwrap_or_else(|_| file.to_path_buf())
        .display()
        .to_string()
}

/// Python's `str()` of a device setting: absent or null is empty (LAVA's defaults), a
/// string is itself, anything else its repr.
fn python_str(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => python_repr(other),
    }
}

/// PyYAML's `dump` of a device list: block style, mapping keys sorted.
fn pyyaml_dump(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Mapping(map) => {
                let mut entries: Vec<(&Value, &Value)> = map.iter().collect();
                entries.sort_by_key(|(k, _)| scalar_string(k).unwrap_or_default());
                Value::Mapping(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect::<Mapping>(),
                )
            }
            Value::Sequence(items) => Value::Sequence(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    match value {
        Value::Sequence(items) if items.is_empty() => "[]\n".to_string(),
        other => serde_yaml::to_string(&sorted(other)).unwrap_or_default(),
    }
}

fn strings(argv: &[String]) -> Value {
    Value::Sequence(argv.iter().cloned().map(Value::String).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_with_values_are_replaced_and_empty_ones_left() {
        let table = vec![
            ("{KERNEL}".to_string(), "kernel/uImage".to_string()),
            ("{PRE_OS_COMMAND}".to_string(), String::new()),
            (
                "{HARD_RESET_COMMAND}".to_string(),
                "pdu reset 4".to_string(),
            ),
        ];
        assert_eq!(
            substitute_line(
                "flash {KERNEL} && {HARD_RESET_COMMAND} {PRE_OS_COMMAND}",
                &table
            ),
            "flash kernel/uImage && pdu reset 4 {PRE_OS_COMMAND}"
        );
    }

    #[test]
    fn device_settings_read_as_python_str() {
        assert_eq!(python_str(None), "");
        assert_eq!(python_str(Some(&Value::Null)), "");
        assert_eq!(
            python_str(Some(&Value::String("reset 1".into()))),
            "reset 1"
        );
        let list: Value = serde_yaml::from_str("[off 1, on 1]").unwrap();
        assert_eq!(python_str(Some(&list)), "['off 1', 'on 1']");
    }

    #[test]
    fn device_lists_dump_as_pyyaml_does() {
        assert_eq!(pyyaml_dump(&Value::Sequence(Vec::new())), "[]\n");
        let info: Value =
            serde_yaml::from_str("[{usb_vendor_id: '0451', board_id: '0123'}]").unwrap();
        assert_eq!(
            pyyaml_dump(&info),
            "- board_id: '0123'\n  usb_vendor_id: '0451'\n"
        );
    }

    #[test]
    fn downloads_are_named_relative_to_the_downloads_directory() {
        assert_eq!(
            relative_to(
                Path::new("/tmp/12/downloads/kernel/uImage"),
                Path::new("/tmp/12/downloads")
            ),
            "kernel/uImage"
        );
        assert_eq!(
            relative_to(Path::new("/srv/x"), Path::new("/tmp")),
            "/srv/x"
        );
    }
}
