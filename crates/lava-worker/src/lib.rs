//! `lava-worker` is LAVA's worker daemon (the "slave") as a library: the client of
//! lava-server's worker protocol and the supervisor of the `lava-run` processes it starts,
//! wire-compatible with Debian's lava-server 2023.01.
//!
//! [`run`] pings the server (`GET /scheduler/internal/v1/workers/<name>/?version=...` with
//! the worker token), fetches each job it is given (definition, device and dispatcher
//! configuration), starts `nice lava-run` with LAVA's arguments in a process group of its
//! own, posts the job's `RUNNING` and `FINISHED` states (with `result.yaml`'s result, the
//! job's standard error and its pipeline description), cancels jobs when the server says
//! so, and keeps all of it in a state file of the worker directory so that a restarted
//! worker follows the jobs its predecessor started. lava-run uploads its own log.
//!
//! Main types: [`WorkerConfig`] (LAVA's options and defaults), [`TokenSource`],
//! [`ServerClient`] (the HTTP shapes), [`State`] (the durable state, format in
//! [`state`]), [`run`] → [`Exit`]. With the `test-server` feature, `test_server` is a
//! fake lava-server speaking the server side of the protocol, for tests.
//!
//! ```no_run
//! use lava_worker::{TokenSource, WorkerConfig};
//! # async fn example() -> Result<(), lava_worker::WorkerError> {
//! let mut config = WorkerConfig::new("worker1.lab", "https://lava.example.org/")?;
//! config.token = TokenSource::Given("0123456789abcdef0123456789abcdef".into());
//! let exit = lava_worker::run(config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! println!("stopped: {exit:?}");
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
pub mod launch;
pub mod process;
pub mod state;
pub mod supervisor;
#[cfg(feature = "test-server")]
pub mod test_server;
pub mod token;

pub use client::{Finished, JobFiles, JobTicket, PingReply, ServerClient};
pub use config::{CancelGrace, TokenSource, WorkerConfig};
pub use error::{ServerError, WorkerError};
pub use state::{JobRecord, JobStatus, State};
pub use supervisor::{Exit, run};
