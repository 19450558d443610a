//! Test definitions: the job's `definitions:` entries ([`DefinitionSource`]) and the
//! test definition files they point at ([`TestDefinition`]).

use indexmap::IndexMap;
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml::Value;
use std::sync::LazyLock;

use crate::error::{Result, ShellError};
use lava_pipeline::definition::{git_ref_problem, is_shell_variable_name, repository_problem};

/// LAVA's `DEFAULT_TEST_NAME_CLASS`: the names the dispatcher accepts.
pub const TEST_NAME_PATTERN: &str = r"^[\w\d\_\-]+$";

static TEST_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(TEST_NAME_PATTERN).unwrap());

/// Checks a definition name against [`TEST_NAME_PATTERN`] and the reserved `lava`.
pub fn check_test_name(name: &str) -> Result<()> {
    // Rust's \w is Unicode-aware like Python 3's; keep ASCII control out explicitly.
    if !TEST_NAME.is_match(name) {
        return Err(ShellError::InvalidName(name.to_string()));
    }
    if name == "lava" {
        return Err(ShellError::ReservedName);
    }
    Ok(())
}

/// Checks that `name` can be a shell variable name (parameters, environment).
pub fn check_variable_name(name: &str, place: &str) -> Result<()> {
    if is_shell_variable_name(name) {
        Ok(())
    } else {
        Err(ShellError::InvalidVariableName {
            name: name.to_string(),
            place: place.to_string(),
        })
    }
}

/// Where a definition comes from (`from:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepositoryKind {
    /// `from: git`: cloned from a git repository.
    Git,
    /// `from: url`: downloaded as a tar archive.
    Url,
    /// `from: inline`: the definition is written in the job itself.
    Inline,
}

impl RepositoryKind {
    /// The `branch_vcs` value of `testdef_metadata`, also the repo action's prefix.
    pub fn vcs_name(self) -> &'static str {
        match self {
            RepositoryKind::Git => "git",
            RepositoryKind::Url => "url",
            RepositoryKind::Inline => "inline",
        }
    }

    /// The name of LAVA's repo action for this kind (`git-repo-action`...).
    pub fn action_name(self) -> &'static str {
        match self {
            RepositoryKind::Git => "git-repo-action",
            RepositoryKind::Url => "url-repo-action",
            RepositoryKind::Inline => "inline-repo-action",
        }
    }
}

/// The `skip_install` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipInstall {
    /// `keys`: do not add the install section's apt keys.
    Keys,
    /// `sources`: do not add its package sources.
    Sources,
    /// `deps`: do not install its packages.
    Deps,
    /// `steps`: do not run its install steps.
    Steps,
    /// `git-repos`: do not clone its git repositories.
    GitRepos,
    /// `all`: skip the whole install section.
    All,
}

/// How run.sh and the helpers reach the console (`lava-signal:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LavaSignal {
    /// `stdout`: signals are printed on the test shell's output (the default).
    #[default]
    Stdout,
    /// `kmsg`: signals are written to `/dev/kmsg`.
    Kmsg,
}

