//! ipmitool (a real, independent IPMI client) against the virtual BMC over UDP on loopback.

use ferric_lab::machine::{SimMachine, SimMachineConfig};
use ferric_sim::machine::{BootDevice, Machine, PowerState};
use ferric_sim::vbmc::{Bmc, BmcConfig, FaultSettings, Faults, Password, serve_udp, serve_udp_blocking};
use std::sync::Arc;
use tokio::net::UdpSocket;

struct Lab {
    bmc: Bmc,
    machine: Arc<SimMachine>,
    port: u16,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn lab(config: BmcConfig) -> Lab {
    let machine =
        Arc::new(SimMachine::new("node-0", SimMachineConfig { soft_off_delay_ms: 200, ..Default::default() }));
    let bmc = Bmc::new("node-0", config, machine.clone(), Arc::new(Faults::default())).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let task = tokio::spawn(serve_udp(bmc.clone(), socket));
    Lab { bmc, machine, port, task }
}

/// Runs ipmitool; returns (success, stdout+stderr).
async fn ipmitool(port: u16, password: &str, suite: Option<u8>, args: &str) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("ipmitool");
    cmd.args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "admin", "-P", password, "-R", "2", "-N", "1"]);
    if let Some(s) = suite {
        cmd.args(["-C", &s.to_string()]);
    }
    cmd.args(args.split_whitespace()).kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .expect("ipmitool hung")
        .expect("ipmitool is installed (.ci/install-deps)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn ok(port: u16, suite: Option<u8>, args: &str) -> String {
    let (success, text) = ipmitool(port, "password", suite, args).await;
    assert!(success, "ipmitool {args} (suite {suite:?}) failed: {text}");
    text
}

async fn full_round(suite: Option<u8>) {
    let lab = lab(BmcConfig::default()).await;
    let p = lab.port;
    assert!(ok(p, suite, "power status").await.contains("Chassis Power is off"));
    assert!(ok(p, suite, "power on").await.contains("Up/On"));
    assert!(ok(p, suite, "power status").await.contains("Chassis Power is on"));
    assert_eq!(lab.machine.power_now(), PowerState::On);
    assert!(ok(p, suite, "power cycle").await.contains("Cycle"));
    assert!(ok(p, suite, "power reset").await.contains("Reset"));
    assert!(ok(p, suite, "power soft").await.contains("Soft"));
    // The simulated OS takes 200 ms to shut down after the ACPI request.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(ok(p, suite, "power status").await.contains("Chassis Power is off"));
    assert!(ok(p, suite, "power on").await.contains("Up/On"));
    assert!(ok(p, suite, "power off").await.contains("Down/Off"));
    assert_eq!(lab.machine.power_now(), PowerState::Off);

    assert!(ok(p, suite, "chassis bootdev pxe").await.contains("Set Boot Device to pxe"));
    let t = ok(p, suite, "chassis bootparam get 5").await;
    assert!(t.contains("Boot Flag Valid"), "{t}");
    assert!(t.contains("Options apply to only next boot"), "{t}");
    assert!(t.contains("Force PXE"), "{t}");
    let sel = lab.machine.boot().await.unwrap();
    assert_eq!((sel.device, sel.persistent, sel.efi), (BootDevice::Pxe, false, false));

    ok(p, suite, "chassis bootdev disk options=persistent,efiboot").await;
    let t = ok(p, suite, "chassis bootparam get 5").await;
    assert!(t.contains("Options apply to all future boots"), "{t}");
    assert!(t.contains("BIOS EFI boot"), "{t}");
    assert!(t.contains("Force Boot from default Hard-Drive"), "{t}");
    let sel = lab.machine.boot().await.unwrap();
    assert_eq!((sel.device, sel.persistent, sel.efi), (BootDevice::Disk, true, true));

    let t = ok(p, suite, "mc info").await;
    assert!(t.contains("IPMI Version              : 2.0"), "{t}");

    let (success, text) = ipmitool(p, "wrong-password", suite, "power status").await;
    assert!(!success, "a wrong password must be rejected: {text}");
    assert!(text.contains("Unable to establish IPMI v2 / RMCP+ session"), "{text}");

    let (success, text) = ipmitool(p, "password", suite, "raw 0x06 0x99").await;
    assert!(!success);
    assert!(text.contains("rsp=0xc1"), "{text}");

    let s = lab.bmc.stats();
    assert_eq!(s.power_on, 2);
    assert_eq!(s.power_off, 1);
    assert_eq!(s.power_cycle, 1);
    assert_eq!(s.hard_reset, 1);
    assert_eq!(s.soft_off, 1);
    // ipmitool closes its sessions; the one whose RAKP 2 it rejected (wrong password) it just
    // abandons (ipmitool 1.8.19 sends no RAKP 3 then), so it waits for the idle timeout.
    assert_eq!(lab.bmc.session_count(), 1, "{s:?}");
    assert_eq!(s.sessions_opened, s.sessions_closed, "{s:?}");
}

