//! The Redfish BMC in process (tower `oneshot`, no sockets), in front of a small fake machine.

use super::*;
use crate::machine::Inventory;
use async_trait::async_trait;
use tower::ServiceExt;

#[derive(Default)]
struct FakeMachine {
    s: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    on: bool,
    boot: BootSelection,
    media: Option<String>,
    http_boot_uri: Option<String>,
    /// Boot selections consumed by boots, in order.
    booted: Vec<BootSelection>,
}

impl FakeMachine {
    fn boot_now(s: &mut FakeState) {
        s.booted.push(s.boot);
        if !s.boot.persistent {
            s.boot = BootSelection::default();
        }
    }
}

#[async_trait]
impl Machine for FakeMachine {
    fn name(&self) -> &str {
        "fake"
    }
    fn macs(&self) -> Vec<[u8; 6]> {
        vec![[0x52, 0x54, 0, 0, 0, 1], [0x52, 0x54, 0, 0, 0, 2]]
    }
    async fn power_state(&self) -> Result<PowerState, MachineError> {
        Ok(if self.s.lock().on { PowerState::On } else { PowerState::Off })
    }
    async fn power_on(&self) -> Result<(), MachineError> {
        let mut s = self.s.lock();
        if !s.on {
            s.on = true;
            Self::boot_now(&mut s);
        }
        Ok(())
    }
    async fn power_off(&self) -> Result<(), MachineError> {
        self.s.lock().on = false;
        Ok(())
    }
    async fn soft_off(&self) -> Result<(), MachineError> {
        self.s.lock().on = false;
        Ok(())
    }
    async fn reset(&self) -> Result<(), MachineError> {
        let mut s = self.s.lock();
        if s.on {
            Self::boot_now(&mut s);
        }
        Ok(())
    }
    async fn set_boot(&self, selection: BootSelection) -> Result<(), MachineError> {
        self.s.lock().boot = selection;
        Ok(())
    }
    async fn boot(&self) -> Result<BootSelection, MachineError> {
        Ok(self.s.lock().boot)
    }
    fn inventory(&self) -> Inventory {
        Inventory { cpus: 4, cpu_arch: "x86-64".into(), memory_mib: 8192, disks: vec![20 << 30, 40 << 30] }
    }
    async fn insert_media(&self, url: &str) -> Result<(), MachineError> {
        if url.contains("broken") {
            return Err(MachineError::Failed("cannot fetch".into()));
        }
        self.s.lock().media = Some(url.to_string());
        Ok(())
    }
    async fn eject_media(&self) -> Result<(), MachineError> {
        self.s.lock().media = None;
        Ok(())
    }
    async fn set_http_boot_uri(&self, uri: Option<String>) -> Result<(), MachineError> {
        self.s.lock().http_boot_uri = uri;
        Ok(())
    }
}

struct Rig {
    bmc: RedfishBmc,
    machine: Arc<FakeMachine>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

const BASIC: &str = "Basic YWRtaW46cGFzc3dvcmQ="; // admin:password
const SYS: &str = "/redfish/v1/Systems/System.1";

fn rig() -> Rig {
    rig_with(RedfishConfig::default())
}

fn rig_with(config: RedfishConfig) -> Rig {
    let machine = Arc::new(FakeMachine::default());
    Rig { bmc: RedfishBmc::new(config, machine.clone()), machine }
}

impl Rig {
    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Option<Value>) -> Answer {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&b).unwrap())
            }
            None => Body::empty(),
        };
        let resp = self.bmc.router().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer { status, headers, body }
    }
    async fn get(&self, uri: &str) -> Answer {
        self.call("GET", uri, &[("authorization", BASIC)], None).await
    }
    async fn patch(&self, uri: &str, body: Value) -> Answer {
        self.call("PATCH", uri, &[("authorization", BASIC)], Some(body)).await
    }
    async fn post(&self, uri: &str, body: Value) -> Answer {
        self.call("POST", uri, &[("authorization", BASIC)], Some(body)).await
    }
    async fn reset(&self, t: &str) -> Answer {
        self.post(&format!("{SYS}/Actions/ComputerSystem.Reset"), json!({ "ResetType": t })).await
    }
}

