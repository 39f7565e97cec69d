//! The deploy ISO of the Redfish virtual media boot boots a UEFI machine: QEMU with OVMF (Debian
//! package `ovmf`) boots the ISO built from the vm-fixtures' deploy kernel and ramdisk from its CD
//! drive, through the El Torito UEFI entry (systemd-boot in the EFI System Partition image), to the
//! ramdisk's marker with the ISO's command line. One boot: TCG is slow.
//!
//! `cargo test --test uefi_iso_boot -- --nocapture` prints the boot's `TIMING` line.

use ferric_service::pxe::iso::{SYSTEMD_BOOT_EFI, deploy_iso};
use ferric_sim::machine::Machine;
use ferric_sim::qemu::{AgentSource, Fixtures, QemuConfig, QemuMachine, vm_slot};
use std::path::Path;
use std::time::{Duration, Instant};

/// Debian's OVMF: the firmware (read-only) and the template of its variable store.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

/// Generous: OVMF's start under TCG takes a while; this only has to catch a hang.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test]
async fn deploy_iso_boots_under_uefi_to_the_ramdisk() {
    for (path, package) in [(OVMF_CODE, "ovmf"), (OVMF_VARS, "ovmf"), (SYSTEMD_BOOT_EFI, "systemd-boot-efi")] {
        if !Path::new(path).is_file() {
            eprintln!("SKIP: {path} is missing (Debian package {package})");
            return;
        }
    }
    let fx = Fixtures::build(AgentSource::None).await.expect("vm-fixtures build");
    let dir = tempfile::Builder::new().prefix("uefi").tempdir_in("/tmp").unwrap();
    let params = "console=ttyS0 ipa-api-url=http://192.0.2.1:6385 boot_method=vmedia";
    // Real deploy ramdisks are hundreds of MiB: zeros after the ramdisk (the kernel's initramfs
    // unpacker skips them) take the EFI System Partition past El Torito's 32 MiB sector count, so
    // the boot goes through the "to the end of the CD" entry real ISOs get.
    let mut ramdisk = std::fs::read(&fx.deploy_ramdisk).unwrap();
    ramdisk.resize(ramdisk.len() + (40 << 20), 0);
    let iso = deploy_iso(std::fs::read(&fx.deploy_kernel).unwrap(), ramdisk, params).unwrap();
    let iso_path = dir.path().join("deploy.iso");
    std::fs::write(&iso_path, iso).unwrap();
    // Each machine writes its own copy of the variable store.
    let vars = dir.path().join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();

    let _slot = vm_slot().await;
    let mut config = QemuConfig::new("uefi-iso", dir.path());
    config.memory_mib = 1024;
    config.extra_args = vec![
        "-drive".into(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        "-cdrom".into(),
        iso_path.display().to_string(),
        "-boot".into(),
        "d".into(),
    ];
    let vm = QemuMachine::new(config).unwrap();
    let t = Instant::now();
    vm.power_on().await.unwrap();
    let line = match vm.wait_for_serial("FERRIC-RAMDISK-BOOTED", 0, BOOT_TIMEOUT).await {
        Ok(line) => line,
        Err(e) => panic!("{e}; serial:\n{}", vm.serial().contents()),
    };
    assert!(line.contains("api_url=http://192.0.2.1:6385"), "{line}");
    // Through UEFI (no SeaBIOS, no isolinux): the kernel found EDK II's system table.
    let serial = vm.serial().contents();
    assert!(serial.contains("efi: EFI v") && !serial.contains("ISOLINUX"), "{serial}");
    eprintln!(
        "TIMING deploy ISO under UEFI (OVMF -> El Torito UEFI entry -> systemd-boot -> kernel, TCG): power on -> FERRIC-RAMDISK-BOOTED {:.1} s",
        t.elapsed().as_secs_f64()
    );
    vm.power_off().await.unwrap();
}
