//! The `ipmi` hardware type's `ipmitool` interfaces through the API, against ferric-sim's virtual
//! BMC over UDP on loopback: power, boot devices, validation, and failure paths that end in a
//! clear `last_error` instead of a hang.

mod common;

use async_trait::async_trait;
use axum::http::StatusCode;
use ferric_lab::machine::{SimMachine, SimMachineConfig};
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::Config;
use ferric_service::db::Db;
use ferric_service::drivers::steps::Plans;
use ferric_service::drivers::{DeployInterface, DriverError, Task};
use ferric_service::ipmi::{ClientConfig, IpmiPool, UdpConnector};
use ferric_sim::machine::{BootDevice as SimBoot, Machine, PowerState as SimPower};
use ferric_sim::vbmc::{Bmc, BmcConfig, Faults, serve_udp};
use ferric_types::clock::Clock;
use ferric_types::trace::Recorder;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Stands in for the deploy interface (and fake boot for `ipxe`): these tests exercise power and
/// management only.
struct NoDeploy;

static NOTHING: std::sync::LazyLock<Plans> = std::sync::LazyLock::new(Plans::default);

#[async_trait]
impl DeployInterface for NoDeploy {
    fn validate(&self, _t: &Task) -> Result<(), DriverError> {
        Ok(())
    }
    fn plans(&self) -> &Plans {
        &NOTHING
    }
}

struct Lab {
    api: common::Api,
    bmc: Bmc,
    machine: Arc<SimMachine>,
    port: u16,
}

async fn lab() -> Lab {
    let machine =
        Arc::new(SimMachine::new("node-0", SimMachineConfig { soft_off_delay_ms: 300, ..Default::default() }));
    let bmc = Bmc::new("node-0", BmcConfig::default(), machine.clone(), Arc::new(Faults::default())).unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let b = bmc.clone();
    tokio::spawn(async move {
        let _ = serve_udp(b, socket).await;
    });
    let client = ClientConfig {
        attempt_timeout: Duration::from_millis(200),
        retries: 2,
        backoff: Duration::from_millis(20),
        command_timeout: Duration::from_secs(2),
        min_interval: Duration::ZERO,
        ..Default::default()
    };
    // Power changes time out after 2 s, polled every 50 ms.
    let mut config = Config::default();
    config.conductor.power_state_change_timeout = 2;
    config.conductor.power_state_poll_interval_ms = 50;
    let outside = Outside {
        ipmi: Arc::new(IpmiPool::new(Arc::new(UdpConnector), client, 64)),
        ..Outside::real(Clock::system()).unwrap()
    };
    let service = Service::build(config, Db::open_in_memory().unwrap(), outside, Recorder::default(), |p| {
        p.registry.register_deploy("direct", Arc::new(NoDeploy));
        p.registry.register_boot("ipxe", Arc::new(ferric_service::drivers::fake::FakeBoot));
    })
    .unwrap();
    Lab { api: common::Api::from_service(service), bmc, machine, port }
}

