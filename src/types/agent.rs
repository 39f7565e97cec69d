//! Wire structures shared by ferric-agent, the API's lookup/heartbeat endpoints and the
//! conductor's agent client, shaped as ironic-python-agent and Ironic exchange them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The agent API version ferric-agent reports as `agent_version`: the ironic-python-agent release
/// whose REST API and command set it implements (Ironic enables features by this number).
pub const AGENT_VERSION: &str = "10.0.0";

/// Query of `GET /v1/lookup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupQuery {
    /// Comma-separated MAC addresses of the machine's NICs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<String>,
    /// Node UUID when the ramdisk knows it (e.g. from the kernel command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_uuid: Option<String>,
}

/// Answer of `GET /v1/lookup` (200).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupResponse {
    /// The node, restricted to `uuid`, `properties`, `instance_info`, `driver_internal_info`
    /// (plus `links`), as Ironic returns it.
    pub node: LookupNode,
    /// Agent configuration.
    pub config: LookupConfig,
}

/// Node fields returned by lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupNode {
    /// Node UUID.
    pub uuid: String,
    /// Node properties (`root_device` hints live here).
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Instance info.
    #[serde(default)]
    pub instance_info: Map<String, Value>,
    /// Driver internal info (secrets masked).
    #[serde(default)]
    pub driver_internal_info: Map<String, Value>,
    /// Anything else (`links`...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `config` of a lookup answer. Only `heartbeat_timeout` and `agent_token` matter to ferric-agent;
/// the rest of Ironic's keys are carried through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupConfig {
    /// Seconds after which the conductor considers the agent gone; the agent heartbeats every
    /// 0.3-0.6 of it.
    pub heartbeat_timeout: u64,
    /// Secret issued once per boot of the ramdisk, required on heartbeats and commands.
    #[serde(default)]
    pub agent_token: Option<String>,
    /// Always true with ferric.
    #[serde(default)]
    pub agent_token_required: bool,
    /// Whether MD5 image checksums are accepted.
    #[serde(default)]
    pub agent_md5_checksum_enable: bool,
    /// Other keys (metrics, containers, TLS...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LookupConfig {
    /// A config with ferric's defaults for the keys Ironic always sends.
    pub fn new(heartbeat_timeout: u64, agent_token: String) -> Self {
        Self {
            heartbeat_timeout,
            agent_token: Some(agent_token),
            agent_token_required: true,
            agent_md5_checksum_enable: false,
            extra: Map::new(),
        }
    }
}

/// Body of `POST /v1/heartbeat/{node_ident}` (answered 202, empty body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Where the conductor reaches the agent, e.g. `http://192.0.2.10:9999`.
    pub callback_url: String,
    /// Agent version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The token from lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token: Option<String>,
    /// CA the agent's TLS certificate is signed with (TLS agents only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_verify_ca: Option<String>,
    /// `start`, `end` or `error` (one-way deploy ramdisks such as anaconda; IPA omits it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<String>,
    /// Message accompanying `agent_status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status_message: Option<String>,
}

/// Body of `POST /v1/commands/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// `extension.command`, e.g. `standby.prepare_image`.
    pub name: String,
    /// Keyword arguments of the command.
    pub params: Map<String, Value>,
}

/// Status of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    /// Still running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with `command_error`.
    Failed,
    /// Hardware manager versions changed between get_*_steps and execute_*_step.
    #[serde(rename = "CLEAN_VERSION_MISMATCH")]
    VersionMismatch,
}

/// An error as IPA serialises its `RESTError`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandError {
    /// Error class, e.g. `ImageChecksumError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// HTTP-like code.
    pub code: u16,
    /// Short message.
    pub message: String,
    /// Details.
    pub details: String,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.message, self.details)
    }
}

impl std::error::Error for CommandError {}

