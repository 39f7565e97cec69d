//! The `pxe` and `ipxe` boot interfaces called through real tasks of a built service: configs and
//! image links appear in the boot roots and go away, DHCP host entries (in the database, answered
//! by the real DHCP handler) appear on prepare and disappear on clean-up, each step is traced in
//! the seed's order. Deploy kernels/ramdisks come from a local HTTP server and file:// URLs.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use dhcproto::v4::{Architecture, DhcpOption, MessageType, OptionCode};
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::Config;
use ferric_service::db::Db;
use ferric_service::drivers::pxe_boot::{self, BootEnv, ImageResolver, ResolvedImage, UrlResolver};
use ferric_service::drivers::{DriverError, Task};
use ferric_service::network::dhcp::{BootPurpose, DbDhcp};
use ferric_service::pxe::cache::Checksum;
use ferric_service::pxe::config::{DeployBoot, NetBoot, ipxe_deploy, pxelinux_netboot};
use ferric_service::pxe::dhcp::handler::{client_message, decode};
use ferric_service::pxe::dhcp::{DhcpConfig, DhcpHandler, HostTable};
use ferric_service::pxe::settings::PxeSettings;
use ferric_types::clock::Clock;
use ferric_types::models::{MacAddr, Node, NodeId, Port, PortId, ProvisionState};
use ferric_types::trace::Recorder;
use serde_json::json;

const API: &str = "http://192.0.2.1:6385";
const HTTP_URL: &str = "http://192.0.2.1:8080";
const KERNEL: &[u8] = b"deploy kernel bytes";
const RAMDISK: &[u8] = b"deploy ramdisk bytes, a little longer";
const NOW: u64 = 1_700_000_000;

struct Lab {
    dir: tempfile::TempDir,
    db: Db,
    service: Service,
    env: Arc<BootEnv>,
    images: SocketAddr,
    _server: tokio::task::JoinHandle<()>,
}

/// Serves the deploy kernel and ramdisk on loopback.
async fn image_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route("/deploy.kernel", axum::routing::get(|| async { KERNEL }))
        .route("/deploy.initrd", axum::routing::get(|| async { RAMDISK }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (addr, tokio::spawn(async move { axum::serve(l, app).await.unwrap() }))
}

async fn lab_with(resolver: Arc<dyn ImageResolver>) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_in_memory().unwrap();
    let settings = PxeSettings {
        http_url: Some(HTTP_URL.into()),
        install_loaders: false,
        kernel_append_params: "console=ttyS0".into(),
        ..Default::default()
    };
    let env = Arc::new(
        BootEnv::open(&settings, dir.path(), API.into(), Arc::new(DbDhcp::new(db.clone())), resolver).unwrap(),
    );
    let e = env.clone();
    let service = Service::build(
        Config::default(),
        db.clone(),
        Outside::real(Clock::system()).unwrap(),
        Recorder::default(),
        move |p| {
            pxe_boot::register(&mut p.registry);
            p.env.boot = Some(e);
        },
    )
    .unwrap();
    let (images, server) = image_server().await;
    Lab { dir, db, service, env, images, _server: server }
}

async fn lab() -> Lab {
    lab_with(Arc::new(UrlResolver::new())).await
}

/// A MAC no other port of this test process has.
fn fresh_mac() -> MacAddr {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_be_bytes();
    MacAddr([0x52, 0x54, 0x00, 0x12, n[0], n[1]])
}

impl Lab {
    fn tftp(&self) -> PathBuf {
        self.dir.path().join("tftp")
    }
    fn http(&self) -> PathBuf {
        self.dir.path().join("httpboot")
    }
    fn url(&self, p: &str) -> String {
        format!("http://{}/{p}", self.images)
    }

