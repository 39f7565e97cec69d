//! Runs a deploy interface's plans: each step in order, with the user guide's message recorded
//! before it, through the node's interfaces for the steps that need them and through the deploy
//! interface for its own; then the step's outcome is applied (go on, wait for the agent, wait for
//! the power to go off, finish) and failures end the plan with their reason.

use super::{Conductor, LockedTask};
use crate::drivers::steps::{Entry, Outcome, Plan, StepCtx, StepResult, runs_while_waiting};
use crate::drivers::{DeployInterface, DriverError, Heartbeat, Task};
use ferric_types::models::{BootDevice, PowerState, PowerTarget, ProvisionState, Step};
use ferric_types::state_machine::{self, Event};
use serde_json::json;
use std::sync::Arc;

/// How a run of a plan ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Every step is done (or a step finished the operation early).
    Finished,
    /// The node waits for its agent; `Node::step` says where the plan goes on.
    Waiting,
    /// A step failed.
    Failed(DriverError),
}

/// Which of the deploy interface's plans runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Deploy,
    TearDown,
    Clean,
}

impl Operation {
    /// The operation a node waiting in `state` goes on with at a heartbeat.
    pub(crate) fn waiting_in(state: ProvisionState) -> Option<Operation> {
        match state {
            ProvisionState::DeployWait => Some(Operation::Deploy),
            ProvisionState::CleanWait => Some(Operation::Clean),
            _ => None,
        }
    }
}

fn plan_of(deploy: &Arc<dyn DeployInterface>, op: Operation) -> &Plan {
    let plans = deploy.plans();
    match op {
        Operation::Deploy => &plans.deploy,
        Operation::TearDown => &plans.tear_down,
        Operation::Clean => &plans.clean,
    }
}

/// Whether `shown` is already the dict of deploy step `name` (a phase spans several steps: its
/// dict is built once, not per step).
fn shows_deploy_step(shown: &ferric_types::models::JsonMap, name: &str, priority: u32) -> bool {
    shown.get("step").and_then(serde_json::Value::as_str) == Some(name)
        && shown.get("priority").and_then(serde_json::Value::as_u64) == Some(u64::from(priority))
}

/// Ironic's deploy step dict, as `node.deploy_step` shows it.
fn deploy_step_doc(name: &str, priority: u32) -> ferric_types::models::JsonMap {
    match json!({"interface": "deploy", "step": name, "priority": priority, "args": {}, "argsinfo": null}) {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    }
}

impl Conductor {
    /// Runs `op`'s plan from its start, or (at a heartbeat) from the step the node waits at.
    pub(crate) async fn run_plan(&self, t: &mut LockedTask, op: Operation, heartbeat: Option<&Heartbeat>) -> Ended {
        let deploy = t.driver.deploy.clone();
        let entries = plan_of(&deploy, op).entries();
        let resume_at = if heartbeat.is_some() { t.node.step } else { None };
        let mut i = match resume_at {
            None if heartbeat.is_some() => return Ended::Waiting,
            None => 0,
            Some(at) => match entries.iter().position(|e| e.planned.step.same_kind(&at)) {
                Some(i) => i,
                None => {
                    return Ended::Failed(DriverError::failed(format!(
                        "Node {} waits at step {at:?}, which the {op:?} plan of deploy interface {} does not have.",
                        t.node.uuid, t.node.deploy_interface
                    )));
                }
            },
        };
        let mut carried = resume_at;
        let mut ctx = StepCtx { heartbeat };
        while let Some(Entry { deploy_step, planned }) = entries.get(i) {
            let step = carried.take().unwrap_or(planned.step);
            if !runs_while_waiting(step)
                && let Err(e) = self.leave_wait(t)
            {
                return Ended::Failed(DriverError::failed(e.to_string()));
            }
            if op == Operation::Deploy
                && let Some((name, priority)) = *deploy_step
                && !shows_deploy_step(&t.node.deploy_step, name, priority)
            {
                t.node.deploy_step = deploy_step_doc(name, priority);
            }
            if let Some(m) = planned.says
                && let Some(label) = t.driver.boot.says(m.label)
            {
                t.record(m.from, m.to, label);
            }
            let result = self.run_step(t, &deploy, step, ctx).await;
            ctx = StepCtx::default();
            let r = match result {
                Ok(r) => r,
                Err(e) => return Ended::Failed(e),
            };
            if let Some(m) = r.reply {
                t.record(m.from, m.to, m.label);
            }
            match r.outcome {
                Outcome::Next => i += 1,
                Outcome::NextAtHeartbeat => match entries.get(i + 1) {
                    Some(next) => {
                        t.node.step = Some(next.planned.step);
                        return Ended::Waiting;
                    }
                    None => return Ended::Finished,
                },
                Outcome::AgainAtHeartbeat(at) => {
                    t.node.step = Some(at);
                    return Ended::Waiting;
                }
                Outcome::AwaitPowerOff(within) => {
                    if let Err(e) = self.await_ramdisk_power_off(t, within).await {
                        return Ended::Failed(e);
                    }
                    i += 1;
                }
                Outcome::Finished => break,
            }
        }
        t.node.step = None;
        Ended::Finished
    }