/// One entry of a test block's `definitions:` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionSource {
    /// Where the definition comes from (`from:`).
    pub from: RepositoryKind,
    /// Git URL, archive URL, or (inline) the whole test definition map.
    pub repository: Value,
    /// Path of the definition file inside the repository (inline: where it is written).
    pub path: String,
    /// The test's name (`name:`), used in the run ID `<stage>_<name>` and results.
    pub name: String,
    /// Values for the definition's parameters (`parameters:`), exported in `run.sh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<IndexMap<String, Value>>,
    /// More parameter values (`params:`), exported after `parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<IndexMap<String, Value>>,
    /// Install sections to skip (`skip_install:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_install: Vec<SkipInstall>,
    /// How signals reach the console (`lava-signal:`).
    #[serde(default, rename = "lava-signal")]
    pub lava_signal: LavaSignal,
    /// Test cases the job expects (`expected:`); overrides the definition's own list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "string_like",
        skip_serializing_if = "Option::is_none"
    )]
    /// Git branch to check out (`branch:`).
    pub branch: Option<String>,
    #[serde(
        default,
        deserialize_with = "string_like",
        skip_serializing_if = "Option::is_none"
    )]
    /// Git revision to check out (`revision:`).
    pub revision: Option<String>,
    /// Whether to keep the `.git` directory (`history:`, true by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<bool>,
    /// Whether to make a shallow clone (`shallow:`, true by default; ignored with a `revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shallow: Option<bool>,
    /// Whether to clone submodules too (`recursive:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    /// Compression of a `from: url` archive (`compression:`, `gz` or none; detected when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(
        default,
        rename = "strip-components",
        skip_serializing_if = "Option::is_none"
    )]
    /// Leading path components to strip when unpacking a `from: url` archive (`strip-components:`).
    pub strip_components: Option<u32>,
    /// HTTP headers for downloading a `from: url` archive (`headers:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<IndexMap<String, String>>,
    /// Set by LAVA's server on some jobs; ignored.
    #[serde(default, skip_serializing)]
    pub timeout: Option<Value>,
}

fn string_like<'de, D: Deserializer<'de>>(de: D) -> std::result::Result<Option<String>, D::Error> {
    let value = Option::<Value>::deserialize(de)?;
    Ok(match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(_) => return Err(serde::de::Error::custom("expected a string")),
    })
}

impl DefinitionSource {
    /// Reads one `definitions:` entry and validates it (see [`DefinitionSource::validate`]).
    pub fn from_value(value: &Value) -> Result<Self> {
        if let Some(from) = value.get("from").and_then(Value::as_str)
            && from == "tar"
        {
            return Err(ShellError::InvalidEntry(
                "'from: tar' is not a valid value; use 'from: url' for archives".into(),
            ));
        }
        let source: DefinitionSource = serde_yaml::from_value(value.clone())
            .map_err(|e| ShellError::InvalidEntry(e.to_string()))?;
        source.validate()?;
        Ok(source)
    }

    /// Checks what LAVA's validate checks, plus the path and parameter-name rules of
    /// this implementation.
    pub fn validate(&self) -> Result<()> {
        check_test_name(&self.name)?;
        crate::paths::checked_relative(&self.path)?;
        match self.from {
            RepositoryKind::Inline => {
                if !self.repository.is_mapping() {
                    return Err(ShellError::InvalidEntry(format!(
                        "{}: Invalid inline definition in job definition",
                        self.name
                    )));
                }
            }
            RepositoryKind::Git | RepositoryKind::Url => {
                let url = self.repository_url().ok_or_else(|| {
                    ShellError::InvalidEntry(format!("{}: repository must be a string", self.name))
                })?;
                if let Some(problem) = repository_problem(url) {
                    return Err(ShellError::InvalidEntry(format!(
                        "{}: invalid repository '{url}': {problem}",
                        self.name
                    )));
                }
            }
        }
        for value in [&self.branch, &self.revision].into_iter().flatten() {
            if let Some(problem) = git_ref_problem(value) {
                return Err(ShellError::InvalidEntry(format!(
                    "{}: invalid branch or revision '{value}': {problem}",
                    self.name
                )));
            }
        }
        for map in [&self.parameters, &self.params].into_iter().flatten() {
            for key in map.keys() {
                check_variable_name(key, &format!("the parameters of '{}'", self.name))?;
            }
        }
        Ok(())
    }

    /// The repository as a URL string (git and url kinds).
    pub fn repository_url(&self) -> Option<&str> {
        self.repository.as_str()
    }

    /// Job parameters in LAVA's order: `parameters`, then `params`.
    pub fn job_parameters(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.parameters
            .iter()
            .chain(self.params.iter())
            .flat_map(|m| m.iter())
    }