fn message_id(a: &Answer) -> String {
    a.body["error"]["@Message.ExtendedInfo"][0]["MessageId"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn service_root_and_versions_are_public_and_well_formed() {
    let r = rig();
    let a = r.call("GET", "/redfish", &[], None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, json!({ "v1": "/redfish/v1/" }));
    for uri in ["/redfish/v1", "/redfish/v1/"] {
        let a = r.call("GET", uri, &[], None).await;
        assert_eq!(a.status, 200, "{uri}");
        assert_eq!(a.body["@odata.type"], "#ServiceRoot.v1_16_0.ServiceRoot");
        assert_eq!(a.body["Links"]["Sessions"]["@odata.id"], "/redfish/v1/SessionService/Sessions");
        assert_eq!(a.headers["odata-version"], "4.0");
        assert_eq!(a.headers["content-type"], "application/json; charset=utf-8");
    }
    let a = r.call("GET", "/redfish/v1/$metadata", &[], None).await;
    assert_eq!(a.status, 200);
    let xml = a.body.as_str().unwrap();
    assert!(xml.contains("ComputerSystem.v1_20_0") && xml.contains("ServiceContainer"), "{xml}");
    let a = r.call("GET", "/redfish/v1/odata", &[], None).await;
    assert_eq!(a.body["value"][0]["url"], "/redfish/v1/");
}

#[tokio::test]
async fn unauthenticated_requests_get_401_with_a_redfish_body() {
    let r = rig();
    let a = r.call("GET", SYS, &[], None).await;
    assert_eq!(a.status, 401);
    assert!(a.headers["www-authenticate"].to_str().unwrap().starts_with("Basic realm="));
    assert!(message_id(&a).starts_with("Base.1."), "{}", a.body);
    assert!(a.body["error"]["code"].as_str().unwrap().ends_with("GeneralError"));
    let a = r.call("GET", SYS, &[("authorization", "Basic YWRtaW46d3Jvbmc=")], None).await;
    assert_eq!(a.status, 401);
    let a = r.call("GET", SYS, &[("authorization", "Basic !!!")], None).await;
    assert_eq!(a.status, 401);
    let a = r.call("GET", SYS, &[("x-auth-token", "nope")], None).await;
    assert_eq!(a.status, 401);
    assert_eq!(r.bmc.stats().auth_failures, 4);
}

#[tokio::test]
async fn unknown_uris_methods_and_bad_json() {
    let r = rig();
    let a = r.get("/redfish/v1/Systems/Nope").await;
    assert_eq!(a.status, 404);
    assert!(message_id(&a).ends_with("ResourceMissingAtURI"));
    let a = r.call("DELETE", SYS, &[("authorization", BASIC)], None).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers["allow"], "GET, HEAD, PATCH");
    let req = http::Request::builder()
        .method("PATCH")
        .uri(SYS)
        .header("authorization", BASIC)
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let resp = r.bmc.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    let a = r.patch(SYS, json!({ "Bogus": 1 })).await;
    assert_eq!(a.status, 400);
    assert!(message_id(&a).ends_with("PropertyUnknown"));
    let a = r.patch(SYS, json!({ "PowerState": "On" })).await;
    assert!(message_id(&a).ends_with("PropertyNotWritable"));
    let a = r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "Floppy" } })).await;
    assert_eq!(a.status, 400);
    assert!(message_id(&a).ends_with("PropertyValueNotInList"));
    let a = r.reset("Explode").await;
    assert_eq!(a.status, 400);
    assert!(message_id(&a).ends_with("ActionParameterValueNotInList"));
    let a = r.post(&format!("{SYS}/Actions/ComputerSystem.Reset"), json!({})).await;
    assert!(message_id(&a).ends_with("ActionParameterMissing"));
}

#[tokio::test]
async fn power_actions_drive_the_machine() {
    let r = rig();
    assert_eq!(r.get(SYS).await.body["PowerState"], "Off");
    assert_eq!(r.reset("On").await.status, 204);
    assert_eq!(r.get(SYS).await.body["PowerState"], "On");
    assert_eq!(r.get("/redfish/v1/Chassis/Chassis.1").await.body["PowerState"], "On");
    for t in ["ForceRestart", "GracefulRestart", "PowerCycle", "Nmi"] {
        assert_eq!(r.reset(t).await.status, 204, "{t}");
    }
    assert_eq!(r.reset("GracefulShutdown").await.status, 204);
    assert_eq!(r.get(SYS).await.body["PowerState"], "Off");
    r.reset("On").await;
    r.reset("ForceOff").await;
    assert_eq!(r.get(SYS).await.body["PowerState"], "Off");
    let s = r.bmc.stats();
    assert_eq!((s.power_on, s.power_off, s.soft_off, s.reset, s.power_cycle, s.nmi), (2, 1, 1, 2, 1, 1));
}

