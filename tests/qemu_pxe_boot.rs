//! A QEMU VM network-boots from `ferric serve` alone (its DHCP, router advertisements, TFTP and
//! HTTP boot, in a private network namespace) after the `pxe`/`ipxe` boot interfaces prepared
//! the node through the library: the real peer is the VM's iPXE ROM (ipxe-qemu) and, for `pxe`,
//! Debian's pxelinux.0 running on it. Markers on the serial console prove the deploy ramdisk got
//! the API URL and a lease from ferric; with `pxe`, the node then netboots its partition image
//! (`root=UUID=...`) from the config `prepare_instance` wrote.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferric_service::db::Db;
use ferric_service::drivers::pxe_boot::{self, BootEnv, UrlResolver};
use ferric_service::drivers::{DriverEnv, Registry, RegistryConfig, Task};
use ferric_service::network::dhcp::DbDhcp;
use ferric_service::pxe::settings::PxeSettings;
use ferric_sim::machine::{BootDevice, BootSelection, Machine};
use ferric_sim::netns::NetNs;
use ferric_sim::qemu::{
    AgentSource, Disk, DiskBus, DiskFormat, Fixtures, Nic, NicModel, QemuConfig, QemuMachine, format_mac, vm_slot,
};
use ferric_types::models::{MacAddr, Node, NodeId, Port, PortId, ProvisionState};