    /// A fake-hardware node in `deploying` with the given boot interface, the flat network, a
    /// PXE-enabled port and one that is not.
    fn node(&self, boot: &str, instance_info: serde_json::Value) -> NodeId {
        let mut n = Node {
            uuid: NodeId(uuid::Uuid::new_v4()),
            driver: "fake-hardware".into(),
            boot_interface: boot.into(),
            network_interface: "flat".into(),
            provision_state: ProvisionState::Deploying,
            ..Default::default()
        };
        n.driver_info.insert("deploy_kernel".into(), self.url("deploy.kernel").into());
        n.driver_info.insert("deploy_ramdisk".into(), self.url("deploy.initrd").into());
        n.instance_info = instance_info.as_object().unwrap().clone();
        self.service.conductor.registry().resolve_node_interfaces(&mut n).unwrap();
        self.db.create_node(&n).unwrap();
        for pxe in [true, false] {
            let p = Port {
                uuid: PortId(uuid::Uuid::new_v4()),
                address: fresh_mac(),
                node_uuid: n.uuid,
                pxe_enabled: pxe,
                ..Default::default()
            };
            self.db.create_port(&p).unwrap();
        }
        n.uuid
    }

    fn task(&self, id: NodeId) -> Task {
        let node = self.db.get_node_by_uuid(id).unwrap();
        let driver = self.service.conductor.registry().interfaces_for(&node).unwrap();
        let ports = self.db.node_ports(id).unwrap();
        Task { node, ports, driver, env: self.service.conductor.env().clone() }
    }

    fn save(&self, t: &Task) {
        self.db.update_node(&t.node).unwrap();
        self.db.update_ports(&t.ports).unwrap();
    }

    fn handler(&self) -> DhcpHandler {
        let d = Arc::new(DbDhcp::new(self.db.clone()));
        let cfg = DhcpConfig::new(
            Ipv4Addr::new(192, 0, 2, 1),
            (Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 199)),
            self.env.layout.ipxe_script_url_template(),
        );
        DhcpHandler::new(cfg, d.clone(), d)
    }
}

fn pxe_mac(t: &Task) -> ferric_service::pxe::MacAddr {
    ferric_service::pxe::MacAddr(t.ports.iter().find(|p| p.pxe_enabled).unwrap().address.0)
}
fn other_mac(t: &Task) -> ferric_service::pxe::MacAddr {
    ferric_service::pxe::MacAddr(t.ports.iter().find(|p| !p.pxe_enabled).unwrap().address.0)
}

/// The boot file a DISCOVER from `m` is offered (BIOS firmware, or iPXE), if answered.
fn offered(h: &DhcpHandler, m: ferric_service::pxe::MacAddr, ipxe: bool) -> Option<String> {
    let opts = if ipxe {
        vec![DhcpOption::UserClass(b"iPXE".to_vec())]
    } else {
        vec![
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
            DhcpOption::ClientSystemArchitecture(Architecture::X86_Bios),
        ]
    };
    let r = h.handle(&client_message(MessageType::Discover, m, 7, opts), NOW)?;
    let msg = decode(&r.bytes).unwrap();
    assert_eq!(msg.opts().msg_type(), Some(MessageType::Offer));
    match msg.opts().get(OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(b)) => Some(String::from_utf8(b.clone()).unwrap()),
        _ => None,
    }
}

fn same_file(a: &Path, b: &[u8]) {
    assert_eq!(std::fs::read(a).unwrap(), b, "{}", a.display());
}