impl CommandError {
    /// An error of class `kind`.
    pub fn new(kind: &str, code: u16, message: &str, details: impl Into<String>) -> Self {
        Self { kind: kind.into(), code, message: message.into(), details: details.into() }
    }
    /// `CommandExecutionError` (500): the generic failure.
    pub fn execution(details: impl Into<String>) -> Self {
        Self::new("CommandExecutionError", 500, "Command execution failed", details)
    }
    /// `InvalidCommandParamsError` (400): parameters rejected before running.
    pub fn invalid_params(details: impl Into<String>) -> Self {
        Self::new("InvalidCommandParamsError", 400, "Invalid command parameters", details)
    }
    /// `InvalidCommandError` (400): unknown command.
    pub fn invalid_command(details: impl Into<String>) -> Self {
        Self::new("InvalidCommandError", 400, "Invalid command", details)
    }
    /// `ImageDownloadError` (500).
    pub fn image_download(image_id: &str, msg: impl std::fmt::Display) -> Self {
        Self::new(
            "ImageDownloadError",
            500,
            "Error downloading image",
            format!("Download of image {image_id} failed: {msg}"),
        )
    }
    /// `ImageChecksumError` (500).
    pub fn image_checksum(image_id: &str, location: &str, expected: &str, actual: &str) -> Self {
        Self::new(
            "ImageChecksumError",
            500,
            "Error verifying image checksum",
            format!(
                "Image failed to verify against checksum. location: {location}; image ID: {image_id}; \
                 image checksum: {expected}; verification checksum: {actual}"
            ),
        )
    }
    /// `ImageWriteError` (500).
    pub fn image_write(device: &str, msg: impl std::fmt::Display) -> Self {
        Self::new(
            "ImageWriteError",
            500,
            "Error writing image to device",
            format!("Writing image to device {device} failed: {msg}"),
        )
    }
    /// `DeviceNotFound` (404): no disk matches.
    pub fn device_not_found(details: impl Into<String>) -> Self {
        Self::new("DeviceNotFound", 404, "Error finding the disk or partition device to deploy the image onto", details)
    }
}

/// A command result as `GET /v1/commands/...` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// UUID.
    pub id: String,
    /// Command name without the extension (`prepare_image`), as IPA reports it.
    pub command_name: String,
    /// Status.
    pub command_status: CommandStatus,
    /// Error of a failed command.
    pub command_error: Option<CommandError>,
    /// Result of a finished command (command-specific).
    pub command_result: Option<Value>,
}

impl CommandResult {
    /// Whether it has finished.
    pub fn is_done(&self) -> bool {
        self.command_status != CommandStatus::Running
    }
}

/// `GET /v1/commands/` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandList {
    /// Oldest first.
    pub commands: Vec<CommandResult>,
}

/// `GET /v1/status` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Unix time the agent started.
    pub started_at: f64,
    /// Agent version.
    pub version: String,
}

/// Error body of the agent's REST API (WSME style, as IPA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// `Client` (4xx) or `Server` (5xx).
    pub faultcode: String,
    /// Message.
    pub faultstring: String,
}

/// `image_info` of `standby.prepare_image` (and of the `write_image` deploy step), as Ironic's
/// direct deploy builds it. Unknown keys are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Image id (Glance UUID or file name).
    pub id: String,
    /// Download URLs, tried in order.
    pub urls: Vec<String>,
    /// `raw` or `qcow2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<String>,
    /// `bare`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_format: Option<String>,
    /// Legacy checksum (MD5 by length, or SHA-2), or a URL of a checksums file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// `sha256`, `sha512` (or `md5` when allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_algo: Option<String>,
    /// Digest in hex, or a URL of a checksums file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_value: Option<String>,
    /// Stream raw images straight to disk (ferric always streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_raw_images: Option<bool>,
    /// `partition` or `whole-disk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_type: Option<String>,
    /// Kernel of a partition image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Ramdisk of a partition image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramdisk: Option<String>,
    /// Root partition size in MiB (partition images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_mb: Option<u64>,
    /// Root partition size in GiB (used when root_mb is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_gb: Option<u64>,
    /// Swap in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_mb: Option<u64>,
    /// Ephemeral partition in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_mb: Option<u64>,
    /// Ephemeral filesystem (not created by ferric-agent: left unformatted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_format: Option<String>,
    /// Keep the ephemeral partition (not supported: refused when true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_ephemeral: Option<bool>,
    /// `bios` or `uefi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_boot_mode: Option<String>,
    /// `local` or `netboot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_option: Option<String>,
    /// `gpt` or `msdos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_label: Option<String>,
    /// Node UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_uuid: Option<String>,
    /// Config drive (older Ironic put it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configdrive: Option<String>,
    /// Other keys.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageInfo {
    /// Partition image: `image_type == "partition"`, or kernel/ramdisk given without an
    /// image_type (older conductors).
    pub fn is_partition_image(&self) -> bool {
        match self.image_type.as_deref() {
            Some("partition") => true,
            Some(_) => false,
            None => self.kernel.is_some() || self.ramdisk.is_some(),
        }
    }
}

/// A deploy or clean step as the agent lists and runs them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Step name, e.g. `erase_devices_metadata`.
    pub step: String,
    /// Priority (0 = only when requested).
    pub priority: i64,
    /// Interface (`deploy`, `raid`...).
    pub interface: String,
    /// Whether the agent must reboot afterwards.
    #[serde(default)]
    pub reboot_requested: bool,
    /// Whether it may be aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abortable: Option<bool>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
}
