//! Hardware types and their interfaces (power, management, boot, deploy, network), one trait each.
//!
//! A node names a hardware type (`driver`) and one implementation per interface kind. The conductor
//! resolves those names to trait objects ([`Registry::interfaces_for`]) and hands them, with the
//! locked node, to each operation as a [`Task`]. Interfaces return outcomes; the conductor owns
//! state transitions and persistence.

pub mod agent_base;
pub mod agent_client;
pub mod direct;
pub mod fake;
pub mod ipmitool;
pub mod iscsi_deploy;
pub mod network;
pub mod passive;
pub mod pxe_boot;
mod registry;

pub use registry::{HardwareType, InterfaceSet, Registry, RegistryConfig};

use crate::trace::{Actor, Recorder};
use async_trait::async_trait;
use ferric_types::clock::Clock;
use ferric_types::models::{BootDevice, Node, Port, PowerState, PowerTarget};
pub use ferric_types::rpc::{Heartbeat, IndicatorInfo, Indicators};
use std::sync::Arc;
use std::time::Duration;

/// Why a driver operation failed. `Invalid*`/`Missing*` come from validation (the API answers
/// 400); the rest end the operation with `last_error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Timeout(String),
}

impl DriverError {
    pub fn failed(msg: impl Into<String>) -> Self {
        DriverError::Failed(msg.into())
    }
}

/// Services drivers may use. Filled in by whoever assembles the service (production, a simulated
/// fleet, a QEMU lab): that is where real and simulated backends plug in.
#[derive(Clone, Default)]
pub struct DriverEnv {
    pub clock: Clock,
    pub trace: Recorder,
    pub fake: FakeDelays,
    /// The agent client and image service, for agent-based deploys (`direct`, `iscsi`).
    pub agent: Option<Arc<agent_base::AgentEnv>>,
    /// PXE/iPXE boot services (roots, image cache, DHCP options) for the `pxe` and `ipxe` boot
    /// interfaces; `None` when this conductor runs none.
    pub boot: Option<Arc<pxe_boot::BootEnv>>,
}

/// Optional delays for the fake interfaces (Ironic's `[fake]` options), to exercise locking and
/// concurrency without hardware.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct FakeDelays {
    pub power_ms: u64,
    pub boot_ms: u64,
    pub deploy_ms: u64,
    pub management_ms: u64,
}

/// A locked node, its ports and the interfaces that drive it.
#[derive(Clone)]
pub struct Task {
    pub node: Node,
    pub ports: Vec<Port>,
    pub driver: Arc<InterfaceSet>,
    pub env: Arc<DriverEnv>,
}

impl Task {
    /// Records one message of the deploy trace for this node.
    pub fn record(&self, from: Actor, to: Actor, label: &str) {
        self.env.trace.record(self.node.uuid, from, to, label);
    }
}

/// How a multi-step operation left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Finished.
    Done,
    /// Waiting for the ramdisk to call back (`wait` event).
    Wait,
}

/// What a heartbeat asks of the conductor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Nothing to do yet (the agent is still working, or this interface ignores heartbeats).
    Nothing,
    /// The awaited work is finished: resume the operation (`resume` event, then continue).
    Resume,
}

#[async_trait]
pub trait PowerInterface: Send + Sync {
    fn validate(&self, task: &Task) -> Result<(), DriverError>;
    async fn get_power_state(&self, task: &mut Task) -> Result<PowerState, DriverError>;
    /// Changes power and returns once the change is confirmed (or fails).
    async fn set_power_state(
        &self,
        task: &mut Task,
        target: PowerTarget,
        timeout: Option<Duration>,
    ) -> Result<(), DriverError>;
    fn supported_power_states(&self) -> Vec<PowerTarget> {
        vec![PowerTarget::On, PowerTarget::Off, PowerTarget::Reboot]
    }
}

#[async_trait]
pub trait ManagementInterface: Send + Sync {
    fn validate(&self, task: &Task) -> Result<(), DriverError>;
    fn supported_boot_devices(&self) -> Vec<BootDevice>;
    async fn set_boot_device(&self, task: &mut Task, device: BootDevice, persistent: bool) -> Result<(), DriverError>;
    /// The current device and whether it is persistent, when the BMC knows.
    async fn get_boot_device(&self, task: &mut Task) -> Result<(Option<BootDevice>, Option<bool>), DriverError>;
    /// Injects a non-maskable interrupt (API 1.29).
    async fn inject_nmi(&self, task: &mut Task) -> Result<(), DriverError> {
        Err(unsupported(task, "inject_nmi"))
    }
    /// component → indicator → what it supports (API 1.63).
    fn supported_indicators(&self, task: &Task) -> Result<Indicators, DriverError> {
        Err(unsupported(task, "get_supported_indicators"))
    }
    async fn set_indicator_state(
        &self,
        task: &mut Task,
        component: &str,
        indicator: &str,
        state: &str,
    ) -> Result<(), DriverError> {
        let _ = (component, indicator, state);
        Err(unsupported(task, "set_indicator_state"))
    }
    async fn get_indicator_state(
        &self,
        task: &mut Task,
        component: &str,
        indicator: &str,
    ) -> Result<String, DriverError> {
        let _ = (component, indicator);
        Err(unsupported(task, "get_indicator_state"))
    }
    /// Sets the boot mode (`uefi` or `bios`) for the next boot (API 1.76).
    async fn set_boot_mode(&self, task: &mut Task, mode: &str) -> Result<(), DriverError> {
        let _ = mode;
        Err(unsupported(task, "set_boot_mode"))
    }
    async fn set_secure_boot_state(&self, task: &mut Task, enabled: bool) -> Result<(), DriverError> {
        let _ = enabled;
        Err(unsupported(task, "set_secure_boot_state"))
    }
}

