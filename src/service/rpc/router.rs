//! The API's side of several conductors: each call goes to the live conductor the hash ring gives
//! its node (this process's own conductor in process, the others over JSON-RPC); when none can
//! take it the caller gets 503 and nothing is written. Questions about drivers and interfaces
//! are answered from this process's own configuration, which every process shares.

use super::jsonrpc::{RpcClient, RpcCredentials};
use crate::conductor::Conductor;
use crate::conductor::ring::Rings;
use crate::db::Db;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferric_types::clock::Clock;
use ferric_types::models::{
    Allocation, BootDevice, ConductorRecord, JsonMap, MacAddr, Node, NodeId, Port, PortId, PowerTarget,
    VolumeConnector, VolumeTarget,
};
use ferric_types::rpc::{
    ConductorApi, Heartbeat, Indicators, PassthruResult, ProvisionArgs, RpcError, ValidationResult,
};
use ferric_types::state_machine::Verb;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How the router reaches conductors other than its own.
#[derive(Clone)]
pub enum Transport {
    /// JSON-RPC over HTTP to the URL each conductor registered.
    Http { credentials: RpcCredentials, timeout: Duration, ca_pem: Option<Vec<u8>> },
    /// Conductors in this process by host name (simulations): the same calls, no sockets.
    InMemory(Arc<HashMap<String, Conductor>>),
}

/// Routes the rpc contract to the conductors that own the nodes.
pub struct Router {
    db: Db,
    /// This process's conductor: it answers the lookups from configuration, and (unless passive)
    /// the calls for the nodes it owns, in process.
    local: Conductor,
    transport: Transport,
    clock: Clock,
    heartbeat_timeout: u64,
    partition_exponent: u32,
    rings: parking_lot::Mutex<Option<(DateTime<Utc>, Arc<Rings>)>>,
    clients: parking_lot::Mutex<HashMap<String, (String, RpcClient)>>,
}

/// How long the router reuses the rings it read before reading the conductors table again.
const RING_REFRESH_MS: i64 = 1000;

impl Router {
    pub fn new(db: Db, local: Conductor, transport: Transport, clock: Clock) -> Router {
        let heartbeat_timeout = local.config().heartbeat_timeout;
        let partition_exponent = local.config().hash_partition_exponent;
        Router {
            db,
            local,
            transport,
            clock,
            heartbeat_timeout,
            partition_exponent,
            rings: Default::default(),
            clients: Default::default(),
        }
    }

    /// The live conductors' rings, read again at most once a second.
    pub fn rings(&self) -> Result<Arc<Rings>, RpcError> {
        let now = self.clock.now();
        let mut cached = self.rings.lock();
        if let Some((at, r)) = cached.as_ref()
            && (now - *at).num_milliseconds() < RING_REFRESH_MS
        {
            return Ok(r.clone());
        }
        let all = self.db.list_conductors().map_err(unavailable_db)?;
        let rings = Arc::new(Rings::alive(&all, now, self.heartbeat_timeout, self.partition_exponent));
        *cached = Some((now, rings.clone()));
        Ok(rings)
    }

    fn reach(&self, c: &ConductorRecord) -> Result<Arc<dyn ConductorApi>, RpcError> {
        if c.hostname == self.local.host() && !self.local.config().passive {
            return Ok(Arc::new(self.local.clone()));
        }
        match &self.transport {
            Transport::InMemory(peers) => peers
                .get(&c.hostname)
                .map(|p| Arc::new(p.clone()) as Arc<dyn ConductorApi>)
                .ok_or_else(|| RpcError::Unavailable(format!("Conductor {} is not reachable.", c.hostname))),
            Transport::Http { credentials, timeout, ca_pem } => {
                let Some(url) = c.rpc_url.as_deref() else {
                    return Err(RpcError::Unavailable(format!("Conductor {} registered no RPC address.", c.hostname)));
                };
                let mut clients = self.clients.lock();
                if let Some((u, client)) = clients.get(&c.hostname)
                    && u == url
                {
                    return Ok(Arc::new(client.clone()));
                }
                let client = RpcClient::new(&c.hostname, url, credentials, *timeout, ca_pem.as_deref())?;
                clients.insert(c.hostname.clone(), (url.to_string(), client.clone()));
                Ok(Arc::new(client))
            }
        }
    }

