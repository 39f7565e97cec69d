//! Redfish requests per second: ferric's virtual Redfish BMC vs sushy-tools' `sushy-emulator
//! --fake` (the Redfish emulator OpenStack's CI uses), both over plain HTTP on loopback and each
//! its own process, driven by the same reqwest client in the same run (GET the System, PATCH its
//! boot override, POST a Reset; 1 and 8 concurrent clients with kept-alive connections); then one
//! `ferric vbmc --protocol redfish` process serving 1,000 BMCs (memory per BMC, requests/s).
//!
//! Run: `cargo bench --bench redfish` (FERRIC_VENV selects the venv with sushy-tools, default
//! /opt/ferric-venv; FERRIC_BENCH_SECS the length of each measurement, default 3).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// A child process killed (by PID) when dropped.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A base port with `n` consecutive free TCP ports on loopback (checked, then released).
fn free_port_range(n: u16) -> u16 {
    let mut base = 21_000 + (std::process::id() % 20_000) as u16;
    loop {
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
        base = if base > 60_000 { 21_000 } else { base + n };
    }
}

fn ferric_vbmc(nodes: usize, base: u16) -> Proc {
    let mut proc = Proc(
        Command::new(env!("CARGO_BIN_EXE_ferric"))
            .args(["vbmc", "--protocol", "redfish", "--http", "--nodes", &nodes.to_string()])
            .args(["--base-port", &base.to_string(), "--username", "admin", "--password", "password"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ferric vbmc"),
    );
    let out = proc.0.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        if line.expect("read ferric vbmc stdout").starts_with("ferric vbmc:") {
            // Keep draining in the background so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return proc;
        }
    }
    panic!("ferric vbmc exited before it was ready");
}

async fn sushy_emulator(port: u16, http: &reqwest::Client) -> Proc {
    let venv = std::env::var("FERRIC_VENV").unwrap_or_else(|_| "/opt/ferric-venv".into());
    let child = Command::new(format!("{venv}/bin/sushy-emulator"))
        .args(["--fake", "-i", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sushy-emulator (pip install sushy-tools in FERRIC_VENV)");
    let proc = Proc(child);
    let url = format!("http://127.0.0.1:{port}/redfish/v1/Systems");
    for _ in 0..300 {
        if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return proc;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sushy-emulator did not come up on port {port}");
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
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// One kind of request.
#[derive(Clone, Copy)]
enum Op {
    GetSystem,
    PatchBoot,
    PostReset,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::GetSystem => "GET the System",
            Op::PatchBoot => "PATCH Boot (Pxe, Once)",
            Op::PostReset => "POST ComputerSystem.Reset (On)",
        }
    }
    fn request(self, http: &reqwest::Client, system: &str) -> reqwest::RequestBuilder {
        let r = match self {
            Op::GetSystem => http.get(system),
            Op::PatchBoot => http.patch(system).json(&serde_json::json!({
                "Boot": { "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once" }
            })),
            Op::PostReset => http
                .post(format!("{system}/Actions/ComputerSystem.Reset"))
                .json(&serde_json::json!({ "ResetType": "On" })),
        };
        r.basic_auth("admin", Some("password"))
    }
}

/// `op` on `system` by `clients` concurrent clients for `secs`: (requests/s, BMC CPU
/// microseconds per request).
async fn measure(http: &reqwest::Client, pid: u32, system: &str, op: Op, clients: usize, secs: f64) -> (f64, f64) {
    let cpu0 = cpu_secs(pid);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let http = http.clone();
        let system = system.to_string();
        set.spawn(async move {
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < secs {
                let resp = op.request(&http, &system).send().await.expect("request");
                assert!(resp.status().is_success(), "{} -> {}", op.label(), resp.status());
                let _ = resp.bytes().await.expect("body");
                n += 1;
            }
            n
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        n += r.expect("client task");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = n as f64 / elapsed;
    (rate, (cpu_secs(pid) - cpu0) * 1e6 / n.max(1) as f64)
}

/// The System's URI on the BMC at `base` (the first member of its Systems collection).
async fn system_uri(http: &reqwest::Client, base: &str) -> String {
    let v: serde_json::Value = http
        .get(format!("{base}/redfish/v1/Systems"))
        .basic_auth("admin", Some("password"))
        .send()
        .await
        .expect("GET Systems")
        .json()
        .await
        .expect("Systems JSON");
    let id = v["Members"][0]["@odata.id"].as_str().expect("a System");
    format!("{base}{id}")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench` flag: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs: f64 =
        std::env::var("FERRIC_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(if quick { 0.2 } else { 3.0 });
    let http = reqwest::Client::builder().pool_max_idle_per_host(16).build().expect("reqwest client");

    let fport = free_port_range(1);
    let ferric = ferric_vbmc(1, fport);
    let sport = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let sushy = sushy_emulator(sport, &http).await;
    let fsys = system_uri(&http, &format!("http://127.0.0.1:{fport}")).await;
    let ssys = system_uri(&http, &format!("http://127.0.0.1:{sport}")).await;

    println!(
        "Redfish requests/s over loopback HTTP/1.1 (kept-alive connections, reqwest), {secs} s per figure; \
         each BMC is its own process"
    );
    for clients in [1usize, 8] {
        for op in [Op::GetSystem, Op::PatchBoot, Op::PostReset] {
            let (f, fcpu) = measure(&http, ferric.0.id(), &fsys, op, clients, secs).await;
            let (s, scpu) = measure(&http, sushy.0.id(), &ssys, op, clients, secs).await;
            println!(
                "  {:<32} {clients} client(s): ferric {f:>8.0}/s  sushy-emulator {s:>6.0}/s  ratio {:>5.1}x | BMC CPU per request: ferric {fcpu:>6.1} us  sushy-emulator {scpu:>7.1} us",
                op.label(),
                f / s
            );
        }
    }
    drop(sushy);
    drop(ferric);

    // One process serving many BMCs.
    let count: u16 = if quick { 50 } else { 1000 };
    let one = ferric_vbmc(1, free_port_range(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_one = rss_kib(one.0.id());
    drop(one);
    let base = free_port_range(count);
    let many = ferric_vbmc(count as usize, base);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle = rss_kib(many.0.id());
    let systems: Vec<String> =
        (0..count).map(|i| format!("http://127.0.0.1:{}/redfish/v1/Systems/System.1", base + i)).collect();
    let workers = 64usize.min(usize::from(count));
    let many_http = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("reqwest client");
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mine: Vec<String> = systems.iter().skip(w).step_by(workers).cloned().collect();
        let http = many_http.clone();
        set.spawn(async move {
            let mut n = 0u64;
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < secs {
                for s in &mine {
                    let r = Op::GetSystem.request(&http, s).send().await.expect("GET System");
                    assert!(r.status().is_success());
                    let _ = r.bytes().await;
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
    drop(many);
    let per_idle = rss_idle.saturating_sub(rss_one) as f64 / f64::from(count - 1);
    let per_busy = rss_busy.saturating_sub(rss_one) as f64 / f64::from(count - 1);
    println!("One `ferric vbmc --protocol redfish --http` process serving {count} BMCs:");
    println!(
        "  RSS: 1 BMC {rss_one} KiB, {count} BMCs {rss_idle} KiB idle / {rss_busy} KiB with a client connection each"
    );
    println!("  memory per BMC: {per_idle:.1} KiB idle, {per_busy:.1} KiB with a connection");
    println!("  GET the System across all {count} BMCs ({workers} concurrent clients): {rate:.0} requests/s");
}