    /// Runs one step: the conductor's own, else the deploy interface's.
    async fn run_step(
        &self,
        t: &mut Task,
        deploy: &Arc<dyn DeployInterface>,
        step: Step,
        ctx: StepCtx<'_>,
    ) -> Result<StepResult, DriverError> {
        // The runtime's clock: wall time in production, the simulation's virtual time in a lab.
        let started = tokio::time::Instant::now();
        let r = match self.run_own_step(t, step, ctx).await {
            Some(r) => r,
            None => deploy.run_step(step, t, ctx).await,
        };
        let name = format!("{step:?}");
        let name = name.split(['(', ' ', '{']).next().unwrap_or_default();
        let state = t.node.provision_state.as_str();
        let op = ["clean", "delet", "rescu", "unrescu", "servic", "inspect"]
            .into_iter()
            .find(|p| state.starts_with(p))
            .map_or("deploy", |p| match p {
                "clean" => "clean",
                "delet" => "undeploy",
                "rescu" => "rescue",
                "unrescu" => "unrescue",
                "servic" => "service",
                _ => "inspect",
            });
        crate::metrics::METRICS.step_done(op, name, started.elapsed());
        r
    }

    /// The steps the conductor runs itself, through the node's interfaces; `None` for the deploy
    /// interface's own.
    async fn run_own_step(
        &self,
        t: &mut Task,
        step: Step,
        ctx: StepCtx<'_>,
    ) -> Option<Result<StepResult, DriverError>> {
        let done = |r: Result<(), DriverError>| Some(r.map(|_| StepResult::next()));
        // A call to one of the node's interfaces (cloned first: the call borrows the task).
        macro_rules! via {
            ($iface:ident . $method:ident ( $($arg:expr),* )) => {{
                let interface = t.driver.$iface.clone();
                done(interface.$method(t $(, $arg)*).await)
            }};
        }
        match step {
            // The user guide's messages where ferric has nothing separate to do.
            Step::StoreConfigDrive
            | Step::UpdateDhcp
            | Step::CacheImages
            | Step::InstallBootloader
            | Step::DeleteCachedImage
            | Step::MarkActive => Some(Ok(StepResult::next())),
            Step::PowerOff => done(self.node_power_action(t, PowerTarget::Off, None).await),
            Step::Reboot => done(self.node_power_action(t, PowerTarget::Reboot, None).await),
            Step::PowerOn => done(self.node_power_action(t, PowerTarget::On, None).await),
            Step::AddProvisioningNetwork => via!(network.add_provisioning_network()),
            Step::RemoveProvisioningNetwork => via!(network.remove_provisioning_network()),
            Step::AddCleaningNetwork => via!(network.add_cleaning_network()),
            Step::RemoveCleaningNetwork => via!(network.remove_cleaning_network()),
            Step::ConfigureTenantNetworks => via!(network.configure_tenant_networks()),
            Step::UnconfigureTenantNetworks => via!(network.unconfigure_tenant_networks()),
            Step::PrepareRamdiskBoot => via!(boot.prepare_ramdisk()),
            Step::CleanUpRamdiskBoot => via!(boot.clean_up_ramdisk()),
            Step::PrepareInstanceBoot => via!(boot.prepare_instance()),
            Step::CleanUpInstanceBoot => via!(boot.clean_up_instance()),
            Step::BootFromNetworkOnce => {
                // The network for PXE/iPXE, the virtual CD for virtual media.
                let device = t.driver.boot.ramdisk_boot_device();
                via!(management.set_boot_device(device, false))
            }
            Step::SetInstanceBootDevice => {
                // Network-booted partition images boot over PXE for good; the rest from disk:
                // the boot interfaces' rule, so the boot device and the boot environment agree.
                let device =
                    if crate::drivers::pxe_boot::is_netboot(&t.node) { BootDevice::Pxe } else { BootDevice::Disk };
                via!(management.set_boot_device(device, true))
            }
            Step::AwaitAgent => Some(Ok(if ctx.at_heartbeat() {
                StepResult::next()
            } else {
                StepResult::outcome(Outcome::AgainAtHeartbeat(Step::AwaitAgent))
            })),
            _ => None,
        }
    }

    /// A node waiting for its agent leaves the wait (`resume`) before a step that is not an
    /// exchange with the agent, and when its cleaning's plan is done.
    pub(crate) fn leave_wait(&self, t: &mut LockedTask) -> super::Result<()> {
        if !state_machine::is_waiting(t.node.provision_state) {
            return Ok(());
        }
        let target = if t.node.provision_state == ProvisionState::CleanWait && super::provision::manual_clean(t) {
            Some(ProvisionState::Manageable)
        } else {
            None
        };
        self.process_event(t, Event::Resume, target)?;
        self.save(t)
    }

    /// After the ramdisk was asked to power off: waits for the power interface to read "off"
    /// for up to `within`, then powers off through it. Either way the node is off and its agent
    /// gone.
    async fn await_ramdisk_power_off(&self, t: &mut Task, within: std::time::Duration) -> Result<(), DriverError> {
        let off = !within.is_zero() && self.await_power(t, PowerState::Off, within, false).await?;
        if !off {
            if !within.is_zero() {
                tracing::warn!(node = %t.node.uuid, "soft power off through the agent timed out; powering off through the BMC");
            }
            self.set_power(t, PowerTarget::Off, None).await?;
        } else {
            self.powered(t, PowerState::Off);
        }
        Ok(())
    }

    /// Runs a clean-up plan whatever fails, and returns each failure ("step: reason"): what
    /// follows a failure, an abort or a timeout must not stop half-way.
    pub(crate) async fn run_cleanup(&self, t: &mut LockedTask, plan: &Plan) -> Vec<String> {
        let deploy = t.driver.deploy.clone();
        let mut failures = Vec::new();
        for Entry { planned, .. } in plan.entries() {
            if let Some(m) = planned.says
                && let Some(label) = t.driver.boot.says(m.label)
            {
                t.record(m.from, m.to, label);
            }
            if let Err(e) = self.run_step(t, &deploy, planned.step, StepCtx::default()).await {
                tracing::warn!(node = %t.node.uuid, step = ?planned.step, error = %e, "clean-up step failed");
                failures.push(format!("{:?}: {e}", planned.step));
            }
        }
        failures
    }
}
