//! Lifecycle of 1,000 fake-hardware nodes (enroll, manage, provide, deploy, undeploy) through one
//! `--role api` process and one or three `--role conductor` processes on PostgreSQL, against one
//! `ferric serve` on SQLite, in the same run; and the time from a conductor's SIGKILL to every
//! node owned by a live one.
//!
//! Run: `cargo bench --bench conductors [-- --nodes N]`. PostgreSQL: a cluster of the bench's own
//! (Debian's `postgresql` 15, as in the tests).

#[path = "../tests/common/fleet.rs"]
mod fleet;
#[path = "../tests/common/listening.rs"]
mod listening;

use fleet::{Fleet, free_port};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const VERSION: &str = "1.87";

async fn nodes(c: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = format!("{url}/v1/nodes?fields=uuid,provision_state,conductor,reservation&limit=1000");
    loop {
        let v: Value =
            c.get(&next).header("X-OpenStack-Ironic-API-Version", VERSION).send().await.unwrap().json().await.unwrap();
        out.extend(v["nodes"].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(n) if !n.is_empty() => next = n.to_string(),
            _ => break,
        }
    }
    out
}

async fn wait_all(c: &reqwest::Client, url: &str, state: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let all = nodes(c, url).await;
        if all.len() == n && all.iter().all(|x| x["provision_state"] == state && x["reservation"].is_null()) {
            return;
        }
        assert!(Instant::now() < deadline, "nodes did not reach {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the lifecycle against the API at `url`; returns seconds per phase.
async fn lifecycle(url: &str, n: usize) -> Vec<(&'static str, f64)> {
    let c = reqwest::Client::new();
    let mut out = Vec::new();
    let t = Instant::now();
    let uuids: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let c = c.clone();
            async move {
                let r = c
                    .post(format!("{url}/v1/nodes"))
                    .header("X-OpenStack-Ironic-API-Version", VERSION)
                    .json(&json!({"driver": "fake-hardware", "name": format!("b{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                r.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    out.push(("enroll", t.elapsed().as_secs_f64()));
    for (verb, state) in
        [("manage", "manageable"), ("provide", "available"), ("active", "active"), ("deleted", "available")]
    {
        let t = Instant::now();
        futures::stream::iter(uuids.iter())
            .map(|u| {
                let c = c.clone();
                async move {
                    let r = c
                        .put(format!("{url}/v1/nodes/{u}/states/provision"))
                        .header("X-OpenStack-Ironic-API-Version", VERSION)
                        .json(&json!({"target": verb}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202, "{verb}: {}", r.text().await.unwrap_or_default());
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        wait_all(&c, url, state, n).await;
        let name = match verb {
            "active" => "deploy",
            "deleted" => "undeploy",
            v => v,
        };
        out.push((name, t.elapsed().as_secs_f64()));
    }
    out
}

/// Seconds from one conductor's SIGKILL to every node owned by a live conductor, nothing locked
/// by the lost one.
async fn takeover(f: &mut Fleet, url: &str) -> f64 {
    let c = reqwest::Client::new();
    let victim = f.conductors.len() - 1;
    let name = format!("c{victim}");
    f.conductors[victim].kill9();
    let t = Instant::now();
    loop {
        let all = nodes(&c, url).await;
        if all
            .iter()
            .all(|n| n["conductor"] != name.as_str() && !n["conductor"].is_null() && n["reservation"] != name.as_str())
        {
            return t.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn total(p: &[(&str, f64)]) -> f64 {
    p.iter().map(|(_, s)| s).sum()
}

fn print(label: &str, p: &[(&str, f64)]) {
    let parts: Vec<String> = p.iter().map(|(k, s)| format!("{k} {s:.1}s")).collect();
    println!("{label:<34} total {:>6.1}s  ({})", total(p), parts.join(", "));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--nodes")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let workers = [("FERRIC_CONDUCTOR__WORKERS", "1000")];

    // One process on SQLite (the embedded default).
    let sqlite = {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferric"))
            .args(["serve", "--api-bind", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "error")
            .envs(workers)
            .spawn()
            .unwrap();
        listening::wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(30));
        let p = lifecycle(&format!("http://127.0.0.1:{port}"), n).await;
        let _ = child.kill();
        let _ = child.wait();
        p
    };
    print("1 process, SQLite", &sqlite);

    let pg = ferric_service::db::testing::PgCluster::start();
    let mut results = Vec::new();
    for conductors in [1usize, 3] {
        let db = pg.create_database(&format!("bench{conductors}"));
        let mut f = Fleet::new(&db, 6);
        for i in 0..conductors {
            f.conductor(&format!("c{i}"), &workers);
        }
        let url = f.api();
        let p = lifecycle(&url, n).await;
        print(&format!("api + {conductors} conductor(s), PostgreSQL"), &p);
        let kill = if conductors > 1 { Some(takeover(&mut f, &url).await) } else { None };
        results.push((conductors, p, kill));
    }
    let base = total(&sqlite);
    for (c, p, kill) in &results {
        println!(
            "{n} nodes, {c} conductor(s) on PostgreSQL: {:.1}s, {:.2}x the single SQLite process",
            total(p),
            base / total(p)
        );
        if let Some(k) = kill {
            println!(
                "SIGKILL of one of {c} conductors to every node owned again: {k:.1}s (heartbeat_timeout 6 s, interval 2 s)"
            );
        }
    }
}
