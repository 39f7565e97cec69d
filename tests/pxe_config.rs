//! Rendered pxelinux configs and iPXE scripts against expected text, and per-node placement.

use ferric_service::pxe::MacAddr;
use ferric_service::pxe::config::{
    BootLayout, BootMode, DeployBoot, NetBoot, Root, ipxe_deploy, ipxe_localboot, ipxe_netboot, pxelinux_deploy,
    pxelinux_localboot, pxelinux_netboot,
};

const NODE: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";

fn mac() -> MacAddr {
    "52:54:00:12:34:56".parse().unwrap()
}

fn deploy(kernel: &str, ramdisk: &str) -> DeployBoot {
    DeployBoot {
        node: NODE.into(),
        boot_mac: mac(),
        api_url: "http://192.0.2.1:6385".into(),
        kernel: kernel.into(),
        ramdisk: ramdisk.into(),
        kernel_args: "console=ttyS0".into(),
    }
}

fn netboot(kernel: &str, ramdisk: &str) -> NetBoot {
    NetBoot {
        node: NODE.into(),
        kernel: kernel.into(),
        ramdisk: ramdisk.into(),
        root_uuid: "0a5c7b2e-7f4e-4c3e-9d1a-4f6b2f0c9e11".into(),
        kernel_args: "console=ttyS0".into(),
    }
}

fn layout(dir: &std::path::Path) -> BootLayout {
    BootLayout { tftp_root: dir.join("tftp"), http_root: dir.join("http"), http_url: "http://192.0.2.1:8080/".into() }
}

#[test]
fn pxelinux_golden() {
    let l = layout(std::path::Path::new("/srv"));
    let d = deploy(&l.tftp_path(NODE, "deploy_kernel"), &l.tftp_path(NODE, "deploy_ramdisk"));
    assert_eq!(
        pxelinux_deploy(&d).unwrap(),
        "default deploy

label deploy
kernel 1be26c0b-03f2-4d2e-ae87-c02d7f33c123/deploy_kernel
append initrd=1be26c0b-03f2-4d2e-ae87-c02d7f33c123/deploy_ramdisk console=ttyS0 ipa-api-url=http://192.0.2.1:6385 ferric-api-url=http://192.0.2.1:6385 ferric-node=1be26c0b-03f2-4d2e-ae87-c02d7f33c123 BOOTIF=01-52-54-00-12-34-56
"
    );
    let n = netboot(&l.tftp_path(NODE, "kernel"), &l.tftp_path(NODE, "ramdisk"));
    assert_eq!(
        pxelinux_netboot(&n).unwrap(),
        "default boot

label boot
kernel 1be26c0b-03f2-4d2e-ae87-c02d7f33c123/kernel
append initrd=1be26c0b-03f2-4d2e-ae87-c02d7f33c123/ramdisk root=UUID=0a5c7b2e-7f4e-4c3e-9d1a-4f6b2f0c9e11 ro console=ttyS0
"
    );
    assert_eq!(pxelinux_localboot(), "default local\n\nlabel local\nlocalboot 0\n");
}

