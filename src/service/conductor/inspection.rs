//! Agent inspection: the `agent` inspect interface boots the ramdisk and waits in `inspect wait`;
//! the agent posts its inventory to `/v1/continue_inspection`, which stores it and moves the
//! node to `manageable` (Ironic's agent inspection flow).

use super::{Conductor, LockedTask, Result};
use crate::drivers::InspectInterface;
use ferric_types::models::{MacAddr, Node, NodeId, Port, PortId, PowerTarget, ProvisionState};
use ferric_types::rpc::RpcError;
use ferric_types::state_machine::Event;
use serde_json::Value;
use std::sync::Arc;

/// The interface name that inspects through the agent.
pub const AGENT_INSPECT: &str = "agent";

impl Conductor {
    /// Applies `event` and saves, logging (nothing else can be done) if that fails.
    fn settle(&self, t: &mut LockedTask, event: Event, error: Option<String>) {
        if let Some(e) = &error {
            tracing::warn!(node = %t.node.uuid, error = %e, %event, "inspection failed");
            t.node.last_error = Some(e.clone());
        }
        if let Err(e) = self.process_event(t, event, None).and_then(|_| self.save(t)) {
            tracing::error!(node = %t.node.uuid, error = %e, "cannot record state change");
        }
    }

    /// `inspect` with the `agent` interface: prepare the ramdisk, boot it, wait for its data.
    pub(crate) fn start_agent_inspection(&self, mut t: LockedTask) -> Result<()> {
        t.driver.power.validate(&t)?;
        t.driver.boot.validate(&t)?;
        let permit = self.worker()?;
        t.node.last_error = None;
        t.node.inspection_started_at = Some(self.env().clock.now());
        t.node.inspection_finished_at = None;
        self.process_event(&mut t, Event::Inspect, None)?;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            let started = async {
                let boot = t.driver.boot.clone();
                boot.prepare_ramdisk(&mut t).await?;
                c.node_power_action(&mut t, PowerTarget::Reboot, None).await
            }
            .await;
            match started {
                Ok(()) => c.settle(&mut t, Event::Wait, None),
                Err(e) => c.settle(&mut t, Event::Fail, Some(format!("Failed to inspect hardware. Reason: {e}"))),
            }
        });
        Ok(())
    }

    /// `inspect` with an out-of-band interface (`redfish`): the BMC is read, properties and
    /// ports recorded, and the node is back in `manageable`; a failure ends in `inspect failed`
    /// with the BMC's message.
    pub(crate) fn start_oob_inspection(&self, mut t: LockedTask, i: Arc<dyn InspectInterface>) -> Result<()> {
        i.validate(&t)?;
        let permit = self.worker()?;
        t.node.last_error = None;
        t.node.inspection_started_at = Some(self.env().clock.now());
        t.node.inspection_finished_at = None;
        self.process_event(&mut t, Event::Inspect, None)?;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            match i.inspect_hardware(&mut t).await {
                Ok(macs) => {
                    let now = c.env().clock.now();
                    c.create_inspected_ports(&t, macs.into_iter().map(|m| (m, true)));
                    t.node.inspection_finished_at = Some(now);
                    c.settle(&mut t, Event::Done, None);
                }
                Err(e) => c.settle(&mut t, Event::Fail, Some(format!("Failed to inspect hardware. Reason: {e}"))),
            }
        });
        Ok(())
    }

    /// Finds the node an inspection ramdisk runs on (by MAC, or the UUID it was given); only a
    /// node in `inspect wait` qualifies, and any failure is the same NotFound (nothing leaks).
    pub fn inspection_lookup(&self, macs: &[String], bmc: &[String], node: Option<NodeId>) -> Result<Node> {
        let not_found = || RpcError::NotFound("The resource could not be found.".into());
        let mut found: Option<Node> = match node {
            Some(id) => Some(self.db().get_node_by_uuid(id).map_err(|_| not_found())?),
            None => None,
        };
        let mut by_mac: Option<NodeId> = None;
        for m in macs {
            let Ok(mac) = m.parse::<ferric_types::models::MacAddr>() else { continue };
            if let Ok(p) = self.db().get_port_by_address(mac) {
                if by_mac.is_some_and(|n| n != p.node_uuid) {
                    tracing::error!(macs = ?macs, "inspection lookup: MAC addresses match several nodes");
                    return Err(not_found().into());
                }
                by_mac = Some(p.node_uuid);
            }
        }
        if let Some(id) = by_mac {
            if found.as_ref().is_some_and(|n| n.uuid != id) {
                tracing::error!(node = %id, "inspection lookup: MAC addresses belong to another node");
                return Err(not_found().into());
            }
            found = Some(self.db().get_node_by_uuid(id).map_err(|_| not_found())?);
        }
        if !bmc.is_empty() {
            // Nodes whose `driver_info.*_address` is one of the BMC addresses (Ironic's
            // `_lookup_by_bmc`); they must agree with what the MACs found.
            let q = crate::db::NodeQuery {
                filter: crate::db::NodeFilter {
                    provision_state: Some(ProvisionState::InspectWait),
                    ..Default::default()
                },
                ..Default::default()
            };
            let by_bmc: Vec<Node> = self
                .db()
                .list_nodes(&q)?
                .into_iter()
                .filter(|n| {
                    n.driver_info
                        .iter()
                        .any(|(k, v)| k.ends_with("_address") && v.as_str().is_some_and(|a| bmc.iter().any(|b| b == a)))
                })
                .collect();
            match (by_bmc.as_slice(), &found) {
                ([], _) => {}
                ([one], None) => found = Some(one.clone()),
                ([one], Some(f)) if one.uuid == f.uuid => {}
                _ => {
                    tracing::error!(bmc = ?bmc, "inspection lookup: BMC addresses match other or several nodes");
                    return Err(not_found().into());
                }
            }
        }
        let n = found.ok_or_else(not_found)?;
        if n.provision_state != ProvisionState::InspectWait {
            tracing::error!(node = %n.uuid, state = %n.provision_state, "inspection lookup in a wrong state");
            return Err(not_found().into());
        }
        Ok(n)
    }

    /// Issues the node's agent token once (Ironic's `get_node_with_token`): a second request
    /// gets an unusable token instead of the secret.
    pub async fn node_with_token(&self, node: NodeId) -> Result<(Node, String)> {
        let mut t = self.acquire(node)?;
        let token = super::agent::issue_token(&mut t);
        self.save(&mut t)?;
        Ok((t.node.clone(), token))
    }

    /// Stores the inventory an agent sent and finishes the inspection in the background.
    pub async fn continue_inspection(&self, node: NodeId, inventory: Value, plugin_data: Value) -> Result<()> {
        let mut t = self.acquire(node)?;
        if t.node.provision_state != ProvisionState::InspectWait {
            return Err(RpcError::NotFound("The resource could not be found.".into()).into());
        }
        let permit = self.worker()?;
        self.process_event(&mut t, Event::Resume, None)?;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            let now = c.env().clock.now();
            let ports = match process_inventory(&mut t.node, &inventory, &plugin_data) {
                Ok(p) => p,
                Err(msg) => {
                    c.power_off_best_effort(&mut t).await;
                    c.settle(&mut t, Event::Fail, Some(msg));
                    return;
                }
            };
            c.create_inspected_ports(&t, ports);
            if let Err(e) = c.db().put_inventory(t.node.uuid, &inventory, &plugin_data, now) {
                let msg = format!("Failed to store inspection data: {e}");
                c.settle(&mut t, Event::Fail, Some(msg));
                return;
            }
            c.power_off_best_effort(&mut t).await;
            let boot = t.driver.boot.clone();
            if let Err(e) = boot.clean_up_ramdisk(&mut t).await {
                tracing::warn!(node = %t.node.uuid, error = %e, "ramdisk clean-up after inspection");
            }
            t.node.inspection_finished_at = Some(now);
            c.settle(&mut t, Event::Done, None);
        });
        Ok(())
    }

    /// Creates a port for each inspected MAC no port has yet (`(mac, pxe_enabled)`); a port that
    /// cannot be created is logged, not fatal (Ironic's inspection does the same).
    fn create_inspected_ports(&self, t: &LockedTask, macs: impl IntoIterator<Item = (MacAddr, bool)>) {
        let now = self.env().clock.now();
        for (mac, pxe) in macs {
            if self.db().get_port_by_address(mac).is_ok() {
                continue;
            }
            let port = Port {
                uuid: PortId(self.env().clock.new_uuid()),
                address: mac,
                node_uuid: t.node.uuid,
                pxe_enabled: pxe,
                created_at: now,
                ..Default::default()
            };
            if let Err(e) = self.db().create_port(&port) {
                tracing::warn!(node = %t.node.uuid, %mac, error = %e, "inspection: port not created");
            }
        }
    }
}

