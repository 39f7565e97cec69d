//! What the agent-based deploy interfaces (`direct`, `iscsi`) share: their plans around the image
//! write (booting the deploy ramdisk, finishing the deploy, undeploy, cleaning through the
//! agent), each step with the user guide's message for it, and the steps that talk to the agent
//! (describing the image, logs, flushing, powering off through the ramdisk, clean steps).

use super::agent_client::{AgentClient, AgentTarget};
use super::steps::{Outcome, Plan, Planned, Plans, StepResult, quiet, says};
use super::{DriverError, Task};
use crate::images::ImageService;
use ferric_types::agent::{CommandStatus, ImageInfo, Step as AgentStep};
use ferric_types::models::Step;
use ferric_types::trace::{Actor, Says, cleaning, seed};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Key for the clean steps of the current cleaning (manual ones come from the API).
const CLEAN_STEPS: &str = "clean_steps";

/// Settings of agent-based deploys (Ironic's `[agent]` and `[deploy]` options).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentDeployConfig {
    /// How long to wait for the agent's soft power off before powering off through the BMC.
    pub soft_power_off_timeout: u64,
    /// `always`, `on_failure` (Ironic's default) or `never`.
    pub collect_ramdisk_logs: String,
    /// Validity of the temporary URLs handed to agents, in seconds.
    pub temp_url_ttl: u64,
    /// Whether automated cleaning erases disk metadata (Ironic's `erase_devices_metadata`).
    pub erase_devices_metadata: bool,
    /// CA certificate(s) (PEM file, or a directory of them) the conductor checks agents'
    /// HTTPS certificates against (Ironic's `[agent] verify_ca`); agents whose callback URL is
    /// `https://` are then called with verification against these only. Unset: the system's
    /// roots.
    pub verify_ca: Option<std::path::PathBuf>,
}

impl Default for AgentDeployConfig {
    fn default() -> Self {
        AgentDeployConfig {
            soft_power_off_timeout: 30,
            collect_ramdisk_logs: "on_failure".into(),
            temp_url_ttl: 3600,
            erase_devices_metadata: true,
            verify_ca: None,
        }
    }
}

/// What agent-based interfaces need from the service.
pub struct AgentEnv {
    pub client: AgentClient,
    /// HTTP for the conductor's own image fetches (the iSCSI deploy streams images).
    pub http: Arc<dyn ferric_types::http::HttpClient>,
    pub images: Option<Arc<ImageService>>,
    /// URL under which nodes reach the image store (the API's public URL).
    pub image_url_base: String,
    pub config: AgentDeployConfig,
}

pub(crate) fn agent_env(task: &Task) -> Result<Arc<AgentEnv>, DriverError> {
    task.env.agent.clone().ok_or_else(|| {
        DriverError::Unsupported(
            "this conductor has no agent client configured; agent-based deploys are unavailable".into(),
        )
    })
}

/// The agent a node's heartbeats came from.
pub(crate) fn agent_target(task: &Task) -> Result<AgentTarget, DriverError> {
    let session = task.node.agent.as_ref();
    let url = session.and_then(|s| s.url.clone()).ok_or_else(|| {
        DriverError::failed(format!(
            "No agent URL recorded for node {}; the agent has not heartbeated yet.",
            task.node.uuid
        ))
    })?;
    Ok(AgentTarget { url, token: session.and_then(|s| s.token.clone()) })
}

