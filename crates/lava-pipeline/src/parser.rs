//! From job YAML and a device to a [`Job`] and its root [`Pipeline`], as LAVA's `JobParser`.

use crate::action::{Action, Params};
use crate::device::Device;
use crate::error::{LavaError, LavaResult};
use crate::job::{Job, TestInfo};
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::strategy::{Section, StrategyRegistry};
use crate::timeout::parse_timeout;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Builds the actions that are not chosen by a strategy.
pub trait FixedActions: Send + Sync {
    /// The `finalize` action appended to every job.
    fn finalize(&self) -> Box<dyn Action>;
    /// The `user-command` action for a `command` block.
    fn command(&self, block: &Mapping) -> Box<dyn Action>;
}

/// Inputs besides the job text.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// The job ID (`--job-id`).
    pub job_id: String,
    /// The job file, for messages.
    pub source: Option<PathBuf>,
    /// Content of `--dispatcher` (YAML text).
    pub dispatcher_config: Option<String>,
    /// Raw text of `--env-dut`.
    pub env_dut: Option<String>,
}

/// Parses jobs with a registry of strategies.
pub struct JobParser<'r> {
    /// The deploy, boot and test strategies to choose from.
    pub registry: &'r StrategyRegistry,
    /// The actions not chosen by strategy: `finalize` and `command` blocks.
    pub fixed: &'r dyn FixedActions,
}

impl<'r> JobParser<'r> {
    /// A parser choosing from `registry`, with `fixed` actions.
    pub fn new(registry: &'r StrategyRegistry, fixed: &'r dyn FixedActions) -> Self {
        JobParser { registry, fixed }
    }

    /// Parse the job text and build the whole pipeline (no validation yet).
    pub fn parse(
        &self,
        text: &str,
        device: Device,
        options: &ParseOptions,
    ) -> LavaResult<(Job, Pipeline)> {
        lava_yaml::check(text)
            .map_err(|e| LavaError::job(format!("Unable to parse the job definition: {e}")))?;
        let data: Value = serde_yaml::from_str(text)
            .map_err(|e| LavaError::job(format!("Unable to parse the job definition: {e}")))?;
        self.parse_value(data, device, options)
    }

