//! The overlay tree, laid out as LAVA lays it out, and the generated `run.sh` and
//! `install.sh` of each definition.
//!
//! ```text
//! <location>/lava-1234/
//!   bin/lava-*                 helpers (0755)
//!   tests/ results/            empty
//!   environment  [secrets]
//!   <stage>/lava-test-runner.conf
//!   <stage>/tests/<N>_<name>/{<path>, testdef.yaml, uuid, testdef_metadata, [install.sh], run.sh}
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use indexmap::IndexMap;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::environment::{EnvironmentInputs, render_secrets};
use crate::error::{Result, ShellError};
use crate::fetch::{ArchiveDownloader, CloneOptions, GitClient, UrlDownloader, unpack_archive};
use crate::paths::{
    checked_component, checked_relative, resolve_inside, set_mode, write_generated,
};
use crate::scripts::{
    BakedValues, MULTINODE_SCRIPTS, MultinodeValues, helper_set, render_helper,
    render_multinode_helper,
};
use crate::testdef::{
    DefinitionSource, InstallRepo, LavaSignal, ParseSection, RepositoryKind, SkipInstall,
    TestDefinition, scalar_text,
};
use lava_python::single_quote;

/// Device/OS constants that shape the overlay (LAVA's deployment data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShellConstants {
    /// `lava_test_results_dir`, with `%s` standing for the job id (default `/lava-%s`).
    pub lava_test_results_dir: String,
    /// `lava_test_sh_cmd` (default `/bin/sh`): the helpers' interpreter and `$SHELL`.
    pub lava_test_sh_cmd: String,
    /// `deployment_data.distro`, selecting distro helpers and `deps-<distro>`.
    #[serde(default)]
    pub distro: Option<String>,
}

impl Default for ShellConstants {
    fn default() -> Self {
        ShellConstants {
            lava_test_results_dir: "/lava-%s".into(),
            lava_test_sh_cmd: "/bin/sh".into(),
            distro: None,
        }
    }
}

impl ShellConstants {
    /// The results directory for `job_id` (`/lava-1234`). JobError when the
    /// template has no `%s`, or is not a clean absolute path.
    pub fn results_dir(&self, job_id: &str) -> Result<String> {
        if self.lava_test_results_dir.matches("%s").count() != 1 {
            return Err(ShellError::InvalidEntry(
                "Invalid lava_test_results_dir, should include '%s'".into(),
            ));
        }
        let dir = self.lava_test_results_dir.replace("%s", job_id);
        let Some(relative) = dir.strip_prefix('/') else {
            return Err(ShellError::UnsafePath {
                path: dir,
                reason: "lava_test_results_dir must be absolute".into(),
            });
        };
        checked_relative(relative)?;
        Ok(dir.trim_end_matches('/').to_string())
    }
}

/// One definition of a test block with the pipeline level of its repo action
/// (the lead computes levels; `uuid = <job_id>_<level>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedDefinition {
    /// The job's `definitions:` entry.
    pub source: DefinitionSource,
    /// The level of its repo action in the pipeline (e.g. `1.3.2.1`), the suffix of its UUID.
    pub repo_action_level: String,
}

/// One overlay-needing test block of the namespace, in job order; its index is the stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestBlock {
    /// The block's definitions, in order.
    pub definitions: Vec<PlannedDefinition>,
    /// Whether the block's test class uses the device character delay (LAVA's
    /// `needs_character_delay`); the delay itself is [`OverlayRequest::character_delay_ms`].
    #[serde(default)]
    pub needs_character_delay: bool,
}

/// Everything needed to build the overlay of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverlayRequest {
    /// The job ID, as in `/lava-<job id>`.
    pub job_id: String,
    /// The namespace whose test blocks the overlay holds.
    pub namespace: String,
    /// Shell and path constants of the device and OS.
    pub constants: ShellConstants,
    /// The namespace's test blocks that need the overlay, in job order.
    pub test_blocks: Vec<TestBlock>,
    /// Inputs of the `environment` file (its `job_id` is overwritten with ours).
    pub environment: EnvironmentInputs,
    /// Job `secrets`; the `secrets` file is written only when present.
    #[serde(default)]
    pub secrets: Option<IndexMap<String, String>>,
    /// The computed DUT environment with `--env-dut` (appended to `secrets`).
    #[serde(default)]
    pub env_dut: Option<IndexMap<String, String>>,
    /// Target/probe addresses and storage baked into helpers.
    #[serde(default)]
    pub baked: BakedValues,
    /// Present for MultiNode jobs with a role.
    #[serde(default)]
    pub multinode: Option<MultinodeValues>,
    /// Device `character_delays.test`, milliseconds.
    #[serde(default)]
    pub character_delay_ms: u64,
}

