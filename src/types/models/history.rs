//! Node history: the errors and notable events recorded per node (API 1.78).

use super::{HistoryId, NodeId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
