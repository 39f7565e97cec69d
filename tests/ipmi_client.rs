//! ferric's IPMI client against ferric-sim's virtual BMC: over real UDP on loopback, and over
//! in-memory links on a paused clock (the simulation path).

use ferric_lab::machine::{SimMachine, SimMachineConfig};
use ferric_service::ipmi::{
    BootDevice, ChannelConnector, ClientConfig, Connector, IpmiClient, IpmiError, IpmiPool, PowerState, Target,
    UdpConnector,
};
use ferric_sim::machine::{BootDevice as SimBoot, Machine, PowerState as SimPower};
use ferric_sim::vbmc::{Bmc, BmcConfig, BmcStats, FaultSettings, Faults, serve_udp};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

fn node(config: BmcConfig) -> (Bmc, Arc<SimMachine>) {
    let machine =
        Arc::new(SimMachine::new("node-0", SimMachineConfig { soft_off_delay_ms: 1_000, ..Default::default() }));
    let bmc = Bmc::new("node-0", config, machine.clone(), Arc::new(Faults::default())).unwrap();
    (bmc, machine)
}

async fn udp_bmc(config: BmcConfig) -> (Bmc, Arc<SimMachine>, u16, tokio::task::JoinHandle<()>) {
    let (bmc, machine) = node(config);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let b = bmc.clone();
    let task = tokio::spawn(async move {
        let _ = serve_udp(b, socket).await;
    });
    (bmc, machine, port, task)
}

fn fast() -> ClientConfig {
    ClientConfig {
        attempt_timeout: Duration::from_millis(300),
        retries: 2,
        backoff: Duration::from_millis(20),
        min_interval: Duration::ZERO,
        ..Default::default()
    }
}

fn client(port: u16, password: &str, suite: u8) -> IpmiClient {
    let target = Target::new("127.0.0.1", "admin", password).with_port(port).with_cipher_suite(suite);
    IpmiClient::new(target, Arc::new(UdpConnector), fast())
}

async fn exercise(c: &IpmiClient, machine: &SimMachine) {
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);
    c.set_boot_device(BootDevice::Pxe, false, true).await.unwrap();
    let b = c.get_boot_device().await.unwrap();
    assert_eq!((b.device, b.persistent, b.efi), (BootDevice::Pxe, false, true));
    c.power_on().await.unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    // The one-time PXE selection was consumed by the boot.
    assert_eq!(c.get_boot_device().await.unwrap().device, BootDevice::None);
    assert_eq!(machine.subscribe().borrow().last_boot.unwrap().device, SimBoot::Pxe);
    c.set_boot_device(BootDevice::Disk, true, false).await.unwrap();
    c.power_cycle().await.unwrap();
    c.power_reset().await.unwrap();
    let b = c.get_boot_device().await.unwrap();
    assert_eq!((b.device, b.persistent), (BootDevice::Disk, true));
    c.power_off().await.unwrap();
    assert_eq!(machine.power_now(), SimPower::Off);
    let id = c.device_id().await.unwrap();
    assert_eq!(id.ipmi_version, (2, 0));
    let e = c.raw(0x06, 0x99, &[]).await.unwrap_err();
    assert_eq!(e.completion_code(), Some(0xC1), "{e}");
}

#[tokio::test]
async fn client_over_udp_all_suites() {
    let (bmc, machine, port, task) = udp_bmc(BmcConfig::default()).await;
    for suite in [3u8, 17, 2, 1] {
        machine.power_off().await.unwrap();
        let c = client(port, "password", suite);
        exercise(&c, &machine).await;
        c.close().await;
    }
    let s = bmc.stats();
    // One session per client, reused for every command.
    assert_eq!(s.sessions_opened, 4, "{s:?}");
    assert_eq!(s.sessions_closed, 4, "{s:?}");
    assert_eq!(bmc.session_count(), 0);
    task.abort();
}

#[tokio::test]
async fn client_errors_over_udp() {
    let (bmc, _machine, port, task) = udp_bmc(BmcConfig::default()).await;

    let e = client(port, "wrong", 3).power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::AuthFailed { status: 0x0F, .. }), "{e}");
    // The client told the BMC (RAKP 3 with an error), so nothing is left pending.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(bmc.session_count(), 0);

    let c =
        IpmiClient::new(Target::new("127.0.0.1", "nobody", "password").with_port(port), Arc::new(UdpConnector), fast());
    let e = c.power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::AuthFailed { status: 0x0D, .. }), "{e}");

    let e = client(port, "password", 0).power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::SessionRefused { status: 0x11, .. }), "{e}");

    let e = client(port, "password", 5).power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::InvalidTarget(_)), "{e}");

    bmc.set_faults(FaultSettings { busy: true, ..Default::default() });
    let e = client(port, "password", 3).power_state().await.unwrap_err();
    assert_eq!(e.completion_code(), Some(0xC0), "{e}");
    assert_eq!(bmc.stats().busy_replies, 3, "busy is retried: 1 + 2 retries");

    bmc.set_faults(FaultSettings { unresponsive: true, ..Default::default() });
    let e = client(port, "password", 3).power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::Timeout { attempts: 3, .. }), "{e}");

    task.abort();
    // Nobody listening at all.
    let e = client(port, "password", 3).power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::Timeout { .. }), "{e}");
}

