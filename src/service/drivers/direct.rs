//! The `direct` deploy interface: the deploy ramdisk downloads the image from a temporary URL and
//! writes it itself (the user guide's "Example 2: PXE Boot and Direct Deploy Process").

use super::agent_base::{self, agent_env, agent_target, image_info, phase, set_phase};
use super::{DeployInterface, DriverError, Heartbeat, HeartbeatAction, StepOutcome, Task};
use crate::trace::{Actor, seed};
use async_trait::async_trait;
use ferric_types::agent::CommandStatus;
use serde_json::Value;

pub struct DirectDeploy;

/// The config drive to hand the agent: a gzip+base64 string or a URL, as given at deploy time.
fn configdrive(task: &Task) -> Option<String> {
    match task.node.instance_info.get("configdrive")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

#[async_trait]
impl DeployInterface for DirectDeploy {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        agent_base::validate_instance_info(task)?;
        task.driver.boot.validate(task)?;
        Ok(())
    }

    async fn deploy(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        let env = agent_env(task)?;
        // Fail fast, before any power action, if the image cannot be described to the agent.
        let info = image_info(task, &env)?;
        task.node
            .driver_internal_info
            .insert("is_whole_disk_image".into(), (info.image_type.as_deref() != Some("partition")).into());
        agent_base::boot_deploy_ramdisk(task, seed::CACHE_DIRECT).await?;
        Ok(StepOutcome::Wait)
    }

    async fn heartbeat(&self, task: &mut Task, _hb: &Heartbeat) -> Result<HeartbeatAction, DriverError> {
        if task.node.provision_state == ferric_types::models::ProvisionState::CleanWait {
            return agent_base::clean_heartbeat(task).await;
        }
        let env = agent_env(task)?;
        let target = agent_target(task)?;
        match phase(task).as_deref() {
            Some("writing") => {
                task.record(Actor::Conductor, Actor::Node, seed::IS_DEPLOY_DONE);
                let last = match env.client.last_command(&target, "standby.prepare_image").await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(node = %task.node.uuid, error = %e, "cannot poll the agent; will retry on the next heartbeat");
                        return Ok(HeartbeatAction::Nothing);
                    }
                };
                match last {
                    Some(c) if c.command_status == CommandStatus::Running => {
                        task.record(Actor::Node, Actor::Conductor, seed::STILL_WORKING);
                        Ok(HeartbeatAction::Nothing)
                    }
                    Some(c) if c.command_status == CommandStatus::Succeeded => {
                        task.record(Actor::Node, Actor::Conductor, seed::DEPLOY_IS_DONE);
                        set_phase(task, Some("written"));
                        Ok(HeartbeatAction::Resume)
                    }
                    Some(c) => Err(DriverError::failed(format!(
                        "Agent returned error for deploy step write_image on node {}: {}",
                        task.node.uuid,
                        c.command_error.map(|e| e.to_string()).unwrap_or_else(|| "unknown error".into())
                    ))),
                    // The agent lost the command (it restarted): the write must start over.
                    None => Err(DriverError::failed(format!(
                        "The agent of node {} has no record of the image write; it may have restarted.",
                        task.node.uuid
                    ))),
                }
            }
            Some("written") => Ok(HeartbeatAction::Resume),
            _ => {
                task.record(Actor::Conductor, Actor::Node, seed::CONTINUE_DEPLOY);
                let info = image_info(task, &env)?;
                let cd = configdrive(task);
                match env.client.prepare_image(&target, &info, cd.as_deref()).await {
                    Ok(r) if r.command_status == CommandStatus::Failed => Err(DriverError::failed(format!(
                        "Agent returned error for deploy step write_image on node {}: {}",
                        task.node.uuid,
                        r.command_error.map(|e| e.to_string()).unwrap_or_default()
                    ))),
                    Ok(_) => {
                        task.record(Actor::Node, Actor::HttpStore, seed::DOWNLOADS_IMAGE);
                        set_phase(task, Some("writing"));
                        Ok(HeartbeatAction::Nothing)
                    }
                    Err(e) => {
                        tracing::warn!(node = %task.node.uuid, error = %e, "cannot start the image write; will retry on the next heartbeat");
                        Ok(HeartbeatAction::Nothing)
                    }
                }
            }
        }
    }

    async fn continue_deploy(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        let env = agent_env(task)?;
        let target = agent_target(task)?;
        let uuids = env.client.get_partition_uuids(&target).await.map_err(|e| {
            DriverError::failed(format!("Cannot read partition UUIDs from the agent of node {}: {e}", task.node.uuid))
        })?;
        // `root=UUID=` of a netbooted partition image names the filesystem: ferric-agent reports
        // it apart from the partition's UUID (IPA's "root uuid" is the filesystem's).
        let root = uuids.get("root filesystem uuid").or_else(|| uuids.get("root uuid"));
        if let Some(root) = root.and_then(|v| v.as_str()) {
            task.node.driver_internal_info.insert("root_uuid_or_disk_id".into(), Value::String(root.to_string()));
        }
        agent_base::finish_deploy(task, &env, seed::PREPARE_PXE_INSTANCE_IF_NEEDED).await?;
        Ok(StepOutcome::Done)
    }

    async fn tear_down(&self, task: &mut Task) -> Result<(), DriverError> {
        agent_base::tear_down(task).await
    }

    async fn prepare_cleaning(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        agent_base::prepare_cleaning(task).await
    }

    async fn tear_down_cleaning(&self, task: &mut Task) -> Result<(), DriverError> {
        agent_base::tear_down_cleaning(task).await
    }

    async fn abort(&self, task: &mut Task) -> Result<(), DriverError> {
        agent_base::abort(task).await
    }
}