#[tokio::test]
async fn ipxe_deploy_ramdisk_then_local_boot() {
    let lab = lab().await;
    let id = lab.node("ipxe", json!({"image_source": "http://192.0.2.9/disk.img"}));
    let node = id.to_string();
    let mut t = lab.task(id);
    t.driver.boot.validate(&t).unwrap();
    let (pm, om) = (pxe_mac(&t), other_mac(&t));
    let h = lab.handler();
    assert_eq!(offered(&h, pm, true), None, "not served before provisioning");

    let net = t.driver.network.clone();
    net.add_provisioning_network(&mut t).await.unwrap();
    let boot = t.driver.boot.clone();
    boot.prepare_ramdisk(&mut t).await.unwrap();
    lab.save(&t);

    // The script, its per-MAC link, and the cached images hard-linked into the HTTP root.
    let script = std::fs::read_to_string(lab.http().join(&node).join("config")).unwrap();
    let expected = ipxe_deploy(&DeployBoot {
        node: node.clone(),
        boot_mac: pm,
        api_url: API.into(),
        kernel: format!("{HTTP_URL}/{node}/deploy_kernel"),
        ramdisk: format!("{HTTP_URL}/{node}/deploy_ramdisk"),
        kernel_args: "console=ttyS0".into(),
    })
    .unwrap();
    assert_eq!(script, expected);
    assert!(script.contains(&format!("ipa-api-url={API} ferric-api-url={API}")));
    assert!(script.contains(&format!("BOOTIF={}", pm.pxelinux_name())));
    assert!(script.contains(&node));
    assert_eq!(std::fs::read_to_string(lab.http().join("pxelinux.cfg").join(pm.hexhyp())).unwrap(), expected);
    assert!(!lab.http().join("pxelinux.cfg").join(om.hexhyp()).exists());
    let k = lab.http().join(&node).join("deploy_kernel");
    same_file(&k, KERNEL);
    same_file(&lab.http().join(&node).join("deploy_ramdisk"), RAMDISK);
    assert_eq!(std::fs::metadata(&k).unwrap().nlink(), 2, "hard link into the image cache");
    assert!(!lab.tftp().join(&node).exists(), "iPXE files live in the HTTP root only");

    // DHCP: the PXE port is answered (iPXE gets its script URL, BIOS firmware undionly.kpxe);
    // the other port is not.
    assert_eq!(offered(&h, pm, true), Some(format!("{HTTP_URL}/pxelinux.cfg/{}", pm.hexhyp())));
    assert_eq!(offered(&h, pm, false).as_deref(), Some("undionly.kpxe"));
    assert_eq!(offered(&h, om, true), None);
    assert_eq!(lab.db.list_dhcp_addresses().unwrap().len(), 1, "lease persisted");
    let opts = lab.env.dhcp.node_dhcp(id).unwrap();
    assert_eq!(opts.len(), 1);
    assert_eq!(opts[0].purpose, BootPurpose::Ramdisk);

    // Local boot: configs and DHCP options go.
    assert!(!pxe_boot::is_netboot(&t.node));
    boot.prepare_instance(&mut t).await.unwrap();
    lab.save(&t);
    assert!(!lab.http().join(&node).join("config").exists());
    assert!(!lab.http().join("pxelinux.cfg").join(pm.hexhyp()).exists());
    assert!(lab.env.dhcp.node_dhcp(id).unwrap().is_empty());
    // Still on the provisioning network until the network interface detaches it.
    assert!(offered(&h, pm, true).is_some());
    net.remove_provisioning_network(&mut t).await.unwrap();
    lab.save(&t);
    assert_eq!(offered(&h, pm, true), None);
    assert_eq!(DbDhcp::new(lab.db.clone()).lookup(&pm), None);

    boot.clean_up_ramdisk(&mut t).await.unwrap();
    assert!(!lab.http().join(&node).exists(), "node directory removed");
    // The deploy interface records the seed's messages; the boot interface records none.
    assert!(lab.service.api.trace.node_events(id).is_empty());
}

