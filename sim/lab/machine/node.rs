//! A simulated machine's life beyond its BMC: what happens when it powers on.
//!
//! The BMC's [`SimMachine`] publishes every boot; [`SimNode::watch`] reacts by running the
//! firmware: POST, then the boot device the BMC selected (or the machine's own boot order). A
//! network boot does DHCP through ferric's [`DhcpHandler`](ferric_service::pxe::dhcp::DhcpHandler) bytes in,
//! bytes out, fetches the network boot program and its config through ferric's TFTP name
//! resolution and HTTP boot router, and boots what the config says: the deploy ramdisk is the
//! agent library, in-process, on an in-memory disk, reaching the API and image store through
//! their real routers; a disk boot "runs the instance" when the disk holds an image. Powering off
//! stops whatever ran. Every wait is a `tokio::time` sleep, so all of it runs on a paused clock.

use crate::machine::disk::SimDisk;
use crate::machine::firmware::{self, BootPlan, Nbp};
use crate::machine::power::SimMachine;
use crate::net::{self, SimNet};
use async_trait::async_trait;
use bytes::Bytes;
use dhcproto::v4::{Architecture, DhcpOption, MessageType, OptionCode};
use ferric_agent::{Agent, AgentConfig, HostMode, LogRing};
use ferric_disk::blockdev::BlockDevice;
use ferric_disk::disks::Disk;
use ferric_service::pxe::MacAddr;
use ferric_sim::machine::{BootDevice, BootSelection, Machine, PowerState};
use ferric_sim::vbmc::Bmc;
use ferric_types::http::{HttpClient, HttpError, HttpRequest, HttpResponse};
use ferric_types::models::NodeId;
use ferric_types::trace::Actor;
use futures::StreamExt;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long things take on a machine (virtual time). Sizes are virtual bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timings {
    /// Power-on self test, before the first boot device is tried.
    pub post_secs: f64,
    /// One DHCP round trip.
    pub dhcp_secs: f64,
    /// DHCP retries of a PXE ROM (4, 8, 16, 32 s apart) before it gives up on the network.
    pub dhcp_retries: u32,
    pub tftp_bytes_per_sec: u64,
    pub http_bytes_per_sec: u64,
    /// Network boot program (undionly.kpxe, pxelinux.0) size.
    pub nbp_bytes: u64,
    pub kernel_bytes: u64,
    pub ramdisk_bytes: u64,
    /// From the kernel's start to the agent's first request.
    pub kernel_boot_secs: f64,
    /// From a disk boot to the instance running.
    pub instance_boot_secs: f64,
    pub disk_bytes_per_sec: u64,
    /// Image downloads (agent ← image store).
    pub net_bytes_per_sec: u64,
    /// ACPI soft-off to power off.
    pub soft_off_secs: f64,
    /// Each duration varies by up to ± this fraction (seeded per machine).
    pub jitter: f64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            post_secs: 60.0,
            dhcp_secs: 0.5,
            dhcp_retries: 4,
            tftp_bytes_per_sec: 4 << 20,
            http_bytes_per_sec: 100 << 20,
            nbp_bytes: 100 << 10,
            kernel_bytes: 12 << 20,
            ramdisk_bytes: 400 << 20,
            kernel_boot_secs: 20.0,
            instance_boot_secs: 30.0,
            disk_bytes_per_sec: 400 << 20,
            net_bytes_per_sec: 110 << 20,
            soft_off_secs: 5.0,
            jitter: 0.1,
        }
    }
}

/// Legacy BIOS or UEFI firmware (DHCP option 93, the boot file ferric hands out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    #[default]
    Bios,
    Uefi,
}

/// Boot devices of a machine's own boot order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderDevice {
    Disk,
    Pxe,
}

/// Which protocol a machine's BMC speaks to ferric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BmcProtocol {
    /// IPMI 2.0 over LAN (the `ipmi` hardware type).
    #[default]
    Ipmi,
    /// Redfish over HTTP (the `redfish` hardware type).
    Redfish,
}

/// A kind of machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub cpus: u32,
    pub memory_mb: u64,
    pub disk_gib: u64,
    pub nics: usize,
    pub firmware: Firmware,
    /// Order tried when the BMC selects no device.
    pub boot_order: Vec<OrderDevice>,
    pub timings: Timings,
    /// The BMC the node is enrolled through.
    pub bmc: BmcProtocol,
    /// The node's boot interface when not the scenario's (`redfish-virtual-media`, say).
    pub boot_interface: Option<String>,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            name: "default".into(),
            cpus: 16,
            memory_mb: 65536,
            disk_gib: 480,
            nics: 1,
            firmware: Firmware::Bios,
            boot_order: vec![OrderDevice::Disk, OrderDevice::Pxe],
            timings: Timings::default(),
            bmc: BmcProtocol::Ipmi,
            boot_interface: None,
        }
    }
}

