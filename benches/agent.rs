//! Image writing benchmark: a 1 GiB raw image written to a file-backed disk by the ferric-agent
//! binary (`standby.prepare_image`: download from the image store's temp URL, SHA-256 verified
//! while streaming, no final fdatasync — as IPA, the
//! image is made durable by `standby.sync`, which ferric's conductor issues before any power off),
//! against `curl URL | dd of=FILE bs=1M` (no sync either) from the same server in the same run.
//! With the checksum on both sides: against `curl | tee >(openssl dgst -sha256) | dd`. For
//! durability, `prepare_image` + `standby.sync` is set against `curl | dd conv=fdatasync`.
//! The qcow2 path is compared with `qemu-img convert` of the same image (both without a sync).
//! Every timed run starts with an untimed sync(1), so no run pays for the previous one's writeback;
//! the agent and `curl | dd` runs are interleaved (which goes first alternates) and each figure is
//! the best of N. Beside the wall time, the CPU time (user + system) of each side is printed: the
//! agent process's from /proc/PID/stat, the shell pipeline's from getrusage(RUSAGE_CHILDREN), and
//! the image server's (this process) from getrusage(RUSAGE_SELF).
//!
//! Run: `cargo bench --bench agent` (FERRIC_BENCH_MIB=N changes the image size, default 1024;
//! FERRIC_BENCH_RUNS=N the runs per figure, default 5).

#[path = "../tests/common/agent_bin.rs"]
mod agent_bin;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use ferric_disk::http::ReqwestHttp;
use ferric_service::drivers::agent_client::AgentClient;
use ferric_service::drivers::agent_client::{AgentClientConfig, AgentTarget};
use ferric_service::images::{CreateImage, DiskFormat, ImageService, ImageStore};
use ferric_types::agent::{CommandStatus, HeartbeatRequest, ImageInfo, LookupConfig, LookupNode, LookupResponse};
use ferric_types::clock::Clock;
use parking_lot::Mutex;
use serde_json::Map;

const TOKEN: &str = "bench-token";
const RUNS: usize = 5;

async fn serve(router: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await });
    format!("http://{addr}")
}

fn write_image(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
}

/// Ends the agent process even when the benchmark panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Empties a file in place (the agent keeps its disk open: the inode must stay the same).
fn fresh(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
    f.set_len(0).unwrap();
    f.set_len(len).unwrap();
}

fn same_prefix(a: &Path, b: &Path, len: u64) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    let mut left = len as usize;
    while left > 0 {
        let n = left.min(ba.len());
        fa.read_exact(&mut ba[..n]).unwrap();
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
        left -= n;
    }
    true
}

fn shell(cmd: &str) -> Duration {
    let t = Instant::now();
    let st = Command::new("sh").args(["-c", cmd]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(st.success(), "{cmd}");
    t.elapsed()
}

/// Writes back everything dirty (untimed), so a run does not pay for the previous one's data.
async fn settle() {
    tokio::task::spawn_blocking(|| {
        let st = Command::new("sync").status().unwrap();
        assert!(st.success());
    })
    .await
    .unwrap();
}

/// CPU seconds (user + system) used so far by process `pid`, all its threads.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU seconds (user + system) of this process (`RUSAGE_SELF`) or of its reaped children.
fn rusage_cpu(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(who, &mut ru), 0);
        ru
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(ru.ru_utime) + s(ru.ru_stime)
}

/// One timed run: wall time, CPU of the side under test, CPU of the image server.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: f64,
    server: f64,
}

/// Runs a shell pipeline (after an untimed sync), timing it and its CPU (all processes of the
/// pipeline, reaped by sh and then by us).
async fn pipeline(cmd: String) -> Run {
    settle().await;
    let (c0, s0) = (rusage_cpu(libc::RUSAGE_CHILDREN), rusage_cpu(libc::RUSAGE_SELF));
    let wall = tokio::task::spawn_blocking(move || shell(&cmd)).await.unwrap();
    Run { wall, cpu: rusage_cpu(libc::RUSAGE_CHILDREN) - c0, server: rusage_cpu(libc::RUSAGE_SELF) - s0 }
}

fn walls(v: &[Run]) -> Vec<Duration> {
    v.iter().map(|r| r.wall).collect()
}

/// `wall/cpu/server` per run, in seconds.
fn fmt_runs(v: &[Run]) -> String {
    v.iter().map(|r| format!("{:.2}/{:.2}/{:.2}", r.wall.as_secs_f64(), r.cpu, r.server)).collect::<Vec<_>>().join(" ")
}

/// Seconds, to two decimals.
fn secs(v: &[Duration]) -> Vec<f64> {
    v.iter().map(|d| (d.as_secs_f64() * 100.0).round() / 100.0).collect()
}

