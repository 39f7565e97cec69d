//! ferric's iSCSI target (`ferric-agent iscsi-target`, a real process on loopback) against
//! independent initiators: libiscsi's tools and conformance suite, qemu-img and QEMU itself.

mod iscsi_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iscsi_support::{AgentTarget, Reaped, pattern, run, scratch};

const IQN: &str = "iqn.2024-01.org.ferric:peer-test";

#[test]
fn libiscsi_tools_discover_inquire_and_read_capacity() {
    let dir = scratch();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 64 << 20]).unwrap();
    let t = AgentTarget::start(iscsi_support::agent_bin::path(), &disk, IQN, None);

    let ls = run("iscsi-ls", &["-s", &format!("iscsi://{}", t.portal)]);
    assert!(ls.contains(&format!("Target:{IQN} Portal:{},1", t.portal)), "{ls}");
    assert!(ls.contains("Lun:0") && ls.contains("DIRECT_ACCESS"), "{ls}");

    let inq = run("iscsi-inq", &[&t.url(None)]);
    assert!(inq.contains("Peripheral Device Type:DIRECT_ACCESS"), "{inq}");
    assert!(inq.contains("Vendor:FERRIC"), "{inq}");
    let pages = run("iscsi-inq", &["-e", "1", "-c", "0", &t.url(None)]);
    for p in ["0x80", "0x83"] {
        assert!(pages.contains(&format!("Page:{p}")), "{pages}");
    }
    let serial = run("iscsi-inq", &["-e", "1", "-c", "128", &t.url(None)]);
    assert!(serial.contains("Unit Serial Number:["), "{serial}");
    let ident = run("iscsi-inq", &["-e", "1", "-c", "131", &t.url(None)]);
    assert!(ident.contains("Designator Type:(3) NAA") && ident.contains("T10_VENDOR"), "{ident}");

    let cap = run("iscsi-readcapacity16", &[&t.url(None)]);
    assert!(cap.contains("RETURNED LOGICAL BLOCK ADDRESS:131071"), "{cap}");
    assert!(cap.contains("LOGICAL BLOCK LENGTH IN BYTES:512"), "{cap}");
    assert!(cap.contains("Total size:67108864"), "{cap}");
}

#[test]
fn libiscsi_conformance_suite() {
    // libiscsi's own conformance suite (iscsi-test-cu --test=ALL): every SCSI and iSCSI test it
    // has; commands the target does not implement are skipped by the suite itself. No test and
    // no assertion may fail.
    let dir = scratch();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 16 << 20]).unwrap();
    let t = AgentTarget::start(iscsi_support::agent_bin::path(), &disk, IQN, None);
    let out = Command::new("iscsi-test-cu")
        .args(["--dataloss", "--test=ALL", &t.url(None)])
        .output()
        .expect("iscsi-test-cu (libiscsi-bin)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Summary rows: "tests <total> <ran> <passed> <failed> <inactive>", "asserts ... <failed> n/a".
    for row in ["tests", "asserts"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(row))
            .unwrap_or_else(|| panic!("no {row} summary:\n{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.get(4), Some(&"0"), "failed {row}:\n{text}");
        let passed: u64 = cols.get(3).and_then(|c| c.parse().ok()).unwrap_or(0);
        assert!(passed > if row == "tests" { 200 } else { 10_000 }, "too few {row} passed: {line}");
    }
}

#[test]
fn chap_success_and_failure_with_libiscsi() {
    let dir = scratch();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 8 << 20]).unwrap();
    let t = AgentTarget::start(iscsi_support::agent_bin::path(), &disk, IQN, Some(("deployer", "agent-secret-1")));
    let ok = run("iscsi-readcapacity16", &[&t.url(Some(("deployer", "agent-secret-1")))]);
    assert!(ok.contains("Total size:8388608"), "{ok}");
    let ls = run("iscsi-ls", &["-s", &format!("iscsi://deployer%agent-secret-1@{}", t.portal)]);
    assert!(ls.contains(IQN), "{ls}");
    for url in [t.url(Some(("deployer", "wrong-secret-9"))), t.url(Some(("intruder", "agent-secret-1"))), t.url(None)] {
        let out = Command::new("iscsi-readcapacity16").arg(&url).output().unwrap();
        assert!(!out.status.success(), "login with {url} should fail");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Total size"));
    }
}

