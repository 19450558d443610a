//! The one error type of the crate, [`ShellError`], and the LAVA error kind each
//! variant maps onto (`From<ShellError> for LavaError` carries it).

use std::path::PathBuf;

use lava_error::{ErrorKind, LavaError};

/// Everything that can go wrong while preparing a test shell or reading its signals.
///
/// [`ShellError::kind`] tells which LAVA exception the dispatcher must raise.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// A `definitions:` entry of the job is malformed (missing or wrongly typed key,
    /// unknown `from`, bad `skip_install` value...). JobError.
    #[error("invalid test definition entry: {0}")]
    InvalidEntry(String),

    /// A definition `name` does not match `^[\w\d\_\-]+$`. JobError.
    #[error("Invalid characters found in test definition name: {0}")]
    InvalidName(String),

    /// Two definitions of one namespace share a name. JobError.
    #[error("Test definition names need to be unique: '{0}' is used more than once")]
    DuplicateName(String),

    /// The definition name `lava` is reserved for the dispatcher's own suite. TestError.
    #[error("The \"lava\" test definition name is reserved.")]
    ReservedName,

    /// A parameter or environment name that is not a shell variable name. JobError.
    #[error("invalid shell variable name '{name}' in {place}")]
    InvalidVariableName {
        /// The offending name.
        name: String,
        /// Where it was found (e.g. `the parameters of 'smoke'`).
        place: String,
    },

    /// A path from the job or from a fetched repository tries to leave its tree
    /// (`..`, absolute path, symlink pointing outside). JobError.
    #[error("unsafe path '{path}': {reason}")]
    UnsafePath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: String,
    },

    /// The test definition file cannot be read or parsed. JobError.
    #[error("Unable to open test definition '{path}': {reason}")]
    UnreadableDefinition {
        /// The definition's path in its repository.
        path: String,
        /// The reader's or YAML parser's message.
        reason: String,
    },

    /// The test definition file is readable but not usable (missing `metadata.name`,
    /// non-string steps, a bad `git-repos` block...). TestError, as in LAVA.
    #[error("invalid test definition '{path}': {reason}")]
    InvalidDefinition {
        /// The definition's path in its repository.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The `parse:` pattern does not compile or a fixup value is not a result. TestError.
    #[error("Error parsing regular expression {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// The regex compiler's message, or the bad fixup value.
        reason: String,
    },

    /// The `git` binary is missing on the worker. InfrastructureError.
    #[error("git is not installed on the dispatcher: {0}")]
    GitMissing(String),

    /// Cloning or checking out a repository failed after all retries. InfrastructureError.
    #[error("Unable to get test definition from git ({repository}): {detail}")]
    GitFailed {
        /// The repository URL.
        repository: String,
        /// git's output or the failure.
        detail: String,
    },

    /// A `from: url` archive could not be downloaded. JobError (the URL is the job's).
    #[error("Unable to download {url}: {detail}")]
    DownloadFailed {
        /// The archive URL.
        url: String,
        /// The downloader's message.
        detail: String,
    },

    /// A `from: url` archive could not be unpacked. JobError.
    #[error("Unable to unpack {url}: {detail}")]
    BadArchive {
        /// The archive URL.
        url: String,
        /// Why it could not be unpacked.
        detail: String,
    },

    /// Something the job asks for that this implementation does not provide. JobError.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A console signal the dispatcher cannot handle (wrong parameters). TestError.
    #[error("{0}")]
    InvalidSignal(String),

    /// `lava-test-raise` was called on the device. TestError.
    #[error("{0}")]
    Raised(String),

    /// Local file system trouble on the worker. InfrastructureError.
    #[error("{context} ({path}): {source}")]
    Io {
        /// What was being done (e.g. `cannot create`).
        context: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The overlay tarball could not be written. InfrastructureError.
    #[error("Unable to create lava overlay tarball: {0}")]
    Tarball(String),
}

impl ShellError {
    /// The LAVA exception class this error must be reported as.
    pub fn kind(&self) -> ErrorKind {
        use ShellError::*;
        match self {
            InvalidEntry(_)
            | InvalidName(_)
            | DuplicateName(_)
            | InvalidVariableName { .. }
            | UnsafePath { .. }
            | UnreadableDefinition { .. }
            | DownloadFailed { .. }
            | BadArchive { .. }
            | Unsupported(_) => ErrorKind::Job,
            ReservedName
            | InvalidDefinition { .. }
            | InvalidPattern { .. }
            | InvalidSignal(_)
            | Raised(_) => ErrorKind::Test,
            GitMissing(_) | GitFailed { .. } | Io { .. } | Tarball(_) => ErrorKind::Infrastructure,
        }
    }

    pub(crate) fn io(
        context: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ShellError::Io {
            context: context.into(),
            path: path.into(),
            source,
        }
    }
}

/// The error an action reports: the variant's LAVA kind, the error's text.
impl From<ShellError> for LavaError {
    fn from(error: ShellError) -> Self {
        LavaError::new(error.kind(), error.to_string())
    }
}

/// Short alias used across the crate.
pub type Result<T, E = ShellError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lava_error_keeps_kind_and_text() {
        let error = LavaError::from(ShellError::DuplicateName("smoke".into()));
        assert_eq!(error.kind, ErrorKind::Job);
        assert_eq!(
            error.message,
            "Test definition names need to be unique: 'smoke' is used more than once"
        );
        assert_eq!(
            LavaError::from(ShellError::ReservedName).kind,
            ErrorKind::Test
        );
        let git = LavaError::from(ShellError::GitMissing("not found".into()));
        assert_eq!(git.kind, ErrorKind::Infrastructure);
    }
}
