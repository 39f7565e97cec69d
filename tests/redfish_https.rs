//! The `redfish-https` boot interface against ferric-sim's virtual Redfish BMC (over loopback
//! TCP): `prepare_ramdisk` serves the deploy ISO and PATCHes `UefiHttp` with the ISO as
//! `HttpBootUri`, which reaches the machine; the conductor's "boot ramdisk once" boot device
//! keeps the URI; the clean-up clears it and removes the ISO. A BMC that does not offer UEFI HTTP
//! boot is refused with a clear message before anything is built.

use ferric_lab::machine::{SimMachine, SimMachineConfig};
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::Config;
use ferric_service::db::Db;
use ferric_service::drivers::Task;
use ferric_service::drivers::pxe_boot::{BootEnv, UrlResolver};
use ferric_service::network::dhcp::DbDhcp;
use ferric_sim::machine::Machine;
use ferric_sim::redfish::{RedfishBmc, RedfishConfig, serve};
use ferric_types::clock::Clock;
use ferric_types::models::{BootDevice, MacAddr, Node, NodeId, Port, PortId, ProvisionState};
use ferric_types::trace::Recorder;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

const SYS: &str = "/redfish/v1/Systems/System.1";

struct Lab {
    service: Service,
    db: Db,
    machine: Arc<SimMachine>,
    bmc_url: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn lab(uefi_http: bool) -> Lab {
    let machine = Arc::new(SimMachine::new("node-0", SimMachineConfig::default()));
    let bmc = RedfishBmc::new(RedfishConfig { uefi_http, ..RedfishConfig::default() }, machine.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(listener, bmc, None));
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    // An HTTP boot root and its URL (not served: the machine does not boot here).
    config.pxe.http_bind = Some(format!("127.0.0.1:{}", free_port()).parse().unwrap());
    config.api.public_url = Some("http://127.0.0.1:6385".into());
    let db = Db::open_in_memory().unwrap();
    let boot = BootEnv::open(
        &config.pxe,
        &config.data_dir,
        config.public_url(),
        Arc::new(DbDhcp::new(db.clone())),
        Arc::new(UrlResolver::new()),
    )
    .unwrap();
    let service =
        Service::build(config, db.clone(), Outside::real(Clock::system()).unwrap(), Recorder::default(), |p| {
            p.env.boot = Some(Arc::new(boot));
        })
        .unwrap();
    Lab { service, db, machine, bmc_url: format!("http://127.0.0.1:{port}"), dir }
}

impl Lab {
    /// A `redfish` node with the `redfish-https` boot interface, deploying, with one port.
    fn task(&self) -> Task {
        let kernel = self.dir.path().join("deploy.kernel");
        let ramdisk = self.dir.path().join("deploy.initrd");
        std::fs::write(&kernel, b"not really a kernel").unwrap();
        std::fs::write(&ramdisk, b"not really a ramdisk").unwrap();
        let info = json!({
            "redfish_address": self.bmc_url, "redfish_username": "admin", "redfish_password": "password",
            "deploy_kernel": format!("file://{}", kernel.display()),
            "deploy_ramdisk": format!("file://{}", ramdisk.display()),
        });
        let mut n = Node {
            uuid: NodeId(uuid::Uuid::new_v4()),
            driver: "redfish".into(),
            boot_interface: "redfish-https".into(),
            network_interface: "noop".into(),
            provision_state: ProvisionState::Deploying,
            driver_info: info.as_object().unwrap().clone(),
            ..Default::default()
        };
        let registry = self.service.conductor.registry();
        registry.resolve_node_interfaces(&mut n).unwrap();
        self.db.create_node(&n).unwrap();
        let p = Port {
            uuid: PortId(uuid::Uuid::new_v4()),
            address: MacAddr([0x52, 0x54, 0x00, 0x0e, 0x00, 0x01]),
            node_uuid: n.uuid,
            pxe_enabled: true,
            ..Default::default()
        };
        self.db.create_port(&p).unwrap();
        let driver = registry.interfaces_for(&n).unwrap();
        Task { node: n, ports: vec![p], driver, env: self.service.conductor.env().clone() }
    }

