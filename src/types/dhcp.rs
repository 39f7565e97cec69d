//! The contract between the DHCP server (`ferric_service::pxe::dhcp`) and the rest of ferric:
//! which MACs to serve with which boot options (the host table, fed by the network interface's
//! "update DHCP boot options" step) and where leases persist (the lease store, backed by the
//! database in the service). Both are synchronous: the handler is a plain function of (packet,
//! time, tables) that a simulation calls directly.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use parking_lot::RwLock;

use crate::models::MacAddr;

/// Which network boot program family a host gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loader {
    /// iPXE: BIOS gets `undionly.kpxe`, UEFI `ipxe.efi`, iPXE itself the node's script URL.
    Ipxe,
    /// pxelinux: BIOS gets `pxelinux.0`, UEFI `syslinux.efi`.
    Pxelinux,
}

/// Per-port DHCP boot options (Ironic's port `pxe_enabled` plus the DHCP options the boot
/// interface sets for the node).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostEntry {
    /// Node the port belongs to (logged; never interpreted).
    pub node: Option<String>,
    /// Ironic's `pxe_enabled`: a port with `false` is never answered.
    pub pxe_enabled: bool,
    /// Loader for this host; the server's default when `None`.
    pub loader: Option<Loader>,
    /// Address reserved for this MAC (may lie outside the dynamic range).
    pub fixed_address: Option<Ipv4Addr>,
    /// Boot file for non-iPXE firmware, overriding the architecture default.
    pub boot_file: Option<String>,
    /// Script URL for iPXE clients, overriding the server's URL template.
    pub ipxe_script_url: Option<String>,
    /// TFTP server (siaddr) for this host, overriding the server's `next_server`.
    pub next_server: Option<Ipv4Addr>,
}

/// Source of per-MAC boot options.
pub trait HostTable: Send + Sync {
    fn lookup(&self, mac: &MacAddr) -> Option<HostEntry>;
}

/// In-memory [`HostTable`] (tests, simulation, and a cache the service refreshes).
#[derive(Debug, Default)]
pub struct MemoryHostTable {
    hosts: RwLock<HashMap<MacAddr, HostEntry>>,
}

impl MemoryHostTable {
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds or replaces the options of one port.
    pub fn upsert(&self, mac: MacAddr, entry: HostEntry) {
        self.hosts.write().insert(mac, entry);
    }
    /// Forgets a port (Ironic's DHCP clean-up).
    pub fn remove(&self, mac: &MacAddr) -> Option<HostEntry> {
        self.hosts.write().remove(mac)
    }
    pub fn len(&self) -> usize {
        self.hosts.read().len()
    }
    pub fn is_empty(&self) -> bool {
        self.hosts.read().is_empty()
    }
}

impl HostTable for MemoryHostTable {
    fn lookup(&self, mac: &MacAddr) -> Option<HostEntry> {
        self.hosts.read().get(mac).cloned()
    }
}

/// State of an address in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Held for a client between OFFER and REQUEST.
    Offered,
    /// Acknowledged to the client.
    Bound,
    /// A client reported the address in use (DHCPDECLINE); kept out of the pool until expiry.
    Declined,
}

/// One address held by one MAC until `expires` (seconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub state: LeaseState,
    pub expires: u64,
}

/// A lease store failed (the SQLite implementation maps its errors here).
#[derive(Debug, thiserror::Error)]
#[error("lease store: {0}")]
pub struct StoreError(pub String);

/// Persistent leases. Invariants an implementation keeps: at most one lease per address, and
/// at most one non-declined lease per MAC (`put` replaces the MAC's other non-declined lease).
pub trait LeaseStore: Send + Sync {
    /// The MAC's non-declined lease, expired or not.
    fn by_mac(&self, mac: &MacAddr) -> Result<Option<Lease>, StoreError>;
    /// All leases, including expired and declined ones.
    fn all(&self) -> Result<Vec<Lease>, StoreError>;
    /// Inserts or replaces the lease for `lease.ip`.
    fn put(&self, lease: Lease) -> Result<(), StoreError>;
    /// Drops the lease on `ip`, if any.
    fn remove(&self, ip: Ipv4Addr) -> Result<(), StoreError>;
}

/// In-memory [`LeaseStore`].
#[derive(Debug, Default)]
pub struct MemoryLeaseStore {
    by_ip: RwLock<HashMap<Ipv4Addr, Lease>>,
}

impl MemoryLeaseStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl LeaseStore for MemoryLeaseStore {
    fn by_mac(&self, mac: &MacAddr) -> Result<Option<Lease>, StoreError> {
        Ok(self.by_ip.read().values().find(|l| l.mac == *mac && l.state != LeaseState::Declined).cloned())
    }
    fn all(&self) -> Result<Vec<Lease>, StoreError> {
        let mut v: Vec<Lease> = self.by_ip.read().values().cloned().collect();
        v.sort_by_key(|l| l.ip);
        Ok(v)
    }
    fn put(&self, lease: Lease) -> Result<(), StoreError> {
        let mut m = self.by_ip.write();
        if lease.state != LeaseState::Declined {
            m.retain(|ip, l| *ip == lease.ip || l.mac != lease.mac || l.state == LeaseState::Declined);
        }
        m.insert(lease.ip, lease);
        Ok(())
    }
    fn remove(&self, ip: Ipv4Addr) -> Result<(), StoreError> {
        self.by_ip.write().remove(&ip);
        Ok(())
    }
}
