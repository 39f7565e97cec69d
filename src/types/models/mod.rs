//! Ironic's objects (node, port, portgroup, chassis, conductor) as serde models with typed IDs.
//!
//! These are the stored shapes; the API renders them per microversion (`api::render`).

mod allocation;
mod ids;
mod node;
mod port;
pub mod schema;
mod states;

pub use allocation::{
    Allocation, BiosSetting, DeployTemplate, FirmwareComponent, HistoryEvent, VolumeConnector, VolumeTarget,
    allocation_state,
};
pub use ids::{
    AllocationId, ChassisId, DeployTemplateId, HistoryId, NodeId, PortId, PortgroupId, VolumeConnectorId,
    VolumeTargetId,
};
pub use node::{AGENT_TOKEN_KEY, Chassis, ConductorRecord, INTERFACE_NAMES, Node, Portgroup};
pub use port::{MacAddr, Port};
pub use states::{BootDevice, PowerState, PowerTarget, ProvisionState};

/// JSON object used for Ironic's free-form dict fields (`extra`, `driver_info`, ...).
pub type JsonMap = serde_json::Map<String, serde_json::Value>;
