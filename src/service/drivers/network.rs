//! Network interfaces `noop` and `flat`, and the VIF bookkeeping they share.
//!
//! `flat`: one physical network serves provisioning and tenants, so "attaching the provisioning
//! network" marks the node's PXE ports as provisioning ports (the DHCP server answers them) and
//! binding tenant ports marks them bound. `noop` does nothing.

use super::{DriverError, NetworkInterface, Task, Vif};
use async_trait::async_trait;
use serde_json::Value;

pub(crate) fn vif_list(task: &Task) -> Vec<Vif> {
    task.ports.iter().filter_map(|p| p.vif().map(|v| Vif { id: v.to_string() })).collect()
}

pub(crate) fn vif_attach(task: &mut Task, vif: &str, port: Option<&str>) -> Result<(), DriverError> {
    if task.ports.iter().any(|p| p.vif() == Some(vif)) {
        return Err(DriverError::InvalidParameter(format!(
            "Unable to attach VIF {vif} to node {}: it is already attached.",
            task.node.uuid
        )));
    }
    let slot = match port {
        Some(id) => task.ports.iter_mut().find(|p| p.uuid.to_string() == id || p.name.as_deref() == Some(id)),
        // Prefer PXE-enabled ports, as Ironic does.
        None => {
            let free = |p: &&mut ferric_types::models::Port| p.vif().is_none();
            let idx = task
                .ports
                .iter_mut()
                .enumerate()
                .filter(|(_, p)| free(p))
                .max_by_key(|(i, p)| (p.pxe_enabled, usize::MAX - i))
                .map(|(i, _)| i);
            idx.map(|i| &mut task.ports[i])
        }
    };
    match slot {
        Some(p) if p.vif().is_none() => {
            p.internal_info.insert("tenant_vif_port_id".into(), Value::String(vif.to_string()));
            Ok(())
        }
        _ => Err(DriverError::InvalidParameter(format!("Unable to attach VIF {vif}, not enough free physical ports."))),
    }
}

pub(crate) fn vif_detach(task: &mut Task, vif: &str) -> Result<(), DriverError> {
    match task.ports.iter_mut().find(|p| p.vif() == Some(vif)) {
        Some(p) => {
            p.internal_info.remove("tenant_vif_port_id");
            Ok(())
        }
        None => Err(DriverError::InvalidParameter(format!(
            "Unable to detach VIF {vif} from node {}: it is not attached.",
            task.node.uuid
        ))),
    }
}

pub struct NoopNetwork;

#[async_trait]
impl NetworkInterface for NoopNetwork {
    fn validate(&self, _task: &Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn add_provisioning_network(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn remove_provisioning_network(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn configure_tenant_networks(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn unconfigure_tenant_networks(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn add_cleaning_network(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn remove_cleaning_network(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
}

pub use crate::network::dhcp::PROVISIONING_KEY;
/// Key in a port's `internal_info` marking its tenant VIF as bound.
pub const BOUND_KEY: &str = "tenant_bound";

pub struct FlatNetwork;

fn set_flag(task: &mut Task, key: &str, on: bool, only_pxe: bool) {
    for p in task.ports.iter_mut() {
        if only_pxe && !p.pxe_enabled {
            continue;
        }
        if on {
            p.internal_info.insert(key.into(), Value::Bool(true));
        } else {
            p.internal_info.remove(key);
        }
    }
}

#[async_trait]
impl NetworkInterface for FlatNetwork {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        if !task.ports.iter().any(|p| p.pxe_enabled) {
            return Err(DriverError::MissingParameter(format!(
                "Node {} has no PXE-enabled ports; the flat network needs one to provision it.",
                task.node.uuid
            )));
        }
        Ok(())
    }
    async fn add_provisioning_network(&self, task: &mut Task) -> Result<(), DriverError> {
        set_flag(task, PROVISIONING_KEY, true, true);
        Ok(())
    }
    async fn remove_provisioning_network(&self, task: &mut Task) -> Result<(), DriverError> {
        set_flag(task, PROVISIONING_KEY, false, false);
        super::pxe_boot::forget_ramdisk_dhcp(task)
    }
    async fn configure_tenant_networks(&self, task: &mut Task) -> Result<(), DriverError> {
        for p in task.ports.iter_mut() {
            if p.vif().is_some() {
                p.internal_info.insert(BOUND_KEY.into(), Value::Bool(true));
            }
        }
        Ok(())
    }
    async fn unconfigure_tenant_networks(&self, task: &mut Task) -> Result<(), DriverError> {
        set_flag(task, BOUND_KEY, false, false);
        Ok(())
    }
    async fn add_cleaning_network(&self, task: &mut Task) -> Result<(), DriverError> {
        self.add_provisioning_network(task).await
    }
    async fn remove_cleaning_network(&self, task: &mut Task) -> Result<(), DriverError> {
        self.remove_provisioning_network(task).await
    }
}
