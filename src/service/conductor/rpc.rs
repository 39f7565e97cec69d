//! The in-process transport: the API calls the conductor directly.

use super::Conductor;
use crate::drivers::{Heartbeat, Indicators};
use async_trait::async_trait;
use ferric_types::models::{
    Allocation, BootDevice, JsonMap, Node, NodeId, Port, PortId, PowerTarget, VolumeConnector, VolumeTarget,
};
use ferric_types::rpc::{ConductorApi, PassthruResult, ProvisionArgs, RpcError, ValidationResult};
use ferric_types::state_machine::Verb;
use serde_json::Value;
use std::collections::BTreeMap;

#[async_trait]
impl ConductorApi for Conductor {
    fn conductor_for(&self, _node: &Node) -> Option<String> {
        Some(self.host().to_string())
    }
    async fn create_node(&self, node: Node) -> Result<Node, RpcError> {
        Ok(Conductor::create_node(self, node).await?)
    }
    async fn update_node(&self, base: Node, updated: Node, reset_interfaces: bool) -> Result<Node, RpcError> {
        Ok(Conductor::update_node(self, base, updated, reset_interfaces).await?)
    }
    async fn destroy_node(&self, node: NodeId) -> Result<(), RpcError> {
        Ok(Conductor::destroy_node(self, node).await?)
    }
    async fn change_power_state(
        &self,
        node: NodeId,
        target: PowerTarget,
        timeout: Option<u64>,
    ) -> Result<(), RpcError> {
        Ok(Conductor::change_power_state(self, node, target, timeout).await?)
    }
    async fn do_provisioning_action(&self, node: NodeId, verb: Verb, args: ProvisionArgs) -> Result<(), RpcError> {
        Ok(Conductor::do_provisioning_action(self, node, verb, args).await?)
    }
    async fn set_boot_device(&self, node: NodeId, device: BootDevice, persistent: bool) -> Result<(), RpcError> {
        Ok(Conductor::set_boot_device(self, node, device, persistent).await?)
    }
    async fn get_boot_device(&self, node: NodeId) -> Result<(Option<BootDevice>, Option<bool>), RpcError> {
        Ok(Conductor::get_boot_device(self, node).await?)
    }
    async fn supported_boot_devices(&self, node: NodeId) -> Result<Vec<BootDevice>, RpcError> {
        Ok(Conductor::supported_boot_devices(self, node).await?)
    }
    async fn validate(&self, node: NodeId) -> Result<BTreeMap<String, ValidationResult>, RpcError> {
        Ok(Conductor::validate(self, node).await?)
    }
    async fn set_maintenance(&self, node: NodeId, on: bool, reason: Option<String>) -> Result<(), RpcError> {
        Ok(Conductor::set_maintenance(self, node, on, reason).await?)
    }
    async fn vif_list(&self, node: NodeId) -> Result<Vec<String>, RpcError> {
        Ok(Conductor::vif_list(self, node).await?)
    }
    async fn vif_attach(&self, node: NodeId, vif: String, port: Option<String>) -> Result<(), RpcError> {
        Ok(Conductor::vif_attach(self, node, vif, port).await?)
    }
    async fn vif_detach(&self, node: NodeId, vif: String) -> Result<(), RpcError> {
        Ok(Conductor::vif_detach(self, node, vif).await?)
    }
    async fn set_traits(&self, node: NodeId, traits: Vec<String>) -> Result<(), RpcError> {
        Ok(Conductor::set_traits(self, node, traits).await?)
    }
    async fn create_port(&self, port: Port) -> Result<Port, RpcError> {
        Ok(Conductor::create_port(self, port).await?)
    }
    async fn update_port(&self, port: Port) -> Result<Port, RpcError> {
        Ok(Conductor::update_port(self, port).await?)
    }
    async fn destroy_port(&self, port: PortId) -> Result<(), RpcError> {
        Ok(Conductor::destroy_port(self, port).await?)
    }
    async fn node_trace(&self, node: NodeId, asker: u64) -> Result<ferric_types::trace::NodeTrace, RpcError> {
        Ok(self.env().trace.node_trace(node, asker))
    }

