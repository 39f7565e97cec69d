//! In a private network namespace, the deploy ramdisk gets a DHCP lease from a DHCP server on
//! the bridge (busybox udhcpd here; ferric's own DHCP server is tested the same way later) and
//! answers on the address it got.

use std::path::Path;
use std::time::{Duration, Instant};

use ferric_sim::machine::Machine;
use ferric_sim::netns::NetNs;
use ferric_sim::qemu::{
    AgentSource, Disk, DiskBus, DiskFormat, Fixtures, KernelBoot, Nic, NicModel, QemuConfig, QemuMachine, create_disk,
    format_mac, vm_slot,
};

const TIMEOUT: Duration = Duration::from_secs(150);

/// Boots the deploy ramdisk on a NIC of `model` in a namespace with udhcpd; returns the serial
/// log once the lease marker is out (and the agent's, if `agent` was baked in).
async fn lease_test(model: NicModel, mac: [u8; 6], agent: Option<&Path>) -> String {
    let source = match agent {
        Some(p) => AgentSource::Path(p.to_path_buf()),
        None => AgentSource::None,
    };
    let fx = Fixtures::build(source).await.expect("vm-fixtures build");
    let _slot = vm_slot().await;
    let ns = NetNs::create().unwrap();
    let tap = ns.add_tap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start 192.0.2.100\nend 192.0.2.150\ninterface br0\nmax_leases 51\n\
             lease_file {d}/udhcpd.leases\npidfile {d}/udhcpd.pid\n\
             opt subnet 255.255.255.0\nopt router 192.0.2.1\nopt lease 600\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("udhcpd.leases"), b"").unwrap();
    let mut udhcpd = ns
        .command("busybox")
        .unwrap()
        .args(["udhcpd", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let mut config = QemuConfig::new("dhcp", dir.path().join("vm"));
    config.netns = Some(ns.handle());
    config.nics = vec![Nic { mac, model, tap: Some(tap) }];
    let disk = dir.path().join("disk.qcow2");
    create_disk(&disk, DiskFormat::Qcow2, 64 << 20).await.unwrap();
    config.disk = Some(Disk { path: disk, format: DiskFormat::Qcow2, bus: DiskBus::Virtio });
    let bootif = format!("01-{}", format_mac(mac).replace(':', "-"));
    config.kernel_boot = Some(KernelBoot {
        kernel: fx.kernel_elf.clone(),
        initrd: Some(fx.deploy_ramdisk.clone()),
        append: format!("console=ttyS0 ipa-api-url=http://192.0.2.1:6385 BOOTIF={bootif}"),
    });
    let vm = QemuMachine::new(config).unwrap();
    let t = Instant::now();
    vm.power_on().await.unwrap();
    let booted = vm.wait_for_serial("FERRIC-RAMDISK-BOOTED", 0, TIMEOUT).await.unwrap();
    let t_boot = t.elapsed();
    let line = vm.wait_for_serial("FERRIC-RAMDISK-DHCP", 0, TIMEOUT).await.unwrap();
    let t_lease = t.elapsed();
    assert!(!line.contains("FAILED"), "{line}\n{}", vm.serial().contents());
    assert!(line.contains(&format!("mac={}", format_mac(mac))), "{line}");
    assert!(line.contains("router=192.0.2.1"), "{line}");
    let ip = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ip="))
        .and_then(|a| a.strip_suffix("/24"))
        .expect("ip=A.B.C.D/24 in the marker")
        .to_string();
    assert!(ip.starts_with("192.0.2.1"), "{line}");
    eprintln!(
        "TIMING {model:?} DHCP (kernel ELF, TCG): power on -> RAMDISK-BOOTED {:.1} s -> DHCP lease {:.1} s ({booted} / {line})",
        t_boot.as_secs_f64(),
        t_lease.as_secs_f64()
    );

    // The guest answers on its new address, from inside the namespace.
    let ping = ns.command("busybox").unwrap().args(["ping", "-c", "1", "-W", "5", &ip]).output().unwrap();
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

    if agent.is_some() {
        vm.wait_for_serial("FAKE-AGENT", 0, TIMEOUT).await.unwrap();
    }
    let log = vm.serial().contents();
    vm.power_off().await.unwrap();
    udhcpd.kill().unwrap();
    udhcpd.wait().unwrap();
    drop(ns);
    log
}

#[tokio::test]
async fn deploy_ramdisk_gets_a_lease_on_virtio_net() {
    let log = lease_test(NicModel::VirtioNet, [0x52, 0x54, 0x00, 0xfe, 0x00, 0x01], None).await;
    assert!(log.contains("FERRIC-RAMDISK-READY reason=no-agent disk=/dev/vda"), "{log}");
}

#[tokio::test]
async fn deploy_ramdisk_gets_a_lease_on_e1000() {
    lease_test(NicModel::E1000, [0x52, 0x54, 0x00, 0xfe, 0x00, 0x02], None).await;
}

/// The ramdisk's contract with ferric-agent: exec'd as PID 1 with `--api-url`, `--disk`,
/// `--listen IP:9999` and `--mac` once DHCP is done. A script stands in for the agent.
#[tokio::test]
async fn deploy_ramdisk_execs_the_agent_with_its_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("fake-agent");
    std::fs::write(
        &agent,
        "#!/bin/sh\necho \"FAKE-AGENT pid=$$ ramdisk=$FERRIC_RAMDISK args=$*\" > /dev/console\n\
         exec sleep 3600\n",
    )
    .unwrap();
    let mac = [0x52, 0x54, 0x00, 0xfe, 0x00, 0x03];
    let log = lease_test(NicModel::VirtioNet, mac, Some(&agent)).await;
    let line = log.lines().find(|l| l.starts_with("FAKE-AGENT")).expect("agent line").to_string();
    assert!(line.contains("pid=1 ramdisk=1"), "{line}");
    assert!(line.contains("--api-url http://192.0.2.1:6385 --disk /dev/vda"), "{line}");
    assert!(line.contains(":9999 --mac 52:54:00:fe:00:03"), "{line}");
    assert!(line.contains("--listen 192.0.2.1"), "{line}");
    assert!(log.contains("FERRIC-AGENT-EXEC"), "{log}");
}
