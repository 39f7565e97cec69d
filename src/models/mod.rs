//! Ironic's objects (node, port, portgroup, chassis, conductor) as serde models with typed IDs.
//!
//! These are the stored shapes; the API renders them per microversion (`api::render`).

mod ids;
mod node;
mod port;
mod states;

pub use ids::{ChassisId, NodeId, PortId, PortgroupId};
pub use node::{Chassis, ConductorRecord, INTERFACE_NAMES, Node, Portgroup};
pub use port::{MacAddr, Port};
pub use states::{BootDevice, PowerState, PowerTarget, ProvisionState};

/// JSON object used for Ironic's free-form dict fields (`extra`, `driver_info`, ...).
pub type JsonMap = serde_json::Map<String, serde_json::Value>;