/// `testdef_metadata` of a definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestdefMetadata {
    /// The definition's `metadata.os`.
    pub os: Value,
    /// The definition's `metadata.devices`.
    pub devices: Value,
    /// The definition's `metadata.environment`.
    pub environment: Value,
    /// The kind of source: `git`, `url` or `inline`.
    pub branch_vcs: String,
    /// The definition's `metadata.name`.
    pub project_name: String,
    /// The git commit checked out; absent for other sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_id: Option<String>,
}

/// A definition as placed in the overlay, with what the test shell needs later
/// (LAVA keeps these under `test/<uuid>/…` in the namespace data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployedDefinition {
    /// Position among all definitions of the namespace (`N`).
    pub index: usize,
    /// The test block (stage) that runs the definition.
    pub stage: usize,
    /// The job's `name:` for the definition.
    pub name: String,
    /// `<N>_<name>`: suite name, directory name and `TESTRUN_ID`.
    pub test_name: String,
    /// `<job id>_<repo action level>`, written to the definition's `uuid` file.
    pub uuid: String,
    /// Directory on the device (`/lava-1234/0/tests/0_smoke`).
    pub runner_path: String,
    /// The same directory on the worker.
    pub overlay_path: PathBuf,
    /// Where the definition came from (`from:`).
    pub from: RepositoryKind,
    /// The job's `repository:` (URL, or the inline definition).
    pub repository: Value,
    /// The job's `path:` of the definition file.
    pub path: String,
    /// The job's `revision:`, if any.
    pub revision: Option<String>,
    /// The git commit checked out; absent for other sources.
    pub commit_id: Option<String>,
    /// What is written to `testdef_metadata`.
    pub metadata: TestdefMetadata,
    /// Job `expected`, else the definition's.
    pub expected: Vec<String>,
    /// The definition's `parse:` section, if any.
    pub pattern: Option<ParseSection>,
    /// How its signals reach the console (`lava-signal:`).
    pub lava_signal: LavaSignal,
}

/// A built overlay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overlay {
    /// The temporary directory holding the tree (LAVA's `location`).
    pub location: PathBuf,
    /// `/lava-1234` (device path).
    pub results_dir: String,
    /// `<location>/lava-1234` (worker path).
    pub tree: PathBuf,
    /// The shell that runs the tests on the device (`lava_test_sh_cmd`, e.g. `/bin/sh`).
    pub lava_test_sh_cmd: String,
    /// Number of stages (test blocks) in the overlay.
    pub stages: usize,
    /// Every definition placed, in order.
    pub definitions: Vec<DeployedDefinition>,
}

impl Overlay {
    /// `export SHELL=<lava_test_sh_cmd>`, typed before the environment is sourced.
    pub fn shell_export_command(&self) -> String {
        format!("export SHELL={}", self.lava_test_sh_cmd)
    }

    /// `. <results_dir>/environment` (the caller appends the return-code check).
    pub fn environment_command(&self) -> String {
        format!(". {}/environment", self.results_dir)
    }

    /// The command starting one stage: `<dir>/bin/lava-test-runner <dir>/<stage>`.
    pub fn runner_command(&self, stage: usize) -> String {
        format!("{0}/bin/lava-test-runner {0}/{1}", self.results_dir, stage)
    }

    /// The definitions run by `stage`.
    pub fn stage_definitions(&self, stage: usize) -> impl Iterator<Item = &DeployedDefinition> {
        self.definitions.iter().filter(move |d| d.stage == stage)
    }
}

/// Builds overlays. Blocking (git, file system): call it from a blocking thread, or
/// use [`OverlayBuilder::build_async`].
#[derive(Clone)]
pub struct OverlayBuilder {
    /// Clones `from: git` definitions.
    pub git: GitClient,
    /// Downloads `from: url` archives.
    pub downloader: Arc<dyn ArchiveDownloader>,
}