/// Where an agent crash is injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStep {
    /// The ramdisk boots but the agent never starts.
    Boot,
    /// Right after a successful lookup.
    Lookup,
    /// Right after the first accepted heartbeat.
    Heartbeat,
    /// When the image download starts.
    Download,
    /// At the first disk write.
    Write,
    /// When this agent command (`ext.name`) arrives.
    Command(String),
}

impl AgentStep {
    /// `boot`, `lookup`, `heartbeat`, `download`, `write`, or an `ext.command` name.
    pub fn parse(s: &str) -> Option<AgentStep> {
        Some(match s {
            "boot" => AgentStep::Boot,
            "lookup" => AgentStep::Lookup,
            "heartbeat" => AgentStep::Heartbeat,
            "download" => AgentStep::Download,
            "write" => AgentStep::Write,
            c if c.contains('.') && c.len() < 128 => AgentStep::Command(c.to_string()),
            _ => return None,
        })
    }
}

/// Faults of the machine's side (the BMC's are on the BMC).
#[derive(Debug, Default)]
pub struct MachineFaults {
    /// Probability (parts per million) that a DHCP packet is lost, each direction.
    pub dhcp_loss_ppm: AtomicU32,
    pub heartbeats_lost: AtomicBool,
    /// The image store cannot be reached from this machine.
    pub image_server_down: AtomicBool,
    /// Image downloads arrive with a flipped byte (checksum mismatch).
    pub image_corrupt: AtomicBool,
    /// The next agent crashes at this step (once).
    pub crash_at: Mutex<Option<AgentStep>>,
}

impl MachineFaults {
    pub fn set_dhcp_loss(&self, p: f64) {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.dhcp_loss_ppm.store((p * 1e6).round() as u32, Relaxed);
    }
}

/// What the machine is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum Os {
    Off,
    Firmware,
    /// The deploy ramdisk runs the agent.
    Ramdisk,
    /// The deployed instance runs (image name).
    Instance(String),
    /// The ramdisk is up but its agent is gone (crashed, or gave up looking up).
    Hung(String),
    /// Nothing bootable was found.
    NoBootDevice,
}

/// What a machine went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MachineCounters {
    pub boots: u64,
    pub dhcp_discovers: u64,
    pub dhcp_lost: u64,
    pub pxe_failures: u64,
    pub agent_starts: u64,
    pub agent_crashes: u64,
    pub instance_boots: u64,
    pub heartbeats_dropped: u64,
    pub downloads: u64,
}

/// An image the lab knows, to recognise it on a disk.
#[derive(Debug, Clone)]
pub struct KnownImage {
    pub name: String,
    pub id: String,
    pub data: Bytes,
}

/// Shared by a lab's machines.
pub struct LabShared {
    pub net: Arc<SimNet>,
    pub images: Mutex<Vec<KnownImage>>,
    /// Real bytes → virtual bytes.
    pub scale: u64,
    /// Boot straight into the ramdisk after DHCP when no boot interface serves boot files
    /// (`fake` boot interface).
    pub assume_ramdisk: bool,
    /// Disk writes seen outside a deploy or cleaning (the invariant's evidence).
    pub stray_writes: Mutex<Vec<String>>,
    /// iSCSI portals of the agents.
    pub portals: Arc<crate::iscsi::Portals>,
    /// The image store is down for everyone (conductor included).
    pub images_down: AtomicBool,
    /// Every image download (conductor included) arrives corrupted.
    pub images_corrupt: AtomicBool,
    /// The agents' REST API, one router for every machine (see [`agent_routes`]).
    pub agent_routes: axum::Router,
}

/// The agent API's routes with the lab's command observer, shared by every machine's ramdisk:
/// each machine's host puts its agent and its observer in the request's extensions.
pub fn agent_routes() -> axum::Router {
    ferric_agent::server::routes().layer(axum::middleware::from_fn(observe_commands))
}

struct Runtime {
    os: Os,
    /// Bumped at every boot and power off: I/O of an older generation fails (a dead OS).
    epoch: u64,
    task: Option<JoinHandle<()>>,
    agent: Option<AgentRun>,
    last_command: Option<String>,
    counters: MachineCounters,
}

struct AgentRun {
    token: tokio_util::sync::CancellationToken,
    host: String,
}

/// One simulated machine: BMC, machine, disk, and its firmware/OS behaviour.
pub struct SimNode {
    pub index: usize,
    pub name: String,
    pub machine: Arc<SimMachine>,
    pub bmc: Bmc,
    /// The machine's Redfish BMC, when its profile has one (beside the IPMI one: `both`).
    pub redfish: Option<ferric_sim::redfish::RedfishBmc>,
    pub disk: Arc<SimDisk>,
    pub macs: Vec<MacAddr>,
    pub profile: Arc<Profile>,
    pub faults: MachineFaults,
    shared: Arc<LabShared>,
    node: OnceLock<NodeId>,
    rng: Mutex<StdRng>,
    rt: Mutex<Runtime>,
}

