//! A QEMU lab: VMs that PXE-boot from ferric, powered through virtual BMCs, deployed by the full
//! service (API, conductor, DHCP/TFTP/HTTP, image service, the real `ferric-agent` in the VM's
//! deploy ramdisk), inside a private network namespace that goes away with the lab.
//!
//! Used by `ferric lab deploy`, `ferric serve --qemu N` and the end-to-end VM tests. Addresses:
//! the bridge is 192.0.2.1 (API :6385, TFTP :69, HTTP boot :8080, BMCs :6230+i: IPMI on UDP,
//! Redfish over HTTPS on TCP), VMs lease 192.0.2.100-150; a VM booted by virtual media takes
//! 192.0.2.160+i statically (from its node's `network_data`: no DHCP).

use ferric_sim::netns::NetNs;
use ferric_sim::qemu::{
    AgentSource, BuildProgress, Disk, DiskBus, DiskFormat, Fixtures, Nic, NicModel, QemuConfig, QemuMachine, format_mac,
};
use ferric_sim::vbmc::{Bmc, BmcConfig, FaultSettings, Faults, Password, serve_udp};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferric_service::assemble::Service;
use ferric_service::config::Config;

/// The bridge's address: every service and BMC of the lab listens here.
pub const HOST: &str = "192.0.2.1";
/// The API as VMs and the lab's client reach it.
pub const API_URL: &str = "http://192.0.2.1:6385";
const BMC_BASE_PORT: u16 = 6230;
const BMC_USER: &str = "admin";
/// A lab-only password for lab-only BMCs inside a private namespace.
const BMC_PASSWORD: &str = "ferric-lab";
/// Printed on the serial console by the test instance images once they booted from disk.
pub const INSTANCE_MARKER: &str = "FERRIC-INSTANCE-BOOTED";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("vm-fixtures: {0}")]
    Fixtures(String),
    #[error("network namespace: {0}")]
    Netns(String),
    #[error("QEMU: {0}")]
    Qemu(String),
    #[error("service: {0}")]
    Service(String),
    #[error("API: {0}")]
    Api(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out: {0}")]
    Timeout(String),
}

/// What a lab has.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub vms: usize,
    /// State: the service's data directory, VM disks, serial logs. Keep it short (QMP sockets).
    pub dir: PathBuf,
    pub memory_mib: u32,
    /// `[conductor] deploy_callback_timeout`: how long a ramdisk may take to call back.
    pub callback_timeout_secs: u64,
    /// Size of each VM's (sparse) disk.
    pub disk_mib: u64,
    /// What the fixture build shows: the lab CLI shows its progress (the first build of the
    /// ramdisk's agent takes minutes), tests keep quiet.
    pub fixture_progress: BuildProgress,
}

impl LabOptions {
    pub fn new(vms: usize, dir: impl Into<PathBuf>) -> LabOptions {
        LabOptions {
            vms,
            dir: dir.into(),
            memory_mib: 512,
            callback_timeout_secs: 180,
            disk_mib: 64,
            fixture_progress: BuildProgress::Quiet,
        }
    }
}

/// One VM of the lab and the BMC in front of it.
pub struct LabVm {
    pub name: String,
    pub mac: [u8; 6],
    pub bmc_port: u16,
    pub disk: PathBuf,
    pub machine: Arc<QemuMachine>,
}

impl LabVm {
    pub fn mac_string(&self) -> String {
        format_mac(self.mac)
    }
}

/// How ferric reaches a VM's BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BmcKind {
    /// The `ipmi` hardware type (IPMI 2.0 over UDP).
    #[default]
    Ipmi,
    /// The `redfish` hardware type (Redfish over HTTPS, certificate checked against the BMC's).
    Redfish,
}

/// How a VM boots the deploy ramdisk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BootKind {
    /// iPXE from ferric's DHCP, TFTP and HTTP (`ipxe` boot interface).
    #[default]
    Pxe,
    /// The deploy ISO in the VM's virtual CD drive (`redfish-virtual-media`; needs `--bmc
    /// redfish`).
    VirtualMedia,
}

/// Which deploy interface a deploy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flow {
    Direct,
    Iscsi,
}

impl Flow {
    pub fn interface(self) -> &'static str {
        match self {
            Flow::Direct => "direct",
            Flow::Iscsi => "iscsi",
        }
    }
}

/// Wall-clock phases of one deploy, in seconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeployTimings {
    pub node: String,
    pub flow: String,
    /// `deploy` requested → `active`.
    pub to_active: f64,
    /// `deploy` requested → the instance's marker on the serial console.
    pub to_marker: f64,
}