fn best(v: &[Duration]) -> Duration {
    *v.iter().min().unwrap()
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("agent: bench");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let mib: usize = std::env::var("FERRIC_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let size = (mib as u64) << 20;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("image.raw");
    let qcow = dir.path().join("image.qcow2");
    let runs: usize = std::env::var("FERRIC_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(RUNS);
    eprintln!("preparing a {mib} MiB image...");
    write_image(&raw, mib);
    let st =
        Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(&qcow).status().unwrap();
    assert!(st.success());

    let store = Arc::new(ImageStore::open(&dir.path().join("store"), Clock::system(), 1 << 40).unwrap());
    let svc = Arc::new(ImageService::new(store.clone(), b"bench-key".to_vec(), Clock::system()));
    let store_url = serve(svc.clone().router()).await;
    let mut infos = Vec::new();
    for (p, fmt) in [(&raw, DiskFormat::Raw), (&qcow, DiskFormat::Qcow2)] {
        let img = store
            .create(CreateImage { name: Some(fmt.as_str().into()), disk_format: Some(fmt), ..Default::default() })
            .unwrap();
        let img = store.upload_file(&img.id, p).await.unwrap();
        let url = svc.temp_url(&store_url, &img.id, Duration::from_secs(3600)).unwrap();
        infos.push(ImageInfo {
            id: img.id.clone(),
            urls: vec![url],
            disk_format: Some(fmt.as_str().into()),
            os_hash_algo: img.os_hash_algo.clone(),
            os_hash_value: img.os_hash_value.clone(),
            ..Default::default()
        });
    }

    // A minimal API for the agent's lookup and heartbeats.
    let beats: Arc<Mutex<Vec<HeartbeatRequest>>> = Default::default();
    let b2 = beats.clone();
    let api = Router::new()
        .route(
            "/v1/lookup",
            get(|| async {
                axum::Json(LookupResponse {
                    node: LookupNode {
                        uuid: "bench-node".into(),
                        properties: Map::new(),
                        instance_info: Map::new(),
                        driver_internal_info: Map::new(),
                        extra: Map::new(),
                    },
                    config: LookupConfig::new(300, TOKEN.into()),
                })
            }),
        )
        .route(
            "/v1/heartbeat/{node}",
            post(move |axum::Json(hb): axum::Json<HeartbeatRequest>| {
                let b = b2.clone();
                async move {
                    b.lock().push(hb);
                    StatusCode::ACCEPTED
                }
            }),
        );
    let api_url = serve(api).await;
    let disk = dir.path().join("disk.img");
    fresh(&disk, size + (64 << 20));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let agent = Command::new(agent_bin::path())
        .args(["--api-url", &api_url, "--mac", "52:54:00:be:0c:01", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--disk")
        .arg(&disk)
        .env("RUST_LOG", std::env::var("FERRIC_BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let agent = KillOnDrop(agent);
    while beats.lock().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let target = AgentTarget { url: format!("http://127.0.0.1:{port}"), token: Some(TOKEN.into()) };
    let client = AgentClient::new(
        Arc::new(ReqwestHttp::new(Duration::from_secs(5)).unwrap()),
        AgentClientConfig { command_timeout: Duration::from_secs(600), ..Default::default() },
    );
    let agent_pid = agent.0.id();
    // (prepare_image, prepare_image + standby.sync)
    let deploy = |info: ImageInfo| {
        let client = client.clone();
        let target = target.clone();
        async move {
            settle().await;
            let (c0, s0) = (proc_cpu(agent_pid), rusage_cpu(libc::RUSAGE_SELF));
            let t = Instant::now();
            let r = client.prepare_image(&target, &info, None).await.unwrap();
            let r = client.get_command(&target, &r.id, true).await.unwrap();
            let d = t.elapsed();
            let run = Run { wall: d, cpu: proc_cpu(agent_pid) - c0, server: rusage_cpu(libc::RUSAGE_SELF) - s0 };
            assert_eq!(r.command_status, CommandStatus::Succeeded, "{r:?}");
            client.sync(&target).await.unwrap();
            (run, t.elapsed())
        }
    };

    let out = dir.path().join("dd.out");
    let o = out.display().to_string();
    let url = infos[0].urls[0].clone();
    let sum = dir.path().join("dd.sha256");
    let (mut ours, mut ours_sync, mut dd, mut dd_sync, mut dd_hash) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        // Which side goes first alternates, so neither always inherits the other's aftermath.
        for side in [i % 2, 1 - i % 2] {
            if side == 0 {
                fresh(&disk, size + (64 << 20));
                let (a, b) = deploy(infos[0].clone()).await;
                ours.push(a);
                ours_sync.push(b);
                if i == 0 {
                    assert!(same_prefix(&raw, &disk, size), "agent disk differs from the image");
                }
            } else {
                let _ = std::fs::remove_file(&out);
                dd.push(pipeline(format!("curl -s '{url}' | dd of={o} bs=1M")).await);
            }
        }
        let _ = std::fs::remove_file(&out);
        dd_sync.push(pipeline(format!("curl -s '{url}' | dd of={o} bs=1M conv=fdatasync")).await);
        if i == 0 {
            assert!(same_prefix(&raw, &out, size), "curl|dd output differs from the image");
        }
        // The shell pipeline with the checksum on too: tee feeds openssl (SHA-NI, like the agent's
        // sha2) beside dd; the pipeline ends when both have.
        let _ = std::fs::remove_file(&out);
        dd_hash.push(
            pipeline(format!(
                "{{ curl -s '{url}' | tee /dev/fd/3 | dd of={o} bs=1M; }} 3>&1 | openssl dgst -sha256 -r > {}",
                sum.display()
            ))
            .await,
        );
        if i == 0 {
            let got = std::fs::read_to_string(&sum).unwrap();
            assert_eq!(Some(got.split_whitespace().next().unwrap()), infos[0].os_hash_value.as_deref());
        }
    }
    let (mut q_ours, mut q_img) = (Vec::new(), Vec::new());
    for i in 0..runs {
        fresh(&disk, size + (64 << 20));
        q_ours.push(deploy(infos[1].clone()).await.0.wall);
        if i == 0 {
            assert!(same_prefix(&raw, &disk, size), "agent qcow2 result differs from the image");
        }
        let _ = std::fs::remove_file(&out);
        q_img.push(
            pipeline(format!("qemu-img convert -f qcow2 -O raw {} {}", qcow.display(), out.display())).await.wall,
        );
    }
    drop(agent);

    let (a, a2, b, c) = (best(&walls(&ours)), best(&ours_sync), best(&walls(&dd)), best(&walls(&dd_sync)));
    let min_cpu = |v: &[Run]| v.iter().map(|r| r.cpu).fold(f64::INFINITY, f64::min);
    println!("raw image, {mib} MiB, best of {runs}, each run after an untimed sync:");
    println!("  without a final flush (data may still be in the page cache when the timer stops):");
    println!(
        "    ferric-agent prepare_image (SHA-256 while streaming)  {:>8.3} s  {:>7.0} MB/s  cpu {:.2} s",
        a.as_secs_f64(),
        mbps(size, a),
        min_cpu(&ours)
    );
    println!(
        "    curl URL | dd of=FILE bs=1M                          {:>8.3} s  {:>7.0} MB/s  cpu {:.2} s",
        b.as_secs_f64(),
        mbps(size, b),
        min_cpu(&dd)
    );
    let h = best(&walls(&dd_hash));
    println!(
        "    curl URL | tee >(openssl dgst -sha256) | dd bs=1M    {:>8.3} s  {:>7.0} MB/s  cpu {:.2} s",
        h.as_secs_f64(),
        mbps(size, h),
        min_cpu(&dd_hash)
    );
    println!("    ratio vs curl|dd            {:.2}x", b.as_secs_f64() / a.as_secs_f64());
    println!("    ratio vs curl|tee sha256|dd {:.2}x", h.as_secs_f64() / a.as_secs_f64());
    println!("    (cpu: the least user+system seconds of any run, server excluded)");
    println!("  durable (on stable storage when the timer stops):");
    println!(
        "    ferric-agent prepare_image + standby.sync            {:>8.3} s  {:>7.0} MB/s",
        a2.as_secs_f64(),
        mbps(size, a2)
    );
    println!(
        "    curl URL | dd of=FILE bs=1M conv=fdatasync           {:>8.3} s  {:>7.0} MB/s",
        c.as_secs_f64(),
        mbps(size, c)
    );
    println!("    ratio vs curl|dd fdatasync  {:.2}x", c.as_secs_f64() / a2.as_secs_f64());
    let (qa, qb) = (best(&q_ours), best(&q_img));
    println!(
        "qcow2 image ({} MiB file), {mib} MiB virtual, best of {runs}:",
        std::fs::metadata(&qcow).unwrap().len() >> 20
    );
    println!("  ferric-agent (HTTP, streaming convert)     {:>8.3} s  {:>7.0} MB/s", qa.as_secs_f64(), mbps(size, qa));
    println!("  qemu-img convert -O raw (local file)       {:>8.3} s  {:>7.0} MB/s", qb.as_secs_f64(), mbps(size, qb));
    println!("  ratio vs qemu-img convert   {:.2}x", qb.as_secs_f64() / qa.as_secs_f64());
    println!("all runs, wall/cpu/server-cpu (s):");
    println!("  agent      {}", fmt_runs(&ours));
    println!("  curl|dd    {}", fmt_runs(&dd));
    println!("  dd+sha256  {}", fmt_runs(&dd_hash));
    println!("  dd+sync    {}", fmt_runs(&dd_sync));
    println!("  agent+sync {:?}", secs(&ours_sync));
    println!("  qcow2 agent {:?} qemu-img {:?}", secs(&q_ours), secs(&q_img));
}
