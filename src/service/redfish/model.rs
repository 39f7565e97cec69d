//! The few Redfish (DMTF DSP0266/DSP8010) properties ferric reads, as plain serde types: every
//! field optional, unknown properties ignored, so BMCs of any schema version parse.

use serde::Deserialize;

/// A link to another resource (`{"@odata.id": "/redfish/v1/..."}`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Link {
    #[serde(rename = "@odata.id")]
    pub odata_id: String,
}

/// `/redfish/v1/`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceRoot {
    pub systems: Option<Link>,
    pub managers: Option<Link>,
    pub session_service: Option<Link>,
    pub update_service: Option<Link>,
    pub task_service: Option<Link>,
    pub links: Option<RootLinks>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RootLinks {
    pub sessions: Option<Link>,
}

/// `SessionService`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SessionService {
    pub sessions: Option<Link>,
}

/// Any collection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Collection {
    #[serde(rename = "Members")]
    pub members: Vec<Link>,
}

/// A `#ComputerSystem` action (its `target`, and the values it allows).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Action {
    pub target: String,
    #[serde(rename = "ResetType@Redfish.AllowableValues")]
    pub reset_types: Vec<String>,
}

/// `ComputerSystem`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ComputerSystem {
    #[serde(rename = "@odata.id")]
    pub odata_id: String,
    pub id: String,
    pub power_state: Option<String>,
    pub indicator_led: Option<String>,
    pub location_indicator_active: Option<bool>,
    pub boot: Boot,
    pub actions: SystemActions,
    pub virtual_media: Option<Link>,
    pub bios: Option<Link>,
    pub processors: Option<Link>,
    pub memory: Option<Link>,
    pub storage: Option<Link>,
    pub simple_storage: Option<Link>,
    pub ethernet_interfaces: Option<Link>,
    pub processor_summary: ProcessorSummary,
    pub memory_summary: MemorySummary,
    pub links: SystemLinks,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Boot {
    pub boot_source_override_target: Option<String>,
    pub boot_source_override_enabled: Option<String>,
    pub boot_source_override_mode: Option<String>,
    /// `BootSourceOverrideTarget@Redfish.AllowableValues` (`None`: the BMC lists none).
    #[serde(rename = "BootSourceOverrideTarget@Redfish.AllowableValues")]
    pub allowed_targets: Option<Vec<String>>,
    /// `HttpBootUri`: `None` when the System has no such property, `Some(None)` when it has
    /// one that is null (no URI set).
    #[serde(rename = "HttpBootUri", deserialize_with = "present")]
    pub http_boot_uri: Option<Option<String>>,
}

/// A property that is there, even if null (with `default`, a missing one stays `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemActions {
    #[serde(rename = "#ComputerSystem.Reset")]
    pub reset: Option<Action>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SystemLinks {
    pub managed_by: Vec<Link>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProcessorSummary {
    pub count: Option<u64>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MemorySummary {
    #[serde(rename = "TotalSystemMemoryGiB")]
    pub total_system_memory_gib: Option<f64>,
}

/// `Manager`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Manager {
    pub virtual_media: Option<Link>,
}

/// `VirtualMedia`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualMedia {
    #[serde(rename = "@odata.id")]
    pub odata_id: String,
    pub media_types: Vec<String>,
    pub inserted: Option<bool>,
    pub image: Option<String>,
    pub actions: VirtualMediaActions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VirtualMediaActions {
    #[serde(rename = "#VirtualMedia.InsertMedia")]
    pub insert: Option<Action>,
    #[serde(rename = "#VirtualMedia.EjectMedia")]
    pub eject: Option<Action>,
}

/// `Processor` (for inspection).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Processor {
    pub instruction_set: Option<String>,
    pub processor_architecture: Option<String>,
    pub total_threads: Option<u64>,
}

/// `EthernetInterface` (for inspection).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EthernetInterface {
    #[serde(rename = "MACAddress")]
    pub mac_address: Option<String>,
    pub permanent_mac_address: Option<String>,
}

/// `SimpleStorage` (for inspection).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SimpleStorage {
    pub devices: Vec<SimpleDevice>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SimpleDevice {
    pub capacity_bytes: Option<u64>,
}

/// `Storage` (for inspection).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Storage {
    pub drives: Vec<Link>,
}

/// `Drive` (for inspection).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Drive {
    pub capacity_bytes: Option<u64>,
}

/// A `Task` as a task monitor or the task service shows it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    pub task_state: Option<String>,
    pub task_status: Option<String>,
    pub percent_complete: Option<u64>,
    pub messages: Vec<Message>,
}

/// One message of `@Message.ExtendedInfo` or of a task.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Message {
    pub message: Option<String>,
    pub message_id: Option<String>,
}

/// An error body: `{"error": {"code", "message", "@Message.ExtendedInfo": [...]}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    pub code: Option<String>,
    pub message: Option<String>,
    #[serde(rename = "@Message.ExtendedInfo")]
    pub extended: Vec<Message>,
}

impl ErrorBody {
    /// What the BMC said: the ExtendedInfo messages, else the error's own message.
    pub fn text(&self) -> Option<String> {
        let ext: Vec<&str> = self.error.extended.iter().filter_map(|m| m.message.as_deref()).collect();
        if !ext.is_empty() {
            return Some(ext.join("; "));
        }
        self.error.message.clone().or_else(|| self.error.code.clone())
    }
}

impl Task {
    /// Whether the task has ended (any state but New, Starting, Running, Pending, Suspended...).
    pub fn finished(&self) -> bool {
        matches!(
            self.task_state.as_deref(),
            None | Some("Completed" | "Exception" | "Killed" | "Cancelled" | "Interrupted")
        )
    }

    /// Whether the task ended badly.
    pub fn failed(&self) -> bool {
        matches!(self.task_state.as_deref(), Some("Exception" | "Killed" | "Cancelled" | "Interrupted"))
            || matches!(self.task_status.as_deref(), Some("Critical"))
    }

    pub fn message_text(&self) -> String {
        self.messages.iter().filter_map(|m| m.message.as_deref()).collect::<Vec<_>>().join("; ")
    }
}

/// `Bios`: current attributes, where pending ones go, and its reset action.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Bios {
    #[serde(rename = "Attributes")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "@Redfish.Settings")]
    pub settings: Option<Settings>,
    #[serde(rename = "Actions")]
    pub actions: BiosActions,
}

/// `@Redfish.Settings`: the resource that takes changes applied later.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Settings {
    pub settings_object: Option<Link>,
    pub supported_apply_times: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BiosActions {
    #[serde(rename = "#Bios.ResetBios")]
    pub reset_bios: Option<Action>,
}

/// `UpdateService`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdateService {
    #[serde(rename = "Actions")]
    pub actions: UpdateActions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdateActions {
    #[serde(rename = "#UpdateService.SimpleUpdate")]
    pub simple_update: Option<Action>,
}