#[test]
fn ipxe_golden() {
    let l = layout(std::path::Path::new("/srv"));
    let d = deploy(&l.http_file_url(NODE, "deploy_kernel"), &l.http_file_url(NODE, "deploy_ramdisk"));
    assert_eq!(
        ipxe_deploy(&d).unwrap(),
        r#"#!ipxe
# ferric: deploy ramdisk for node 1be26c0b-03f2-4d2e-ae87-c02d7f33c123

set tries

:deploy
imgfree
kernel --name kernel http://192.0.2.1:8080/1be26c0b-03f2-4d2e-ae87-c02d7f33c123/deploy_kernel initrd=ramdisk console=ttyS0 ipa-api-url=http://192.0.2.1:6385 ferric-api-url=http://192.0.2.1:6385 ferric-node=1be26c0b-03f2-4d2e-ae87-c02d7f33c123 BOOTIF=01-52-54-00-12-34-56 || goto retry
initrd --name ramdisk http://192.0.2.1:8080/1be26c0b-03f2-4d2e-ae87-c02d7f33c123/deploy_ramdisk || goto retry
boot || goto retry

:retry
set tries ${tries}x
iseq ${tries} xxxxx && goto fail ||
sleep 2
goto deploy

:fail
echo ferric: boot failed after 5 attempts, powering off
sleep 10
poweroff
"#
    );
    let n = netboot(&l.http_file_url(NODE, "kernel"), &l.http_file_url(NODE, "ramdisk"));
    let s = ipxe_netboot(&n).unwrap();
    assert!(s.starts_with(
        "#!ipxe\n# ferric: instance netboot for node 1be26c0b-03f2-4d2e-ae87-c02d7f33c123\n\nset tries\n\n:boot\nimgfree\n\
         kernel --name kernel http://192.0.2.1:8080/1be26c0b-03f2-4d2e-ae87-c02d7f33c123/kernel initrd=ramdisk root=UUID=0a5c7b2e-7f4e-4c3e-9d1a-4f6b2f0c9e11 ro console=ttyS0 || goto retry\n\
         initrd --name ramdisk http://192.0.2.1:8080/1be26c0b-03f2-4d2e-ae87-c02d7f33c123/ramdisk || goto retry\nboot || goto retry\n\n:retry\n"
    ), "{s}");
    assert!(s.contains("goto boot\n"));
    assert_eq!(
        ipxe_localboot(BootMode::Bios),
        "#!ipxe\n# ferric: boot from local disk\n\nsanboot --no-describe --drive 0x80 || exit\n"
    );
    assert_eq!(ipxe_localboot(BootMode::Uefi), "#!ipxe\n# ferric: boot from local disk\n\nexit\n");
}

#[test]
fn injection_is_refused() {
    let mut d = deploy("k", "r");
    d.kernel_args = "quiet\nkernel /etc/shadow".into();
    assert!(pxelinux_deploy(&d).is_err());
    let mut d = deploy("k", "r");
    d.api_url = "http://x y".into();
    assert!(ipxe_deploy(&d).is_err());
    let mut n = netboot("k", "r");
    n.root_uuid = "x\ninitrd evil".into();
    assert!(ipxe_netboot(&n).is_err());
    let l = layout(std::path::Path::new("/srv"));
    assert!(l.node_dir(Root::Tftp, "../etc").is_err());
    assert!(l.node_dir(Root::Http, "a/b").is_err());
    assert!(l.node_dir(Root::Http, "pxelinux.cfg").is_err());
}

#[test]
fn placement_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let l = layout(dir.path());
    let macs = [mac(), "52:54:00:12:34:57".parse().unwrap()];
    l.write_pxelinux(NODE, &macs, &pxelinux_localboot()).unwrap();
    l.write_ipxe(NODE, &macs, &ipxe_localboot(BootMode::Bios)).unwrap();
    let tftp_link = dir.path().join("tftp/pxelinux.cfg/01-52-54-00-12-34-56");
    let http_link = dir.path().join("http/pxelinux.cfg/52-54-00-12-34-57");
    assert_eq!(std::fs::read_to_string(&tftp_link).unwrap(), pxelinux_localboot());
    assert_eq!(std::fs::read_to_string(&http_link).unwrap(), ipxe_localboot(BootMode::Bios));
    assert_eq!(std::fs::read_link(&tftp_link).unwrap(), std::path::Path::new("..").join(NODE).join("config"));
    // The TFTP resolver follows the link because it stays inside the root.
    assert!(ferric_service::pxe::tftp::resolve(&l.tftp_root, "pxelinux.cfg/01-52-54-00-12-34-56").is_ok());
    assert_eq!(l.ipxe_script_url(&macs[0]), "http://192.0.2.1:8080/pxelinux.cfg/52-54-00-12-34-56");
    // Rewriting replaces, never duplicates.
    l.write_pxelinux(NODE, &macs, &pxelinux_localboot()).unwrap();
    std::fs::write(l.node_dir(Root::Http, NODE).unwrap().join("kernel"), b"k").unwrap();
    l.remove_configs(NODE, &macs).unwrap();
    assert!(!tftp_link.exists() && std::fs::symlink_metadata(&tftp_link).is_err());
    assert!(std::fs::symlink_metadata(&http_link).is_err());
    assert!(l.node_dir(Root::Http, NODE).unwrap().join("kernel").exists());
    l.remove_node(NODE, &macs).unwrap();
    assert!(!l.node_dir(Root::Http, NODE).unwrap().exists());
    assert!(!l.node_dir(Root::Tftp, NODE).unwrap().exists());
    // Idempotent.
    l.remove_node(NODE, &macs).unwrap();
}
