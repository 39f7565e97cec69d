//! Vendor passthru: listing and calling a node's or a hardware type's vendor methods.

use super::{Conductor, Result};
use crate::drivers::passive::{self, VendorRoute};
use ferric_types::models::NodeId;
use ferric_types::rpc::{PassthruResult, RpcError};
use serde_json::Value;
use std::collections::BTreeMap;

fn routes_metadata(routes: &[VendorRoute], node_level: bool) -> BTreeMap<String, Value> {
    routes.iter().map(|r| (r.name.to_string(), r.metadata(node_level))).collect()
}

impl Conductor {
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
