//! Allocations: requests for a node by resource class and traits (Ironic's allocation API, 1.52).

use super::{AllocationId, JsonMap, NodeId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
