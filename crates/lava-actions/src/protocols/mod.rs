//! The job protocols `lava-run` hands the executor (see `lava_pipeline::protocol`): built from
//! the job's top-level `protocols:` block.
//!
//! `lava-multinode` ([`multinode::MultinodeJobProtocol`]) and `lava-xnbd`
//! ([`xnbd::XnbdProtocol`]: the NBD port and the job's nbd-server) are run for real.
//! `lava-vland` and `lava-lxc` are described and validated by their actions but have no
//! run-time object here: a job using them fails where their actions would need them.

pub mod multinode;
pub mod xnbd;

use lava_pipeline::{Job, LavaResult, Protocols};
use multinode::{CoordinatorSettings, MultinodeJobProtocol, ProtocolParams};
use serde_yaml::Value;
use std::sync::Arc;

/// What the job protocols need from the worker.
#[derive(Debug, Clone)]
pub struct ProtocolOptions {
    /// Where the MultiNode coordinator is (LAVA: `/etc/lava-coordinator/lava-coordinator.conf`).
    pub coordinator: CoordinatorSettings,
    /// This worker's host name (sent to the coordinator).
    pub hostname: String,
}

/// The protocol objects of `job`, in a fixed order.
pub fn job_protocols(job: &Job, options: &ProtocolOptions) -> LavaResult<Protocols> {
    let mut protocols = Protocols::new();
    let Some(Value::Mapping(blocks)) = job.parameters.get("protocols") else {
        return Ok(protocols);
    };
    if ProtocolParams::accepts(blocks) {
        let params = ProtocolParams::from_job_protocols(blocks)?;
        protocols.push(Arc::new(MultinodeJobProtocol::new(
            params,
            &job.id,
            &options.hostname,
            options.coordinator.clone(),
        )));
    }
    if xnbd::XnbdProtocol::accepts(blocks) {
        protocols.push(Arc::new(xnbd::XnbdProtocol::from_job(
            blocks,
            job.parameters.get("dispatcher"),
        )?));
    }
    Ok(protocols)
}

/// This machine's host name, as LAVA's `socket.gethostname()` gives it.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
