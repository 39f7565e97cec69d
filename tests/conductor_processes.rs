//! Three `--role conductor` processes and one `--role api` on one database, driven by the real
//! client (python-ironicclient's `baremetal`): 300 fake-hardware nodes enrolled, managed,
//! provided and deployed while one conductor is killed with SIGKILL. Every node ends `active` or
//! failed with `last_error` naming the lost conductor, none locked, none lost, all owned by the
//! live conductors within the takeover interval. Nodes deployed by `direct` wait for their agents
//! across the kill; the test then runs `ferric-agent` for them and their deploys finish on the
//! new owners.

mod common {
    #[path = "agent_bin.rs"]
    pub mod agent_bin;
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

/// The `key` list of a GET on the API.
async fn list(url: &str, path: &str, key: &str) -> Vec<Value> {
    let (_, v) = call(reqwest::Method::GET, &format!("{url}{path}"), None).await;
    v[key].as_array().cloned().unwrap_or_default()
}

async fn nodes(url: &str) -> Vec<Value> {
    list(url, "/v1/nodes/detail?limit=1000", "nodes").await
}

async fn conductors(url: &str) -> Vec<Value> {
    list(url, "/v1/conductors", "conductors").await
}

async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, url).header("X-OpenStack-Ironic-API-Version", "1.87");
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (s, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A `direct` node on fake hardware with a port on `mac`, its image a URL on the API.
async fn direct_node(url: &str, name: &str, mac: &str, image: &str, sha: &str) -> Value {
    use reqwest::Method;
    let body = json!({"driver": "fake-hardware", "name": name, "deploy_interface": "direct", "automated_clean": false,
        "instance_info": {"image_source": image, "image_os_hash_algo": "sha256", "image_os_hash_value": sha, "image_disk_format": "raw"}});
    let (s, n) = call(Method::POST, &format!("{url}/v1/nodes"), Some(body)).await;
    assert_eq!(s, 201, "{n}");
    let id = n["uuid"].as_str().unwrap().to_string();
    let (s, p) = call(Method::POST, &format!("{url}/v1/ports"), Some(json!({"node_uuid": id, "address": mac}))).await;
    assert_eq!(s, 201, "{p}");
    n
}

/// The tests of this file one at a time: each runs five processes and the Python client.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The run on `db_url`; returns the seconds from SIGKILL to every node owned by a live conductor.
pub async fn sigkill_mid_deploy(db_url: &str, count: usize) -> f64 {
    let _one = SERIAL.lock().await;
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
    // An image on the API's image service, and `direct` nodes that will wait for their agents:
    // at least two owned by the conductor about to die.
    let image: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 131 % 251) as u8).collect();
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&image).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let (s, img) = call(
        reqwest::Method::POST,
        &format!("{url}/v2/images"),
        Some(json!({"name": "raw", "disk_format": "raw", "container_format": "bare"})),
    )
    .await;
    assert_eq!(s, 201, "{img}");
    let image_url = format!("{url}/v2/images/{}/file", img["id"].as_str().unwrap());
    let r = reqwest::Client::new()
        .put(&image_url)
        .header("content-type", "application/octet-stream")
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let mut direct: Vec<(String, String, String)> = Vec::new();
    for i in 0..40 {
        if direct.iter().filter(|(_, _, owner)| owner == "c2").count() >= 2 && direct.len() >= 4 {
            break;
        }
        let mac = format!("52:54:00:cc:00:{i:02x}");
        let n = direct_node(&url, &format!("d{i}"), &mac, &image_url, &sha).await;
        let id = n["uuid"].as_str().unwrap().to_string();
        let (_, n) = call(reqwest::Method::GET, &format!("{url}/v1/nodes/{id}"), None).await;
        direct.push((id, mac, n["conductor"].as_str().unwrap_or("").to_string()));
    }
    let mut dnames: Vec<String> = (0..direct.len()).map(|i| format!("d{i}")).collect();
    for verb in ["manage", "provide"] {
        let mut args = vec!["node", verb];
        args.extend(dnames.iter().map(String::as_str));
        args.extend(["--wait", "120"]);
        bm(&url, &args);
    }
    let all = nodes(&url).await;
    assert_eq!(all.len(), count + direct.len());
    assert!(all.iter().all(|n| n["provision_state"] == "available"), "all available");
    // The API process's trace of a node holds what its conductor (another process, another
    // recorder) recorded: the cleaning that provide started.
    let n0 = all.iter().find(|n| n["name"] == "n0").and_then(|n| n["uuid"].as_str()).unwrap();
    let (s, t) = call(reqwest::Method::GET, &format!("{url}/ferric/trace/{n0}"), None).await;
    assert_eq!(s, 200, "{t}");
    let labels: Vec<&str> = t["events"].as_array().unwrap().iter().filter_map(|e| e["label"].as_str()).collect();
    assert!(labels.contains(&"do_node_clean()") && labels.contains(&"Mark node as AVAILABLE"), "{labels:?}");
    let owned_by = |n: &Value, c: &str| n["conductor"] == c;
    let victims = all.iter().filter(|n| owned_by(n, "c2")).count();
    assert!(victims > 0, "c2 owns some nodes");

    let mut args = vec!["node", "deploy"];
    args.extend(names.iter().map(String::as_str));
    args.append(&mut dnames.iter().map(String::as_str).collect());
    bm(&url, &args);
    dnames.clear();
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
        let busy = all
            .iter()
            .filter(|n| !matches!(n["provision_state"].as_str(), Some("active" | "deploy failed" | "wait call-back")))
            .count();
        let locked = all.iter().filter(|n| !n["reservation"].is_null()).count();
        if owned_again.is_some() && busy == 0 && locked == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after 120 s: {busy} busy, {locked} locked, {orphaned} orphaned: {:?}",
            all.iter()
                .filter(|n| !matches!(
                    n["provision_state"].as_str(),
                    Some("active" | "deploy failed" | "wait call-back")
                ))
                .map(|n| (n["provision_state"].clone(), n["last_error"].clone()))
                .take(3)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The `direct` nodes still wait for their agents, none failed by the takeover; their agents
    // boot now and the deploys finish on the live conductors.
    let dir = f.dir.path().to_path_buf();
    let mut agents = Vec::new();
    for (id, mac, _) in &direct {
        let (_, n) = call(reqwest::Method::GET, &format!("{url}/v1/nodes/{id}"), None).await;
        assert_eq!(n["provision_state"], "wait call-back", "{n}");
        let disk = dir.join(format!("disk-{mac}.img").replace(':', ""));
        std::fs::File::create(&disk).unwrap().set_len(4 << 20).unwrap();
        let port = common::fleet::free_port();
        let child = Command::new(common::agent_bin::path())
            .args(["--api-url", &url, "--mac", mac, "--listen", &format!("127.0.0.1:{port}"), "--disk"])
            .arg(&disk)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        agents.push((child, disk));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for (id, _, owner) in &direct {
        loop {
            let (_, n) = call(reqwest::Method::GET, &format!("{url}/v1/nodes/{id}"), None).await;
            if n["provision_state"] == "active" && n["reservation"].is_null() {
                break;
            }
            assert_ne!(n["provision_state"], "deploy failed", "a node of {owner} waiting for its agent failed: {n}");
            assert!(Instant::now() < deadline, "the agent-waiting node of {owner} did not finish: {n}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    for (mut child, disk) in agents {
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(&std::fs::read(&disk).unwrap()[..image.len()], &image[..], "the image is on the disk");
    }
    let all = nodes(&url).await;
    assert_eq!(all.len(), count + direct.len(), "no node lost");
    for n in &all {
        assert!(n["conductor"] == "c0" || n["conductor"] == "c1", "{n}");
        if n["provision_state"] == "deploy failed" {
            let e = n["last_error"].as_str().unwrap_or("");
            assert!(e.contains("Conductor c2 went offline"), "failed with a reason naming c2: {e}");
        }
    }
    let failed = all.iter().filter(|n| n["provision_state"] == "deploy failed").count();
    let waited = direct.iter().filter(|(_, _, o)| o == "c2").count();
    eprintln!(
        "{} active, {failed} failed by the takeover (c2 owned {victims} fake nodes, {waited} agent-waiting nodes that finished)",
        all.len() - failed
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_conductors_on_postgresql_survive_a_sigkill_mid_deploy() {
    let pg = ferric_service::db::testing::PgCluster::start();
    let url = pg.create_database("fleet");
    let secs = sigkill_mid_deploy(&url, 300).await;
    eprintln!("PostgreSQL: every node owned again {secs:.1} s after SIGKILL (heartbeat_timeout 6 s)");
}

async fn status(c: &reqwest::Client, req: reqwest::RequestBuilder) -> (u16, Value) {
    let _ = c;
    match req.header("X-OpenStack-Ironic-API-Version", "1.87").send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => panic!("the API must answer while the database is down: {e}"),
    }
}

/// PostgreSQL stopped and started again mid-run: meanwhile the API answers 503 in Ironic's
/// envelope and writes nothing; afterwards nothing is lost and the work goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarts_mid_run_and_the_work_goes_on() {
    let _one = SERIAL.lock().await;
    let pg = ferric_service::db::testing::PgCluster::start();
    let db = pg.create_database("restart");
    let mut f = Fleet::new(&db, 6);
    f.conductor("c0", &[]);
    f.conductor("c1", &[]);
    let url = f.api();
    let c = reqwest::Client::new();
    let mut uuids = Vec::new();
    for i in 0..20 {
        let (s, v) = status(
            &c,
            c.post(format!("{url}/v1/nodes")).json(&json!({"driver": "fake-hardware", "name": format!("r{i}")})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        uuids.push(v["uuid"].as_str().unwrap().to_string());
    }
    pg.stop();
    let (s, v) = status(&c, c.get(format!("{url}/v1/nodes"))).await;
    assert_eq!(s, 503, "{v}");
    assert!(v["error_message"].as_str().unwrap_or("").contains("faultstring"), "Ironic's envelope: {v}");
    let (s, _) =
        status(&c, c.post(format!("{url}/v1/nodes")).json(&json!({"driver": "fake-hardware", "name": "down"}))).await;
    assert_eq!(s, 503);
    let (s, _) =
        status(&c, c.put(format!("{url}/v1/nodes/{}/states/provision", uuids[0])).json(&json!({"target": "manage"})))
            .await;
    assert_eq!(s, 503);
    // Longer than the heartbeat timeout: every conductor fences itself, then comes back.
    tokio::time::sleep(Duration::from_secs(8)).await;
    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(60);
    for u in &uuids {
        loop {
            let (s, v) =
                status(&c, c.put(format!("{url}/v1/nodes/{u}/states/provision")).json(&json!({"target": "manage"})))
                    .await;
            if s == 202 {
                break;
            }
            assert!(Instant::now() < deadline, "manage after the restart: {s} {v}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    loop {
        let all = nodes(&url).await;
        assert_eq!(all.len(), 20, "nothing lost, nothing added while down");
        if all.iter().all(|n| n["provision_state"] == "manageable" && n["reservation"].is_null()) {
            break;
        }
        assert!(Instant::now() < deadline, "not all manageable: {all:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
