//! Power control of a QEMU machine through the `Machine` trait, observed through QMP (status and
//! events), the serial console and the process table: ACPI shutdown, reset (with a boot order
//! change), hard power off.

use std::path::Path;
use std::time::{Duration, Instant};

use ferric_sim::machine::{BootDevice, BootSelection, Machine, PowerState};
use ferric_sim::qemu::{
    AgentSource, Disk, DiskBus, DiskFormat, Fixtures, KernelBoot, Nic, NicModel, QemuConfig, QemuMachine, vm_slot,
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(150);
const MARKER: &str = "FERRIC-INSTANCE-BOOTED";

/// A machine that boots fast: the instance kernel (ELF) and ramdisk, root on a copy of the
/// partition image, and an unplugged NIC (so there is a boot order to change).
fn instance_vm(fx: &Fixtures, dir: &Path, name: &str) -> QemuMachine {
    let disk = dir.join("root.raw");
    std::fs::copy(&fx.partition_image, &disk).unwrap();
    let mut config = QemuConfig::new(name, dir.join("vm"));
    config.disk = Some(Disk { path: disk, format: DiskFormat::Raw, bus: DiskBus::Virtio });
    config.nics = vec![Nic { mac: [0x52, 0x54, 0x00, 0xfe, 0x01, 0x01], model: NicModel::VirtioNet, tap: None }];
    config.kernel_boot = Some(KernelBoot {
        kernel: fx.kernel_elf.clone(),
        initrd: Some(fx.instance_ramdisk.clone()),
        append: format!("console=ttyS0 root=UUID={} ferric.image=partition", fx.partition_root_uuid),
    });
    QemuMachine::new(config).unwrap()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn bootindex(vm: &QemuMachine, id: &str) -> i64 {
    vm.qmp("qom-get", Some(json!({"path": format!("/machine/peripheral/{id}"), "property": "bootindex"})))
        .await
        .unwrap()
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn acpi_shutdown_is_seen_through_qmp_and_leaves_no_process() {
    let fx = Fixtures::build(AgentSource::None).await.unwrap();
    let _slot = vm_slot().await;
    let dir = tempfile::tempdir().unwrap();
    let vm = instance_vm(&fx, dir.path(), "acpi");

    let t = Instant::now();
    vm.power_on().await.unwrap();
    vm.wait_for_serial(MARKER, 0, TIMEOUT).await.unwrap();
    let status = vm.qmp("query-status", None).await.unwrap();
    assert_eq!(status["status"], "running");
    let pid = vm.pid().await.unwrap();

    let since = vm.event_seq();
    let t_off = Instant::now();
    vm.soft_off().await.unwrap();
    vm.wait_for_event("POWERDOWN", since, TIMEOUT).await.unwrap();
    // On failure the guest's console says whether its acpid saw the button.
    let shutdown = match vm.wait_for_event("SHUTDOWN", since, TIMEOUT).await {
        Ok(e) => e,
        Err(e) => panic!("{e}; guest console:\n{}", vm.serial().contents()),
    };
    assert_eq!(shutdown.data["guest"], true, "{shutdown:?}");
    assert_eq!(shutdown.data["reason"], "guest-shutdown", "{shutdown:?}");
    // With -no-shutdown the powered-off guest is still there for QMP to report...
    let status = vm.qmp("query-status", None).await.unwrap();
    assert_eq!(status["status"], "shutdown");
    assert!(vm.serial().contents().contains("FERRIC-ACPI-POWERDOWN"));
    // Reset does not revive a guest that powered itself off.
    assert!(vm.reset().await.is_err());
    // ...until the BMC looks: off, and no process.
    assert_eq!(vm.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(vm.pid().await, None);
    assert!(!process_exists(pid));
    eprintln!(
        "TIMING ACPI: boot {:.1} s, system_powerdown -> guest off {:.1} s",
        (t_off - t).as_secs_f64(),
        t_off.elapsed().as_secs_f64()
    );
    // Soft off while off is a no-op, as on a real BMC.
    vm.soft_off().await.unwrap();
}

#[tokio::test]
async fn reset_reboots_with_the_new_boot_order_and_hard_off_ends_the_process() {
    let fx = Fixtures::build(AgentSource::None).await.unwrap();
    let _slot = vm_slot().await;
    let dir = tempfile::tempdir().unwrap();
    let vm = instance_vm(&fx, dir.path(), "reset");

    vm.power_on().await.unwrap();
    vm.wait_for_serial(MARKER, 0, TIMEOUT).await.unwrap();
    assert_eq!(bootindex(&vm, "disk0").await, 1);
    assert_eq!(bootindex(&vm, "nic0").await, 2);
    assert_eq!(vm.power_on_count(), 1);

    // PXE for the next boot only; a reset is that boot.
    vm.set_boot(BootSelection { device: BootDevice::Pxe, persistent: false, efi: false }).await.unwrap();
    let since = vm.event_seq();
    let from = vm.serial().position();
    let t = Instant::now();
    vm.reset().await.unwrap();
    let reset = vm.wait_for_event("RESET", since, TIMEOUT).await.unwrap();
    assert_eq!(reset.data["guest"], false, "{reset:?}");
    assert_eq!(bootindex(&vm, "nic0").await, 1);
    assert_eq!(bootindex(&vm, "disk0").await, 2);
    assert_eq!(vm.boot().await.unwrap().device, BootDevice::None);
    // Same process, rebooted (the direct kernel boot wins over the boot order).
    vm.wait_for_serial(MARKER, from, TIMEOUT).await.unwrap();
    assert_eq!(vm.power_on_count(), 1);
    assert_eq!(vm.power_state().await.unwrap(), PowerState::On);
    eprintln!("TIMING reset -> marker again {:.1} s", t.elapsed().as_secs_f64());

    let pid = vm.pid().await.unwrap();
    vm.power_off().await.unwrap();
    assert_eq!(vm.power_state().await.unwrap(), PowerState::Off);
    assert!(!process_exists(pid), "QEMU {pid} still running after hard off");
    assert!(vm.qmp("query-status", None).await.is_err());
    assert!(vm.reset().await.is_err());

    // Power on again: a new process, back to the default (disk first).
    vm.power_on().await.unwrap();
    assert_eq!(vm.power_on_count(), 2);
    assert_ne!(vm.pid().await, Some(pid));
    assert_eq!(bootindex(&vm, "disk0").await, 1);
    vm.power_off().await.unwrap();
}

#[tokio::test]
async fn dropping_a_running_machine_kills_its_process() {
    let fx = Fixtures::build(AgentSource::None).await.unwrap();
    let _slot = vm_slot().await;
    let dir = tempfile::tempdir().unwrap();
    let vm = instance_vm(&fx, dir.path(), "drop");
    vm.power_on().await.unwrap();
    let pid = vm.pid().await.unwrap();
    assert!(process_exists(pid));
    drop(vm);
    assert!(!process_exists(pid), "QEMU {pid} outlived its machine");
}