fn instance_str(task: &Task, key: &str) -> Option<String> {
    match task.node.instance_info.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn instance_u64(task: &Task, key: &str) -> Option<u64> {
    match task.node.instance_info.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Checks what every agent deploy needs in `instance_info`.
pub(crate) fn validate_instance_info(task: &Task) -> Result<(), DriverError> {
    if instance_str(task, "image_source").is_none() {
        return Err(DriverError::MissingParameter(format!(
            "Cannot validate image information for node {} because one or more parameters are missing from its instance_info. Missing are: ['image_source']",
            task.node.uuid
        )));
    }
    Ok(())
}

/// Whether the image source is an image of ferric's image service (a UUID), not a URL.
fn is_image_service_ref(src: &str) -> bool {
    !src.contains("://")
}

/// The `image_info` an agent (or the iSCSI copy) needs: URL, checksum, format and layout.
pub(crate) fn image_info(task: &Task, env: &AgentEnv) -> Result<ImageInfo, DriverError> {
    validate_instance_info(task)?;
    let src = instance_str(task, "image_source").unwrap_or_default();
    let mut info = ImageInfo {
        id: src.clone(),
        urls: Vec::new(),
        disk_format: instance_str(task, "image_disk_format"),
        container_format: Some("bare".into()),
        checksum: instance_str(task, "image_checksum"),
        os_hash_algo: instance_str(task, "image_os_hash_algo"),
        os_hash_value: instance_str(task, "image_os_hash_value"),
        stream_raw_images: Some(true),
        image_type: instance_str(task, "image_type"),
        kernel: instance_str(task, "kernel"),
        ramdisk: instance_str(task, "ramdisk"),
        root_mb: None,
        root_gb: instance_u64(task, "root_gb"),
        swap_mb: instance_u64(task, "swap_mb"),
        ..Default::default()
    };
    if is_image_service_ref(&src) {
        let svc = env.images.as_ref().ok_or_else(|| {
            DriverError::InvalidParameter(format!(
                "image_source {src} names an image, but this conductor has no image service; use a URL"
            ))
        })?;
        let img = svc.store.get(&src).map_err(|e| DriverError::InvalidParameter(format!("Image {src}: {e}")))?;
        let url = svc
            .temp_url(&env.image_url_base, &src, Duration::from_secs(env.config.temp_url_ttl))
            .map_err(|e| DriverError::InvalidParameter(format!("Image {src} cannot be served: {e}")))?;
        info.urls = vec![url];
        info.disk_format = img.disk_format.map(|d| d.as_str().to_string()).or(info.disk_format);
        info.os_hash_algo = img.os_hash_algo.clone().or(info.os_hash_algo);
        info.os_hash_value = img.os_hash_value.clone().or(info.os_hash_value);
        info.checksum = info.checksum.or(img.checksum.clone());
        if img.is_partition_image() {
            info.image_type = Some("partition".into());
            info.kernel = img.kernel_id.clone();
            info.ramdisk = img.ramdisk_id.clone();
        }
    } else {
        info.urls = vec![src.clone()];
        if info.image_type.is_none() && (info.kernel.is_some() || info.ramdisk.is_some()) {
            info.image_type = Some("partition".into());
        }
    }
    if info.image_type.is_none() {
        info.image_type = Some("whole-disk".into());
    }
    if info.os_hash_value.is_none() && info.checksum.is_none() {
        return Err(DriverError::MissingParameter(format!(
            "Node {}: image {src} has no checksum; set instance_info image_checksum or image_os_hash_algo/image_os_hash_value.",
            task.node.uuid
        )));
    }
    Ok(info)
}

const fn c(to: Actor, label: &'static str) -> Says {
    Says::new(Actor::Conductor, to, label)
}

/// An agent deploy's plan: the ramdisk boots, `write` puts the image on the disk, then the
/// instance's boot is prepared, the agent torn down, the tenant network bound and the instance
/// booted. `cache` and `prepare_instance` are the two messages whose wording differs between the
/// user guide's flows. Phases are Ironic's deploy steps (`node.deploy_step`).
pub(crate) fn plans(cache: &'static str, write: Vec<Planned>, prepare_instance: &'static str) -> Plans {
    Plans {
        deploy: deploy_plan(cache, write, prepare_instance),
        tear_down: tear_down_plan(),
        clean: clean_plan(),
        clean_tear_down: clean_tear_down_plan(),
    }
}

fn deploy_plan(cache: &'static str, write: Vec<Planned>, prepare_instance: &'static str) -> Plan {
    use Actor::{Conductor, HttpStore, Neutron, Node};
    Plan::phased(vec![
        (
            ("deploy", 100),
            vec![
                says(Step::ValidateInterfaces, c(Conductor, seed::VALIDATE_INTERFACES)),
                says(Step::StoreConfigDrive, c(HttpStore, seed::STORE_CONFIGDRIVE)),
                quiet(Step::PowerOff),
                says(Step::AddProvisioningNetwork, c(Neutron, seed::ATTACH_PROVISIONING)),
                says(Step::UpdateDhcp, c(Neutron, seed::UPDATE_DHCP)),
                says(Step::PrepareRamdiskBoot, c(Conductor, seed::PREPARE_PXE_DEPLOY)),
                says(Step::BootFromNetworkOnce, c(Node, seed::SET_PXE_BOOT)),
                says(Step::CacheImages, c(Conductor, cache)),
                quiet(Step::Reboot),
                quiet(Step::AwaitAgent),
            ],
        ),
        (("write_image", 80), write),
        (
            ("prepare_instance_boot", 60),
            vec![
                says(Step::InstallBootloader, c(Node, seed::INSTALL_BOOTLOADER)),
                says(Step::UpdateDhcp, c(Neutron, seed::UPDATE_DHCP)),
                says(Step::PrepareInstanceBoot, c(Conductor, prepare_instance)),
                says(Step::SetInstanceBootDevice, c(Node, seed::SET_BOOT_DEVICE)),
            ],
        ),
        (
            ("tear_down_agent", 40),
            vec![
                says(Step::CollectLogs, c(Node, seed::COLLECT_LOGS)),
                quiet(Step::SyncImage),
                says(Step::PowerOffThroughRamdisk, c(Node, seed::POWER_OFF)),
            ],
        ),
        (
            ("switch_to_tenant_network", 30),
            vec![
                says(Step::RemoveProvisioningNetwork, c(Neutron, seed::DETACH_PROVISIONING)),
                quiet(Step::CleanUpRamdiskBoot),
                says(Step::ConfigureTenantNetworks, c(Neutron, seed::BIND_TENANT)),
            ],
        ),
        (("boot_instance", 20), vec![quiet(Step::PowerOn), says(Step::MarkActive, c(Conductor, seed::MARK_ACTIVE))]),
    ])
}

/// Undeploy: power off through the BMC, the instance's boot and networks removed.
fn tear_down_plan() -> Plan {
    Plan::of(vec![
        quiet(Step::PowerOff),
        quiet(Step::CleanUpInstanceBoot),
        quiet(Step::UnconfigureTenantNetworks),
        quiet(Step::RemoveProvisioningNetwork),
    ])
}

/// Cleaning through the agent: if there are steps to run, the ramdisk boots on the cleaning
/// network and runs them one by one, a heartbeat at a time.
fn clean_plan() -> Plan {
    use Actor::{Conductor, Neutron, Node};
    Plan::of(vec![
        quiet(Step::CheckCleanSteps),
        says(Step::AddCleaningNetwork, c(Neutron, cleaning::ATTACH_CLEANING)),
        says(Step::PrepareRamdiskBoot, c(Conductor, seed::PREPARE_PXE_DEPLOY)),
        says(Step::BootFromNetworkOnce, c(Node, seed::SET_PXE_BOOT)),
        quiet(Step::Reboot),
        quiet(Step::AwaitAgent),
        quiet(Step::CleanStep { index: 0, started: false }),
    ])
}

/// Leaving cleaning: power off, the ramdisk's boot and the cleaning network removed.
fn clean_tear_down_plan() -> Plan {
    Plan::of(vec![
        quiet(Step::PowerOff),
        quiet(Step::CleanUpRamdiskBoot),
        says(Step::RemoveCleaningNetwork, c(Actor::Neutron, cleaning::DETACH_CLEANING)),
    ])
}

/// Both agent deploy interfaces check the same: an image source, and the boot interface.
pub(crate) fn validate(task: &Task) -> Result<(), DriverError> {
    validate_instance_info(task)?;
    task.driver.boot.validate(task)
}

/// The steps both agent deploy interfaces run the same way; `None` for the others.
pub(crate) async fn run_common_step(step: Step, task: &mut Task) -> Option<Result<StepResult, DriverError>> {
    Some(match step {
        Step::ValidateInterfaces => validate_image(task),
        Step::CollectLogs => {
            match agent_env(task) {
                Ok(env) if env.config.collect_ramdisk_logs == "always" => collect_logs(task, &env, "deploy").await,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            Ok(StepResult::next())
        }
        Step::SyncImage => match agent_env(task) {
            Ok(env) => sync_image(task, &env).await.map(|_| StepResult::next()),
            Err(e) => Err(e),
        },
        Step::PowerOffThroughRamdisk => ask_power_off(task).await,
        Step::CheckCleanSteps => check_clean_steps(task),
        Step::CleanStep { index, started } => clean_step(task, index, started).await,
        _ => return None,
    })
}

/// Fails fast, before any power action, if the image cannot be described to the agent; and
/// records whether it is a whole-disk image.
fn validate_image(task: &mut Task) -> Result<StepResult, DriverError> {
    let env = agent_env(task)?;
    let info = image_info(task, &env)?;
    task.node
        .driver_internal_info
        .insert("is_whole_disk_image".into(), (info.image_type.as_deref() != Some("partition")).into());
    Ok(StepResult::next())
}

/// Asks the agent to power the node off (the user guide's "POWER OFF" after a deploy: "asks the
/// ramdisk agent to soft power off the node"); the conductor waits for it, then falls back to
/// the BMC.
async fn ask_power_off(task: &mut Task) -> Result<StepResult, DriverError> {
    let env = agent_env(task)?;
    let asked = match agent_target(task) {
        Ok(t) => env.client.power_off(&t).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let within = match asked {
        Ok(_) => Duration::from_secs(env.config.soft_power_off_timeout),
        Err(e) => {
            tracing::warn!(node = %task.node.uuid, error = %e, "agent power off failed; powering off through the BMC");
            Duration::ZERO
        }
    };
    Ok(StepResult::outcome(Outcome::AwaitPowerOff(within)))
}

/// Attempts of `standby.sync` before the deploy fails (a busy agent or a slow writeback).
const SYNC_ATTEMPTS: u32 = 5;

/// Makes the written image durable before the node is powered off. The agent, like IPA, reports
/// `prepare_image` done once every byte is written and verified but not yet flushed (the kernel
/// writes back in the background), so the conductor flushes through the agent here, whatever power
/// off follows: a BMC hard off of a node whose image is still in its page cache would leave a
/// truncated image behind an ACTIVE node. Ironic issues the same `standby.sync` before an
/// out-of-band power off; ferric issues it before every power off and fails the deploy when the
/// agent cannot confirm the flush.
pub(crate) async fn sync_image(task: &mut Task, env: &AgentEnv) -> Result<(), DriverError> {
    use crate::drivers::agent_client::AgentClientError;
    let t = agent_target(task)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let e = match env.client.sync(&t).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // A long writeback can outlast one HTTP deadline, and a command still running makes the
        // agent busy: both are worth asking again. A sync that ran and failed (an I/O error) is not.
        let transient = matches!(e, AgentClientError::Busy(_) | AgentClientError::Connection(_));
        if !transient || attempt >= SYNC_ATTEMPTS {
            return Err(DriverError::failed(format!(
                "Node {}: the image could not be flushed to disk through the agent (standby.sync, attempt {attempt}): {e}",
                task.node.uuid
            )));
        }
        tracing::warn!(node = %task.node.uuid, attempt, error = %e, "standby.sync failed; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Fetches the ramdisk's logs into the node's `driver_internal_info` summary (size only: logs
/// may hold secrets, so they are kept out of the API).
pub(crate) async fn collect_logs(task: &mut Task, env: &AgentEnv, why: &str) {
    let Ok(t) = agent_target(task) else { return };
    match env.client.collect_system_logs(&t).await {
        Ok(logs) => {
            tracing::info!(node = %task.node.uuid, bytes = logs.len(), why, "collected ramdisk logs");
            task.node.driver_internal_info.insert("ramdisk_logs_bytes".into(), json!(logs.len()));
        }
        Err(e) => tracing::warn!(node = %task.node.uuid, error = %e, "collecting ramdisk logs failed"),
    }
}

/// A failed or aborted agent deploy or cleaning: keep the ramdisk's logs (unless configured off).
pub(crate) async fn abort(task: &mut Task) -> Result<(), DriverError> {
    if let Ok(env) = agent_env(task)
        && env.config.collect_ramdisk_logs != "never"
    {
        collect_logs(task, &env, "failure").await;
    }
    Ok(())
}

/// The node as the agent's step commands want it.
fn node_doc(task: &Task) -> Value {
    json!({
        "uuid": task.node.uuid.to_string(),
        "properties": task.node.properties,
        "instance_info": {},
        "driver_internal_info": {},
    })
}

fn ports_doc(task: &Task) -> Vec<Value> {
    task.ports.iter().map(|p| json!({"address": p.address.to_string(), "pxe_enabled": p.pxe_enabled})).collect()
}

/// The steps of this cleaning: the API's for a manual clean, else the automated ones.
fn clean_steps(task: &Task, env: &AgentEnv) -> Result<Vec<AgentStep>, DriverError> {
    if let Some(Value::Array(steps)) = task.node.driver_internal_info.get(CLEAN_STEPS) {
        let mut out = Vec::new();
        for s in steps {
            let mut s = s.clone();
            if let Some(o) = s.as_object_mut() {
                o.entry("priority").or_insert(json!(0));
            }
            let step: AgentStep = serde_json::from_value(s.clone())
                .map_err(|e| DriverError::InvalidParameter(format!("Invalid clean step {s}: {e}")))?;
            if step.interface != "deploy" || !matches!(step.step.as_str(), "erase_devices_metadata" | "erase_devices") {
                return Err(DriverError::InvalidParameter(format!(
                    "Clean step {}.{} is not supported by node {} (supported: deploy.erase_devices_metadata).",
                    step.interface, step.step, task.node.uuid
                )));
            }
            out.push(step);
        }
        return Ok(out);
    }
    if !env.config.erase_devices_metadata {
        return Ok(Vec::new());
    }
    let step: AgentStep = serde_json::from_value(json!({
        "interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "args": {},
        "reboot_requested": false, "abortable": true,
    }))
    .map_err(|e| DriverError::failed(e.to_string()))?;
    Ok(vec![step])
}

/// Whether there is anything to clean: the API's steps for a manual clean, else the automated
/// ones; nothing to clean skips the rest of the plan.
fn check_clean_steps(task: &mut Task) -> Result<StepResult, DriverError> {
    let env = agent_env(task)?;
    if clean_steps(task, &env)?.is_empty() {
        return Ok(StepResult::outcome(Outcome::Finished));
    }
    Ok(StepResult::next())
}

/// Clean step `index`, one heartbeat at a time: started, then asked about until it ends; then
/// the next one. A transport error is retried at the next heartbeat.
async fn clean_step(task: &mut Task, index: u32, started: bool) -> Result<StepResult, DriverError> {
    let again = |index, started| Ok(StepResult::outcome(Outcome::AgainAtHeartbeat(Step::CleanStep { index, started })));
    let env = agent_env(task)?;
    let steps = clean_steps(task, &env)?;
    let target = agent_target(task)?;
    let mut index = index;
    if started {
        let last = match env.client.last_command(&target, "clean.execute_clean_step").await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(node = %task.node.uuid, error = %e, "cannot poll the agent; will retry on the next heartbeat");
                return again(index, true);
            }
        };
        match last.map(|c| (c.command_status, c.command_error)) {
            Some((CommandStatus::Running, _)) | None => return again(index, true),
            Some((CommandStatus::Failed | CommandStatus::VersionMismatch, err)) => {
                let step = steps.get(index as usize).map(|s| s.step.clone()).unwrap_or_default();
                return Err(DriverError::failed(format!(
                    "Agent returned error for clean step {step} on node {}: {}",
                    task.node.uuid,
                    err.map(|e| e.to_string()).unwrap_or_else(|| "unknown error".into())
                )));
            }
            Some((CommandStatus::Succeeded, _)) => {
                if let Some(done) = steps.get(index as usize) {
                    task.record(Actor::Node, Actor::Conductor, &cleaning::done(&done.step));
                }
                index += 1;
            }
        }
    }
    let Some(step) = steps.get(index as usize) else {
        task.node.clean_step.clear();
        return Ok(StepResult::next());
    };
    let step_json = serde_json::to_value(step).map_err(|e| DriverError::failed(e.to_string()))?;
    task.node.clean_step = step_json.as_object().cloned().unwrap_or_default();
    task.record(Actor::Conductor, Actor::Node, &cleaning::execute(&step.interface, &step.step));
    match env.client.execute_clean_step(&target, step, &node_doc(task), &ports_doc(task), None).await {
        Ok(r) if r.command_status == CommandStatus::Failed => Err(DriverError::failed(format!(
            "Agent returned error for clean step {} on node {}: {}",
            step.step,
            task.node.uuid,
            r.command_error.map(|e| e.to_string()).unwrap_or_default()
        ))),
        Ok(_) => again(index, true),
        Err(e) => {
            tracing::warn!(node = %task.node.uuid, error = %e, "cannot start clean step; will retry on the next heartbeat");
            again(index, false)
        }
    }
}
