//! The `lava-multinode` job protocol on the dispatcher: one node's protocol object
//! ([`protocol::MultinodeProtocol`]: registration and delayed start, calls from actions'
//! `protocols:` blocks, one `clear_group` at the end), the same object as the pipeline's
//! [`lava_pipeline::Protocol`] ([`job_protocol::MultinodeJobProtocol`]: settings read at
//! set-up, as LAVA reads `/etc/lava-coordinator/lava-coordinator.conf`), and lava-shell's
//! MultiNode hook answering the test shell's `<LAVA_MULTI_NODE>` markers
//! ([`hook::ShellHook`]). The coordinator wire, codec and client they use are
//! `lava-multinode`'s.

pub mod hook;
pub mod job_protocol;
pub mod protocol;

pub use hook::ShellHook;
pub use job_protocol::{CoordinatorSettings, DEFAULT_COORDINATOR_CONFIG, MultinodeJobProtocol};
pub use protocol::{MultinodeError, MultinodeProtocol, ProtocolParams};