impl SimNode {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        name: String,
        machine: Arc<SimMachine>,
        bmc: Bmc,
        redfish: Option<ferric_sim::redfish::RedfishBmc>,
        disk: Arc<SimDisk>,
        profile: Arc<Profile>,
        shared: Arc<LabShared>,
        seed: u64,
    ) -> Arc<Self> {
        let macs = machine.macs().into_iter().map(MacAddr).collect();
        Arc::new(Self {
            index,
            name,
            machine,
            bmc,
            redfish,
            disk,
            macs,
            profile,
            faults: MachineFaults::default(),
            shared,
            node: OnceLock::new(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            rt: Mutex::new(Runtime {
                os: Os::Off,
                epoch: 0,
                task: None,
                agent: None,
                last_command: None,
                counters: MachineCounters::default(),
            }),
        })
    }

    /// Ties the machine to its node record (trace events carry the node's UUID).
    pub fn set_node(&self, id: NodeId) {
        let _ = self.node.set(id);
    }

    pub fn node(&self) -> Option<NodeId> {
        self.node.get().copied()
    }

    /// The machine's address on the provisioning network: its SLAAC (EUI-64) address in
    /// 2001:db8::/64, unique per MAC however large the fleet. Agents advertise it.
    pub fn ipv6(&self) -> std::net::Ipv6Addr {
        let m = self.macs.first().map(|m| m.0).unwrap_or_default();
        std::net::Ipv6Addr::new(
            0x2001,
            0x0db8,
            0,
            0,
            u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
            u16::from_be_bytes([m[2], 0xff]),
            u16::from_be_bytes([0xfe, m[3]]),
            u16::from_be_bytes([m[4], m[5]]),
        )
    }

    pub fn os(&self) -> Os {
        self.rt.lock().os.clone()
    }

    pub fn counters(&self) -> MachineCounters {
        self.rt.lock().counters
    }

    /// Whether an agent is serving now.
    pub fn agent_running(&self) -> bool {
        self.rt.lock().agent.is_some()
    }

    fn epoch(&self) -> u64 {
        self.rt.lock().epoch
    }

    fn record(&self, from: Actor, to: Actor, label: &str) {
        if let Some(n) = self.node() {
            self.shared.net.trace.record(n, from, to, label);
        }
    }

    fn count(&self, f: impl FnOnce(&mut MachineCounters)) {
        f(&mut self.rt.lock().counters)
    }

    /// `secs` ± the profile's jitter.
    fn jittered(&self, secs: f64) -> Duration {
        let j = self.profile.timings.jitter.clamp(0.0, 0.9);
        let f = if j > 0.0 { 1.0 + self.rng.lock().random_range(-j..=j) } else { 1.0 };
        Duration::from_secs_f64((secs * f).max(0.0))
    }

    fn transfer(&self, bytes: u64, per_sec: u64) -> Duration {
        if per_sec == 0 {
            return Duration::ZERO;
        }
        self.jittered(bytes as f64 / per_sec as f64)
    }

    /// Reacts to the machine's power and boots until the runtime ends.
    pub async fn watch(self: Arc<Self>) {
        let mut rx = self.machine.subscribe();
        let mut boots = rx.borrow().boots;
        loop {
            if rx.changed().await.is_err() {
                return;
            }
            let st = *rx.borrow_and_update();
            if st.power == Some(PowerState::Off) {
                self.stop(Os::Off);
                continue;
            }
            if st.boots != boots {
                boots = st.boots;
                self.stop(Os::Firmware);
                let sel = st.last_boot.unwrap_or_default();
                let me = self.clone();
                let task = tokio::spawn(async move { me.boot(sel).await });
                self.rt.lock().task = Some(task);
                self.count(|c| c.boots += 1);
            }
        }
    }

    /// Ends what runs (power off, reset): the OS task, its agent, its I/O.
    fn stop(&self, next: Os) {
        let (task, agent) = {
            let mut rt = self.rt.lock();
            rt.epoch += 1;
            rt.os = next;
            rt.last_command = None;
            (rt.task.take(), rt.agent.take())
        };
        if let Some(a) = agent {
            a.token.cancel();
            self.shared.net.http.remove_host(&a.host);
        }
        self.shared.portals.stop_machine(self.index);
        if let Some(t) = task {
            t.abort();
        }
    }

    /// The agent dies (injected crash): the machine stays on with a hung ramdisk.
    fn crash_agent(&self, why: &str) {
        tracing::info!(machine = %self.name, step = why, "agent crash injected");
        let agent = {
            let mut rt = self.rt.lock();
            rt.epoch += 1;
            rt.os = Os::Hung(format!("agent crashed at {why}"));
            rt.counters.agent_crashes += 1;
            rt.agent.take()
        };
        if let Some(a) = agent {
            a.token.cancel();
            self.shared.net.http.remove_host(&a.host);
        }
        self.shared.portals.stop_machine(self.index);
        // The OS task is the caller's or its parent: it ends on its own when its I/O fails.
    }

    /// Consumes the crash fault when it matches `step`.
    fn crash_due(&self, step: &AgentStep) -> bool {
        let mut c = self.faults.crash_at.lock();
        if c.as_ref() == Some(step) {
            *c = None;
            return true;
        }
        false
    }

    async fn boot(self: Arc<Self>, sel: BootSelection) {
        let t = &self.profile.timings;
        // A UEFI HTTP boot: an EFI network boot the BMC gave a URI (read now, as the boot began).
        let http_uri = if sel.device == BootDevice::Pxe && sel.efi { self.machine.last_boot_uri() } else { None };
        tokio::time::sleep(self.jittered(t.post_secs)).await;
        let order: Vec<OrderDevice> = match sel.device {
            BootDevice::Pxe => match http_uri {
                Some(uri) => {
                    if self.clone().boot_http(uri).await {
                        return;
                    }
                    Vec::new()
                }
                None => vec![OrderDevice::Pxe],
            },
            BootDevice::Disk => vec![OrderDevice::Disk],
            BootDevice::None => self.profile.boot_order.clone(),
            BootDevice::Cdrom => {
                if self.clone().boot_vmedia().await {
                    return;
                }
                Vec::new()
            }
            BootDevice::Bios => Vec::new(),
        };
        for dev in order {
            let booted = match dev {
                OrderDevice::Disk => self.boot_disk().await,
                OrderDevice::Pxe => self.clone().boot_network(sel.efi).await,
            };
            if booted {
                return;
            }
        }
        tracing::debug!(machine = %self.name, "no bootable device");
        self.rt.lock().os = Os::NoBootDevice;
    }

    /// The image the disk holds, if any.
    fn disk_image(&self) -> Option<String> {
        let imgs = self.shared.images.lock();
        imgs.iter().find(|i| !i.data.is_empty() && self.disk.holds(0, &i.data)).map(|i| i.name.clone())
    }

    async fn boot_disk(&self) -> bool {
        let Some(name) = self.disk_image() else { return false };
        tokio::time::sleep(self.jittered(self.profile.timings.instance_boot_secs)).await;
        let mut rt = self.rt.lock();
        rt.os = Os::Instance(name);
        rt.counters.instance_boots += 1;
        true
    }

    fn lost(&self) -> bool {
        let ppm = self.faults.dhcp_loss_ppm.load(Relaxed);
        ppm > 0 && self.rng.lock().random_range(0..1_000_000) < ppm
    }

    /// One DHCP exchange (DISCOVER/OFFER/REQUEST/ACK) with the PXE ROM's retries. Returns the
    /// ACK's address, next server and boot file.
    async fn dhcp(&self, ipxe: bool, efi: bool, record: bool) -> Option<(Ipv4Addr, Ipv4Addr, String)> {
        let t = &self.profile.timings;
        let mac = *self.macs.first()?;
        let handler = self.shared.net.dhcp(self.index);
        let arch = if efi || self.profile.firmware == Firmware::Uefi { Architecture(7) } else { Architecture(0) };
        let base_opts = |extra: Vec<DhcpOption>| {
            let mut o = vec![
                DhcpOption::ClassIdentifier(format!("PXEClient:Arch:{:05}:UNDI:002001", arch.0).into_bytes()),
                DhcpOption::ClientSystemArchitecture(arch),
                DhcpOption::ParameterRequestList(vec![
                    OptionCode::SubnetMask,
                    OptionCode::Router,
                    OptionCode::BootfileName,
                ]),
            ];
            if ipxe {
                o.push(DhcpOption::UserClass(b"iPXE".to_vec()));
            }
            o.extend(extra);
            o
        };
        if record {
            self.record(Actor::Node, Actor::Neutron, "DHCP request");
        }
        for attempt in 0..=t.dhcp_retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(4u64 << (attempt - 1).min(5))).await;
            }
            self.count(|c| c.dhcp_discovers += 1);
            let xid: u32 = self.rng.lock().random();
            let discover =
                ferric_service::pxe::dhcp::handler::client_message(MessageType::Discover, mac, xid, base_opts(vec![]));
            tokio::time::sleep(self.jittered(t.dhcp_secs / 2.0)).await;
            if self.lost() {
                self.count(|c| c.dhcp_lost += 1);
                continue;
            }
            let Some(offer) = handler.handle(&discover, self.shared.net.now_unix()) else { continue };
            if self.lost() {
                self.count(|c| c.dhcp_lost += 1);
                continue;
            }
            let Some(offer) = ferric_service::pxe::dhcp::handler::decode(&offer.bytes) else { continue };
            let server = match offer.opts().get(OptionCode::ServerIdentifier) {
                Some(DhcpOption::ServerIdentifier(s)) => *s,
                _ => continue,
            };
            let request = ferric_service::pxe::dhcp::handler::client_message(
                MessageType::Request,
                mac,
                xid,
                base_opts(vec![DhcpOption::RequestedIpAddress(offer.yiaddr()), DhcpOption::ServerIdentifier(server)]),
            );
            tokio::time::sleep(self.jittered(t.dhcp_secs / 2.0)).await;
            if self.lost() {
                self.count(|c| c.dhcp_lost += 1);
                continue;
            }
            let Some(ack) = handler.handle(&request, self.shared.net.now_unix()) else { continue };
            if ack.kind != MessageType::Ack || self.lost() {
                continue;
            }
            let Some(ack) = ferric_service::pxe::dhcp::handler::decode(&ack.bytes) else { continue };
            let file = match ack.opts().get(OptionCode::BootfileName) {
                Some(DhcpOption::BootfileName(f)) => String::from_utf8_lossy(f).into_owned(),
                _ => ack.fname_str().and_then(|r| r.ok()).unwrap_or_default().trim_end_matches('\0').to_string(),
            };
            if record {
                self.record(Actor::Neutron, Actor::Node, "next-server = Conductor");
            }
            return Some((ack.yiaddr(), ack.siaddr(), file));
        }
        None
    }

    /// Reads a file from the TFTP root as ferric's TFTP server would resolve it.
    fn tftp_read(&self, name: &str) -> Option<Vec<u8>> {
        let path = ferric_service::pxe::tftp::resolve(&self.shared.net.tftp_root, name).ok()?;
        let meta = std::fs::metadata(&path).ok()?;
        if meta.len() > (1 << 20) {
            // Kernels and ramdisks are only checked to exist, never read.
            return Some(Vec::new());
        }
        std::fs::read(path).ok()
    }

    /// GETs `url` on the in-process network (HTTP boot server), bounded.
    async fn http_get(&self, url: &str) -> Option<Bytes> {
        self.http_get_limited(url, 1 << 20).await
    }

    async fn http_get_limited(&self, url: &str, limit: usize) -> Option<Bytes> {
        let url = url::Url::parse(url).ok()?;
        let resp = self.shared.net.http.send(HttpRequest::get(url)).await.ok()?;
        if !resp.status.is_success() {
            return None;
        }
        resp.bytes(limit).await.ok()
    }

    /// Whether a kernel/initrd named by a boot config exists where it says.
    async fn fetch_exists(&self, name: &str) -> bool {
        if name.starts_with("http://") || name.starts_with("https://") {
            let Ok(url) = url::Url::parse(name) else { return false };
            // A HEAD answers whether the file is there without reading it (a ranged GET made
            // the boot server open, seek and read each file on its blocking pool).
            let req = HttpRequest { method: http::Method::HEAD, ..HttpRequest::get(url) };
            match self.shared.net.http.send(req).await {
                Ok(r) => r.status.is_success(),
                Err(_) => false,
            }
        } else {
            ferric_service::pxe::tftp::resolve(&self.shared.net.tftp_root, name).is_ok()
        }
    }

    async fn boot_network(self: Arc<Self>, efi: bool) -> bool {
        let t = self.profile.timings.clone();
        let Some((_ip, _next, file)) = self.dhcp(false, efi, true).await else {
            tracing::debug!(machine = %self.name, "PXE: no DHCP offer");
            self.count(|c| c.pxe_failures += 1);
            return false;
        };
        let plan = if self.shared.assume_ramdisk {
            BootPlan::Kernel { kernel: String::new(), initrd: None, args: format!("ipa-api-url={}", net::api_url()) }
        } else {
            match self.load_config(&file, efi, &t).await {
                Some(p) => p,
                None => {
                    self.count(|c| c.pxe_failures += 1);
                    return false;
                }
            }
        };
        match plan {
            BootPlan::LocalDisk => self.boot_disk().await,
            BootPlan::Nothing => false,
            BootPlan::Kernel { kernel, initrd, args } => {
                if !self.shared.assume_ramdisk {
                    let ok = self.fetch_exists(&kernel).await
                        && match &initrd {
                            Some(i) => self.fetch_exists(i).await,
                            None => true,
                        };
                    if !ok {
                        self.count(|c| c.pxe_failures += 1);
                        return false;
                    }
                    let per_sec = if kernel.starts_with("http") { t.http_bytes_per_sec } else { t.tftp_bytes_per_sec };
                    tokio::time::sleep(self.transfer(t.kernel_bytes + t.ramdisk_bytes, per_sec)).await;
                }
                tokio::time::sleep(self.jittered(t.kernel_boot_secs)).await;
                let plan = BootPlan::Kernel { kernel, initrd, args };
                match plan.api_url() {
                    Some(api) => {
                        let api = api.to_string();
                        self.run_ramdisk(api).await;
                        true
                    }
                    // A netbooted instance: its root file system is on the disk.
                    None => match self.disk_image() {
                        Some(name) => {
                            let mut rt = self.rt.lock();
                            rt.os = Os::Instance(name);
                            rt.counters.instance_boots += 1;
                            true
                        }
                        None => false,
                    },
                }
            }
        }
    }

    /// Boots the image in the virtual CD drive as isolinux would: its `isolinux.cfg` names the
    /// kernel and the command line (the deploy ramdisk's API URL among it); no DHCP, no TFTP.
    async fn boot_vmedia(self: Arc<Self>) -> bool {
        let Some(url) = self.machine.media() else {
            tracing::debug!(machine = %self.name, "CD boot: no virtual media");
            return false;
        };
        self.boot_iso(url, "Get deploy ISO (virtual media)", "CD boot").await
    }

    /// A UEFI HTTP boot of the ISO at `uri` (a Redfish BMC's `HttpBootUri`): fetched through the
    /// network and booted exactly as the virtual CD is. The deploy ISO holds only an isolinux
    /// (BIOS) boot record, which this firmware takes; a real UEFI machine needs an EFI boot
    /// image on it, which ferric does not build yet.
    async fn boot_http(self: Arc<Self>, uri: String) -> bool {
        self.boot_iso(uri, "Get deploy ISO (UEFI HTTP boot)", "UEFI HTTP boot").await
    }

    /// Fetches the ISO at `url` (recording `label`) and boots it as isolinux would.
    async fn boot_iso(self: Arc<Self>, url: String, label: &str, how: &str) -> bool {
        let t = self.profile.timings.clone();
        self.record(Actor::Node, Actor::TftpHttpd, label);
        let Some(iso) = self.http_get_limited(&url, 256 << 20).await else {
            self.count(|c| c.pxe_failures += 1);
            return false;
        };
        let Some(cfg) = firmware::iso_file(&iso, "isolinux/isolinux.cfg") else {
            tracing::debug!(machine = %self.name, "{how}: no isolinux.cfg on the medium");
            self.count(|c| c.pxe_failures += 1);
            return false;
        };
        let plan = firmware::parse_pxelinux(&String::from_utf8_lossy(&cfg));
        // The virtual CD reads at HTTP speed (the BMC streams the image).
        tokio::time::sleep(self.transfer(t.kernel_bytes + t.ramdisk_bytes, t.http_bytes_per_sec)).await;
        tokio::time::sleep(self.jittered(t.kernel_boot_secs)).await;
        match plan.api_url() {
            Some(api) => {
                let api = api.to_string();
                self.run_ramdisk(api).await;
                true
            }
            None => false,
        }
    }

    /// Fetches the boot program and reads its config, as iPXE or pxelinux would.
    async fn load_config(&self, file: &str, efi: bool, t: &Timings) -> Option<BootPlan> {
        if file.is_empty() {
            return None;
        }
        self.tftp_read(file)?;
        tokio::time::sleep(self.transfer(t.nbp_bytes, t.tftp_bytes_per_sec)).await;
        match firmware::nbp_of(file)? {
            Nbp::Ipxe => {
                let (_, _, script_url) = self.dhcp(true, efi, false).await?;
                let body = self.http_get(&script_url).await?;
                Some(firmware::parse_ipxe(&String::from_utf8_lossy(&body)))
            }
            Nbp::Pxelinux => {
                let mac = *self.macs.first()?;
                let cfg = self
                    .tftp_read(&firmware::pxelinux_config_name(&mac))
                    .or_else(|| self.tftp_read("pxelinux.cfg/default"))?;
                Some(firmware::parse_pxelinux(&String::from_utf8_lossy(&cfg)))
            }
        }
    }

    /// Runs the agent until it ends, then does what it asked of the machine (power off, reboot).
    async fn run_ramdisk(self: Arc<Self>, api_url: String) {
        // The API records "Runs agent ramdisk" when the agent looks itself up.
        if self.crash_due(&AgentStep::Boot) {
            self.crash_agent("boot");
            return;
        }
        let epoch = self.epoch();
        let seed: u64 = self.rng.lock().random();
        let macs: Vec<String> = self.macs.iter().map(|m| m.to_string()).collect();
        let mut config = AgentConfig::new(&api_url, macs, seed);
        config.started_at = self.shared.net.now_unix() as f64;
        let http: Arc<dyn HttpClient> = Arc::new(MachineHttp { node: Arc::downgrade(&self), epoch });
        let dev: Arc<dyn BlockDevice> = Arc::new(GenDisk { node: Arc::downgrade(&self), epoch });
        let mut disk = Disk::from_device("/dev/sda", dev);
        disk.model = Some("SIMDISK".into());
        disk.serial = Some(format!("SIM{:08}", self.index));
        let ip = self.ipv6();
        let weak = Arc::downgrade(&self);
        let alive: Arc<dyn Fn() -> bool + Send + Sync> =
            Arc::new(move || weak.upgrade().is_some_and(|n| n.epoch() == epoch));
        let exposer = crate::iscsi::SimExposer {
            portals: self.shared.portals.clone(),
            owner: self.index,
            alive,
            seed: self.rng.lock().random(),
        };
        let iscsi: Arc<dyn ferric_agent::Extension> =
            Arc::new(ferric_agent::iscsi_ext::IscsiExtension::new(Arc::new(exposer), std::net::IpAddr::V6(ip)));
        let agent = match Agent::new(
            config,
            http,
            vec![disk],
            HostMode::Simulated,
            vec![iscsi],
            Arc::new(LogRing::default()),
        ) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                self.rt.lock().os = Os::Hung(format!("agent did not start: {e}"));
                return;
            }
        };
        let host = format!("[{ip}]:{}", net::AGENT_PORT);
        let (core, observer) = (agent.core(), Observer { node: Arc::downgrade(&self), epoch });
        let router = tower::ServiceExt::map_request(
            self.shared.agent_routes.clone(),
            move |mut req: http::Request<axum::body::Body>| {
                req.extensions_mut().insert(core.clone());
                req.extensions_mut().insert(observer.clone());
                req
            },
        );
        {
            let mut rt = self.rt.lock();
            if rt.epoch != epoch {
                return;
            }
            rt.os = Os::Ramdisk;
            rt.counters.agent_starts += 1;
            rt.agent = Some(AgentRun { token: agent.shutdown_token(), host: host.clone() });
        }
        self.shared.net.http.add_host(&host, router);
        let callback = format!("http://{host}");
        let result = agent.run(&callback).await;
        let (current, last) = {
            let rt = self.rt.lock();
            (rt.epoch == epoch, rt.last_command.clone())
        };
        if !current {
            return;
        }
        self.shared.net.http.remove_host(&host);
        match last.as_deref() {
            // The agent's power_off/run_image: a ramdisk would power the machine off or reboot it.
            Some("standby.power_off") if result.is_ok() => {
                tokio::time::sleep(self.jittered(self.profile.timings.soft_off_secs)).await;
                let _ = self.machine.power_off().await;
            }
            Some("standby.run_image") if result.is_ok() => {
                let _ = self.machine.reset().await;
            }
            _ => {
                let why = match result {
                    Err(e) => e.to_string(),
                    Ok(()) => "agent stopped".into(),
                };
                let mut rt = self.rt.lock();
                rt.agent = None;
                rt.os = Os::Hung(why);
            }
        }
    }

    /// Checks a write of the current OS generation against the write rule and the crash fault.
    fn admit_write(&self, epoch: u64) -> Result<(), String> {
        if self.epoch() != epoch {
            return Err("device is gone (machine powered off)".into());
        }
        if self.crash_due(&AgentStep::Write) {
            self.crash_agent("write");
            return Err("agent crashed".into());
        }
        Ok(())
    }
}

