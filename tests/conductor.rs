//! Conductor behaviour on a paused clock: callback timeouts, crash recovery, power-state sync,
//! heartbeats resuming waiting work, and the worker pool's bound.

mod common;

use async_trait::async_trait;
use axum::http::StatusCode;
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::Config;
use ferric_service::db::Db;
use ferric_service::drivers::{DriverError, PowerInterface, PowerProgress, PowerRequest, Task};
use ferric_types::clock::Clock;
use ferric_types::models::{PowerState, ProvisionState};
use ferric_types::trace::Recorder;
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use common::waiting::WaitingDeploy;

/// Hardware whose power the test controls, and which can stop answering.
#[derive(Default)]
struct Hardware {
    on: Mutex<bool>,
    broken: Mutex<bool>,
}

struct TestPower(Arc<Hardware>);

#[async_trait]
impl PowerInterface for TestPower {
    fn validate(&self, _t: &Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn get_power_state(&self, _t: &mut Task) -> Result<PowerState, DriverError> {
        if *self.0.broken.lock() {
            return Err(DriverError::failed("BMC not responding"));
        }
        Ok(if *self.0.on.lock() { PowerState::On } else { PowerState::Off })
    }
    async fn request_power(&self, _t: &mut Task, request: PowerRequest) -> Result<PowerProgress, DriverError> {
        if *self.0.broken.lock() {
            return Err(DriverError::failed("BMC not responding"));
        }
        *self.0.on.lock() = request.end_state() == PowerState::On;
        Ok(PowerProgress::Reached)
    }
}

fn build(db: Db, hw: Arc<Hardware>) -> common::Api {
    let mut cfg = Config::default();
    cfg.conductor.deploy_callback_timeout = 600;
    cfg.conductor.check_timeouts_interval = 60;
    cfg.conductor.sync_power_state_interval = 60;
    let epoch = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let service =
        Service::build(cfg, db, Outside::real(Clock::virtual_from(epoch, 1)).unwrap(), Recorder::default(), |p| {
            p.registry.register_deploy("fake", Arc::new(WaitingDeploy));
            p.registry.register_power("fake", Arc::new(TestPower(hw)));
        })
        .unwrap();
    common::Api::from_service(service)
}

async fn available_node(api: &common::Api) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let u = api.node(&format!("n{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))).await;
    api.provision(&u, "manage").await;
    api.provision(&u, "provide").await;
    assert_eq!(api.state(&u).await, "available");
    u
}

#[tokio::test(start_paused = true)]
async fn wait_callback_times_out_into_deploy_failed() {
    let hw = Arc::new(Hardware::default());
    let api = build(Db::open_in_memory().unwrap(), hw.clone());
    let _periodic = api.service.conductor.start();
    let u = available_node(&api).await;
    *hw.on.lock() = true;
    api.provision(&u, "active").await;
    assert_eq!(api.state(&u).await, "wait call-back");
    tokio::time::sleep(Duration::from_secs(599)).await;
    api.idle().await;
    assert_eq!(api.state(&u).await, "wait call-back");
    tokio::time::sleep(Duration::from_secs(62)).await;
    api.idle().await;
    let n = api.get(&format!("/v1/nodes/{u}")).await.json();
    assert_eq!(n["provision_state"], json!("deploy failed"));
    assert_eq!(n["target_provision_state"], json!("active"));
    assert_eq!(n["last_error"], json!(format!("Timeout reached while waiting for callback for node {u}")));
    assert_eq!(n["power_state"], json!("power off"), "a timed-out deploy powers the node off");
    assert!(!*hw.on.lock());
    assert_eq!(n["reservation"], json!(null));
}

#[tokio::test(start_paused = true)]
async fn heartbeat_resumes_a_waiting_deploy() {
    let hw = Arc::new(Hardware::default());
    let api = build(Db::open_in_memory().unwrap(), hw);
    let u = available_node(&api).await;
    api.provision(&u, "active").await;
    assert_eq!(api.state(&u).await, "wait call-back");
    // The agent looks itself up and gets a token once.
    let r = api.get(&format!("/v1/lookup?node_uuid={u}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let token = r.json()["config"]["agent_token"].as_str().unwrap().to_string();
    assert_eq!(r.json()["node"]["driver_internal_info"]["agent_secret_token"], json!("******"));
    let again = api.get(&format!("/v1/lookup?node_uuid={u}")).await.json();
    assert_eq!(again["config"]["agent_token"], json!("******"));
    // Heartbeats need the token.
    let hb = |tok: Option<&str>, status: &str| {
        let mut b =
            json!({"callback_url": "http://192.0.2.10:9999", "agent_version": "ferric", "agent_status": status});
        if let Some(t) = tok {
            b["agent_token"] = json!(t);
        }
        b
    };
    let r = api.post(&format!("/v1/heartbeat/{u}"), hb(None, "start")).await;
    assert_eq!(r.fault(), "Agent token is required for heartbeat processing.");
    let r = api.post(&format!("/v1/heartbeat/{u}"), hb(Some("wrong"), "start")).await;
    assert_eq!(r.fault(), "Invalid or missing agent token received.");
    let r = api.post(&format!("/v1/heartbeat/{u}"), hb(Some(&token), "start")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    api.idle().await;
    assert_eq!(api.state(&u).await, "wait call-back");
    // Once the agent's URL is recorded, a heartbeat from another URL is refused; an unknown
    // node is not found.
    let mut moved = hb(Some(&token), "start");
    moved["callback_url"] = json!("http://192.0.2.11:9999");
    let r = api.post(&format!("/v1/heartbeat/{u}"), moved).await;
    assert_eq!(r.fault(), "Detected change in ramdisk provided \"callback_url\"");
    let r = api.post("/v1/heartbeat/6d2b3a4e-0000-4000-8000-000000000001", hb(Some(&token), "start")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = api.post(&format!("/v1/heartbeat/{u}"), hb(Some(&token), "end")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    api.idle().await;
    let n = api.get(&format!("/v1/nodes/{u}")).await.json();
    assert_eq!(n["provision_state"], json!("active"));
    assert_eq!(n["driver_internal_info"]["agent_url"], json!("http://192.0.2.10:9999"));
    // A changed callback URL is refused.
    let mut b = hb(Some(&token), "start");
    b["callback_url"] = json!("http://192.0.2.99:9999");
    assert_eq!(api.post(&format!("/v1/heartbeat/{u}"), b).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn restart_fails_interrupted_work_and_keeps_waiting_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let hw = Arc::new(Hardware::default());
    let (working, waiting);
    {
        let api = build(Db::open(&path).unwrap(), hw.clone());
        working = available_node(&api).await;
        waiting = available_node(&api).await;
        api.provision(&waiting, "active").await;
        // Simulate a crash mid-deploy: the row says "deploying", locked by this host.
        let db = &api.service.db;
        let mut n = db.get_node(&working).unwrap();
        n.provision_state = ProvisionState::Deploying;
        n.target_provision_state = Some(ProvisionState::Active);
        db.update_node(&n).unwrap();
        db.reserve_node(n.uuid, "ferric-conductor").unwrap();
    }
    let api = build(Db::open(&path).unwrap(), hw);
    api.service.conductor.recover();
    // The interrupted deploy fails through the deploy's failure path (its clean-up included).
    api.idle().await;
    let n = api.get(&format!("/v1/nodes/{working}")).await.json();
    assert_eq!(n["provision_state"], json!("deploy failed"));
    assert!(n["last_error"].as_str().unwrap().contains("restarted"));
    assert_eq!(n["reservation"], json!(null));
    assert_eq!(api.state(&waiting).await, "wait call-back");
    assert_eq!(api.service.db.count_reserved().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn power_sync_restores_state_and_gives_up_into_maintenance() {
    let hw = Arc::new(Hardware::default());
    let api = build(Db::open_in_memory().unwrap(), hw.clone());
    let _periodic = api.service.conductor.start();
    let u = available_node(&api).await;
    let r = api.put(&format!("/v1/nodes/{u}/states/power"), json!({"target": "power on"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    api.idle().await;
    assert!(*hw.on.lock());
    // Someone powers it off behind ferric's back: the sync puts it back (Ironic's default).
    *hw.on.lock() = false;
    tokio::time::sleep(Duration::from_secs(61)).await;
    api.idle().await;
    assert!(*hw.on.lock());
    // The BMC stops answering: after 3 failed syncs the node goes to maintenance with a fault.
    *hw.broken.lock() = true;
    tokio::time::sleep(Duration::from_secs(60 * 3 + 1)).await;
    api.idle().await;
    let n = api.get(&format!("/v1/nodes/{u}")).await.json();
    assert_eq!(n["maintenance"], json!(true));
    assert_eq!(n["fault"], json!("power failure"));
    assert!(n["last_error"].as_str().unwrap().contains("BMC not responding"));
}

#[tokio::test(start_paused = true)]
async fn failed_power_action_leaves_last_error() {
    let hw = Arc::new(Hardware::default());
    let api = build(Db::open_in_memory().unwrap(), hw.clone());
    let u = available_node(&api).await;
    *hw.broken.lock() = true;
    api.put(&format!("/v1/nodes/{u}/states/power"), json!({"target": "power on"})).await;
    api.idle().await;
    let n = api.get(&format!("/v1/nodes/{u}")).await.json();
    assert!(n["last_error"].as_str().unwrap().contains("BMC not responding"), "{n}");
    assert_eq!(n["target_power_state"], json!(null));
    assert_eq!(n["reservation"], json!(null));
}

#[tokio::test(start_paused = true)]
async fn worker_pool_is_bounded() {
    let mut cfg = Config::default();
    cfg.conductor.workers = 2;
    cfg.fake.power_ms = 1000;
    let api = common::Api::virtual_clock(cfg);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(api.node(&format!("n{i}")).await);
    }
    let mut codes = Vec::new();
    for id in &ids {
        codes.push(api.put(&format!("/v1/nodes/{id}/states/power"), json!({"target": "power on"})).await.status);
    }
    assert_eq!(codes, vec![StatusCode::ACCEPTED, StatusCode::ACCEPTED, StatusCode::SERVICE_UNAVAILABLE]);
    api.idle().await;
    let n = api.get(&format!("/v1/nodes/{}", ids[2])).await.json();
    assert_eq!(n["power_state"], json!(null), "the refused request changed nothing");
    assert_eq!(n["reservation"], json!(null));
}