#[tokio::test]
async fn boot_patch_maps_to_the_machine() {
    let r = rig();
    let b = &r.get(SYS).await.body["Boot"];
    assert_eq!(b["BootSourceOverrideEnabled"], "Disabled");
    assert!(b["BootSourceOverrideTarget@Redfish.AllowableValues"].as_array().unwrap().contains(&json!("UefiHttp")));
    let a = r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "Legacy" } })).await;
    assert_eq!(a.status, 200);
    assert_eq!(r.machine.s.lock().boot, BootSelection { device: BootDevice::Pxe, persistent: true, efi: false });
    assert_eq!(a.body["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(a.body["Boot"]["BootSourceOverrideMode"], "Legacy");
    r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI" } })).await;
    assert_eq!(r.machine.s.lock().boot, BootSelection { device: BootDevice::Cdrom, persistent: false, efi: true });
    r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "Hdd" } })).await;
    assert_eq!(r.machine.s.lock().boot.device, BootDevice::Disk);
    r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "BiosSetup" } })).await;
    assert_eq!(r.machine.s.lock().boot.device, BootDevice::Bios);
    let a = r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "UefiHttp", "HttpBootUri": "http://192.0.2.1/boot.efi", "BootSourceOverrideMode": "Legacy" } })).await;
    assert_eq!(r.machine.s.lock().boot, BootSelection { device: BootDevice::Pxe, persistent: false, efi: true });
    assert_eq!(a.body["Boot"]["BootSourceOverrideTarget"], "UefiHttp");
    assert_eq!(a.body["Boot"]["HttpBootUri"], "http://192.0.2.1/boot.efi");
    assert_eq!(r.machine.s.lock().http_boot_uri.as_deref(), Some("http://192.0.2.1/boot.efi"));
    // A once override is consumed by the boot.
    r.reset("On").await;
    assert_eq!(r.get(SYS).await.body["Boot"]["BootSourceOverrideEnabled"], "Disabled");
    r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once" } })).await;
    r.patch(SYS, json!({ "Boot": { "BootSourceOverrideEnabled": "Disabled" } })).await;
    assert_eq!(r.machine.s.lock().boot.device, BootDevice::None);
    assert_eq!(r.bmc.stats().boot_patches, 7);
    // Any other selection tells the machine a network boot is plain PXE again.
    assert_eq!(r.machine.s.lock().http_boot_uri, None);
}

#[tokio::test]
async fn uefi_http_boot_keeps_its_uri_and_can_be_left_out() {
    let r = rig();
    let uri = "http://192.0.2.1/redfish/boot.iso";
    r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideMode": "UEFI", "BootSourceOverrideEnabled": "Once", "HttpBootUri": uri } })).await;
    // A PATCH naming the target only (the management interface's) keeps the stored URI.
    let a = r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI" } })).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["Boot"]["HttpBootUri"], uri);
    assert_eq!(r.machine.s.lock().http_boot_uri.as_deref(), Some(uri));
    // Cleared: the property is null, the override off, the machine told.
    let a = r.patch(SYS, json!({ "Boot": { "BootSourceOverrideEnabled": "Disabled", "HttpBootUri": null } })).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["Boot"]["HttpBootUri"], Value::Null);
    assert_eq!(a.body["Boot"]["BootSourceOverrideEnabled"], "Disabled");
    assert_eq!(r.machine.s.lock().http_boot_uri, None);
}

#[tokio::test]
async fn a_bmc_without_uefi_http_boot_neither_shows_nor_takes_it() {
    let r = rig_with(RedfishConfig { uefi_http: false, ..RedfishConfig::default() });
    let b = r.get(SYS).await.body["Boot"].clone();
    assert!(!b["BootSourceOverrideTarget@Redfish.AllowableValues"].as_array().unwrap().contains(&json!("UefiHttp")));
    assert!(b.get("HttpBootUri").is_none(), "{b}");
    let a = r.patch(SYS, json!({ "Boot": { "BootSourceOverrideTarget": "UefiHttp" } })).await;
    assert_eq!(a.status, 400);
    let a = r.patch(SYS, json!({ "Boot": { "HttpBootUri": "http://192.0.2.1/boot.iso" } })).await;
    assert_eq!(a.status, 400);
    assert_eq!(r.machine.s.lock().http_boot_uri, None);
}

#[tokio::test]
async fn indicator_led_and_location_indicator() {
    let r = rig();
    let a = r.patch(SYS, json!({ "IndicatorLED": "Blinking" })).await;
    assert_eq!(a.body["IndicatorLED"], "Blinking");
    assert_eq!(a.body["LocationIndicatorActive"], true);
    let a = r.patch(SYS, json!({ "LocationIndicatorActive": false })).await;
    assert_eq!(a.body["IndicatorLED"], "Off");
    assert_eq!(r.patch(SYS, json!({ "IndicatorLED": 3 })).await.status, 400);
}