/// The agent's disk, valid only while the OS that opened it runs.
struct GenDisk {
    node: Weak<SimNode>,
    epoch: u64,
}

impl GenDisk {
    fn node(&self) -> std::io::Result<Arc<SimNode>> {
        match self.node.upgrade() {
            Some(n) if n.epoch() == self.epoch => Ok(n),
            _ => Err(std::io::Error::other("device is gone (machine powered off)")),
        }
    }
}

#[async_trait]
impl BlockDevice for GenDisk {
    fn size(&self) -> u64 {
        self.node.upgrade().map(|n| n.disk.size()).unwrap_or(0)
    }
    async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        self.node()?.disk.read_at(offset, len).await
    }
    async fn write_at(&self, offset: u64, data: Bytes) -> std::io::Result<()> {
        let n = self.node()?;
        n.admit_write(self.epoch).map_err(std::io::Error::other)?;
        n.disk.write_at(offset, data).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let n = self.node()?;
        n.admit_write(self.epoch).map_err(std::io::Error::other)?;
        n.disk.write_zeroes(offset, len).await
    }
    async fn flush(&self) -> std::io::Result<()> {
        self.node()?.disk.flush().await
    }
}

/// The agent's network: the lab's in-process hosts, with this machine's faults applied and its
/// node-side trace events recorded.
struct MachineHttp {
    node: Weak<SimNode>,
    epoch: u64,
}