impl Default for OverlayBuilder {
    fn default() -> Self {
        OverlayBuilder {
            git: GitClient::default(),
            downloader: Arc::new(UrlDownloader::default()),
        }
    }
}

impl std::fmt::Debug for OverlayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayBuilder")
            .field("git", &self.git)
            .finish_non_exhaustive()
    }
}

const SCRIPT_MODE: u32 = 0o755;

fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| ShellError::io("cannot create directory", path, e))
}

impl OverlayBuilder {
    /// Runs [`OverlayBuilder::build`] on tokio's blocking pool.
    pub async fn build_async(&self, request: OverlayRequest, location: PathBuf) -> Result<Overlay> {
        let builder = self.clone();
        tokio::task::spawn_blocking(move || builder.build(&request, &location))
            .await
            .map_err(|e| ShellError::Tarball(format!("overlay task failed: {e}")))?
    }

    /// Checks a request without touching the disk: names valid and unique in the
    /// namespace, entries valid, results dir usable.
    pub fn validate(request: &OverlayRequest) -> Result<()> {
        request.constants.results_dir(&request.job_id)?;
        let mut seen = std::collections::HashSet::new();
        for planned in request.test_blocks.iter().flat_map(|b| &b.definitions) {
            planned.source.validate()?;
            if !seen.insert(planned.source.name.as_str()) {
                return Err(ShellError::DuplicateName(planned.source.name.clone()));
            }
        }
        Ok(())
    }