#[tokio::test]
async fn etags_if_match_and_if_none_match() {
    let r = rig();
    let a = r.get(SYS).await;
    let etag = a.headers["etag"].to_str().unwrap().to_string();
    assert_eq!(r.get(SYS).await.headers["etag"], etag.as_str(), "stable");
    let a = r.call("GET", SYS, &[("authorization", BASIC), ("if-none-match", &etag)], None).await;
    assert_eq!(a.status, 304);
    let body = json!({ "IndicatorLED": "Lit" });
    let a = r.call("PATCH", SYS, &[("authorization", BASIC), ("if-match", "\"0000\"")], Some(body.clone())).await;
    assert_eq!(a.status, 412);
    assert!(message_id(&a).ends_with("PreconditionFailed"));
    let a = r.call("PATCH", SYS, &[("authorization", BASIC), ("if-match", &etag)], Some(body.clone())).await;
    assert_eq!(a.status, 200);
    assert_ne!(a.headers["etag"], etag.as_str());
    // The old ETag is stale now.
    let a = r.call("PATCH", SYS, &[("authorization", BASIC), ("if-match", &etag)], Some(body)).await;
    assert_eq!(a.status, 412);
    assert_eq!(r.bmc.stats().etag_mismatches, 2);
}

#[tokio::test]
async fn etag_conflict_knob_gives_one_412_per_patch() {
    let r = rig();
    r.bmc.faults().set_etag_conflict(true);
    let etag = r.get(SYS).await.headers["etag"].to_str().unwrap().to_string();
    let body = json!({ "IndicatorLED": "Lit" });
    let h = [("authorization", BASIC), ("if-match", etag.as_str())];
    assert_eq!(r.call("PATCH", SYS, &h, Some(body.clone())).await.status, 412);
    assert_eq!(r.call("PATCH", SYS, &h, Some(body.clone())).await.status, 200);
    let etag = r.get(SYS).await.headers["etag"].to_str().unwrap().to_string();
    let h = [("authorization", BASIC), ("if-match", etag.as_str())];
    assert_eq!(r.call("PATCH", SYS, &h, Some(body)).await.status, 412, "the next PATCH gets its own");
    assert_eq!(r.bmc.stats().etag_conflicts, 2);
}