    async fn agent_lookup(&self, macs: Vec<String>, node: Option<NodeId>) -> Result<(Node, String), RpcError> {
        Ok(Conductor::agent_lookup(self, macs, node).await?)
    }
    async fn heartbeat(&self, node: NodeId, hb: Heartbeat) -> Result<(), RpcError> {
        Ok(Conductor::heartbeat(self, node, hb).await?)
    }
    fn driver_properties(&self, driver: &str) -> Result<BTreeMap<String, String>, RpcError> {
        let Some(_) = self.registry().hardware_type(driver) else {
            return Err(RpcError::NotFound(format!(
                "Could not find the following driver(s) or hardware type(s): {driver}."
            )));
        };
        let mut p = BTreeMap::new();
        if driver == "ipmi" {
            for (k, v) in [
                ("ipmi_address", "IP address or hostname of the node. Required."),
                ("ipmi_password", "password. Optional."),
                ("ipmi_username", "username; default is NULL user. Optional."),
                ("ipmi_port", "remote IPMI RMCP port. Optional."),
                (
                    "ipmi_priv_level",
                    "privilege level; default is ADMINISTRATOR. One of ADMINISTRATOR, CALLBACK, OPERATOR, USER. Optional.",
                ),
                (
                    "ipmi_cipher_suite",
                    "The number of a cipher suite to use. Only 1, 2, 3 (ipmitool default) or 17 are supported. Optional.",
                ),
                ("ipmi_bridging", "bridging_type; default is \"no\". Only \"no\" is supported. Optional."),
                ("deploy_kernel", "UUID (from Glance) of the deployment kernel. Required."),
                (
                    "deploy_ramdisk",
                    "UUID (from Glance) of the ramdisk with agent that is used at deploy time. Required.",
                ),
            ] {
                p.insert(k.to_string(), v.to_string());
            }
        } else if driver == "redfish" {
            for (k, v) in [
                (
                    "redfish_address",
                    "The URL address to the Redfish controller. It must include the authority portion of the URL, and can optionally include the scheme. If the scheme is missing, https is assumed. For example: https://mgmt.vendor.com. This is required.",
                ),
                (
                    "redfish_system_id",
                    "The canonical path to the ComputerSystem resource that the driver will interact with. It should include the root service, version and the unique resource path to the ComputerSystem. This property is only required if target BMC manages more than one ComputerSystem. Otherwise ironic will attempt to discover and use the ComputerSystem automatically. For example: /redfish/v1/Systems/1. Optional.",
                ),
                (
                    "redfish_username",
                    "User account with admin/server-profile access privilege. Although this property is not mandatory it's highly recommended to set a username. Optional",
                ),
                (
                    "redfish_password",
                    "User account password. Although this property is not mandatory, it's highly recommended to set a password. Optional",
                ),
                (
                    "redfish_verify_ca",
                    "Either a Boolean value, a path to a CA_BUNDLE file or directory with certificates of trusted CAs. If set to True the driver will verify the host certificates; if False the driver will ignore verifying the SSL certificate. If it's a path the driver will use the specified certificate or one of the certificates in the directory. Defaults to True. Optional",
                ),
                (
                    "redfish_auth_type",
                    "Redfish HTTP client authentication method. One of \"basic\", \"session\" or \"auto\". Optional",
                ),
                ("redfish_deploy_iso", "URL or Glance UUID of the deployment ISO to use. Optional."),
                ("deploy_kernel", "UUID (from Glance) of the deployment kernel. Required."),
                (
                    "deploy_ramdisk",
                    "UUID (from Glance) of the ramdisk with agent that is used at deploy time. Required.",
                ),
            ] {
                p.insert(k.to_string(), v.to_string());
            }
        } else {
            // What Ironic's fake-hardware reports.
            p.insert("B1".into(), "B1 description. Required.".into());
            p.insert("B2".into(), "B2 description. Required.".into());
        }
        Ok(p)
    }

    fn hardware_types(&self) -> Vec<String> {
        self.registry().hardware_types().map(|h| h.name.clone()).collect()
    }

    fn registry_view(&self) -> BTreeMap<(String, String), (Option<String>, Vec<String>)> {
        let r = self.registry();
        let mut out = BTreeMap::new();
        for h in r.hardware_types() {
            for kind in ferric_types::models::INTERFACE_NAMES {
                out.insert(
                    (h.name.clone(), kind.to_string()),
                    (r.default_interface(&h.name, kind), r.enabled_interfaces(&h.name, kind)),
                );
            }
        }
        out
    }

