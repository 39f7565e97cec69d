//! Three `--role conductor` processes and one `--role api` on one database, driven by the real
//! client (python-ironicclient's `baremetal`): 300 fake-hardware nodes enrolled, managed,
//! provided and deployed while one conductor is killed with SIGKILL. Every node ends `active` or
//! failed with `last_error` naming the lost conductor, none locked, none lost, all owned by the
//! live conductors within the takeover interval.

mod common {
    #[path = "fleet.rs"]
    pub mod fleet;
    #[path = "listening.rs"]
    pub mod listening;
}

use common::fleet::Fleet;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn baremetal_bin() -> PathBuf {
    let venv = std::env::var("FERRIC_VENV").unwrap_or_else(|_| "/opt/ferric-venv".into());
    let bin = PathBuf::from(venv).join("bin/baremetal");
    assert!(bin.exists(), "{} missing: run .ci/install-deps (installs python-ironicclient 6.3.0)", bin.display());
    bin
}

fn bm(url: &str, args: &[&str]) -> String {
    let out = Command::new(baremetal_bin())
        .args(["--os-endpoint", url, "--os-auth-type", "none"])
        .args(args)
        .output()
        .expect("run baremetal");
    assert!(out.status.success(), "baremetal {:?} failed: {}", &args[..2], String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn nodes(url: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/nodes/detail?limit=1000"))
        .header("X-OpenStack-Ironic-API-Version", "1.87")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["nodes"].as_array().cloned().unwrap_or_default()
}

async fn conductors(url: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/conductors"))
        .header("X-OpenStack-Ironic-API-Version", "1.87")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["conductors"].as_array().cloned().unwrap_or_default()
}

/// The run on `db_url`; returns the seconds from SIGKILL to every node owned by a live conductor.
pub async fn sigkill_mid_deploy(db_url: &str, count: usize) -> f64 {
    let mut f = Fleet::new(db_url, 6);
    // A deploy takes a few seconds, so the kill lands while many are running.
    let slow = [("FERRIC_FAKE__DEPLOY_MS", "3000")];
    for c in ["c0", "c1", "c2"] {
        f.conductor(c, &slow);
    }
    let url = f.api();
    let file = f.dir.path().join("nodes.json");
    let list: Vec<Value> = (0..count).map(|i| json!({"driver": "fake-hardware", "name": format!("n{i}")})).collect();
    std::fs::write(&file, json!({"nodes": list}).to_string()).unwrap();
    bm(&url, &["create", file.to_str().unwrap()]);
    let names: Vec<String> = (0..count).map(|i| format!("n{i}")).collect();
    for verb in ["manage", "provide"] {
        let mut args = vec!["node", verb];
        args.extend(names.iter().map(String::as_str));
        args.extend(["--wait", "300"]);
        bm(&url, &args);
    }
    let all = nodes(&url).await;
    assert_eq!(all.len(), count);
    assert!(all.iter().all(|n| n["provision_state"] == "available"), "all available");
    let owned_by = |n: &Value, c: &str| n["conductor"] == c;
    let victims = all.iter().filter(|n| owned_by(n, "c2")).count();
    assert!(victims > 0, "c2 owns some nodes");

    let mut args = vec!["node", "deploy"];
    args.extend(names.iter().map(String::as_str));
    bm(&url, &args);
    f.conductors[2].kill9();
    let killed = Instant::now();

    // Every node is owned again (and none of c2's work survives) within the takeover interval.
    let mut owned_again = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = nodes(&url).await;
        let orphaned = all
            .iter()
            .filter(|n| n["conductor"] == "c2" || n["conductor"].is_null() || n["reservation"] == "c2")
            .count();
        if owned_again.is_none() && orphaned == 0 {
            owned_again = Some(killed.elapsed().as_secs_f64());
        }
        let busy =
            all.iter().filter(|n| !matches!(n["provision_state"].as_str(), Some("active" | "deploy failed"))).count();
        let locked = all.iter().filter(|n| !n["reservation"].is_null()).count();
        if owned_again.is_some() && busy == 0 && locked == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after 120 s: {busy} busy, {locked} locked, {orphaned} orphaned\n{}",
            f.log("c0")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all = nodes(&url).await;
    assert_eq!(all.len(), count, "no node lost");
    for n in &all {
        assert!(n["conductor"] == "c0" || n["conductor"] == "c1", "{n}");
        if n["provision_state"] == "deploy failed" {
            let e = n["last_error"].as_str().unwrap_or("");
            assert!(e.contains("Conductor c2 went offline"), "failed with a reason naming c2: {e}");
        }
    }
    let failed = all.iter().filter(|n| n["provision_state"] == "deploy failed").count();
    eprintln!("{} active, {failed} failed by the takeover (c2 owned {victims})", all.len() - failed);
    let alive: Vec<(String, bool)> = conductors(&url)
        .await
        .iter()
        .map(|c| (c["hostname"].as_str().unwrap().to_string(), c["alive"].as_bool().unwrap()))
        .collect();
    assert_eq!(alive, vec![("c0".into(), true), ("c1".into(), true), ("c2".into(), false)]);
    owned_again.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_conductors_on_sqlite_survive_a_sigkill_mid_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ferric.sqlite").display());
    let secs = sigkill_mid_deploy(&url, 300).await;
    eprintln!("SQLite: every node owned again {secs:.1} s after SIGKILL (heartbeat_timeout 6 s)");
}
