//! The `services` test: start docker compose services on the worker for the length of
//! the job (`lava-test-services`), each fetched from git or a URL.

use crate::common::downloader::DownloaderAction;
use lava_pipeline::{
    Action, ActionMeta, Declared, ErrorKind, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::test("service", |_| Box::new(TestServices)).check(|_, params| {
            let Some(services) = params.get("services") else {
                return Err("\"services\" not in parameters".into());
            };
            for service in services
                .as_sequence()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let missing: Vec<String> = REQUIRED
                    .iter()
                    .filter(|k| service.get(**k).is_none())
                    .map(|k| format!("'{k}'"))
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "missing required parameters [{}]",
                        missing.join(", ")
                    ));
                }
            }
            Ok(())
        }),
    );
}

/// Keys every service needs.
const REQUIRED: [&str; 4] = ["from", "name", "path", "repository"];

/// The block's services, each merged with the block parameters (block keys win, as LAVA's
/// `{**service, **parameters}`), without the `services` list itself.
pub fn service_blocks(params: &Mapping) -> Vec<Mapping> {
    let mut rest = params.clone();
    let services = rest.remove("services");
    let services = services
        .as_ref()
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    services
        .iter()
        .map(|service| {
            let mut merged = service.as_mapping().cloned().unwrap_or_default();
            for (k, v) in &rest {
                merged.insert(k.clone(), v.clone());
            }
            merged
        })
        .collect()
}

/// Whether a service name is made of letters, digits, `_` and `-` only.
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// `lava-test-services`.
#[derive(Debug, Default)]
pub struct TestServices;

#[async_trait]
impl Action for TestServices {
    action_identity!(
        "lava-test-services",
        "TestServices",
        "Executing lava-test-services",
        "Lava Test Services"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        for block in service_blocks(pipeline.parameters()) {
            pipeline.add_with_params(TestServiceRetry, block)?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let allowed = ctx
            .job
            .device
            .parameter("allow_test_services")
            .and_then(Value::as_bool)
            == Some(true);
        if !allowed {
            ctx.error(
                "Device 'allow_test_services' must be set to 'true' for running test services on LAVA worker.",
            );
            return Ok(());
        }
        let names: Vec<String> = ctx
            .meta
            .parameters
            .get("services")
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(|v| v.get("name").and_then(lava_pipeline::value::scalar_string))
                    .collect()
            })
            .unwrap_or_default();
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        if unique.len() != names.len() {
            ctx.error("Test service names need to be unique.");
        }
        for name in &names {
            if !valid_service_name(name) {
                ctx.error(format!(
                    "Invalid characters found in test service name {}. Allowed: letters, digits, underscore and hyphen.",
                    lava_python::str_repr(name)
                ));
            }
        }
        Ok(())
    }
}

/// `lava-test-service-retry`.
#[derive(Debug, Default)]
pub struct TestServiceRetry;

#[async_trait]
impl Action for TestServiceRetry {
    action_identity!(
        "lava-test-service-retry",
        "TestServiceRetry",
        "Retry wrapper for lava-test-service",
        "Retry support for Lava Test Service"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(TestServiceAction::default())
    }
}

/// `lava-test-service`: fetch the compose project and `docker compose up --detach` it.
#[derive(Debug, Default)]
pub struct TestServiceAction {
    /// The service's `name` from the block, used for its compose project.
    pub service_name: String,
    /// The directory the compose project is fetched to.
    pub download_dir: String,
    /// `docker compose` file path inside the repository.
    pub path: String,
    /// The one compose service to start, if set.
    pub service: Option<String>,
}

#[async_trait]
impl Action for TestServiceAction {
    action_identity!(
        "lava-test-service",
        "TestServiceAction",
        "Executing lava-test-service",
        "Lava Test Service"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let text = |k: &str| {
            params
                .get(k)
                .and_then(lava_pipeline::value::scalar_string)
                .unwrap_or_default()
        };
        self.service_name = text("name");
        self.path = text("path");
        self.service = params
            .get("service")
            .and_then(lava_pipeline::value::scalar_string);
        self.download_dir = crate::common::downloader::download_dir(pipeline, "service");
        if params.get("from").and_then(Value::as_str) == Some("url") {
            let mut download = (*params).clone();
            download.insert(
                "url".into(),
                params.get("repository").cloned().unwrap_or_default(),
            );
            pipeline.add(
                DownloaderAction::new(&self.service_name, &self.download_dir, download)
                    .without_uniquify(),
            )?;
        }
        Ok(())
    }
    fn validate(&self, _ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        crate::common::power::require_tool("docker")?;
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_pipeline::Device;
    use serde_yaml::Mapping;

    #[test]
    fn missing_keys_are_listed_sorted() {
        let params: Mapping = serde_yaml::from_str("services: [{name: a, from: git}]").unwrap();
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Test, "service")
                .accepts(&Device::default(), &params)
                .unwrap_err(),
            "missing required parameters ['path', 'repository']"
        );
    }

    #[test]
    fn blocks_merge_block_parameters_over_the_service() {
        let params: Mapping = serde_yaml::from_str(
            "{namespace: ns, name: outer, services: [{name: a, path: p}, {name: b, path: q}]}",
        )
        .unwrap();
        let blocks = service_blocks(&params);
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            blocks[0].get("namespace").and_then(Value::as_str),
            Some("ns")
        );
        assert_eq!(blocks[1].get("path").and_then(Value::as_str), Some("q"));
        assert_eq!(blocks[0].get("name").and_then(Value::as_str), Some("outer"));
        assert!(!blocks[0].contains_key("services"));
    }

    #[test]
    fn service_names() {
        assert!(valid_service_name("db_1-x"));
        assert!(!valid_service_name("a b"));
        assert!(!valid_service_name(""));
    }
}