    /// [`JobParser::parse`] on a job definition already parsed (by
    /// [`crate::definition::parse_job_text`], within `lava_yaml`'s limits).
    pub fn parse_value(
        &self,
        data: Value,
        device: Device,
        options: &ParseOptions,
    ) -> LavaResult<(Job, Pipeline)> {
        let mut data = match data {
            Value::Mapping(m) => m,
            other => {
                return Err(LavaError::job(format!(
                    "The job definition must be a mapping, found {}",
                    crate::value::type_name(&other)
                )));
            }
        };
        let job_timeout = data
            .get("timeouts")
            .and_then(|t| t.get("job"))
            .ok_or_else(|| LavaError::job("Missing job timeout: timeouts.job is required"))?;
        let job_timeout = parse_timeout(job_timeout)?;

        data.insert(
            "env_dut".into(),
            options
                .env_dut
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
        let dispatcher = options
            .dispatcher_config
            .as_deref()
            .filter(|t| lava_yaml::check(t).is_ok())
            .and_then(|t| serde_yaml::from_str::<Value>(t).ok())
            .filter(Value::is_mapping)
            .unwrap_or_else(|| Value::Mapping(Mapping::new()));
        data.insert("dispatcher".into(), dispatcher);

        let actions = data
            .get("actions")
            .and_then(Value::as_sequence)
            .cloned()
            .ok_or_else(|| LavaError::job("Missing actions: the job needs an 'actions' list"))?;
        let protocols = data.get("protocols").and_then(Value::as_mapping).cloned();

        let mut job = Job::new(options.job_id.clone(), data, device, job_timeout);
        job.source = options.source.clone();

        // Pre-scan test blocks: what each namespace's tests ask of deploy and boot.
        for item in &actions {
            let Some(test) = item.get("test").and_then(Value::as_mapping) else {
                continue;
            };
            let strategy = self.registry.select(Section::Test, &job.device, test)?;
            let namespace = str_or(test, "namespace", "common");
            let connection_namespace = str_or(test, "connection-namespace", &namespace);
            let info = TestInfo {
                strategy: strategy.name().to_string(),
                parameters: test.clone(),
                needs_overlay: strategy.needs_overlay(test),
                needs_deployment_data: strategy.needs_deployment_data(test),
                has_shell: strategy.has_shell(test),
                needs_character_delay: strategy.needs_character_delay(test),
            };
            job.test_info
                .entry(connection_namespace.clone())
                .or_default();
            job.test_info
                .entry(namespace.clone())
                .or_default()
                .push(info.clone());
            if namespace != connection_namespace {
                job.test_info
                    .entry(connection_namespace)
                    .or_default()
                    .push(info);
            }
        }

        let mut root = PipelineBuilder::root(&job);
        let mut test_counts: BTreeMap<String, u64> = BTreeMap::new();
        for (index, item) in actions.iter().enumerate() {
            let item = item.as_mapping().ok_or_else(|| {
                LavaError::job(format!("actions[{index}] must be a mapping with one key"))
            })?;
            for (key, block) in item {
                let name = key.as_str().unwrap_or_default();
                let mut block = match block {
                    Value::Mapping(m) => m.clone(),
                    Value::Null => Mapping::new(),
                    _ if matches!(name, "deploy" | "boot" | "test" | "command") => {
                        return Err(LavaError::job(format!(
                            "actions[{index}].{name} must be a mapping"
                        )));
                    }
                    _ => Mapping::new(),
                };
                if !block.contains_key("namespace") {
                    block.insert("namespace".into(), "common".into());
                }
                let namespace = str_or(&block, "namespace", "common");
                let count = *test_counts.entry(namespace.clone()).or_insert(0);
                let section = match name {
                    "deploy" => Section::Deploy,
                    "boot" => Section::Boot,
                    "test" => Section::Test,
                    "command" => {
                        let action = self.fixed.command(&block);
                        root.add_command(action, Arc::new(block))?;
                        continue;
                    }
                    other => return Err(LavaError::job(format!("Unknown action name '{other}'"))),
                };
                if let Some(protocols) = &protocols {
                    for (k, v) in protocols {
                        block.insert(k.clone(), v.clone());
                    }
                }
                if section == Section::Test {
                    block.insert("stage".into(), Value::Number(count.into()));
                }
                let strategy = self.registry.select(section, root.device(), &block)?;
                if section == Section::Deploy {
                    let needs_data = strategy.uses_deployment_data()
                        && job.test_needs_deployment_data(&namespace);
                    if needs_data || block.contains_key("preseed") {
                        let os = block.get("os").and_then(Value::as_str).unwrap_or("");
                        block.insert("deployment_data".into(), deployment_data(os));
                    }
                }
                let action = strategy.action(&block);
                let params: Params = Arc::new(block);
                root.add_boxed(action, Some(params.clone()), Some(section.as_str()))?;
                if section == Section::Test && strategy.needs_overlay(&params) {
                    *test_counts.entry(namespace).or_insert(0) += 1;
                }
            }
        }
        root.add_boxed(self.fixed.finalize(), None, Some("finalize"))?;
        let pipeline = root.finish();
        Ok((job, pipeline))
    }
}

fn str_or(map: &Mapping, key: &str, default: &str) -> String {
    map.get(key)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_string()
}

/// LAVA's deployment data for an OS name (`{}` when unknown).
///
/// Only the OS's own entry of the embedded table is parsed (a `--validate` parsing the
/// whole table spent a fifth of its instructions on it).
pub fn deployment_data(os: &str) -> Value {
    deployment_data_entry(os)
        .and_then(|entry| serde_yaml::from_str::<Mapping>(entry).ok())
        .and_then(|mut table| table.remove(os))
        .unwrap_or_else(|| Value::Mapping(Mapping::new()))
}

/// The embedded table of [`deployment_data`]: one top-level key per OS.
const DEPLOYMENT_DATA: &str = include_str!("../data/deployment_data.yaml");

/// The lines of `os`'s entry in [`DEPLOYMENT_DATA`]: from its `os:` line to the next line
/// starting in the first column.
fn deployment_data_entry(os: &str) -> Option<&'static str> {
    let mut offset = 0;
    let mut start = None;
    for line in DEPLOYMENT_DATA.split_inclusive('\n') {
        let top_level = !line.starts_with([' ', '#', '\n']);
        match start {
            None if top_level && line.trim_end().strip_suffix(':') == Some(os) => {
                start = Some(offset);
            }
            Some(from) if top_level => return Some(&DEPLOYMENT_DATA[from..offset]),
            _ => {}
        }
        offset += line.len();
    }
    start.map(|from| &DEPLOYMENT_DATA[from..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_os_entry_parsed_alone_equals_the_whole_tables() {
        let table: Mapping = serde_yaml::from_str(DEPLOYMENT_DATA).unwrap();
        assert!(table.len() >= 13, "{table:?}");
        for (os, data) in &table {
            let os = os.as_str().unwrap();
            assert_eq!(&deployment_data(os), data, "{os}");
        }
        assert_eq!(deployment_data("debian")["distro"], "debian");
        assert_eq!(deployment_data("beos"), Value::Mapping(Mapping::new()));
        assert_eq!(deployment_data("deb"), Value::Mapping(Mapping::new()));
    }
}
