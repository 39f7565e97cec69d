//! The provisioning network's DHCP state, kept in the database (the Neutron role).
//!
//! Which MACs ferric's DHCP server answers is derived from the ports themselves, so nothing can
//! drift out of sync: a port is served when it is `pxe_enabled` **and** either
//! - the network interface put it on the provisioning network (`internal_info.provisioning_network`,
//!   set by `flat`'s `add_provisioning_network`/`add_cleaning_network`, cleared by the `remove_*`
//!   calls), or
//! - a boot interface set DHCP boot options for it (a `dhcp_hosts` row: the seed's "Update DHCP
//!   boot options"; removed by `clean_up_ramdisk`, by `prepare_instance` for local boot, and by
//!   `clean_up_instance`).
//!
//! Deleting a port or node deletes its rows (foreign keys). Leases live in `dhcp_addresses`; a
//! lease of a MAC that is no longer served is simply never renewed and expires.

use crate::db::{Db, DbError, LeaseRow};
use ferric_types::dhcp::{HostEntry, HostTable, Lease, LeaseState, LeaseStore, Loader, StoreError};
use ferric_types::models::{MacAddr, NodeId, PortId};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Key in a port's `internal_info` marking it as on the provisioning network (the `flat`
/// network interface sets it; the DHCP host table serves only such ports).
pub const PROVISIONING_KEY: &str = "provisioning_network";

/// What a node's PXE environment currently boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootPurpose {
    /// The deploy/cleaning ramdisk (`prepare_ramdisk`).
    Ramdisk,
    /// A netbooted instance (`prepare_instance` with `boot_option=netboot`).
    Instance,
}

/// DHCP boot options of one port, as the boot interface sets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBootOptions {
    pub port: PortId,
    pub mac: MacAddr,
    /// Network boot program family (`pxe` → pxelinux, `ipxe` → iPXE).
    pub loader: Loader,
    pub purpose: BootPurpose,
}

/// Errors of the DHCP provider.
#[derive(Debug, thiserror::Error)]
pub enum DhcpProviderError {
    #[error("DHCP options store: {0}")]
    Db(#[from] DbError),
    #[error("DHCP options of node {node} are corrupt: {message}")]
    Corrupt { node: NodeId, message: String },
}

/// Ironic's DHCP provider API, as the boot interfaces call it.
pub trait DhcpProvider: Send + Sync {
    /// Replaces the node's per-port boot options with `opts` (an empty slice removes them).
    fn update_dhcp(&self, node: NodeId, opts: &[PortBootOptions]) -> Result<(), DhcpProviderError>;
    /// The node's current per-port boot options.
    fn node_dhcp(&self, node: NodeId) -> Result<Vec<PortBootOptions>, DhcpProviderError>;
    /// Removes the node's boot options.
    fn clean_dhcp(&self, node: NodeId) -> Result<(), DhcpProviderError> {
        self.update_dhcp(node, &[])
    }
}

/// DHCP host table, lease store and DHCP provider over the service's database. Cheap to clone.
#[derive(Clone)]
pub struct DbDhcp {
    db: Db,
    /// With several conductors on one provisioning network: whether this one owns a node.
    /// The host table answers only for its own nodes' MACs; the others ignore them.
    owns: Option<Arc<dyn Fn(NodeId) -> bool + Send + Sync>>,
}

impl DbDhcp {
    pub fn new(db: Db) -> DbDhcp {
        DbDhcp { db, owns: None }
    }

    /// A host table that answers only for the nodes `owns` says are this conductor's.
    pub fn owned(db: Db, owns: Arc<dyn Fn(NodeId) -> bool + Send + Sync>) -> DbDhcp {
        DbDhcp { db, owns: Some(owns) }
    }
}

fn to_json(o: &PortBootOptions) -> serde_json::Value {
    // A struct of plain fields always serialises.
    serde_json::to_value(o).unwrap_or(serde_json::Value::Null)
}

impl DhcpProvider for DbDhcp {
    fn update_dhcp(&self, node: NodeId, opts: &[PortBootOptions]) -> Result<(), DhcpProviderError> {
        let rows: Vec<(PortId, serde_json::Value)> = opts.iter().map(|o| (o.port, to_json(o))).collect();
        self.db.set_dhcp_hosts(node, &rows)?;
        Ok(())
    }

    fn node_dhcp(&self, node: NodeId) -> Result<Vec<PortBootOptions>, DhcpProviderError> {
        self.db
            .node_dhcp_hosts(node)?
            .into_iter()
            .map(|(_, body)| {
                serde_json::from_value(body).map_err(|e| DhcpProviderError::Corrupt { node, message: e.to_string() })
            })
            .collect()
    }

