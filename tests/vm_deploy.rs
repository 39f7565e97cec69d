//! End to end with QEMU VMs: the full service (API, conductor, ipmi hardware type through a
//! virtual BMC, ferric's DHCP/TFTP/HTTP boot, image service) deploys VMs whose deploy ramdisk
//! runs the real `ferric-agent`, by both flows, in a private network namespace.
//!
//! The tests run one at a time (each lab already uses both cores under TCG). Timings are printed
//! (`TIMING ...` lines, `cargo test --test vm_deploy -- --nocapture`), not asserted. The direct
//! and iscsi deploys are also compared with the simulated fleet's (`scenarios/happy-direct.toml`,
//! `happy-iscsi.toml`): same steps, same order.

mod common;

use common::serve::follows_seed;
use ferric_lab::qemu::{BmcKind, BootKind, Flow, LabOptions, QemuLab};
use ferric_lab::scenario::{RunOptions, Scenario};
use ferric_sim::machine::Machine;
use ferric_types::trace::seed;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn lab(vms: usize, callback_timeout: u64) -> (QemuLab, tempfile::TempDir) {
    let dir = tempfile::Builder::new().prefix("fl").tempdir_in("/tmp").unwrap();
    let mut opts = LabOptions::new(vms, dir.path());
    opts.callback_timeout_secs = callback_timeout;
    (QemuLab::start(opts).expect("QEMU lab"), dir)
}

/// `(from, to, label)` of timed steps.
fn triples(steps: &[(f64, String, String, String)]) -> Vec<(String, String, String)> {
    steps.iter().map(|(_, f, t, l)| (f.clone(), t.clone(), l.clone())).collect()
}

fn print_steps(name: &str, steps: &[(f64, String, String, String)]) {
    for (at, from, to, label) in steps {
        eprintln!("STEP {name} {at:7.1} s {from} -> {to}: {label}");
    }
}

fn read_at(path: &std::path::Path, offset: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// The seed's messages of a trace without the polling exchange, repeats (DHCP retried, the two
/// PXE stages) folded, from the deploy request on.
fn normalize(events: Vec<(String, String, String)>) -> Vec<(String, String, String)> {
    let start = events.iter().position(|e| e.2 == seed::SET_INSTANCE_INFO).unwrap_or(0);
    let mut out: Vec<(String, String, String)> = Vec::new();
    for e in events.into_iter().skip(start) {
        if e.2 == seed::IS_DEPLOY_DONE || e.2 == seed::STILL_WORKING {
            continue;
        }
        let n = out.len();
        if (n >= 1 && out[n - 1] == e) || (n >= 2 && out[n - 2] == e) {
            continue;
        }
        out.push(e);
    }
    out
}

#[test]
fn direct_deploy_boots_from_disk_then_undeploy_cleans_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (lab, _dir) = lab(1, 180);
    let fx = lab.fixtures.clone();
    let (id, steps) = lab.block_on(async {
        let image = lab.upload("raw", &fx.whole_disk_raw, "raw").await.unwrap();
        let id = lab.enroll(0, Flow::Direct, Value::Null).await.unwrap();
        let t = lab.deploy(0, &id, &image, Flow::Direct).await.unwrap();
        eprintln!("TIMING direct deploy (TCG): active {:.1} s, instance marker {:.1} s", t.to_active, t.to_marker);
        let steps = lab.steps(&id).await.unwrap();
        print_steps("direct", &steps);
        follows_seed(&triples(&steps), &seed::direct()).unwrap();
        let node = lab.node(&id).await.unwrap();
        assert_eq!(node["power_state"], "power on");
        assert!(node["last_error"].is_null(), "{node}");
        // The image went onto the VM's disk: its MBR is the fixture's.
        assert_eq!(read_at(&lab.vms[0].disk, 0, 512), read_at(&fx.whole_disk_raw, 0, 512));
        (id, steps)
    });

    // Fidelity: the simulated fleet's happy path records the same steps in the same order.
    let vm = normalize(triples(&steps));
    assert_eq!(vm, simulated("happy-direct.toml"), "QEMU vs simulated direct deploy");

    lab.block_on(async {
        // Undeploy with cleaning: the ramdisk boots again and erases the disk's metadata.
        let vm = &lab.vms[0];
        lab.patch(&id, json!([{"op": "replace", "path": "/automated_clean", "value": true}])).await.unwrap();
        let t0 = std::time::Instant::now();
        lab.provision(&id, json!({"target": "deleted"})).await.unwrap();
        let node = lab.wait_state(&id, "available", Duration::from_secs(600)).await.unwrap();
        eprintln!("TIMING undeploy + cleaning (TCG): available after {:.1} s", t0.elapsed().as_secs_f64());
        assert!(node["last_error"].is_null(), "{node}");
        assert_eq!(node["power_state"], "power off");
        assert!(node["instance_info"].as_object().is_none_or(|m| m.is_empty()), "{node}");
        assert!(read_at(&vm.disk, 0, 512).iter().all(|b| *b == 0), "MBR erased");
        let clean = lab.steps(&id).await.unwrap();
        assert!(clean.iter().any(|s| s.3 == seed::LOOKUP), "the ramdisk came back for cleaning");
    });
}

