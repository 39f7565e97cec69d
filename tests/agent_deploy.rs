//! ferric-agent as a real process on loopback: a minimal fake API answers lookup/heartbeat, the
//! image service serves temp URLs, the conductor-side client drives the commands, and the disks
//! are files checked byte for byte and with sgdisk/sfdisk/fdisk; qcow2 images come from qemu-img.

#[path = "common/agent_bin.rs"]
mod agent_bin;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as AxPath, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use base64::Engine;
use bytes::Bytes;
use ferric_disk::http::ReqwestHttp;
use ferric_service::drivers::agent_client::AgentClient;
use ferric_service::drivers::agent_client::{AgentClientConfig, AgentTarget};
use ferric_service::images::{CreateImage, DiskFormat, ImageService, ImageStore};
use ferric_types::agent::{CommandStatus, HeartbeatRequest, ImageInfo, LookupConfig, LookupNode, LookupResponse};
use ferric_types::clock::Clock;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256, Sha512};

const TOKEN: &str = "tok-4f1c2e9b7a66";
const MAC: &str = "52:54:00:12:34:56";
const NODE: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";

fn data(len: usize, seed: u64) -> Vec<u8> {
    // Pseudo-random with zero runs, so qcow2 has unallocated clusters.
    let mut x = seed | 1;
    let mut v = vec![0u8; len];
    for (i, chunk) in v.chunks_mut(8).enumerate() {
        if (i / 16384) % 3 == 1 {
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[derive(Clone)]
struct FakeApi {
    heartbeats: Arc<Mutex<Vec<HeartbeatRequest>>>,
    properties: Map<String, Value>,
}

async fn lookup(
    State(api): State<FakeApi>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !q.get("addresses").is_some_and(|a| a.split(',').any(|m| m == MAC)) {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error_message": "{\"faultstring\": \"Not Found\"}"})))
            .into_response();
    }
    let resp = LookupResponse {
        node: LookupNode {
            uuid: NODE.into(),
            properties: api.properties.clone(),
            instance_info: Map::new(),
            driver_internal_info: Map::new(),
            extra: Map::new(),
        },
        config: LookupConfig::new(30, TOKEN.into()),
    };
    axum::Json(resp).into_response()
}

async fn heartbeat(
    State(api): State<FakeApi>,
    AxPath(node): AxPath<String>,
    axum::Json(hb): axum::Json<HeartbeatRequest>,
) -> StatusCode {
    if node != NODE || hb.agent_token.as_deref() != Some(TOKEN) {
        return StatusCode::BAD_REQUEST;
    }
    api.heartbeats.lock().push(hb);
    StatusCode::ACCEPTED
}

async fn serve(router: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await });
    format!("http://{addr}")
}

