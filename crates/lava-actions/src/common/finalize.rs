//! `finalize`: power the device off and read pending feedback, exactly once per job.

use super::power::{PowerOff, ReadFeedback};
use lava_pipeline::{
    Action, LavaResult, Pipeline, PipelineBuilder, RunContext, action_identity, async_trait,
};

/// The `finalize` action appended to every job: `power-off` then `read-feedback`
/// (finalising every connection), then the end of every schroot session the job began,
/// then every job protocol's finalise (MultiNode's `clear_group`), whatever the children
/// did.
#[derive(Debug, Default)]
pub struct FinalizeAction;

#[async_trait]
impl Action for FinalizeAction {
    action_identity!(
        "finalize",
        "FinalizeAction",
        "finish the process and cleanup",
        "finalize the job"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(PowerOff::finalizing())?;
        pipeline.add(ReadFeedback::new(true, true))
    }
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        let outcome = children.run_actions(ctx).await;
        // The consoles are closed: end the schroot sessions jobs entered.
        let ended = crate::runtime::schroot::end_sessions(ctx).await;
        let outcome = outcome.and(ended);
        for protocol in ctx.protocols.clone() {
            protocol.finalise(&ctx.logger).await;
        }
        outcome
    }
}

/// The `finalize` action appended to every job.
pub fn finalize_action() -> Box<dyn Action> {
    Box::new(FinalizeAction)
}