    /// Builds the whole tree of `request` under `location` (an existing, empty
    /// temporary directory).
    pub fn build(&self, request: &OverlayRequest, location: &Path) -> Result<Overlay> {
        Self::validate(request)?;
        let results_dir = request.constants.results_dir(&request.job_id)?;
        let shell = request.constants.lava_test_sh_cmd.as_str();
        let tree = location.join(results_dir.trim_start_matches('/'));
        for sub in ["bin", "tests", "results"] {
            mkdir(&tree.join(sub))?;
        }

        for script in helper_set(request.constants.distro.as_deref()) {
            let path = write_generated(
                &tree.join("bin"),
                script.name,
                render_helper(&script, shell, &request.baked).as_bytes(),
            )?;
            set_mode(&path, SCRIPT_MODE)?;
        }
        if let Some(multinode) = &request.multinode {
            for script in MULTINODE_SCRIPTS {
                let text = render_multinode_helper(
                    script,
                    shell,
                    &results_dir,
                    &request.job_id,
                    multinode,
                );
                let path = write_generated(&tree.join("bin"), script.name, text.as_bytes())?;
                set_mode(&path, SCRIPT_MODE)?;
            }
        }

        let mut environment = request.environment.clone();
        environment.job_id = request.job_id.clone();
        write_generated(&tree, "environment", environment.render()?.as_bytes())?;
        if request.secrets.is_some() || request.env_dut.is_some() {
            let empty = IndexMap::new();
            let text = render_secrets(
                request.secrets.as_ref().unwrap_or(&empty),
                request.env_dut.as_ref(),
            )?;
            write_generated(&tree, "secrets", text.as_bytes())?;
        }

        let mut definitions = Vec::new();
        for (stage, block) in request.test_blocks.iter().enumerate() {
            let stage_dir = tree.join(stage.to_string());
            mkdir(&stage_dir.join("tests"))?;
            let mut runner_conf = String::new();
            for planned in &block.definitions {
                let index = definitions.len();
                let deployed = self.deploy_definition(
                    request,
                    &results_dir,
                    &tree,
                    stage,
                    index,
                    block,
                    planned,
                )?;
                runner_conf.push_str(&deployed.runner_path);
                runner_conf.push('\n');
                definitions.push(deployed);
            }
            write_generated(&stage_dir, "lava-test-runner.conf", runner_conf.as_bytes())?;
        }

        Ok(Overlay {
            location: location.to_path_buf(),
            results_dir,
            tree,
            lava_test_sh_cmd: shell.to_string(),
            stages: request.test_blocks.len(),
            definitions,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn deploy_definition(
        &self,
        request: &OverlayRequest,
        results_dir: &str,
        tree: &Path,
        stage: usize,
        index: usize,
        block: &TestBlock,
        planned: &PlannedDefinition,
    ) -> Result<DeployedDefinition> {
        let source = &planned.source;
        let test_name = format!("{index}_{}", source.name);
        let uuid = format!("{}_{}", request.job_id, planned.repo_action_level);
        let runner_path = format!("{results_dir}/{stage}/tests/{test_name}");
        let overlay_path = tree.join(stage.to_string()).join("tests").join(&test_name);

        let mut commit_id = None;
        match source.from {
            RepositoryKind::Inline => {
                mkdir(&overlay_path)?;
                let file = resolve_inside(&overlay_path, &source.path)?;
                if let Some(parent) = file.parent() {
                    mkdir(parent)?;
                }
                let text = serde_yaml::to_string(&source.repository)
                    .map_err(|e| ShellError::InvalidEntry(format!("{}: {e}", source.name)))?;
                fs::write(&file, text).map_err(|e| ShellError::io("cannot write", &file, e))?;
            }
            RepositoryKind::Git => {
                let url = source.repository_url().unwrap_or_default();
                let options = CloneOptions {
                    branch: source.branch.clone(),
                    revision: source.revision.clone(),
                    shallow: source.revision.is_none() && source.shallow.unwrap_or(true),
                    history: source.history.unwrap_or(true),
                    recursive: source.recursive.unwrap_or(false),
                };
                tracing::info!("Fetching tests from {url}");
                commit_id = Some(self.git.clone_repository(url, &overlay_path, &options)?);
            }
            RepositoryKind::Url => {
                let url = source.repository_url().unwrap_or_default();
                let download_dir = tempfile::Builder::new()
                    .prefix("url-repo-")
                    .tempdir()
                    .map_err(|e| {
                        ShellError::io("cannot create download directory", std::env::temp_dir(), e)
                    })?;
                let headers = source.headers.clone().unwrap_or_default();
                let archive = self
                    .downloader
                    .download(url, &headers, download_dir.path())?;
                unpack_archive(
                    &archive,
                    source.compression.as_deref(),
                    source.strip_components.unwrap_or(0),
                    &overlay_path,
                    url,
                )?;
            }
        }

        let testdef_file = resolve_inside(&overlay_path, &source.path)?;
        let text =
            fs::read_to_string(&testdef_file).map_err(|e| ShellError::UnreadableDefinition {
                path: source.path.clone(),
                reason: e.to_string(),
            })?;
        let testdef = TestDefinition::parse(&text, &source.path)?;
        if let Some(parse) = &testdef.parse {
            crate::results::ParsePattern::new(&parse.pattern, parse.fixupdict.clone())?;
        }

        let metadata = TestdefMetadata {
            os: testdef.os.clone(),
            devices: testdef.devices.clone(),
            environment: testdef.environment.clone(),
            branch_vcs: source.from.vcs_name().to_string(),
            project_name: testdef.name.clone(),
            commit_id: commit_id.clone(),
        };
        write_generated(&overlay_path, "testdef.yaml", testdef.to_yaml().as_bytes())?;
        write_generated(&overlay_path, "uuid", uuid.as_bytes())?;
        let metadata_yaml =
            serde_yaml::to_string(&metadata).map_err(|e| ShellError::Tarball(e.to_string()))?;
        write_generated(&overlay_path, "testdef_metadata", metadata_yaml.as_bytes())?;

        if testdef.install.is_some() {
            let install = install_script(
                source,
                &testdef,
                &runner_path,
                request.constants.distro.as_deref(),
            )?;
            write_generated(&overlay_path, "install.sh", install.as_bytes())?;
            if !source.skips(SkipInstall::GitRepos) {
                self.clone_install_repos(source, &testdef, &overlay_path)?;
            }
        }
        let delay = if block.needs_character_delay {
            request.character_delay_ms
        } else {
            0
        };
        let run = run_script(source, &testdef, &test_name, &runner_path, delay)?;
        write_generated(&overlay_path, "run.sh", run.as_bytes())?;

        Ok(DeployedDefinition {
            index,
            stage,
            name: source.name.clone(),
            test_name,
            uuid,
            runner_path,
            overlay_path,
            from: source.from,
            repository: source.repository.clone(),
            path: source.path.clone(),
            revision: source.revision.clone(),
            commit_id,
            metadata,
            expected: source.expected_cases(&testdef).to_vec(),
            pattern: testdef.parse.clone(),
            lava_signal: source.lava_signal,
        })
    }

    fn clone_install_repos(
        &self,
        source: &DefinitionSource,
        testdef: &TestDefinition,
        overlay_path: &Path,
    ) -> Result<()> {
        let Some(install) = &testdef.install else {
            return Ok(());
        };
        for repo in &install.git_repos {
            let (url, branch, destination) = match repo {
                InstallRepo::Url(url) => (url.clone(), None, basename_without_git(url)),
                InstallRepo::Detailed {
                    url,
                    branch,
                    destination,
                } => {
                    let url = lookup_param(source, testdef, url);
                    let destination = match destination {
                        Some(d) => lookup_param(source, testdef, d),
                        None => basename_without_git(&url),
                    };
                    (
                        url,
                        branch.as_ref().map(|b| lookup_param(source, testdef, b)),
                        destination,
                    )
                }
            };
            let destination = checked_component(&destination).map_err(|_| {
                ShellError::InvalidEntry(format!("Destination path is unacceptable {destination}"))
            })?;
            let dest = overlay_path.join(destination);
            if fs::symlink_metadata(&dest).is_ok() {
                return Err(ShellError::InvalidDefinition {
                    path: source.path.clone(),
                    reason: "Cannot mix string and url forms for the same repository.".into(),
                });
            }
            let options = CloneOptions {
                branch,
                revision: None,
                shallow: false,
                history: true,
                recursive: false,
            };
            self.git.clone_repository(&url, &dest, &options)?;
        }
        Ok(())
    }
}

fn basename_without_git(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// `git-repos` fields may name a parameter: definition `params` first, then the
/// job's `parameters` override.
fn lookup_param(source: &DefinitionSource, testdef: &TestDefinition, value: &str) -> String {
    let mut result = value.to_string();
    if let Some((_, v)) = testdef.default_params.iter().find(|(k, _)| k == value) {
        result = scalar_text(v).unwrap_or(result);
    }
    if let Some(v) = source.parameters.as_ref().and_then(|p| p.get(value)) {
        result = scalar_text(v).unwrap_or(result);
    }
    result
}

fn param_line(name: &str, value: &Value) -> String {
    let text =
        scalar_text(value).unwrap_or_else(|| serde_json::to_string(value).unwrap_or_default());
    format!("{name}={}\n", single_quote(&text))
}

/// The parameter header shared by install.sh and run.sh.
pub fn parameter_header(source: &DefinitionSource, testdef: &TestDefinition) -> String {
    let mut out = String::from("###default parameters from test definition###\n");
    for (name, value) in &testdef.default_params {
        out.push_str(&param_line(name, value));
    }
    out.push_str("######\n###test parameters from job submission###\n");
    for (name, value) in source.job_parameters() {
        out.push_str(&param_line(name, value));
    }
    out.push_str("######\n");
    out
}

/// The text of `install.sh`.
pub fn install_script(
    source: &DefinitionSource,
    testdef: &TestDefinition,
    runner_path: &str,
    distro: Option<&str>,
) -> Result<String> {
    let mut out = parameter_header(source, testdef);
    let Some(install) = &testdef.install else {
        return Ok(out);
    };
    if !source.skips(SkipInstall::Keys) {
        for key in &install.keys {
            out.push_str(&format!("lava-add-keys {key}\n"));
        }
    }
    if !source.skips(SkipInstall::Sources) {
        for src in &install.sources {
            out.push_str(&format!("lava-add-sources {src}\n"));
        }
    }
    if !source.skips(SkipInstall::Deps) {
        let mut deps = install.deps.clone();
        if let Some(extra) = distro.and_then(|d| install.distro_deps.get(d)) {
            deps.extend(extra.iter().cloned());
        }
        if !deps.is_empty() {
            out.push_str("lava-install-packages ");
            for dep in &deps {
                out.push_str(dep);
                out.push(' ');
            }
            out.push('\n');
        }
    }
    if !source.skips(SkipInstall::Steps) && !install.steps.is_empty() {
        out.push_str(&format!("cd {runner_path}\npwd\n"));
        for step in &install.steps {
            out.push_str(step);
            out.push('\n');
        }
    }
    Ok(out)
}

static POSITIONAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\$(\d+)\b").unwrap());

/// The text of `run.sh`. `character_delay_ms` is 0 when no delay applies.
pub fn run_script(
    source: &DefinitionSource,
    testdef: &TestDefinition,
    test_name: &str,
    runner_path: &str,
    character_delay_ms: u64,
) -> Result<String> {
    let mut out = parameter_header(source, testdef);
    out.push_str("set -e\nset -x\n");
    out.push_str(&format!("export TESTRUN_ID={test_name}\n"));
    out.push_str(&format!("cd {runner_path}\n"));
    out.push_str("UUID=\"$(cat uuid)\"\nset +x\n");
    let delay = (character_delay_ms > 0).then(|| format_seconds(character_delay_ms));
    if let Some(delay) = &delay {
        out.push_str(&format!("export CHARACTER_DELAY={delay}\nsleep {delay}\n"));
    }
    let kmsg = source.lava_signal == LavaSignal::Kmsg;
    if kmsg {
        out.push_str("# USE_KMSG\nexport KMSG=true\n");
        out.push_str("echo \"<0><LAVA_SIGNAL_STARTRUN $TESTRUN_ID $UUID>\" > /dev/kmsg\n");
    } else {
        out.push_str("echo \"<LAVA_SIGNAL_STARTRUN $TESTRUN_ID $UUID>\"\n");
    }
    out.push_str("set -x\n");
    for step in &testdef.run_steps {
        if step.contains("--cmd") || step.contains("--shell") {
            out.push_str(&POSITIONAL.replace_all(step, r"\$$${1}"));
        } else {
            out.push_str(step);
        }
        out.push('\n');
    }
    out.push_str("set +x\n");
    if let Some(delay) = &delay {
        out.push_str(&format!("sleep {delay}\n"));
    }
    if kmsg {
        out.push_str("unset KMSG\n");
        out.push_str("echo \"<0><LAVA_SIGNAL_ENDRUN $TESTRUN_ID $UUID>\" > /dev/kmsg\n");
    } else {
        out.push_str("echo \"<LAVA_SIGNAL_ENDRUN $TESTRUN_ID $UUID>\"\n");
    }
    Ok(out)
}

/// Milliseconds as Python prints `float(ms) / 1000` (`0.1`, `1.0`, `0.025`).
fn format_seconds(ms: u64) -> String {
    let seconds = ms as f64 / 1000.0;
    if seconds.fract() == 0.0 {
        format!("{seconds:.1}")
    } else {
        format!("{seconds}")
    }
}

/// A YAML mapping from pairs, keeping order (helper for callers and tests).
pub fn mapping<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut map = Mapping::new();
    for (k, v) in pairs {
        map.insert(Value::String(k.to_string()), v);
    }
    Value::Mapping(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_dir_template() {
        let c = ShellConstants::default();
        assert_eq!(c.results_dir("1234").unwrap(), "/lava-1234");
        let bad = ShellConstants {
            lava_test_results_dir: "/lava".into(),
            ..Default::default()
        };
        assert!(bad.results_dir("1").is_err());
        let bad = ShellConstants {
            lava_test_results_dir: "/../%s".into(),
            ..Default::default()
        };
        assert!(bad.results_dir("1").is_err());
        let android = ShellConstants {
            lava_test_results_dir: "/data/local/tmp/lava-%s".into(),
            ..Default::default()
        };
        assert_eq!(android.results_dir("7").unwrap(), "/data/local/tmp/lava-7");
    }

    #[test]
    fn seconds_print_like_python() {
        assert_eq!(format_seconds(100), "0.1");
        assert_eq!(format_seconds(1000), "1.0");
        assert_eq!(format_seconds(25), "0.025");
    }

    #[test]
    fn basenames() {
        assert_eq!(basename_without_git("https://h/a/tools.git"), "tools");
        assert_eq!(basename_without_git("https://h/a/tools/"), "tools");
    }
}