/// Ironic's UnsupportedDriverExtension for an operation the node's interface lacks.
pub fn unsupported(task: &Task, extension: &str) -> DriverError {
    DriverError::Unsupported(format!(
        "Driver {} does not support {extension} (disabled or not implemented).",
        task.node.driver
    ))
}

#[async_trait]
pub trait BootInterface: Send + Sync {
    fn validate(&self, task: &Task) -> Result<(), DriverError>;
    /// Boot environment for the deploy ramdisk (PXE config, cached kernel/ramdisk).
    async fn prepare_ramdisk(&self, task: &mut Task) -> Result<(), DriverError>;
    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError>;
    /// Boot environment for the deployed instance (netboot config or local boot).
    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError>;
    async fn clean_up_instance(&self, task: &mut Task) -> Result<(), DriverError>;
}

#[async_trait]
pub trait DeployInterface: Send + Sync {
    fn validate(&self, task: &Task) -> Result<(), DriverError>;
    /// Starts a deploy (node in `deploying`).
    async fn deploy(&self, task: &mut Task) -> Result<StepOutcome, DriverError>;
    /// A heartbeat while the node waits (`wait call-back`, `clean wait`, ...).
    async fn heartbeat(&self, task: &mut Task, hb: &Heartbeat) -> Result<HeartbeatAction, DriverError> {
        let _ = (task, hb);
        Ok(HeartbeatAction::Nothing)
    }
    /// Continues a deploy after `Resume` (node back in `deploying`).
    async fn continue_deploy(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        let _ = task;
        Ok(StepOutcome::Done)
    }
    /// Undeploy (node in `deleting`).
    async fn tear_down(&self, task: &mut Task) -> Result<(), DriverError>;
    /// Starts cleaning (automated, or manual with `driver_internal_info.clean_steps`).
    async fn prepare_cleaning(&self, task: &mut Task) -> Result<StepOutcome, DriverError>;
    /// Continues cleaning after `Resume`.
    async fn continue_cleaning(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        let _ = task;
        Ok(StepOutcome::Done)
    }
    /// Leaves cleaning (success or failure): boot and network clean-up.
    async fn tear_down_cleaning(&self, task: &mut Task) -> Result<(), DriverError>;
    /// Called when a wait times out or is aborted, to stop what the ramdisk was doing.
    async fn abort(&self, task: &mut Task) -> Result<(), DriverError> {
        let _ = task;
        Ok(())
    }
}

/// A VIF attached to one of the node's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vif {
    pub id: String,
}

#[async_trait]
pub trait NetworkInterface: Send + Sync {
    fn validate(&self, task: &Task) -> Result<(), DriverError>;
    async fn add_provisioning_network(&self, task: &mut Task) -> Result<(), DriverError>;
    async fn remove_provisioning_network(&self, task: &mut Task) -> Result<(), DriverError>;
    async fn configure_tenant_networks(&self, task: &mut Task) -> Result<(), DriverError>;
    async fn unconfigure_tenant_networks(&self, task: &mut Task) -> Result<(), DriverError>;
    async fn add_cleaning_network(&self, task: &mut Task) -> Result<(), DriverError>;
    async fn remove_cleaning_network(&self, task: &mut Task) -> Result<(), DriverError>;
    fn vif_list(&self, task: &Task) -> Vec<Vif> {
        network::vif_list(task)
    }
    fn vif_attach(&self, task: &mut Task, vif: &str, port: Option<&str>) -> Result<(), DriverError> {
        network::vif_attach(task, vif, port)
    }
    fn vif_detach(&self, task: &mut Task, vif: &str) -> Result<(), DriverError> {
        network::vif_detach(task, vif)
    }
}

/// The interface kinds ferric implements only as names (validate always passes): bios, console,
/// firmware, inspect, raid, rescue, storage, vendor. Inspection and rescue run as no-op work.
pub const PASSIVE_KINDS: &[&str] = &["bios", "console", "firmware", "inspect", "raid", "rescue", "storage", "vendor"];

pub use ferric_types::models::AGENT_TOKEN_KEY;

/// Changes a node's power through its power interface, as every caller should (Ironic's
/// `node_power_action`): records the trace message and the new state, and forgets the agent's
/// token and URL when the ramdisk goes away, so a rebooted agent must look itself up again.
pub async fn node_power_action(
    task: &mut Task,
    target: PowerTarget,
    timeout: Option<Duration>,
) -> Result<(), DriverError> {
    let label = match target {
        PowerTarget::On => "POWER ON",
        PowerTarget::Off | PowerTarget::SoftOff => "POWER OFF",
        PowerTarget::Reboot | PowerTarget::SoftReboot => "REBOOT",
    };
    task.record(Actor::Conductor, Actor::Node, label);
    let power = task.driver.power.clone();
    power.set_power_state(task, target, timeout).await?;
    task.node.power_state = Some(target.end_state());
    let now = task.env.clock.now();
    let dii = &mut task.node.driver_internal_info;
    dii.insert(
        "last_power_state_change".into(),
        serde_json::Value::String(now.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
    );
    if target != PowerTarget::On {
        dii.remove(AGENT_TOKEN_KEY);
        dii.remove("agent_url");
    }
    Ok(())
}
