//! Volume connectors and targets, allocations, deploy templates, node history events and BIOS
//! settings: the objects Ironic's API added after the node/port core.

use super::{AllocationId, DeployTemplateId, HistoryId, JsonMap, NodeId, VolumeConnectorId, VolumeTargetId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A node's connector to a storage network (an iSCSI initiator IQN, a WWPN, an IP, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeConnector {
    pub uuid: VolumeConnectorId,
    pub node_uuid: NodeId,
    #[serde(rename = "type")]
    pub connector_type: String,
    pub connector_id: String,
    #[serde(default)]
    pub extra: JsonMap,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A volume a node boots from or attaches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeTarget {
    pub uuid: VolumeTargetId,
    pub node_uuid: NodeId,
    pub volume_type: String,
    pub volume_id: String,
    pub boot_index: i64,
    #[serde(default)]
    pub properties: JsonMap,
    #[serde(default)]
    pub extra: JsonMap,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A request for a node matching a resource class and traits (Ironic's allocation API).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Allocation {
    pub uuid: AllocationId,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub node_uuid: Option<NodeId>,
    /// `allocating`, `active` or `error`.
    pub state: String,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub resource_class: Option<String>,
    #[serde(default)]
    pub traits: Vec<String>,
    /// Node UUIDs (names are resolved by the API).
    #[serde(default)]
    pub candidate_nodes: Vec<String>,
    #[serde(default)]
    pub extra: JsonMap,
    #[serde(default)]
    pub owner: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Allocation states.
pub mod allocation_state {
    pub const ALLOCATING: &str = "allocating";
    pub const ACTIVE: &str = "active";
    pub const ERROR: &str = "error";
}

/// Named deploy steps matched against an instance's traits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeployTemplate {
    pub uuid: DeployTemplateId,
    pub name: String,
    pub steps: Vec<serde_json::Value>,
    #[serde(default)]
    pub extra: JsonMap,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// One entry of a node's history (errors and notable events).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEvent {
    pub uuid: HistoryId,
    pub node_uuid: NodeId,
    pub created_at: DateTime<Utc>,
    /// `ERROR` or `INFO`.
    pub severity: String,
    pub event_type: String,
    pub event: String,
    #[serde(default)]
    pub conductor: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub target_provision_state: Option<String>,
    #[serde(default)]
    pub duration_seconds: Option<i64>,
}

/// A BIOS setting cached from the node's firmware, with its registry attributes (API 1.74).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct BiosSetting {
    pub name: String,
    pub value: Option<String>,
    pub attribute_type: Option<String>,
    pub allowable_values: Option<Vec<String>>,
    pub lower_bound: Option<i64>,
    pub max_length: Option<i64>,
    pub min_length: Option<i64>,
    pub read_only: Option<bool>,
    pub reset_required: Option<bool>,
    pub unique: Option<bool>,
    pub upper_bound: Option<i64>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A firmware component's versions, cached from the node (API 1.86).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct FirmwareComponent {
    pub component: String,
    pub initial_version: Option<String>,
    pub current_version: Option<String>,
    pub last_version_flashed: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}