const TIMEOUT: Duration = Duration::from_secs(240);
const API: &str = "http://192.0.2.1:6385";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ferric serve` inside the namespace, on the bridge (192.0.2.1) with every PXE service on.
async fn serve(ns: &NetNs, dir: &Path) -> Killed {
    std::fs::write(
        dir.join("ferric.toml"),
        "[dhcp]\nserver_id = \"192.0.2.1\"\nrouter = \"192.0.2.1\"\nra = true\nra_prefix = \"2001:db8::/64\"\n",
    )
    .unwrap();
    let mut c = ns.command(env!("CARGO_BIN_EXE_ferric")).unwrap();
    c.arg("serve")
        .arg("--config")
        .arg(dir.join("ferric.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--api-bind", "192.0.2.1:6385", "--tftp-bind", "192.0.2.1:69", "--http-bind", "192.0.2.1:8080"])
        // The API is on the test's own bridge in its own network namespace: only its VM reaches it.
        .arg("--insecure-noauth")
        .args(["--dhcp-bind", "0.0.0.0:67", "--dhcp-range", "192.0.2.100,192.0.2.150", "--dhcp-interface", "br0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap());
    let child = Killed(c.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut probe = ns.command("curl").unwrap();
        probe.args(["-s", "-o", "/dev/null", "--max-time", "2", API]).stdout(Stdio::null()).stderr(Stdio::null());
        if probe.status().unwrap().success() {
            break;
        }
        assert!(Instant::now() < deadline, "ferric serve did not start: {}", log(dir));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
}

/// The library side: the server's database and roots, the `pxe`/`ipxe` interfaces.
struct Library {
    db: Db,
    registry: Registry,
    env: Arc<DriverEnv>,
}

impl Library {
    fn open(dir: &Path) -> Library {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let db = Db::open(&data.join("ferric.sqlite")).unwrap();
        let settings = PxeSettings {
            http_url: Some("http://192.0.2.1:8080".into()),
            kernel_append_params: "console=ttyS0".into(),
            ..Default::default()
        };
        let boot = BootEnv::open(
            &settings,
            &data,
            API.into(),
            Arc::new(DbDhcp::new(db.clone())),
            Arc::new(UrlResolver::new()),
        )
        .unwrap();
        let mut registry = Registry::new(RegistryConfig::default());
        pxe_boot::register(&mut registry);
        let env = Arc::new(DriverEnv { boot: Some(Arc::new(boot)), ..Default::default() });
        Library { db, registry, env }
    }

    fn enroll(&self, boot: &str, mac: [u8; 6], fx: &Fixtures) -> NodeId {
        let file = |p: &Path| format!("file://{}", p.display());
        let mut n = Node {
            uuid: NodeId(uuid::Uuid::new_v4()),
            driver: "fake-hardware".into(),
            boot_interface: boot.into(),
            network_interface: "flat".into(),
            // Waiting for its ramdisk, as a deploy leaves it: `ferric serve` starting on this
            // database must not take it for work a previous run left half done (it would fail
            // the deploy and clean up the ramdisk's boot).
            provision_state: ProvisionState::DeployWait,
            ..Default::default()
        };
        n.driver_info.insert("deploy_kernel".into(), file(&fx.deploy_kernel).into());
        n.driver_info.insert("deploy_ramdisk".into(), file(&fx.deploy_ramdisk).into());
        n.instance_info.insert("image_source".into(), file(&fx.partition_image).into());
        self.registry.resolve_node_interfaces(&mut n).unwrap();
        self.db.create_node(&n).unwrap();
        let p =
            Port { uuid: PortId(uuid::Uuid::new_v4()), address: MacAddr(mac), node_uuid: n.uuid, ..Default::default() };
        self.db.create_port(&p).unwrap();
        n.uuid
    }

    fn task(&self, id: NodeId) -> Task {
        let node = self.db.get_node_by_uuid(id).unwrap();
        let driver = self.registry.interfaces_for(&node).unwrap();
        Task { ports: self.db.node_ports(id).unwrap(), node, driver, env: self.env.clone() }
    }

    fn save(&self, t: &Task) {
        self.db.update_node(&t.node).unwrap();
        self.db.update_ports(&t.ports).unwrap();
    }

    /// The seed's "attach provisioning network", then `prepare_ramdisk`.
    async fn prepare_ramdisk(&self, id: NodeId) {
        let mut t = self.task(id);
        t.driver.boot.validate(&t).unwrap();
        let (net, boot) = (t.driver.network.clone(), t.driver.boot.clone());
        net.add_provisioning_network(&mut t).await.unwrap();
        boot.prepare_ramdisk(&mut t).await.unwrap();
        self.save(&t);
    }
}

fn vm(ns: &NetNs, dir: &Path, name: &str, mac: [u8; 6], disk: &Path) -> QemuMachine {
    let tap = ns.add_tap().unwrap();
    let mut config = QemuConfig::new(name, dir.join("vm"));
    config.netns = Some(ns.handle());
    config.disk = Some(Disk { path: disk.to_owned(), format: DiskFormat::Raw, bus: DiskBus::Virtio });
    config.nics = vec![Nic { mac, model: NicModel::VirtioNet, tap: Some(tap) }];
    config.default_boot = BootDevice::Disk;
    QemuMachine::new(config).unwrap()
}

/// Powers on with a one-time PXE boot and waits for the deploy ramdisk's lease; returns
/// (seconds to the ramdisk, seconds to its lease, the lease line).
async fn boot_ramdisk(vm: &QemuMachine, mac: [u8; 6], dir: &Path) -> (f64, f64, String) {
    vm.set_boot(BootSelection { device: BootDevice::Pxe, persistent: false, efi: false }).await.unwrap();
    let from = vm.serial().position();
    let t = Instant::now();
    vm.power_on().await.unwrap();
    let booted = vm
        .wait_for_serial("FERRIC-RAMDISK-BOOTED", from, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\nserial: {}\nserve: {}", vm.serial().tail(4000), log(dir)));
    let t_boot = t.elapsed().as_secs_f64();
    assert!(booted.contains(&format!("api_url={API}")), "{booted}");
    let lease = vm.wait_for_serial("FERRIC-RAMDISK-DHCP ", from, TIMEOUT).await.unwrap();
    assert!(lease.contains(&format!("mac={}", format_mac(mac))), "{lease}");
    let ip = lease.split("ip=").nth(1).and_then(|s| s.split('/').next()).unwrap_or_default().to_owned();
    let last: u8 = ip.rsplit('.').next().and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(ip.starts_with("192.0.2.") && (100..=150).contains(&last), "lease from ferric's range: {lease}");
    (t_boot, t.elapsed().as_secs_f64(), ip)
}

#[tokio::test]
async fn ipxe_vm_boots_the_deploy_ramdisk_from_ferric() {
    let fx = Fixtures::build(AgentSource::None).await.expect("vm-fixtures build");
    let _slot = vm_slot().await;
    let ns = NetNs::create().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lib = Library::open(d);
    let mac = [0x52, 0x54, 0x00, 0xfe, 0x04, 0x01];
    let id = lib.enroll("ipxe", mac, &fx);
    lib.prepare_ramdisk(id).await;
    let _serve = serve(&ns, d).await;
    let disk = d.join("disk.raw");
    std::fs::copy(&fx.partition_image, &disk).unwrap();
    let vm = vm(&ns, d, "ipxe", mac, &disk);
    let (t_boot, t_lease, ip) = boot_ramdisk(&vm, mac, d).await;
    let leases = lib.db.list_dhcp_addresses().unwrap();
    assert!(leases.iter().any(|l| l.ip.to_string() == ip && l.state == "bound"), "{leases:?}");
    let served = log(d);
    assert!(served.contains(&format_mac(mac)), "ferric's DHCP served the VM: {served}");
    eprintln!(
        "TIMING ferric ipxe (SeaBIOS -> iPXE DHCP -> HTTP script -> kernel+ramdisk, TCG): power on -> RAMDISK-BOOTED {t_boot:.1} s, ramdisk lease {t_lease:.1} s"
    );
    vm.power_off().await.unwrap();

    let mut t = lib.task(id);
    let boot = t.driver.boot.clone();
    boot.clean_up_ramdisk(&mut t).await.unwrap();
    let net = t.driver.network.clone();
    net.remove_provisioning_network(&mut t).await.unwrap();
    lib.save(&t);
}

#[tokio::test]
async fn pxelinux_vm_boots_the_ramdisk_then_netboots_the_instance() {
    let fx = Fixtures::build(AgentSource::None).await.expect("vm-fixtures build");
    let _slot = vm_slot().await;
    let ns = NetNs::create().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lib = Library::open(d);
    let mac = [0x52, 0x54, 0x00, 0xfe, 0x04, 0x02];
    let id = lib.enroll("pxe", mac, &fx);
    lib.prepare_ramdisk(id).await;
    let _serve = serve(&ns, d).await;
    // The partition image is the VM's whole disk: its filesystem UUID is the instance's root.
    let disk = d.join("disk.raw");
    std::fs::copy(&fx.partition_image, &disk).unwrap();
    let vm = vm(&ns, d, "pxelinux", mac, &disk);
    let (t_boot, t_lease, _) = boot_ramdisk(&vm, mac, d).await;
    eprintln!(
        "TIMING ferric pxe (SeaBIOS -> iPXE DHCP -> pxelinux.0 + kernel+ramdisk over TFTP, TCG): power on -> RAMDISK-BOOTED {t_boot:.1} s, ramdisk lease {t_lease:.1} s"
    );
    vm.power_off().await.unwrap();

    // The deploy wrote the image and found its root partition: switch to instance netboot.
    let mut t = lib.task(id);
    let file = |p: &Path| format!("file://{}", p.display());
    t.node.instance_info.insert("kernel".into(), file(&fx.instance_kernel).into());
    t.node.instance_info.insert("ramdisk".into(), file(&fx.instance_ramdisk).into());
    t.node.instance_info.insert("boot_option".into(), "netboot".into());
    t.node.driver_internal_info.insert("root_uuid_or_disk_id".into(), fx.partition_root_uuid.clone().into());
    let (net, boot) = (t.driver.network.clone(), t.driver.boot.clone());
    boot.prepare_instance(&mut t).await.unwrap();
    net.remove_provisioning_network(&mut t).await.unwrap();
    boot.clean_up_ramdisk(&mut t).await.unwrap();
    lib.save(&t);

    vm.set_boot(BootSelection { device: BootDevice::Pxe, persistent: true, efi: false }).await.unwrap();
    let from = vm.serial().position();
    let start = Instant::now();
    vm.power_on().await.unwrap();
    let up = vm
        .wait_for_serial("FERRIC-INSTANCE-BOOTED", from, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\nserial: {}\nserve: {}", vm.serial().tail(4000), log(d)));
    assert!(up.contains(&fx.partition_root_uuid), "{up}");
    eprintln!(
        "TIMING ferric pxe instance netboot (TCG): power on -> INSTANCE-BOOTED {:.1} s",
        start.elapsed().as_secs_f64()
    );
    vm.power_off().await.unwrap();

    // Tear-down leaves no DHCP entry and no boot file.
    let mut t = lib.task(id);
    let boot = t.driver.boot.clone();
    boot.clean_up_instance(&mut t).await.unwrap();
    assert!(lib.db.node_dhcp_hosts(id).unwrap().is_empty());
    assert!(!d.join("data/tftp").join(id.to_string()).exists());
}