fn is_image_download(req: &HttpRequest) -> bool {
    let p = req.url.path();
    req.url.authority() == net::IMAGES_HOST
        && (p.starts_with(ferric_service::images::tempurl::PREFIX)
            || (p.starts_with("/v2/images/") && p.ends_with("/file")))
}

#[async_trait]
impl HttpClient for MachineHttp {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let gone = || HttpError::Connect("machine powered off".into());
        let node = self.node.upgrade().ok_or_else(gone)?;
        if node.epoch() != self.epoch {
            return Err(gone());
        }
        let path = req.url.path().to_string();
        let heartbeat = path.starts_with("/v1/heartbeat/");
        let lookup = path.starts_with("/v1/lookup");
        if heartbeat && node.faults.heartbeats_lost.load(Relaxed) {
            node.count(|c| c.heartbeats_dropped += 1);
            return Err(HttpError::Connect("heartbeat lost (simulated network fault)".into()));
        }
        let image = is_image_download(&req);
        if image {
            if node.crash_due(&AgentStep::Download) {
                node.crash_agent("download");
                return Err(gone());
            }
            if node.faults.image_server_down.load(Relaxed) || node.shared.images_down.load(Relaxed) {
                return Err(HttpError::Connect(format!("connection refused by {}", net::IMAGES_HOST)));
            }
            node.count(|c| c.downloads += 1);
        }
        let resp = node.shared.net.http.send(req).await?;
        if node.epoch() != self.epoch {
            return Err(gone());
        }
        let ok = resp.status.is_success();
        if ok && lookup && node.crash_due(&AgentStep::Lookup) {
            node.crash_agent("lookup");
            return Err(gone());
        }
        if ok && heartbeat && node.crash_due(&AgentStep::Heartbeat) {
            node.crash_agent("heartbeat");
            return Err(gone());
        }
        if !(image && ok) {
            return Ok(resp);
        }
        // Image bytes arrive at the machine's network speed, in pieces of a virtual second.
        let corrupt = node.faults.image_corrupt.load(Relaxed) || node.shared.images_corrupt.load(Relaxed);
        let t = &node.profile.timings;
        let piece = (t.net_bytes_per_sec / node.shared.scale.max(1)).clamp(512, 1 << 20) as usize;
        let delay = Duration::from_secs_f64(
            (piece as u64).saturating_mul(node.shared.scale) as f64 / t.net_bytes_per_sec.max(1) as f64,
        );
        let weak = Arc::downgrade(&node);
        let epoch = self.epoch;
        let mut flipped = false;
        let body = resp
            .body
            .flat_map(move |chunk| {
                let pieces: Vec<Result<Bytes, HttpError>> = match chunk {
                    Ok(mut b) => {
                        if corrupt && !flipped && !b.is_empty() {
                            let mut v = b.to_vec();
                            let i = v.len() / 2;
                            v[i] ^= 0x5a;
                            b = Bytes::from(v);
                            flipped = true;
                        }
                        let mut out = Vec::new();
                        while !b.is_empty() {
                            out.push(Ok(b.split_to(piece.min(b.len()))));
                        }
                        out
                    }
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(pieces)
            })
            .then(move |item| {
                let weak = weak.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    match weak.upgrade() {
                        Some(n) if n.epoch() == epoch => item,
                        _ => Err(HttpError::Connect("machine powered off".into())),
                    }
                }
            });
        Ok(HttpResponse { status: resp.status, headers: resp.headers, body: Box::pin(body) })
    }
}

#[derive(Clone)]
struct Observer {
    node: Weak<SimNode>,
    epoch: u64,
}

/// Sees the commands the conductor sends the agent (to act on `power_off`, and to crash at a
/// named command).
async fn observe_commands(
    axum::Extension(o): axum::Extension<Observer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_command =
        req.method() == http::Method::POST && req.uri().path().trim_end_matches('/').ends_with("/commands");
    if !is_command {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, ferric_agent::server::MAX_COMMAND_BODY).await {
        Ok(b) => b,
        Err(_) => return http::StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let name = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string));
    if let (Some(name), Some(node)) = (name, o.node.upgrade()) {
        if node.epoch() != o.epoch {
            return std::future::pending().await;
        }
        if node.crash_due(&AgentStep::Command(name.clone())) {
            node.crash_agent(&name);
            return std::future::pending().await;
        }
        node.rt.lock().last_command = Some(name);
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}
