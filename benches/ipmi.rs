//! IPMI round trips per second: ferric's virtual BMC vs pyghmi 1.6.19's BMC server (the engine
//! of OpenStack VirtualBMC), both driven by ferric's IPMI client over UDP on loopback, in the
//! same run; then one `ferric vbmc` process serving 1,000 BMCs (memory per BMC, requests/s).
//!
//! Run: `cargo bench --bench ipmi` (FERRIC_VENV selects the venv with pyghmi, default
//! /opt/ferric-venv; FERRIC_BENCH_SECS the length of each measurement, default 3).

use ferric_service::ipmi::{ClientConfig, IpmiClient, Target, UdpConnector};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

static FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A child process killed (by PID) when dropped.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// A base port with `n` consecutive free UDP ports on loopback (checked, then released).
fn free_port_range(n: u16) -> u16 {
    let mut base = 20_000 + (std::process::id() % 20_000) as u16;
    loop {
        let ok = (0..n).all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return base;
        }
        base = if base > 60_000 { 20_000 } else { base + n };
    }
}

/// Waits for a line starting with `marker` on the child's stdout.
fn wait_ready(child: &mut Child, marker: &str) {
    let out = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line.expect("read child stdout");
        if line.starts_with(marker) {
            // Keep draining in the background so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return;
        }
    }
    panic!("child exited before printing {marker:?}");
}

fn ferric_vbmc(nodes: usize, base: u16) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferric"))
        .args(["vbmc", "--nodes", &nodes.to_string(), "--base-port", &base.to_string()])
        .args(["--username", "admin", "--password", "password"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferric vbmc");
    wait_ready(&mut child, "ferric vbmc:");
    Proc(child)
}

fn pyghmi_bmc(port: u16) -> Proc {
    let venv = std::env::var("FERRIC_VENV").unwrap_or_else(|_| "/opt/ferric-venv".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pyghmi_bmc.py");
    let mut child = Command::new(format!("{venv}/bin/python"))
        .args([script, &port.to_string(), "admin", "password"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pyghmi BMC (pip install pyghmi==1.6.19 in FERRIC_VENV)");
    wait_ready(&mut child, "READY");
    Proc(child)
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(&format!("/proc/{pid}/stat"))
}

fn stat_cpu_secs(path: &str) -> f64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Runs a measurement and returns (requests/s, BMC CPU microseconds per request, client CPU
/// microseconds per request). The client's CPU is this process's (the client is the same for
/// both BMCs; it shows how much of a round trip is not the BMC's).
async fn measured<F: Future<Output = f64>>(pid: u32, secs: f64, run: F) -> (f64, f64, f64) {
    let (before, client_before) = (cpu_secs(pid), stat_cpu_secs("/proc/self/stat"));
    let rate = run.await;
    let used = cpu_secs(pid) - before;
    let client = stat_cpu_secs("/proc/self/stat") - client_before;
    (rate, used * 1e6 / (rate * secs), client * 1e6 / (rate * secs))
}

/// The loopback floor: round trips/s of a trivial blocking UDP echo (two threads, one 80-byte
/// datagram each way, no IPMI at all). No BMC on this path can answer one client faster.
fn udp_echo_floor(secs: f64) -> f64 {
    let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind echo");
    let addr = server.local_addr().expect("echo addr");
    server.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], from);
            }
        }
    });
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.connect(addr).expect("connect");
    let mut buf = [0u8; 1024];
    let start = std::time::Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        client.send(&[1u8; 80]).expect("send");
        client.recv(&mut buf).expect("recv");
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = echo.join();
    rate
}

fn config() -> ClientConfig {
    ClientConfig {
        attempt_timeout: Duration::from_secs(2),
        retries: 2,
        min_interval: Duration::ZERO,
        ..Default::default()
    }
}

fn target(port: u16) -> Target {
    Target::new("127.0.0.1", "admin", "password").with_port(port).with_cipher_suite(3)
}

