//! The iSCSI deploy end to end over real sockets on loopback: `ferric serve`, and a `ferric-agent`
//! process whose disk is a file; the agent exposes it over iSCSI and the conductor writes the
//! image. Whole-disk and partition images, byte-checked.

mod common;

use common::serve::{follows_seed, pattern, start, trace};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iscsi_deploy_whole_disk_and_partition_images() {
    let lab = start("[iscsi]\nportal_port = 0\nverify = true\n").await;
    let mac = "52:54:00:bb:00:01";
    let id = lab.enroll_with("iscsi-1", mac, "iscsi").await;

    // Whole-disk raw image.
    let raw = pattern((5 << 20) + 1234, 7);
    let raw_id = lab.upload("raw", &raw, "raw").await;
    lab.set_image(&id, json!({"image_source": raw_id})).await;
    lab.req(reqwest::Method::GET, &format!("/v1/nodes/{id}/validate"), None).await;
    lab.req(reqwest::Method::POST, &format!("/v1/nodes/{id}/vifs"), Some(json!({"id": "vif-1"}))).await;
    lab.provision(&id, "active").await;
    lab.wait_state(&id, "wait call-back", Duration::from_secs(10)).await;
    let disk = lab.disk("disk-1.img", 32 << 20);
    let agent = lab.agent(mac, &disk);
    let n = lab.wait_state(&id, "active", Duration::from_secs(90)).await;
    assert_eq!(n["last_error"], serde_json::Value::Null);
    assert_eq!(&std::fs::read(&disk).unwrap()[..raw.len()], &raw[..]);
    let seed: Vec<_> = ferric_types::trace::seed::iscsi()
        .into_iter()
        .filter(|(_, _, l)| {
            *l != ferric_types::trace::seed::DHCP_REQUEST && *l != ferric_types::trace::seed::NEXT_SERVER
        })
        .collect();
    follows_seed(&trace(&lab, &id).await, &seed).unwrap();
    drop(agent);

    // A partition image (it names a kernel and a ramdisk): a partition table is created through
    // iSCSI and the image lands in the root partition.
    lab.provision(&id, "deleted").await;
    lab.wait_state(&id, "available", Duration::from_secs(30)).await;
    let kernel = lab.upload("kernel", b"kernel", "aki").await;
    let ramdisk = lab.upload("ramdisk", b"ramdisk", "ari").await;
    let part = pattern(3 << 20, 9);
    let r = lab
        .http
        .post(format!("{}/v2/images", lab.url))
        .json(&json!({"name": "part", "disk_format": "raw", "container_format": "bare", "kernel_id": kernel, "ramdisk_id": ramdisk}))
        .send()
        .await
        .unwrap();
    let part_id = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    lab.http.put(format!("{}/v2/images/{part_id}/file", lab.url)).body(part.clone()).send().await.unwrap();
    lab.set_image(&id, json!({"image_source": part_id, "root_gb": 1})).await;
    lab.provision(&id, "active").await;
    lab.wait_state(&id, "wait call-back", Duration::from_secs(10)).await;
    let disk2 = lab.disk("disk-2.img", 2 << 30);
    let _agent2 = lab.agent(mac, &disk2);
    let n = lab.wait_state(&id, "active", Duration::from_secs(120)).await;
    assert!(n["driver_internal_info"]["root_uuid_or_disk_id"].as_str().is_some(), "{n}");
    // The partition table as fdisk sees it, and the image in the root partition.
    let out = Command::new("sfdisk").arg("--json").arg(&disk2).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap().clone();
    let sector = table["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    let root = parts.iter().max_by_key(|p| p["start"].as_u64().unwrap()).unwrap();
    let start = (root["start"].as_u64().unwrap() * sector) as usize;
    let data = std::fs::read(&disk2).unwrap();
    assert_eq!(&data[start..start + part.len()], &part[..], "root partition differs from the image");
}
