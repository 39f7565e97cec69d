//! The `direct` deploy interface: the deploy ramdisk downloads the image from a temporary URL and
//! writes it itself (the user guide's "Example 2: PXE Boot and Direct Deploy Process").

use super::agent_base::{self, agent_env, agent_target, image_info};
use super::steps::{Outcome, Plans, StepCtx, StepResult, quiet, says};
use super::{DeployInterface, DriverError, Task};
use async_trait::async_trait;
use ferric_types::agent::CommandStatus;
use ferric_types::models::Step;
use ferric_types::trace::{Actor, Says, seed};
use serde_json::Value;
use std::sync::LazyLock;

pub struct DirectDeploy;

/// The direct deploy: the agent is given the image at its first heartbeat, then asked at each
/// heartbeat whether it is written.
static PLANS: LazyLock<Plans> = LazyLock::new(|| {
    agent_base::plans(
        seed::CACHE_DIRECT,
        vec![
            says(Step::PassImage, Says::new(Actor::Conductor, Actor::Node, seed::CONTINUE_DEPLOY)),
            says(Step::AwaitImageWritten, Says::new(Actor::Conductor, Actor::Node, seed::IS_DEPLOY_DONE)),
            quiet(Step::ReadRootUuid),
        ],
        seed::PREPARE_PXE_INSTANCE_IF_NEEDED,
    )
});

/// The config drive to hand the agent: a gzip+base64 string or a URL, as given at deploy time.
fn configdrive(task: &Task) -> Option<String> {
    match task.node.instance_info.get("configdrive")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Step again at the next heartbeat, for a transport error worth retrying.
fn retry(task: &Task, step: Step, what: &str, e: impl std::fmt::Display) -> Result<StepResult, DriverError> {
    tracing::warn!(node = %task.node.uuid, error = %e, "{what}; will retry on the next heartbeat");
    Ok(StepResult::outcome(Outcome::AgainAtHeartbeat(step)))
}

/// `standby.prepare_image`: the agent starts downloading and writing.
async fn pass_image(task: &mut Task) -> Result<StepResult, DriverError> {
    let env = agent_env(task)?;
    let target = agent_target(task)?;
    let info = image_info(task, &env)?;
    let cd = configdrive(task);
    match env.client.prepare_image(&target, &info, cd.as_deref()).await {
        Ok(r) if r.command_status == CommandStatus::Failed => Err(DriverError::failed(format!(
            "Agent returned error for deploy step write_image on node {}: {}",
            task.node.uuid,
            r.command_error.map(|e| e.to_string()).unwrap_or_default()
        ))),
        Ok(_) => Ok(StepResult::outcome(Outcome::NextAtHeartbeat).replied(Says::new(
            Actor::Node,
            Actor::HttpStore,
            seed::DOWNLOADS_IMAGE,
        ))),
        Err(e) => retry(task, Step::PassImage, "cannot start the image write", e),
    }
}

/// Asks whether `standby.prepare_image` finished: still working, done, or failed.
async fn await_image_written(task: &mut Task) -> Result<StepResult, DriverError> {
    let env = agent_env(task)?;
    let target = agent_target(task)?;
    let last = match env.client.last_command(&target, "standby.prepare_image").await {
        Ok(l) => l,
        Err(e) => return retry(task, Step::AwaitImageWritten, "cannot poll the agent", e),
    };
    let answer = |label| Says::new(Actor::Node, Actor::Conductor, label);
    match last {
        Some(c) if c.command_status == CommandStatus::Running => {
            Ok(StepResult::outcome(Outcome::AgainAtHeartbeat(Step::AwaitImageWritten))
                .replied(answer(seed::STILL_WORKING)))
        }
        Some(c) if c.command_status == CommandStatus::Succeeded => {
            Ok(StepResult::next().replied(answer(seed::DEPLOY_IS_DONE)))
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

/// `root=UUID=` of a netbooted partition image names the filesystem: ferric-agent reports it
/// apart from the partition's UUID (IPA's "root uuid" is the filesystem's).
async fn read_root_uuid(task: &mut Task) -> Result<StepResult, DriverError> {
    let env = agent_env(task)?;
    let target = agent_target(task)?;
    let uuids = env.client.get_partition_uuids(&target).await.map_err(|e| {
        DriverError::failed(format!("Cannot read partition UUIDs from the agent of node {}: {e}", task.node.uuid))
    })?;
    let root = uuids.get("root filesystem uuid").or_else(|| uuids.get("root uuid"));
    if let Some(root) = root.and_then(|v| v.as_str()) {
        task.node.driver_internal_info.insert("root_uuid_or_disk_id".into(), Value::String(root.to_string()));
    }
    Ok(StepResult::next())
}

#[async_trait]
impl DeployInterface for DirectDeploy {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        agent_base::validate(task)
    }

    fn plans(&self) -> &Plans {
        &PLANS
    }

    async fn run_step(&self, step: Step, task: &mut Task, _ctx: StepCtx<'_>) -> Result<StepResult, DriverError> {
        match step {
            Step::PassImage => pass_image(task).await,
            Step::AwaitImageWritten => await_image_written(task).await,
            Step::ReadRootUuid => read_root_uuid(task).await,
            other => match agent_base::run_common_step(other, task).await {
                Some(r) => r,
                None => Err(DriverError::Unsupported(format!("the direct deploy has no step {other:?}"))),
            },
        }
    }

    async fn abort(&self, task: &mut Task) -> Result<(), DriverError> {
        agent_base::abort(task).await
    }
}