#[test]
fn qemu_img_convert_both_directions() {
    let dir = scratch();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 32 << 20]).unwrap();
    let t = AgentTarget::start(iscsi_support::agent_bin::path(), &disk, IQN, Some(("qemu", "qemu-secret-12")));
    let url = t.url(Some(("qemu", "qemu-secret-12")));
    let src = dir.path().join("src.img");
    let image = pattern(32 << 20, 42);
    std::fs::write(&src, &image).unwrap();
    // Upload: file -> iSCSI (libiscsi inside qemu-img).
    run("qemu-img", &["convert", "-n", "-f", "raw", "-O", "raw", src.to_str().unwrap(), &url]);
    assert!(std::fs::read(&disk).unwrap() == image, "disk differs after upload");
    // Download: iSCSI -> file.
    let back = dir.path().join("back.img");
    run("qemu-img", &["convert", "-f", "raw", "-O", "raw", &url, back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == image, "downloaded image differs");
    let info = run("qemu-img", &["info", "--output=json", &url]);
    assert!(info.contains("\"virtual-size\": 33554432"), "{info}");
}

/// A 512-byte boot sector that prints a marker to COM1 and halts (hand-assembled 16-bit code):
/// xor ax,ax; mov ds,ax; cld; mov si,msg; next: lodsb; test al,al; jz done; mov dx,0x3f8;
/// out dx,al; jmp next; done: cli; hlt; jmp done; msg: db "...",0
fn boot_sector(marker: &str) -> Vec<u8> {
    let mut code = vec![
        0x31, 0xC0, 0x8E, 0xD8, 0xFC, 0xBE, 0x17, 0x7C, 0xAC, 0x84, 0xC0, 0x74, 0x06, 0xBA, 0xF8, 0x03, 0xEE, 0xEB,
        0xF5, 0xFA, 0xF4, 0xEB, 0xFC,
    ];
    code.extend_from_slice(marker.as_bytes());
    code.extend_from_slice(b"\r\n\0");
    assert!(code.len() <= 446);
    code.resize(510, 0);
    code.extend_from_slice(&[0x55, 0xAA]);
    code
}

#[test]
fn qemu_boots_from_the_target_with_drive_iscsi() {
    let dir = scratch();
    let disk = dir.path().join("boot.img");
    let marker = "FERRIC-ISCSI-BOOT-7f3a";
    let mut img = boot_sector(marker);
    img.resize(16 << 20, 0);
    std::fs::write(&disk, &img).unwrap();
    let t = AgentTarget::start(iscsi_support::agent_bin::path(), &disk, IQN, None);
    let serial = dir.path().join("serial.txt");
    // The marker exists only on the target's disk: seeing it on the serial port proves QEMU's
    // BIOS read the boot sector over iSCSI. TCG: KVM guests hang on these machines.
    let qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-nodefaults", "-display", "none", "-m", "64", "-boot", "c"])
        .args(["-serial", &format!("file:{}", serial.display())])
        .args(["-drive", &format!("file={},format=raw,if=ide", t.url(None))])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64");
    let mut qemu = Reaped(qemu);
    let start = Instant::now();
    loop {
        let out = std::fs::read_to_string(&serial).unwrap_or_default();
        if out.contains(marker) {
            break;
        }
        if let Ok(Some(st)) = qemu.0.try_wait() {
            panic!("qemu exited early: {st}");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no boot marker on the serial port: {out:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
