//! Ironic's objects (node, port, portgroup, chassis, conductor) as serde models with typed IDs.
//!
//! These are the stored shapes; the API renders them per microversion (`api::render`).

mod allocation;
mod deploy_template;
mod history;
mod ids;
mod node;
mod port;
pub mod schema;
mod settings;
mod states;
mod steps;
mod volume;

pub use allocation::{Allocation, allocation_state};
pub use deploy_template::DeployTemplate;
pub use history::HistoryEvent;
pub use ids::{
    AllocationId, ChassisId, DeployTemplateId, HistoryId, NodeId, PortId, PortgroupId, VolumeConnectorId,
    VolumeTargetId,
};
pub use node::{AGENT_TOKEN_KEY, Chassis, ConductorRecord, INTERFACE_NAMES, Node, Portgroup};
pub use port::{MacAddr, MacParseError, Port};
pub use settings::{BiosSetting, FirmwareComponent};
pub use states::{BootDevice, PowerState, PowerTarget, ProvisionState};
pub use steps::{AgentSession, Step};
pub use volume::{VolumeConnector, VolumeTarget};

/// JSON object used for Ironic's free-form dict fields (`extra`, `driver_info`, ...).
pub type JsonMap = serde_json::Map<String, serde_json::Value>;