/// A running lab. Dropping it stops the service, the BMCs and the VMs and removes the namespace.
pub struct QemuLab {
    pub fixtures: Fixtures,
    /// The Redfish BMCs' certificate (PEM file): nodes check it through `redfish_verify_ca`.
    pub redfish_ca: PathBuf,
    pub vms: Vec<LabVm>,
    pub http: reqwest::Client,
    pub dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    rt: Option<tokio::runtime::Runtime>,
    // Declared last: dropped after the VMs and the runtime, it kills anything left inside.
    ns: NetNs,
}

impl Drop for QemuLab {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.vms.clear();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn lab_config(opts: &LabOptions) -> String {
    format!(
        r#"
data_dir = "{data}"
[api]
bind = "{HOST}:6385"
public_url = "{API_URL}"
[conductor]
deploy_callback_timeout = {cb}
check_timeouts_interval = 2
agent_heartbeat_timeout = 20
[agent]
soft_power_off_timeout = 30
[pxe]
tftp_bind = "{HOST}:69"
http_bind = "{HOST}:8080"
http_url = "http://{HOST}:8080"
kernel_append_params = "console=ttyS0"
[dhcp]
bind = "0.0.0.0:67"
interface = "br0"
range = "192.0.2.100,192.0.2.150"
server_id = "{HOST}"
router = "{HOST}"
ra = true
ra_prefix = "2001:db8::/64"
# The API listens on the lab's bridge inside its own network namespace: only the lab's VMs (and
# the loopback forward to the host) reach it.
[auth]
insecure_noauth = true
"#,
        data = opts.dir.join("data").display(),
        cb = opts.callback_timeout_secs,
    )
}

impl QemuLab {
    /// Builds the fixtures (with a static `ferric-agent` in the ramdisk), creates the namespace,
    /// the VMs and their BMCs, starts ferric on the bridge and uploads the test images.
    /// Blocking: call it off any async runtime (or from `spawn_blocking`).
    pub fn start(opts: LabOptions) -> Result<QemuLab, LabError> {
        std::fs::create_dir_all(&opts.dir)?;
        let builder = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // FERRIC_LAB_AGENT: a static ferric-agent already built (skips the release build while
        // iterating on the service; the ramdisk must still get an agent).
        let agent = match std::env::var_os("FERRIC_LAB_AGENT") {
            Some(p) => AgentSource::Path(p.into()),
            None => AgentSource::Build,
        };
        let fixtures = builder
            .block_on(Fixtures::build_with(agent, opts.fixture_progress))
            .map_err(|e| LabError::Fixtures(e.to_string()))?;
        drop(builder);
        let ns = NetNs::create().map_err(|e| LabError::Netns(e.to_string()))?;
        let rt = ns.runtime().map_err(|e| LabError::Netns(e.to_string()))?;
        let mut vms = Vec::new();
        for i in 0..opts.vms {
            let tap = ns.add_tap().map_err(|e| LabError::Netns(e.to_string()))?;
            let name = format!("vm{i}");
            let mac = [0x52, 0x54, 0x00, 0xfe, 0x10, i as u8];
            let disk = opts.dir.join(format!("{name}.raw"));
            std::fs::File::create(&disk)?.set_len(opts.disk_mib << 20)?;
            let mut config = QemuConfig::new(&name, opts.dir.join(&name));
            config.netns = Some(ns.handle());
            config.memory_mib = opts.memory_mib;
            config.disk = Some(Disk { path: disk.clone(), format: DiskFormat::Raw, bus: DiskBus::Virtio });
            config.nics = vec![Nic { mac, model: NicModel::VirtioNet, tap: Some(tap) }];
            config.default_boot = ferric_sim::machine::BootDevice::Disk;
            // A CD drive for virtual media; last in the boot order unless a BMC picks it.
            config.cdrom = true;
            let machine = Arc::new(QemuMachine::new(config).map_err(|e| LabError::Qemu(e.to_string()))?);
            vms.push(LabVm { name, mac, bmc_port: BMC_BASE_PORT + i as u16, disk, machine });
        }
        let bmc_config =
            BmcConfig { username: BMC_USER.into(), password: Password(BMC_PASSWORD.into()), ..BmcConfig::default() };
        for vm in &vms {
            let bmc = Bmc::new(
                format!("{}-bmc", vm.name),
                bmc_config.clone(),
                vm.machine.clone(),
                Arc::new(Faults::new(FaultSettings::default())),
            )
            .map_err(|e| LabError::Qemu(e.to_string()))?;
            let addr = format!("{HOST}:{}", vm.bmc_port);
            let socket = rt
                .block_on(rt.spawn(async move { tokio::net::UdpSocket::bind(addr).await }))
                .map_err(|e| LabError::Netns(e.to_string()))??;
            rt.spawn(serve_udp(bmc, socket));
        }
        // Redfish beside IPMI on each BMC port (TCP), over HTTPS with one self-signed
        // certificate the nodes are told to trust.
        let (tls, pem) = ferric_sim::redfish::self_signed_tls(&[HOST.to_string()])
            .map_err(|e| LabError::Qemu(format!("Redfish certificate: {e}")))?;
        let redfish_ca = opts.dir.join("redfish-ca.pem");
        std::fs::write(&redfish_ca, pem)?;
        for (i, vm) in vms.iter().enumerate() {
            let bmc = ferric_sim::redfish::RedfishBmc::new(
                ferric_sim::redfish::RedfishConfig {
                    username: BMC_USER.into(),
                    password: BMC_PASSWORD.into(),
                    seed: i as u64 + 1,
                    // SeaBIOS has no UEFI HTTP boot: the BMC does not offer it.
                    uefi_http: false,
                    ..Default::default()
                },
                vm.machine.clone(),
            );
            let addr = format!("{HOST}:{}", vm.bmc_port);
            let listener = rt
                .block_on(rt.spawn(async move { tokio::net::TcpListener::bind(addr).await }))
                .map_err(|e| LabError::Netns(e.to_string()))??;
            rt.spawn(ferric_sim::redfish::serve(listener, bmc, Some(tls.clone())));
        }
        let config_path = opts.dir.join("ferric.toml");
        std::fs::write(&config_path, lab_config(&opts))?;
        let config = Config::load(Some(&config_path)).map_err(|e| LabError::Service(e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let started = rt.block_on(rt.spawn(async move {
            let service = Service::open(config).map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                if let Err(e) = service.serve(async move { drop(rx.await) }).await {
                    tracing::error!(error = %e, "lab service stopped");
                }
            });
            Ok::<(), String>(())
        }));
        started.map_err(|e| LabError::Service(e.to_string()))?.map_err(LabError::Service)?;
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("X-OpenStack-Ironic-API-Version", reqwest::header::HeaderValue::from_static("latest"));
        let http = reqwest::Client::builder().default_headers(h).build().map_err(|e| LabError::Api(e.to_string()))?;
        let lab =
            QemuLab { fixtures, redfish_ca, vms, http, dir: opts.dir.clone(), shutdown: Some(tx), rt: Some(rt), ns };
        lab.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            while lab.http.get(API_URL).send().await.is_err() {
                if Instant::now() > deadline {
                    return Err(LabError::Timeout("ferric's API did not come up".into()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        })?;
        Ok(lab)
    }

    /// Runs `fut` on the lab's runtime, inside the namespace (where 192.0.2.1 is), and waits.
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let rt = self.rt.as_ref().expect("runtime lives as long as the lab");
        // The future borrows the lab: run it on a scoped thread entered into the namespace.
        let handle = rt.handle().clone();
        let ns = self.ns.handle();
        std::thread::scope(|s| {
            s.spawn(move || {
                if let Err(e) = ns.enter_current_thread() {
                    tracing::error!(error = %e, "cannot enter the lab's namespace");
                }
                handle.block_on(fut)
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// The namespace, for running peers (curl, ipmitool) inside it.
    pub fn netns(&self) -> &NetNs {
        &self.ns
    }

    /// One API call; `(status, body)`.
    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), LabError> {
        let mut r = self.http.request(method, format!("{API_URL}{path}"));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.map_err(|e| LabError::Api(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| LabError::Api(e.to_string()))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> Result<Value, LabError> {
        let (s, b) = self.req(method.clone(), path, body).await?;
        if s != want {
            return Err(LabError::Api(format!("{method} {path}: {s} {b}")));
        }
        Ok(b)
    }

    /// Uploads a file to the image service; returns the image's UUID.
    pub async fn upload(&self, name: &str, path: &Path, disk_format: &str) -> Result<String, LabError> {
        let img = self
            .expect(
                reqwest::Method::POST,
                "/v2/images",
                Some(json!({"name": name, "disk_format": disk_format, "container_format": "bare"})),
                201,
            )
            .await?;
        let id = img["id"].as_str().unwrap_or_default().to_string();
        let data = tokio::fs::read(path).await?;
        let r = self
            .http
            .put(format!("{API_URL}/v2/images/{id}/file"))
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .map_err(|e| LabError::Api(e.to_string()))?;
        if !r.status().is_success() {
            return Err(LabError::Api(format!("upload {name}: {}", r.status())));
        }
        Ok(id)
    }

    /// Enrolls VM `i` (ipmi hardware type through its BMC, iPXE boot, the given deploy
    /// interface), and brings it to `available`. `extra_driver_info` is merged in.
    pub async fn enroll(&self, i: usize, flow: Flow, extra_driver_info: Value) -> Result<String, LabError> {
        self.enroll_with(i, flow, BmcKind::Ipmi, BootKind::Pxe, extra_driver_info).await
    }

    /// Enrolls VM `i` through its `bmc` (the `ipmi` or `redfish` hardware type), booting the
    /// ramdisk by `boot`, and brings it to `available`. With virtual media the node's
    /// `network_data` gives the ramdisk a static address (192.0.2.160+i): no DHCP, no TFTP.
    pub async fn enroll_with(
        &self,
        i: usize,
        flow: Flow,
        bmc: BmcKind,
        boot: BootKind,
        extra_driver_info: Value,
    ) -> Result<String, LabError> {
        let vm = &self.vms[i];
        let file = |p: &Path| format!("file://{}", p.display());
        let (driver, mut info) = match bmc {
            BmcKind::Ipmi => (
                "ipmi",
                json!({
                    "ipmi_address": HOST,
                    "ipmi_port": vm.bmc_port,
                    "ipmi_username": BMC_USER,
                    "ipmi_password": BMC_PASSWORD,
                }),
            ),
            BmcKind::Redfish => (
                "redfish",
                json!({
                    "redfish_address": format!("https://{HOST}:{}", vm.bmc_port),
                    "redfish_username": BMC_USER,
                    "redfish_password": BMC_PASSWORD,
                    "redfish_verify_ca": self.redfish_ca.display().to_string(),
                }),
            ),
        };
        if let Some(m) = info.as_object_mut() {
            m.insert("deploy_kernel".into(), json!(file(&self.fixtures.deploy_kernel)));
            m.insert("deploy_ramdisk".into(), json!(file(&self.fixtures.deploy_ramdisk)));
            if let Value::Object(extra) = extra_driver_info {
                m.extend(extra);
            }
        }
        let mut body = json!({
            "name": vm.name,
            "driver": driver,
            "driver_info": info,
            "boot_interface": "ipxe",
            "deploy_interface": flow.interface(),
            "network_interface": "flat",
            "automated_clean": false,
            "properties": {"memory_mb": 512, "cpus": 1, "local_gb": 1, "cpu_arch": "x86_64"},
        });
        if boot == BootKind::VirtualMedia {
            body["boot_interface"] = json!("redfish-virtual-media");
            body["network_data"] = json!({
                "links": [{"id": "port0", "type": "phy", "ethernet_mac_address": vm.mac_string()}],
                "networks": [{
                    "id": "provisioning", "type": "ipv4", "link": "port0",
                    "ip_address": format!("192.0.2.{}", 160 + i), "netmask": "255.255.255.0",
                    "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": HOST}],
                }],
                "services": [],
            });
        }
        let node = self.expect(reqwest::Method::POST, "/v1/nodes", Some(body), 201).await?;
        let id = node["uuid"].as_str().unwrap_or_default().to_string();
        self.expect(
            reqwest::Method::POST,
            "/v1/ports",
            Some(json!({"node_uuid": id, "address": vm.mac_string(), "pxe_enabled": true})),
            201,
        )
        .await?;
        self.provision(&id, json!({"target": "manage"})).await?;
        self.wait_state(&id, "manageable", Duration::from_secs(60)).await?;
        self.provision(&id, json!({"target": "provide"})).await?;
        self.wait_state(&id, "available", Duration::from_secs(60)).await?;
        Ok(id)
    }

    pub async fn node(&self, id: &str) -> Result<Value, LabError> {
        self.expect(reqwest::Method::GET, &format!("/v1/nodes/{id}"), None, 200).await
    }

    pub async fn provision(&self, id: &str, body: Value) -> Result<(), LabError> {
        self.expect(reqwest::Method::PUT, &format!("/v1/nodes/{id}/states/provision"), Some(body), 202).await?;
        Ok(())
    }

    pub async fn patch(&self, id: &str, ops: Value) -> Result<Value, LabError> {
        self.expect(reqwest::Method::PATCH, &format!("/v1/nodes/{id}"), Some(ops), 200).await
    }

    /// Waits until the node rests in `state` (unlocked); fails early when it rests in a failure
    /// state instead.
    pub async fn wait_state(&self, id: &str, state: &str, limit: Duration) -> Result<Value, LabError> {
        let deadline = Instant::now() + limit;
        loop {
            let n = self.node(id).await?;
            let now = n["provision_state"].as_str().unwrap_or_default().to_string();
            // A failure state keeps its target (`deploy failed` → `active`): unlocked is enough.
            let resting = n["reservation"].is_null()
                && (n["target_provision_state"].is_null() || now.ends_with("failed") || now == "error");
            if now == state && resting {
                return Ok(n);
            }
            let failed = ["deploy failed", "clean failed", "error", "inspect failed"].contains(&now.as_str());
            if failed && n["reservation"].is_null() && state != now {
                return Err(LabError::Api(format!("{id} ended in {now}: {}", n["last_error"])));
            }
            if Instant::now() > deadline {
                return Err(LabError::Timeout(format!("{id} never reached {state}: now {now}, {}", n["last_error"])));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deploys `image` (an image service UUID) on VM `i`'s node by `flow`; returns when the node is
    /// `active` and the VM printed the instance's marker after booting from its disk.
    pub async fn deploy(&self, i: usize, id: &str, image: &str, flow: Flow) -> Result<DeployTimings, LabError> {
        let vm = &self.vms[i];
        // What Nova does, in the seed's order: instance_info, validate, plug VIFs, deploy.
        self.patch(id, json!([{"op": "add", "path": "/instance_info/image_source", "value": image}])).await?;
        let v = self.expect(reqwest::Method::GET, &format!("/v1/nodes/{id}/validate"), None, 200).await?;
        for iface in ["power", "deploy", "boot"] {
            if v[iface]["result"] != json!(true) {
                return Err(LabError::Api(format!("{} validation failed: {}", iface, v[iface]["reason"])));
            }
        }
        let vif = json!({"id": format!("vif-{}", vm.name)});
        self.expect(reqwest::Method::POST, &format!("/v1/nodes/{id}/vifs"), Some(vif), 204).await?;
        let from = vm.machine.serial().position();
        let t = Instant::now();
        self.provision(id, json!({"target": "active"})).await?;
        self.wait_state(id, "active", Duration::from_secs(600)).await?;
        let to_active = t.elapsed().as_secs_f64();
        vm.machine
            .wait_for_serial(INSTANCE_MARKER, from, Duration::from_secs(180))
            .await
            .map_err(|e| LabError::Timeout(format!("{}: {e}; serial: {}", vm.name, vm.machine.serial().tail(2000))))?;
        Ok(DeployTimings {
            node: vm.name.clone(),
            flow: flow.interface().into(),
            to_active,
            to_marker: t.elapsed().as_secs_f64(),
        })
    }

    /// The node's trace (the seed's messages), in seconds from its latest "set instance_info":
    /// `(seconds, from, to, label)`.
    pub async fn steps(&self, id: &str) -> Result<Vec<(f64, String, String, String)>, LabError> {
        let t = self.expect(reqwest::Method::GET, &format!("/ferric/trace/{id}"), None, 200).await?;
        let events: Vec<(u64, String, String, String)> = t["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                        (e["at_ms"].as_u64().unwrap_or(0), s("from"), s("to"), s("label"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let start = events.iter().rposition(|e| e.3 == ferric_types::trace::seed::SET_INSTANCE_INFO).unwrap_or(0);
        let base = events.get(start).map_or(0, |e| e.0);
        Ok(events[start..]
            .iter()
            .map(|(at, f, t, l)| (at.saturating_sub(base) as f64 / 1000.0, f.clone(), t.clone(), l.clone()))
            .collect())
    }

    /// Forwards TCP connections to `host_addr` (bound here, outside the namespace) to the API
    /// inside it, so clients on the host (`baremetal`) reach the lab. Returns the bound address.
    pub fn forward_api(&self, host_addr: std::net::SocketAddr) -> Result<std::net::SocketAddr, LabError> {
        let listener = std::net::TcpListener::bind(host_addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = self.rt.as_ref().expect("runtime lives as long as the lab");
        rt.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!(error = %e, "API forwarder"),
            };
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // Connected from a runtime thread, so inside the namespace.
                    if let Ok(mut api) = tokio::net::TcpStream::connect((HOST, 6385)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut api).await;
                    }
                });
            }
        });
        Ok(addr)
    }
}
