//! Node and port changes, power, boot devices, validation, VIFs, agent lookup.

use super::{Conductor, Result};
use crate::drivers::{DriverError, PASSIVE_KINDS};
use ferric_types::models::{
    BootDevice, INTERFACE_NAMES, MacAddr, Node, NodeId, Port, PortId, PowerTarget, ProvisionState,
};
use ferric_types::rpc::{RpcError, ValidationResult};
use ferric_types::state_machine;
use std::collections::BTreeMap;
use std::time::Duration;

/// States in which a node may be deleted (Ironic's DELETE_ALLOWED_STATES plus `available`).
const DELETE_ALLOWED: &[ProvisionState] =
    &[ProvisionState::Manageable, ProvisionState::Enroll, ProvisionState::AdoptFailed, ProvisionState::Available];

impl Conductor {
    pub async fn create_node(&self, mut node: Node) -> Result<Node> {
        self.registry().resolve_node_interfaces(&mut node)?;
        node.created_at = self.env().clock.now();
        node.conductor_group = node.conductor_group.to_lowercase();
        self.db().create_node(&node)?;
        node.conductor = Some(self.host().to_string());
        Ok(node)
    }

    /// Saves an updated node record under its lock, re-resolving interfaces when the hardware
    /// type or an interface changed.
    pub async fn update_node(&self, base: Node, mut updated: Node, reset_interfaces: bool) -> Result<Node> {
        let t = self.acquire(updated.uuid)?;
        let old = &t.node;
        let same = |a: &Node, b: &Node| {
            let (mut a, mut b) = (a.clone(), b.clone());
            (a.reservation, b.reservation, a.conductor, b.conductor) = (None, None, None, None);
            a == b
        };
        if !same(old, &base) {
            return Err(RpcError::Stale(format!("Node {} changed while the update was prepared.", old.uuid)).into());
        }
        let driver_changed = old.driver != updated.driver;
        if driver_changed || reset_interfaces {
            for kind in INTERFACE_NAMES {
                let changed = old.interface(kind) != updated.interface(kind);
                if !changed || reset_interfaces {
                    if let Some(slot) = updated.interface_mut(kind) {
                        if reset_interfaces || driver_changed {
                            slot.clear();
                        }
                    }
                }
            }
        }
        let interfaces_changed = INTERFACE_NAMES.iter().any(|k| old.interface(k) != updated.interface(k));
        if (driver_changed || interfaces_changed)
            && !matches!(
                old.provision_state,
                ProvisionState::Enroll
                    | ProvisionState::Manageable
                    | ProvisionState::Available
                    | ProvisionState::InspectFailed
            )
            && !old.maintenance
        {
            return Err(RpcError::Conflict(format!(
                "Node {} can not have its driver or interfaces updated while in state {}.",
                old.uuid, old.provision_state
            ))
            .into());
        }
        if updated.instance_uuid.is_some() && old.instance_uuid.is_some() && updated.instance_uuid != old.instance_uuid
        {
            return Err(RpcError::Conflict(format!(
                "Node {} is associated with instance {}.",
                old.uuid,
                old.instance_uuid.as_deref().unwrap_or_default()
            ))
            .into());
        }
        self.registry().resolve_node_interfaces(&mut updated)?;
        updated.conductor_group = updated.conductor_group.to_lowercase();
        updated.updated_at = Some(self.env().clock.now());
        self.db().update_node(&updated)?;
        updated.conductor = Some(self.host().to_string());
        Ok(updated)
    }

    pub async fn destroy_node(&self, node: NodeId) -> Result<()> {
        let t = self.acquire(node)?;
        if t.node.protected {
            return Err(RpcError::Forbidden(format!(
                "Node {} is protected and cannot be undeployed, rebuilt or deleted",
                t.node.uuid
            ))
            .into());
        }
        if !DELETE_ALLOWED.contains(&t.node.provision_state) && !t.node.maintenance {
            return Err(RpcError::Conflict(format!(
                "Can not delete node \"{}\" while it is in provision state \"{}\". Valid provision states to perform deletion are: \"('manageable', 'enroll', 'adopt failed', 'available')\", or set the node into maintenance mode",
                t.node.uuid, t.node.provision_state
            ))
            .into());
        }
        if t.node.instance_uuid.is_some() && !t.node.maintenance {
            return Err(RpcError::Conflict(format!(
                "Node {} is associated with instance {}.",
                t.node.uuid,
                t.node.instance_uuid.as_deref().unwrap_or_default()
            ))
            .into());
        }
        self.db().destroy_node(node)?;
        Ok(())
    }

