//! The `redfish` hardware type through the API against ferric-sim's virtual Redfish BMC over
//! HTTPS with a self-signed certificate (trusted through `redfish_verify_ca=<its PEM>`): power,
//! boot devices, NMI, one session shared by all calls, a busy BMC and ETag conflicts survived,
//! and an untrusted certificate refused.

mod common;

use axum::http::StatusCode;
use ferric_lab::machine::{SimMachine, SimMachineConfig};
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::Config;
use ferric_service::db::Db;
use ferric_sim::machine::{BootDevice as SimBoot, Inventory, Machine, PowerState as SimPower};
use ferric_sim::redfish::{RedfishBmc, RedfishConfig, self_signed_tls, serve};
use ferric_types::clock::Clock;
use ferric_types::trace::Recorder;
use serde_json::{Value, json};
use std::sync::Arc;

struct Lab {
    api: common::Api,
    bmc: RedfishBmc,
    machine: Arc<SimMachine>,
    url: String,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn lab() -> Lab {
    let machine = Arc::new(SimMachine::new(
        "node-0",
        SimMachineConfig {
            soft_off_delay_ms: 200,
            macs: vec![[0x52, 0x54, 0x00, 0x0f, 0x00, 0x01], [0x52, 0x54, 0x00, 0x0f, 0x00, 0x02]],
            inventory: Inventory {
                cpus: 8,
                cpu_arch: "x86-64".into(),
                memory_mib: 16384,
                disks: vec![100 << 30, 1 << 30],
            },
            ..Default::default()
        },
    ));
    let bmc = RedfishBmc::new(RedfishConfig::default(), machine.clone());
    let (tls, pem) = self_signed_tls(&["127.0.0.1".into()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(listener, bmc.clone(), Some(tls)));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("bmc-ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let mut config = Config::default();
    config.conductor.power_state_change_timeout = 5;
    config.conductor.power_state_poll_interval_ms = 50;
    let service = Service::build(
        config,
        Db::open_in_memory().unwrap(),
        Outside::real(Clock::system()).unwrap(),
        Recorder::default(),
        |_| {},
    )
    .unwrap();
    Lab {
        api: common::Api::from_service(service),
        bmc,
        machine,
        url: format!("https://127.0.0.1:{port}"),
        ca,
        _dir: dir,
    }
}

async fn node(l: &Lab, name: &str, verify: Value) -> String {
    let r = l
        .api
        .post(
            "/v1/nodes",
            json!({"driver": "redfish", "name": name, "driver_info": {
                "redfish_address": l.url, "redfish_username": "admin", "redfish_password": "password",
                "redfish_verify_ca": verify, "redfish_auth_type": "session",
            }}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["uuid"].as_str().unwrap().to_string()
}

async fn power(l: &Lab, u: &str, target: &str) -> Value {
    let r = l.api.put(&format!("/v1/nodes/{u}/states/power"), json!({"target": target})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    l.api.idle().await;
    l.api.get(&format!("/v1/nodes/{u}")).await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_boot_and_faults_against_the_virtual_bmc() {
    let l = lab().await;
    let ca = l.ca.display().to_string();
    let u = node(&l, "rf-sim", json!(ca)).await;
    let v = l.api.get(&format!("/v1/nodes/{u}/validate")).await.json();
    assert_eq!(v["power"], json!({"result": true}), "{v}");

    let n = power(&l, &u, "power on").await;
    assert_eq!((n["power_state"].clone(), n["last_error"].clone()), (json!("power on"), Value::Null), "{n}");
    assert_eq!(l.machine.power_state().await.unwrap(), SimPower::On);
    let n = power(&l, &u, "soft power off").await;
    assert_eq!((n["power_state"].clone(), n["last_error"].clone()), (json!("power off"), Value::Null), "{n}");
    assert_eq!(l.machine.power_state().await.unwrap(), SimPower::Off);
    let n = power(&l, &u, "rebooting").await;
    assert_eq!(n["power_state"], json!("power on"), "{n}");

    // ETag conflicts: the first PATCH gets 412, the re-read retry passes.
    l.bmc.faults().set_etag_conflict(true);
    let r = l
        .api
        .put(&format!("/v1/nodes/{u}/management/boot_device"), json!({"boot_device": "pxe", "persistent": true}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    l.bmc.faults().set_etag_conflict(false);
    assert!(l.bmc.stats().etag_conflicts >= 1);
    assert_eq!(l.machine.boot().await.unwrap().device, SimBoot::Pxe);
    let b = l.api.get(&format!("/v1/nodes/{u}/management/boot_device")).await.json();
    assert_eq!(b, json!({"boot_device": "pxe", "persistent": true}));

    let r = l.api.put(&format!("/v1/nodes/{u}/management/inject_nmi"), json!({})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(l.bmc.stats().nmi, 1);

    // Busy for a moment (Retry-After 1 s): the power read waits and gets through.
    l.bmc.faults().set_busy_retry_after_secs(Some(1));
    let bmc = l.bmc.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        bmc.faults().set_busy_retry_after_secs(None);
    });
    let n = power(&l, &u, "power off").await;
    assert_eq!((n["power_state"].clone(), n["last_error"].clone()), (json!("power off"), Value::Null), "{n}");
    assert!(l.bmc.stats().busy_replies >= 1);

    // All of it through one session.
    assert_eq!(l.bmc.stats().sessions_created, 1, "{:?}", l.bmc.stats());

    // The certificate is self-signed: with the system's roots it is refused, and the failure
    // ends in last_error.
    let u2 = node(&l, "rf-untrusted", json!(true)).await;
    let n = power(&l, &u2, "power on").await;
    let err = n["last_error"].as_str().unwrap_or("");
    assert!(err.contains("did not answer") && !err.contains("password"), "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_inspection_through_the_virtual_bmc() {
    let l = lab().await;
    let ca = l.ca.display().to_string();
    let u = node(&l, "rf-inspect", json!(ca)).await;
    let r = l
        .api
        .patch(&format!("/v1/nodes/{u}"), json!([{"op": "replace", "path": "/inspect_interface", "value": "redfish"}]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    l.api.provision(&u, "manage").await;
    let r = l.api.provision(&u, "inspect").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let n = l.api.get(&format!("/v1/nodes/{u}")).await.json();
    assert_eq!((n["provision_state"].clone(), n["last_error"].clone()), (json!("manageable"), Value::Null), "{n}");
    let p = &n["properties"];
    assert_eq!((p["cpus"].clone(), p["cpu_arch"].clone()), (json!(8), json!("x86_64")), "{p}");
    assert_eq!((p["memory_mb"].clone(), p["local_gb"].clone()), (json!(16384), json!(99)), "{p}");
    assert!(n["inspection_finished_at"].is_string(), "{n}");
    let ports = l.api.get(&format!("/v1/nodes/{u}/ports")).await.json();
    let mut macs: Vec<&str> =
        ports["ports"].as_array().unwrap().iter().map(|p| p["address"].as_str().unwrap()).collect();
    macs.sort();
    assert_eq!(macs, ["52:54:00:0f:00:01", "52:54:00:0f:00:02"]);

    // A BMC that stops answering: inspect failed, with the reason.
    l.bmc.faults().set_busy_retry_after_secs(Some(1));
    l.api.provision(&u, "manage").await;
    l.api.provision(&u, "inspect").await;
    let n = l.api.get(&format!("/v1/nodes/{u}")).await.json();
    assert_eq!(n["provision_state"], json!("inspect failed"), "{n}");
    let err = n["last_error"].as_str().unwrap_or("");
    assert!(err.starts_with("Failed to inspect hardware. Reason: ") && err.contains("503"), "{err}");
}

async fn bios_attributes(l: &Lab) -> Value {
    let c = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let v: Value = c
        .get(format!("{}/redfish/v1/Systems/System.1/Bios", l.url))
        .basic_auth("admin", Some("password"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["Attributes"].clone()
}

async fn clean(l: &Lab, u: &str, steps: Value) -> Value {
    let r =
        l.api.put(&format!("/v1/nodes/{u}/states/provision"), json!({"target": "clean", "clean_steps": steps})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    l.api.idle().await;
    l.api.get(&format!("/v1/nodes/{u}")).await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bios_and_firmware_clean_steps_through_the_virtual_bmc() {
    let l = lab().await;
    let ca = l.ca.display().to_string();
    let u = node(&l, "rf-steps", json!(ca)).await;
    let r = l
        .api
        .patch(
            &format!("/v1/nodes/{u}"),
            json!([{"op": "replace", "path": "/bios_interface", "value": "redfish"},
                   {"op": "replace", "path": "/firmware_interface", "value": "redfish"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Cleaning validates the network interface too (as Ironic does): the node needs its port.
    let r = l.api.post("/v1/ports", json!({"node_uuid": u, "address": "52:54:00:0f:00:01"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    l.api.provision(&u, "manage").await;

    // BIOS settings staged for the next reset, then the node rebooted: they apply.
    let n = clean(
        &l,
        &u,
        json!([{"interface": "bios", "step": "apply_configuration", "args": {"settings": [
            {"name": "ProcTurboMode", "value": "Disabled"}, {"name": "BootRetryCount", "value": 5}]}}]),
    )
    .await;
    assert_eq!((n["provision_state"].clone(), n["last_error"].clone()), (json!("manageable"), Value::Null), "{n}");
    let a = bios_attributes(&l).await;
    assert_eq!((a["ProcTurboMode"].clone(), a["BootRetryCount"].clone()), (json!("Disabled"), json!(5)), "{a}");
    assert_eq!(l.bmc.stats().bios_applied, 1);
    // The API shows them as cached after the step.
    let b = l.api.get(&format!("/v1/nodes/{u}/bios/ProcTurboMode")).await.json();
    assert_eq!(b["ProcTurboMode"]["value"], json!("Disabled"), "{b}");
    let b = l.api.get(&format!("/v1/nodes/{u}/bios/BootRetryCount")).await.json();
    assert_eq!(b["BootRetryCount"]["value"], json!("5"), "{b}");

    // An unknown attribute: clean failed with the BMC's message.
    let n = clean(
        &l,
        &u,
        json!([{"interface": "bios", "step": "apply_configuration", "args": {"settings": [{"name": "NoSuchKnob", "value": "x"}]}}]),
    )
    .await;
    assert_eq!(n["provision_state"], json!("clean failed"), "{n}");
    let err = n["last_error"].as_str().unwrap();
    assert!(err.contains("bios.apply_configuration") && err.contains("NoSuchKnob"), "{err}");
    l.api.provision(&u, "manage").await;

    // Factory reset.
    let n = clean(&l, &u, json!([{"interface": "bios", "step": "factory_reset"}])).await;
    assert_eq!((n["provision_state"].clone(), n["last_error"].clone()), (json!("manageable"), Value::Null), "{n}");
    assert_eq!(bios_attributes(&l).await["ProcTurboMode"], json!("Enabled"));

    // Firmware: the update task is followed to its end.
    let n = clean(
        &l,
        &u,
        json!([{"interface": "firmware", "step": "update", "args": {"settings": [
            {"component": "bios", "url": "http://192.0.2.1/bios-2.0.bin"}]}}]),
    )
    .await;
    assert_eq!((n["provision_state"].clone(), n["last_error"].clone()), (json!("manageable"), Value::Null), "{n}");
    l.bmc.faults().set_task_fails(true);
    let n = clean(
        &l,
        &u,
        json!([{"interface": "firmware", "step": "update", "args": {"settings": [
            {"component": "bmc", "url": "http://192.0.2.1/bmc-2.0.bin"}]}}]),
    )
    .await;
    assert_eq!(n["provision_state"], json!("clean failed"), "{n}");
    assert!(n["last_error"].as_str().unwrap().contains("Firmware update of bmc"), "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_cas_is_trusted_too() {
    let l = lab().await;
    let dir = l.ca.parent().unwrap().display().to_string();
    let u = node(&l, "rf-cadir", json!(dir)).await;
    let n = power(&l, &u, "power on").await;
    assert_eq!((n["power_state"].clone(), n["last_error"].clone()), (json!("power on"), Value::Null), "{n}");
    // "False" as a string, as the CLI sends it: no check at all.
    let u = node(&l, "rf-insecure", json!("False")).await;
    let n = power(&l, &u, "power off").await;
    assert_eq!((n["power_state"].clone(), n["last_error"].clone()), (json!("power off"), Value::Null), "{n}");
}