/// Ironic's default inspection hooks (`ramdisk-error`, `validate-interfaces`, `ports`,
/// `architecture`): checks the data, records `properties.cpu_arch`, and returns the ports to
/// create (MAC, PXE-enabled): the PXE interface, or every valid one when the inventory does
/// not say which booted.
fn process_inventory(node: &mut Node, inventory: &Value, plugin_data: &Value) -> Result<Vec<(MacAddr, bool)>, String> {
    if let Some(e) = plugin_data.get("error").filter(|e| !e.is_null() && *e != &Value::Bool(false) && *e != "") {
        let e = e.as_str().map(str::to_string).unwrap_or_else(|| e.to_string());
        return Err(format!("Failed to inspect hardware. Reason: Ramdisk reported error: {e}"));
    }
    let invalid = |reason: &str| format!("Inventory for node {} is invalid: {reason}", node.uuid);
    let pxe_mac = inventory["boot"]["pxe_interface"]
        .as_str()
        .map(|m| m.strip_prefix("01-").unwrap_or(m))
        .and_then(|m| m.parse::<MacAddr>().ok());
    let mut ports = Vec::new();
    for iface in inventory["interfaces"].as_array().into_iter().flatten() {
        let (Some(name), Some(mac)) = (iface["name"].as_str(), iface["mac_address"].as_str()) else { continue };
        let Ok(mac) = mac.parse::<MacAddr>() else { continue };
        let ip = iface["ipv4_address"].as_str().or(iface["ipv6_address"].as_str()).unwrap_or("");
        if name == "lo" || ip.starts_with("127.") || ip == "::1" {
            continue;
        }
        let pxe = Some(mac) == pxe_mac;
        if pxe_mac.is_some() && !pxe {
            continue;
        }
        ports.push((mac, pxe));
    }
    if ports.is_empty() {
        return Err(invalid("no valid network interfaces"));
    }
    match inventory["cpu"]["architecture"].as_str() {
        Some(arch) => {
            node.properties.insert("cpu_arch".into(), Value::String(arch.to_string()));
        }
        None => {
            let cpu = inventory.get("cpu").map(ferric_types::models::schema::py_repr).unwrap_or_else(|| "None".into());
            return Err(invalid(&format!(
                "Inventory has malformed or missing CPU architecture information: {cpu} for node {}.",
                node.uuid
            )));
        }
    }
    Ok(ports)
}
