//! Provisioning actions: every verb of the state machine, and the work each one starts.

use super::steps::{Ended, Operation};
use super::{Conductor, ConductorError, LockedTask, Result};
use crate::drivers::{Heartbeat, Task};
use ferric_types::models::{NodeId, PowerTarget, ProvisionState, Step};
use ferric_types::rpc::{ProvisionArgs, RpcError};
use ferric_types::state_machine::{self, Event, Verb};
use ferric_types::trace::{Actor, cleaning};
use serde_json::Value;

/// Key in `driver_internal_info` for the clean steps of a manual clean.
const CLEAN_STEPS: &str = "clean_steps";
/// Key in `driver_internal_info` for the service steps of a service operation.
const SERVICE_STEPS: &str = "service_steps";

fn invalid_action(verb: Verb, task: &Task) -> ConductorError {
    RpcError::InvalidState(format!(
        "The requested action \"{verb}\" can not be performed on node \"{}\" while it is in state \"{}\".",
        task.node.uuid, task.node.provision_state
    ))
    .into()
}

/// One out-of-band clean step: who runs it, the step as requested, its name.
struct OobStep {
    iface: std::sync::Arc<dyn crate::drivers::OutOfBandSteps>,
    step: serde_json::Map<String, Value>,
    name: String,
}

pub(crate) fn manual_clean(task: &Task) -> bool {
    task.node.target_provision_state == Some(ProvisionState::Manageable)
}

impl Conductor {
    /// `PUT /v1/nodes/{id}/states/provision`: validates the request, moves the node into the
    /// verb's first state and starts the work in the background.
    pub async fn do_provisioning_action(&self, node: NodeId, verb: Verb, args: ProvisionArgs) -> Result<()> {
        let event = verb.event();
        let mut t = self.acquire(node)?;
        if matches!(event, Event::Deploy | Event::Rebuild) && t.node.maintenance {
            return Err(RpcError::Invalid(format!(
                "The node {} is in maintenance mode and cannot perform provisioning.",
                t.node.uuid
            ))
            .into());
        }
        if !state_machine::is_actionable(t.node.provision_state, event) {
            return Err(invalid_action(verb, &t));
        }
        let protected_verb = matches!(event, Event::Rebuild | Event::Delete)
            || (event == Event::Deploy && t.node.provision_state == ProvisionState::Active);
        if t.node.protected && protected_verb {
            return Err(RpcError::Forbidden(format!(
                "Node {} is protected and cannot be undeployed, rebuilt or deleted",
                t.node.uuid
            ))
            .into());
        }
        match event {
            Event::Deploy | Event::Rebuild => self.start_deploy(t, event, args).await,
            Event::Delete => self.start_tear_down(t).await,
            Event::Manage => self.start_manage(t).await,
            Event::Provide => {
                self.validate_for_cleaning(&t)?;
                let permit = self.worker()?;
                t.node.last_error = None;
                self.process_event(&mut t, Event::Provide, Some(ProvisionState::Available))?;
                self.save(&mut t)?;
                let c = self.clone();
                self.spawn(permit, async move { c.run_cleaning(t).await });
                Ok(())
            }
            Event::Clean => {
                let steps = args.clean_steps.unwrap_or_default();
                self.validate_for_cleaning(&t)?;
                let permit = self.worker()?;
                t.node.last_error = None;
                t.node.driver_internal_info.insert(CLEAN_STEPS.into(), Value::Array(steps));
                if let Some(d) = args.disable_ramdisk {
                    t.node.driver_internal_info.insert("cleaning_disable_ramdisk".into(), d.into());
                }
                self.process_event(&mut t, Event::Clean, Some(ProvisionState::Manageable))?;
                self.save(&mut t)?;
                let c = self.clone();
                self.spawn(permit, async move { c.run_cleaning(t).await });
                Ok(())
            }
            Event::Inspect if t.node.inspect_interface == super::AGENT_INSPECT => self.start_agent_inspection(t),
            Event::Inspect if let Some(i) = self.registry().inspect_interface(&t.node.inspect_interface) => {
                self.start_oob_inspection(t, i)
            }
            Event::Inspect => self.start_simple(t, event, "inspect", |t| {
                t.node.inspection_started_at = Some(t.env.clock.now());
                t.node.inspection_finished_at = None;
            }),
            Event::Adopt => {
                t.driver.boot.validate(&t)?;
                t.driver.deploy.validate(&t)?;
                self.start_simple(t, event, "adopt", |_| {})
            }
            Event::Rescue => {
                let pw = args.rescue_password.unwrap_or_default();
                self.start_simple(t, event, "rescue", move |t| {
                    t.node.instance_info.insert("rescue_password".into(), Value::String(pw));
                })
            }
            Event::Unrescue => self.start_simple(t, event, "rescue", |t| {
                t.node.instance_info.remove("rescue_password");
            }),
            Event::Service => {
                let steps = args.service_steps.unwrap_or_default();
                if t.node.deploy_interface != "fake" {
                    return Err(RpcError::Invalid(format!(
                        "Servicing is not supported by deploy interface {} of node {}.",
                        t.node.deploy_interface, t.node.uuid
                    ))
                    .into());
                }
                self.start_simple(t, event, "service", move |t| {
                    t.node.driver_internal_info.insert(SERVICE_STEPS.into(), Value::Array(steps));
                })
            }
            Event::Abort => self.start_abort(t),
            Event::Unhold => {
                self.process_event(&mut t, Event::Unhold, None)?;
                self.save(&mut t)?;
                Ok(())
            }
            Event::Done | Event::Fail | Event::Wait | Event::Resume | Event::Hold => Err(invalid_action(verb, &t)),
        }
    }

