//! Node, portgroup, chassis and conductor records.

use super::{AgentSession, ChassisId, JsonMap, NodeId, PortgroupId, PowerState, ProvisionState, Step};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where Ironic keeps an agent's token (`driver_internal_info`); the API never shows it.
pub const AGENT_TOKEN_KEY: &str = "agent_secret_token";

/// Names of a node's driver interfaces, in Ironic's order (`<name>_interface` fields).
pub const INTERFACE_NAMES: &[&str] = &[
    "bios",
    "boot",
    "console",
    "deploy",
    "firmware",
    "inspect",
    "management",
    "network",
    "power",
    "raid",
    "rescue",
    "storage",
    "vendor",
];

/// A bare-metal node, as stored. `reservation` and `conductor` are kept in their own columns and
/// filled in on load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Node {
    pub uuid: NodeId,
    pub name: Option<String>,
    pub driver: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub chassis_uuid: Option<ChassisId>,
    pub instance_uuid: Option<String>,
    pub instance_name: Option<String>,
    pub power_state: Option<PowerState>,
    pub target_power_state: Option<String>,
    pub provision_state: ProvisionState,
    pub target_provision_state: Option<ProvisionState>,
    pub provision_updated_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub maintenance: bool,
    pub maintenance_reason: Option<String>,
    pub fault: Option<String>,
    #[serde(skip)]
    pub reservation: Option<String>,
    #[serde(skip)]
    pub conductor: Option<String>,
    /// The conductor that last prepared this node's boot (Ironic's `conductor_affinity`): a
    /// conductor that finds it owns a node another one prepared takes it over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conductor_affinity: Option<String>,
    pub conductor_group: String,
    pub resource_class: Option<String>,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub lessee: Option<String>,
    pub protected: bool,
    pub protected_reason: Option<String>,
    pub retired: bool,
    pub retired_reason: Option<String>,
    pub automated_clean: Option<bool>,
    pub console_enabled: bool,
    pub boot_mode: Option<String>,
    pub secure_boot: Option<bool>,
    pub shard: Option<String>,
    pub parent_node: Option<String>,
    pub disable_power_off: bool,
    pub health: Option<String>,
    pub allocation_uuid: Option<String>,
    pub inspection_started_at: Option<DateTime<Utc>>,
    pub inspection_finished_at: Option<DateTime<Utc>>,

    pub bios_interface: String,
    pub boot_interface: String,
    pub console_interface: String,
    pub deploy_interface: String,
    pub firmware_interface: String,
    pub inspect_interface: String,
    pub management_interface: String,
    pub network_interface: String,
    pub power_interface: String,
    pub raid_interface: String,
    pub rescue_interface: String,
    pub storage_interface: String,
    pub vendor_interface: String,

    pub driver_info: JsonMap,
    pub driver_internal_info: JsonMap,
    pub instance_info: JsonMap,
    pub properties: JsonMap,
    pub extra: JsonMap,
    pub clean_step: JsonMap,
    pub deploy_step: JsonMap,
    pub service_step: JsonMap,
    pub raid_config: JsonMap,
    pub target_raid_config: JsonMap,
    pub network_data: JsonMap,
    pub traits: Vec<String>,
    /// The ramdisk's agent, while one runs for this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSession>,
    /// The step a deploy or cleaning waits at, for the agent's next heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            uuid: NodeId(uuid::Uuid::nil()),
            name: None,
            driver: String::new(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: None,
            chassis_uuid: None,
            instance_uuid: None,
            instance_name: None,
            power_state: None,
            target_power_state: None,
            provision_state: ProvisionState::Enroll,
            target_provision_state: None,
            provision_updated_at: None,
            last_error: None,
            maintenance: false,
            maintenance_reason: None,
            fault: None,
            reservation: None,
            conductor: None,
            conductor_affinity: None,
            conductor_group: String::new(),
            resource_class: None,
            description: None,
            owner: None,
            lessee: None,
            protected: false,
            protected_reason: None,
            retired: false,
            retired_reason: None,
            automated_clean: None,
            console_enabled: false,
            boot_mode: None,
            secure_boot: None,
            shard: None,
            parent_node: None,
            disable_power_off: false,
            health: None,
            allocation_uuid: None,
            inspection_started_at: None,
            inspection_finished_at: None,
            bios_interface: String::new(),
            boot_interface: String::new(),
            console_interface: String::new(),
            deploy_interface: String::new(),
            firmware_interface: String::new(),
            inspect_interface: String::new(),
            management_interface: String::new(),
            network_interface: String::new(),
            power_interface: String::new(),
            raid_interface: String::new(),
            rescue_interface: String::new(),
            storage_interface: String::new(),
            vendor_interface: String::new(),
            driver_info: JsonMap::new(),
            driver_internal_info: JsonMap::new(),
            instance_info: JsonMap::new(),
            properties: JsonMap::new(),
            extra: JsonMap::new(),
            clean_step: JsonMap::new(),
            deploy_step: JsonMap::new(),
            service_step: JsonMap::new(),
            raid_config: JsonMap::new(),
            target_raid_config: JsonMap::new(),
            network_data: JsonMap::new(),
            traits: Vec::new(),
            agent: None,
            step: None,
        }
    }
}

