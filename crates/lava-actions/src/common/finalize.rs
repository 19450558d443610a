//! `finalize`: power the device off and read pending feedback, exactly once per job.

use super::power::{PowerOff, ReadFeedback};
use lava_pipeline::{Action, LavaResult, PipelineBuilder, action_identity, async_trait};

/// The `finalize` action appended to every job: `power-off` then `read-feedback`
/// (finalising every connection).
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
        pipeline.add(PowerOff)?;
        pipeline.add(ReadFeedback::new(true, true))
    }
}

/// The `finalize` action appended to every job.
pub fn finalize_action() -> Box<dyn Action> {
    Box::new(FinalizeAction)
}
