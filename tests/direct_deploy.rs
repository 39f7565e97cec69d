//! The direct deploy end to end over real HTTP on loopback: `ferric serve` (API, conductor, image
//! store) and a `ferric-agent` process whose disk is a file. fake-hardware stands in for the BMC
//! and PXE (the agent is started by the test where a real node would PXE-boot it).

mod common;

use common::serve::{follows_seed, pattern, start, trace};
use serde_json::{Value, json};
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_deploy_end_to_end() {
    let lab = start("").await;
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
    let agent_log = lab.dir.path().join("agent-1.log");
    let _agent = lab.agent_logged(mac, &disk, &agent_log);
    let n = lab.wait_state(&id, "active", Duration::from_secs(90)).await;
    assert_eq!(n["last_error"], Value::Null);
    assert_eq!(n["power_state"], json!("power on"));
    let written = std::fs::read(&disk).unwrap();
    assert_eq!(&written[..raw.len()], &raw[..], "disk differs from the image");
    assert!(n["driver_internal_info"].get("agent_secret_token").is_none());
    // Every message of the seed's Example 2, in order — but DHCP: with fake boot there is no PXE
    // here (the simulation and the QEMU lab check those two messages too).
    let seed: Vec<_> = ferric_types::trace::seed::direct()
        .into_iter()
        .filter(|(_, _, l)| {
            *l != ferric_types::trace::seed::DHCP_REQUEST && *l != ferric_types::trace::seed::NEXT_SERVER
        })
        .collect();
    follows_seed(&trace(&lab, &id).await, &seed).unwrap();
    // prepare_image returns before the image is flushed (as IPA's does): the conductor makes it
    // durable with standby.sync after the image is verified and before any power off.
    // NO_COLOR is set for the agent: its log is plain text.
    let log = std::fs::read_to_string(&agent_log).unwrap();
    let executed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("executing command"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("command=")))
        .collect();
    let at =
        |name: &str| executed.iter().position(|c| *c == name).unwrap_or_else(|| panic!("{name} not in {executed:?}"));
    assert!(at("standby.prepare_image") < at("standby.sync"), "{executed:?}");
    assert!(at("standby.sync") < at("standby.power_off"), "{executed:?}");

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
    let lab = start("").await;
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
    let lab = start("").await;
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
        // Ironic's deploy step `write_image` starts when the agent takes the image.
        if n["deploy_step"]["step"] == json!("write_image") {
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
