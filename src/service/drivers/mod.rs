//! Hardware types and their interfaces (power, management, boot, deploy, network), one trait each.
//!
//! A node names a hardware type (`driver`) and one implementation per interface kind. The conductor
//! resolves those names to trait objects ([`Registry::interfaces_for`]) and hands them, with the
//! locked node, to each operation as a [`Task`]. Interfaces return outcomes; the conductor owns
//! state transitions, persistence, power polling and the order of a deploy's steps (a deploy
//! interface hands it [`steps::Plan`]s and runs only its own steps).

pub mod agent_base;
pub mod agent_client;
pub mod direct;
pub mod fake;
pub mod ipmitool;
pub mod iscsi_deploy;
pub mod network;
pub mod passive;
pub mod pxe_boot;
pub mod redfish;
pub mod redfish_boot;
mod registry;
pub mod steps;

pub use registry::{HardwareType, InterfaceSet, Registry, RegistryConfig};

pub mod redfish_bios;
pub mod redfish_inspect;

use async_trait::async_trait;
use ferric_types::clock::Clock;
use ferric_types::models::{BootDevice, JsonMap, Node, Port, PowerState, PowerTarget, Step};
pub use ferric_types::rpc::{Heartbeat, IndicatorInfo, Indicators};
use ferric_types::trace::{Actor, Recorder};
use std::sync::Arc;
use steps::{Plans, StepCtx, StepResult};

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
    /// The hardware did not answer, or was busy: asking again may work.
    #[error("{0}")]
    Busy(String),
}

impl DriverError {
    pub fn failed(msg: impl Into<String>) -> Self {
        DriverError::Failed(msg.into())
    }

    /// Worth asking again (while polling).
    pub fn is_transient(&self) -> bool {
        matches!(self, DriverError::Timeout(_) | DriverError::Busy(_))
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

/// A power change a power interface is asked for. Reboots are the conductor's: off, then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    On,
    /// Hard off.
    Off,
    /// ACPI soft off: the operating system shuts down.
    SoftOff,
}

impl PowerRequest {
    /// The state the node is in once the request is done.
    pub fn end_state(self) -> PowerState {
        match self {
            PowerRequest::On => PowerState::On,
            PowerRequest::Off | PowerRequest::SoftOff => PowerState::Off,
        }
    }
}

/// Where a power request left the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerProgress {
    /// The node is in the requested state (it already was, or the interface knows it got there).
    Reached,
    /// The hardware was asked: the conductor polls until the power state reads as requested.
    Requested,
}

#[async_trait]
pub trait PowerInterface: Send + Sync {
    fn validate(&self, task: &Task) -> Result<(), DriverError>;
    async fn get_power_state(&self, task: &mut Task) -> Result<PowerState, DriverError>;
    /// Asks the hardware for `request` and returns once it is asked. Waiting for the change is
    /// the conductor's, the same for every driver: it polls [`PowerInterface::get_power_state`].
    async fn request_power(&self, task: &mut Task, request: PowerRequest) -> Result<PowerProgress, DriverError>;
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
    /// The device the deploy ramdisk boots from once `prepare_ramdisk` is done: the network for
    /// PXE/iPXE, the virtual CD for virtual media.
    fn ramdisk_boot_device(&self) -> BootDevice {
        BootDevice::Pxe
    }
    /// This boot's words for a message of the user guide's sequence diagrams, which draw PXE:
    /// the same (the default), its own, or none where it has no such step (virtual media sets
    /// no DHCP boot options).
    fn says(&self, label: &'static str) -> Option<&'static str> {
        Some(label)
    }
    /// Boot environment for the deploy ramdisk (PXE config, cached kernel/ramdisk).
    async fn prepare_ramdisk(&self, task: &mut Task) -> Result<(), DriverError>;
    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError>;
    /// Boot environment for the deployed instance (netboot config or local boot).
    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError>;
    async fn clean_up_instance(&self, task: &mut Task) -> Result<(), DriverError>;
}

/// A deploy interface: which steps a deploy, an undeploy and a cleaning take (its [`Plans`], run by
/// the conductor), and the steps that are its own (writing the image, talking to the agent).
#[async_trait]
pub trait DeployInterface: Send + Sync {
    fn validate(&self, task: &Task) -> Result<(), DriverError>;
    fn plans(&self) -> &Plans;
    /// Runs one of this interface's own steps (any step of its plans the conductor does not
    /// run through the node's other interfaces).
    async fn run_step(&self, step: Step, task: &mut Task, ctx: StepCtx<'_>) -> Result<StepResult, DriverError> {
        let _ = ctx;
        Err(DriverError::Unsupported(format!(
            "Deploy interface {} of node {} has no step {step:?}.",
            task.node.deploy_interface, task.node.uuid
        )))
    }
    /// After a failure, an abort or a timeout: stops what the ramdisk was doing (and keeps its
    /// logs). The conductor then powers the node off and cleans up.
    async fn abort(&self, task: &mut Task) -> Result<(), DriverError> {
        let _ = task;
        Ok(())
    }
}

/// An out-of-band inspect interface: reads the hardware through the BMC, with no ramdisk and no
/// wait (the `agent` inspect interface is the conductor's own flow, `conductor/inspection.rs`).
#[async_trait]
pub trait InspectInterface: Send + Sync {
    fn validate(&self, task: &Task) -> Result<(), DriverError>;
    /// Records what it found in `task.node.properties` (`cpus`, `cpu_arch`, `memory_mb`,
    /// `local_gb`) and returns the MAC addresses of the NICs found: the conductor creates the
    /// ports that do not exist yet.
    async fn inspect_hardware(&self, task: &mut Task) -> Result<Vec<ferric_types::models::MacAddr>, DriverError>;
}

/// What an out-of-band step asks of the conductor once it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    Done,
    /// The change applies at the next reset (BIOS settings): the conductor reboots the node.
    Reboot,
}

/// Clean steps an interface runs itself through the BMC (Ironic's `bios` and `firmware` steps):
/// a manual cleaning made only of such steps boots no ramdisk.
#[async_trait]
pub trait OutOfBandSteps: Send + Sync {
    /// The steps offered (Ironic's names).
    fn step_names(&self) -> &'static [&'static str];
    fn validate(&self, task: &Task) -> Result<(), DriverError>;
    async fn run_step(&self, task: &mut Task, step: &str, args: &JsonMap) -> Result<StepEnd, DriverError>;
    /// The BIOS settings as they now are, for the API's cache (`GET /v1/nodes/{id}/bios`);
    /// `None` when this interface has none.
    async fn bios_settings(
        &self,
        task: &mut Task,
    ) -> Result<Option<Vec<ferric_types::models::BiosSetting>>, DriverError> {
        let _ = task;
        Ok(None)
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
