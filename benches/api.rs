//! API and conductor throughput over HTTP on loopback, against the figures real Ironic 39.0.0
//! (all-in-one, SQLite, fake-hardware) reached on this kind of machine (issue 2).
//!
//! Run: `cargo bench --bench api` (add `-- --nodes N` to change the 10,000-node RSS check).

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Ironic 39.0.0's figures from the issue (same machine kind, same work).
const IRONIC_ENROLL_PER_S: f64 = 38.0;
const IRONIC_GET_PER_S: f64 = 166.0;
const IRONIC_LIST_MS: f64 = 234.0;
const IRONIC_DETAIL_MS: f64 = 416.0;
const IRONIC_PHASES: [(&str, f64); 4] = [("manage", 29.0), ("provide", 16.0), ("deploy", 5.9), ("undeploy", 5.8)];
const IRONIC_RSS_MIB: f64 = 295.0;

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_ferric"))
        .args(["serve", "--api-bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .env("FERRIC_CONDUCTOR__WORKERS", "1000")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
}

fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

fn client() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("X-OpenStack-Ironic-API-Version", "latest".parse().unwrap());
    reqwest::Client::builder().default_headers(h).pool_max_idle_per_host(64).build().unwrap()
}

async fn enroll(c: &reqwest::Client, url: &str, n: usize, prefix: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let r = c
            .post(format!("{url}/v1/nodes"))
            .json(&json!({"driver": "fake-hardware", "name": format!("{prefix}-{i:05}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        ids.push(v["uuid"].as_str().unwrap().to_string());
    }
    ids
}

async fn get_rate(c: &reqwest::Client, url: &str, id: &str, conns: usize, dur: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (c, u, count, stop) = (c.clone(), format!("{url}/v1/nodes/{id}"), count.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = c.get(&u).send().await.unwrap();
                let _ = r.bytes().await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t = Instant::now();
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

async fn list_ms(c: &reqwest::Client, url: &str, path: &str, reps: usize) -> f64 {
    let mut best = f64::MAX;
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let b = c.get(format!("{url}{path}")).send().await.unwrap().bytes().await.unwrap();
        assert!(b.len() > 1000);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        best = best.min(ms);
        times.push(ms);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[times.len() / 2]
}

/// Fires `verb` at every node (10 connections), then waits until all reach `state`.
async fn phase(c: &reqwest::Client, url: &str, ids: &[String], verb: &str, state: &str) -> f64 {
    let t = Instant::now();
    let chunks: Vec<Vec<String>> = ids.chunks(ids.len().div_ceil(10)).map(|c| c.to_vec()).collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (c, url, verb) = (c.clone(), url.to_string(), verb.to_string());
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                loop {
                    let r = c
                        .put(format!("{url}/v1/nodes/{id}/states/provision"))
                        .json(&json!({"target": verb}))
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        202 => break,
                        409 | 503 => tokio::task::yield_now().await,
                        s => panic!("{verb} {id}: {s} {}", r.text().await.unwrap()),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    loop {
        let v: Value = c
            .get(format!("{url}/v1/nodes?provision_state={state}&limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["nodes"].as_array().unwrap().len() >= ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    ids.len() as f64 / t.elapsed().as_secs_f64()
}

fn row(what: &str, ours: f64, unit: &str, theirs: f64, higher_is_better: bool) {
    let ratio = if higher_is_better { ours / theirs } else { theirs / ours };
    println!("{what:<34} ferric {ours:>10.1} {unit:<6} ironic {theirs:>8.1} {unit:<6} ratio {ratio:>7.1}x");
}

#[tokio::main]
async fn main() {
    let big: usize =
        std::env::args().skip_while(|a| a != "--nodes").nth(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let s = start();
    let c = client();
    println!("ferric API benchmark (HTTP on loopback, release build, SQLite WAL)");

    let t = Instant::now();
    let ids = enroll(&c, &s.url, 1000, "bench").await;
    row("enroll 1000 nodes (sequential POST)", 1000.0 / t.elapsed().as_secs_f64(), "node/s", IRONIC_ENROLL_PER_S, true);

    let r1 = get_rate(&c, &s.url, &ids[500], 1, Duration::from_secs(3)).await;
    row("GET /v1/nodes/{uuid}, 1 connection", r1, "req/s", IRONIC_GET_PER_S, true);
    let r10 = get_rate(&c, &s.url, &ids[500], 10, Duration::from_secs(3)).await;
    row("GET /v1/nodes/{uuid}, 10 connections", r10, "req/s", IRONIC_GET_PER_S, true);

    row("GET /v1/nodes (1000 nodes)", list_ms(&c, &s.url, "/v1/nodes", 21).await, "ms", IRONIC_LIST_MS, false);
    row(
        "GET /v1/nodes/detail (1000 nodes)",
        list_ms(&c, &s.url, "/v1/nodes/detail", 11).await,
        "ms",
        IRONIC_DETAIL_MS,
        false,
    );

    // Lifecycle of 200 fresh nodes, phase by phase.
    let life = enroll(&c, &s.url, 200, "life").await;
    for ((verb, state), (_, theirs)) in
        [("manage", "manageable"), ("provide", "available"), ("active", "active"), ("deleted", "available")]
            .into_iter()
            .zip(IRONIC_PHASES)
    {
        let rate = phase(&c, &s.url, &life, verb, state).await;
        row(&format!("200-node lifecycle: {verb}"), rate, "node/s", theirs, true);
    }

    // RSS, idle, with `big` nodes.
    let have = 1200;
    let mut tasks = Vec::new();
    let per = (big - have).div_ceil(10);
    for k in 0..10 {
        let (c, url) = (c.clone(), s.url.clone());
        let n = per.min(big.saturating_sub(have + k * per));
        tasks.push(tokio::spawn(async move { enroll(&c, &url, n, &format!("rss{k}")).await.len() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_mib(s.child.id());
    row(&format!("RSS idle with {big} nodes"), rss, "MiB", IRONIC_RSS_MIB, false);
}