    /// The conductor owning a node of `driver` in `group`.
    fn owner(&self, group: &str, driver: &str, node: NodeId) -> Result<Arc<dyn ConductorApi>, RpcError> {
        let rings = self.rings()?;
        match rings.owner(group, driver, node) {
            Some(c) => self.reach(c),
            None => Err(RpcError::Unavailable(format!(
                "No valid host was found. Reason: No conductor service registered which supports driver {driver} for conductor group \"{group}\"."
            ))),
        }
    }

    /// The conductor owning the stored node `id`.
    fn for_node(&self, id: NodeId) -> Result<Arc<dyn ConductorApi>, RpcError> {
        let (group, driver) =
            self.db.view_node(id, |n, _| (n.conductor_group.clone(), n.driver.clone())).map_err(RpcError::from)?;
        self.owner(&group, &driver, id)
    }

    /// Any live conductor (work not tied to a node yet).
    fn any(&self) -> Result<Arc<dyn ConductorApi>, RpcError> {
        let rings = self.rings()?;
        let first = rings.live().next().cloned();
        match first {
            Some(c) => self.reach(&c),
            None => Err(RpcError::Unavailable("No valid host was found. Reason: No conductor is alive.".into())),
        }
    }

    /// The node an agent's lookup names (by UUID, else by one of its MACs).
    fn lookup_node(&self, macs: &[String], node: Option<NodeId>) -> Result<Option<NodeId>, RpcError> {
        if node.is_some() {
            return Ok(node);
        }
        for m in macs {
            let Ok(mac) = m.parse::<MacAddr>() else { continue };
            if let Ok(p) = self.db.get_port_by_address(mac) {
                return Ok(Some(p.node_uuid));
            }
        }
        Ok(None)
    }
}

fn unavailable_db(e: crate::db::DbError) -> RpcError {
    tracing::warn!(error = %e, "cannot read the conductors");
    RpcError::Unavailable(format!("The database is unavailable: {e}"))
}

