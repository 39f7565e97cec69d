//! A simulated lab: N machines with virtual BMCs, the ferric service in-process on an in-memory
//! SQLite, the image store and HTTP boot server, all wired through the in-memory network.
//!
//! Built inside a tokio runtime: for simulations a current-thread runtime with the paused clock
//! (see [`sim_runtime`]), where every duration is virtual and a seed decides everything random
//! (fault schedules, BMC session IDs and drops, agent jitter, UUIDs). With BMCs on UDP and the
//! system clock, the same lab backs `ferric serve --sim N`.

use super::bridge::Bridge;
use super::net::{self, PortHostTable, SimNet};
use crate::fleet::{Fleet, NodeSettings};
use crate::http::TowerHttp;
use crate::machine::disk::{ContentPool, SimDisk};
use crate::machine::node::{BmcProtocol, KnownImage, LabShared, Profile, SimNode};
use crate::machine::power::SimMachineConfig;
use bytes::Bytes;
use ferric_service::assemble::{BootPackets, Outside, Parts, Service};
use ferric_service::conductor::{Conductor, ConductorConfig};
use ferric_service::config::{Config, Role};
use ferric_service::db::{Db, Outage};
use ferric_service::images::{CreateImage, DiskFormat, ImageService, ImageStore};
use ferric_service::ipmi::{ClientConfig, Connector, IpmiPool, UdpConnector};
use ferric_service::pxe::dhcp::HostTable;
use ferric_service::rpc::router::{Router, Transport};
use ferric_sim::redfish::{RedfishBmc, RedfishConfig, RedfishFaultSettings};
use ferric_sim::vbmc::{BmcConfig, FaultSettings};
use ferric_types::clock::Clock;
use ferric_types::models::{NodeId, ProvisionState};
use ferric_types::trace::Recorder;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Virtual wall-clock start of every simulation.
pub const EPOCH_UNIX: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
/// Where simulated BMCs are reached over in-memory links: the first [`BMCS_PER_ADDRESS`] at
/// this address, BMC i at port BMC_BASE_PORT + i (see [`bmc_endpoint`]).
pub const BMC_ADDRESS: &str = "192.0.2.2";
pub const BMC_BASE_PORT: u16 = 6230;
/// Where simulated Redfish BMCs answer on the in-memory network (as [`BMC_ADDRESS`]), as
/// `http://` (the in-memory network has no TLS).
pub const REDFISH_ADDRESS: &str = "192.0.2.3";
/// Decoded nodes a lab caches beyond the database's default (see where it is set).
const LAB_NODE_CACHE: usize = 3072;

/// BMCs per in-memory address (their ports, above the base, must fit in a u16).
pub const BMCS_PER_ADDRESS: usize = 50_000;
/// Largest fleet: BMCs beyond the first address's take further documentation addresses
/// (192.0.2.100 + k for IPMI, 192.0.2.150 + k for Redfish), [`BMCS_PER_ADDRESS`] each.
pub const MAX_MACHINES: usize = 200_000;

/// The in-memory address and port of machine `i`'s BMC (`redfish`: its Redfish service). The
/// first [`BMCS_PER_ADDRESS`] keep the historical 192.0.2.2/.3 addresses, so the nodes (and
/// traces) of smaller fleets are as they were.
pub fn bmc_endpoint(i: usize, redfish: bool) -> (String, u16) {
    let (block, k) = (i / BMCS_PER_ADDRESS, i % BMCS_PER_ADDRESS);
    let port = BMC_BASE_PORT + k as u16;
    let address = match (block, redfish) {
        (0, false) => BMC_ADDRESS.to_string(),
        (0, true) => REDFISH_ADDRESS.to_string(),
        (b, false) => format!("192.0.2.{}", 100 + b),
        (b, true) => format!("192.0.2.{}", 150 + b),
    };
    (address, port)
}

/// The machine whose IPMI BMC answers at `address`:`port` ([`bmc_endpoint`]'s inverse).
pub fn bmc_index(address: &str, port: u16) -> Option<usize> {
    let k = usize::from(port.checked_sub(BMC_BASE_PORT)?);
    if k >= BMCS_PER_ADDRESS {
        return None;
    }
    let block = if address == BMC_ADDRESS {
        0
    } else {
        let last: usize = address.strip_prefix("192.0.2.")?.parse().ok()?;
        last.checked_sub(100).filter(|b| (1..50).contains(b))?
    };
    Some(block * BMCS_PER_ADDRESS + k)
}

/// A current-thread runtime with tokio's clock paused: the simulation's time.
pub fn sim_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()
}

/// How the service reaches the BMCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BmcTransport {
    /// Raw RMCP+ packets over in-memory channels (simulation).
    #[default]
    Channel,
    /// UDP on 127.0.0.1, ports from `base_port` (`ferric serve --sim`).
    Udp { base_port: u16 },
}

/// IPMI client timing of the conductor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpmiTiming {
    pub attempt_timeout_ms: u64,
    pub retries: u32,
    pub command_timeout_secs: u64,
    pub min_interval_ms: u64,
    pub power_poll_ms: u64,
    pub power_change_timeout_secs: u64,
}

