//! `ferric serve` and `ferric-agent` as processes on loopback, for end-to-end deploy tests.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub use super::listening::free_port;

pub struct Lab {
    pub url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    _server: Proc,
}

/// `ferric serve` with short timeouts and `extra` TOML appended to its configuration.
pub async fn start(extra: &str) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("ferric.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[api]
bind = "127.0.0.1:{port}"
[conductor]
deploy_callback_timeout = 12
check_timeouts_interval = 1
agent_heartbeat_timeout = 2
[agent]
soft_power_off_timeout = 3
{extra}
"#
        ),
    )
    .unwrap();
    let server = Command::new(env!("CARGO_BIN_EXE_ferric"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    super::listening::wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(30));
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("X-OpenStack-Ironic-API-Version", "latest".parse().unwrap());
    let http = reqwest::Client::builder().default_headers(h).build().unwrap();
    Lab { url: format!("http://127.0.0.1:{port}"), http, dir, _server: Proc(server) }
}

impl Lab {
    pub async fn req(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        // A refused connection never reached a server, so it is safe to send again. A suite run
        // once had its first request refused after `start` had seen the port accept.
        let deadline = Instant::now() + Duration::from_secs(10);
        let resp = loop {
            let attempt = r.try_clone().expect("a JSON request can be cloned");
            match attempt.send().await {
                Ok(resp) => break resp,
                Err(e) if e.is_connect() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{path}: {e}"),
            }
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn node(&self, id: &str) -> Value {
        self.req(reqwest::Method::GET, &format!("/v1/nodes/{id}"), None).await.1
    }

    pub async fn provision(&self, id: &str, target: &str) {
        let (s, b) = self
            .req(reqwest::Method::PUT, &format!("/v1/nodes/{id}/states/provision"), Some(json!({"target": target})))
            .await;
        assert_eq!(s, 202, "{target}: {b}");
    }

    /// Waits until the node reaches `state` (or fails the test on a failure state).
    pub async fn wait_state(&self, id: &str, state: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let n = self.node(id).await;
            if n["provision_state"] == json!(state) && n["reservation"].is_null() {
                return n;
            }
            assert!(Instant::now() < deadline, "node never reached {state}: {n}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn upload(&self, name: &str, data: &[u8], format: &str) -> String {
        let r = self
            .http
            .post(format!("{}/v2/images", self.url))
            .json(&json!({"name": name, "disk_format": format, "container_format": "bare"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let img: Value = r.json().await.unwrap();
        let id = img["id"].as_str().unwrap().to_string();
        let r = self
            .http
            .put(format!("{}/v2/images/{id}/file", self.url))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        id
    }

    /// An available fake-hardware node deployed with `direct`, its port on `mac`.
    pub async fn enroll(&self, name: &str, mac: &str) -> String {
        self.enroll_with(name, mac, "direct").await
    }

    /// Like [`Lab::enroll`] with another deploy interface.
    pub async fn enroll_with(&self, name: &str, mac: &str, deploy: &str) -> String {
        let (s, n) = self
            .req(
                reqwest::Method::POST,
                "/v1/nodes",
                Some(json!({"driver": "fake-hardware", "name": name, "deploy_interface": deploy, "automated_clean": false})),
            )
            .await;
        assert_eq!(s, 201, "{n}");
        let id = n["uuid"].as_str().unwrap().to_string();
        let (s, p) = self.req(reqwest::Method::POST, "/v1/ports", Some(json!({"node_uuid": id, "address": mac}))).await;
        assert_eq!(s, 201, "{p}");
        self.provision(&id, "manage").await;
        self.wait_state(&id, "manageable", Duration::from_secs(10)).await;
        self.provision(&id, "provide").await;
        self.wait_state(&id, "available", Duration::from_secs(10)).await;
        id
    }

    pub async fn set_image(&self, id: &str, instance_info: Value) {
        let ops: Vec<Value> = instance_info
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| json!({"op": "add", "path": format!("/instance_info/{k}"), "value": v}))
            .collect();
        let (s, b) = self.req(reqwest::Method::PATCH, &format!("/v1/nodes/{id}"), Some(Value::Array(ops))).await;
        assert_eq!(s, 200, "{b}");
    }

    /// A ferric-agent process for the node with `mac`, writing to `disk` (as its ramdisk would).
    pub fn agent(&self, mac: &str, disk: &Path) -> Proc {
        self.spawn_agent(mac, disk, None)
    }

    /// Like [`Lab::agent`], with the agent's command log (info level, no colours) in `log`.
    pub fn agent_logged(&self, mac: &str, disk: &Path, log: &Path) -> Proc {
        self.spawn_agent(mac, disk, Some(log))
    }

    fn spawn_agent(&self, mac: &str, disk: &Path, log: Option<&Path>) -> Proc {
        let port = free_port();
        let mut cmd = Command::new(super::agent_bin::path());
        cmd.args(["--api-url", &self.url, "--mac", mac, "--listen", &format!("127.0.0.1:{port}"), "--disk"])
            .arg(disk)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        if let Some(log) = log {
            cmd.env("RUST_LOG", "warn,ferric_agent::commands=info")
                .env("NO_COLOR", "1")
                .stderr(std::fs::File::create(log).unwrap());
        }
        Proc(cmd.spawn().unwrap())
    }

    pub fn disk(&self, name: &str, size: usize) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::File::create(&p).unwrap().set_len(size as u64).unwrap();
        p
    }
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 131 + seed as usize * 7) % 251) as u8).collect()
}

/// The trace recorded for a node, as (from, to, label).
pub async fn trace(lab: &Lab, id: &str) -> Vec<(String, String, String)> {
    let (_, t) = lab.req(reqwest::Method::GET, &format!("/ferric/trace/{id}"), None).await;
    t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["from"].as_str().unwrap().into(), e["to"].as_str().unwrap().into(), e["label"].as_str().unwrap().into())
        })
        .collect()
}

/// `got` contains `want` in order, allowing repeats of the "Still working" exchange.
pub fn follows_seed(
    got: &[(String, String, String)],
    want: &[ferric_types::trace::seed::Message],
) -> Result<(), String> {
    let mut i = 0;
    for (from, to, label) in want {
        let optional =
            *label == ferric_types::trace::seed::STILL_WORKING || *label == ferric_types::trace::seed::IS_DEPLOY_DONE;
        let pos = got[i..].iter().position(|(f, t, l)| f == from.as_str() && t == to.as_str() && l == label);
        match pos {
            Some(p) => i += p + 1,
            None if optional => {}
            None => return Err(format!("missing {} -> {}: {label} after position {i}", from.as_str(), to.as_str())),
        }
    }
    Ok(())
}
