//! A deploy interface for conductor tests: it waits for its agent, and a heartbeat with
//! `agent_status == "end"` finishes it.

use async_trait::async_trait;
use ferric_service::drivers::steps::{Outcome, Plan, Plans, StepCtx, StepResult, quiet};
use ferric_service::drivers::{DeployInterface, DriverError, Task};
use ferric_types::models::Step;

pub struct WaitingDeploy;

static PLANS: std::sync::LazyLock<Plans> = std::sync::LazyLock::new(|| Plans {
    deploy: Plan::of(vec![quiet(Step::AwaitAgent), quiet(Step::WriteImage)]),
    ..Plans::default()
});

#[async_trait]
impl DeployInterface for WaitingDeploy {
    fn validate(&self, _t: &Task) -> Result<(), DriverError> {
        Ok(())
    }
    fn plans(&self) -> &Plans {
        &PLANS
    }
    async fn run_step(&self, step: Step, _t: &mut Task, ctx: StepCtx<'_>) -> Result<StepResult, DriverError> {
        assert_eq!(step, Step::WriteImage);
        let done = ctx.heartbeat.and_then(|hb| hb.agent_status.as_deref()) == Some("end");
        Ok(StepResult::outcome(if done { Outcome::Next } else { Outcome::AgainAtHeartbeat(Step::WriteImage) }))
    }
}