    /// Operations whose work the fake and passive interfaces finish at once: inspect, adopt,
    /// rescue, unrescue, service. `prepare` adjusts the node when the operation starts.
    fn start_simple(&self, mut t: LockedTask, event: Event, kind: &str, prepare: impl FnOnce(&mut Task)) -> Result<()> {
        let iface = t.node.interface(kind).unwrap_or_default().to_string();
        if iface.starts_with("no-") {
            return Err(RpcError::Invalid(format!(
                "Node {} does not support {kind} (disabled or not implemented).",
                t.node.uuid
            ))
            .into());
        }
        t.driver.power.validate(&t)?;
        let permit = self.worker()?;
        t.node.last_error = None;
        prepare(&mut t);
        self.process_event(&mut t, event, None)?;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            let done = match t.node.provision_state {
                ProvisionState::Inspecting => {
                    t.node.inspection_finished_at = Some(t.env.clock.now());
                    Event::Done
                }
                _ => Event::Done,
            };
            if let ProvisionState::Servicing = t.node.provision_state {
                t.node.driver_internal_info.remove(SERVICE_STEPS);
                t.node.service_step.clear();
            }
            c.finish(&mut t, done, None);
        });
        Ok(())
    }

    /// Applies a terminal event, saves and releases the node's lock: the task's last step. A
    /// failure to save is logged (nothing else can be done); the lock then goes when `t` drops.
    pub(crate) fn finish(&self, t: &mut LockedTask, event: Event, last_error: Option<String>) {
        if let Some(e) = &last_error {
            tracing::warn!(node = %t.node.uuid, error = %e, %event, "operation failed");
            t.node.last_error = Some(e.clone());
        }
        let target = match (t.node.provision_state, event) {
            (ProvisionState::Cleaning | ProvisionState::CleanWait, Event::Wait) if manual_clean(t) => {
                Some(ProvisionState::Manageable)
            }
            _ => None,
        };
        if let Err(e) = self.process_event(t, event, target).and_then(|_| self.save_and_release(t)) {
            tracing::error!(node = %t.node.uuid, error = %e, "cannot record state change");
        }
    }

    async fn start_manage(&self, mut t: LockedTask) -> Result<()> {
        if t.node.provision_state != ProvisionState::Enroll {
            // available, clean failed, inspect failed, adopt failed: nothing to do but record it.
            self.process_event(&mut t, Event::Manage, None)?;
            self.save(&mut t)?;
            return Ok(());
        }
        let permit = self.worker()?;
        t.node.last_error = None;
        self.process_event(&mut t, Event::Manage, None)?;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            let verified = async {
                t.driver.power.validate(&t)?;
                t.driver.management.validate(&t)?;
                let power = t.driver.power.clone();
                let state = power.get_power_state(&mut t).await?;
                t.node.power_state = Some(state);
                Ok::<_, crate::drivers::DriverError>(())
            }
            .await;
            match verified {
                Ok(()) => c.finish(&mut t, Event::Done, None),
                Err(e) => {
                    let msg = format!("Failed to verify node {}: {e}", t.node.uuid);
                    c.finish(&mut t, Event::Fail, Some(msg))
                }
            }
        });
        Ok(())
    }

    fn validate_for_cleaning(&self, t: &Task) -> Result<()> {
        t.driver.power.validate(t)?;
        t.driver.network.validate(t)?;
        Ok(())
    }

    async fn start_deploy(&self, mut t: LockedTask, event: Event, args: ProvisionArgs) -> Result<()> {
        let validated = t.driver.power.validate(&t).and_then(|_| t.driver.deploy.validate(&t));
        if let Err(e) = validated {
            return Err(RpcError::Invalid(format!(
                "RPC do_node_deploy failed to validate deploy or power info for node {}. Error: {e}",
                t.node.uuid
            ))
            .into());
        }
        let permit = self.worker()?;
        t.node.last_error = None;
        match args.configdrive {
            Some(cd) => {
                t.node.instance_info.insert("configdrive".into(), cd);
            }
            None if event == Event::Rebuild => {}
            None => {
                t.node.instance_info.remove("configdrive");
            }
        }
        if let Some(steps) = args.deploy_steps {
            t.node.driver_internal_info.insert("user_deploy_steps".into(), Value::Array(steps));
        }
        t.node.step = None;
        self.process_event(&mut t, event, None)?;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            let ended = c.run_plan(&mut t, Operation::Deploy, None).await;
            c.after_deploy(&mut t, ended).await;
        });
        Ok(())
    }

    /// Applies where a deploy's plan ended: `active`, waiting for the agent, or failed.
    async fn after_deploy(&self, t: &mut LockedTask, ended: Ended) {
        match ended {
            Ended::Finished => {
                t.node.deploy_step.clear();
                self.finish(t, Event::Done, None)
            }
            Ended::Waiting => self.wait_or_release(t),
            Ended::Failed(e) => self.fail_deploy(t, e.to_string()).await,
        }
    }

    /// A plan that waits for the agent: the node enters its wait state (once), and its lock goes.
    fn wait_or_release(&self, t: &mut LockedTask) {
        if state_machine::is_waiting(t.node.provision_state) {
            if let Err(e) = self.save_and_release(t) {
                tracing::error!(node = %t.node.uuid, error = %e, "cannot save a waiting node");
            }
        } else {
            self.finish(t, Event::Wait, None)
        }
    }

    /// What follows any failure of a deploy: power off through the BMC, the ramdisk's boot and
    /// the provisioning network removed. Every step runs; their failures are recorded, not
    /// dropped.
    fn deploy_failure_cleanup() -> &'static crate::drivers::steps::Plan {
        use crate::drivers::steps::{Plan, quiet};
        static PLAN: std::sync::LazyLock<Plan> = std::sync::LazyLock::new(|| {
            Plan::of(vec![
                quiet(Step::PowerOff),
                quiet(Step::CleanUpRamdiskBoot),
                quiet(Step::RemoveProvisioningNetwork),
            ])
        });
        &PLAN
    }

    /// Deploy failure: the ramdisk stopped (its logs kept), the node powered off and cleaned up,
    /// `deploy failed` with `msg` (and whatever the clean-up could not do).
    pub(crate) async fn fail_deploy(&self, t: &mut LockedTask, msg: String) {
        self.abort_ramdisk(t).await;
        let failures = self.run_cleanup(t, Self::deploy_failure_cleanup()).await;
        self.finish(t, Event::Fail, Some(with_cleanup_failures(msg, &failures)));
    }

    /// The deploy interface stops what the ramdisk did; the plan's place is forgotten.
    async fn abort_ramdisk(&self, t: &mut LockedTask) {
        let deploy = t.driver.deploy.clone();
        if let Err(e) = deploy.abort(t).await {
            tracing::warn!(node = %t.node.uuid, error = %e, "abort after failure");
        }
        t.node.step = None;
        t.node.deploy_step.clear();
    }

    /// Powers off through the BMC after a failure; a failure to do so is logged and returned.
    pub(crate) async fn power_off_best_effort(&self, t: &mut Task) -> Option<String> {
        match self.node_power_action(t, PowerTarget::Off, None).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(node = %t.node.uuid, error = %e, "power off after failure");
                Some(format!("PowerOff: {e}"))
            }
        }
    }

    async fn start_tear_down(&self, mut t: LockedTask) -> Result<()> {
        let validated = t.driver.power.validate(&t).and_then(|_| t.driver.deploy.validate(&t));
        if let Err(e) = validated {
            return Err(RpcError::Invalid(format!(
                "RPC do_node_tear_down failed to validate deploy or power info for node {}. Error: {e}",
                t.node.uuid
            ))
            .into());
        }
        let permit = self.worker()?;
        let was_waiting = t.node.provision_state == ProvisionState::DeployWait;
        t.node.last_error = None;
        self.process_event(&mut t, Event::Delete, None)?;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            if was_waiting {
                c.abort_ramdisk(&mut t).await;
            }
            match c.run_plan(&mut t, Operation::TearDown, None).await {
                Ended::Finished | Ended::Waiting => {
                    t.node.instance_info.clear();
                    t.node.instance_uuid = None;
                    t.node.instance_name = None;
                    t.node.step = None;
                    t.node.deploy_step.clear();
                    for k in ["is_whole_disk_image", "root_uuid_or_disk_id", "deploy_steps", "user_deploy_steps"] {
                        t.node.driver_internal_info.remove(k);
                    }
                    if let Some(s) = &mut t.node.agent {
                        s.url = None;
                    }
                    if let Err(e) = c
                        .process_event(&mut t, Event::Clean, Some(ProvisionState::Available))
                        .and_then(|_| c.save(&mut t))
                    {
                        tracing::error!(node = %t.node.uuid, error = %e, "cannot record state change");
                        return;
                    }
                    c.run_cleaning(t).await;
                }
                Ended::Failed(e) => c.finish(&mut t, Event::Fail, Some(format!("Failed to tear down. Error: {e}"))),
            }
        });
        Ok(())
    }

    /// Cleaning, automated (target `available`) or manual (target `manageable`).
    async fn run_cleaning(&self, mut t: LockedTask) {
        let manual = manual_clean(&t);
        let automated_enabled = t.node.automated_clean.unwrap_or(self.config().automated_clean);
        if !manual && !automated_enabled {
            tracing::info!(node = %t.node.uuid, "automated cleaning disabled");
            self.finish(&mut t, Event::Done, None);
            return;
        }
        t.record(Actor::Conductor, Actor::Conductor, cleaning::DO_NODE_CLEAN);
        t.node.step = None;
        if manual {
            match self.out_of_band_clean_steps(&t) {
                Ok(Some(steps)) => return self.run_out_of_band_cleaning(t, steps).await,
                Ok(None) => {}
                Err(msg) => return self.finish(&mut t, Event::Fail, Some(msg)),
            }
        }
        let ended = self.run_plan(&mut t, Operation::Clean, None).await;
        self.after_cleaning(&mut t, ended).await;
    }

    /// A manual cleaning's steps when every one is an out-of-band step of the node's own
    /// interfaces (`bios.apply_configuration`, `firmware.update`, ...): those run without the
    /// ramdisk. `None` when none is (the deploy interface runs them); an error for a mix.
    fn out_of_band_clean_steps(&self, t: &Task) -> std::result::Result<Option<Vec<OobStep>>, String> {
        let Some(Value::Array(steps)) = t.node.driver_internal_info.get(CLEAN_STEPS) else { return Ok(None) };
        let mut found = Vec::new();
        for s in steps {
            let kind = s.get("interface").and_then(Value::as_str).unwrap_or_default();
            let name = s.get("step").and_then(Value::as_str).unwrap_or_default();
            let iface = t.node.interface(kind).unwrap_or_default();
            match self.registry().steps_interface(kind, iface) {
                Some(i) if i.step_names().contains(&name) => found.push(OobStep {
                    iface: i,
                    step: s.as_object().cloned().unwrap_or_default(),
                    name: name.to_owned(),
                }),
                _ => {}
            }
        }
        match found.len() {
            0 => Ok(None),
            n if n == steps.len() => Ok(Some(found)),
            _ => Err(format!(
                "Node {} cannot mix out-of-band clean steps ({}) with steps run by the deploy ramdisk in one cleaning: clean them separately.",
                t.node.uuid,
                found.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Runs out-of-band clean steps one after the other (a step that stages changes for the
    /// next reset gets a reboot), then back to `manageable`; a failure ends in `clean failed`
    /// with the step and the BMC's message.
    async fn run_out_of_band_cleaning(&self, mut t: LockedTask, steps: Vec<OobStep>) {
        for s in &steps {
            if let Err(e) = s.iface.validate(&t) {
                return self.finish(&mut t, Event::Fail, Some(e.to_string()));
            }
        }
        for s in &steps {
            t.node.clean_step = s.step.clone();
            if let Err(e) = self.save(&mut t) {
                tracing::error!(node = %t.node.uuid, error = %e, "cannot record the clean step");
            }
            let args = s.step.get("args").and_then(Value::as_object).cloned().unwrap_or_default();
            let kind = s.step.get("interface").and_then(Value::as_str).unwrap_or_default().to_owned();
            t.record(Actor::Conductor, Actor::Node, &cleaning::execute(&kind, &s.name));
            let ran = match s.iface.run_step(&mut t, &s.name, &args).await {
                Ok(crate::drivers::StepEnd::Reboot) => {
                    self.node_power_action(&mut t, PowerTarget::Reboot, None).await.map_err(|e| e.to_string())
                }
                Ok(crate::drivers::StepEnd::Done) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = ran {
                let msg = format!("Node {} failed step {kind}.{}: {e}", t.node.uuid, s.name);
                t.node.clean_step.clear();
                t.node.driver_internal_info.remove(CLEAN_STEPS);
                return self.finish(&mut t, Event::Fail, Some(msg));
            }
        }
        // The BIOS settings as they now are (Ironic caches them after its bios steps).
        if let Some(bios) = steps.iter().find(|s| s.step.get("interface").and_then(Value::as_str) == Some("bios")) {
            match bios.iface.bios_settings(&mut t).await {
                Ok(Some(settings)) => {
                    if let Err(e) = self.db().put_bios_settings(t.node.uuid, &settings) {
                        tracing::warn!(node = %t.node.uuid, error = %e, "cannot cache the BIOS settings");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(node = %t.node.uuid, error = %e, "cannot read the BIOS settings"),
            }
        }
        t.node.clean_step.clear();
        t.node.driver_internal_info.remove(CLEAN_STEPS);
        t.node.driver_internal_info.remove("cleaning_disable_ramdisk");
        t.record(Actor::Conductor, Actor::Conductor, cleaning::MARK_MANAGEABLE);
        self.finish(&mut t, Event::Manage, None);
    }

    /// Applies where a cleaning's plan ended: torn down and done, waiting, or failed.
    async fn after_cleaning(&self, t: &mut LockedTask, ended: Ended) {
        match ended {
            Ended::Waiting => self.wait_or_release(t),
            Ended::Failed(e) => self.fail_cleaning(t, e.to_string()).await,
            Ended::Finished => {
                if let Err(e) = self.leave_wait(t) {
                    tracing::error!(node = %t.node.uuid, error = %e, "cannot resume");
                    return;
                }
                let deploy = t.driver.deploy.clone();
                let failures = self.run_cleanup(t, &deploy.plans().clean_tear_down).await;
                if let Some(first) = failures.first() {
                    let msg = format!("Failed to tear down from cleaning for node {}, reason: {first}", t.node.uuid);
                    return self.fail_cleaning(t, msg).await;
                }
                let manual = manual_clean(t);
                t.node.clean_step.clear();
                t.node.driver_internal_info.remove(CLEAN_STEPS);
                t.node.driver_internal_info.remove("cleaning_disable_ramdisk");
                let (event, label) = if manual {
                    (Event::Manage, cleaning::MARK_MANAGEABLE)
                } else {
                    (Event::Done, cleaning::MARK_AVAILABLE)
                };
                t.record(Actor::Conductor, Actor::Conductor, label);
                self.finish(t, event, None);
            }
        }
    }

    /// Cleaning failure: the ramdisk stopped, cleaning torn down (every step; failures
    /// recorded), `clean failed` with `msg`.
    pub(crate) async fn fail_cleaning(&self, t: &mut LockedTask, msg: String) {
        self.abort_ramdisk(t).await;
        let deploy = t.driver.deploy.clone();
        let failures = self.run_cleanup(t, &deploy.plans().clean_tear_down).await;
        self.finish(t, Event::Fail, Some(with_cleanup_failures(msg, &failures)));
    }

    fn start_abort(&self, mut t: LockedTask) -> Result<()> {
        use ProvisionState::*;
        let state = t.node.provision_state;
        if state == ServiceFailed {
            self.process_event(&mut t, Event::Abort, None)?;
            self.save(&mut t)?;
            return Ok(());
        }
        let permit = self.worker()?;
        let c = self.clone();
        let uuid = t.node.uuid;
        self.spawn(permit, async move {
            let mut t = t;
            let msg = match state {
                CleanWait | CleanHold => {
                    let step = t.node.clean_step.get("step").and_then(|s| s.as_str()).unwrap_or("").to_string();
                    format!("By request, the clean operation was aborted for node {uuid} on step \"{step}\".")
                }
                InspectWait => "By request, the inspection was aborted.".to_string(),
                RescueWait => "By request, the rescue operation was aborted.".to_string(),
                DeployWait | DeployHold => "By request, the deploy operation was aborted.".to_string(),
                _ => "By request, the service operation was aborted.".to_string(),
            };
            c.abort_ramdisk(&mut t).await;
            let failures = match state {
                CleanWait | CleanHold => {
                    let deploy = t.driver.deploy.clone();
                    c.run_cleanup(&mut t, &deploy.plans().clean_tear_down).await
                }
                DeployWait | DeployHold => c.power_off_best_effort(&mut t).await.into_iter().collect(),
                _ => Vec::new(),
            };
            c.finish(&mut t, Event::Abort, Some(with_cleanup_failures(msg, &failures)));
        });
        Ok(())
    }

    /// An agent heartbeat: checked (token, callback URL) at once, then recorded and, when the
    /// node waits for its agent, its plan goes on, in the background (Ironic casts heartbeats).
    /// A node locked by other work skips this beat.
    pub async fn heartbeat(&self, node: NodeId, hb: Heartbeat) -> Result<()> {
        self.check_heartbeat(node, &hb)?;
        let permit = self.worker()?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = match c.acquire(node) {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(node = %node, error = %e, "heartbeat skipped");
                    return;
                }
            };
            super::agent::record_heartbeat(&mut t, &hb);
            // Every path below saves the node, and the heartbeat's record with it: one write per
            // heartbeat instead of two (heartbeats are most of a large fleet's node writes).
            let op = Operation::waiting_in(t.node.provision_state);
            let Some(op) = op.filter(|_| !t.node.maintenance && t.node.step.is_some()) else {
                if let Err(e) = c.save_and_release(&mut t) {
                    tracing::error!(node = %node, error = %e, "cannot record heartbeat");
                }
                return;
            };
            let ended = c.run_plan(&mut t, op, Some(&hb)).await;
            match op {
                Operation::Clean => c.after_cleaning(&mut t, ended).await,
                _ => c.after_deploy(&mut t, ended).await,
            }
        });
        Ok(())
    }

    /// Fails a node whose wait for a callback lasted too long.
    pub(crate) async fn time_out_wait(&self, mut t: LockedTask) {
        let uuid = t.node.uuid;
        match t.node.provision_state {
            ProvisionState::DeployWait => {
                let msg = format!("Timeout reached while waiting for callback for node {uuid}");
                self.fail_deploy(&mut t, msg).await
            }
            ProvisionState::CleanWait => {
                let step = t.node.clean_step.get("step").and_then(|s| s.as_str()).unwrap_or("").to_string();
                let msg = format!(
                    "Timeout reached while cleaning the node. Please check if the ramdisk responsible for the cleaning is running on the node. Failed on step {step}."
                );
                let power = self.power_off_best_effort(&mut t).await;
                self.fail_cleaning(&mut t, with_cleanup_failures(msg, &Vec::from_iter(power))).await
            }
            ProvisionState::InspectWait => {
                self.finish(&mut t, Event::Fail, Some("Timeout reached while inspecting the node".into()))
            }
            ProvisionState::RescueWait => self.finish(
                &mut t,
                Event::Fail,
                Some("Timeout reached while waiting for rescue ramdisk callback".into()),
            ),
            ProvisionState::ServiceWait => {
                self.finish(&mut t, Event::Fail, Some("Timeout reached while servicing the node".into()))
            }
            _ => {}
        }
    }
}

/// A failure's message, with what the clean-up after it could not do.
fn with_cleanup_failures(msg: String, failures: &[String]) -> String {
    if failures.is_empty() {
        return msg;
    }
    format!("{msg} Cleaning up afterwards failed too: {}.", failures.join("; "))
}
