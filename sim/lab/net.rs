//! The simulated provisioning network: every HTTP endpoint (API, image store, HTTP boot, agents)
//! as an in-process host of one [`TowerHttp`], the DHCP service as ferric's socket-free
//! [`DhcpHandler`] (one per L2 segment of the fleet), and the TFTP/HTTP boot roots.
//!
//! Addresses are names only: nothing here opens a socket.

use super::bridge::Bridge;
use crate::http::TowerHttp;
use ferric_service::db::Db;
use ferric_service::pxe::MacAddr;
use ferric_service::pxe::dhcp::{DhcpConfig, DhcpHandler, HostEntry, HostTable, MemoryLeaseStore};
use ferric_types::clock::Clock;
use ferric_types::trace::Recorder;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

/// The conductor's (and every service's) address on the provisioning network.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The API, as agents and clients reach it.
pub const API_HOST: &str = "192.0.2.1:6385";
/// The image service and its HTTP store (temp URLs).
pub const IMAGES_HOST: &str = "192.0.2.1:9292";
/// The HTTP boot server (iPXE scripts, kernels, ramdisks).
pub const BOOT_HOST: &str = "192.0.2.1:8088";
/// The port agents listen on.
pub const AGENT_PORT: u16 = 9999;
/// Machines per provisioning segment (each segment is its own broadcast domain with its own DHCP
/// pool in 192.0.2.0/24, so the fleet size is not bounded by one subnet).
pub const SEGMENT_SIZE: usize = 200;

pub fn api_url() -> String {
    format!("http://{API_HOST}")
}

pub fn images_url() -> String {
    format!("http://{IMAGES_HOST}")
}

pub fn boot_url() -> String {
    format!("http://{BOOT_HOST}")
}

/// The DHCP host table as ferric's flat network keeps it until the boot interfaces maintain
/// their own: a port is answered when it is PXE-enabled and on the provisioning network.
pub struct PortHostTable {
    db: Db,
}

impl PortHostTable {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

impl HostTable for PortHostTable {
    fn lookup(&self, mac: &MacAddr) -> Option<HostEntry> {
        let port = self.db.get_port_by_address(ferric_types::models::MacAddr(mac.0)).ok()?;
        let provisioning = port
            .internal_info
            .get(ferric_service::drivers::network::PROVISIONING_KEY)
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        (port.pxe_enabled && provisioning).then(|| HostEntry {
            node: Some(port.node_uuid.to_string()),
            pxe_enabled: true,
            ..Default::default()
        })
    }
}

/// What the machines of a lab share.
pub struct SimNet {
    pub http: TowerHttp,
    pub bridge: Arc<Bridge>,
    pub clock: Clock,
    pub trace: Recorder,
    pub db: Db,
    pub tftp_root: PathBuf,
    pub http_root: PathBuf,
    /// Which MACs the DHCP service answers (shared by every segment).
    pub hosts: Arc<dyn HostTable>,
    segments: Vec<DhcpHandler>,
}

impl SimNet {
    /// `machines` machines in segments of [`SEGMENT_SIZE`], all answered from `hosts`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        machines: usize,
        hosts: Arc<dyn HostTable>,
        http: TowerHttp,
        bridge: Arc<Bridge>,
        clock: Clock,
        trace: Recorder,
        db: Db,
        tftp_root: PathBuf,
        http_root: PathBuf,
    ) -> Self {
        let n = machines.div_ceil(SEGMENT_SIZE).max(1);
        let segments = (0..n)
            .map(|_| {
                let mut c = DhcpConfig::new(
                    SERVER_IP,
                    (Ipv4Addr::new(192, 0, 2, 20), Ipv4Addr::new(192, 0, 2, 250)),
                    // As `ferric serve` hands it out (`BootLayout::ipxe_script_url_template`).
                    format!("{}/pxelinux.cfg/{{mac}}", boot_url()),
                );
                c.lease_time = std::time::Duration::from_secs(3600);
                DhcpHandler::new(c, hosts.clone(), Arc::new(MemoryLeaseStore::new()))
            })
            .collect();
        Self { http, bridge, clock, trace, db, tftp_root, http_root, hosts, segments }
    }

    /// The DHCP server of machine `index`'s segment.
    pub fn dhcp(&self, index: usize) -> &DhcpHandler {
        let i = (index / SEGMENT_SIZE).min(self.segments.len().saturating_sub(1));
        &self.segments[i]
    }

    /// Unix seconds of virtual time.
    pub fn now_unix(&self) -> u64 {
        self.clock.now_unix()
    }
}
