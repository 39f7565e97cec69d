//! In a private network namespace, the deploy ramdisk gets a DHCP lease from a DHCP server on
//! the bridge (busybox udhcpd here; ferric's own DHCP server is tested the same way later) and
//! answers on the address it got.

use std::time::{Duration, Instant};

use ferric_sim::machine::Machine;
use ferric_sim::netns::NetNs;
use ferric_sim::qemu::{
    AgentSource, Fixtures, KernelBoot, Nic, NicModel, QemuConfig, QemuMachine, format_mac, vm_slot,
};

const TIMEOUT: Duration = Duration::from_secs(150);

async fn lease_test(model: NicModel, mac: [u8; 6]) {
    let fx = Fixtures::build(AgentSource::None)
        .await
        .expect("vm-fixtures build");
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
    config.nics = vec![Nic {
        mac,
        model,
        tap: Some(tap),
    }];
    let bootif = format!("01-{}", format_mac(mac).replace(':', "-"));
    config.kernel_boot = Some(KernelBoot {
        kernel: fx.kernel_elf.clone(),
        initrd: Some(fx.deploy_ramdisk.clone()),
        append: format!("console=ttyS0 ipa-api-url=http://192.0.2.1:6385 BOOTIF={bootif}"),
    });
    let vm = QemuMachine::new(config).unwrap();
    let t = Instant::now();
    vm.power_on().await.unwrap();
    let booted = vm
        .wait_for_serial("FERRIC-RAMDISK-BOOTED", 0, TIMEOUT)
        .await
        .unwrap();
    let t_boot = t.elapsed();
    let line = vm
        .wait_for_serial("FERRIC-RAMDISK-DHCP", 0, TIMEOUT)
        .await
        .unwrap();
    let t_lease = t.elapsed();
    assert!(
        !line.contains("FAILED"),
        "{line}\n{}",
        vm.serial().contents()
    );
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
    let ping = ns
        .command("busybox")
        .unwrap()
        .args(["ping", "-c", "1", "-W", "5", &ip])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    vm.power_off().await.unwrap();
    udhcpd.kill().unwrap();
    udhcpd.wait().unwrap();
    drop(ns);
}

#[tokio::test]
async fn deploy_ramdisk_gets_a_lease_on_virtio_net() {
    lease_test(NicModel::VirtioNet, [0x52, 0x54, 0x00, 0xfe, 0x00, 0x01]).await;
}

#[tokio::test]
async fn deploy_ramdisk_gets_a_lease_on_e1000() {
    lease_test(NicModel::E1000, [0x52, 0x54, 0x00, 0xfe, 0x00, 0x02]).await;
}