async fn ipmi_node(l: &Lab, password: &str) -> String {
    let r = l
        .api
        .post(
            "/v1/nodes",
            json!({"driver": "ipmi", "name": format!("bmc-{password}"), "driver_info": {
                "ipmi_address": "127.0.0.1", "ipmi_port": l.port, "ipmi_username": "admin", "ipmi_password": password,
            }}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let n = r.json();
    assert_eq!(n["power_interface"], json!("ipmitool"));
    assert_eq!(n["management_interface"], json!("ipmitool"));
    assert_eq!(n["driver_info"]["ipmi_password"], json!("******"));
    n["uuid"].as_str().unwrap().to_string()
}

async fn power(l: &Lab, u: &str, target: &str) -> Value {
    let r = l.api.put(&format!("/v1/nodes/{u}/states/power"), json!({"target": target})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    l.api.idle().await;
    l.api.get(&format!("/v1/nodes/{u}")).await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_and_boot_device_through_the_api() {
    let l = lab().await;
    let u = ipmi_node(&l, "password").await;
    let v = l.api.get(&format!("/v1/nodes/{u}/validate")).await.json();
    assert_eq!(v["power"], json!({"result": true}));
    assert_eq!(v["management"], json!({"result": true}));

    // Enroll → manageable reads the power state through the BMC.
    l.api.provision(&u, "manage").await;
    let n = l.api.get(&format!("/v1/nodes/{u}")).await.json();
    assert_eq!((n["provision_state"].clone(), n["power_state"].clone()), (json!("manageable"), json!("power off")));

    let n = power(&l, &u, "power on").await;
    assert_eq!(n["power_state"], json!("power on"));
    assert_eq!(n["last_error"], Value::Null);
    assert_eq!(l.machine.power_state().await.unwrap(), SimPower::On);
    let n = power(&l, &u, "rebooting").await;
    assert_eq!(n["power_state"], json!("power on"));
    let n = power(&l, &u, "soft power off").await;
    assert_eq!(n["power_state"], json!("power off"));
    assert_eq!(l.machine.power_state().await.unwrap(), SimPower::Off);

    let r = l
        .api
        .put(&format!("/v1/nodes/{u}/management/boot_device"), json!({"boot_device": "pxe", "persistent": true}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let b = l.api.get(&format!("/v1/nodes/{u}/management/boot_device")).await.json();
    assert_eq!(b, json!({"boot_device": "pxe", "persistent": true}));
    assert_eq!(l.machine.boot().await.unwrap().device, SimBoot::Pxe);
    let s = l.api.get(&format!("/v1/nodes/{u}/management/boot_device/supported")).await.json();
    assert_eq!(s["supported_boot_devices"], json!(["pxe", "disk", "cdrom", "bios"]));
    // The password never reaches API output.
    assert!(!l.api.get(&format!("/v1/nodes/{u}")).await.text().contains("\"password\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_end_in_last_error_not_a_hang() {
    let l = lab().await;
    // Wrong password: RAKP fails, the error says so, and the password is not in it.
    let u = ipmi_node(&l, "wrong-pass").await;
    let n = power(&l, &u, "power on").await;
    let err = n["last_error"].as_str().unwrap();
    assert!(err.contains("authentication"), "{err}");
    assert!(!err.contains("wrong-pass"));
    assert_eq!(n["reservation"], Value::Null);

    // BMC down.
    let u = ipmi_node(&l, "password").await;
    l.bmc.faults().set_unresponsive(true);
    let started = std::time::Instant::now();
    let n = power(&l, &u, "power on").await;
    assert!(n["last_error"].as_str().unwrap().contains("did not answer"), "{n}");
    assert!(started.elapsed() < Duration::from_secs(20));
    l.bmc.faults().set_unresponsive(false);

    // The BMC accepts power on but the machine ignores it: the check after the change fails.
    l.bmc.faults().set_ignore_power(true);
    let n = power(&l, &u, "power on").await;
    assert!(n["last_error"].as_str().unwrap().contains("did not reach power on"), "{n}");
    l.bmc.faults().set_ignore_power(false);

    // Missing and invalid driver_info are reported by validation.
    let r =
        l.api.patch(&format!("/v1/nodes/{u}"), json!([{"op": "remove", "path": "/driver_info/ipmi_address"}])).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = l.api.get(&format!("/v1/nodes/{u}/validate")).await.json();
    assert_eq!(v["power"]["result"], json!(false));
    assert!(v["power"]["reason"].as_str().unwrap().contains("ipmi_address"));
    let r = l.api.put(&format!("/v1/nodes/{u}/states/power"), json!({"target": "power on"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = l
        .api
        .patch(
            &format!("/v1/nodes/{u}"),
            json!([{"op": "add", "path": "/driver_info/ipmi_address", "value": "127.0.0.1"},
                   {"op": "add", "path": "/driver_info/ipmi_bridging", "value": "single"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = l.api.get(&format!("/v1/nodes/{u}/validate")).await.json();
    assert!(v["power"]["reason"].as_str().unwrap().contains("bridging"));
}
