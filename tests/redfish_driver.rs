//! The `redfish` hardware type through the API against a real peer: sushy-tools' Redfish
//! emulator (`sushy-emulator --fake`, the one Ironic's own CI uses), on loopback. Power, boot
//! devices, the power state read back, NMI refusal carrying the BMC's message, and the
//! `redfish-virtual-media` boot interface inserting a deploy ISO ferric built and served (the
//! emulator downloads it) and ejecting it again.

mod common;

use axum::http::StatusCode;
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::Config;
use ferric_service::db::Db;
use ferric_service::drivers::Task;
use ferric_service::drivers::pxe_boot::{BootEnv, UrlResolver};
use ferric_service::network::dhcp::DbDhcp;
use ferric_types::clock::Clock;
use ferric_types::trace::Recorder;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const EMULATOR: &str = "/opt/ferric-venv/bin/sushy-emulator";

/// The emulator on a free loopback port, stopped when dropped.
struct Emulator {
    child: std::process::Child,
    url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The emulator keeps its fake systems' state in a SQLite file under `$TMPDIR`: each test gets
/// its own, so every run starts from the same powered-off system.
async fn emulator(tmp: &Path) -> Option<Emulator> {
    if !Path::new(EMULATOR).is_file() {
        eprintln!("SKIP: {EMULATOR} is missing (pip install sushy-tools into /opt/ferric-venv)");
        return None;
    }
    let port = free_port();
    let child = std::process::Command::new(EMULATOR)
        .args(["--fake", "-i", "127.0.0.1", "-p", &port.to_string()])
        .env("TMPDIR", tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let e = Emulator { child, url };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some(e);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sushy-emulator did not listen on {port}");
}

struct Lab {
    api: common::Api,
    _emulator: Emulator,
    _pxe: ferric_service::pxe::PxeServices,
    bmc: String,
    dir: tempfile::TempDir,
}

async fn lab() -> Option<Lab> {
    let dir = tempfile::tempdir().unwrap();
    let emulator = emulator(dir.path()).await?;
    let mut config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    // The fake driver applies power changes 1 to 11 s after they are asked for.
    config.conductor.power_state_change_timeout = 20;
    config.conductor.power_state_poll_interval_ms = 300;
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
    let service = Service::build(config, db, Outside::real(Clock::system()).unwrap(), Recorder::default(), |p| {
        p.env.boot = Some(Arc::new(boot));
    })
    .unwrap();
    // The HTTP boot server the emulator downloads the ISO from.
    let pxe = service.start_pxe().await.unwrap().expect("HTTP boot server");
    let bmc = emulator.url.clone();
    Some(Lab { api: common::Api::from_service(service), _emulator: emulator, _pxe: pxe, bmc, dir })
}

static NEXT_MAC: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);

async fn redfish_node(l: &Lab, name: &str, extra: Value) -> String {
    let kernel = l.dir.path().join("deploy.kernel");
    let ramdisk = l.dir.path().join("deploy.initrd");
    std::fs::write(&kernel, b"not really a kernel").unwrap();
    std::fs::write(&ramdisk, b"not really a ramdisk").unwrap();
    let mut info = json!({
        "redfish_address": l.bmc, "redfish_username": "admin", "redfish_password": "s3cret-pw",
        "deploy_kernel": format!("file://{}", kernel.display()),
        "deploy_ramdisk": format!("file://{}", ramdisk.display()),
    });
    for (k, v) in extra.as_object().unwrap() {
        info[k] = v.clone();
    }
    let r = l
        .api
        .post(
            "/v1/nodes",
            json!({"driver": "redfish", "name": name, "boot_interface": "redfish-virtual-media", "driver_info": info}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let n = r.json();
    assert_eq!(n["power_interface"], json!("redfish"));
    assert_eq!(n["management_interface"], json!("redfish"));
    assert_eq!(n["driver_info"]["redfish_password"], json!("******"));
    let u = n["uuid"].as_str().unwrap().to_string();
    let mac = format!("52:54:00:aa:bb:{:02x}", NEXT_MAC.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let r = l.api.post("/v1/ports", json!({"node_uuid": u, "address": mac})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    u
}

async fn power(l: &Lab, u: &str, target: &str) -> Value {
    let r = l.api.put(&format!("/v1/nodes/{u}/states/power"), json!({"target": target})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    l.api.idle().await;
    l.api.get(&format!("/v1/nodes/{u}")).await.json()
}

async fn emulator_system(l: &Lab) -> Value {
    let c = reqwest::Client::new();
    let systems: Value = c.get(format!("{}/redfish/v1/Systems", l.bmc)).send().await.unwrap().json().await.unwrap();
    let path = systems["Members"][0]["@odata.id"].as_str().unwrap().to_owned();
    c.get(format!("{}{path}", l.bmc)).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_and_boot_devices_against_sushy() {
    let Some(l) = lab().await else { return };
    let u = redfish_node(&l, "rf-0", json!({})).await;
    let v = l.api.get(&format!("/v1/nodes/{u}/validate")).await.json();
    assert_eq!(v["power"], json!({"result": true}), "{v}");
    assert_eq!(v["management"], json!({"result": true}), "{v}");

    l.api.provision(&u, "manage").await;
    let n = l.api.get(&format!("/v1/nodes/{u}")).await.json();
    assert_eq!(n["provision_state"], json!("manageable"), "{n}");
    assert_eq!(n["power_state"], json!("power off"), "{n}");

    let n = power(&l, &u, "power on").await;
    assert_eq!((n["power_state"].clone(), n["last_error"].clone()), (json!("power on"), Value::Null), "{n}");
    assert_eq!(emulator_system(&l).await["PowerState"], json!("On"));
    let n = power(&l, &u, "rebooting").await;
    assert_eq!((n["power_state"].clone(), n["last_error"].clone()), (json!("power on"), Value::Null), "{n}");
    let n = power(&l, &u, "power off").await;
    assert_eq!((n["power_state"].clone(), n["last_error"].clone()), (json!("power off"), Value::Null), "{n}");
    assert_eq!(emulator_system(&l).await["PowerState"], json!("Off"));

    // (The emulator keeps the target but always reports `BootSourceOverrideEnabled: Continuous`.)
    for (dev, persistent, target) in [("pxe", false, "Pxe"), ("disk", true, "Hdd"), ("cdrom", false, "Cd")] {
        let r = l
            .api
            .put(
                &format!("/v1/nodes/{u}/management/boot_device"),
                json!({"boot_device": dev, "persistent": persistent}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        let b = l.api.get(&format!("/v1/nodes/{u}/management/boot_device")).await.json();
        assert_eq!(b["boot_device"], json!(dev), "{b}");
        let sys = emulator_system(&l).await;
        assert_eq!(sys["Boot"]["BootSourceOverrideTarget"], json!(target));
    }

    // The fake system refuses an NMI: the API error carries the emulator's own words.
    let r = l.api.put(&format!("/v1/nodes/{u}/management/inject_nmi"), json!({})).await;
    assert!(r.status.is_client_error() || r.status.is_server_error(), "{}", r.text());
    assert!(r.text().contains("Nmi"), "{}", r.text());
    assert!(!l.api.get(&format!("/v1/nodes/{u}")).await.text().contains("s3cret-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_media_insert_and_eject_against_sushy() {
    let Some(l) = lab().await else { return };
    let u = redfish_node(&l, "rf-vm", json!({"kernel_append_params": "console=ttyS0"})).await;
    let c = &l.api.service.conductor;
    let node = c.db().get_node(&u).unwrap();
    let mut task = Task {
        ports: c.db().node_ports(node.uuid).unwrap(),
        driver: c.registry().interfaces_for(&node).unwrap(),
        env: c.env().clone(),
        node,
    };
    let boot = task.driver.boot.clone();
    boot.prepare_ramdisk(&mut task).await.unwrap();

    let iso = l.dir.path().join("httpboot/redfish").join(format!("boot-{u}.iso"));
    let bytes = std::fs::read(&iso).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("KERNEL /vmlinuz"), "isolinux.cfg in the ISO");
    let mac = task.ports[0].address.to_string().replace(':', "-");
    assert!(text.contains(&format!("BOOTIF=01-{mac} boot_method=vmedia console=ttyS0")), "kernel parameters");
    assert!(text.contains("ipa-api-url=http://127.0.0.1:6385"));

    let sys = emulator_system(&l).await;
    assert_eq!(sys["Boot"]["BootSourceOverrideTarget"], json!("Cd"));
    let cd_path = format!("{}/VirtualMedia/Cd", sys["@odata.id"].as_str().unwrap());
    let cd: Value = reqwest::get(format!("{}{cd_path}", l.bmc)).await.unwrap().json().await.unwrap();
    assert_eq!(cd["Inserted"], json!(true), "{cd}");
    assert!(cd["Image"].as_str().unwrap().ends_with(&format!("boot-{u}.iso")), "{cd}");

    // Again: what is inserted is ejected first.
    boot.prepare_ramdisk(&mut task).await.unwrap();
    boot.clean_up_ramdisk(&mut task).await.unwrap();
    let cd: Value = reqwest::get(format!("{}{cd_path}", l.bmc)).await.unwrap().json().await.unwrap();
    assert_eq!(cd["Inserted"], json!(false), "{cd}");
    assert!(!iso.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_driver_info_fails_validation_in_ironic_words() {
    let Some(l) = lab().await else { return };
    let u = redfish_node(&l, "rf-bad", json!({"redfish_verify_ca": "/nonexistent/ca.pem"})).await;
    let v = l.api.get(&format!("/v1/nodes/{u}/validate")).await.json();
    assert_eq!(v["power"]["result"], json!(false));
    assert!(v["power"]["reason"].as_str().unwrap().contains("driver_info/redfish_verify_ca"), "{v}");
    let r = l
        .api
        .patch(
            &format!("/v1/nodes/{u}"),
            json!([{"op": "remove", "path": "/driver_info/redfish_verify_ca"},
                   {"op": "add", "path": "/driver_info/redfish_auth_type", "value": "kerberos"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = l.api.get(&format!("/v1/nodes/{u}/validate")).await.json();
    assert!(v["power"]["reason"].as_str().unwrap().contains("driver_info/redfish_auth_type"), "{v}");
    let r =
        l.api.patch(&format!("/v1/nodes/{u}"), json!([{"op": "remove", "path": "/driver_info/redfish_address"}])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = l.api.get(&format!("/v1/nodes/{u}/validate")).await.json();
    assert!(v["power"]["reason"].as_str().unwrap().contains("['redfish_address']"), "{v}");
    // An unreachable BMC ends a power change in last_error, not a hang.
    let u = redfish_node(&l, "rf-gone", json!({"redfish_address": format!("http://127.0.0.1:{}", free_port())})).await;
    let n = power(&l, &u, "power on").await;
    assert!(n["last_error"].as_str().unwrap_or("").contains("did not answer"), "{n}");
}