#[tokio::test]
async fn pxe_netboot_of_a_partition_image() {
    let lab = lab().await;
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("vmlinuz"), b"instance kernel").unwrap();
    std::fs::write(src.path().join("initrd"), b"instance ramdisk").unwrap();
    let file = |n: &str| format!("file://{}", src.path().join(n).display());
    let id = lab.node(
        "pxe",
        json!({
            "image_source": "http://192.0.2.9/root.img",
            "kernel": file("vmlinuz"),
            "ramdisk": file("initrd"),
            "capabilities": {"boot_option": "netboot"},
        }),
    );
    let node = id.to_string();
    let mut t = lab.task(id);
    t.driver.boot.validate(&t).unwrap();
    let pm = pxe_mac(&t);
    let boot = t.driver.boot.clone();
    boot.prepare_ramdisk(&mut t).await.unwrap();
    lab.save(&t);

    // pxelinux: everything in the TFTP root, instance kernel/ramdisk cached too while deploying.
    let dir = lab.tftp().join(&node);
    let cfg = std::fs::read_to_string(dir.join("config")).unwrap();
    assert!(cfg.starts_with("default deploy\n"), "{cfg}");
    assert!(cfg.contains(&format!(
        "kernel {node}/deploy_kernel\nappend initrd={node}/deploy_ramdisk console=ttyS0 ipa-api-url={API}"
    )));
    assert_eq!(std::fs::read_to_string(lab.tftp().join("pxelinux.cfg").join(pm.pxelinux_name())).unwrap(), cfg);
    same_file(&dir.join("deploy_kernel"), KERNEL);
    same_file(&dir.join("kernel"), b"instance kernel");
    same_file(&dir.join("ramdisk"), b"instance ramdisk");
    let h = lab.handler();
    assert_eq!(offered(&h, pm, false).as_deref(), Some("pxelinux.0"), "no flat network: served by its boot options");

    // Netboot needs the root partition's UUID from the deploy.
    let e = boot.prepare_instance(&mut t).await.unwrap_err();
    assert!(e.to_string().contains("root_uuid_or_disk_id"), "{e}");
    let root = "0a5c7b2e-7f4e-4c3e-9d1a-4f6b2f0c9e11";
    t.node.driver_internal_info.insert("root_uuid_or_disk_id".into(), root.into());
    boot.prepare_instance(&mut t).await.unwrap();
    lab.save(&t);
    let expected = pxelinux_netboot(&NetBoot {
        node: node.clone(),
        kernel: format!("{node}/kernel"),
        ramdisk: format!("{node}/ramdisk"),
        root_uuid: root.into(),
        kernel_args: "console=ttyS0".into(),
    })
    .unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("config")).unwrap(), expected);
    assert!(expected.contains(&format!("root=UUID={root}")));
    assert!(pxe_boot::is_netboot(&t.node));
    assert_eq!(lab.env.dhcp.node_dhcp(id).unwrap()[0].purpose, BootPurpose::Instance);

    // Leaving the provisioning network keeps an instance's netboot options.
    let net = t.driver.network.clone();
    net.remove_provisioning_network(&mut t).await.unwrap();
    lab.save(&t);
    assert_eq!(offered(&h, pm, false).as_deref(), Some("pxelinux.0"));

    // Cleaning up the ramdisk after that leaves the instance's netboot in place.
    boot.clean_up_ramdisk(&mut t).await.unwrap();
    assert!(!dir.join("deploy_kernel").exists());
    assert_eq!(std::fs::read_to_string(dir.join("config")).unwrap(), expected);
    assert_eq!(offered(&h, pm, false).as_deref(), Some("pxelinux.0"));

    // Tear-down: nothing left.
    boot.clean_up_instance(&mut t).await.unwrap();
    assert!(!dir.exists());
    assert!(!lab.tftp().join("pxelinux.cfg").join(pm.pxelinux_name()).exists());
    assert_eq!(offered(&h, pm, false), None);
    assert!(lab.env.dhcp.node_dhcp(id).unwrap().is_empty());
}

