//! Job-level protocols: the objects behind a job's `protocols:` block (`lava-multinode`,
//! `lava-vland`, ...), alive for the whole job.
//!
//! Life cycle, as LAVA's dispatcher drives it:
//! 1. [`Protocol::set_up`] once the job starts, before the first action
//!    ([`crate::execute::run_job`]); a failure fails the job before any action ran.
//! 2. [`call_protocols`] before an action's own work: every entry of the action's
//!    `protocols: {<name>: [...]}` list whose `action` is the running action's name is passed
//!    to [`Protocol::call`], in order; data a call returns is stored in the namespace data under
//!    `<name>` / `<name>` / `<key>`, where later actions (`$` substitutions) read it.
//! 3. [`Protocol::finalise`] from the job's `finalize` step, exactly once, whatever happened.
//!
//! The executor knows protocols only through this trait; an action that needs the concrete
//! object (the MultiNode test shell) downcasts with [`Protocol::as_any`].

use crate::error::LavaResult;
use crate::log::JobLogger;
use crate::run::RunContext;
use serde_yaml::{Mapping, Value};
use std::any::Any;
use std::sync::Arc;

/// One protocol of the running job.
#[async_trait::async_trait]
pub trait Protocol: Send + Sync + Any {
    /// The key under the job's `protocols:` (`lava-multinode`).
    fn name(&self) -> &str;

    /// Downcast support for actions that know the concrete type.
    fn as_any(&self) -> &dyn Any;

    /// Before the first action (registration, delayed start...).
    async fn set_up(&self, logger: &JobLogger) -> LavaResult<()>;

    /// One call from an action's `protocols:` list. Returns the `(key, value)` to store in the
    /// namespace data, if the reply carries any.
    async fn call(&self, call: &Mapping, logger: &JobLogger)
    -> LavaResult<Option<(String, Value)>>;

    /// From the job's `finalize` step, once. Problems are logged, never raised: finalize must
    /// go on.
    async fn finalise(&self, logger: &JobLogger);
}

/// The protocols of a job, in the order of its `protocols:` block.
pub type Protocols = Vec<Arc<dyn Protocol>>;

/// LAVA's `Action.call_protocols`: make the running action's protocol calls (see the module
/// documentation). Actions without a `protocols` parameter cost nothing.
pub async fn call_protocols(ctx: &mut RunContext) -> LavaResult<()> {
    if ctx.protocols.is_empty() {
        return Ok(());
    }
    let Some(Value::Mapping(blocks)) = ctx.meta().param("protocols").cloned() else {
        return Ok(());
    };
    let action_name = ctx.meta().name.clone();
    for protocol in ctx.protocols.clone() {
        let calls: Vec<Mapping> = match blocks.get(protocol.name()) {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(Value::as_mapping)
                .cloned()
                .collect(),
            Some(Value::Mapping(call)) => vec![call.clone()],
            _ => continue,
        };
        for call in calls {
            if call.get("action").and_then(Value::as_str) != Some(action_name.as_str()) {
                continue;
            }
            ctx.logger.info(format!(
                "Making protocol call for {action_name} using {}",
                protocol.name()
            ));
            if let Some((key, value)) = protocol.call(&call, &ctx.logger).await? {
                ctx.logger.info(format!(
                    "Setting namespace data key {key} to {}",
                    crate::value::python_repr(&value)
                ));
                let name = protocol.name().to_string();
                ctx.set_data(&name, &name, &key, value);
            }
        }
    }
    Ok(())
}

/// Look at the job's protocol of concrete type `T`, if it has one.
pub fn with_protocol<T: Protocol, R>(
    protocols: &Protocols,
    look: impl FnOnce(&T) -> R,
) -> Option<R> {
    protocols
        .iter()
        .find_map(|p| p.as_any().downcast_ref::<T>())
        .map(look)
}