    /// Whether an install section is skipped.
    pub fn skips(&self, section: SkipInstall) -> bool {
        self.skip_install.contains(&SkipInstall::All) || self.skip_install.contains(&section)
    }

    /// `expected` of the job entry, which wins over the definition's own.
    pub fn expected_cases<'a>(&'a self, testdef: &'a TestDefinition) -> &'a [String] {
        match &self.expected {
            Some(list) if !list.is_empty() => list,
            _ => testdef.expected.as_deref().unwrap_or(&[]),
        }
    }
}

/// A `git-repos` item of the install section.
#[derive(Debug, Clone, PartialEq)]
pub enum InstallRepo {
    /// A plain URL, cloned to `./<basename without .git>`.
    Url(String),
    /// `{url, branch, destination}`; each may name a parameter.
    Detailed {
        /// The repository URL (`url:`).
        url: String,
        /// The branch to check out (`branch:`).
        branch: Option<String>,
        /// The directory to clone into (`destination:`).
        destination: Option<String>,
    },
}

/// The `install:` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Install {
    /// Package signing keys, added with `lava-add-keys` (`keys:`).
    pub keys: Vec<String>,
    /// Package sources, added with `lava-add-sources` (`sources:`).
    pub sources: Vec<String>,
    /// Packages to install (`deps:`).
    pub deps: Vec<String>,
    /// `deps-<distro>` lists, by distro.
    pub distro_deps: IndexMap<String, Vec<String>>,
    /// Git repositories to clone (`git-repos:`).
    pub git_repos: Vec<InstallRepo>,
    /// Shell commands to run (`steps:`).
    pub steps: Vec<String>,
}

/// The `parse:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParseSection {
    /// The regular expression, with named groups such as `test_case_id` and `result` (`pattern:`).
    pub pattern: String,
    /// Maps result words to LAVA's results (`fixupdict:`, e.g. `PASS: pass`).
    #[serde(default)]
    pub fixupdict: Option<IndexMap<String, String>>,
}

/// A parsed test definition file ("Lava-Test Test Definition 1.0").
#[derive(Debug, Clone, PartialEq)]
pub struct TestDefinition {
    /// The document as read, re-dumped to `testdef.yaml`.
    pub document: Value,
    /// The definition's name (`metadata.name`).
    pub name: String,
    /// The definition format (`metadata.format`, e.g. `Lava-Test Test Definition 1.0`).
    pub format: Option<String>,
    /// Operating systems it runs on (`metadata.os`), as written.
    pub os: Value,
    /// Device types it runs on (`metadata.devices`), as written.
    pub devices: Value,
    /// Environments it applies to (`metadata.environment`), as written.
    pub environment: Value,
    /// Default parameters (`params`, then `parameters`).
    pub default_params: Vec<(String, Value)>,
    /// The `install:` section.
    pub install: Option<Install>,
    /// The `run.steps` shell commands.
    pub run_steps: Vec<String>,
    /// The `parse:` section.
    pub parse: Option<ParseSection>,
    /// Test cases it expects (`expected:`).
    pub expected: Option<Vec<String>>,
}

fn invalid(path: &str, reason: impl Into<String>) -> ShellError {
    ShellError::InvalidDefinition {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Renders a scalar the way Python's `str()` does for YAML scalars.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Tagged(t) => scalar_text(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

fn string_list(value: Option<&Value>, path: &str, what: &str) -> Result<Vec<String>> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter(|item| !item.is_null())
            .map(|item| {
                scalar_text(item)
                    .ok_or_else(|| invalid(path, format!("{what}: items must be strings")))
            })
            .collect(),
        Some(_) => Err(invalid(path, format!("{what} must be a list"))),
    }
}

fn param_map(value: Option<&Value>, path: &str, what: &str) -> Result<Vec<(String, Value)>> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                let key =
                    scalar_text(k).ok_or_else(|| invalid(path, format!("{what}: bad key")))?;
                check_variable_name(&key, &format!("'{what}' of {path}"))?;
                Ok((key, v.clone()))
            })
            .collect(),
        Some(_) => Err(invalid(
            path,
            format!("Test definition item '{what}' should be a dictionary"),
        )),
    }
}

