//! Test definitions in the overlay: one repository handler per definition
//! (`git-repo-action`, `inline-repo-action`, `url-repo-action`) followed by
//! `test-overlay`, `test-install-overlay` and `test-runscript-overlay`.

use super::downloader::DownloaderAction;
use lava_pipeline::params::namespace;
use lava_pipeline::{
    Action, Job, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext, ValidateContext,
    action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};
use std::sync::{Arc, OnceLock};

/// Options of `skip_install` (`all` last).
pub const SKIP_INSTALL_OPTIONS: [&str; 6] =
    ["keys", "sources", "deps", "steps", "git-repos", "all"];

/// The test definitions of every test block of `namespace`, one list per block (stage).
pub fn test_definitions(job: &Job, namespace: &str) -> Vec<Vec<Mapping>> {
    job.tests_in(namespace)
        .iter()
        .filter_map(|t| t.parameters.get("definitions"))
        .map(|defs| {
            defs.as_sequence()
                .into_iter()
                .flatten()
                .map(|d| d.as_mapping().cloned().unwrap_or_default())
                .collect()
        })
        .collect()
}

/// Where a test definition comes from (`from:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// `from: git`: clone a git repository.
    Git,
    /// `from: inline`: the definition is in the job.
    Inline,
    /// `from: url`: download a tarball or file.
    Url,
}

impl RepoKind {
    /// LAVA's `RepoAction.select`.
    pub fn select(from: Option<&str>) -> LavaResult<RepoKind> {
        match from {
            Some("git") => Ok(RepoKind::Git),
            Some("inline") => Ok(RepoKind::Inline),
            Some("url") => Ok(RepoKind::Url),
            other => Err(LavaError::job(format!(
                "No testdef_repo handler is available for the given repository type '{}'.",
                other.unwrap_or("None")
            ))),
        }
    }
}

/// Whether a definition name matches LAVA's `^[\w\d\_\-]+$`.
pub fn valid_test_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// `test-definition`: every test definition of the namespace into the overlay.
#[derive(Debug, Default)]
pub struct TestDefinitionAction {
    /// Definitions per stage (test block), as found when populated.
    pub test_list: Vec<Vec<Mapping>>,
    /// `<index>_<name>` of every definition, in order.
    pub test_names: Vec<String>,
}

