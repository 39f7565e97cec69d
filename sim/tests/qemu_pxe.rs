//! The BMC's boot selection drives real firmware: with PXE selected, the VM's iPXE ROM (from
//! ipxe-qemu) DHCPs on the namespace's bridge, fetches an iPXE script over TFTP and the deploy
//! kernel and ramdisk over HTTP, and the ramdisk comes up with a lease. Peers: busybox udhcpd,
//! tftpd-hpa, busybox httpd, radvd (ferric's own PXE services replace them in the end-to-end
//! tests). iPXE waits ~14 s for an IPv6 router unless one answers its solicitations: radvd does.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ferric_sim::machine::{BootDevice, BootSelection, Machine};
use ferric_sim::netns::NetNs;
use ferric_sim::qemu::{
    AgentSource, Disk, DiskBus, DiskFormat, Fixtures, Nic, NicModel, QemuConfig, QemuMachine, create_disk, format_mac,
    vm_slot,
};

const TIMEOUT: Duration = Duration::from_secs(180);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn pxe_selection_boots_the_deploy_ramdisk_through_ipxe() {
    let fx = Fixtures::build(AgentSource::None).await.expect("vm-fixtures build");
    let _slot = vm_slot().await;
    let ns = NetNs::create().unwrap();
    let tap = ns.add_tap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = d.join("tftp");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(&fx.deploy_kernel, root.join("deploy.kernel")).unwrap();
    std::fs::copy(&fx.deploy_ramdisk, root.join("deploy.initramfs")).unwrap();
    std::fs::write(
        root.join("boot.ipxe"),
        "#!ipxe\n\
         kernel http://192.0.2.1:8080/deploy.kernel console=ttyS0 \
         ipa-api-url=http://192.0.2.1:6385 BOOTIF=01-${net0/mac:hexhyp}\n\
         initrd http://192.0.2.1:8080/deploy.initramfs\n\
         boot\n",
    )
    .unwrap();
    // Option 175 (iPXE encapsulated) with 176=1 ("no ProxyDHCP"): iPXE does not wait for one.
    std::fs::write(
        d.join("udhcpd.conf"),
        format!(
            "start 192.0.2.100\nend 192.0.2.150\ninterface br0\nmax_leases 51\n\
             lease_file {d}/udhcpd.leases\npidfile {d}/udhcpd.pid\n\
             siaddr 192.0.2.1\nboot_file boot.ipxe\n\
             opt subnet 255.255.255.0\nopt router 192.0.2.1\nopt lease 600\nopt 0xaf b00101\n",
            d = d.display()
        ),
    )
    .unwrap();
    std::fs::write(d.join("udhcpd.leases"), b"").unwrap();
    std::fs::write(
        d.join("radvd.conf"),
        "interface br0 {\n AdvSendAdvert on;\n MinRtrAdvInterval 3;\n MaxRtrAdvInterval 10;\n \
         AdvDefaultLifetime 0;\n prefix 2001:db8::/64 { AdvOnLink on; AdvAutonomous on; };\n};\n",
    )
    .unwrap();
    let quiet = |c: &mut std::process::Command| {
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    };
    let mut c = ns.command("busybox").unwrap();
    c.args(["udhcpd", "-f"]).arg(d.join("udhcpd.conf"));
    quiet(&mut c);
    let _dhcp = Killed(c.spawn().unwrap());
    let mut c = ns.command("in.tftpd").unwrap();
    c.args(["-L", "-a", "192.0.2.1:69", "-s"]).arg(&root);
    quiet(&mut c);
    let _tftp = Killed(c.spawn().unwrap());
    let mut c = ns.command("busybox").unwrap();
    c.args(["httpd", "-f", "-p", "192.0.2.1:8080", "-h"]).arg(&root);
    quiet(&mut c);
    let _http = Killed(c.spawn().unwrap());
    let mut c = ns.command("radvd").unwrap();
    c.args(["-n", "-m", "stderr", "-C"]).arg(d.join("radvd.conf")).arg("-p").arg(d.join("radvd.pid"));
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(d.join("radvd.log")).unwrap());
    let _radvd = Killed(c.spawn().unwrap());

    let disk = d.join("disk.qcow2");
    create_disk(&disk, DiskFormat::Qcow2, 256 << 20).await.unwrap();
    let mac = [0x52, 0x54, 0x00, 0xfe, 0x02, 0x01];
    let mut config = QemuConfig::new("pxe", d.join("vm"));
    config.netns = Some(ns.handle());
    config.disk = Some(Disk { path: disk, format: DiskFormat::Qcow2, bus: DiskBus::Virtio });
    config.nics = vec![Nic { mac, model: NicModel::VirtioNet, tap: Some(tap) }];
    // Disk first unless the BMC says otherwise: the empty disk would not boot.
    config.default_boot = BootDevice::Disk;
    let vm = QemuMachine::new(config).unwrap();
    vm.set_boot(BootSelection { device: BootDevice::Pxe, persistent: false, efi: false }).await.unwrap();
    let t = Instant::now();
    vm.power_on().await.unwrap();
    let booted = vm.wait_for_serial("FERRIC-RAMDISK-BOOTED", 0, TIMEOUT).await.unwrap();
    let t_boot = t.elapsed();
    assert!(booted.contains("api_url=http://192.0.2.1:6385"), "{booted}");
    let lease = vm.wait_for_serial("FERRIC-RAMDISK-DHCP", 0, TIMEOUT).await.unwrap();
    assert!(lease.contains(&format!("mac={}", format_mac(mac))), "{lease}");
    assert!(lease.contains("ip=192.0.2.1"), "{lease}");
    // BOOTIF from iPXE made it through to the ramdisk: the disk is the agent's target.
    let ready = vm.wait_for_serial("FERRIC-RAMDISK-READY", 0, TIMEOUT).await.unwrap();
    assert!(ready.contains("disk=/dev/vda"), "{ready}");
    eprintln!(
        "TIMING PXE (SeaBIOS -> iPXE DHCP/TFTP/HTTP -> bzImage+ramdisk, TCG): power on -> RAMDISK-BOOTED {:.1} s, lease {:.1} s ({booted})",
        t_boot.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    vm.power_off().await.unwrap();
}