#[tokio::test(start_paused = true)]
async fn sessions_login_logout_limit_and_expiry() {
    let r = rig_with(RedfishConfig {
        max_sessions: 2,
        session_timeout: Duration::from_secs(60),
        ..RedfishConfig::default()
    });
    let login = json!({ "UserName": "admin", "Password": "password" });
    let a = r.call("POST", "/redfish/v1/SessionService/Sessions", &[], Some(login.clone())).await;
    assert_eq!(a.status, 201);
    let token = a.headers["x-auth-token"].to_str().unwrap().to_string();
    let location = a.headers["location"].to_str().unwrap().to_string();
    assert_eq!(location, "/redfish/v1/SessionService/Sessions/1");
    assert_eq!(a.body["UserName"], "admin");
    assert!(a.body["Password"].is_null());
    // Same seed, same token.
    let again = rig();
    let b = again.call("POST", "/redfish/v1/SessionService/Sessions/", &[], Some(login.clone())).await;
    assert_eq!(b.headers["x-auth-token"].to_str().unwrap(), token);

    let a = r.call("GET", SYS, &[("x-auth-token", &token)], None).await;
    assert_eq!(a.status, 200);
    let a = r
        .call("POST", "/redfish/v1/SessionService/Sessions", &[], Some(json!({ "UserName": "admin", "Password": "x" })))
        .await;
    assert_eq!(a.status, 401);
    let second = r.call("POST", "/redfish/v1/SessionService/Sessions", &[], Some(login.clone())).await;
    assert_eq!(second.status, 201);
    let a = r.call("POST", "/redfish/v1/SessionService/Sessions", &[], Some(login.clone())).await;
    assert_eq!(a.status, 503);
    assert!(message_id(&a).ends_with("SessionLimitExceeded"));
    let a = r.get("/redfish/v1/SessionService/Sessions").await;
    assert_eq!(a.body["Members@odata.count"], 2);

    // Idle 61 s: the first session (used last at t=0) expires; keep the second alive.
    tokio::time::advance(Duration::from_secs(30)).await;
    let t2 = second.headers["x-auth-token"].to_str().unwrap().to_string();
    assert_eq!(r.call("GET", SYS, &[("x-auth-token", &t2)], None).await.status, 200);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(r.call("GET", SYS, &[("x-auth-token", &token)], None).await.status, 401);
    assert_eq!(r.call("GET", SYS, &[("x-auth-token", &t2)], None).await.status, 200);
    let loc2 = second.headers["location"].to_str().unwrap().to_string();
    let a = r.call("DELETE", &loc2, &[("x-auth-token", &t2)], None).await;
    assert_eq!(a.status, 204);
    assert_eq!(r.call("GET", SYS, &[("x-auth-token", &t2)], None).await.status, 401);
    let s = r.bmc.stats();
    assert_eq!((s.sessions_created, s.sessions_deleted, s.sessions_expired, s.sessions_refused), (2, 1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn simple_update_runs_as_a_task_on_the_clock() {
    let r = rig();
    r.bmc.faults().set_task_duration(Some(Duration::from_secs(10)));
    assert_eq!(r.get("/redfish/v1/UpdateService/FirmwareInventory/BIOS").await.body["Version"], "1.0.0");
    let a = r
        .post(
            "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate",
            json!({ "ImageURI": "http://192.0.2.1/bios.bin", "TransferProtocol": "HTTP", "Targets": ["/redfish/v1/UpdateService/FirmwareInventory/BIOS"] }),
        )
        .await;
    assert_eq!(a.status, 202);
    let monitor = a.headers["location"].to_str().unwrap().to_string();
    assert_eq!(a.body["TaskState"], "New");
    tokio::time::advance(Duration::from_secs(5)).await;
    let a = r.get(&monitor).await;
    assert_eq!(a.status, 202);
    assert_eq!(a.body["TaskState"], "Running");
    assert_eq!(a.body["PercentComplete"], 50);
    tokio::time::advance(Duration::from_secs(5)).await;
    let a = r.get(&monitor).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["TaskState"], "Completed");
    assert_eq!(a.body["EndTime"], "2026-01-01T00:00:10+00:00");
    assert_eq!(r.get("/redfish/v1/TaskService/Tasks/1").await.body["PercentComplete"], 100);
    assert_eq!(r.get("/redfish/v1/UpdateService/FirmwareInventory/BIOS").await.body["Version"], "1.0.1");
    assert_eq!(r.get(SYS).await.body["BiosVersion"], "1.0.1");

    r.bmc.faults().set_task_fails(true);
    let a = r
        .post(
            "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate",
            json!({ "ImageURI": "http://192.0.2.1/bmc.bin" }),
        )
        .await;
    let monitor = a.headers["location"].to_str().unwrap().to_string();
    tokio::time::advance(Duration::from_secs(11)).await;
    let a = r.get(&monitor).await;
    assert_eq!(a.body["TaskState"], "Exception");
    assert_eq!(a.body["TaskStatus"], "Critical");
    assert_eq!(r.get(SYS).await.body["BiosVersion"], "1.0.1");
    let s = r.bmc.stats();
    assert_eq!((s.tasks_started, s.tasks_completed, s.tasks_failed), (2, 1, 1));
    let a = r.post("/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate", json!({ "ImageURI": 7 })).await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn virtual_media_through_both_uris_and_patch() {
    let r = rig();
    let sys_cd = format!("{SYS}/VirtualMedia/Cd");
    let mgr_cd = "/redfish/v1/Managers/BMC.1/VirtualMedia/Cd";
    let a = r
        .post(&format!("{mgr_cd}/Actions/VirtualMedia.InsertMedia"), json!({ "Image": "http://192.0.2.1/boot.iso" }))
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(r.machine.s.lock().media.as_deref(), Some("http://192.0.2.1/boot.iso"));
    let a = r.get(&sys_cd).await;
    assert_eq!(a.body["Inserted"], true);
    assert_eq!(a.body["Image"], "http://192.0.2.1/boot.iso");
    assert_eq!(a.body["@odata.id"], sys_cd);
    let a = r.post(&format!("{sys_cd}/Actions/VirtualMedia.EjectMedia"), json!({})).await;
    assert_eq!(a.status, 204);
    assert_eq!(r.machine.s.lock().media, None);
    assert_eq!(r.get(mgr_cd).await.body["Inserted"], false);
    // Older BMCs: PATCH Image/Inserted.
    let a =
        r.patch(mgr_cd, json!({ "Image": "http://192.0.2.1/two.iso", "Inserted": true, "WriteProtected": true })).await;
    assert_eq!(a.status, 200);
    assert_eq!(r.machine.s.lock().media.as_deref(), Some("http://192.0.2.1/two.iso"));
    let a = r.patch(&sys_cd, json!({ "Image": null, "Inserted": false })).await;
    assert_eq!(a.body["Inserted"], false);
    assert_eq!(r.machine.s.lock().media, None);
    // The USB slot is the BMC's own.
    let a = r
        .post(
            &format!("{SYS}/VirtualMedia/Usb/Actions/VirtualMedia.InsertMedia"),
            json!({ "Image": "http://x/usb.img" }),
        )
        .await;
    assert_eq!(a.status, 204);
    assert_eq!(r.machine.s.lock().media, None);
    // Machine errors and the fault knob become Redfish errors.
    let a =
        r.post(&format!("{sys_cd}/Actions/VirtualMedia.InsertMedia"), json!({ "Image": "http://x/broken.iso" })).await;
    assert_eq!(a.status, 500);
    assert!(message_id(&a).ends_with("InternalError"));
    r.bmc.faults().set_vmedia_insert_fails(true);
    let a = r.post(&format!("{sys_cd}/Actions/VirtualMedia.InsertMedia"), json!({ "Image": "http://x/a.iso" })).await;
    assert_eq!(a.status, 500);
    let a = r
        .post(&format!("{sys_cd}/Actions/VirtualMedia.InsertMedia"), json!({ "Image": "http://x/a.iso", "Bogus": 1 }))
        .await;
    assert!(message_id(&a).ends_with("ActionParameterUnknown"));
    let s = r.bmc.stats();
    assert_eq!((s.vmedia_inserts, s.vmedia_ejects, s.vmedia_insert_failures), (3, 2, 1));
}

#[tokio::test]
async fn bios_settings_pend_until_reset() {
    let r = rig();
    let bios = format!("{SYS}/Bios");
    let a = r.get(&bios).await;
    assert_eq!(a.body["Attributes"]["ProcTurboMode"], "Enabled");
    assert_eq!(a.body["@Redfish.Settings"]["SettingsObject"]["@odata.id"], format!("{bios}/Settings"));
    let a = r
        .patch(
            &format!("{bios}/Settings"),
            json!({ "Attributes": { "ProcTurboMode": "Disabled", "BootRetryCount": 5 } }),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["Attributes"]["ProcTurboMode"], "Disabled");
    assert_eq!(r.get(&bios).await.body["Attributes"]["ProcTurboMode"], "Enabled");
    assert_eq!(r.patch(&format!("{bios}/Settings"), json!({ "Attributes": { "Nope": "x" } })).await.status, 400);
    assert_eq!(
        r.patch(&format!("{bios}/Settings"), json!({ "Attributes": { "BootRetryCount": "x" } })).await.status,
        400
    );
    r.reset("ForceOff").await;
    assert_eq!(r.get(&bios).await.body["Attributes"]["ProcTurboMode"], "Enabled", "power off applies nothing");
    r.reset("On").await;
    assert_eq!(r.get(&bios).await.body["Attributes"]["ProcTurboMode"], "Disabled");
    assert_eq!(r.get(&bios).await.body["Attributes"]["BootRetryCount"], 5);
    assert_eq!(r.get(&format!("{bios}/Settings")).await.body["Attributes"], json!({}));
    assert_eq!(r.post(&format!("{bios}/Actions/Bios.ResetBios"), json!({})).await.status, 204);
    r.reset("ForceRestart").await;
    assert_eq!(r.get(&bios).await.body["Attributes"]["ProcTurboMode"], "Enabled");
    assert_eq!(r.bmc.stats().bios_applied, 2);
}

#[tokio::test]
async fn inventory_resources() {
    let r = rig();
    let s = r.get(SYS).await.body;
    assert_eq!(s["ProcessorSummary"]["Count"], 4);
    assert_eq!(s["MemorySummary"]["TotalSystemMemoryGiB"], 8.0);
    let nics = r.get(&format!("{SYS}/EthernetInterfaces")).await.body;
    assert_eq!(nics["Members@odata.count"], 2);
    let nic = r.get(nics["Members"][1]["@odata.id"].as_str().unwrap()).await.body;
    assert_eq!(nic["MACAddress"], "52:54:00:00:00:02");
    let st = r.get(&format!("{SYS}/Storage/1")).await.body;
    let d = r.get(st["Drives"][1]["@odata.id"].as_str().unwrap()).await.body;
    assert_eq!(d["CapacityBytes"], 40u64 << 30);
    assert_eq!(r.get(&format!("{SYS}/SimpleStorage/1")).await.body["Devices"][0]["CapacityBytes"], 20u64 << 30);
    assert_eq!(r.get(&format!("{SYS}/Processors/CPU1")).await.body["TotalThreads"], 4);
    assert_eq!(r.get(&format!("{SYS}/EthernetInterfaces/NIC9")).await.status, 404);
    assert_eq!(r.get(&format!("{SYS}/Storage/1/Drives/Disk99")).await.status, 404);
    let m = r.get("/redfish/v1/Managers/BMC.1").await.body;
    assert_eq!(m["ManagerType"], "BMC");
    assert_eq!(m["Links"]["ManagerForServers"][0]["@odata.id"], SYS);
    let p = r.get("/redfish/v1/Chassis/Chassis.1/Power").await.body;
    assert!(p["PowerControl"][0]["PowerConsumedWatts"].is_number());
    let acc = r.get("/redfish/v1/AccountService/Accounts/1").await.body;
    assert!(acc["Password"].is_null());
    assert_eq!(r.get("/redfish/v1/AccountService/Roles/Operator").await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn fault_knobs() {
    let r = rig();
    r.bmc.faults().set_busy_retry_after_secs(Some(7));
    let a = r.get(SYS).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.headers["retry-after"], "7");
    r.bmc.faults().set_busy_retry_after_secs(None);

    r.bmc.faults().set_rate_limit(Some(2));
    assert_eq!(r.get(SYS).await.status, 200);
    assert_eq!(r.get(SYS).await.status, 200);
    let a = r.get(SYS).await;
    assert_eq!(a.status, 429);
    assert!(a.headers.contains_key("retry-after"));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(r.get(SYS).await.status, 200);
    r.bmc.faults().set_rate_limit(None);

    r.bmc.faults().set_latency(Duration::from_millis(500));
    let t0 = Instant::now();
    r.get(SYS).await;
    assert_eq!(t0.elapsed(), Duration::from_millis(500));
    r.bmc.faults().set_latency(Duration::ZERO);

    r.bmc.faults().set_unresponsive(true);
    let t = tokio::time::timeout(Duration::from_secs(30), r.get(SYS)).await;
    assert!(t.is_err(), "never answers");
    r.bmc.faults().set_unresponsive(false);

    r.bmc.faults().set_max_sessions(Some(0));
    let a = r
        .call(
            "POST",
            "/redfish/v1/SessionService/Sessions",
            &[],
            Some(json!({ "UserName": "admin", "Password": "password" })),
        )
        .await;
    assert_eq!(a.status, 503);
    let s = r.bmc.stats();
    assert_eq!((s.busy_replies, s.rate_limited, s.delayed, s.unanswered, s.sessions_refused), (1, 1, 1, 1, 1));
}

#[tokio::test]
async fn headers_and_queries() {
    let r = rig();
    let a = r.call("GET", SYS, &[("authorization", BASIC), ("odata-version", "5.0")], None).await;
    assert_eq!(a.status, 412);
    let a = r.call("GET", SYS, &[("authorization", BASIC), ("accept", "text/html")], None).await;
    assert_eq!(a.status, 406);
    let a = r.call("GET", &format!("{SYS}?$expand=*"), &[("authorization", BASIC)], None).await;
    assert_eq!(a.status, 501);
    let a = r.call("HEAD", SYS, &[("authorization", BASIC)], None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, Value::Null);
    assert!(a.headers["link"].to_str().unwrap().contains("ComputerSystem.v1_20_0.json"));
    let req = http::Request::builder()
        .method("PATCH")
        .uri(SYS)
        .header("authorization", BASIC)
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(r.bmc.router().oneshot(req).await.unwrap().status(), 415);
}

#[test]
fn helpers() {
    assert_eq!(iso8601(EPOCH_UNIX), "2026-01-01T00:00:00+00:00");
    assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00+00:00");
    assert_eq!(bump_version("1.0.9"), "1.0.10");
    assert_eq!(bump_version("1.00"), "1.01");
    assert_eq!(bump_version("x"), "x.1");
    assert!(etag_matches("W/\"ab\", \"cd\"", "\"ab\""));
    assert!(!etag_matches("\"ab\"", "\"cd\""));
}

#[test]
fn self_signed_tls_builds() {
    let (_cfg, pem) = self_signed_tls(&["127.0.0.1".into(), "localhost".into()]).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn debug_output_hides_the_password() {
    let r = rig_with(RedfishConfig { password: "s3cret-pw".into(), ..RedfishConfig::default() });
    let text = format!("{:?}", r.bmc);
    assert!(!text.contains("s3cret-pw") && text.contains("System.1"), "{text}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Whatever arrives (method, path, headers, body), the BMC answers with a status and never
    /// panics.
    #[test]
    fn arbitrary_requests_never_panic(
        method in proptest::sample::select(vec!["GET", "HEAD", "PATCH", "POST", "DELETE", "PUT", "OPTIONS"]),
        segs in proptest::collection::vec(
            proptest::sample::select(vec![
                "redfish", "v1", "Systems", "System.1", "Managers", "BMC.1", "VirtualMedia", "Cd", "Usb",
                "Actions", "ComputerSystem.Reset", "VirtualMedia.InsertMedia", "Bios", "Settings",
                "SessionService", "Sessions", "1", "TaskService", "Tasks", "TaskMonitors", "UpdateService",
                "FirmwareInventory", "BIOS", "UpdateService.SimpleUpdate", "Chassis", "Chassis.1", "Power",
                "EthernetInterfaces", "NIC1", "NIC0", "Storage", "Drives", "Disk0", "Disk99999999999999999999",
                "$metadata", "odata", "", "..", "%00",
            ]),
            0..7,
        ),
        body in proptest::option::of(proptest::prelude::any::<Vec<u8>>()),
        json_body in proptest::option::of(proptest::sample::select(vec![
            r#"{"ResetType": "On"}"#, r#"{"ResetType": 5}"#, r#"{"Image": null}"#, r#"{"Image": "http://x/a.iso", "Inserted": "yes"}"#,
            r#"{"Boot": {"BootSourceOverrideTarget": []}}"#, r#"{"Boot": 1}"#, r#"{"Attributes": {"BootRetryCount": true}}"#,
            r#"{"UserName": "admin", "Password": "password"}"#, r#"{"ImageURI": "x", "Targets": [1]}"#, r#"[]"#, r#"null"#,
            r#"{"SessionTimeout": -1}"#, r#"{"SessionTimeout": 1e300}"#,
        ])),
        auth in proptest::prelude::any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(async {
            let r = rig();
            let path = format!("/{}", segs.join("/"));
            let Ok(uri) = path.parse::<http::Uri>() else { return };
            let mut req = http::Request::builder().method(method).uri(uri).header("content-type", "application/json");
            if auth {
                req = req.header("authorization", BASIC);
            }
            let body = match (json_body, body) {
                (Some(j), _) => Body::from(j.to_string()),
                (None, Some(b)) => Body::from(b),
                (None, None) => Body::empty(),
            };
            let resp = r.bmc.router().oneshot(req.body(body).unwrap()).await.unwrap();
            assert!(resp.status().as_u16() < 600);
        });
    }
}

#[tokio::test]
async fn accounts_and_role_privileges() {
    let r = rig();
    let accounts = "/redfish/v1/AccountService/Accounts";
    let a = r.post(accounts, json!({ "UserName": "viewer", "Password": "pw1", "RoleId": "ReadOnly" })).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let viewer = a.headers["location"].to_str().unwrap().to_string();
    assert_eq!(r.post(accounts, json!({ "UserName": "viewer", "Password": "x" })).await.status, 409);
    assert_eq!(
        r.post(accounts, json!({ "UserName": "op", "Password": "pw2", "RoleId": "Operator" })).await.status,
        201
    );
    assert_eq!(r.get(accounts).await.body["Members@odata.count"], 3);
    let basic = |u: &str, p: &str| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
    };
    let ro = basic("viewer", "pw1");
    let op = basic("op", "pw2");
    // ReadOnly reads, but neither resets nor manages users; it may change its own password.
    assert_eq!(r.call("GET", SYS, &[("authorization", &ro)], None).await.status, 200);
    let reset = format!("{SYS}/Actions/ComputerSystem.Reset");
    let a = r.call("POST", &reset, &[("authorization", &ro)], Some(json!({ "ResetType": "On" }))).await;
    assert_eq!(a.status, 403);
    assert!(message_id(&a).ends_with("InsufficientPrivilege"));
    assert_eq!(r.call("POST", &reset, &[("authorization", &op)], Some(json!({ "ResetType": "On" }))).await.status, 204);
    let other = format!("{accounts}/1");
    assert_eq!(r.call("PATCH", &other, &[("authorization", &ro)], Some(json!({ "Password": "x" }))).await.status, 403);
    assert_eq!(
        r.call("PATCH", &viewer, &[("authorization", &ro)], Some(json!({ "RoleId": "Administrator" }))).await.status,
        403
    );
    assert_eq!(
        r.call("PATCH", &viewer, &[("authorization", &ro)], Some(json!({ "Password": "pw9" }))).await.status,
        200
    );
    assert_eq!(r.call("GET", SYS, &[("authorization", &ro)], None).await.status, 401, "old password");
    assert_eq!(r.call("GET", SYS, &[("authorization", &basic("viewer", "pw9"))], None).await.status, 200);
    // Mixed and OData-only PATCHes.
    let a = r.patch(&viewer, json!({ "Password": "pw3", "BogusProp": "foo" })).await;
    assert_eq!(a.status, 400);
    let a = r.patch(&viewer, json!({ "@odata.id": format!("{viewer}/") })).await;
    assert!(message_id(&a).ends_with("NoOperation"), "{}", a.body);
    // Sessions of a deleted account end with it; the configured account stays.
    let login = json!({ "UserName": "viewer", "Password": "pw9" });
    let s = r.call("POST", "/redfish/v1/SessionService/Sessions", &[], Some(login)).await;
    let token = s.headers["x-auth-token"].to_str().unwrap().to_string();
    assert_eq!(r.call("DELETE", &viewer, &[("authorization", BASIC)], None).await.status, 204);
    assert_eq!(r.call("GET", SYS, &[("x-auth-token", &token)], None).await.status, 401);
    assert_eq!(r.call("DELETE", &other, &[("authorization", BASIC)], None).await.status, 405);
    assert_eq!(r.patch(&other, json!({ "Enabled": false })).await.status, 400);
    assert_eq!(
        r.patch("/redfish/v1/AccountService/Roles/ReadOnly", json!({ "AssignedPrivileges": [] })).await.status,
        405
    );
}