    fn iso(&self, t: &Task) -> PathBuf {
        let env = t.env.boot.as_ref().unwrap();
        env.layout.http_root.join("redfish").join(format!("boot-{}.iso", t.node.uuid))
    }

    async fn boot(&self) -> Value {
        let r = reqwest::Client::new()
            .get(format!("{}{SYS}", self.bmc_url))
            .basic_auth("admin", Some("password"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.json::<Value>().await.unwrap()["Boot"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uefi_http_boot_of_the_deploy_iso_through_the_virtual_bmc() {
    let l = lab(true).await;
    let mut t = l.task();
    t.driver.boot.validate(&t).unwrap();
    assert_eq!(t.driver.boot.ramdisk_boot_device(), BootDevice::UefiHttp);
    let boot = t.driver.boot.clone();
    boot.prepare_ramdisk(&mut t).await.unwrap();

    let iso = l.iso(&t);
    assert!(iso.is_file(), "{}", iso.display());
    let url = format!("{}/redfish/boot-{}.iso", t.env.boot.as_ref().unwrap().layout.http_url, t.node.uuid);
    let b = l.boot().await;
    assert_eq!(b["BootSourceOverrideTarget"], "UefiHttp", "{b}");
    assert_eq!(b["BootSourceOverrideEnabled"], "Once", "{b}");
    assert_eq!(b["BootSourceOverrideMode"], "UEFI", "{b}");
    assert_eq!(b["HttpBootUri"], json!(url), "{b}");
    assert_eq!(l.machine.http_boot_uri().as_deref(), Some(url.as_str()));

    // The conductor's "boot ramdisk once" step: the override stays UEFI HTTP, with its URI.
    let mgmt = t.driver.management.clone();
    mgmt.set_boot_device(&mut t, boot.ramdisk_boot_device(), false).await.unwrap();
    let b = l.boot().await;
    assert_eq!((b["BootSourceOverrideTarget"].clone(), b["HttpBootUri"].clone()), (json!("UefiHttp"), json!(url)));
    assert_eq!(mgmt.get_boot_device(&mut t).await.unwrap(), (Some(BootDevice::UefiHttp), Some(false)));
    assert_eq!(l.machine.http_boot_uri().as_deref(), Some(url.as_str()));

    // The machine's next boot is a UEFI HTTP boot of the ISO (the override is then used up).
    l.machine.power_on().await.unwrap();
    assert_eq!(l.machine.last_boot_uri().as_deref(), Some(url.as_str()));
    assert_eq!(l.boot().await["BootSourceOverrideEnabled"], "Disabled");

    boot.clean_up_ramdisk(&mut t).await.unwrap();
    let b = l.boot().await;
    assert_eq!(b["HttpBootUri"], Value::Null, "{b}");
    assert_eq!(b["BootSourceOverrideEnabled"], "Disabled", "{b}");
    assert_eq!(l.machine.http_boot_uri(), None);
    assert!(!iso.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_without_uefi_http_boot_is_refused_with_a_clear_message() {
    let l = lab(false).await;
    let mut t = l.task();
    let boot = t.driver.boot.clone();
    let e = boot.prepare_ramdisk(&mut t).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Redfish System {SYS} does not offer UEFI HTTP boot: UefiHttp is not among its BootSourceOverrideTarget@Redfish.AllowableValues (None, Pxe, Hdd, Cd, BiosSetup). Use the redfish-virtual-media or ipxe boot interface."
        )
    );
    // Nothing was built, nothing set.
    assert!(!l.iso(&t).exists());
    assert_eq!(l.boot().await["BootSourceOverrideEnabled"], "Disabled");
    assert_eq!(l.machine.http_boot_uri(), None);
}
