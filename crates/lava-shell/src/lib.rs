//! `lava-shell` prepares and follows LAVA's test shell: it reads test definitions
//! (inline, git, url archives), lays out the overlay tree exactly as LAVA does
//! (`/lava-<job>/bin`, `environment`, `<stage>/lava-test-runner.conf`,
//! `<stage>/tests/<N>_<name>/run.sh`…) with our own POSIX sh helper scripts, packs it
//! into a reproducible gzip tarball, and parses the console markers the device
//! prints back into LAVA result records.
//!
//! Main types: [`OverlayRequest`] → [`OverlayBuilder::build`] → [`Overlay`] (tree,
//! [`DeployedDefinition`]s, the commands to type) → [`tarball::build_tarball`];
//! [`SignalParser`] → [`SignalEvent`] → [`ResultsBuilder`] → [`ShellOutput`].
//! Errors are [`ShellError`], each mapping onto a LAVA error class.
//!
//! ```no_run
//! use lava_shell::*;
//! # fn main() -> Result<(), ShellError> {
//! let entry: serde_yaml::Value = serde_yaml::from_str(
//!     "{from: git, repository: 'https://example.org/tests.git', path: smoke.yaml, name: smoke}",
//! ).unwrap();
//! let request = OverlayRequest {
//!     job_id: "1234".into(),
//!     namespace: "common".into(),
//!     test_blocks: vec![TestBlock {
//!         definitions: vec![PlannedDefinition {
//!             source: DefinitionSource::from_value(&entry)?,
//!             repo_action_level: "1.1.2.1".into(),
//!         }],
//!         needs_character_delay: false,
//!     }],
//!     ..Default::default()
//! };
//! let location = tempfile::tempdir().unwrap();
//! let overlay = OverlayBuilder::default().build(&request, location.path())?;
//! let tarball = tarball::build_tarball(&overlay.location, &overlay.results_dir, &location.path().join("overlay.tar.gz"))?;
//! assert_eq!(overlay.runner_command(0), "/lava-1234/bin/lava-test-runner /lava-1234/0");
//!
//! let mut parser = SignalParser::new();
//! let mut results = ResultsBuilder::new("common", 0, "3.1", &overlay.definitions);
//! for event in parser.feed(b"<LAVA_SIGNAL_STARTRUN 0_smoke 1234_1.1.2.1>\n") {
//!     for output in results.handle(&event) { /* log it */ let _ = output; }
//! }
//! # let _ = tarball; Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod environment;
pub mod error;
pub mod fetch;
pub mod overlay;
pub mod paths;
pub mod results;
pub mod scripts;
pub mod signals;
pub mod tarball;
pub mod testdef;

pub use environment::EnvironmentInputs;
pub use error::ShellError;
pub use fetch::{ArchiveDownloader, GitClient, UrlDownloader};
pub use overlay::{
    DeployedDefinition, Overlay, OverlayBuilder, OverlayRequest, PlannedDefinition, ShellConstants,
    TestBlock,
};
pub use results::{ParsePattern, ResultRecord, ResultsBuilder, ShellOutput};
pub use scripts::{BakedValues, MultinodeValues};
pub use signals::{MultinodeHook, MultinodeRequest, Signal, SignalEvent, SignalParser};
pub use testdef::{DefinitionSource, TestDefinition};
