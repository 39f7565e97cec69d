//! iSCSI in the simulation: agents expose their disk through ferric's iSCSI target, and the
//! conductor's initiator reaches it over an in-memory stream (`tokio::io::duplex`) instead of
//! TCP. The PDUs that cross are the same bytes.

use ferric_agent::iscsi_ext::Exposer;
use ferric_agent::iscsi_target::{StartIscsiTargetParams, Target, TargetConfig};
use ferric_disk::blockdev::BlockDevice;
use ferric_service::drivers::iscsi_deploy::{IscsiConnector, IscsiStream};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bytes buffered in each direction of a simulated iSCSI connection.
const PIPE: usize = 256 << 10;
/// Most portals listening at once (one per machine in a ramdisk).
const MAX_PORTALS: usize = 100_000;

struct Portal {
    target: Arc<Target>,
    /// The machine's OS generation that started it (a powered-off machine serves nothing).
    owner: usize,
    alive: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// The portals of every simulated agent, by address.
#[derive(Default)]
pub struct Portals {
    map: Mutex<PortalMap>,
    seq: AtomicU64,
    pub connections: AtomicU64,
}

/// Portals by address, and each machine's addresses: a machine that powers off or reboots
/// drops its own without a pass over every portal (a large fleet's reboots made that quadratic).
#[derive(Default)]
struct PortalMap {
    by_addr: BTreeMap<SocketAddr, Portal>,
    by_owner: HashMap<usize, BTreeSet<SocketAddr>>,
}

impl PortalMap {
    fn insert(&mut self, addr: SocketAddr, portal: Portal) {
        let owner = portal.owner;
        if let Some(old) = self.by_addr.insert(addr, portal)
            && let Some(set) = self.by_owner.get_mut(&old.owner)
        {
            set.remove(&addr);
        }
        self.by_owner.entry(owner).or_default().insert(addr);
    }

    fn remove_owner(&mut self, owner: usize) {
        for addr in self.by_owner.remove(&owner).unwrap_or_default() {
            if self.by_addr.get(&addr).is_some_and(|p| p.owner == owner) {
                self.by_addr.remove(&addr);
            }
        }
    }
}

impl Portals {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Removes every portal of machine `owner` (it powered off or rebooted).
    pub fn stop_machine(&self, owner: usize) {
        self.map.lock().remove_owner(owner);
    }

    pub fn len(&self) -> usize {
        self.map.lock().by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a simulated agent's `iscsi` extension uses to expose its disk.
pub struct SimExposer {
    pub portals: Arc<Portals>,
    pub owner: usize,
    /// Whether the OS that runs this agent still runs.
    pub alive: Arc<dyn Fn() -> bool + Send + Sync>,
    pub seed: u64,
}

impl Exposer for SimExposer {
    fn expose(
        &self,
        disk: Arc<dyn BlockDevice>,
        params: StartIscsiTargetParams,
    ) -> BoxFuture<'static, Result<(String, SocketAddr), String>> {
        let portals = self.portals.clone();
        let owner = self.owner;
        let alive = self.alive.clone();
        let seed = self.seed;
        Box::pin(async move {
            let n = portals.seq.fetch_add(1, Relaxed);
            let iqn = params.iqn.clone().unwrap_or_else(|| format!("iqn.2008-10.org.openstack:sim-{owner}-{n}"));
            if params.wipe_disk_metadata {
                ferric_disk::blockdev::wipe_metadata(disk.as_ref()).await.map_err(|e| e.to_string())?;
            }
            let mut cfg = TargetConfig::new(iqn.clone());
            cfg.chap = params.chap.clone();
            cfg.serial = format!("SIM{owner:08}");
            cfg.rng_seed = Some(seed ^ n);
            let target = Target::new(cfg, disk).map_err(|e| e.to_string())?;
            let addr = SocketAddr::new(params.listen_ip, params.portal_port.unwrap_or(3260));
            let mut map = portals.map.lock();
            if map.by_addr.len() >= MAX_PORTALS {
                return Err("too many simulated iSCSI portals".into());
            }
            // One target per portal: a repeated command replaces the previous one.
            map.insert(addr, Portal { target, owner, alive });
            Ok((iqn, addr))
        })
    }

    fn stop_all(&self) -> BoxFuture<'static, ()> {
        let portals = self.portals.clone();
        let owner = self.owner;
        Box::pin(async move { portals.stop_machine(owner) })
    }
}

/// The conductor's side: connects to a simulated portal.
pub struct SimIscsiConnector {
    pub portals: Arc<Portals>,
}

impl IscsiConnector for SimIscsiConnector {
    fn connect(&self, portal: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn IscsiStream>>> {
        let found = {
            let map = self.portals.map.lock();
            map.by_addr.get(&portal).filter(|p| (p.alive)()).map(|p| p.target.clone())
        };
        let portals = self.portals.clone();
        Box::pin(async move {
            let target = found.ok_or_else(|| {
                io::Error::new(io::ErrorKind::ConnectionRefused, format!("no iSCSI portal at {portal}"))
            })?;
            portals.connections.fetch_add(1, Relaxed);
            let (client, server) = tokio::io::duplex(PIPE);
            tokio::spawn(async move {
                if let Err(e) = target.serve_connection(server, Some(portal)).await {
                    tracing::debug!(%portal, error = %e, "simulated iSCSI connection ended");
                }
            });
            Ok(Box::new(client) as Box<dyn IscsiStream>)
        })
    }
}
