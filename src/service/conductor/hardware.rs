//! Node operations on the hardware beyond power and boot device: the target RAID configuration
//! (API 1.12), inject NMI (1.29), indicators (1.63), boot mode and secure boot (1.76), and the
//! console.

use super::{Conductor, Result};
use crate::drivers::passive;
use crate::drivers::{DriverError, Indicators};
use ferric_types::models::NodeId;
use ferric_types::rpc::RpcError;
use serde_json::Value;
use std::collections::BTreeMap;

impl Conductor {
    /// Stores a node's target RAID configuration after the RAID interface validated it; an
    /// interface without RAID support is 404, as Ironic answers.
    pub async fn set_target_raid_config(&self, node: NodeId, config: ferric_types::models::JsonMap) -> Result<()> {
        let mut t = self.acquire(node)?;
        if !config.is_empty() {
            let v = Value::Object(config.clone());
            passive::validate_raid_config(&t.node.raid_interface, &t.node.driver, &v).map_err(|e| match e {
                DriverError::Unsupported(m) => RpcError::NotFound(m),
                other => other.into(),
            })?;
        }
        t.node.target_raid_config = config;
        self.save(&mut t)?;
        Ok(())
    }

    /// The logical disk properties a hardware type's RAID interface accepts.
    pub fn raid_logical_disk_properties(&self, driver: &str) -> Result<BTreeMap<String, String>> {
        if self.registry().hardware_type(driver).is_none() {
            return Err(RpcError::NotFound(format!(
                "Could not find the following driver(s) or hardware type(s): {driver}."
            ))
            .into());
        }
        Ok(passive::raid_logical_disk_properties())
    }

    pub async fn inject_nmi(&self, node: NodeId) -> Result<()> {
        let mut t = self.acquire(node)?;
        t.driver.management.validate(&t)?;
        let mgmt = t.driver.management.clone();
        mgmt.inject_nmi(&mut t).await?;
        Ok(())
    }

    pub async fn get_supported_indicators(&self, node: NodeId) -> Result<Indicators> {
        let t = self.shared_task(node)?;
        t.driver.management.validate(&t)?;
        Ok(t.driver.management.supported_indicators(&t)?)
    }

    pub async fn set_indicator_state(&self, node: NodeId, component: &str, indicator: &str, state: &str) -> Result<()> {
        let mut t = self.acquire(node)?;
        t.driver.management.validate(&t)?;
        let mgmt = t.driver.management.clone();
        mgmt.set_indicator_state(&mut t, component, indicator, state).await?;
        Ok(())
    }

    pub async fn get_indicator_state(&self, node: NodeId, component: &str, indicator: &str) -> Result<String> {
        let mut t = self.acquire(node)?;
        t.driver.management.validate(&t)?;
        let mgmt = t.driver.management.clone();
        Ok(mgmt.get_indicator_state(&mut t, component, indicator).await?)
    }

    /// Changes the boot mode in the background (202); the node records the new mode, or the
    /// failure in `last_error`.
    pub async fn change_boot_mode(&self, node: NodeId, mode: String) -> Result<()> {
        let mut t = self.acquire(node)?;
        t.driver.management.validate(&t)?;
        let permit = self.worker()?;
        t.node.last_error = None;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            let mgmt = t.driver.management.clone();
            match mgmt.set_boot_mode(&mut t, &mode).await {
                Ok(()) => t.node.boot_mode = Some(mode),
                Err(e) => {
                    t.node.last_error = Some(format!("Failed to change boot mode to '{mode}'. Error: {e}"));
                }
            }
            if let Err(e) = c.save(&mut t) {
                tracing::error!(node = %t.node.uuid, error = %e, "cannot save boot mode");
            }
        });
        Ok(())
    }

    /// Changes the secure boot state in the background, as [`Conductor::change_boot_mode`].
    pub async fn change_secure_boot(&self, node: NodeId, enabled: bool) -> Result<()> {
        let mut t = self.acquire(node)?;
        t.driver.management.validate(&t)?;
        let permit = self.worker()?;
        t.node.last_error = None;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            let mgmt = t.driver.management.clone();
            match mgmt.set_secure_boot_state(&mut t, enabled).await {
                Ok(()) => t.node.secure_boot = Some(enabled),
                Err(e) => {
                    t.node.last_error = Some(format!("Failed to change secure boot state to '{enabled}'. Error: {e}"));
                }
            }
            if let Err(e) = c.save(&mut t) {
                tracing::error!(node = %t.node.uuid, error = %e, "cannot save secure boot state");
            }
        });
        Ok(())
    }

    /// Starts or stops the node's console (202 in the API); nothing happens if it is already in
    /// the requested state.
    pub async fn set_console_mode(&self, node: NodeId, enabled: bool) -> Result<()> {
        let shared = self.shared_task(node)?;
        passive::validate_console(&shared.node.console_interface, &shared.node.driver)?;
        if shared.node.console_enabled == enabled {
            tracing::info!(node = %node, enabled, "console already in the requested state");
            return Ok(());
        }
        let mut t = self.acquire(node)?;
        let permit = self.worker()?;
        t.node.last_error = None;
        self.save(&mut t)?;
        let c = self.clone();
        self.spawn(permit, async move {
            let mut t = t;
            t.node.console_enabled = enabled;
            t.node.last_error = None;
            if let Err(e) = c.save(&mut t) {
                tracing::error!(node = %t.node.uuid, error = %e, "cannot save console state");
            }
        });
        Ok(())
    }

    /// Connection information of an enabled console; `None` when the console is disabled.
    pub async fn get_console_information(&self, node: NodeId) -> Result<Option<Value>> {
        let t = self.shared_task(node)?;
        if !t.node.console_enabled {
            return Ok(None);
        }
        passive::validate_console(&t.node.console_interface, &t.node.driver)?;
        Ok(Some(Value::Object(Default::default())))
    }
}