struct Env {
    dir: tempfile::TempDir,
    svc: Arc<ImageService>,
    store_url: String,
    heartbeats: Arc<Mutex<Vec<HeartbeatRequest>>>,
    agent: Option<Child>,
    client: AgentClient,
    target: AgentTarget,
    disks: Vec<PathBuf>,
    log: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the store, the fake API and an agent with `disks` = (size, extra spec).
async fn env(disks: &[(u64, &str)], properties: Value) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(&dir.path().join("store"), Clock::system(), 1 << 32).unwrap());
    let svc = Arc::new(ImageService::new(store, b"test-temp-url-key".to_vec(), Clock::system()));
    let store_url = serve(svc.clone().router()).await;
    let heartbeats = Arc::new(Mutex::new(Vec::new()));
    let api =
        FakeApi { heartbeats: heartbeats.clone(), properties: properties.as_object().cloned().unwrap_or_default() };
    let api_url = serve(
        Router::new().route("/v1/lookup", get(lookup)).route("/v1/heartbeat/{node}", post(heartbeat)).with_state(api),
    )
    .await;
    let mut paths = Vec::new();
    let mut args: Vec<String> = vec!["--api-url".into(), api_url, "--mac".into(), MAC.into()];
    for (i, (size, extra)) in disks.iter().enumerate() {
        let p = dir.path().join(format!("disk{i}.img"));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(*size).unwrap();
        args.push("--disk".into());
        args.push(format!("{}{extra}", p.display()));
        paths.push(p);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    args.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
    args.extend(["--download-retries".into(), "2".into(), "--download-retry-interval".into(), "0.2".into()]);
    let log = dir.path().join("agent.log");
    let child = Command::new(agent_bin::path())
        .args(&args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let http = Arc::new(ReqwestHttp::new(Duration::from_secs(5)).unwrap());
    let client = AgentClient::new(
        http,
        AgentClientConfig {
            command_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(50),
            poll_timeout: Duration::from_secs(300),
        },
    );
    let mut e = Env {
        dir,
        svc,
        store_url,
        heartbeats: heartbeats.clone(),
        agent: Some(child),
        client,
        target: AgentTarget { url: String::new(), token: Some(TOKEN.into()) },
        disks: paths,
        log,
    };
    for _ in 0..300 {
        if let Some(hb) = heartbeats.lock().first().cloned() {
            e.target.url = hb.callback_url.clone();
            assert_eq!(hb.callback_url, format!("http://127.0.0.1:{port}"));
            assert!(hb.agent_version.is_some());
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no heartbeat; agent log:\n{}", std::fs::read_to_string(&e.log).unwrap_or_default());
}

impl Env {
    async fn upload(&self, name: &str, bytes: &[u8], fmt: DiskFormat) -> (String, ImageInfo) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        self.upload_file(name, &path, fmt).await
    }

    async fn upload_file(&self, name: &str, path: &Path, fmt: DiskFormat) -> (String, ImageInfo) {
        let img = self
            .svc
            .store
            .create(CreateImage { name: Some(name.into()), disk_format: Some(fmt), ..Default::default() })
            .unwrap();
        let img = self.svc.store.upload_file(&img.id, path).await.unwrap();
        let url = self.svc.temp_url(&self.store_url, &img.id, Duration::from_secs(600)).unwrap();
        let info = ImageInfo {
            id: img.id.clone(),
            urls: vec![url],
            disk_format: Some(fmt.as_str().into()),
            container_format: Some("bare".into()),
            os_hash_algo: img.os_hash_algo.clone(),
            os_hash_value: img.os_hash_value.clone(),
            ..Default::default()
        };
        (img.id, info)
    }

    async fn deploy(&self, info: &ImageInfo, configdrive: Option<&str>) -> ferric_types::agent::CommandResult {
        let r = self.client.prepare_image(&self.target, info, configdrive).await.unwrap();
        self.client.wait_for(&self.target, r).await.unwrap()
    }

    fn disk(&self, i: usize) -> Vec<u8> {
        std::fs::read(&self.disks[i]).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_qcow2_checksums_hints_and_retries() {
    // Two disks; the root device hint picks the second (by serial), not the smallest.
    let e = env(
        &[(64 << 20, ",serial=AAA"), (96 << 20, ",serial=BBB,wwn=0x5000c500aaaa")],
        json!({"root_device": {"serial": "BBB"}}),
    )
    .await;
    std::fs::write(&e.disks[1], vec![0xaau8; 96 << 20]).unwrap();

    // Raw, streamed, sha512 from the store.
    let raw = data(24 << 20, 7);
    let (_, info) = e.upload("raw.img", &raw, DiskFormat::Raw).await;
    let r = e.deploy(&info, None).await;
    assert_eq!(r.command_status, CommandStatus::Succeeded, "{r:?}");
    let msg = r.command_result.as_ref().unwrap()["result"].as_str().unwrap().to_string();
    assert!(msg.starts_with("prepare_image: image ("), "{msg}");
    assert_eq!(&e.disk(1)[..raw.len()], &raw[..]);
    assert!(e.disk(0).iter().all(|&b| b == 0), "the hint must keep disk 0 untouched");
    let uuids = e.client.get_partition_uuids(&e.target).await.unwrap();
    assert!(uuids.contains_key("root uuid"));

    // sha256 given as a URL of a checksums file, md5 refused (not enabled at lookup).
    let mut by_url = info.clone();
    by_url.os_hash_algo = None;
    by_url.os_hash_value = None;
    // The checksums file names the image by the last path segment of its URL: the image id.
    let sums = format!("{}  {}\n", hex(&Sha256::digest(&raw)), info.id);
    let (sum_id, _) = e.upload("SHA256SUMS2", sums.as_bytes(), DiskFormat::Raw).await;
    by_url.checksum = Some(e.svc.temp_url(&e.store_url, &sum_id, Duration::from_secs(600)).unwrap());
    let r = e.deploy(&by_url, None).await;
    assert_eq!(r.command_status, CommandStatus::Succeeded, "{r:?}");
    let mut md5 = info.clone();
    md5.os_hash_algo = None;
    md5.os_hash_value = None;
    md5.checksum = Some("0123456789abcdef0123456789abcdef".into());
    let refused = e.client.prepare_image(&e.target, &md5, None).await;
    assert!(
        matches!(refused, Err(ferric_service::drivers::agent_client::AgentClientError::Api { status: 400, .. })),
        "{refused:?}"
    );

    // qcow2 made by qemu-img, plain and compressed; the disk holds garbage first, so the
    // unallocated clusters must be zeroed.
    let raw2 = data(20 << 20, 99);
    let rawp = e.dir.path().join("src.raw");
    std::fs::write(&rawp, &raw2).unwrap();
    for (name, extra) in [("img.qcow2", vec![]), ("imgc.qcow2", vec!["-c"])] {
        let q = e.dir.path().join(name);
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend(extra.iter().copied());
        args.extend([rawp.to_str().unwrap(), q.to_str().unwrap()]);
        sh("qemu-img", &args);
        std::fs::write(&e.disks[1], vec![0x55u8; 96 << 20]).unwrap();
        let (_, info) = e.upload_file(name, &q, DiskFormat::Qcow2).await;
        let r = e.deploy(&info, None).await;
        assert_eq!(r.command_status, CommandStatus::Succeeded, "{name}: {r:?}");
        let disk = e.disk(1);
        assert!(disk[..raw2.len()] == raw2[..], "{name}: disk differs from the raw image");
        assert!(disk[raw2.len()..].iter().all(|&b| b == 0x55), "{name}: wrote past the virtual size");
    }

    // Checksum mismatch: FAILED, ImageChecksumError, nothing reported as deployed, no bootable
    // start of disk left behind.
    let mut bad = info.clone();
    bad.os_hash_value = Some(hex(&Sha512::digest(b"something else")));
    let r = e.deploy(&bad, None).await;
    assert_eq!(r.command_status, CommandStatus::Failed);
    let err = r.command_error.unwrap();
    assert_eq!(err.kind, "ImageChecksumError", "{err:?}");
    assert!(e.client.get_partition_uuids(&e.target).await.unwrap().is_empty());
    assert!(e.disk(1)[..1 << 20].iter().all(|&b| b == 0));

    // 404 is final (no retries); an unreachable store is retried then fails.
    let mut missing = info.clone();
    missing.urls = vec![format!(
        "{}/swift/v1/images/00000000-0000-4000-8000-000000000000?temp_url_sig=00&temp_url_expires=1",
        e.store_url
    )];
    let r = e.deploy(&missing, None).await;
    let err = r.command_error.unwrap();
    assert_eq!(err.kind, "ImageDownloadError");
    assert!(!err.details.contains("attempts"), "4xx must not be retried: {err:?}");
    // A bound socket that never listens: connections are refused, and no other test's server
    // can take the port meanwhile (a released port could be, and then answered 404).
    let dead = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    dead.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let dead_port = dead.local_addr().unwrap().as_socket().unwrap().port();
    missing.urls = vec![format!("http://127.0.0.1:{dead_port}/image")];
    let r = e.deploy(&missing, None).await;
    let err = r.command_error.unwrap();
    assert!(err.details.contains("gave up after 3 attempts"), "{err:?}");

    // Clean step: metadata erase, then steps listing and logs.
    let steps = e.client.get_clean_steps(&e.target, &json!({"uuid": NODE}), &[]).await.unwrap();
    assert_eq!(
        steps.command_result.unwrap()["clean_steps"]["FerricHardwareManager"][0]["step"],
        "erase_devices_metadata"
    );
    let step: ferric_types::agent::Step =
        serde_json::from_value(json!({"step": "erase_devices_metadata", "priority": 99, "interface": "deploy"}))
            .unwrap();
    let r = e.client.execute_clean_step(&e.target, &step, &json!({"uuid": NODE}), &[], None).await.unwrap();
    let r = e.client.wait_for(&e.target, r).await.unwrap();
    assert_eq!(r.command_status, CommandStatus::Succeeded, "{r:?}");
    assert_eq!(r.command_result.unwrap()["clean_step"]["step"], "erase_devices_metadata");
    let logs = e.client.collect_system_logs(&e.target).await.unwrap();
    let tgz = base64::engine::general_purpose::STANDARD.decode(logs).unwrap();
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
    for entry in ar.entries().unwrap() {
        names.push(entry.unwrap().path().unwrap().display().to_string());
    }
    assert!(names.contains(&"ferric-agent.log".to_string()), "{names:?}");

    // The command list holds every command, oldest first, without the extension prefix.
    let cmds = e.client.list_commands(&e.target).await.unwrap();
    assert_eq!(cmds[0].command_name, "prepare_image");
    assert!(cmds.iter().any(|c| c.command_name == "collect_system_logs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_interrupted_download_with_range() {
    let e = env(&[(32 << 20, "")], json!({})).await;
    let img = Bytes::from(data(8 << 20, 5));
    let ranges = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
    let (img2, ranges2) = (img.clone(), ranges.clone());
    let flaky = Router::new().route(
        "/flaky.img",
        get(move |headers: axum::http::HeaderMap| {
            let img = img2.clone();
            let ranges = ranges2.clone();
            async move {
                let range = headers.get("range").and_then(|v| v.to_str().ok()).map(str::to_string);
                let first = ranges.lock().is_empty();
                ranges.lock().push(range.clone());
                if first {
                    // Half the image, then the connection breaks.
                    let half = img.slice(..img.len() / 2);
                    let s =
                        futures::stream::iter(vec![Ok::<_, std::io::Error>(half), Err(std::io::Error::other("cut"))]);
                    return axum::response::Response::builder()
                        .status(200)
                        .header("content-length", img.len())
                        .header("accept-ranges", "bytes")
                        .body(axum::body::Body::from_stream(s))
                        .unwrap();
                }
                let start: usize = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.trim_end_matches('-').parse().ok())
                    .unwrap_or(0);
                axum::response::Response::builder()
                    .status(206)
                    .header("content-range", format!("bytes {start}-{}/{}", img.len() - 1, img.len()))
                    .body(axum::body::Body::from(img.slice(start..)))
                    .unwrap()
            }
        }),
    );
    let base = serve(flaky).await;
    let info = ImageInfo {
        id: "flaky".into(),
        urls: vec![format!("{base}/flaky.img")],
        disk_format: Some("raw".into()),
        os_hash_algo: Some("sha256".into()),
        os_hash_value: Some(hex(&Sha256::digest(&img))),
        ..Default::default()
    };
    let r = e.deploy(&info, None).await;
    assert_eq!(r.command_status, CommandStatus::Succeeded, "{r:?}");
    assert_eq!(&e.disk(0)[..img.len()], &img[..]);
    let ranges = ranges.lock().clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let resumed_at: usize =
        ranges[1].as_deref().unwrap().strip_prefix("bytes=").unwrap().trim_end_matches('-').parse().unwrap();
    assert!(resumed_at > 0 && resumed_at <= img.len() / 2, "{ranges:?}");
}

fn sfdisk_json(p: &Path) -> Value {
    serde_json::from_str(&sh("sfdisk", &["--json", p.to_str().unwrap()])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_images_and_configdrive() {
    let e = env(&[(160 << 20, "")], json!({})).await;
    let disk = e.disks[0].clone();
    let root = data(10 << 20, 3);
    let (_, base) = e.upload("part.img", &root, DiskFormat::Raw).await;
    let cd_plain = data(300 << 10, 11);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &cd_plain).unwrap();
    let cd = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());

    for label in ["gpt", "msdos"] {
        let mut info = base.clone();
        info.image_type = Some("partition".into());
        info.root_mb = Some(16);
        info.swap_mb = Some(8);
        info.ephemeral_mb = Some(4);
        info.deploy_boot_mode = Some("bios".into());
        info.boot_option = Some("local".into());
        info.disk_label = Some(label.into());
        let r = e.deploy(&info, Some(&cd)).await;
        assert_eq!(r.command_status, CommandStatus::Succeeded, "{label}: {r:?}");
        let uuids = e.client.get_partition_uuids(&e.target).await.unwrap();
        let j = sfdisk_json(&disk);
        let t = &j["partitiontable"];
        let parts = t["partitions"].as_array().unwrap();
        let fdisk = sh("fdisk", &["-l", disk.to_str().unwrap()]);
        let mib = |p: &Value| (p["size"].as_u64().unwrap() * 512) >> 20;
        let root_part = parts.last().unwrap();
        let disk_bytes = std::fs::read(&disk).unwrap();
        let root_off = root_part["start"].as_u64().unwrap() as usize * 512;
        assert_eq!(&disk_bytes[root_off..root_off + root.len()], &root[..], "{label}: root partition content");
        if label == "gpt" {
            assert!(fdisk.contains("Disklabel type: gpt"), "{fdisk}");
            assert_eq!(t["label"], "gpt");
            // BIOS boot, ephemeral, swap, config drive, root.
            assert_eq!(parts.len(), 5, "{j}");
            assert_eq!(parts.iter().map(mib).collect::<Vec<_>>(), vec![1, 4, 8, 64, 16]);
            assert_eq!(parts[0]["type"], "21686148-6449-6E6F-744E-656564454649");
            assert_eq!(parts[2]["type"], "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F");
            assert_eq!(parts[3]["name"], "config-2");
            assert_eq!(root_part["uuid"].as_str().unwrap().to_lowercase(), uuids["root uuid"].as_str().unwrap());
            let v = sh("sgdisk", &["-v", disk.to_str().unwrap()]);
            assert!(v.contains("No problems found"), "{v}");
            let p = sh("sgdisk", &["-p", disk.to_str().unwrap()]);
            assert!(p.contains("config-2"), "{p}");
        } else {
            assert!(fdisk.contains("Disklabel type: dos"), "{fdisk}");
            assert_eq!(t["label"], "dos");
            assert_eq!(parts.len(), 4, "{j}");
            assert_eq!(parts.iter().map(mib).collect::<Vec<_>>(), vec![4, 8, 64, 16]);
            assert_eq!(parts[1]["type"], "82");
            assert_eq!(root_part["type"], "83");
            assert_eq!(root_part["bootable"], true);
            let sig = t["id"].as_str().unwrap().trim_start_matches("0x").to_string();
            assert_eq!(uuids["root uuid"].as_str().unwrap(), format!("{sig}-04"));
        }
        let cd_part = &parts[parts.len() - 2];
        let off = cd_part["start"].as_u64().unwrap() as usize * 512;
        assert_eq!(&disk_bytes[off..off + cd_plain.len()], &cd_plain[..], "{label}: config drive content");
        assert_eq!(uuids["partitions"]["root"], format!("{}{}", disk.display(), parts.len()));
    }

    // Whole-disk image with its own (small) GPT: the config drive goes into a new config-2
    // partition at the end of the disk, and the GPT's backup moves to the real end.
    let wd = e.dir.path().join("wd.img");
    std::fs::File::create(&wd).unwrap().set_len(32 << 20).unwrap();
    sh("sgdisk", &["-n", "1:2048:0", "-t", "1:8300", "-c", "1:rootfs", wd.to_str().unwrap()]);
    let (_, info) = e.upload_file("wd.img", &wd, DiskFormat::Raw).await;
    let r = e.deploy(&info, Some(&cd)).await;
    assert_eq!(r.command_status, CommandStatus::Succeeded, "{r:?}");
    let p = sh("sgdisk", &["-p", disk.to_str().unwrap()]);
    assert!(p.contains("config-2") && p.contains("rootfs"), "{p}");
    let v = sh("sgdisk", &["-v", disk.to_str().unwrap()]);
    assert!(v.contains("No problems found"), "{v}");
    let j = sfdisk_json(&disk);
    let parts = j["partitiontable"]["partitions"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 2);
    let end = (parts[1]["start"].as_u64().unwrap() + parts[1]["size"].as_u64().unwrap()) * 512;
    assert!(end > (150 << 20) && end <= 160 << 20, "config-2 ends at {end}");
    let bytes = std::fs::read(&disk).unwrap();
    let off = parts[1]["start"].as_u64().unwrap() as usize * 512;
    assert_eq!(&bytes[off..off + cd_plain.len()], &cd_plain[..]);

    // Whole-disk MBR image: config drive as a new primary partition.
    let wm = e.dir.path().join("wm.img");
    std::fs::File::create(&wm).unwrap().set_len(16 << 20).unwrap();
    let mut child = Command::new("sfdisk").arg(&wm).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"label: dos\n,,83\n").unwrap();
    assert!(child.wait().unwrap().success());
    let (_, info) = e.upload_file("wm.img", &wm, DiskFormat::Raw).await;
    let r = e.deploy(&info, Some(&cd)).await;
    assert_eq!(r.command_status, CommandStatus::Succeeded, "{r:?}");
    let j = sfdisk_json(&disk);
    let parts = j["partitiontable"]["partitions"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 2, "{j}");
    assert_eq!(parts[1]["size"].as_u64().unwrap() * 512, 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_required_and_power_off_only_ends_the_agent() {
    let mut e = env(&[(16 << 20, "")], json!({})).await;
    assert!(e.heartbeats.lock().iter().all(|h| h.agent_token.as_deref() == Some(TOKEN) && h.agent_status.is_none()));
    let http = reqwest::Client::new();
    let base = e.target.url.clone();
    let status = http.get(format!("{base}/v1/status")).send().await.unwrap();
    assert_eq!(status.status(), 200);
    let s: Value = status.json().await.unwrap();
    assert!(s["version"].is_string() && s["started_at"].is_number());
    for q in ["", "?agent_token=wrong", "?agent_token="] {
        let r = http.get(format!("{base}/v1/commands/{q}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{q}");
        let f: Value = r.json().await.unwrap();
        assert_eq!(f, json!({"faultcode": "Client", "faultstring": "401 Unauthorized: Token invalid."}));
        let r = http
            .post(format!("{base}/v1/commands/{q}"))
            .json(&json!({"name": "standby.sync", "params": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let bad = AgentTarget { url: base.clone(), token: Some("nope".into()) };
    assert!(matches!(
        e.client.sync(&bad).await,
        Err(ferric_service::drivers::agent_client::AgentClientError::Api { status: 401, .. })
    ));
    // Bad bodies and names.
    let tok = format!("?agent_token={TOKEN}");
    let r = http.post(format!("{base}/v1/commands/{tok}")).body("{\"name\": 1}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/v1/commands/{tok}"))
        .json(&json!({"name": "nodot", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/v1/commands/{tok}"))
        .json(&json!({"name": "nosuch.cmd", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{base}/v1/commands/{tok}"))
        .json(&json!({"name": "standby.nosuch", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A good token works, synchronously with ?wait=true.
    let r = e.client.sync(&e.target).await.unwrap();
    assert_eq!(r.command_status, CommandStatus::Succeeded);
    let one = e.client.get_command(&e.target, &r.id, true).await.unwrap();
    assert_eq!(one.id, r.id);

    // power_off with a file disk: the agent answers and exits; the machine is untouched.
    let r = e.client.power_off(&e.target).await.unwrap();
    assert_eq!(r.command_name, "power_off");
    let mut child = e.agent.take().unwrap();
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = exited.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("agent did not exit after power_off")
    });
    assert!(status.success());
    let log = std::fs::read_to_string(&e.log).unwrap();
    assert!(log.contains("agent token missing or invalid"), "{log}");
    assert!(!log.contains(TOKEN), "the token must never be logged");
    assert!(log.contains("not in a deploy ramdisk"), "{log}");
}