    fn clean_dhcp(&self, node: NodeId) -> Result<(), DhcpProviderError> {
        self.db.delete_dhcp_hosts(node)?;
        Ok(())
    }
}

impl HostTable for DbDhcp {
    fn lookup(&self, mac: &MacAddr) -> Option<HostEntry> {
        let (port, opts) = match self.db.dhcp_host_by_address(ferric_types::models::MacAddr(mac.0)) {
            Ok(Some(v)) => v,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(%mac, error = %e, "dhcp: host lookup failed");
                return None;
            }
        };
        let opts: Option<PortBootOptions> = opts.and_then(|o| match serde_json::from_value(o) {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::warn!(%mac, error = %e, "dhcp: ignoring corrupt boot options");
                None
            }
        });
        let provisioning = port.internal_info.get(PROVISIONING_KEY).and_then(|v| v.as_bool()).unwrap_or(false);
        if !port.pxe_enabled || (!provisioning && opts.is_none()) {
            return None;
        }
        if let Some(owns) = &self.owns
            && !owns(port.node_uuid)
        {
            return None;
        }
        Some(HostEntry {
            node: Some(port.node_uuid.to_string()),
            pxe_enabled: true,
            loader: opts.map(|o| o.loader),
            ..Default::default()
        })
    }
}

fn state_str(s: LeaseState) -> &'static str {
    match s {
        LeaseState::Offered => "offered",
        LeaseState::Bound => "bound",
        LeaseState::Declined => "declined",
    }
}

fn from_row(r: LeaseRow) -> Result<Lease, StoreError> {
    let state = match r.state.as_str() {
        "offered" => LeaseState::Offered,
        "bound" => LeaseState::Bound,
        "declined" => LeaseState::Declined,
        other => return Err(StoreError(format!("lease of {} has unknown state {other:?}", r.ip))),
    };
    let mac = r.mac.parse().map_err(|_| StoreError(format!("lease of {} has a bad MAC {:?}", r.ip, r.mac)))?;
    Ok(Lease { mac, ip: r.ip, state, expires: r.expires })
}

fn store_err(e: DbError) -> StoreError {
    StoreError(e.to_string())
}

impl LeaseStore for DbDhcp {
    fn by_mac(&self, mac: &MacAddr) -> Result<Option<Lease>, StoreError> {
        self.db.dhcp_address_by_mac(&mac.to_string()).map_err(store_err)?.map(from_row).transpose()
    }
    fn all(&self) -> Result<Vec<Lease>, StoreError> {
        self.db.list_dhcp_addresses().map_err(store_err)?.into_iter().map(from_row).collect()
    }
    fn put(&self, lease: Lease) -> Result<(), StoreError> {
        self.db
            .put_dhcp_address(&LeaseRow {
                ip: lease.ip,
                mac: lease.mac.to_string(),
                state: state_str(lease.state).into(),
                expires: lease.expires,
            })
            .map_err(store_err)
    }
    fn remove(&self, ip: Ipv4Addr) -> Result<(), StoreError> {
        self.db.delete_dhcp_address(ip).map_err(store_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferric_types::models::{Node, Port};

    /// With several conductors on one network, each answers only its own nodes' MACs.
    #[test]
    fn an_owned_host_table_ignores_other_conductors_nodes() {
        let db = Db::open_in_memory().unwrap();
        let mut ports = Vec::new();
        for i in 0..2u8 {
            let node =
                Node { uuid: NodeId(uuid::Uuid::from_u128(i as u128 + 1)), driver: "ipmi".into(), ..Node::default() };
            db.create_node(&node).unwrap();
            let mut port = Port {
                uuid: PortId(uuid::Uuid::from_u128(100 + i as u128)),
                address: MacAddr([0x52, 0x54, 0, 0, 0, i]),
                node_uuid: node.uuid,
                pxe_enabled: true,
                ..Port::default()
            };
            port.internal_info.insert(PROVISIONING_KEY.into(), true.into());
            db.create_port(&port).unwrap();
            ports.push(port);
        }
        let mine = ports[0].node_uuid;
        let all = DbDhcp::new(db.clone());
        let owned = DbDhcp::owned(db, Arc::new(move |n| n == mine));
        let mac = |p: &Port| p.address;
        assert!(all.lookup(&mac(&ports[0])).is_some() && all.lookup(&mac(&ports[1])).is_some());
        assert!(owned.lookup(&mac(&ports[0])).is_some());
        assert!(owned.lookup(&mac(&ports[1])).is_none());
    }
}
