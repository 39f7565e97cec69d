//! Volume connectors and targets: how a node reaches remote storage (Ironic's volume API, 1.32).

use super::{JsonMap, NodeId, VolumeConnectorId, VolumeTargetId};
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
