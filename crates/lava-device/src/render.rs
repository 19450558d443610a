//! Rendering device dictionaries with device-type templates, configured as LAVA configures
//! Jinja2: sandboxed, no autoescape, `trim_blocks`, no `lstrip_blocks`, the final newline of
//! each template dropped, undefined values printing as nothing and testing false.

use crate::error::DeviceError;
use crate::value::from_yaml;
use crate::{filters, scope};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior, Value};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Where lava-server keeps device-type templates, searched after any directory given.
pub const DEFAULT_DEVICE_TYPE_DIRS: [&str; 2] = [
    "/etc/lava-server/dispatcher-config/device-types",
    "/usr/share/lava-server/device-types",
];

/// Jinja2's default recursion is bounded by Python's stack; a template that extends or
/// includes itself must end in an error, not in a stack overflow.
const RECURSION_LIMIT: usize = 100;

/// Renders device dictionaries against a template search path (first match wins).
///
/// Templates loaded from the search path are compiled once and cached, so one renderer
/// can render many dictionaries cheaply. A `Renderer` is `Send + Sync`.
pub struct Renderer {
    search_path: Arc<Vec<PathBuf>>,
    env: Environment<'static>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("search_path", &self.search_path)
            .finish_non_exhaustive()
    }
}

impl Default for Renderer {
    /// A renderer over [`DEFAULT_DEVICE_TYPE_DIRS`] only.
    fn default() -> Self {
        Renderer::with_defaults(std::iter::empty::<PathBuf>())
    }
}

impl Renderer {
    /// A renderer searching exactly `dirs`, in order.
    pub fn new<I, P>(dirs: I) -> Renderer
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        let search_path: Arc<Vec<PathBuf>> = Arc::new(dirs.into_iter().map(Into::into).collect());
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(false)
            .keep_trailing_newline(false)
            .build()
            .expect("the default delimiters are valid");
        env.set_syntax(syntax);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_recursion_limit(RECURSION_LIMIT);
        // Jinja2's globals are range, dict, lipsum, cycler, joiner and namespace; minijinja's
        // extra `debug` would shadow a template variable of that name being undefined.
        env.remove_global("debug");
        filters::install(&mut env);
        let loader_path = Arc::clone(&search_path);
        env.set_loader(move |name| match find_template(&loader_path, name) {
            Some(path) => std::fs::read_to_string(&path)
                .map(|source| Some(scope::isolate_nested_blocks(&source).into_owned()))
                .map_err(|err| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("cannot read {}: {err}", path.display()),
                    )
                }),
            None => Ok(None),
        });
        Renderer { search_path, env }
    }

    /// A renderer searching `dirs` first, then LAVA's [`DEFAULT_DEVICE_TYPE_DIRS`].
    pub fn with_defaults<I, P>(dirs: I) -> Renderer
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        let mut all: Vec<PathBuf> = dirs.into_iter().map(Into::into).collect();
        all.extend(DEFAULT_DEVICE_TYPE_DIRS.iter().map(PathBuf::from));
        Renderer::new(all)
    }

    /// The directories searched for templates, in order.
    pub fn search_path(&self) -> &[PathBuf] {
        &self.search_path
    }

    /// The file a template name resolves to, if any.
    pub fn resolve(&self, name: &str) -> Option<PathBuf> {
        find_template(&self.search_path, name)
    }

    /// Render the dictionary file at `path` with `context` (the job's `context:` or an empty
    /// mapping) and return the device configuration text exactly as Jinja2 produces it.
    pub fn render_file(
        &self,
        path: &Path,
        context: &serde_yaml::Mapping,
    ) -> Result<String, DeviceError> {
        let source = std::fs::read_to_string(path).map_err(|source| DeviceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.render_str(&path.display().to_string(), &source, context)
    }

    /// Render dictionary `source`; `name` names it in errors.
    pub fn render_str(
        &self,
        name: &str,
        source: &str,
        context: &serde_yaml::Mapping,
    ) -> Result<String, DeviceError> {
        let ctx = Value::from_pairs(context.iter().map(|(k, v)| (from_yaml(k), from_yaml(v))));
        let source = scope::isolate_nested_blocks(source);
        let template = self
            .env
            .template_from_named_str(name, &source)
            .map_err(|err| self.render_error(err))?;
        template.render(ctx).map_err(|err| self.render_error(err))
    }

    /// Turn a minijinja error into [`DeviceError::Render`], naming the template file by its
    /// path when it came from the search path.
    fn render_error(&self, err: minijinja::Error) -> DeviceError {
        // The innermost error is the one that points at the offending template and line
        // (an error inside an included or parent template is wrapped by the caller's).
        let mut inner: &minijinja::Error = &err;
        while let Some(next) =
            std::error::Error::source(inner).and_then(|e| e.downcast_ref::<minijinja::Error>())
        {
            if next.name().is_none() {
                break;
            }
            inner = next;
        }
        let file = match inner.name() {
            Some(name) => self
                .resolve(name)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| name.to_string()),
            None => "<template>".to_string(),
        };
        let mut message = match inner.detail() {
            Some(detail) => format!("{}: {detail}", inner.kind()),
            None => inner.kind().to_string(),
        };
        if inner.kind() == minijinja::ErrorKind::TemplateNotFound {
            let dirs: Vec<String> = self
                .search_path
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            message.push_str(&format!(" (searched: {})", dirs.join(", ")));
        }
        DeviceError::Render {
            file,
            line: inner.line(),
            message,
        }
    }
}

/// The first `dir/name` that is a file. Names that are absolute or climb out of the
/// directory (`..`) are not found, as with Jinja2's file system loader.
fn find_template(search_path: &[PathBuf], name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    if name.is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    search_path
        .iter()
        .map(|dir| dir.join(rel))
        .find(|candidate| candidate.is_file())
}

/// Read a render context file: a YAML mapping (an empty file is an empty mapping).
pub fn load_context(path: &Path) -> Result<serde_yaml::Mapping, DeviceError> {
    let text = std::fs::read_to_string(path).map_err(|source| DeviceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let value: serde_yaml::Value =
        crate::yaml::parse(&text).map_err(|err| DeviceError::Context {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
    match value {
        serde_yaml::Value::Null => Ok(serde_yaml::Mapping::new()),
        serde_yaml::Value::Mapping(map) => Ok(map),
        other => Err(DeviceError::Context {
            path: path.to_path_buf(),
            message: format!("found {}", crate::config::yaml_kind(&other)),
        }),
    }
}
