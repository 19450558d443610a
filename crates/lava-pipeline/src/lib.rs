//! The LAVA pipeline: job definitions, the [`Action`] trait, pipelines with levels,
//! `describe()`, timeouts, retries, the executor, error kinds, the namespaced job data
//! store, the job log and the [`Strategy`] registry.
//!
//! A job is parsed by [`JobParser`] with a [`StrategyRegistry`] (filled by strategy
//! crates) into a [`Job`] and its root [`Pipeline`]; [`Pipeline::describe`] gives LAVA's
//! `description.yaml`, [`Pipeline::validate`] reports every error at once and
//! [`execute::run_job`] executes it with deadlines, retries and finalize.
//!
//! ```
//! use lava_pipeline::{action_identity, Action, Device, JobParser, ParseOptions, StrategyRegistry};
//! # use lava_pipeline::{FixedActions};
//! struct Finalize;
//! #[async_trait::async_trait]
//! impl Action for Finalize {
//!     action_identity!("finalize", "FinalizeAction", "finish the process", "finalize the job");
//! }
//! struct Fixed;
//! impl FixedActions for Fixed {
//!     fn finalize(&self) -> Box<dyn Action> { Box::new(Finalize) }
//!     fn command(&self, _: &serde_yaml::Mapping) -> Box<dyn Action> { Box::new(Finalize) }
//! }
//! let registry = StrategyRegistry::new();
//! let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
//! let (_job, pipeline) = JobParser::new(&registry, &Fixed)
//!     .parse("timeouts: {job: {minutes: 5}}\nactions: []", device, &ParseOptions::default())
//!     .unwrap();
//! assert_eq!(pipeline.describe()[0].name, "finalize");
//! assert_eq!(pipeline.describe()[0].timeout, 30);
//! ```

#![warn(missing_docs)]

pub mod action;
pub mod command;
pub mod context;
pub mod declared;
pub mod definition;
pub mod description;
pub mod device;
pub mod execute;
pub mod job;
pub mod log;
pub mod params;
pub mod parser;
pub mod pipeline;
pub mod protocol;
pub mod run;
pub mod runnable;
pub mod scratch;
pub mod strategy;
pub mod timeout;
pub mod validate;
pub mod value;

pub use action::{Action, ActionMeta, ActionNode, Params, Runnable};
pub use context::JobData;
pub use declared::{Declared, TestNeeds};
pub use description::{DescribedAction, description_yaml};
pub use device::Device;
pub use job::{Job, TestInfo};
/// LAVA's error kinds and [`LavaError`], from the `lava-error` crate (`lava_pipeline::error::…`
/// paths keep working).
pub use lava_error as error;
pub use lava_error::{ErrorKind, LavaError, LavaResult};
pub use log::{JobLogger, Level, StderrStyle};
pub use params::{BlockLookups, BlockParams, ParamError};
pub use parser::{FixedActions, JobParser, ParseOptions, deployment_data};
pub use pipeline::{Pipeline, PipelineBuilder};
pub use protocol::{Protocol, Protocols, with_protocol};
pub use run::{Connection, RunContext};
pub use strategy::{Section, Strategy, StrategyRegistry};
pub use validate::ValidateContext;

// Re-exported for strategy crates implementing `Action`.
pub use async_trait::async_trait;