#[tokio::test]
async fn validation_errors() {
    let lab = lab().await;
    let check = |id: NodeId, f: &dyn Fn(&mut Task), want: &str| {
        let mut t = lab.task(id);
        f(&mut t);
        let e = t.driver.boot.validate(&t).unwrap_err();
        assert!(e.to_string().contains(want), "{e} !~ {want}");
        e
    };
    let id = lab.node("ipxe", json!({"image_source": "http://192.0.2.9/disk.img"}));
    let e = check(
        id,
        &|t| {
            t.node.driver_info.remove("deploy_ramdisk");
        },
        "Missing are: ['deploy_ramdisk']",
    );
    assert!(matches!(e, DriverError::MissingParameter(_)));
    check(
        id,
        &|t| {
            t.node.driver_info.insert("deploy_kernel".into(), json!(5));
        },
        "driver_info/deploy_kernel must be a string",
    );
    check(
        id,
        &|t| {
            t.node.driver_info.insert("deploy_kernel".into(), "ftp://192.0.2.9/k".into());
        },
        "unsupported scheme ftp",
    );
    check(
        id,
        &|t| {
            t.node.driver_info.insert("deploy_kernel".into(), "3f1b2c4e-0b1a-4b8e-9b6a-5f8e2d9c1a77".into());
        },
        "no image service is configured",
    );
    check(
        id,
        &|t| {
            for p in &mut t.ports {
                p.pxe_enabled = false;
            }
        },
        "does not have any port associated with it",
    );
    check(
        id,
        &|t| {
            t.node.instance_info.clear();
        },
        "Missing are: ['image_source']",
    );
    check(
        id,
        &|t| {
            t.node.instance_info.insert("boot_option".into(), "netboot".into());
            t.node.instance_info.insert("kernel".into(), "http://192.0.2.9/k".into());
        },
        "missing the following properties: kernel, ramdisk",
    );
    check(
        id,
        &|t| {
            t.node.instance_info.insert("boot_option".into(), "kexec".into());
        },
        "Invalid boot_option",
    );

    // Failing prepare changes nothing it cannot clean up.
    let mut t = lab.task(id);
    t.node.driver_info.remove("deploy_kernel");
    let boot = t.driver.boot.clone();
    assert!(matches!(boot.prepare_ramdisk(&mut t).await, Err(DriverError::MissingParameter(_))));
    assert!(lab.env.dhcp.node_dhcp(id).unwrap().is_empty());
    assert!(!lab.http().join(id.to_string()).exists());
}

#[tokio::test]
async fn ipxe_needs_an_http_url() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_in_memory().unwrap();
    let settings = PxeSettings { install_loaders: false, ..Default::default() };
    let env = Arc::new(
        BootEnv::open(
            &settings,
            dir.path(),
            API.into(),
            Arc::new(DbDhcp::new(db.clone())),
            Arc::new(UrlResolver::new()),
        )
        .unwrap(),
    );
    let service = Service::build(
        Config::default(),
        db.clone(),
        Outside::real(Clock::system()).unwrap(),
        Recorder::default(),
        move |p| {
            pxe_boot::register(&mut p.registry);
            p.env.boot = Some(env);
        },
    )
    .unwrap();
    let mut n = Node {
        uuid: NodeId(uuid::Uuid::new_v4()),
        driver: "fake-hardware".into(),
        boot_interface: "ipxe".into(),
        ..Default::default()
    };
    service.conductor.registry().resolve_node_interfaces(&mut n).unwrap();
    let driver = service.conductor.registry().interfaces_for(&n).unwrap();
    let t = Task { node: n, ports: vec![], driver, env: service.conductor.env().clone() };
    let e = t.driver.boot.validate(&t).unwrap_err();
    assert_eq!(
        e.to_string(),
        "iPXE boot is enabled but no HTTP URL or HTTP root was specified: boot interface ipxe needs an HTTP boot server (set [pxe] http_bind or http_url)."
    );
}

/// Stands in for the image service: image IDs resolve to a "temporary URL" with a signature
/// and the image's sha256.
struct FakeImageService {
    base: String,
}