    /// Starts a power change; the API answers 202 and the change completes in the background.
    pub async fn change_power_state(&self, node: NodeId, target: PowerTarget, timeout: Option<u64>) -> Result<()> {
        let mut t = self.acquire(node)?;
        t.driver.power.validate(&t)?;
        if !t.driver.power.supported_power_states().contains(&target) {
            return Err(RpcError::Invalid(format!(
                "The requested power state {target} is not supported by the power interface of node {}.",
                t.node.uuid
            ))
            .into());
        }
        if t.node.disable_power_off && matches!(target, PowerTarget::Off | PowerTarget::SoftOff) {
            return Err(RpcError::Invalid(format!(
                "Powering off is disabled for node {} (disable_power_off).",
                t.node.uuid
            ))
            .into());
        }
        let permit = self.worker()?;
        t.node.target_power_state = Some(target.end_state().as_str().to_string());
        t.node.last_error = None;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            let res = c.node_power_action(&mut t, target, timeout.map(Duration::from_secs)).await;
            if let Err(e) = res {
                t.node.last_error =
                    Some(format!("Failed to change power state to '{target}' by '{}'. Error: {e}", target.as_str()));
            }
            t.node.target_power_state = None;
            if let Err(e) = c.save(&mut t) {
                tracing::error!(node = %t.node.uuid, error = %e, "cannot save power state");
            }
        });
        Ok(())
    }

    pub async fn set_boot_device(&self, node: NodeId, device: BootDevice, persistent: bool) -> Result<()> {
        let mut t = self.acquire(node)?;
        t.driver.management.validate(&t)?;
        if !t.driver.management.supported_boot_devices().contains(&device) {
            return Err(RpcError::Invalid(format!(
                "Invalid boot device {device} specified, supported are: {}.",
                t.driver.management.supported_boot_devices().iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
        let mgmt = t.driver.management.clone();
        mgmt.set_boot_device(&mut t, device, persistent)
            .await
            .map_err(|e| RpcError::Internal(format!("Failed to set boot device for node {}: {e}", node)))?;
        Ok(())
    }

    pub async fn get_boot_device(&self, node: NodeId) -> Result<(Option<BootDevice>, Option<bool>)> {
        let mut t = self.shared_task(node)?;
        t.driver.management.validate(&t)?;
        let mgmt = t.driver.management.clone();
        Ok(mgmt
            .get_boot_device(&mut t)
            .await
            .map_err(|e| RpcError::Internal(format!("Failed to get boot device for node {}: {e}", node)))?)
    }

    pub async fn supported_boot_devices(&self, node: NodeId) -> Result<Vec<BootDevice>> {
        let t = self.shared_task(node)?;
        Ok(t.driver.management.supported_boot_devices())
    }

    /// Each interface's validation, as `GET /v1/nodes/{id}/validate` reports it.
    pub async fn validate(&self, node: NodeId) -> Result<BTreeMap<String, ValidationResult>> {
        let t = self.shared_task(node)?;
        let d = &t.driver;
        let mut out = BTreeMap::new();
        let mut put = |k: &str, r: Result<(), DriverError>| {
            out.insert(k.to_string(), ValidationResult { result: r.is_ok(), reason: r.err().map(|e| e.to_string()) });
        };
        put("boot", d.boot.validate(&t));
        put("deploy", d.deploy.validate(&t));
        put("management", d.management.validate(&t));
        put("network", d.network.validate(&t));
        put("power", d.power.validate(&t));
        for kind in PASSIVE_KINDS {
            let iface = t.node.interface(kind).unwrap_or_default();
            let r = if iface.starts_with("no-") {
                Err(DriverError::Unsupported(format!("not supported by {kind} interface {iface}")))
            } else {
                Ok(())
            };
            put(kind, r);
        }
        Ok(out)
    }

    pub async fn set_maintenance(&self, node: NodeId, on: bool, reason: Option<String>) -> Result<()> {
        let mut t = self.acquire(node)?;
        t.node.maintenance = on;
        t.node.maintenance_reason = if on { reason } else { None };
        if !on {
            t.node.fault = None;
            self.inner.power_failures.lock().remove(&node);
        }
        self.save(&mut t)?;
        Ok(())
    }

    pub async fn vif_list(&self, node: NodeId) -> Result<Vec<String>> {
        let t = self.shared_task(node)?;
        Ok(t.driver.network.vif_list(&t).into_iter().map(|v| v.id).collect())
    }

    pub async fn vif_attach(&self, node: NodeId, vif: String, port: Option<String>) -> Result<()> {
        let mut t = self.acquire(node)?;
        let net = t.driver.network.clone();
        net.vif_attach(&mut t, &vif, port.as_deref())?;
        self.save(&mut t)?;
        Ok(())
    }

    pub async fn vif_detach(&self, node: NodeId, vif: String) -> Result<()> {
        let mut t = self.acquire(node)?;
        let net = t.driver.network.clone();
        net.vif_detach(&mut t, &vif)?;
        self.save(&mut t)?;
        Ok(())
    }

    pub async fn set_traits(&self, node: NodeId, traits: Vec<String>) -> Result<()> {
        let mut t = self.acquire(node)?;
        t.node.traits = traits;
        self.save(&mut t)?;
        Ok(())
    }

    pub async fn create_port(&self, mut port: Port) -> Result<Port> {
        // The node's lock keeps port changes out of running deploys.
        let _t = self.acquire(port.node_uuid)?;
        port.created_at = self.env().clock.now();
        self.db().create_port(&port)?;
        Ok(port)
    }

    pub async fn update_port(&self, mut port: Port) -> Result<Port> {
        let old = self.db().get_port(&port.uuid.to_string())?;
        let _t = self.acquire(old.node_uuid)?;
        let _t2 = if old.node_uuid != port.node_uuid { Some(self.acquire(port.node_uuid)?) } else { None };
        port.updated_at = Some(self.env().clock.now());
        self.db().update_port(&port)?;
        Ok(port)
    }

    pub async fn destroy_port(&self, port: PortId) -> Result<()> {
        let p = self.db().get_port(&port.to_string())?;
        let t = self.acquire(p.node_uuid)?;
        if p.vif().is_some() && t.node.provision_state == ProvisionState::Active && !t.node.maintenance {
            return Err(RpcError::Conflict(format!(
                "Cannot delete port {port}: a VIF is attached and node {} is active.",
                t.node.uuid
            ))
            .into());
        }
        self.db().destroy_port(port)?;
        Ok(())
    }

    /// Finds the node an agent runs on, by MAC addresses (or the UUID it was given), and issues
    /// the agent token once; later lookups get the same token only if none was issued yet.
    pub async fn agent_lookup(&self, macs: Vec<String>, node: Option<NodeId>) -> Result<(Node, String)> {
        let id = match node {
            Some(n) => n,
            None => {
                let mut found = None;
                for m in &macs {
                    let Ok(mac) = m.parse::<MacAddr>() else { continue };
                    if let Ok(p) = self.db().get_port_by_address(mac) {
                        found = Some(p.node_uuid);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    RpcError::NotFound(format!("Node with addresses {} could not be found.", macs.join(",")))
                })?
            }
        };
        let mut t = self.acquire(id)?;
        if !state_machine::lookup_allowed(t.node.provision_state) {
            return Err(RpcError::NotFound(format!(
                "Node {id} could not be found in a state that allows lookups (it is in state {}).",
                t.node.provision_state
            ))
            .into());
        }
        let token = super::agent::issue_token(&mut t);
        self.save(&mut t)?;
        Ok((t.node.clone(), token))
    }
}
