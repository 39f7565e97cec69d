//! `ferric serve --sim 3` as a process: it prints one line once every node is `available`, a deploy
//! requested right after that line is accepted and gets to `active`, the nodes are listed over HTTP
//! (and by python-ironicclient's `baremetal`), node-0's virtual BMC answers
//! `ipmitool -I lanplus` on UDP 127.0.0.1 that the machine is on, and node-1, behind a Redfish
//! BMC on TCP, deploys by virtual media.

mod common;

use common::serve::{Proc, free_port};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A base port with `n` ports after it free on UDP (IPMI BMCs) and TCP (Redfish BMCs).
fn free_udp_range(n: u16) -> u16 {
    for _ in 0..50 {
        let base = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if base > 65535 - n {
            continue;
        }
        let held: Vec<_> = (0..n).filter_map(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).ok()).collect();
        let tcp: Vec<_> = (0..n).filter_map(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if held.len() == n as usize && tcp.len() == n as usize {
            return base;
        }
    }
    panic!("no free UDP port range");
}

fn baremetal_bin() -> PathBuf {
    let venv = std::env::var("FERRIC_VENV").unwrap_or_else(|_| "/opt/ferric-venv".into());
    let bin = PathBuf::from(venv).join("bin/baremetal");
    assert!(bin.exists(), "{} missing: run .ci/install-deps (installs python-ironicclient 6.3.0)", bin.display());
    bin
}