/// Runs a library scenario and returns its recorded deploy, normalized.
fn simulated(file: &str) -> Vec<(String, String, String)> {
    let path = format!("{}/scenarios/{file}", env!("CARGO_MANIFEST_DIR"));
    let scenario = Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    let out = ferric_lab::scenario::run(&scenario, &RunOptions::default()).unwrap();
    assert!(out.report.passed, "{file}");
    let (_, events) = out.deploy.expect("the scenario deploys");
    normalize(
        events.iter().map(|e| (e.from.as_str().to_string(), e.to.as_str().to_string(), e.label.clone())).collect(),
    )
}

#[test]
fn iscsi_deploy_of_a_qcow2_image_boots_from_disk() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (lab, _dir) = lab(1, 180);
    let fx = lab.fixtures.clone();
    let steps = lab.block_on(async {
        let image = lab.upload("qcow2", &fx.whole_disk_qcow2, "qcow2").await.unwrap();
        let id = lab.enroll(0, Flow::Iscsi, Value::Null).await.unwrap();
        let t = lab.deploy(0, &id, &image, Flow::Iscsi).await.unwrap();
        eprintln!("TIMING iscsi deploy (TCG): active {:.1} s, instance marker {:.1} s", t.to_active, t.to_marker);
        let steps = lab.steps(&id).await.unwrap();
        print_steps("iscsi", &steps);
        follows_seed(&triples(&steps), &seed::iscsi()).unwrap();
        assert_eq!(read_at(&lab.vms[0].disk, 0, 512), read_at(&fx.whole_disk_raw, 0, 512));
        steps
    });
    // Fidelity: the simulated fleet's iscsi happy path records the same steps in the same order.
    let vm = normalize(triples(&steps));
    assert_eq!(vm, simulated("happy-iscsi.toml"), "QEMU vs simulated iscsi deploy");
}

#[test]
fn two_vms_deploy_at_once_one_by_each_flow() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (lab, _dir) = lab(2, 300);
    let fx = lab.fixtures.clone();
    lab.block_on(async {
        let image = lab.upload("raw", &fx.whole_disk_raw, "raw").await.unwrap();
        let a = lab.enroll(0, Flow::Direct, Value::Null).await.unwrap();
        let b = lab.enroll(1, Flow::Iscsi, Value::Null).await.unwrap();
        let (ta, tb) = tokio::join!(lab.deploy(0, &a, &image, Flow::Direct), lab.deploy(1, &b, &image, Flow::Iscsi));
        let (ta, tb) = (ta.unwrap(), tb.unwrap());
        eprintln!(
            "TIMING two VMs at once (TCG): direct active {:.1} s, iscsi active {:.1} s",
            ta.to_active, tb.to_active
        );
        for vm in &lab.vms {
            assert_eq!(read_at(&vm.disk, 0, 512), read_at(&fx.whole_disk_raw, 0, 512), "{}", vm.name);
        }
    });
}