/// (a) open session + Get Chassis Status + close, by `clients` concurrent clients, for `secs`.
async fn session_per_request(port: u16, secs: f64, clients: usize) -> f64 {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        set.spawn(async move {
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < secs {
                let c = IpmiClient::new(target(port), Arc::new(UdpConnector), config());
                // Count only successes; failures are reported (pyghmi's server fails some
                // concurrent handshakes at RAKP 2).
                match c.chassis_status().await {
                    Ok(_) => n += 1,
                    Err(_) => {
                        FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                c.close().await;
            }
            n
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        n += r.expect("client task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// (b) Get Chassis Status inside one session per client, `clients` concurrent, for `secs`.
async fn in_session(port: u16, secs: f64, clients: usize) -> f64 {
    let mut ready = Vec::new();
    for _ in 0..clients {
        let c = IpmiClient::new(target(port), Arc::new(UdpConnector), config());
        c.chassis_status().await.expect("first chassis status");
        ready.push(c);
    }
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in ready {
        set.spawn(async move {
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < secs {
                c.chassis_status().await.expect("chassis status");
                n += 1;
            }
            c.close().await;
            n
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        n += r.expect("client task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn row(label: &str, (f, fcpu, fcl): (f64, f64, f64), (p, pcpu, pcl): (f64, f64, f64)) {
    let failed = FAILURES.swap(0, std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        println!("  ({failed} failed handshakes in the next figure)");
    }
    println!(
        "  {label:<58} ferric vbmc {f:>8.1}/s  pyghmi {p:>7.1}/s  ratio {:>5.1}x | BMC CPU per request: ferric {fcpu:>6.1} us  pyghmi {pcpu:>7.1} us  ratio {:>5.1}x",
        f / p,
        pcpu / fcpu
    );
    println!("  {:<58} client CPU per request: with ferric vbmc {fcl:>6.1} us, with pyghmi {pcl:>6.1} us", "");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench` flag: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs: f64 =
        std::env::var("FERRIC_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(if quick { 0.2 } else { 3.0 });

    let fport = free_port_range(1);
    let ferric = ferric_vbmc(1, fport);
    let pport = free_udp_port();
    let pyghmi = pyghmi_bmc(pport);

    println!(
        "IPMI round trips/s, ferric's client (suite 3, loopback UDP), {secs} s per figure; \
         each BMC is its own process"
    );
    let floor = udp_echo_floor(secs);
    println!(
        "  loopback floor: trivial blocking UDP echo, 1 client: {floor:.0} round trips/s ({:.1} us each)",
        1e6 / floor
    );
    for clients in [1usize, 8] {
        let (fpid, ppid) = (ferric.0.id(), pyghmi.0.id());
        let fa = measured(fpid, secs, session_per_request(fport, secs, clients)).await;
        let pa = measured(ppid, secs, session_per_request(pport, secs, clients)).await;
        row(&format!("(a) open session + Get Chassis Status + close, {clients} client(s)"), fa, pa);
        let fb = measured(fpid, secs, in_session(fport, secs, clients)).await;
        let pb = measured(ppid, secs, in_session(pport, secs, clients)).await;
        row(&format!("(b) Get Chassis Status in one session, {clients} client(s)"), fb, pb);
        if clients == 1 {
            println!(
                "  (a BMC answering (b) as fast as the echo floor would be {:.1}x pyghmi: the most any BMC can reach here)",
                floor / pb.0
            );
        }
    }
    drop(pyghmi);
    drop(ferric);

    // One process serving many BMCs.
    let count: u16 = if quick { 50 } else { 1000 };
    let one_base = free_port_range(1);
    let one = ferric_vbmc(1, one_base);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_one = rss_kib(one.0.id());
    drop(one);
    let base = free_port_range(count);
    let many = ferric_vbmc(count as usize, base);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle = rss_kib(many.0.id());

    // Every BMC gets a client with a session; 64 workers spread Get Chassis Status over them.
    let clients: Vec<Arc<IpmiClient>> =
        (0..count).map(|i| Arc::new(IpmiClient::new(target(base + i), Arc::new(UdpConnector), config()))).collect();
    let workers = 64usize;
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mine: Vec<Arc<IpmiClient>> = clients.iter().skip(w).step_by(workers).cloned().collect();
        set.spawn(async move {
            let mut n = 0u64;
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < secs {
                for c in &mine {
                    c.chassis_status().await.expect("chassis status");
                    n += 1;
                }
            }
            n
        });
    }
    let mut total = 0u64;
    while let Some(r) = set.join_next().await {
        total += r.expect("worker");
    }
    let rate = total as f64 / t0.elapsed().as_secs_f64();
    let rss_busy = rss_kib(many.0.id());
    for c in &clients {
        c.close().await;
    }
    drop(many);
    let per_idle = (rss_idle.saturating_sub(rss_one)) as f64 / (count - 1) as f64;
    let per_busy = (rss_busy.saturating_sub(rss_one)) as f64 / (count - 1) as f64;
    println!("One `ferric vbmc` process serving {count} BMCs:");
    println!("  RSS: 1 BMC {rss_one} KiB, {count} BMCs {rss_idle} KiB idle / {rss_busy} KiB with a session each");
    println!("  memory per BMC: {per_idle:.1} KiB idle, {per_busy:.1} KiB with a session");
    println!(
        "  Get Chassis Status across all {count} BMCs ({workers} concurrent, sessions kept): {rate:.0} requests/s"
    );
}
