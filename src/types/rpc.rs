//! API to conductor calls, behind a trait so the conductor can later live in another process.
//! The error type is plain data (serde) for the same reason.

use crate::models::{
    Allocation, BootDevice, JsonMap, Node, NodeId, Port, PortId, PowerTarget, VolumeConnector, VolumeTarget,
};
use crate::state_machine::Verb;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Errors that cross the API/conductor boundary, by the HTTP class they become.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RpcError {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409, Ironic's NodeLocked
    #[error("{0}")]
    Locked(String),
    /// 409: duplicates, associated instances, wrong state for deletion
    #[error("{0}")]
    Conflict(String),
    /// 400, Ironic's InvalidStateRequested
    #[error("{0}")]
    InvalidState(String),
    /// 400: invalid parameters, failed validation (Ironic's InvalidParameterValue)
    #[error("{0}")]
    Invalid(String),
    /// 400: a required parameter is missing (Ironic's MissingParameterValue)
    #[error("{0}")]
    MissingParameter(String),
    /// 400: the node's interface does not do this (Ironic's UnsupportedDriverExtension)
    #[error("{0}")]
    Unsupported(String),
    /// 403: protected nodes
    #[error("{0}")]
    Forbidden(String),
    /// 406
    #[error("{0}")]
    NotAcceptable(String),
    /// 503, Ironic's NoFreeConductorWorker
    #[error("{0}")]
    NoFreeWorker(String),
    /// 503: no live conductor can take the request, or the database is unreachable (Ironic's
    /// TemporaryFailure); nothing was done.
    #[error("{0}")]
    Unavailable(String),
    /// 500: the hardware (a BMC, an agent) refused or failed what a driver asked of it
    #[error("{0}")]
    DriverFailed(String),
    /// 500: the hardware did not answer, or did not get there, in time
    #[error("{0}")]
    Timeout(String),
    /// 500: a bug or a broken store; the message is safe to show
    #[error("{0}")]
    Internal(String),
    /// The record changed since the caller read it (409 if retries run out).
    #[error("{0}")]
    Stale(String),
}

/// An agent heartbeat, as received by the API. The conductor checks its token.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The agent token the ramdisk got at lookup.
    pub token: Option<String>,
    pub callback_url: String,
    pub agent_version: Option<String>,
    pub agent_status: Option<String>,
    pub agent_status_message: Option<String>,
}

/// The token never reaches a log through `{:?}`.
impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("token", &self.token.as_ref().map(|_| "******"))
            .field("callback_url", &self.callback_url)
            .field("agent_version", &self.agent_version)
            .field("agent_status", &self.agent_status)
            .finish()
    }
}

/// What one indicator (LED) supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndicatorInfo {
    pub readonly: bool,
    pub states: Vec<String>,
}

/// component → indicator name → info (API 1.63).
pub type Indicators = BTreeMap<String, BTreeMap<String, IndicatorInfo>>;

/// Extra arguments of a provision action.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProvisionArgs {
    pub configdrive: Option<serde_json::Value>,
    pub clean_steps: Option<Vec<serde_json::Value>>,
    pub deploy_steps: Option<Vec<serde_json::Value>>,
    pub service_steps: Option<Vec<serde_json::Value>>,
    pub rescue_password: Option<String>,
    pub disable_ramdisk: Option<bool>,
}

/// One interface's validation result (`GET /v1/nodes/{id}/validate`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValidationResult {
    pub result: bool,
    pub reason: Option<String>,
}