/// The blocking loop (a thread serving one BMC, as `ferric vbmc --nodes 1` does) answers
/// ipmitool too, and its latency knob still delays replies (sent from runtime tasks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_against_the_blocking_loop_with_latency() {
    let machine = Arc::new(SimMachine::new("node-0", SimMachineConfig::default()));
    let faults = Arc::new(Faults::new(FaultSettings { latency_ms: 20, ..Default::default() }));
    let bmc = Bmc::new("node-0", BmcConfig::default(), machine.clone(), faults.clone()).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let runtime = tokio::runtime::Handle::current();
    let served = bmc.clone();
    // The thread blocks in recvfrom for the rest of the test binary's life (it holds no child
    // process or file beyond its socket).
    std::thread::spawn(move || serve_udp_blocking(served, socket, &runtime));
    let started = tokio::time::Instant::now();
    assert!(ok(port, Some(3), "power on").await.contains("Up/On"));
    // ipmitool makes at least 6 exchanges for a command, each reply delayed 20 ms.
    assert!(started.elapsed() >= std::time::Duration::from_millis(120), "latency knob ignored");
    faults.set_latency(std::time::Duration::ZERO);
    assert!(ok(port, None, "power status").await.contains("Chassis Power is on"));
    assert_eq!(machine.power_now(), PowerState::On);
    let stats = bmc.stats();
    assert_eq!(stats.power_on, 1);
    assert_eq!(stats.sessions_closed, 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_cipher_suite_3() {
    full_round(Some(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_default_suite_is_17() {
    let lab = lab(BmcConfig::default()).await;
    let mut cmd = tokio::process::Command::new("ipmitool");
    cmd.args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &lab.port.to_string()])
        .args(["-U", "admin", "-P", "password", "-v", "power", "status"]);
    let out = cmd.output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("best available cipher suite 17"), "{text}");
    drop(lab);
    full_round(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_suites_1_and_2_and_suite_0_off() {
    let lab = lab(BmcConfig::default()).await;
    ok(lab.port, Some(1), "power status").await;
    ok(lab.port, Some(2), "power status").await;
    let (success, text) = ipmitool(lab.port, "password", Some(0), "power status").await;
    assert!(!success && text.contains("no matching cipher suite"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_busy_and_unknown_user() {
    let lab =
        lab(BmcConfig { username: "root".into(), password: Password("calvin".into()), ..Default::default() }).await;
    // Unknown user name: RAKP 2 carries "unauthorized name".
    let mut cmd = tokio::process::Command::new("ipmitool");
    cmd.args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &lab.port.to_string()])
        .args(["-U", "admin", "-P", "calvin", "-C", "3", "power", "status"]);
    let out = cmd.output().await.unwrap();
    assert!(!out.status.success());
    assert_eq!(lab.bmc.stats().auth_failures, 1);
    assert_eq!(lab.bmc.session_count(), 0);
    // Busy BMC: Set Session Privilege Level already gets 0xC0.
    lab.bmc.faults().set_busy(true);
    let mut cmd = tokio::process::Command::new("ipmitool");
    cmd.args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &lab.port.to_string()])
        .args(["-U", "root", "-P", "calvin", "-C", "3", "power", "status"]);
    let out = cmd.output().await.unwrap();
    assert!(!out.status.success());
    assert!(lab.bmc.stats().busy_replies >= 1);
}

/// The blocking loop takes waiting datagrams in batches (`recvmmsg`): more clients than one batch
/// holds, all sending before the loop reads, each get their own reply; a malformed datagram in
/// the batch is dropped without holding up the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_loop_answers_every_datagram_of_a_batch() {
    let machine = Arc::new(SimMachine::new("node-0", SimMachineConfig::default()));
    let faults = Arc::new(Faults::new(FaultSettings::default()));
    let bmc = Bmc::new("node-0", BmcConfig::default(), machine, faults).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    // 40 pings (ASF presence ping, tag i) and one truncated packet wait in the socket's queue
    // before the loop starts.
    let clients: Vec<std::net::UdpSocket> =
        (0..40).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, c) in clients.iter().enumerate() {
        if i == 20 {
            junk.send_to(&[0x06, 0x00, 0xFF], addr).unwrap();
        }
        c.send_to(&[0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, i as u8, 0x00, 0x00], addr).unwrap();
    }
    let runtime = tokio::runtime::Handle::current();
    let served = bmc.clone();
    std::thread::spawn(move || serve_udp_blocking(served, socket, &runtime));
    let replies = tokio::task::spawn_blocking(move || {
        clients
            .iter()
            .map(|c| {
                c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 64];
                let (n, from) = c.recv_from(&mut buf).expect("no pong");
                assert_eq!(from, addr);
                buf[..n].to_vec()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (i, r) in replies.iter().enumerate() {
        // RMCP header, IANA, then message type 0x40 (pong) and the ping's tag.
        assert_eq!(&r[8..10], &[0x40, i as u8], "reply {i}: {r:02x?}");
    }
    let stats = bmc.stats();
    assert_eq!(stats.packets_in, 41, "{stats:?}");
    assert_eq!(stats.packets_rejected, 1, "{stats:?}");
}

/// A machine whose power reads take a while (as a QEMU machine's QMP round trip does).
struct SlowMachine(SimMachine);

#[async_trait::async_trait]
impl Machine for SlowMachine {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn macs(&self) -> Vec<[u8; 6]> {
        self.0.macs()
    }
    async fn power_state(&self) -> Result<PowerState, ferric_sim::machine::MachineError> {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        self.0.power_state().await
    }
    async fn power_on(&self) -> Result<(), ferric_sim::machine::MachineError> {
        self.0.power_on().await
    }
    async fn power_off(&self) -> Result<(), ferric_sim::machine::MachineError> {
        self.0.power_off().await
    }
    async fn soft_off(&self) -> Result<(), ferric_sim::machine::MachineError> {
        self.0.soft_off().await
    }
    async fn reset(&self) -> Result<(), ferric_sim::machine::MachineError> {
        self.0.reset().await
    }
    async fn set_boot(&self, s: ferric_sim::machine::BootSelection) -> Result<(), ferric_sim::machine::MachineError> {
        self.0.set_boot(s).await
    }
    async fn boot(&self) -> Result<ferric_sim::machine::BootSelection, ferric_sim::machine::MachineError> {
        self.0.boot().await
    }
}

/// A handler that has to wait (here for the machine's power state) is finished on the runtime
/// by the blocking loop, and ipmitool gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_loop_waits_for_a_slow_machine() {
    let machine = Arc::new(SlowMachine(SimMachine::new("node-0", SimMachineConfig::default())));
    let faults = Arc::new(Faults::new(FaultSettings::default()));
    let bmc = Bmc::new("node-0", BmcConfig::default(), machine, faults).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || serve_udp_blocking(bmc, socket, &runtime));
    let started = tokio::time::Instant::now();
    assert!(ok(port, Some(3), "power status").await.contains("Chassis Power is off"));
    assert!(started.elapsed() >= std::time::Duration::from_millis(30), "the machine was not asked");
}