impl TestDefinition {
    /// Parses the YAML text of a definition file; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Self> {
        lava_yaml::check(text).map_err(|e| ShellError::UnreadableDefinition {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        let document: Value =
            serde_yaml::from_str(text).map_err(|e| ShellError::UnreadableDefinition {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        Self::from_document(document, path)
    }

    /// Interprets an already-parsed document (inline definitions).
    pub fn from_document(document: Value, path: &str) -> Result<Self> {
        if !document.is_mapping() {
            return Err(invalid(path, "the document is not a mapping"));
        }
        let metadata = document
            .get("metadata")
            .ok_or_else(|| invalid(path, "missing 'metadata'"))?;
        let name = metadata
            .get("name")
            .and_then(scalar_text)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid(path, "missing 'metadata.name'"))?;
        let format = metadata.get("format").and_then(scalar_text);
        let meta_field = |key: &str| {
            metadata
                .get(key)
                .cloned()
                .unwrap_or(Value::String(String::new()))
        };

        let mut default_params = param_map(document.get("params"), path, "params")?;
        default_params.extend(param_map(document.get("parameters"), path, "parameters")?);

        let install = match document.get("install") {
            None => None,
            Some(Value::Null) => Some(Install::default()),
            Some(section @ Value::Mapping(map)) => {
                let mut install = Install {
                    keys: string_list(section.get("keys"), path, "install.keys")?,
                    sources: string_list(section.get("sources"), path, "install.sources")?,
                    deps: string_list(section.get("deps"), path, "install.deps")?,
                    steps: string_list(section.get("steps"), path, "install.steps")?,
                    ..Install::default()
                };
                for (key, value) in map {
                    if let Some(distro) = key.as_str().and_then(|k| k.strip_prefix("deps-")) {
                        install.distro_deps.insert(
                            distro.to_string(),
                            string_list(Some(value), path, "install.deps-*")?,
                        );
                    }
                }
                if let Some(repos) = section.get("git-repos") {
                    let Value::Sequence(repos) = repos else {
                        return Err(invalid(path, "Unrecognised git-repos block."));
                    };
                    for repo in repos {
                        install.git_repos.push(match repo {
                            Value::String(url) => InstallRepo::Url(url.clone()),
                            Value::Mapping(_) => {
                                let text = |k: &str| {
                                    repo.get(k).and_then(scalar_text).filter(|s| !s.is_empty())
                                };
                                InstallRepo::Detailed {
                                    url: text("url").ok_or_else(|| {
                                        invalid(
                                            path,
                                            "Invalid git-repos dictionary in install definition.",
                                        )
                                    })?,
                                    branch: text("branch"),
                                    destination: text("destination"),
                                }
                            }
                            _ => return Err(invalid(path, "Unrecognised git-repos block.")),
                        });
                    }
                }
                Some(install)
            }
            Some(_) => return Err(invalid(path, "'install' must be a mapping")),
        };

        let run_steps = match document.get("run") {
            None | Some(Value::Null) => Vec::new(),
            Some(run) => string_list(run.get("steps"), path, "run.steps")?,
        };

        let parse = match document.get("parse") {
            None | Some(Value::Null) => None,
            Some(section) => Some(
                serde_yaml::from_value::<ParseSection>(section.clone())
                    .map_err(|e| invalid(path, format!("parse: {e}")))?,
            ),
        };

        let expected = match document.get("expected") {
            None | Some(Value::Null) => None,
            Some(v) => Some(string_list(Some(v), path, "expected")?),
        };

        Ok(TestDefinition {
            os: meta_field("os"),
            devices: meta_field("devices"),
            environment: meta_field("environment"),
            document,
            name,
            format,
            default_params,
            install,
            run_steps,
            parse,
            expected,
        })
    }

    /// The text written to `testdef.yaml`.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.document).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_definitions_from_a_repository_are_refused_before_parsing() {
        let deep = format!(
            "metadata: {{name: x, format: Lava-Test Test Definition 1.0}}\nrun:\n  steps: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let error = TestDefinition::parse(&deep, "repo/deep.yaml").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("repo/deep.yaml"), "{text}");
        assert!(
            text.contains("nests more than 64 levels deep (line 3)"),
            "{text}"
        );
    }

    fn entry(yaml: &str) -> Result<DefinitionSource> {
        DefinitionSource::from_value(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn names_follow_lava_rules() {
        assert!(check_test_name("smoke-tests_1").is_ok());
        for bad in ["a.b", "a b", "../x", "$(reboot)", "a;b", ""] {
            assert!(
                matches!(check_test_name(bad), Err(ShellError::InvalidName(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_test_name("lava"),
            Err(ShellError::ReservedName)
        ));
    }

    #[test]
    fn entries_parse_and_validate() {
        let e = entry("from: git\nrepository: https://x/y.git\npath: a/b.yaml\nname: smoke\nrevision: 1234\nhistory: false\n").unwrap();
        assert_eq!(e.revision.as_deref(), Some("1234"));
        assert_eq!(e.history, Some(false));
        assert!(entry("from: tar\nrepository: x\npath: a\nname: n\n").is_err());
        assert!(entry("from: git\nrepository: x\npath: /etc/passwd\nname: n\n").is_err());
        assert!(entry("from: git\nrepository: --upload-pack=evil\npath: a\nname: n\n").is_err());
        assert!(entry("from: git\nrepository: x\npath: a\nname: n\nbranch: --foo\n").is_err());
        assert!(entry("from: inline\nrepository: x\npath: a\nname: n\n").is_err());
        assert!(
            entry("from: git\nrepository: x\npath: a\nname: n\nparameters: {'A;reboot': 1}\n")
                .is_err()
        );
        assert!(
            entry("from: git\nrepository: x\npath: a\nname: n\nskip_install: [nope]\n").is_err()
        );
        let e = entry("from: url\nrepository: http://x/t.tgz\npath: a\nname: n\nskip_install: [deps, git-repos]\nlava-signal: kmsg\n").unwrap();
        assert!(
            e.skips(SkipInstall::Deps)
                && e.skips(SkipInstall::GitRepos)
                && !e.skips(SkipInstall::Steps)
        );
        assert_eq!(e.lava_signal, LavaSignal::Kmsg);
    }

    #[test]
    fn definition_files_parse() {
        let text = "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: net\n  os: [debian]\nparams:\n  IFACE: eth0\ninstall:\n  deps: [curl]\n  deps-debian: [ethtool]\n  git-repos:\n    - https://h/tools.git\n    - {url: https://h/x.git, branch: v2, destination: xtool}\n  steps: [make]\nrun:\n  steps:\n    - echo hi\n    - null\nparse:\n  pattern: '(?P<test_case_id>\\S+): (?P<result>PASS|FAIL)'\n  fixupdict: {PASS: pass}\nexpected: [a]\n";
        let d = TestDefinition::parse(text, "t.yaml").unwrap();
        assert_eq!(d.name, "net");
        assert_eq!(d.run_steps, vec!["echo hi"]);
        let install = d.install.unwrap();
        assert_eq!(install.distro_deps["debian"], vec!["ethtool"]);
        assert_eq!(install.git_repos.len(), 2);
        assert_eq!(d.parse.unwrap().fixupdict.unwrap()["PASS"], "pass");
        assert!(TestDefinition::parse("metadata: {}\n", "t").is_err());
        assert!(TestDefinition::parse(": : :\n- [", "t").is_err());
        assert!(TestDefinition::parse("metadata: {name: x}\nparams: {'a b': 1}\n", "t").is_err());
    }
}
