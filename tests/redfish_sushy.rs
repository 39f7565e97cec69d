//! ferric's virtual Redfish BMC (HTTPS, self-signed) driven by sushy, the library Ironic's
//! `redfish` hardware type talks through: everything that driver calls (`tests/peers/sushy_peer.py`).
//! Skipped, saying so, when /opt/ferric-venv's Python or sushy is missing (`.ci/install-deps`).

use ferric_lab::machine::{SimMachine, SimMachineConfig};
use ferric_sim::machine::{BootDevice, Inventory};
use ferric_sim::redfish::{RedfishBmc, RedfishConfig, self_signed_tls, serve};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

const PYTHON: &str = "/opt/ferric-venv/bin/python";

fn sushy_available() -> bool {
    Path::new(PYTHON).exists()
        && std::process::Command::new(PYTHON).args(["-c", "import sushy"]).output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_drives_the_redfish_bmc_over_https() {
    if !sushy_available() {
        eprintln!("SKIPPED: {PYTHON} with sushy is not installed (run .ci/install-deps)");
        return;
    }
    let machine = Arc::new(SimMachine::new(
        "node-0",
        SimMachineConfig {
            soft_off_delay_ms: 0,
            macs: vec![[0x52, 0x54, 0, 0x12, 0x34, 0x56]],
            inventory: Inventory { cpus: 8, cpu_arch: "x86-64".into(), memory_mib: 16384, disks: vec![50 << 30] },
            ..Default::default()
        },
    ));
    let bmc = RedfishBmc::new(RedfishConfig { seed: 7, ..RedfishConfig::default() }, machine.clone());
    bmc.faults().set_task_duration(Some(std::time::Duration::from_millis(1500)));
    let (tls, _pem) = self_signed_tls(&["127.0.0.1".into()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(listener, bmc.clone(), Some(tls)));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/sushy_peer.py");
    let out = tokio::process::Command::new(PYTHON)
        .arg(&script)
        .arg(format!("https://127.0.0.1:{port}"))
        .args(["admin", "password"])
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .await
        .unwrap();
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("sushy peer printed no JSON ({e}):\n{stdout}\n{stderr}"));
    assert!(out.status.success() && r.get("error").is_none(), "sushy peer failed: {r:#}\n{stderr}");

    assert_eq!(r["system_id"], "System.1");
    assert_eq!(r["session_key_set"], true, "SessionOrBasicAuth logged in with a session");
    assert_eq!(r["processor_count"], 8);
    assert_eq!(r["processor_arch"], "x86");
    assert_eq!(r["memory_gib"], 16.0);
    assert_eq!(r["macs"], serde_json::json!(["52:54:00:12:34:56"]));
    assert_eq!(r["simple_storage_max"], 50u64 << 30);
    assert_eq!(r["storage_max"], 50u64 << 30);
    let p = &r["powers"];
    assert_eq!(p["On"], serde_json::json!(["On", "On"]));
    assert_eq!(p["ForceOff"], serde_json::json!(["Off"]));
    assert_eq!(p["GracefulShutdown"], serde_json::json!(["Off"]));
    assert_eq!(p["ForceRestart"], serde_json::json!(["On"]));
    assert_eq!(p["PowerCycle"], serde_json::json!(["On"]));
    assert_eq!(r["boot_pxe"], serde_json::json!(["Pxe", "Continuous", "UEFI"]));
    assert_eq!(r["boot_hdd"], serde_json::json!(["Hdd", "Once", "Legacy"]));
    assert_eq!(r["boot_http"], serde_json::json!(["UefiHttp", "Once", "UEFI", "http://192.0.2.1:8080/boot.efi"]));
    assert_eq!(r["boot_cd"][0], "Cd");
    assert_eq!(r["led"], "Blinking");
    assert_eq!(r["mgr_vmedia_inserted"], serde_json::json!([true, "http://192.0.2.1:8080/manager.iso"]));
    assert_eq!(r["mgr_vmedia_ejected"][0], false);
    assert_eq!(r["sys_vmedia_seen_on_manager"], serde_json::json!([true, "http://192.0.2.1:8080/system.iso"]));
    assert_eq!(r["sys_vmedia_ejected"], false);
    assert_eq!(r["bios_before"], "Enabled");
    assert_eq!(r["bios_pending"], serde_json::json!({"ProcTurboMode": "Disabled", "BootRetryCount": 7}));
    assert_eq!(r["bios_current_before_reset"], "Enabled");
    assert_eq!(r["bios_after_reset"], serde_json::json!(["Disabled", 7]));
    assert_eq!(r["task_final"], serde_json::json!(["Completed", 100]));
    assert_eq!(r["firmware_before"]["BIOS"], "1.0.0");
    assert_eq!(r["firmware_after"]["BIOS"], "1.0.1");
    assert_eq!(r["session_closed"], true);

    // What reached the machine and the BMC's own counters agree with the script.
    let last_boot = machine.subscribe().borrow().last_boot;
    assert_eq!(last_boot.map(|b| b.device), Some(BootDevice::Cdrom), "the BIOS step's power on booted the CD once");
    let s = bmc.stats();
    assert_eq!(s.nmi, 1);
    assert!(s.sessions_created >= 1 && s.sessions_deleted >= 1, "{s:?}");
    assert_eq!((s.vmedia_inserts, s.vmedia_ejects), (2, 2));
    assert_eq!((s.tasks_started, s.tasks_completed), (1, 1));
    assert_eq!(s.auth_failures, 0, "{s:?}");
}
