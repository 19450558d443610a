//! The MultiNode side of a test shell run: `<LAVA_MULTI_NODE>` markers answered through the
//! job's `lava-multinode` protocol, and the group values the overlay bakes into `lava-role`,
//! `lava-group` and friends.

use crate::protocols::multinode::{
    MultinodeJobProtocol, MultinodeProtocol, ProtocolParams, ShellHook,
};
use lava_pipeline::{Job, JobLogger, LavaError, LavaResult, RunContext, with_protocol};
use lava_shell::signals::MultinodeOutcome;
use lava_shell::{MultinodeRequest, MultinodeValues};
use serde_yaml::Value;

use crate::runtime::test_shell::MultinodeAnswers;

/// Answers markers through the coordinator (LAVA's MultiNode signal director).
pub struct CoordinatorAnswers {
    hook: ShellHook,
}

impl CoordinatorAnswers {
    /// Answers for the running job: its `lava-multinode` protocol must have been set up.
    pub fn for_job(ctx: &RunContext) -> LavaResult<Self> {
        let protocol = set_up_protocol(ctx)?;
        Ok(CoordinatorAnswers {
            hook: ShellHook::new(protocol),
        })
    }
}

#[async_trait::async_trait]
impl MultinodeAnswers for CoordinatorAnswers {
    async fn answer(&mut self, request: &MultinodeRequest) -> MultinodeOutcome {
        self.hook.handle_async(request).await
    }

    fn keep_running(&mut self, logger: &JobLogger) -> LavaResult<bool> {
        match self.hook.take_failure() {
            None => Ok(true),
            Some(error) if error.is_timeout() => {
                logger.warning(format!("Sync error in multinode signal: {error}"));
                Ok(false)
            }
            Some(error) => Err(error.into()),
        }
    }
}

/// The job's `lava-multinode` protocol object, once set up.
pub fn set_up_protocol(ctx: &RunContext) -> LavaResult<MultinodeProtocol> {
    with_protocol(&ctx.protocols, |p: &MultinodeJobProtocol| p.protocol())
        .flatten()
        .ok_or_else(|| {
            LavaError::bug("the lava-multinode protocol is not set up for this MultiNode job")
        })
}

/// The group values of a MultiNode job for its overlay, `None` for other jobs.
pub fn overlay_values(job: &Job) -> LavaResult<Option<MultinodeValues>> {
    let Some(Value::Mapping(protocols)) = job.parameters.get("protocols") else {
        return Ok(None);
    };
    if !ProtocolParams::accepts(protocols) {
        return Ok(None);
    }
    let params = ProtocolParams::from_job_protocols(protocols)?;
    Ok(Some(params.overlay_values()))
}