impl Default for IpmiTiming {
    fn default() -> Self {
        Self {
            attempt_timeout_ms: 1000,
            retries: 3,
            command_timeout_secs: 15,
            min_interval_ms: 100,
            power_poll_ms: 1000,
            power_change_timeout_secs: 60,
        }
    }
}

/// One machine to build.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    pub profile: Arc<Profile>,
    pub faults: FaultSettings,
    /// Fault knobs of its Redfish BMC (when the profile has one).
    pub redfish: RedfishFaultSettings,
}

/// Extra wiring of the service, given the lab's network, image service and boot roots.
pub type Customize = Arc<dyn Fn(&mut Parts, &LabWiring) + Send + Sync>;

/// Everything a lab is built from.
#[derive(Clone)]
pub struct LabConfig {
    pub seed: u64,
    pub machines: Vec<MachineSpec>,
    /// Virtual bytes per real byte of images and disk traffic.
    pub byte_scale: u64,
    pub conductor: ConductorConfig,
    pub ipmi: IpmiTiming,
    pub transport: BmcTransport,
    /// Boot the ramdisk right after DHCP (the `fake` boot interface serves no boot files).
    pub assume_ramdisk: bool,
    /// Register ferric's `pxe`/`ipxe` boot interfaces (see [`super::boot`]): the machines' DHCP
    /// answers come from the options they write, and the machines read the configs they write.
    pub real_boot: bool,
    /// Real time instead of a virtual clock starting at [`EPOCH_UNIX`] (`ferric serve --sim`).
    pub real_clock: bool,
    /// Trace events kept in full (the hash covers all of them).
    pub trace_capacity: usize,
    /// Extra service wiring (deploy and boot interfaces, and what they need), re-run when the
    /// conductor restarts.
    pub customize: Option<Customize>,
    /// Conductors. 1: one all-in-one service (`--role all`). More: that many clustered conductor
    /// services (`--role conductor`, hosts `c0`, `c1`, ...) on the one database, each on its own
    /// seeded clock, behind one API service (`--role api`) whose calls an in-memory router takes
    /// to the owning conductor.
    pub conductors: usize,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            machines: Vec::new(),
            byte_scale: 65_536,
            conductor: sim_conductor_config(),
            ipmi: IpmiTiming::default(),
            transport: BmcTransport::Channel,
            assume_ramdisk: true,
            real_boot: false,
            real_clock: false,
            trace_capacity: 200_000,
            customize: None,
            conductors: 1,
        }
    }
}

/// Ironic's conductor defaults, with the periodic tasks at intervals that do not coincide (so
/// their order never depends on tokio's `select!` coin).
pub fn sim_conductor_config() -> ConductorConfig {
    ConductorConfig { check_timeouts_interval: 60, sync_power_state_interval: 67, ..ConductorConfig::default() }
}

/// What the lab hands to `customize` (for drivers that reach agents, images and boot files).
#[derive(Clone)]
pub struct LabWiring {
    pub http: TowerHttp,
    pub images: Arc<ImageService>,
    pub tftp_root: PathBuf,
    pub http_root: PathBuf,
    pub workdir: PathBuf,
    /// The agents' iSCSI portals, reached by the conductor's `iscsi` deploy over in-memory streams.
    pub portals: Arc<super::iscsi::Portals>,
    /// The boot environment of ferric's `pxe`/`ipxe` interfaces (with [`LabConfig::real_boot`]).
    pub boot: Option<Arc<ferric_service::drivers::pxe_boot::BootEnv>>,
}