/// Keys earlier ferric versions kept in `driver_internal_info` for what is now typed.
const LEGACY_AGENT_KEYS: [&str; 4] = [AGENT_TOKEN_KEY, "agent_url", "agent_last_heartbeat", "agent_version"];

impl Node {
    /// Moves what a record written by an earlier version kept as strings in
    /// `driver_internal_info` (the agent's token, URL, last heartbeat and version; how far the
    /// agent got) into the typed fields. A node that was waiting for its ramdisk to boot goes
    /// on at the next heartbeat; one further along waits out its callback timeout.
    pub fn adopt_legacy_keys(&mut self) {
        let dii = &mut self.driver_internal_info;
        if !LEGACY_AGENT_KEYS.iter().any(|k| dii.contains_key(*k)) && !dii.contains_key("agent_phase") {
            return;
        }
        let text = |v: Option<serde_json::Value>| v.and_then(|v| v.as_str().map(str::to_string));
        let session = AgentSession {
            token: text(dii.remove(AGENT_TOKEN_KEY)),
            url: text(dii.remove("agent_url")),
            last_heartbeat: text(dii.remove("agent_last_heartbeat"))
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
            version: text(dii.remove("agent_version")),
        };
        if session != AgentSession::default() {
            self.agent = Some(session);
        }
        if let Some(phase) = text(dii.remove("agent_phase"))
            && matches!(phase.as_str(), "booting" | "clean-booting")
            && self.step.is_none()
        {
            self.step =
                Some(if phase == "booting" { Step::AwaitAgent } else { Step::CleanStep { index: 0, started: false } });
        }
        dii.remove("clean_step_index");
    }

    /// The interface implementation chosen for `kind` (one of [`INTERFACE_NAMES`]).
    pub fn interface(&self, kind: &str) -> Option<&str> {
        Some(match kind {
            "bios" => &self.bios_interface,
            "boot" => &self.boot_interface,
            "console" => &self.console_interface,
            "deploy" => &self.deploy_interface,
            "firmware" => &self.firmware_interface,
            "inspect" => &self.inspect_interface,
            "management" => &self.management_interface,
            "network" => &self.network_interface,
            "power" => &self.power_interface,
            "raid" => &self.raid_interface,
            "rescue" => &self.rescue_interface,
            "storage" => &self.storage_interface,
            "vendor" => &self.vendor_interface,
            _ => return None,
        })
    }

    /// Mutable access to the interface field for `kind`.
    pub fn interface_mut(&mut self, kind: &str) -> Option<&mut String> {
        Some(match kind {
            "bios" => &mut self.bios_interface,
            "boot" => &mut self.boot_interface,
            "console" => &mut self.console_interface,
            "deploy" => &mut self.deploy_interface,
            "firmware" => &mut self.firmware_interface,
            "inspect" => &mut self.inspect_interface,
            "management" => &mut self.management_interface,
            "network" => &mut self.network_interface,
            "power" => &mut self.power_interface,
            "raid" => &mut self.raid_interface,
            "rescue" => &mut self.rescue_interface,
            "storage" => &mut self.storage_interface,
            "vendor" => &mut self.vendor_interface,
            _ => return None,
        })
    }
}

/// A group of ports bonded together.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Portgroup {
    pub uuid: Option<PortgroupId>,
    pub name: Option<String>,
    pub node_uuid: Option<NodeId>,
    pub address: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub extra: JsonMap,
    pub internal_info: JsonMap,
    pub standalone_ports_supported: bool,
    pub mode: Option<String>,
    pub properties: JsonMap,
    pub physical_network: Option<String>,
    pub category: Option<String>,
}

/// A chassis: a grouping of nodes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Chassis {
    pub uuid: Option<ChassisId>,
    pub description: Option<String>,
    pub extra: JsonMap,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A registered conductor service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConductorRecord {
    pub hostname: String,
    pub conductor_group: String,
    pub drivers: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub online: bool,
    /// Where this conductor answers JSON-RPC (`--rpc-bind`): how API processes reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_url: Option<String>,
}

impl ConductorRecord {
    /// Whether this conductor counts as alive at `now`: online and heard from within `timeout`
    /// seconds (Ironic's `heartbeat_timeout`).
    pub fn alive_at(&self, now: DateTime<Utc>, timeout: u64) -> bool {
        self.online && (now - self.updated_at).num_milliseconds() <= (timeout as i64) * 1000
    }
}