/// Redfish: the `redfish` hardware type (HTTPS to the VM's Redfish BMC, its certificate checked)
/// deploys by virtual media with each flow — the deploy ISO in the VM's CD drive through QMP,
/// boot once from CD, a static address from `network_data`, no DHCP — and, in the same lab and
/// one after the other, by PXE, for the README's virtual media vs PXE row.
#[test]
fn redfish_virtual_media_deploys_by_each_flow_without_dhcp_and_against_pxe() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (lab, _dir) = lab(3, 300);
    let fx = lab.fixtures.clone();
    lab.block_on(async {
        let image = lab.upload("raw", &fx.whole_disk_raw, "raw").await.unwrap();
        let runs = [
            (0, Flow::Direct, BootKind::VirtualMedia),
            (1, Flow::Direct, BootKind::Pxe),
            (2, Flow::Iscsi, BootKind::VirtualMedia),
        ];
        for (i, flow, boot) in runs {
            let vm = &lab.vms[i];
            let id = lab.enroll_with(i, flow, BmcKind::Redfish, boot, Value::Null).await.unwrap();
            let from = vm.machine.serial().position();
            let t = lab.deploy(i, &id, &image, flow).await.unwrap();
            eprintln!(
                "TIMING redfish {boot:?} {} deploy (TCG): active {:.1} s, instance marker {:.1} s",
                flow.interface(),
                t.to_active,
                t.to_marker
            );
            let steps = lab.steps(&id).await.unwrap();
            print_steps(&format!("redfish-{boot:?}-{}", flow.interface()), &steps);
            let node = lab.node(&id).await.unwrap();
            assert!(node["last_error"].is_null(), "{node}");
            assert_eq!(node["power_state"], "power on");
            assert_eq!(node["driver_info"]["redfish_password"], "******", "{node}");
            assert_eq!(read_at(&vm.disk, 0, 512), read_at(&fx.whole_disk_raw, 0, 512), "{}", vm.name);
            let serial = vm.machine.serial().contents().get(from as usize..).unwrap_or_default().to_string();
            if boot == BootKind::VirtualMedia {
                let says = |l: &str| steps.iter().any(|s| s.3 == l);
                assert!(says(ferric_service::drivers::redfish_boot::PREPARE_VMEDIA_DEPLOY), "{steps:?}");
                assert!(!says(seed::UPDATE_DHCP), "{steps:?}");
                assert!(serial.contains("FERRIC-RAMDISK-STATIC"), "static address from network_data: {serial}");
                assert!(!serial.contains("FERRIC-RAMDISK-DHCP "), "no DHCP with virtual media: {serial}");
            } else {
                assert!(serial.contains("FERRIC-RAMDISK-DHCP "), "{serial}");
            }
        }
    });
}

#[test]
fn agent_killed_mid_deploy_fails_the_deploy_after_the_callback_timeout() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // Long enough for the ramdisk to boot under TCG, short for a test.
    let (lab, _dir) = lab(1, 45);
    let fx = lab.fixtures.clone();
    lab.block_on(async {
        let image = lab.upload("raw", &fx.whole_disk_raw, "raw").await.unwrap();
        // The deploy ramdisk kills its agent 2 s after starting it.
        let extra = json!({"kernel_append_params": "console=ttyS0 ferric.agent_lifetime=2"});
        let id = lab.enroll(0, Flow::Direct, extra).await.unwrap();
        lab.patch(&id, json!([{"op": "add", "path": "/instance_info/image_source", "value": image}])).await.unwrap();
        let vm = &lab.vms[0];
        let from = vm.machine.serial().position();
        let t0 = std::time::Instant::now();
        lab.provision(&id, json!({"target": "active"})).await.unwrap();
        vm.machine
            .wait_for_serial("FERRIC-AGENT-KILLED", from, Duration::from_secs(240))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", vm.machine.serial().tail(3000)));
        let node = lab.wait_state(&id, "deploy failed", Duration::from_secs(300)).await.unwrap();
        eprintln!("TIMING agent killed: deploy failed after {:.1} s", t0.elapsed().as_secs_f64());
        let err = node["last_error"].as_str().unwrap_or_default();
        assert!(!err.is_empty(), "{node}");
        assert_eq!(node["power_state"], "power off", "{node}");
        assert_eq!(
            vm.machine.power_state().await.unwrap(),
            ferric_sim::machine::PowerState::Off,
            "the VM itself is off"
        );
        // Nothing was written to the disk.
        assert!(read_at(&vm.disk, 0, 512).iter().all(|b| *b == 0));
    });
}