/// A small simulated fleet reachable through in-memory links only.
type Nodes = Vec<(Bmc, Arc<SimMachine>)>;

fn sim_fleet(n: usize, faults: FaultSettings) -> (Nodes, Arc<dyn Connector>) {
    let nodes: Nodes = (0..n)
        .map(|i| {
            let machine = Arc::new(SimMachine::new(format!("node-{i}"), Default::default()));
            let config = BmcConfig { seed: 42 + i as u64, ..Default::default() };
            let bmc = Bmc::new(format!("node-{i}"), config, machine.clone(), Arc::new(Faults::new(faults))).unwrap();
            (bmc, machine)
        })
        .collect();
    let bmcs: Vec<Bmc> = nodes.iter().map(|(b, _)| b.clone()).collect();
    // BMC i is "192.0.2.1:6230+i" in the simulation's address book.
    let connector = ChannelConnector::new(move |addr, port| {
        let i = port.checked_sub(6230)? as usize;
        (addr == "192.0.2.1").then(|| bmcs.get(i).map(Bmc::link))?
    });
    (nodes, Arc::new(connector))
}

fn sim_target(i: usize) -> Target {
    Target::new("192.0.2.1", "admin", "password").with_port(6230 + i as u16)
}

/// Runs a fixed workload on a paused clock; returns what the BMCs saw and the virtual time.
async fn lossy_run(seed: u64) -> (Vec<BmcStats>, Duration, usize) {
    let (nodes, connector) = sim_fleet(3, FaultSettings { drop_rate: 0.2, latency_ms: 40, ..Default::default() });
    let config = ClientConfig { rng_seed: Some(seed), retries: 8, ..Default::default() };
    let pool = IpmiPool::new(connector, config, 16);
    let start = Instant::now();
    let mut failures = 0;
    for round in 0..10 {
        for i in 0..3 {
            let c = pool.client(&sim_target(i));
            let r = if round % 2 == 0 { c.power_on().await } else { c.power_off().await };
            failures += usize::from(r.is_err());
            failures += usize::from(c.power_state().await.is_err());
        }
    }
    let stats = nodes.iter().map(|(b, _)| b.stats()).collect();
    (stats, start.elapsed(), failures)
}

#[tokio::test(start_paused = true)]
async fn paused_clock_in_memory_lossy_links_are_deterministic() {
    let (a, ta, fa) = lossy_run(7).await;
    let (b, tb, fb) = lossy_run(7).await;
    assert_eq!(a, b, "same seeds, same packets");
    assert_eq!(ta, tb, "same virtual time");
    assert_eq!(fa, fb);
    assert!(a.iter().all(|s| s.packets_dropped > 0), "{a:?}");
    // Retries absorb almost all of a 20% loss rate in each direction (an operation may still
    // run out of its 15 s bound when a session has to be rebuilt several times).
    assert!(fa <= 2, "{fa} failures: {a:?}");
    assert!(a.iter().all(|s| s.packets_rejected == 0), "{a:?}");
    // 60 commands at 40 ms latency and a 100 ms minimum interval, plus retries: seconds of
    // virtual time, microseconds of real time.
    assert!(ta > Duration::from_secs(3), "{ta:?}");
}

#[tokio::test(start_paused = true)]
async fn paused_clock_timeouts_sessions_and_knobs() {
    let (nodes, connector) = sim_fleet(1, FaultSettings::default());
    let (bmc, machine) = &nodes[0];
    let config = ClientConfig { rng_seed: Some(1), ..Default::default() };
    let c = IpmiClient::new(sim_target(0), connector.clone(), config.clone());
    c.power_on().await.unwrap();
    assert_eq!(machine.power_now(), SimPower::On);
    assert_eq!(bmc.stats().sessions_opened, 1);

    // Latency below the attempt timeout: slower, no retries.
    bmc.faults().set_latency(Duration::from_millis(400));
    let t = Instant::now();
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    assert!(t.elapsed() >= Duration::from_millis(400));
    bmc.faults().set_latency(Duration::ZERO);

    // The BMC drops the idle session after 60 s; the client notices it is stale and opens a new
    // one instead of timing out.
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(bmc.session_count(), 0);
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    assert_eq!(bmc.stats().sessions_opened, 2);
    assert_eq!(bmc.stats().sessions_expired, 1);

    // Power commands acknowledged but ignored: the wire says OK, the machine stays on.
    bmc.faults().set_ignore_power(true);
    c.power_off().await.unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    assert_eq!(bmc.stats().power_ignored, 1);
    bmc.faults().set_ignore_power(false);

    // Soft off takes the machine's configured delay (2 s default).
    c.power_soft().await.unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);

    // Unresponsive BMC: a bounded failure, with the configured number of attempts.
    bmc.faults().set_unresponsive(true);
    let t = Instant::now();
    let e = c.power_on().await.unwrap_err();
    assert!(matches!(e, IpmiError::Timeout { attempts: 4, .. }), "{e}");
    assert!(t.elapsed() <= config.command_timeout, "{:?}", t.elapsed());
    // Back to life: the client re-establishes (its old session was dropped after misses).
    bmc.faults().set_unresponsive(false);
    c.power_on().await.unwrap();
    assert_eq!(machine.power_now(), SimPower::On);
    assert_eq!(bmc.stats().sessions_opened, 3);

    // Minimum interval between commands to one BMC.
    let t = Instant::now();
    for _ in 0..5 {
        c.power_state().await.unwrap();
    }
    assert!(t.elapsed() >= config.min_interval * 5);
}

