//! Boots the vm-fixtures under QEMU (TCG): the deploy kernel and ramdisk directly, and the
//! whole-disk images (raw and qcow2) from disk through the `Machine` trait.

use std::time::{Duration, Instant};

use ferric_sim::machine::{BootDevice, BootSelection, Machine, PowerState};
use ferric_sim::qemu::{
    AgentSource, Disk, DiskBus, DiskFormat, Fixtures, KernelBoot, QemuConfig, QemuMachine, vm_slot,
};

/// Generous: the figure that matters is printed; this only has to catch a hang on a busy machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);

async fn fixtures() -> Fixtures {
    Fixtures::build(AgentSource::None).await.expect("vm-fixtures build")
}

#[tokio::test]
async fn deploy_kernel_and_ramdisk_boot_directly_to_the_marker() {
    let fx = fixtures().await;
    let _slot = vm_slot().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = QemuConfig::new("deploy-direct", dir.path());
    config.kernel_boot = Some(KernelBoot {
        kernel: fx.deploy_kernel.clone(),
        initrd: Some(fx.deploy_ramdisk.clone()),
        append: "console=ttyS0 ipa-api-url=http://192.0.2.1:6385".into(),
    });
    let vm = QemuMachine::new(config).unwrap();
    let t = Instant::now();
    vm.power_on().await.unwrap();
    let line = vm.wait_for_serial("FERRIC-RAMDISK-BOOTED", 0, BOOT_TIMEOUT).await.unwrap();
    let booted = t.elapsed();
    assert!(line.contains("kernel=6.1"), "{line}");
    assert!(line.contains("api_url=http://192.0.2.1:6385"), "{line}");
    // No NIC, no agent: the ramdisk says so and idles.
    vm.wait_for_serial("FERRIC-RAMDISK-NO-NIC", 0, BOOT_TIMEOUT).await.unwrap();
    let ready = vm.wait_for_serial("FERRIC-RAMDISK-READY", 0, BOOT_TIMEOUT).await.unwrap();
    assert!(ready.contains("reason=no-agent"), "{ready}");
    eprintln!(
        "TIMING deploy bzImage+ramdisk (-kernel, TCG): power on -> FERRIC-RAMDISK-BOOTED {:.1} s ({line})",
        booted.as_secs_f64()
    );
    vm.power_off().await.unwrap();
    assert_eq!(vm.power_state().await.unwrap(), PowerState::Off);
}

async fn boot_whole_disk(fx: &Fixtures, format: DiskFormat) {
    let _slot = vm_slot().await;
    let dir = tempfile::tempdir().unwrap();
    // A private copy: the instance mounts its root read-write.
    let (src, name) = match format {
        DiskFormat::Raw => (&fx.whole_disk_raw, "disk.raw"),
        DiskFormat::Qcow2 => (&fx.whole_disk_qcow2, "disk.qcow2"),
    };
    let disk = dir.path().join(name);
    std::fs::copy(src, &disk).unwrap();
    let mut config = QemuConfig::new(format!("whole-disk-{}", format.as_str()), dir.path());
    config.disk = Some(Disk { path: disk, format, bus: DiskBus::Virtio });
    // Network first by default, so only the BMC's selection makes it boot from disk.
    config.default_boot = BootDevice::Pxe;
    let vm = QemuMachine::new(config).unwrap();
    vm.set_boot(BootSelection { device: BootDevice::Disk, persistent: false, efi: false }).await.unwrap();
    let t = Instant::now();
    vm.power_on().await.unwrap();
    assert_eq!(vm.power_state().await.unwrap(), PowerState::On);
    // The one-time selection was consumed by this boot.
    assert_eq!(vm.boot().await.unwrap().device, BootDevice::None);
    let line = vm.wait_for_serial("FERRIC-INSTANCE-BOOTED", 0, BOOT_TIMEOUT).await.unwrap();
    assert!(line.contains("image=whole-disk"), "{line}");
    assert!(line.contains(&fx.partition_root_uuid), "{line}");
    assert!(vm.serial().contents().contains("SYSLINUX"));
    eprintln!(
        "TIMING whole-disk {} (SeaBIOS -> SYSLINUX -> kernel -> ext4 root, TCG): power on -> FERRIC-INSTANCE-BOOTED {:.1} s ({line})",
        format.as_str(),
        t.elapsed().as_secs_f64()
    );
    vm.power_off().await.unwrap();
    assert_eq!(vm.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(vm.pid().await, None);
}

#[tokio::test]
async fn whole_disk_raw_boots_from_disk() {
    let fx = fixtures().await;
    boot_whole_disk(&fx, DiskFormat::Raw).await;
}

#[tokio::test]
async fn whole_disk_qcow2_boots_from_disk() {
    let fx = fixtures().await;
    boot_whole_disk(&fx, DiskFormat::Qcow2).await;
}

#[tokio::test]
async fn partition_image_netboots_with_its_kernel_and_ramdisk() {
    let fx = fixtures().await;
    let _slot = vm_slot().await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("root.raw");
    std::fs::copy(&fx.partition_image, &disk).unwrap();
    let mut config = QemuConfig::new("partition-netboot", dir.path());
    config.disk = Some(Disk { path: disk, format: DiskFormat::Raw, bus: DiskBus::Virtio });
    // What a netboot of a partition image amounts to: the instance kernel and ramdisk with
    // root=UUID= of the deployed partition (here the partition image is the whole disk).
    config.kernel_boot = Some(KernelBoot {
        kernel: fx.kernel_elf.clone(),
        initrd: Some(fx.instance_ramdisk.clone()),
        append: format!("console=ttyS0 root=UUID={} ferric.image=partition", fx.partition_root_uuid),
    });
    let vm = QemuMachine::new(config).unwrap();
    let t = Instant::now();
    vm.power_on().await.unwrap();
    let line = vm.wait_for_serial("FERRIC-INSTANCE-BOOTED", 0, BOOT_TIMEOUT).await.unwrap();
    assert!(line.contains("image=partition"), "{line}");
    eprintln!(
        "TIMING partition image (instance kernel ELF + ramdisk, root=UUID, TCG): power on -> FERRIC-INSTANCE-BOOTED {:.1} s",
        t.elapsed().as_secs_f64()
    );
    vm.power_off().await.unwrap();
}
