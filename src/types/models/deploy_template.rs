//! Deploy templates: named deploy steps an instance's traits select (API 1.55).

use super::{DeployTemplateId, JsonMap};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