#[async_trait]
impl ImageResolver for FakeImageService {
    fn check(&self, reference: &str) -> Result<(), DriverError> {
        match reference {
            "img-kernel" | "img-ramdisk" | "img-corrupt" => Ok(()),
            _ => Err(DriverError::InvalidParameter(format!("Image {reference} could not be found."))),
        }
    }
    async fn resolve(&self, reference: &str) -> Result<ResolvedImage, DriverError> {
        self.check(reference)?;
        let (path, sum) = match reference {
            "img-kernel" => ("deploy.kernel", sha256(KERNEL)),
            "img-ramdisk" => ("deploy.initrd", sha256(RAMDISK)),
            _ => ("deploy.initrd", sha256(b"something else")),
        };
        Ok(ResolvedImage {
            url: format!("{}/{path}?temp_url_sig=SECRETSIG&temp_url_expires=99", self.base),
            checksum: Some(Checksum::Sha256(sum)),
        })
    }
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    ferric_service::pxe::cache::hex(&sha2::Sha256::digest(b))
}

#[tokio::test]
async fn image_service_references_are_verified() {
    // The image server's address is known only after the lab starts: resolve lazily through it.
    let (images, _srv) = image_server().await;
    let svc = Arc::new(FakeImageService { base: format!("http://{images}") });
    let lab = lab_with(Arc::new(UrlResolver::with_image_service(svc))).await;
    let id = lab.node("ipxe", json!({"image_source": "img-disk-is-not-checked-here"}));
    let mut t = lab.task(id);
    t.node.driver_info.insert("deploy_kernel".into(), "img-kernel".into());
    t.node.driver_info.insert("deploy_ramdisk".into(), "img-ramdisk".into());
    t.driver.boot.validate(&t).unwrap();
    let boot = t.driver.boot.clone();
    boot.prepare_ramdisk(&mut t).await.unwrap();
    same_file(&lab.http().join(id.to_string()).join("deploy_kernel"), KERNEL);
    // Cache entries are keyed by checksum: a second node reuses them without a download.
    let before = lab.env.cache.downloads();
    let id2 = lab.node("ipxe", json!({"image_source": "x"}));
    let mut t2 = lab.task(id2);
    t2.node.driver_info.insert("deploy_kernel".into(), "img-kernel".into());
    t2.node.driver_info.insert("deploy_ramdisk".into(), "img-ramdisk".into());
    boot.prepare_ramdisk(&mut t2).await.unwrap();
    assert_eq!(lab.env.cache.downloads(), before);

    t.node.driver_info.insert("deploy_ramdisk".into(), "img-corrupt".into());
    let e = boot.prepare_ramdisk(&mut t).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(!msg.contains("SECRETSIG"), "signature leaked: {msg}");
    t.node.driver_info.insert("deploy_kernel".into(), "img-missing".into());
    assert!(t.driver.boot.validate(&t).unwrap_err().to_string().contains("could not be found"));

    // The conductor's failure path: clean-up removes what the failed prepare left.
    boot.clean_up_ramdisk(&mut t).await.unwrap();
    assert!(lab.env.dhcp.node_dhcp(id).unwrap().is_empty());
    assert!(!lab.http().join(id.to_string()).exists());
}

#[tokio::test]
async fn leaving_the_provisioning_network_drops_ramdisk_dhcp() {
    let lab = lab().await;
    let id = lab.node("ipxe", json!({"image_source": "http://192.0.2.9/disk.img"}));
    let mut t = lab.task(id);
    let pm = pxe_mac(&t);
    let (net, boot) = (t.driver.network.clone(), t.driver.boot.clone());
    net.add_provisioning_network(&mut t).await.unwrap();
    boot.prepare_ramdisk(&mut t).await.unwrap();
    lab.save(&t);
    let h = lab.handler();
    assert!(offered(&h, pm, true).is_some());
    // A failure path that detaches the network without cleaning up the ramdisk.
    net.remove_provisioning_network(&mut t).await.unwrap();
    lab.save(&t);
    assert_eq!(offered(&h, pm, true), None);
    assert!(lab.env.dhcp.node_dhcp(id).unwrap().is_empty());
}
