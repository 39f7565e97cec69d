//! The direct deploy end to end over real HTTP on loopback: `ferric serve` (API, conductor, image
//! store) and a `ferric-agent` process whose disk is a file. fake-hardware stands in for the BMC
//! and PXE (the agent is started by the test where a real node would PXE-boot it).

use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Lab {
    url: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    _server: Proc,
}

async fn start() -> Lab {
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ferric serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("X-OpenStack-Ironic-API-Version", "latest".parse().unwrap());
    let http = reqwest::Client::builder().default_headers(h).build().unwrap();
    Lab { url: format!("http://127.0.0.1:{port}"), http, dir, _server: Proc(server) }
}

impl Lab {
    async fn req(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn node(&self, id: &str) -> Value {
        self.req(reqwest::Method::GET, &format!("/v1/nodes/{id}"), None).await.1
    }

    async fn provision(&self, id: &str, target: &str) {
        let (s, b) = self
            .req(reqwest::Method::PUT, &format!("/v1/nodes/{id}/states/provision"), Some(json!({"target": target})))
            .await;
        assert_eq!(s, 202, "{target}: {b}");
    }

    /// Waits until the node reaches `state` (or fails the test on a failure state).
    async fn wait_state(&self, id: &str, state: &str, limit: Duration) -> Value {
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

    async fn upload(&self, name: &str, data: &[u8], format: &str) -> String {
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
    async fn enroll(&self, name: &str, mac: &str) -> String {
        let (s, n) = self
            .req(
                reqwest::Method::POST,
                "/v1/nodes",
                Some(json!({"driver": "fake-hardware", "name": name, "deploy_interface": "direct", "automated_clean": false})),
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

    async fn set_image(&self, id: &str, instance_info: Value) {
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
    fn agent(&self, mac: &str, disk: &Path) -> Proc {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_ferric-agent"))
            .args(["--api-url", &self.url, "--mac", mac, "--listen", &format!("127.0.0.1:{port}"), "--disk"])
            .arg(disk)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Proc(child)
    }

    fn disk(&self, name: &str, size: usize) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::File::create(&p).unwrap().set_len(size as u64).unwrap();
        p
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 131 + seed as usize * 7) % 251) as u8).collect()
}

/// The trace recorded for a node, as (from, to, label).
async fn trace(lab: &Lab, id: &str) -> Vec<(String, String, String)> {
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
fn follows_seed(got: &[(String, String, String)], want: &[ferric::trace::seed::Message]) -> Result<(), String> {
    let mut i = 0;
    for (from, to, label) in want {
        let optional = *label == ferric::trace::seed::STILL_WORKING || *label == ferric::trace::seed::IS_DEPLOY_DONE;
        let pos = got[i..].iter().position(|(f, t, l)| f == from.as_str() && t == to.as_str() && l == label);
        match pos {
            Some(p) => i += p + 1,
            None if optional => {}
            None => return Err(format!("missing {} -> {}: {label} after position {i}", from.as_str(), to.as_str())),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_deploy_end_to_end() {
    let lab = start().await;
    let mac = "52:54:00:aa:00:01";
    let id = lab.enroll("direct-1", mac).await;

    // A raw whole-disk image from the image service.
    let raw = pattern(6 << 20, 1);
    let raw_id = lab.upload("raw", &raw, "raw").await;
    lab.set_image(&id, json!({"image_source": raw_id})).await;
    // What Nova does, in the seed's order: instance_info, validate, plug VIFs, deploy.
    let (_, v) = lab.req(reqwest::Method::GET, &format!("/v1/nodes/{id}/validate"), None).await;
    assert_eq!(v["deploy"]["result"], json!(true), "{v}");
    let (s, _) = lab.req(reqwest::Method::POST, &format!("/v1/nodes/{id}/vifs"), Some(json!({"id": "vif-1"}))).await;
    assert_eq!(s, 204);
    lab.provision(&id, "active").await;
    lab.wait_state(&id, "wait call-back", Duration::from_secs(10)).await;
    let disk = lab.disk("disk-1.img", 16 << 20);
    let _agent = lab.agent(mac, &disk);
    let n = lab.wait_state(&id, "active", Duration::from_secs(90)).await;
    assert_eq!(n["last_error"], Value::Null);
    assert_eq!(n["power_state"], json!("power on"));
    let written = std::fs::read(&disk).unwrap();
    assert_eq!(&written[..raw.len()], &raw[..], "disk differs from the image");
    assert!(n["driver_internal_info"].get("agent_secret_token").is_none());
    // Every message of the seed's Example 2, in order — but DHCP: with fake boot there is no PXE
    // here (the simulation and the QEMU lab check those two messages too).
    let seed: Vec<_> = ferric::trace::seed::direct()
        .into_iter()
        .filter(|(_, _, l)| *l != ferric::trace::seed::DHCP_REQUEST && *l != ferric::trace::seed::NEXT_SERVER)
        .collect();
    follows_seed(&trace(&lab, &id).await, &seed).unwrap();

    // Undeploy, then the same node with a qcow2 image.
    lab.provision(&id, "deleted").await;
    let n = lab.wait_state(&id, "available", Duration::from_secs(20)).await;
    assert_eq!(n["instance_info"], json!({}));
    let src = lab.dir.path().join("src.raw");
    let qcow = lab.dir.path().join("src.qcow2");
    let data = pattern(5 << 20, 2);
    std::fs::File::create(&src).unwrap().write_all(&data).unwrap();
    let st =
        Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "qcow2"]).arg(&src).arg(&qcow).status().unwrap();
    assert!(st.success());
    let qcow_id = lab.upload("qcow", &std::fs::read(&qcow).unwrap(), "qcow2").await;
    lab.set_image(&id, json!({"image_source": qcow_id})).await;
    lab.provision(&id, "active").await;
    lab.wait_state(&id, "wait call-back", Duration::from_secs(10)).await;
    let disk2 = lab.disk("disk-2.img", 16 << 20);
    let _agent2 = lab.agent(mac, &disk2);
    lab.wait_state(&id, "active", Duration::from_secs(90)).await;
    assert_eq!(&std::fs::read(&disk2).unwrap()[..data.len()], &data[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_image_fails_the_deploy() {
    let lab = start().await;
    let mac = "52:54:00:aa:00:02";
    let id = lab.enroll("direct-2", mac).await;
    let raw = pattern(2 << 20, 3);
    let raw_id = lab.upload("raw", &raw, "raw").await;
    // The image as a plain URL with a checksum that does not match.
    let url = format!("{}/v2/images/{raw_id}/file", lab.url);
    lab.set_image(
        &id,
        json!({"image_source": url, "image_os_hash_algo": "sha256", "image_os_hash_value": "0".repeat(64)}),
    )
    .await;
    lab.provision(&id, "active").await;
    lab.wait_state(&id, "wait call-back", Duration::from_secs(10)).await;
    let disk = lab.disk("disk.img", 8 << 20);
    let _agent = lab.agent(mac, &disk);
    let n = lab.wait_state(&id, "deploy failed", Duration::from_secs(60)).await;
    let err = n["last_error"].as_str().unwrap();
    assert!(err.to_lowercase().contains("checksum"), "{err}");
    assert_eq!(n["power_state"], json!("power off"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_deploy_times_out() {
    let lab = start().await;
    let mac = "52:54:00:aa:00:03";
    let id = lab.enroll("direct-3", mac).await;
    // A slow image server: 64 KiB every 100 ms, so the write is surely running when killed.
    let data = pattern(8 << 20, 4);
    let sha = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&data);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let img_port = listener.local_addr().unwrap().port();
    let body = data.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/slow.img",
            axum::routing::get(move || {
                let body = body.clone();
                async move {
                    let stream = futures::stream::unfold(0usize, move |off| {
                        let body = body.clone();
                        async move {
                            if off >= body.len() {
                                return None;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let end = (off + (64 << 10)).min(body.len());
                            Some((Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(&body[off..end])), end))
                        }
                    });
                    axum::body::Body::from_stream(stream)
                }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    lab.set_image(
        &id,
        json!({"image_source": format!("http://127.0.0.1:{img_port}/slow.img"), "image_os_hash_algo": "sha256", "image_os_hash_value": sha, "image_disk_format": "raw"}),
    )
    .await;
    lab.provision(&id, "active").await;
    lab.wait_state(&id, "wait call-back", Duration::from_secs(10)).await;
    let disk = lab.disk("disk.img", 16 << 20);
    let mut agent = lab.agent(mac, &disk);
    // Kill it once the conductor has started the image write.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = lab.node(&id).await;
        if n["driver_internal_info"]["agent_phase"] == json!("writing") {
            break;
        }
        assert!(Instant::now() < deadline, "write never started: {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.0.kill().unwrap();
    let n = lab.wait_state(&id, "deploy failed", Duration::from_secs(40)).await;
    assert_eq!(n["last_error"], json!(format!("Timeout reached while waiting for callback for node {id}")));
    assert_eq!(n["power_state"], json!("power off"));
}