#[tokio::test(start_paused = true)]
async fn lost_reply_to_power_cycle_is_not_executed_twice() {
    let (nodes, connector) = sim_fleet(1, FaultSettings::default());
    let (bmc, machine) = &nodes[0];
    let c = IpmiClient::new(sim_target(0), connector, ClientConfig { rng_seed: Some(3), ..Default::default() });
    c.power_on().await.unwrap();
    // Lose every reply for a moment: the request arrives, the reply is dropped.
    let boots_before = machine.stats().boots;
    let b = bmc.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // Let the request in, then make replies vanish until the first retry is under way.
        b.faults().set_latency(Duration::from_millis(1_500));
        let _ = rx.await;
        b.faults().set_latency(Duration::ZERO);
    });
    tokio::task::yield_now().await;
    let cycle = c.power_cycle();
    tokio::pin!(cycle);
    tokio::select! {
        _ = &mut cycle => panic!("should not finish before the first attempt times out"),
        _ = tokio::time::sleep(Duration::from_millis(1_200)) => {}
    }
    let _ = tx.send(());
    cycle.await.unwrap();
    assert_eq!(machine.stats().boots, boots_before + 1, "cycled exactly once");
    assert!(bmc.stats().duplicates >= 1);
}

#[tokio::test(start_paused = true)]
async fn session_limit_expiry_and_replay_protection() {
    let machine = Arc::new(SimMachine::new("n", Default::default()));
    let bmc = Bmc::new("n", BmcConfig { max_sessions: 2, ..Default::default() }, machine, Arc::new(Faults::default()))
        .unwrap();
    // Every datagram the clients send, for the replay check below.
    let sent = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let (b, s) = (bmc.clone(), sent.clone());
    let connector = Arc::new(ChannelConnector::new(move |_, _| {
        let (to_bmc, mut from_client) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let (to_client, from_bmc) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let (b, s) = (b.clone(), s.clone());
        tokio::spawn(async move {
            while let Some(p) = from_client.recv().await {
                s.lock().unwrap().push(p.clone());
                if let Some(r) = b.on_datagram(ferric_sim::vbmc::Peer::Link(1), &p).await {
                    let _ = to_client.try_send(r.bytes);
                }
            }
        });
        Some((to_bmc, from_bmc))
    }));
    let config = ClientConfig { rng_seed: Some(11), retries: 1, ..Default::default() };
    let mk = |seed| {
        IpmiClient::new(sim_target(0), connector.clone(), ClientConfig { rng_seed: Some(seed), ..config.clone() })
    };
    let (a, b2, c) = (mk(1), mk(2), mk(3));
    a.power_state().await.unwrap();
    b2.power_state().await.unwrap();
    // Two sessions held: the third is refused with "insufficient resources" (0x01), after the
    // client's retry.
    let e = c.power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::SessionRefused { status: 0x01, .. }), "{e}");
    assert_eq!(bmc.stats().sessions_refused, 2);

    // Replaying the last in-session request verbatim is rejected (sequence window), silently.
    let last_request = sent
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|p| p.get(4) == Some(&0x06) && p.get(5).is_some_and(|t| t & 0xC0 == 0xC0))
        .cloned()
        .unwrap();
    let before = bmc.stats();
    let replay = bmc.on_datagram(ferric_sim::vbmc::Peer::Link(9), &last_request).await;
    assert!(replay.is_none());
    assert_eq!(bmc.stats().packets_rejected, before.packets_rejected + 1);
    assert_eq!(bmc.stats().get_chassis_status, before.get_chassis_status);

    // Idle sessions expire after 60 s; then there is room again.
    tokio::time::sleep(Duration::from_secs(61)).await;
    c.power_state().await.unwrap();
    assert_eq!(bmc.stats().sessions_expired, 2);
}
