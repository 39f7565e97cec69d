//! What the agent-based deploy interfaces (`direct`, `iscsi`) share: booting the deploy ramdisk,
//! finishing a deploy, soft power off through the agent, and cleaning through the agent. Each
//! step records the user guide's message for it, so a deploy can be compared with the diagrams.

use super::{DriverError, Task, node_power_action};
use crate::drivers::agent_client::{AgentClient, AgentTarget};
use crate::images::ImageService;
use crate::trace::{Actor, seed};
use ferric_types::agent::{CommandStatus, ImageInfo, Step};
use ferric_types::models::{BootDevice, PowerState, PowerTarget};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Key in `driver_internal_info` for how far an agent deploy or clean got.
pub const PHASE_KEY: &str = "agent_phase";
/// Key in `driver_internal_info` for the index of the running clean step.
const CLEAN_STEP_INDEX: &str = "clean_step_index";
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
}

impl Default for AgentDeployConfig {
    fn default() -> Self {
        AgentDeployConfig {
            soft_power_off_timeout: 30,
            collect_ramdisk_logs: "on_failure".into(),
            temp_url_ttl: 3600,
            erase_devices_metadata: true,
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
    let dii = &task.node.driver_internal_info;
    let url = dii.get("agent_url").and_then(|v| v.as_str()).ok_or_else(|| {
        DriverError::failed(format!(
            "No agent URL recorded for node {}; the agent has not heartbeated yet.",
            task.node.uuid
        ))
    })?;
    let token = dii.get(super::AGENT_TOKEN_KEY).and_then(|v| v.as_str()).map(str::to_string);
    Ok(AgentTarget { url: url.to_string(), token })
}

pub(crate) fn phase(task: &Task) -> Option<String> {
    task.node.driver_internal_info.get(PHASE_KEY).and_then(|v| v.as_str()).map(str::to_string)
}

pub(crate) fn set_phase(task: &mut Task, p: Option<&str>) {
    match p {
        Some(p) => {
            task.node.driver_internal_info.insert(PHASE_KEY.into(), json!(p));
        }
        None => {
            task.node.driver_internal_info.remove(PHASE_KEY);
        }
    }
}

fn record(task: &Task, from: Actor, to: Actor, label: &str) {
    task.record(from, to, label);
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

/// Whether the deployed instance boots over the network (partition image with netboot): the
/// boot interfaces' rule, so the boot device and the boot environment agree.
pub(crate) fn is_netboot(task: &Task) -> bool {
    super::pxe_boot::is_netboot(&task.node)
}

/// The deploy's first half: from `deploying` to the node rebooting into the deploy ramdisk.
/// `cache_label` is the diagram's caching message, which differs between the two flows.
pub(crate) async fn boot_deploy_ramdisk(task: &mut Task, cache_label: &str) -> Result<(), DriverError> {
    record(task, Actor::Conductor, Actor::Conductor, seed::VALIDATE_INTERFACES);
    record(task, Actor::Conductor, Actor::HttpStore, seed::STORE_CONFIGDRIVE);
    node_power_action(task, PowerTarget::Off, None).await?;
    record(task, Actor::Conductor, Actor::Neutron, seed::ATTACH_PROVISIONING);
    let net = task.driver.network.clone();
    net.add_provisioning_network(task).await?;
    record(task, Actor::Conductor, Actor::Neutron, seed::UPDATE_DHCP);
    record(task, Actor::Conductor, Actor::Conductor, seed::PREPARE_PXE_DEPLOY);
    let boot = task.driver.boot.clone();
    boot.prepare_ramdisk(task).await?;
    record(task, Actor::Conductor, Actor::Node, seed::SET_PXE_BOOT);
    let mgmt = task.driver.management.clone();
    mgmt.set_boot_device(task, BootDevice::Pxe, false).await?;
    record(task, Actor::Conductor, Actor::Conductor, cache_label);
    set_phase(task, Some("booting"));
    node_power_action(task, PowerTarget::Reboot, None).await?;
    Ok(())
}

/// Powers the node off through the agent, falling back to the BMC (the seed's "POWER OFF" after
/// a deploy: "asks the ramdisk agent to soft power off the node").
pub(crate) async fn soft_power_off(task: &mut Task, env: &AgentEnv) -> Result<(), DriverError> {
    record(task, Actor::Conductor, Actor::Node, seed::POWER_OFF);
    let asked = match agent_target(task) {
        Ok(t) => env.client.power_off(&t).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let power = task.driver.power.clone();
    let mut off = false;
    match asked {
        Ok(_) => {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(env.config.soft_power_off_timeout);
            while tokio::time::Instant::now() < deadline {
                if matches!(power.get_power_state(task).await, Ok(PowerState::Off)) {
                    off = true;
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if !off {
                tracing::warn!(node = %task.node.uuid, "soft power off through the agent timed out; powering off through the BMC");
            }
        }
        Err(e) => {
            tracing::warn!(node = %task.node.uuid, error = %e, "agent power off failed; powering off through the BMC")
        }
    }
    if !off {
        power.set_power_state(task, PowerTarget::Off, None).await?;
    }
    task.node.power_state = Some(PowerState::Off);
    task.node.driver_internal_info.remove(super::AGENT_TOKEN_KEY);
    task.node.driver_internal_info.remove("agent_url");
    Ok(())
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

/// The deploy's second half, after the image is on the disk: boot configuration, power off,
/// networks, power on. `prepare_label` is the diagram's wording for the instance boot step.
pub(crate) async fn finish_deploy(task: &mut Task, env: &AgentEnv, prepare_label: &str) -> Result<(), DriverError> {
    record(task, Actor::Conductor, Actor::Node, seed::INSTALL_BOOTLOADER);
    record(task, Actor::Conductor, Actor::Neutron, seed::UPDATE_DHCP);
    record(task, Actor::Conductor, Actor::Conductor, prepare_label);
    let boot = task.driver.boot.clone();
    boot.prepare_instance(task).await?;
    record(task, Actor::Conductor, Actor::Node, seed::SET_BOOT_DEVICE);
    let device = if is_netboot(task) { BootDevice::Pxe } else { BootDevice::Disk };
    let mgmt = task.driver.management.clone();
    mgmt.set_boot_device(task, device, true).await?;
    record(task, Actor::Conductor, Actor::Node, seed::COLLECT_LOGS);
    if env.config.collect_ramdisk_logs == "always" {
        collect_logs(task, env, "deploy").await;
    }
    sync_image(task, env).await?;
    soft_power_off(task, env).await?;
    record(task, Actor::Conductor, Actor::Neutron, seed::DETACH_PROVISIONING);
    let net = task.driver.network.clone();
    net.remove_provisioning_network(task).await?;
    boot.clean_up_ramdisk(task).await?;
    record(task, Actor::Conductor, Actor::Neutron, seed::BIND_TENANT);
    net.configure_tenant_networks(task).await?;
    node_power_action(task, PowerTarget::On, None).await?;
    record(task, Actor::Conductor, Actor::Conductor, seed::MARK_ACTIVE);
    set_phase(task, None);
    Ok(())
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

/// A failed or aborted agent deploy: keep the ramdisk's logs (unless configured off) and forget
/// the deploy's phase.
pub(crate) async fn abort(task: &mut Task) -> Result<(), DriverError> {
    if let Ok(env) = agent_env(task) {
        if env.config.collect_ramdisk_logs != "never" {
            collect_logs(task, &env, "failure").await;
        }
    }
    set_phase(task, None);
    Ok(())
}

/// Undeploy: power off through the BMC, instance boot config and tenant networks removed.
pub(crate) async fn tear_down(task: &mut Task) -> Result<(), DriverError> {
    node_power_action(task, PowerTarget::Off, None).await?;
    let boot = task.driver.boot.clone();
    boot.clean_up_instance(task).await?;
    let net = task.driver.network.clone();
    net.unconfigure_tenant_networks(task).await?;
    net.remove_provisioning_network(task).await?;
    set_phase(task, None);
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
fn clean_steps(task: &Task, env: &AgentEnv) -> Result<Vec<Step>, DriverError> {
    if let Some(Value::Array(steps)) = task.node.driver_internal_info.get(CLEAN_STEPS) {
        let mut out = Vec::new();
        for s in steps {
            let mut s = s.clone();
            if let Some(o) = s.as_object_mut() {
                o.entry("priority").or_insert(json!(0));
            }
            let step: Step = serde_json::from_value(s.clone())
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
    let step: Step = serde_json::from_value(json!({
        "interface": "deploy", "step": "erase_devices_metadata", "priority": 99, "args": {},
        "reboot_requested": false, "abortable": true,
    }))
    .map_err(|e| DriverError::failed(e.to_string()))?;
    Ok(vec![step])
}

/// Starts cleaning: boots the ramdisk if there are steps to run.
pub(crate) async fn prepare_cleaning(task: &mut Task) -> Result<super::StepOutcome, DriverError> {
    let env = agent_env(task)?;
    if clean_steps(task, &env)?.is_empty() {
        return Ok(super::StepOutcome::Done);
    }
    let net = task.driver.network.clone();
    net.add_cleaning_network(task).await?;
    let boot = task.driver.boot.clone();
    boot.prepare_ramdisk(task).await?;
    let mgmt = task.driver.management.clone();
    mgmt.set_boot_device(task, BootDevice::Pxe, false).await?;
    set_phase(task, Some("clean-booting"));
    task.node.driver_internal_info.insert(CLEAN_STEP_INDEX.into(), json!(0));
    node_power_action(task, PowerTarget::Reboot, None).await?;
    Ok(super::StepOutcome::Wait)
}

/// A heartbeat during cleaning: starts the next step, or reports the running one finished.
pub(crate) async fn clean_heartbeat(task: &mut Task) -> Result<super::HeartbeatAction, DriverError> {
    use super::HeartbeatAction::Nothing;
    let env = agent_env(task)?;
    let steps = clean_steps(task, &env)?;
    let target = agent_target(task)?;
    let index = task.node.driver_internal_info.get(CLEAN_STEP_INDEX).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
    if phase(task).as_deref() == Some("clean-running") {
        let last = match env.client.last_command(&target, "clean.execute_clean_step").await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(node = %task.node.uuid, error = %e, "cannot poll the agent; will retry on the next heartbeat");
                return Ok(Nothing);
            }
        };
        match last.map(|c| (c.command_status, c.command_error)) {
            Some((CommandStatus::Running, _)) | None => return Ok(Nothing),
            Some((CommandStatus::Failed | CommandStatus::VersionMismatch, err)) => {
                let step = steps.get(index).map(|s| s.step.clone()).unwrap_or_default();
                return Err(DriverError::failed(format!(
                    "Agent returned error for clean step {step} on node {}: {}",
                    task.node.uuid,
                    err.map(|e| e.to_string()).unwrap_or_else(|| "unknown error".into())
                )));
            }
            Some((CommandStatus::Succeeded, _)) => {
                task.node.driver_internal_info.insert(CLEAN_STEP_INDEX.into(), json!(index + 1));
                return start_clean_step(task, &env, &target, &steps, index + 1).await;
            }
        }
    }
    start_clean_step(task, &env, &target, &steps, index).await
}

async fn start_clean_step(
    task: &mut Task,
    env: &AgentEnv,
    target: &AgentTarget,
    steps: &[Step],
    index: usize,
) -> Result<super::HeartbeatAction, DriverError> {
    let Some(step) = steps.get(index) else {
        task.node.clean_step.clear();
        set_phase(task, Some("clean-done"));
        return Ok(super::HeartbeatAction::Resume);
    };
    let step_json = serde_json::to_value(step).map_err(|e| DriverError::failed(e.to_string()))?;
    task.node.clean_step = step_json.as_object().cloned().unwrap_or_default();
    match env.client.execute_clean_step(target, step, &node_doc(task), &ports_doc(task), None).await {
        Ok(r) if r.command_status == CommandStatus::Failed => Err(DriverError::failed(format!(
            "Agent returned error for clean step {} on node {}: {}",
            step.step,
            task.node.uuid,
            r.command_error.map(|e| e.to_string()).unwrap_or_default()
        ))),
        Ok(_) => {
            set_phase(task, Some("clean-running"));
            Ok(super::HeartbeatAction::Nothing)
        }
        Err(e) => {
            tracing::warn!(node = %task.node.uuid, error = %e, "cannot start clean step; will retry on the next heartbeat");
            Ok(super::HeartbeatAction::Nothing)
        }
    }
}

/// Leaves cleaning: power off, ramdisk boot config and cleaning network removed.
pub(crate) async fn tear_down_cleaning(task: &mut Task) -> Result<(), DriverError> {
    // Every step is attempted even when an earlier one fails, so a BMC that stopped answering
    // does not leave the node on the cleaning network with its DHCP entry; the first error wins.
    let power = node_power_action(task, PowerTarget::Off, None).await;
    let boot = task.driver.boot.clone();
    let ramdisk = boot.clean_up_ramdisk(task).await;
    let net = task.driver.network.clone();
    let network = net.remove_cleaning_network(task).await;
    set_phase(task, None);
    task.node.driver_internal_info.remove(CLEAN_STEP_INDEX);
    power.and(ramdisk).and(network)
}