/// Errors building or driving a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("invalid lab: {0}")]
    Invalid(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error(transparent)]
    Service(#[from] ferric_service::assemble::ServiceError),
    #[error(transparent)]
    Images(#[from] ferric_service::images::StoreError),
    #[error(transparent)]
    Bridge(#[from] super::bridge::BridgeError),
    #[error(transparent)]
    Db(#[from] ferric_service::db::DbError),
    #[error("API {method} {path}: {status} {body}")]
    Api { method: String, path: String, status: u16, body: String },
    #[error("HTTP: {0}")]
    Http(String),
}

/// A temporary directory removed on drop (the binary has no `tempfile`).
pub struct WorkDir(PathBuf);

impl WorkDir {
    fn create(seed: u64) -> std::io::Result<Self> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ferric-lab-{}-{seed}-{n}", std::process::id());
        let mut last = None;
        for base in scratch_dirs() {
            let p = base.join(&name);
            match std::fs::create_dir_all(&p) {
                Ok(()) => return Ok(Self(p)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no scratch directory")))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Where labs keep their scratch files, in order of preference: `$TMPDIR` when set, else the
/// RAM-backed `/dev/shm` if usable, then the system temp dir. Every deploy writes and removes
/// boot configs, links and image-cache entries; on ext4, allocating inodes next to recently
/// deleted ones scans inode tables, which took a fifth of a fleet simulation's CPU.
fn scratch_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if std::env::var_os("TMPDIR").is_none() {
        v.push(PathBuf::from("/dev/shm"));
    }
    v.push(std::env::temp_dir());
    v
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A built lab.
pub struct SimLab {
    pub config: LabConfig,
    pub service: Service,
    pub db: Db,
    pub clock: Clock,
    pub trace: Recorder,
    pub net: Arc<SimNet>,
    pub fleet: Fleet,
    pub nodes: Vec<Arc<SimNode>>,
    pub shared: Arc<LabShared>,
    pub images: Arc<ImageService>,
    pub wiring: LabWiring,
    pub pool: Arc<ContentPool>,
    periodic: Option<JoinHandle<()>>,
    /// With [`LabConfig::conductors`] > 1: the conductors (`service` is then the API service).
    pub members: Vec<LabConductor>,
    watchers: Vec<JoinHandle<()>>,
    bmc_servers: Option<tokio::task::JoinSet<std::io::Result<()>>>,
    /// Redfish BMCs on TCP (`ferric serve --sim`).
    redfish_servers: tokio::task::JoinSet<std::io::Result<()>>,
    /// Conductor generations started (1 + restarts).
    pub conductor_starts: u32,
    /// The database's own switch: down, every ferric process's calls fail (a restart).
    pub db_down: Outage,
    /// Each conductor's connection to the database (one, for one all-in-one service): down, that
    /// conductor's calls fail (cut off). The lab's own handle (`db`) is the observer's: never cut.
    pub db_links: Vec<Outage>,
    _workdir: WorkDir,
}

/// The handle a ferric process of the lab uses: through the database's switch and, for conductor
/// `member` (or the all-in-one service, 0), that conductor's own link.
fn process_db(db: &Db, db_down: &Outage, links: &[Outage], member: Option<usize>) -> Db {
    let mut via = vec![db_down.clone()];
    via.extend(member.and_then(|i| links.get(i)).cloned());
    db.linked(&via)
}

/// What became of one of several conductors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConductorStatus {
    Running,
    /// Its periodic loop (heartbeats, takeover, timeouts, power sync) is stopped; the process,
    /// its running work and its RPC endpoint live on.
    Paused,
    /// Halted for good.
    Crashed,
}

/// One conductor service of a lab with several.
pub struct LabConductor {
    pub service: Service,
    periodic: Option<JoinHandle<()>>,
    pub status: ConductorStatus,
}

impl LabConductor {
    pub fn host(&self) -> &str {
        self.service.conductor.host()
    }

    /// Stops its periodic loop (heartbeats, takeover, timeouts, power sync).
    fn stop_periodic(&mut self) {
        if let Some(p) = self.periodic.take() {
            p.abort();
        }
    }
}

/// Conductor `i`'s host name in a lab with several.
pub fn conductor_host(i: usize) -> String {
    format!("c{i}")
}

/// A seed derived from `seed` for stream `k` (splitmix64), so added conductors draw nothing from
/// the lab's generator (a one-conductor lab stays as it was).
fn derive_seed(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A locally administered MAC for NIC `nic` of machine `index`.
pub fn mac_of(index: usize, nic: usize) -> [u8; 6] {
    let i = index as u32;
    [0x52, 0x54, nic as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

fn ipmi_client_config(t: &IpmiTiming, seed: u64) -> ClientConfig {
    ClientConfig {
        attempt_timeout: Duration::from_millis(t.attempt_timeout_ms.max(1)),
        retries: t.retries,
        command_timeout: Duration::from_secs(t.command_timeout_secs.max(1)),
        min_interval: Duration::from_millis(t.min_interval_ms),
        rng_seed: Some(seed),
        ..ClientConfig::default()
    }
}

fn build_service(
    config: &LabConfig,
    db: &Db,
    clock: &Clock,
    trace: &Recorder,
    connector: Arc<dyn Connector>,
    wiring: &LabWiring,
    // Conductor generation (1 + restarts before it), and with several conductors, the role and
    // index of this one.
    (generation, role): (u32, Option<(Role, usize)>),
) -> Result<Service, LabError> {
    let mut c =
        Config { conductor: config.conductor.clone(), data_dir: wiring.workdir.join("data"), ..Config::default() };
    // One of several: its role, host and own data directory (image caches are per process). The
    // RPC settings are required by the roles; nothing binds them (calls go in memory).
    let mut ipmi_seed_extra = 0;
    if let Some((r, i)) = role {
        c.role = r;
        c.rpc.password = "sim".into();
        c.rpc.bind = Some(([127, 0, 0, 1], 1).into());
        let host = if r == Role::Api { "api".to_string() } else { conductor_host(i) };
        c.data_dir = wiring.workdir.join(format!("data-{host}"));
        c.conductor.host = host;
        ipmi_seed_extra = derive_seed(config.seed, if r == Role::Api { 0x1fff } else { 0x1000 + i as u64 });
    }
    // The conductor polls power changes; the lab's IPMI settings say how long and how often.
    c.conductor.power_state_change_timeout = config.ipmi.power_change_timeout_secs.max(1);
    c.conductor.power_state_poll_interval_ms = config.ipmi.power_poll_ms.max(1);
    c.api.public_url = Some(net::api_url());
    // Agents download images from the image store's own host of the in-memory network.
    c.images.public_url = Some(net::images_url());
    let seed = config.seed ^ 0x1b_a1_u64.wrapping_mul(u64::from(generation) + 1) ^ ipmi_seed_extra;
    let outside = Outside {
        clock: clock.clone(),
        ipmi: Arc::new(IpmiPool::new(
            connector,
            ipmi_client_config(&config.ipmi, seed),
            config.machines.len().max(64) * 2,
        )),
        // Agents and the image store through the in-memory network, with ferric's own clients.
        http: Arc::new(wiring.http.clone()),
        // Redfish BMCs, if any: through the same in-memory network (no TLS to check there), or
        // over TCP for `ferric serve --sim`.
        bmc_http: match config.transport {
            BmcTransport::Channel => Arc::new(ferric_types::http::SameClient(Arc::new(wiring.http.clone()))),
            BmcTransport::Udp { .. } => Arc::new(ferric_disk::http::ReqwestConnector::new(Duration::from_secs(10))),
        },
        iscsi: Arc::new(super::iscsi::SimIscsiConnector { portals: wiring.portals.clone() }),
        boot_packets: BootPackets::Fed,
    };
    let customize = config.customize.clone();
    let wiring = wiring.clone();
    Ok(Service::build(c, db.clone(), outside, trace.clone(), move |p| {
        p.images = Some(wiring.images.clone());
        p.api_serves_images = false;
        if let Some(b) = &wiring.boot {
            super::boot::register(p, b.clone());
        }
        if let Some(f) = customize {
            f(p, &wiring);
        }
    })?)
}

impl SimLab {
    /// Builds the lab inside the current runtime (paused for simulations).
    pub async fn build(config: LabConfig) -> Result<SimLab, LabError> {
        let n = config.machines.len();
        if n == 0 || n > MAX_MACHINES {
            return Err(LabError::Invalid(format!("a lab has 1 to {MAX_MACHINES} machines, not {n}")));
        }
        if let BmcTransport::Udp { base_port } = config.transport
            && usize::from(base_port) + n > usize::from(u16::MAX) + 1
        {
            return Err(LabError::Invalid(format!("{n} BMCs on UDP ports from {base_port} do not fit in a u16")));
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let workdir = WorkDir::create(config.seed)?;
        let tftp_root = workdir.path().join("tftp");
        let http_root = workdir.path().join("http");
        std::fs::create_dir_all(&tftp_root)?;
        std::fs::create_dir_all(&http_root)?;
        // What an operator installs in the TFTP root (ferric's DHCP hands these names out).
        for f in ["undionly.kpxe", "ipxe.efi", "snponly.efi", "pxelinux.0", "syslinux.efi"] {
            std::fs::write(tftp_root.join(f), format!("simulated network boot program {f}\n"))?;
        }
        let clock_seed: u64 = rng.random();
        let clock = if config.real_clock {
            Clock::system()
        } else {
            let epoch = chrono::DateTime::from_timestamp(EPOCH_UNIX, 0).unwrap_or_default();
            Clock::virtual_from(epoch, clock_seed)
        };
        let trace = Recorder::new(config.trace_capacity);
        let db = Db::open_in_memory()?;
        // Decoded nodes are cached (a few KiB each), up to 4,096: caching every machine's node
        // saved 3% of the CPU of a 20,000-node run but held 125 MB more (966 against 841 MB),
        // half a gigabyte at 100,000.
        db.set_node_cache_capacity(config.machines.len().min(LAB_NODE_CACHE) + ferric_service::db::NODE_CACHE_DEFAULT);
        let db_down = Outage::new();
        let db_links: Vec<Outage> = (0..config.conductors.max(1)).map(|_| Outage::new()).collect();

        let settings: Vec<NodeSettings> = config
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| NodeSettings {
                name: format!("node-{i}"),
                bmc: BmcConfig { seed: rng.random(), ..BmcConfig::default() },
                machine: SimMachineConfig {
                    soft_off_delay_ms: (m.profile.timings.soft_off_secs * 1000.0) as u64,
                    macs: (0..m.profile.nics.max(1)).map(|k| mac_of(i, k)).collect(),
                    inventory: ferric_sim::machine::Inventory {
                        cpus: m.profile.cpus,
                        memory_mib: m.profile.memory_mb,
                        disks: vec![m.profile.disk_gib.saturating_mul(1 << 30)],
                        ..Default::default()
                    },
                    ..SimMachineConfig::default()
                },
                faults: m.faults,
                redfish: m.redfish,
            })
            .collect();
        let fleet = Fleet::build(settings)?;

        let bridge = Bridge::start(clock.clone())?;
        let http = TowerHttp::new();
        let store = Arc::new(ImageStore::open(&workdir.path().join("images"), clock.clone(), 16 << 30)?);
        let key: [u8; 32] = rng.random();
        let images = Arc::new(ImageService::new(store, key.to_vec(), clock.clone()));
        http.add_host(net::IMAGES_HOST, bridge.service(images.clone().router()));
        http.add_host(net::BOOT_HOST, bridge.service(ferric_service::pxe::http::router(http_root.clone())));

        let dhcp = Arc::new(ferric_service::network::dhcp::DbDhcp::new(db.clone()));
        let boot = if config.real_boot {
            Some(super::boot::boot_env(
                workdir.path(),
                &tftp_root,
                &http_root,
                net::boot_url(),
                net::api_url(),
                dhcp.clone(),
            )?)
        } else {
            None
        };
        let wiring = LabWiring {
            boot,
            http: http.clone(),
            images: images.clone(),
            tftp_root: tftp_root.clone(),
            http_root: http_root.clone(),
            workdir: workdir.path().to_path_buf(),
            portals: super::iscsi::Portals::new(),
        };
        let (connector, bmc_servers): (Arc<dyn Connector>, _) = match config.transport {
            BmcTransport::Channel => (Arc::new(super::vbmc::channel_connector(&fleet)), None),
            BmcTransport::Udp { base_port } => {
                let sockets = fleet.bind(std::net::Ipv4Addr::LOCALHOST.into(), base_port).await?;
                (Arc::new(UdpConnector), Some(fleet.serve(sockets)))
            }
        };
        let mut members = Vec::new();
        let mut service = if config.conductors <= 1 {
            let db = process_db(&db, &db_down, &db_links, Some(0));
            build_service(&config, &db, &clock, &trace, connector, &wiring, (0, None))?
        } else {
            for i in 0..config.conductors {
                let c = member_clock(&config, clock_seed, i as u64);
                let s = build_service(
                    &config,
                    &process_db(&db, &db_down, &db_links, Some(i)),
                    &c,
                    &trace,
                    connector.clone(),
                    &wiring,
                    (0, Some((Role::Conductor, i))),
                )?;
                members.push(LabConductor { service: s, periodic: None, status: ConductorStatus::Running });
            }
            // Every conductor registered: each reads the others before the first call.
            for m in &members {
                m.service.conductor.refresh_rings();
            }
            let c = member_clock(&config, clock_seed, 0xa91);
            let api_db = process_db(&db, &db_down, &db_links, None);
            build_service(&config, &api_db, &c, &trace, connector, &wiring, (0, Some((Role::Api, 0))))?
        };
        if !members.is_empty() {
            install_router(&mut service, &members, &process_db(&db, &db_down, &db_links, None));
        }
        http.add_host(net::API_HOST, service.router());

        // With ferric's boot interfaces the DHCP answers come from the options they write (as in
        // `ferric serve`); with the fake one, from the ports on the provisioning network.
        let hosts: Arc<dyn HostTable> = if config.real_boot { dhcp } else { Arc::new(PortHostTable::new(db.clone())) };
        let net = Arc::new(SimNet::new(
            n,
            hosts,
            http,
            bridge,
            clock.clone(),
            trace.clone(),
            db.clone(),
            tftp_root,
            http_root,
        ));
        let shared = Arc::new(LabShared {
            net: net.clone(),
            images: Mutex::new(Vec::new()),
            scale: config.byte_scale.max(1),
            assume_ramdisk: config.assume_ramdisk,
            stray_writes: Mutex::new(Vec::new()),
            portals: wiring.portals.clone(),
            images_down: AtomicBool::new(false),
            images_corrupt: AtomicBool::new(false),
            agent_routes: crate::machine::node::agent_routes(),
        });
        let pool = Arc::new(ContentPool::new());
        let mut redfish_servers = tokio::task::JoinSet::new();
        let mut nodes = Vec::with_capacity(n);
        let mut watchers = Vec::with_capacity(n);
        for (i, (spec, f)) in config.machines.iter().zip(&fleet.nodes).enumerate() {
            let t = &spec.profile.timings;
            let disk = Arc::new(SimDisk::new(
                spec.profile.disk_gib.saturating_mul(1 << 30) / shared.scale,
                t.disk_bytes_per_sec,
                shared.scale,
                pool.clone(),
            ));
            let redfish = match spec.profile.bmc {
                BmcProtocol::Ipmi => None,
                BmcProtocol::Redfish => {
                    let bmc = RedfishBmc::new(
                        RedfishConfig { seed: rng.random(), faults: spec.redfish, ..RedfishConfig::default() },
                        f.machine.clone(),
                    );
                    match config.transport {
                        BmcTransport::Channel => {
                            let (address, port) = bmc_endpoint(i, true);
                            net.http.add_host(&format!("{address}:{port}"), bmc.router());
                        }
                        BmcTransport::Udp { base_port } => {
                            // `ferric serve --sim`: TCP beside the IPMI BMC's UDP port (as `ferric
                            // vbmc --protocol both`), plain HTTP on loopback.
                            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], base_port + i as u16));
                            let listener = tokio::net::TcpListener::bind(addr).await?;
                            redfish_servers.spawn(ferric_sim::redfish::serve(listener, bmc.clone(), None));
                        }
                    }
                    Some(bmc)
                }
            };
            let node = SimNode::new(
                i,
                format!("node-{i}"),
                f.machine.clone(),
                f.bmc.clone(),
                redfish,
                disk.clone(),
                spec.profile.clone(),
                shared.clone(),
                rng.random(),
            );
            disk.set_hook(write_guard(&node, &db, &shared));
            watchers.push(tokio::spawn(node.clone().watch()));
            nodes.push(node);
        }
        // The API service of several conductors runs no periodic tasks (`--role api`).
        let periodic = members.is_empty().then(|| service.conductor.start());
        for m in &mut members {
            m.periodic = Some(m.service.conductor.start());
        }
        Ok(SimLab {
            members,
            config,
            db,
            clock,
            trace,
            net,
            fleet,
            nodes,
            shared,
            images,
            wiring,
            pool,
            service,
            periodic,
            watchers,
            bmc_servers,
            redfish_servers,
            conductor_starts: 1,
            db_down,
            db_links,
            _workdir: workdir,
        })
    }

    /// The conductor process dies mid-work and a new one starts on the same database: work held
    /// in memory is lost, locks are recovered, waits resume (Ironic's behaviour on restart).
    /// With several conductors, conductor 0 (see [`SimLab::restart_member`]).
    pub fn restart_conductor(&mut self) -> Result<(), LabError> {
        if !self.members.is_empty() {
            return self.restart_member(0);
        }
        if let Some(p) = self.periodic.take() {
            p.abort();
        }
        self.service.conductor.halt();
        let connector = self.bmc_connector();
        let service = build_service(
            &self.config,
            &self.process_db(Some(0)),
            &self.clock,
            &self.trace,
            connector,
            &self.wiring,
            (self.conductor_starts, None),
        )?;
        self.conductor_starts += 1;
        self.net.http.add_host(net::API_HOST, service.router());
        self.periodic = Some(service.conductor.start());
        self.service = service;
        Ok(())
    }

    /// Stops the conductor's periodic tasks (power sync, timeouts); a sync in progress is
    /// cancelled, which releases its node lock. For the end of a run.
    pub fn stop_periodic(&mut self) {
        if let Some(p) = self.periodic.take() {
            p.abort();
        }
        for m in &mut self.members {
            m.stop_periodic();
        }
    }

    /// The database handle of a ferric process: conductor `member`'s (or the all-in-one
    /// service's, `Some(0)`), or the API's (`None`).
    fn process_db(&self, member: Option<usize>) -> Db {
        process_db(&self.db, &self.db_down, &self.db_links, member)
    }

    /// Cuts conductor `i` (0: the all-in-one service) off from the database, or reconnects it.
    pub fn cut_off_member(&mut self, i: usize, cut: bool) -> Result<(), LabError> {
        let n = self.db_links.len();
        let link =
            self.db_links.get(i).ok_or_else(|| LabError::Invalid(format!("no conductor {i} (the lab has {n})")))?;
        link.set_down(cut);
        Ok(())
    }

    /// The database stops (every ferric process's calls fail) or is back.
    pub fn set_db_down(&self, down: bool) {
        self.db_down.set_down(down);
    }

    /// How a (re)started conductor reaches the fleet's BMCs.
    fn bmc_connector(&self) -> Arc<dyn Connector> {
        match self.config.transport {
            BmcTransport::Channel => Arc::new(super::vbmc::channel_connector(&self.fleet)),
            BmcTransport::Udp { .. } => Arc::new(UdpConnector),
        }
    }

    /// Every conductor: the all-in-one service's, or each of several.
    pub fn conductors(&self) -> Vec<&Conductor> {
        if self.members.is_empty() {
            vec![&self.service.conductor]
        } else {
            self.members.iter().map(|m| &m.service.conductor).collect()
        }
    }

    /// Waits until every conductor's workers are idle.
    pub async fn wait_idle(&self) {
        for c in self.conductors() {
            c.wait_idle().await;
        }
    }

    /// Hosts of the conductors running (not crashed, not paused).
    pub fn live_hosts(&self) -> Vec<String> {
        if self.members.is_empty() {
            return vec![self.service.conductor.host().to_string()];
        }
        // A conductor cut off from the database is alive but acts on nothing (it is fenced).
        let reachable = |i: usize| self.db_links.get(i).is_none_or(|l| !l.is_down());
        self.members
            .iter()
            .enumerate()
            .filter(|(i, m)| m.status == ConductorStatus::Running && reachable(*i))
            .map(|(_, m)| m.host().to_string())
            .collect()
    }

    fn member(&mut self, i: usize) -> Result<&mut LabConductor, LabError> {
        let n = self.members.len();
        self.members.get_mut(i).ok_or_else(|| LabError::Invalid(format!("no conductor {i} (the lab has {n})")))
    }

    /// Conductor `i` of several dies and a new one with the same host starts on the database.
    pub fn restart_member(&mut self, i: usize) -> Result<(), LabError> {
        let m = self.member(i)?;
        m.stop_periodic();
        m.service.conductor.halt();
        let connector = self.bmc_connector();
        let clock = member_clock(&self.config, self.config.seed, 0x2000 + u64::from(self.conductor_starts));
        let service = build_service(
            &self.config,
            &self.process_db(Some(i)),
            &clock,
            &self.trace,
            connector,
            &self.wiring,
            (self.conductor_starts, Some((Role::Conductor, i))),
        )?;
        self.conductor_starts += 1;
        for m in &self.members {
            m.service.conductor.refresh_rings();
        }
        let periodic = Some(service.conductor.start());
        self.members[i] = LabConductor { service, periodic, status: ConductorStatus::Running };
        let api_db = self.process_db(None);
        install_router(&mut self.service, &self.members, &api_db);
        self.net.http.add_host(net::API_HOST, self.service.router());
        Ok(())
    }

    /// Conductor `i` of several crashes for good: its work stops where it stands and it writes
    /// no more heartbeats.
    pub fn crash_member(&mut self, i: usize) -> Result<(), LabError> {
        let m = self.member(i)?;
        m.stop_periodic();
        m.service.conductor.halt();
        m.status = ConductorStatus::Crashed;
        Ok(())
    }

    /// Conductor `i`'s periodic loop (heartbeats, takeover, timeouts, power sync) stops; its
    /// process lives on (running work, RPC).
    pub fn pause_member(&mut self, i: usize) -> Result<(), LabError> {
        let m = self.member(i)?;
        if m.status != ConductorStatus::Running {
            return Ok(());
        }
        m.stop_periodic();
        m.status = ConductorStatus::Paused;
        Ok(())
    }

    /// A paused conductor's loop goes on, as a stopped process's does when it is continued: every
    /// timer is overdue, so it heartbeats (dropping its running work if it was silent too long)
    /// and takes over first, then runs the loop of `Conductor::start` (without the recovery of
    /// a process start: this process never stopped).
    pub fn resume_member(&mut self, i: usize) -> Result<(), LabError> {
        let m = self.member(i)?;
        if m.status != ConductorStatus::Paused {
            return Ok(());
        }
        m.periodic = Some(m.service.conductor.resume());
        m.status = ConductorStatus::Running;
        Ok(())
    }

    /// Registers an image of `size` virtual bytes with deterministic content (scaled down by the
    /// lab's byte scale), active in the image store; `id` is a UUID. Returns the image.
    pub async fn add_image(
        &self,
        name: &str,
        id: &str,
        size: u64,
        format: DiskFormat,
        seed: u64,
    ) -> Result<ferric_service::images::Image, LabError> {
        let real = (size / self.shared.scale).clamp(512, 64 << 20) as usize;
        let mut data = vec![0u8; real];
        StdRng::seed_from_u64(seed).fill_bytes(&mut data);
        let data = Bytes::from(data);
        let store = &self.images.store;
        let img = store.create(CreateImage {
            id: Some(id.to_string()),
            name: Some(name.to_string()),
            disk_format: Some(format),
            container_format: Some("bare".into()),
            ..Default::default()
        })?;
        // Uploaded through the bridge, like every file-touching router call of the simulation.
        let url = url::Url::parse(&format!("{}/v2/images/{}/file", net::images_url(), img.id))
            .map_err(|e| LabError::Http(e.to_string()))?;
        let mut req = ferric_types::http::HttpRequest::get(url);
        req.method = http::Method::PUT;
        req.body = data.clone();
        use ferric_types::http::HttpClient;
        let resp = self.net.http.send(req).await.map_err(|e| LabError::Http(e.to_string()))?;
        if !resp.status.is_success() {
            let body = resp.bytes(4096).await.unwrap_or_default();
            return Err(LabError::Http(format!("image upload: {} {}", resp_status(&body), img.id)));
        }
        let img = store.get(&img.id)?;
        self.shared.images.lock().push(KnownImage { name: name.to_string(), id: img.id.clone(), data });
        Ok(img)
    }

    /// Calls the API as a client would (latest microversion), in-process.
    pub async fn api(&self, method: http::Method, path: &str, body: Option<Value>) -> Result<Value, LabError> {
        api_call(&self.net.http, method, path, body).await
    }

    /// The node and port bodies that enroll machine `i` as an `ipmi` node (node UUID `uuid`,
    /// port UUIDs from `port_uuids`); `extra` is merged into the node's body.
    pub fn enroll_bodies(
        &self,
        i: usize,
        uuid: NodeId,
        port_uuids: &[String],
        extra: &Value,
    ) -> Result<(Value, Vec<Value>), LabError> {
        let node = self.nodes.get(i).ok_or_else(|| LabError::Invalid(format!("no machine {i}")))?;
        let (address, port, redfish_host) = match self.config.transport {
            BmcTransport::Channel => {
                let (a, port) = bmc_endpoint(i, false);
                (a, usize::from(port), bmc_endpoint(i, true).0)
            }
            BmcTransport::Udp { base_port } => ("127.0.0.1".to_string(), base_port as usize + i, "127.0.0.1".into()),
        };
        let p = &node.profile;
        let (driver, driver_info) = match p.bmc {
            BmcProtocol::Ipmi => (
                "ipmi",
                json!({
                    "ipmi_address": address,
                    "ipmi_port": port,
                    "ipmi_username": "admin",
                    "ipmi_password": "password",
                }),
            ),
            BmcProtocol::Redfish => {
                let host = redfish_host;
                (
                    "redfish",
                    json!({
                        "redfish_address": format!("http://{host}:{port}"),
                        "redfish_username": "admin",
                        "redfish_password": "password",
                    }),
                )
            }
        };
        let mut body = json!({
            "uuid": uuid.to_string(),
            "name": node.name,
            "driver": driver,
            "driver_info": driver_info,
            "properties": {
                "cpus": p.cpus,
                "memory_mb": p.memory_mb,
                "local_gb": p.disk_gib,
                "cpu_arch": "x86_64",
                "capabilities": if p.firmware == crate::machine::node::Firmware::Uefi { "boot_mode:uefi" } else { "boot_mode:bios" },
            },
        });
        if self.config.real_boot {
            let (kernel, ramdisk) = super::boot::deploy_image_urls(self.wiring.workdir.as_path());
            merge(&mut body, &json!({"driver_info": {"deploy_kernel": kernel, "deploy_ramdisk": ramdisk}}));
        }
        merge(&mut body, extra);
        let ports = node
            .macs
            .iter()
            .enumerate()
            .map(|(k, mac)| {
                let mut port =
                    json!({"node_uuid": uuid.to_string(), "address": mac.to_string(), "pxe_enabled": k == 0});
                if let Some(u) = port_uuids.get(k) {
                    port["uuid"] = json!(u);
                }
                port
            })
            .collect();
        Ok((body, ports))
    }

    /// Enrolls machine `i` through the API (see [`SimLab::enroll_bodies`]).
    pub async fn enroll(&self, i: usize, uuid: NodeId, port_uuids: &[String], extra: &Value) -> Result<(), LabError> {
        let (body, ports) = self.enroll_bodies(i, uuid, port_uuids, extra)?;
        self.api(http::Method::POST, "/v1/nodes", Some(body)).await?;
        if let Some(n) = self.nodes.get(i) {
            n.set_node(uuid);
        }
        for port in ports {
            self.api(http::Method::POST, "/v1/ports", Some(port)).await?;
        }
        Ok(())
    }

    /// The node a machine is enrolled as, from the database.
    pub fn node_record(&self, i: usize) -> Option<ferric_types::models::Node> {
        let id = self.nodes.get(i)?.node()?;
        self.db.get_node_by_uuid(id).ok()
    }

    /// Stops every task of the lab (tests build many labs in one runtime).
    pub fn shutdown(&mut self) {
        if let Some(p) = self.periodic.take() {
            p.abort();
        }
        self.service.conductor.halt();
        for m in &mut self.members {
            m.stop_periodic();
            m.service.conductor.halt();
        }
        for w in self.watchers.drain(..) {
            w.abort();
        }
        if let Some(mut s) = self.bmc_servers.take() {
            s.abort_all();
        }
        self.redfish_servers.abort_all();
    }
}

impl Drop for SimLab {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Conductor `k`'s clock (the lab's epoch, a seed derived from the lab clock's).
fn member_clock(config: &LabConfig, clock_seed: u64, k: u64) -> Clock {
    if config.real_clock {
        Clock::system()
    } else {
        let epoch = chrono::DateTime::from_timestamp(EPOCH_UNIX, 0).unwrap_or_default();
        Clock::virtual_from(epoch, derive_seed(clock_seed, k))
    }
}

/// Points the API service at the conductors: each call goes, in memory, to the live conductor
/// the hash ring gives its node.
fn install_router(api: &mut Service, members: &[LabConductor], db: &Db) {
    let peers: HashMap<String, Conductor> =
        members.iter().map(|m| (m.host().to_string(), m.service.conductor.clone())).collect();
    api.api.rpc = Arc::new(Router::new(
        db.clone(),
        api.conductor.clone(),
        Transport::InMemory(Arc::new(peers)),
        api.api.clock.clone(),
    ));
}

/// Calls the API in-process over `http` as a client would (latest microversion).
pub async fn api_call(
    http: &TowerHttp,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, LabError> {
    use ferric_types::http::HttpClient;
    let url = url::Url::parse(&format!("{}{path}", net::api_url())).map_err(|e| LabError::Http(e.to_string()))?;
    let mut req = ferric_types::http::HttpRequest::get(url);
    req.method = method.clone();
    req = req.header(http::HeaderName::from_static("x-openstack-ironic-api-version"), "latest");
    if let Some(b) = body {
        req.body = Bytes::from(serde_json::to_vec(&b).map_err(|e| LabError::Http(e.to_string()))?);
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let resp = http.send(req).await.map_err(|e| LabError::Http(e.to_string()))?;
    let status = resp.status;
    let bytes = resp.bytes(16 << 20).await.map_err(|e| LabError::Http(e.to_string()))?;
    if !status.is_success() {
        return Err(LabError::Api {
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).chars().take(2000).collect(),
        });
    }
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| LabError::Http(e.to_string()))
}

fn resp_status(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(500).collect()
}

/// Merges `extra`'s object members into `base` (recursively for objects).
pub fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, e) if !e.is_null() => *b = e.clone(),
        _ => {}
    }
}

/// States in which ferric may write a node's disk (a deploy, or cleaning).
fn write_allowed(s: ProvisionState) -> bool {
    matches!(
        s,
        ProvisionState::Deploying | ProvisionState::DeployWait | ProvisionState::Cleaning | ProvisionState::CleanWait
    )
}

/// The disk's write hook: records writes to a disk whose node is not being deployed or cleaned.
/// The lab owns the only handle to its in-memory database, so the state this handle last saw is
/// the current one (asking SQLite for every block written was 2% of a 10,000-node run).
fn write_guard(node: &Arc<SimNode>, db: &Db, shared: &Arc<LabShared>) -> crate::machine::disk::WriteHook {
    let node = Arc::downgrade(node);
    let db = db.clone();
    let shared = Arc::downgrade(shared);
    Arc::new(move |offset, len| {
        let Some(n) = node.upgrade() else { return Ok(()) };
        let state = n.node().and_then(|id| db.known_provision_state(id).ok());
        match state {
            Some(s) if write_allowed(s) => {}
            other => {
                if let Some(sh) = shared.upgrade() {
                    let mut w = sh.stray_writes.lock();
                    if w.len() < 1000 {
                        w.push(format!(
                            "{}: {len} bytes at {offset} while the node was {}",
                            n.name,
                            other.map(|s| s.to_string()).unwrap_or_else(|| "not enrolled".into())
                        ));
                    }
                }
            }
        }
        Ok(())
    })
}