/// What the API asks of the conductor. Reads go straight to the database; anything that needs a
/// node's lock, a driver or the hardware comes here.
#[async_trait]
pub trait ConductorApi: Send + Sync {
    /// Hostname of the conductor serving `node` (Ironic's `conductor` field).
    fn conductor_for(&self, node: &Node) -> Option<String>;
    async fn create_node(&self, node: Node) -> Result<Node, RpcError>;
    /// Replaces a node's record with `updated` (the API applied and checked the patch on
    /// `base`); fails with `Stale` if the node no longer equals `base`, so no change is lost.
    async fn update_node(&self, base: Node, updated: Node, reset_interfaces: bool) -> Result<Node, RpcError>;
    async fn destroy_node(&self, node: NodeId) -> Result<(), RpcError>;
    async fn change_power_state(&self, node: NodeId, target: PowerTarget, timeout: Option<u64>)
    -> Result<(), RpcError>;
    /// A provisioning verb (`PUT /v1/nodes/{id}/states/provision`), parsed by the API.
    async fn do_provisioning_action(&self, node: NodeId, verb: Verb, args: ProvisionArgs) -> Result<(), RpcError>;
    async fn set_boot_device(&self, node: NodeId, device: BootDevice, persistent: bool) -> Result<(), RpcError>;
    async fn get_boot_device(&self, node: NodeId) -> Result<(Option<BootDevice>, Option<bool>), RpcError>;
    async fn supported_boot_devices(&self, node: NodeId) -> Result<Vec<BootDevice>, RpcError>;
    async fn validate(&self, node: NodeId) -> Result<BTreeMap<String, ValidationResult>, RpcError>;
    async fn set_maintenance(&self, node: NodeId, on: bool, reason: Option<String>) -> Result<(), RpcError>;
    async fn vif_list(&self, node: NodeId) -> Result<Vec<String>, RpcError>;
    async fn vif_attach(&self, node: NodeId, vif: String, port: Option<String>) -> Result<(), RpcError>;
    async fn vif_detach(&self, node: NodeId, vif: String) -> Result<(), RpcError>;
    async fn set_traits(&self, node: NodeId, traits: Vec<String>) -> Result<(), RpcError>;
    async fn create_port(&self, port: Port) -> Result<Port, RpcError>;
    async fn update_port(&self, port: Port) -> Result<Port, RpcError>;
    async fn destroy_port(&self, port: PortId) -> Result<(), RpcError>;
    /// The node's messages as the conductor that owns it recorded them (the API's web console
    /// and trace endpoint merge them with their own: several processes, several recorders).
    /// None when the conductor records into `asker`, the caller's own recorder (one process).
    async fn node_trace(&self, node: NodeId, asker: u64) -> Result<crate::trace::NodeTrace, RpcError>;
    /// An agent's lookup: the node (found by MAC or UUID) and its agent token, issued once.
    async fn agent_lookup(&self, macs: Vec<String>, node: Option<NodeId>) -> Result<(Node, String), RpcError>;
    /// An agent's heartbeat: refused (400) unless its token is the one issued at lookup and its
    /// callback URL the one it gave first; then handled in the background.
    async fn heartbeat(&self, node: NodeId, hb: Heartbeat) -> Result<(), RpcError>;
    /// Driver properties for `GET /v1/drivers/{name}/properties`.
    fn driver_properties(&self, driver: &str) -> Result<BTreeMap<String, String>, RpcError>;
    /// Enabled hardware types.
    fn hardware_types(&self) -> Vec<String>;
    /// (hardware type, interface kind) → (default implementation, enabled implementations).
    fn registry_view(&self) -> BTreeMap<(String, String), (Option<String>, Vec<String>)>;

    // Added with API 1.12 - 1.87 features.

    /// Validates (with the RAID interface) and stores a node's target RAID configuration.
    async fn set_target_raid_config(&self, node: NodeId, config: JsonMap) -> Result<(), RpcError>;
    fn raid_logical_disk_properties(&self, driver: &str) -> Result<BTreeMap<String, String>, RpcError>;
    async fn inject_nmi(&self, node: NodeId) -> Result<(), RpcError>;
    async fn get_supported_indicators(&self, node: NodeId) -> Result<Indicators, RpcError>;
    async fn set_indicator_state(
        &self,
        node: NodeId,
        component: String,
        indicator: String,
        state: String,
    ) -> Result<(), RpcError>;
    async fn get_indicator_state(&self, node: NodeId, component: String, indicator: String)
    -> Result<String, RpcError>;
    /// Asynchronous (the API answers 202).
    async fn change_boot_mode(&self, node: NodeId, mode: String) -> Result<(), RpcError>;
    /// Asynchronous (the API answers 202).
    async fn change_secure_boot(&self, node: NodeId, enabled: bool) -> Result<(), RpcError>;
    async fn set_console_mode(&self, node: NodeId, enabled: bool) -> Result<(), RpcError>;
    /// Connection information, or `None` while the console is disabled.
    async fn get_console_information(&self, node: NodeId) -> Result<Option<Value>, RpcError>;
    async fn update_volume_connector(&self, v: VolumeConnector) -> Result<VolumeConnector, RpcError>;
    async fn destroy_volume_connector(&self, v: VolumeConnector) -> Result<(), RpcError>;
    async fn update_volume_target(&self, v: VolumeTarget) -> Result<VolumeTarget, RpcError>;
    async fn destroy_volume_target(&self, v: VolumeTarget) -> Result<(), RpcError>;
    /// Stores an allocation and starts processing it; `backfill` binds an active node at once.
    async fn create_allocation(&self, a: Allocation, backfill: Option<NodeId>) -> Result<Allocation, RpcError>;
    async fn destroy_allocation(&self, a: Allocation) -> Result<(), RpcError>;
    async fn node_vendor_methods(&self, node: NodeId) -> Result<BTreeMap<String, Value>, RpcError>;
    fn driver_vendor_methods(&self, driver: &str) -> Result<BTreeMap<String, Value>, RpcError>;
    async fn vendor_passthru(
        &self,
        node: NodeId,
        method: String,
        http: String,
        args: Value,
    ) -> Result<PassthruResult, RpcError>;
    fn driver_vendor_passthru(&self, driver: &str, method: &str, http: &str) -> Result<PassthruResult, RpcError>;
    /// The node an inspection ramdisk runs on, by MACs, BMC addresses or UUID (it must be in
    /// `inspect wait`).
    fn inspection_lookup(&self, macs: Vec<String>, bmc: Vec<String>, node: Option<NodeId>) -> Result<Node, RpcError>;
    /// The node with its agent token, issued once.
    async fn node_with_token(&self, node: NodeId) -> Result<(Node, String), RpcError>;
    /// Stores an agent's inspection data and finishes the inspection (asynchronously).
    async fn continue_inspection(&self, node: NodeId, inventory: Value, plugin_data: Value) -> Result<(), RpcError>;
}

/// The result of a vendor passthru call: synchronous methods return a value (200), asynchronous
/// ones run in the background (202, no body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassthruResult {
    pub value: Value,
    pub is_async: bool,
}
