//! Plans: what a deploy interface does, as data the conductor runs. A plan is the ordered steps of
//! a deploy, an undeploy or a cleaning, each with the user guide's message the conductor records
//! before running it; a step reports an [`Outcome`] and the conductor applies it
//! (`crate::conductor` runs plans). Steps that need the node's other interfaces (power, boot,
//! management, network) are the conductor's; a deploy interface runs only its own.

use ferric_types::models::Step;
use ferric_types::rpc::Heartbeat;
use ferric_types::trace::Says;
use std::time::Duration;

/// One entry of a plan.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub step: Step,
    /// The message recorded before the step runs.
    pub says: Option<Says>,
}

/// Ironic's name for a stretch of a deploy (`node.deploy_step` shows it while one of its steps
/// runs or waits): the step's name and priority.
pub type DeployStep = (&'static str, u32);

/// One step of a plan, with the Ironic deploy step it belongs to (none for cleaning and undeploy).
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub deploy_step: Option<DeployStep>,
    pub planned: Planned,
}

/// The steps of one operation, in order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    entries: Vec<Entry>,
}

impl Plan {
    /// A plan of steps with no Ironic deploy step.
    pub fn of(steps: Vec<Planned>) -> Plan {
        Plan { entries: steps.into_iter().map(|planned| Entry { deploy_step: None, planned }).collect() }
    }

    /// A plan in stretches, each one of Ironic's deploy steps.
    pub fn phased(phases: Vec<(DeployStep, Vec<Planned>)>) -> Plan {
        let entries = phases
            .into_iter()
            .flat_map(|(d, steps)| steps.into_iter().map(move |planned| Entry { deploy_step: Some(d), planned }))
            .collect();
        Plan { entries }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A step that says nothing.
pub const fn quiet(step: Step) -> Planned {
    Planned { step, says: None }
}

/// A deploy interface's plans, one per operation it runs.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    /// The deploy, from `deploying` to `active`.
    pub deploy: Plan,
    /// The undeploy, from `deleting` until cleaning starts.
    pub tear_down: Plan,
    /// Cleaning, from `cleaning` until the clean steps are done (empty: nothing to clean).
    pub clean: Plan,
    /// Leaving cleaning, whether it worked or not: every step runs, the first error counts.
    pub clean_tear_down: Plan,
}

/// A step with the message recorded before it.
pub const fn says(step: Step, says: Says) -> Planned {
    Planned { step, says: Some(says) }
}

/// What a step did, for the conductor to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the next step runs now.
    Next,
    /// Done: the next step runs at the agent's next heartbeat.
    NextAtHeartbeat,
    /// Not done: this step runs again at the agent's next heartbeat, as given (a step may carry
    /// its progress).
    AgainAtHeartbeat(Step),
    /// The ramdisk was asked to power the node off: the conductor waits up to this long for the
    /// power interface to read "off", then powers off through it, and goes on.
    AwaitPowerOff(Duration),
    /// The operation is complete: the rest of the plan is skipped.
    Finished,
}

/// A step's outcome, and what the other side answered, if the user guide shows it (the
/// conductor records it after the step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepResult {
    pub outcome: Outcome,
    pub reply: Option<Says>,
}

impl StepResult {
    pub fn next() -> StepResult {
        StepResult { outcome: Outcome::Next, reply: None }
    }

    pub fn outcome(outcome: Outcome) -> StepResult {
        StepResult { outcome, reply: None }
    }

    /// The same outcome, with the other side's answer.
    pub fn replied(self, reply: Says) -> StepResult {
        StepResult { reply: Some(reply), ..self }
    }
}

/// What a step is run for.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepCtx<'a> {
    /// The agent's heartbeat that resumed the plan (only for the first step run after it).
    pub heartbeat: Option<&'a Heartbeat>,
}

impl StepCtx<'_> {
    pub fn at_heartbeat(&self) -> bool {
        self.heartbeat.is_some()
    }
}

/// Whether a step may run while its node waits (`wait call-back`, `clean wait`): the steps that
/// talk to a running agent between heartbeats. Any other step leaves the wait first.
pub fn runs_while_waiting(step: Step) -> bool {
    matches!(step, Step::AwaitAgent | Step::PassImage | Step::AwaitImageWritten | Step::CleanStep { .. })
}