    async fn set_target_raid_config(&self, node: NodeId, config: JsonMap) -> Result<(), RpcError> {
        Ok(Conductor::set_target_raid_config(self, node, config).await?)
    }
    fn raid_logical_disk_properties(&self, driver: &str) -> Result<BTreeMap<String, String>, RpcError> {
        Ok(Conductor::raid_logical_disk_properties(self, driver)?)
    }
    async fn inject_nmi(&self, node: NodeId) -> Result<(), RpcError> {
        Ok(Conductor::inject_nmi(self, node).await?)
    }
    async fn get_supported_indicators(&self, node: NodeId) -> Result<Indicators, RpcError> {
        Ok(Conductor::get_supported_indicators(self, node).await?)
    }
    async fn set_indicator_state(
        &self,
        node: NodeId,
        component: String,
        indicator: String,
        state: String,
    ) -> Result<(), RpcError> {
        Ok(Conductor::set_indicator_state(self, node, &component, &indicator, &state).await?)
    }
    async fn get_indicator_state(
        &self,
        node: NodeId,
        component: String,
        indicator: String,
    ) -> Result<String, RpcError> {
        Ok(Conductor::get_indicator_state(self, node, &component, &indicator).await?)
    }
    async fn change_boot_mode(&self, node: NodeId, mode: String) -> Result<(), RpcError> {
        Ok(Conductor::change_boot_mode(self, node, mode).await?)
    }
    async fn change_secure_boot(&self, node: NodeId, enabled: bool) -> Result<(), RpcError> {
        Ok(Conductor::change_secure_boot(self, node, enabled).await?)
    }
    async fn set_console_mode(&self, node: NodeId, enabled: bool) -> Result<(), RpcError> {
        Ok(Conductor::set_console_mode(self, node, enabled).await?)
    }
    async fn get_console_information(&self, node: NodeId) -> Result<Option<Value>, RpcError> {
        Ok(Conductor::get_console_information(self, node).await?)
    }
    async fn update_volume_connector(&self, v: VolumeConnector) -> Result<VolumeConnector, RpcError> {
        Ok(Conductor::update_volume_connector(self, v).await?)
    }
    async fn destroy_volume_connector(&self, v: VolumeConnector) -> Result<(), RpcError> {
        Ok(Conductor::destroy_volume_connector(self, v).await?)
    }
    async fn update_volume_target(&self, v: VolumeTarget) -> Result<VolumeTarget, RpcError> {
        Ok(Conductor::update_volume_target(self, v).await?)
    }
    async fn destroy_volume_target(&self, v: VolumeTarget) -> Result<(), RpcError> {
        Ok(Conductor::destroy_volume_target(self, v).await?)
    }
    async fn create_allocation(&self, a: Allocation, backfill: Option<NodeId>) -> Result<Allocation, RpcError> {
        Ok(Conductor::create_allocation(self, a, backfill).await?)
    }
    async fn destroy_allocation(&self, a: Allocation) -> Result<(), RpcError> {
        Ok(Conductor::destroy_allocation(self, a).await?)
    }
    async fn node_vendor_methods(&self, node: NodeId) -> Result<BTreeMap<String, Value>, RpcError> {
        Ok(Conductor::node_vendor_methods(self, node).await?)
    }
    fn driver_vendor_methods(&self, driver: &str) -> Result<BTreeMap<String, Value>, RpcError> {
        Ok(Conductor::driver_vendor_methods(self, driver)?)
    }
    async fn vendor_passthru(
        &self,
        node: NodeId,
        method: String,
        http: String,
        args: Value,
    ) -> Result<PassthruResult, RpcError> {
        Ok(Conductor::vendor_passthru(self, node, &method, &http, args).await?)
    }
    fn driver_vendor_passthru(&self, driver: &str, method: &str, http: &str) -> Result<PassthruResult, RpcError> {
        Ok(Conductor::driver_vendor_passthru(self, driver, method, http)?)
    }
    fn inspection_lookup(&self, macs: Vec<String>, bmc: Vec<String>, node: Option<NodeId>) -> Result<Node, RpcError> {
        Ok(Conductor::inspection_lookup(self, &macs, &bmc, node)?)
    }
    async fn node_with_token(&self, node: NodeId) -> Result<(Node, String), RpcError> {
        Ok(Conductor::node_with_token(self, node).await?)
    }
    async fn continue_inspection(&self, node: NodeId, inventory: Value, plugin_data: Value) -> Result<(), RpcError> {
        Ok(Conductor::continue_inspection(self, node, inventory, plugin_data).await?)
    }
}