#[async_trait]
impl ConductorApi for Router {
    fn conductor_for(&self, node: &Node) -> Option<String> {
        let rings = self.rings().ok()?;
        rings.owner(&node.conductor_group, &node.driver, node.uuid).map(|c| c.hostname.clone())
    }
    async fn create_node(&self, node: Node) -> Result<Node, RpcError> {
        self.owner(&node.conductor_group, &node.driver, node.uuid)?.create_node(node).await
    }
    async fn update_node(&self, base: Node, updated: Node, reset_interfaces: bool) -> Result<Node, RpcError> {
        self.owner(&base.conductor_group, &base.driver, base.uuid)?.update_node(base, updated, reset_interfaces).await
    }
    async fn destroy_node(&self, node: NodeId) -> Result<(), RpcError> {
        self.for_node(node)?.destroy_node(node).await
    }
    async fn change_power_state(
        &self,
        node: NodeId,
        target: PowerTarget,
        timeout: Option<u64>,
    ) -> Result<(), RpcError> {
        self.for_node(node)?.change_power_state(node, target, timeout).await
    }
    async fn do_provisioning_action(&self, node: NodeId, verb: Verb, args: ProvisionArgs) -> Result<(), RpcError> {
        self.for_node(node)?.do_provisioning_action(node, verb, args).await
    }
    async fn set_boot_device(&self, node: NodeId, device: BootDevice, persistent: bool) -> Result<(), RpcError> {
        self.for_node(node)?.set_boot_device(node, device, persistent).await
    }
    async fn get_boot_device(&self, node: NodeId) -> Result<(Option<BootDevice>, Option<bool>), RpcError> {
        self.for_node(node)?.get_boot_device(node).await
    }
    async fn supported_boot_devices(&self, node: NodeId) -> Result<Vec<BootDevice>, RpcError> {
        self.for_node(node)?.supported_boot_devices(node).await
    }
    async fn validate(&self, node: NodeId) -> Result<BTreeMap<String, ValidationResult>, RpcError> {
        self.for_node(node)?.validate(node).await
    }
    async fn set_maintenance(&self, node: NodeId, on: bool, reason: Option<String>) -> Result<(), RpcError> {
        self.for_node(node)?.set_maintenance(node, on, reason).await
    }
    async fn vif_list(&self, node: NodeId) -> Result<Vec<String>, RpcError> {
        self.for_node(node)?.vif_list(node).await
    }
    async fn vif_attach(&self, node: NodeId, vif: String, port: Option<String>) -> Result<(), RpcError> {
        self.for_node(node)?.vif_attach(node, vif, port).await
    }
    async fn vif_detach(&self, node: NodeId, vif: String) -> Result<(), RpcError> {
        self.for_node(node)?.vif_detach(node, vif).await
    }
    async fn set_traits(&self, node: NodeId, traits: Vec<String>) -> Result<(), RpcError> {
        self.for_node(node)?.set_traits(node, traits).await
    }
    async fn create_port(&self, port: Port) -> Result<Port, RpcError> {
        self.for_node(port.node_uuid)?.create_port(port).await
    }
    async fn update_port(&self, port: Port) -> Result<Port, RpcError> {
        self.for_node(port.node_uuid)?.update_port(port).await
    }
    async fn destroy_port(&self, port: PortId) -> Result<(), RpcError> {
        let node = self.db.get_port(&port.to_string()).map_err(RpcError::from)?.node_uuid;
        self.for_node(node)?.destroy_port(port).await
    }
    async fn node_trace(&self, node: NodeId, asker: u64) -> Result<ferric_types::trace::NodeTrace, RpcError> {
        self.for_node(node)?.node_trace(node, asker).await
    }
    async fn agent_lookup(&self, macs: Vec<String>, node: Option<NodeId>) -> Result<(Node, String), RpcError> {
        match self.lookup_node(&macs, node)? {
            Some(id) => self.for_node(id)?.agent_lookup(macs, Some(id)).await,
            // Nothing matches: the local conductor words the NotFound as a lookup does.
            None => self.local.agent_lookup(macs, None).await.map_err(RpcError::from),
        }
    }
    async fn heartbeat(&self, node: NodeId, hb: Heartbeat) -> Result<(), RpcError> {
        self.for_node(node)?.heartbeat(node, hb).await
    }
    fn driver_properties(&self, driver: &str) -> Result<BTreeMap<String, String>, RpcError> {
        ConductorApi::driver_properties(&self.local, driver)
    }
    fn hardware_types(&self) -> Vec<String> {
        ConductorApi::hardware_types(&self.local)
    }
    fn registry_view(&self) -> BTreeMap<(String, String), (Option<String>, Vec<String>)> {
        ConductorApi::registry_view(&self.local)
    }
    async fn set_target_raid_config(&self, node: NodeId, config: JsonMap) -> Result<(), RpcError> {
        self.for_node(node)?.set_target_raid_config(node, config).await
    }
    fn raid_logical_disk_properties(&self, driver: &str) -> Result<BTreeMap<String, String>, RpcError> {
        ConductorApi::raid_logical_disk_properties(&self.local, driver)
    }
    async fn inject_nmi(&self, node: NodeId) -> Result<(), RpcError> {
        self.for_node(node)?.inject_nmi(node).await
    }
    async fn get_supported_indicators(&self, node: NodeId) -> Result<Indicators, RpcError> {
        self.for_node(node)?.get_supported_indicators(node).await
    }
    async fn set_indicator_state(
        &self,
        node: NodeId,
        component: String,
        indicator: String,
        state: String,
    ) -> Result<(), RpcError> {
        self.for_node(node)?.set_indicator_state(node, component, indicator, state).await
    }
    async fn get_indicator_state(
        &self,
        node: NodeId,
        component: String,
        indicator: String,
    ) -> Result<String, RpcError> {
        self.for_node(node)?.get_indicator_state(node, component, indicator).await
    }
    async fn change_boot_mode(&self, node: NodeId, mode: String) -> Result<(), RpcError> {
        self.for_node(node)?.change_boot_mode(node, mode).await
    }
    async fn change_secure_boot(&self, node: NodeId, enabled: bool) -> Result<(), RpcError> {
        self.for_node(node)?.change_secure_boot(node, enabled).await
    }
    async fn set_console_mode(&self, node: NodeId, enabled: bool) -> Result<(), RpcError> {
        self.for_node(node)?.set_console_mode(node, enabled).await
    }
    async fn get_console_information(&self, node: NodeId) -> Result<Option<Value>, RpcError> {
        self.for_node(node)?.get_console_information(node).await
    }
    async fn update_volume_connector(&self, v: VolumeConnector) -> Result<VolumeConnector, RpcError> {
        self.for_node(v.node_uuid)?.update_volume_connector(v).await
    }
    async fn destroy_volume_connector(&self, v: VolumeConnector) -> Result<(), RpcError> {
        self.for_node(v.node_uuid)?.destroy_volume_connector(v).await
    }
    async fn update_volume_target(&self, v: VolumeTarget) -> Result<VolumeTarget, RpcError> {
        self.for_node(v.node_uuid)?.update_volume_target(v).await
    }
    async fn destroy_volume_target(&self, v: VolumeTarget) -> Result<(), RpcError> {
        self.for_node(v.node_uuid)?.destroy_volume_target(v).await
    }
    async fn create_allocation(&self, a: Allocation, backfill: Option<NodeId>) -> Result<Allocation, RpcError> {
        match backfill {
            Some(n) => self.for_node(n)?.create_allocation(a, backfill).await,
            None => self.any()?.create_allocation(a, None).await,
        }
    }
    async fn destroy_allocation(&self, a: Allocation) -> Result<(), RpcError> {
        match a.node_uuid {
            Some(n) => self.for_node(n)?.destroy_allocation(a).await,
            None => self.any()?.destroy_allocation(a).await,
        }
    }
    async fn node_vendor_methods(&self, node: NodeId) -> Result<BTreeMap<String, Value>, RpcError> {
        self.for_node(node)?.node_vendor_methods(node).await
    }
    fn driver_vendor_methods(&self, driver: &str) -> Result<BTreeMap<String, Value>, RpcError> {
        ConductorApi::driver_vendor_methods(&self.local, driver)
    }
    async fn vendor_passthru(
        &self,
        node: NodeId,
        method: String,
        http: String,
        args: Value,
    ) -> Result<PassthruResult, RpcError> {
        self.for_node(node)?.vendor_passthru(node, method, http, args).await
    }
    fn driver_vendor_passthru(&self, driver: &str, method: &str, http: &str) -> Result<PassthruResult, RpcError> {
        ConductorApi::driver_vendor_passthru(&self.local, driver, method, http)
    }
    fn inspection_lookup(&self, macs: Vec<String>, bmc: Vec<String>, node: Option<NodeId>) -> Result<Node, RpcError> {
        ConductorApi::inspection_lookup(&self.local, macs, bmc, node)
    }
    async fn node_with_token(&self, node: NodeId) -> Result<(Node, String), RpcError> {
        self.for_node(node)?.node_with_token(node).await
    }
    async fn continue_inspection(&self, node: NodeId, inventory: Value, plugin_data: Value) -> Result<(), RpcError> {
        self.for_node(node)?.continue_inspection(node, inventory, plugin_data).await
    }
}
