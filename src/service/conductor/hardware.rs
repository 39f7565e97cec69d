//! Node operations added by later API versions: RAID target, NMI, indicators, boot mode and
//! secure boot, console, volume connector/target changes and vendor passthru.

use super::{Conductor, Result};
use crate::drivers::passive::{self, VendorRoute};
use crate::drivers::{DriverError, Indicators, Task};
use ferric_types::models::{NodeId, PowerState, ProvisionState, VolumeConnector, VolumeTarget};
use ferric_types::rpc::{PassthruResult, RpcError};
use serde_json::Value;
use std::collections::BTreeMap;

/// States in which volume connectors and targets may be removed whatever the power state
/// (Ironic's DELETE_ALLOWED_STATES).
const VOLUME_DELETE_ALLOWED: &[ProvisionState] =
    &[ProvisionState::Manageable, ProvisionState::Enroll, ProvisionState::AdoptFailed];

fn routes_metadata(routes: &[VendorRoute], node_level: bool) -> BTreeMap<String, Value> {
    routes.iter().map(|r| (r.name.to_string(), r.metadata(node_level))).collect()
}

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

    fn check_volume_change(&self, t: &Task, action: &str, deleting: bool) -> Result<()> {
        let n = &t.node;
        let allowed = deleting && VOLUME_DELETE_ALLOWED.contains(&n.provision_state);
        if !allowed && n.power_state != Some(PowerState::Off) {
            return Err(RpcError::InvalidState(format!(
                "The requested action \"{action}\" can not be performed on node \"{}\" while it is in state \"{}\".",
                n.uuid,
                n.power_state.map(|p| p.as_str()).unwrap_or("None")
            ))
            .into());
        }
        Ok(())
    }

    /// Saves a changed volume connector under its node's lock; the node must be powered off.
    pub async fn update_volume_connector(&self, v: VolumeConnector) -> Result<VolumeConnector> {
        let old = self.db().get_volume_connector(v.uuid)?;
        let t = self.acquire(old.node_uuid)?;
        self.check_volume_change(&t, "volume connector update", false)?;
        let _t2 = if old.node_uuid != v.node_uuid { Some(self.acquire(v.node_uuid)?) } else { None };
        let mut v = v;
        v.updated_at = Some(self.env().clock.now());
        self.db().update_volume_connector(&v)?;
        Ok(v)
    }

    pub async fn destroy_volume_connector(&self, v: VolumeConnector) -> Result<()> {
        let t = self.acquire(v.node_uuid)?;
        self.check_volume_change(&t, "volume connector deletion", true)?;
        self.db().destroy_volume_connector(v.uuid)?;
        Ok(())
    }

    pub async fn update_volume_target(&self, v: VolumeTarget) -> Result<VolumeTarget> {
        let old = self.db().get_volume_target(v.uuid)?;
        let t = self.acquire(old.node_uuid)?;
        self.check_volume_change(&t, "volume target update", false)?;
        let _t2 = if old.node_uuid != v.node_uuid { Some(self.acquire(v.node_uuid)?) } else { None };
        let mut v = v;
        v.updated_at = Some(self.env().clock.now());
        self.db().update_volume_target(&v)?;
        Ok(v)
    }

    pub async fn destroy_volume_target(&self, v: VolumeTarget) -> Result<()> {
        let t = self.acquire(v.node_uuid)?;
        self.check_volume_change(&t, "volume target deletion", true)?;
        self.db().destroy_volume_target(v.uuid)?;
        Ok(())
    }

    /// `GET /v1/nodes/{id}/vendor_passthru/methods`.
    pub async fn node_vendor_methods(&self, node: NodeId) -> Result<BTreeMap<String, Value>> {
        let t = self.shared_task(node)?;
        Ok(routes_metadata(&passive::vendor_routes(&t.node.vendor_interface), true))
    }

    /// `GET /v1/drivers/{name}/vendor_passthru/methods` (the hardware type's default vendor
    /// interface).
    pub fn driver_vendor_methods(&self, driver: &str) -> Result<BTreeMap<String, Value>> {
        let iface = self.default_vendor(driver)?;
        Ok(routes_metadata(&passive::driver_vendor_routes(&iface), false))
    }

    fn default_vendor(&self, driver: &str) -> Result<String> {
        if self.registry().hardware_type(driver).is_none() {
            return Err(RpcError::NotFound(format!(
                "Could not find the following driver(s) or hardware type(s): {driver}."
            ))
            .into());
        }
        Ok(self.registry().default_interface(driver, "vendor").unwrap_or_else(|| "no-vendor".into()))
    }

    /// Calls a node vendor method: synchronous methods return their value, asynchronous ones
    /// run on the worker pool (202 in the API).
    pub async fn vendor_passthru(&self, node: NodeId, method: &str, http: &str, args: Value) -> Result<PassthruResult> {
        let shared = self.shared_task(node)?;
        let routes = passive::vendor_routes(&shared.node.vendor_interface);
        let route = passive::find_route(&routes, method, http)?.clone();
        let lock = if route.require_exclusive_lock { Some(self.acquire(node)?) } else { None };
        // Validation happens before the call, as the vendor interface's validate() does.
        let value = passive::call_fake_vendor(method, &args)?;
        if route.is_async {
            let permit = self.worker()?;
            self.spawn(permit, async move {
                drop(lock);
            });
            return Ok(PassthruResult { value: Value::Null, is_async: true });
        }
        drop(lock);
        Ok(PassthruResult { value, is_async: false })
    }

    /// Calls a driver-level vendor method.
    pub fn driver_vendor_passthru(&self, driver: &str, method: &str, http: &str) -> Result<PassthruResult> {
        let iface = self.default_vendor(driver)?;
        let routes = passive::driver_vendor_routes(&iface);
        let route = passive::find_route(&routes, method, http)?;
        Ok(PassthruResult { value: Value::Null, is_async: route.is_async })
    }
}