/// `ferric serve --sim ARGS` with `env`, its stdout lines on a channel as they come.
fn start(args: &[&str], env: &[(&str, &str)], tmp: &std::path::Path) -> (Proc, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferric"))
        .arg("serve")
        .args(args)
        // The lab's work directory goes under TMPDIR: removed with the test's temp dir.
        .env("TMPDIR", tmp)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ferric serve --sim");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

/// Reads lines until one about the simulated nodes' bring-up (which ends the startup lines);
/// returns all lines read, that one last.
fn startup_lines(rx: &mpsc::Receiver<String>) -> Vec<String> {
    // Generous: cleaning takes seconds, more on a loaded machine with a debug build.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no line on the nodes; got {lines:#?}"));
        let last = line.contains("simulated node");
        lines.push(line);
        if last {
            return lines;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sim_lists_and_deploys() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let bmc = free_udp_range(3);
    let (api, bmcs) = (format!("127.0.0.1:{port}"), bmc.to_string());
    let (server, rx) = start(&["--sim", "3", "--api-bind", &api, "--sim-bmc-port", &bmcs], &[], tmp.path());
    // The startup lines (image UUID, nodes), then one line once every node is available:
    // automated cleaning takes some seconds of real time, so the line is the cue to deploy.
    let lines = startup_lines(&rx);
    let url = format!("http://127.0.0.1:{port}");
    assert_eq!(lines.last(), Some(&format!("ferric: 3 simulated nodes available (API {url})")), "{lines:#?}");

    // A deploy right after the line is accepted (every node is `available` and unlocked).
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{url}/v1/nodes/node-0/states/provision"))
        .header("X-OpenStack-Ironic-API-Version", "latest")
        .json(&json!({"target": "active"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 202, "{}", r.text().await.unwrap_or_default());

    let image = lines
        .iter()
        .find_map(|l| l.strip_prefix("ferric: image sim-image ").and_then(|r| r.split_whitespace().next()))
        .expect("image line")
        .to_string();
    assert!(uuid::Uuid::parse_str(&image).is_ok(), "{image}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("ferric: node node-")).count(), 3, "{lines:#?}");

    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http.get(path).header("X-OpenStack-Ironic-API-Version", "latest").send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap()
        }
    };
    let list = get(format!("{url}/v1/nodes?fields=name,provision_state,driver,uuid")).await;
    let nodes = list["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{list}");
    for n in nodes.iter().filter(|n| n["name"] != "node-0") {
        assert_eq!(n["provision_state"], "available", "{list}");
    }
    let detail = get(format!("{url}/v1/nodes/node-2")).await;
    assert_eq!(detail["driver"], "ipmi");
    assert_eq!(detail["driver_info"]["ipmi_port"], json!(bmc as u64 + 2));
    assert_eq!(detail["instance_info"]["image_source"], json!(image));
    // Every other node is behind a Redfish BMC (TCP on the same port number) and boots by
    // virtual media; its password is masked like an IPMI one.
    let redfish = get(format!("{url}/v1/nodes/node-1")).await;
    assert_eq!(redfish["driver"], "redfish");
    assert_eq!(redfish["boot_interface"], "redfish-virtual-media");
    let rf_url = format!("http://127.0.0.1:{}", bmc as u64 + 1);
    assert_eq!(redfish["driver_info"]["redfish_address"], json!(rf_url));
    assert_eq!(redfish["driver_info"]["redfish_password"], "******");
    let system =
        http.get(format!("{rf_url}/redfish/v1/Systems")).basic_auth("admin", Some("password")).send().await.unwrap();
    assert!(system.status().is_success(), "{}", system.status());
    let members: Value = system.json().await.unwrap();
    assert_eq!(members["Members@odata.count"], 1, "{members}");
    let r = http
        .put(format!("{url}/v1/nodes/node-1/states/provision"))
        .header("X-OpenStack-Ironic-API-Version", "latest")
        .json(&json!({"target": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);

    // The real client sees the same.
    let out = Command::new(baremetal_bin())
        .args(["--os-endpoint", &url, "--os-auth-type", "none", "node", "list", "-f", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    // node-0's deploy (IPMI, iPXE) and node-1's (Redfish, virtual media), with the uploaded
    // image, get to `active`.
    let deadline = Instant::now() + Duration::from_secs(180);
    for name in ["node-0", "node-1"] {
        loop {
            let n = get(format!("{url}/v1/nodes/{name}")).await;
            if n["provision_state"] == "active" {
                assert_eq!(n["power_state"], "power on");
                break;
            }
            let state = n["provision_state"].as_str().unwrap_or("");
            assert!(!state.ends_with("failed"), "{name}: deploy failed: {}", n["last_error"]);
            assert!(Instant::now() < deadline, "{name} stuck in {state} ({})", n["last_error"]);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let ipmi = Command::new("ipmitool")
        .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &bmc.to_string(), "-U", "admin", "-P", "password"])
        .args(["power", "status"])
        .output()
        .expect("ipmitool (installed by .ci/install-deps)");
    assert_eq!(String::from_utf8_lossy(&ipmi.stdout).trim(), "Chassis Power is on");
    drop(server);
}

/// A node whose cleaning fails is named in the line, with its state and `last_error`, instead of
/// the line that all are available; the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sim_names_the_nodes_that_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let api = format!("127.0.0.1:{port}");
    // A 2 s cleaning callback timeout, checked every second: the ramdisk's first heartbeat comes
    // later (2 s POST + 2 s kernel boot), so cleaning times out. BMCs on in-memory links. The
    // expected failures' warnings stay out of the test's output.
    let env = [
        ("FERRIC_CONDUCTOR__CLEAN_CALLBACK_TIMEOUT", "2"),
        ("FERRIC_CONDUCTOR__CHECK_TIMEOUTS_INTERVAL", "1"),
        ("RUST_LOG", "error"),
    ];
    let (server, rx) = start(&["--sim", "2", "--api-bind", &api, "--sim-bmc-port", "0"], &env, tmp.path());
    let lines = startup_lines(&rx);
    let line = lines.last().unwrap();
    let prefix = format!("ferric: 0 of 2 simulated nodes available (API http://{api}); 2 failed: node-0 ");
    assert!(line.starts_with(&prefix), "{lines:#?}");
    assert!(line.contains(" clean failed: Timeout reached while cleaning") && line.contains("; node-1 "), "{line}");
    let r = reqwest::get(format!("http://{api}/v1/nodes")).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    drop(server);
}

/// python-ironicclient drives the `redfish` hardware type against the simulated fleet: node-1's
/// machine (behind a Redfish BMC on TCP) is enrolled again by `baremetal node create --driver
/// redfish`, then managed, provided, deployed by virtual media and undeployed, each `--wait`ed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ironicclient_enrolls_and_deploys_a_redfish_node() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let bmc = free_udp_range(2);
    let (api, bmcs) = (format!("127.0.0.1:{port}"), bmc.to_string());
    let (server, rx) = start(&["--sim", "2", "--api-bind", &api, "--sim-bmc-port", &bmcs], &[], tmp.path());
    let lines = startup_lines(&rx);
    let url = format!("http://127.0.0.1:{port}");
    assert!(lines.last().is_some_and(|l| l.contains("2 simulated nodes available")), "{lines:#?}");
    let baremetal = |args: &[&str]| {
        let out = Command::new(baremetal_bin())
            .args(["--os-endpoint", &url, "--os-auth-type", "none"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "baremetal {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // What the lab enrolled node-1 with: its deploy kernel and ramdisk, image, MAC.
    let old: Value = serde_json::from_str(&baremetal(&["node", "show", "node-1", "-f", "json"])).unwrap();
    let info = &old["driver_info"];
    let (kernel, ramdisk) = (info["deploy_kernel"].as_str().unwrap(), info["deploy_ramdisk"].as_str().unwrap());
    let image = old["instance_info"]["image_source"].as_str().unwrap().to_string();
    let ports: Value = serde_json::from_str(&baremetal(&["port", "list", "--node", "node-1", "-f", "json"])).unwrap();
    let mac = ports[0]["address"].as_str().unwrap_or_else(|| panic!("{ports}")).to_string();
    baremetal(&["node", "delete", "node-1"]);

    let address = format!("redfish_address=http://127.0.0.1:{}", bmc + 1);
    let created = baremetal(&[
        "node",
        "create",
        "--driver",
        "redfish",
        "--name",
        "rf-1",
        "--driver-info",
        &address,
        "--driver-info",
        "redfish_username=admin",
        "--driver-info",
        "redfish_password=password",
        "--driver-info",
        "redfish_verify_ca=False",
        "--driver-info",
        &format!("deploy_kernel={kernel}"),
        "--driver-info",
        &format!("deploy_ramdisk={ramdisk}"),
        "--boot-interface",
        "redfish-virtual-media",
        "--deploy-interface",
        "direct",
        "-f",
        "json",
    ]);
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["driver"], "redfish");
    assert_eq!(created["driver_info"]["redfish_password"], "******", "{created}");
    baremetal(&["port", "create", &mac, "--node", "rf-1"]);
    baremetal(&["node", "manage", "rf-1", "--wait", "120"]);
    baremetal(&["node", "provide", "rf-1", "--wait", "120"]);
    baremetal(&["node", "set", "rf-1", "--instance-info", &format!("image_source={image}")]);
    baremetal(&["node", "deploy", "rf-1", "--wait", "180"]);
    let node: Value = serde_json::from_str(&baremetal(&["node", "show", "rf-1", "-f", "json"])).unwrap();
    assert_eq!(node["provision_state"], "active", "{node}");
    assert_eq!(node["power_state"], "power on", "{node}");
    baremetal(&["node", "undeploy", "rf-1", "--wait", "180"]);
    let node: Value = serde_json::from_str(&baremetal(&["node", "show", "rf-1", "-f", "json"])).unwrap();
    assert_eq!(node["provision_state"], "available", "{node}");
    assert!(node["last_error"].is_null(), "{node}");
    drop(server);
}