impl TestDefinitionAction {
    /// Creates the `test-definition` action.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The parameters of a definition's handlers: the definition, its `test_name`, then the
/// block parameters on top (LAVA updates the handler's parameters with the block's).
fn handler_params(testdef: &Mapping, test_name: &str, block: &Mapping) -> Mapping {
    let mut params = testdef.clone();
    params.insert("test_name".into(), test_name.into());
    for (k, v) in block {
        params.insert(k.clone(), v.clone());
    }
    params
}

#[async_trait]
impl Action for TestDefinitionAction {
    action_identity!(
        "test-definition",
        "TestDefinitionAction",
        "load test definitions into image",
        "loading test definitions"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let block = pipeline.parameters().clone();
        self.test_list = test_definitions(pipeline.job(), namespace(&block));
        let index: Arc<OnceLock<Vec<String>>> = Arc::new(OnceLock::new());
        let mut names = Vec::new();
        for (stage, testdefs) in self.test_list.iter().enumerate() {
            for testdef in testdefs {
                let from = testdef.get("from").and_then(Value::as_str);
                let kind = RepoKind::select(from)?;
                let name = testdef
                    .get("name")
                    .and_then(lava_pipeline::value::scalar_string)
                    .unwrap_or_default();
                let test_name = format!("{}_{}", names.len(), name);
                // One parameter mapping shared by the definition's four actions.
                let params = Some(Arc::new(handler_params(testdef, &test_name, &block)));
                let repo = RepoAction {
                    kind,
                    test_name: test_name.clone(),
                    stage,
                };
                pipeline.add_boxed(Box::new(repo), params.clone(), None)?;
                names.push(name.clone());
                let overlay = TestOverlayAction {
                    test_name: test_name.clone(),
                };
                pipeline.add_boxed(Box::new(overlay), params.clone(), None)?;
                let install = TestInstallAction {
                    test_name: test_name.clone(),
                };
                pipeline.add_boxed(Box::new(install), params.clone(), None)?;
                let runner = TestRunnerAction {
                    test_name: test_name.clone(),
                    name,
                    index: index.clone(),
                };
                pipeline.add_boxed(Box::new(runner), params, None)?;
                self.test_names.push(test_name);
            }
        }
        let _ = index.set(names);
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.job.parameters.contains_key("actions") {
            ctx.error("No actions defined in job parameters");
            return Ok(());
        }
        for testdef in self.test_list.iter().flatten() {
            if let Some(p) = testdef.get("parameters")
                && !p.is_mapping()
            {
                ctx.error("Invalid test definition parameters");
            }
            let shown = lava_pipeline::value::python_repr(&Value::Mapping(testdef.clone()));
            if !testdef.contains_key("from") {
                ctx.error(format!("missing 'from' field in test definition {shown}"));
            }
            match testdef.get("name") {
                None => ctx.error(format!("missing 'name' field in test definition {shown}")),
                Some(name) => {
                    let name = lava_pipeline::value::scalar_string(name).unwrap_or_default();
                    if !valid_test_name(&name) {
                        ctx.error(format!(
                            "Invalid characters found in test definition name: {name}"
                        ));
                    }
                }
            }
            if let Some(expected) = testdef.get("expected")
                && !expected.is_sequence()
            {
                ctx.error("'expected' should be a test case list");
            }
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        report_done_by_overlay_builder(ctx);
        children.run_actions(ctx).await
    }
}

/// A repository handler: fetch one test definition into the overlay.
#[derive(Debug)]
pub struct RepoAction {
    /// Where the definition comes from.
    pub kind: RepoKind,
    /// `<index>_<name>`.
    pub test_name: String,
    /// The test block (stage) the definition belongs to.
    pub stage: usize,
}

#[async_trait]
impl Action for RepoAction {
    fn name(&self) -> &str {
        match self.kind {
            RepoKind::Git => "git-repo-action",
            RepoKind::Inline => "inline-repo-action",
            RepoKind::Url => "url-repo-action",
        }
    }
    fn class_name(&self) -> &str {
        match self.kind {
            RepoKind::Git => "GitRepoAction",
            RepoKind::Inline => "InlineRepoAction",
            RepoKind::Url => "UrlRepoAction",
        }
    }
    fn description(&self) -> &str {
        match self.kind {
            RepoKind::Git => "apply git repository of tests to the test image",
            RepoKind::Inline => "apply inline test definition to the test image",
            RepoKind::Url => "apply a single test file to the test image",
        }
    }
    fn summary(&self) -> &str {
        match self.kind {
            RepoKind::Git => "clone git test repo",
            RepoKind::Inline => "extract inline test definition",
            RepoKind::Url => "download file test",
        }
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        if self.kind != RepoKind::Url {
            return Ok(());
        }
        let mut params = (**pipeline.parameters()).clone();
        let repository = params.get("repository").cloned().unwrap_or(Value::Null);
        params.insert("url".into(), repository);
        let dir = super::downloader::download_dir(pipeline, "url-repo");
        pipeline.add_with_params(
            DownloaderAction::new("url_repo", &dir, params.clone()),
            params,
        )
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = ctx.meta.params();
        match self.kind {
            RepoKind::Git => {
                if !params.contains_key("repository") {
                    ctx.error("Git repository not specified in job definition");
                }
                if !params.contains_key("path") {
                    ctx.error("Path to YAML file not specified in the job definition");
                }
                if params.contains_key("repository")
                    && params.contains_key("path")
                    && super::power::which("git").is_none()
                {
                    ctx.error("/usr/bin/git is not installed on the dispatcher.");
                }
            }
            RepoKind::Inline => match params.get("repository") {
                None => {
                    ctx.error("Inline definition not specified in job definition");
                    ctx.error("Invalid inline definition in job definition");
                }
                Some(v) if !v.is_mapping() => {
                    ctx.error("Invalid inline definition in job definition");
                }
                Some(_) => {}
            },
            RepoKind::Url => {
                if !params.contains_key("repository") {
                    ctx.error("Url repository not specified in job definition");
                }
                if !params.contains_key("path") {
                    ctx.error("Path to YAML file not specified in the job definition");
                }
            }
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        report_done_by_overlay_builder(ctx);
        Ok(())
    }
}

/// `test-overlay`: the definition's support files (parameters, metadata).
#[derive(Debug)]
pub struct TestOverlayAction {
    /// The test definition, `<index>_<name>`.
    pub test_name: String,
}

#[async_trait]
impl Action for TestOverlayAction {
    action_identity!(
        "test-overlay",
        "TestOverlayAction",
        "overlay test support files onto image",
        "applying LAVA test overlay"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.meta.parameters.contains_key("path") {
            ctx.error("Missing path in parameters");
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        report_done_by_overlay_builder(ctx);
        Ok(())
    }
}

/// `test-install-overlay`: the definition's install script.
#[derive(Debug)]
pub struct TestInstallAction {
    /// The test definition, `<index>_<name>`.
    pub test_name: String,
}

#[async_trait]
impl Action for TestInstallAction {
    action_identity!(
        "test-install-overlay",
        "TestInstallAction",
        "overlay dependency installation support files onto image",
        "applying LAVA test install scripts"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if let Some(skip) = ctx.meta.parameters.get("skip_install") {
            let values: Vec<String> = match skip {
                Value::Sequence(items) => items
                    .iter()
                    .filter_map(lava_pipeline::value::scalar_string)
                    .collect(),
                Value::String(s) => s.chars().map(String::from).collect(),
                _ => Vec::new(),
            };
            if values
                .iter()
                .any(|v| !SKIP_INSTALL_OPTIONS.contains(&v.as_str()))
            {
                ctx.error("Unrecognised skip_install value");
            }
        }
        if !ctx.meta.parameters.contains_key("path") {
            ctx.error("Missing path in parameters");
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        report_done_by_overlay_builder(ctx);
        Ok(())
    }
}

/// `test-runscript-overlay`: the definition's `run.sh`.
#[derive(Debug)]
pub struct TestRunnerAction {
    /// The test definition, `<index>_<name>`.
    pub test_name: String,
    /// The definition's `name`.
    pub name: String,
    /// Names of every definition of the overlay, filled once all are added.
    index: Arc<OnceLock<Vec<String>>>,
}

#[async_trait]
impl Action for TestRunnerAction {
    action_identity!(
        "test-runscript-overlay",
        "TestRunnerAction",
        "overlay run script onto image",
        "applying LAVA test run script"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.meta.parameters.contains_key("path") {
            ctx.error("Missing path in parameters");
        }
        let index = self.index.get().map(Vec::as_slice).unwrap_or(&[]);
        if index.is_empty() {
            ctx.error("Unable to identify test definition index");
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        if !index.iter().all(|n| seen.insert(n)) {
            ctx.error("Test definition names need to be unique.");
        }
        if !index.contains(&self.name) {
            ctx.error("Unable to identify test definition names");
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        report_done_by_overlay_builder(ctx);
        Ok(())
    }
}

/// The test-definition steps' run: the overlay builder (run by `lava-overlay` before its
/// children) already fetched and wrote every definition; each step only reports it.
fn report_done_by_overlay_builder(ctx: &RunContext) {
    ctx.logger
        .debug(format!("{}: done by the overlay builder", ctx.meta().name));
}
