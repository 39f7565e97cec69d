//! The image service over real HTTP on loopback, driven by curl and by `ferric image`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferric_service::images::{ImageService, ImageStore, tempurl};
use ferric_types::clock::Clock;
use serde_json::Value;

const KEY: &[u8] = b"k3y-for-temp-urls";

async fn start() -> (tempfile::TempDir, Arc<ImageService>, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(&dir.path().join("store"), Clock::system(), 64 << 20).unwrap());
    let svc = Arc::new(ImageService::new(store, KEY.to_vec(), Clock::system()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let router = svc.clone().router();
    tokio::spawn(async move { axum::serve(l, router).await });
    (dir, svc, url)
}

/// Runs curl off the runtime; returns (status, body).
async fn curl(args: Vec<String>) -> (u16, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl").args(["-s", "-o", "-", "-w", "\n%{http_code}"]).args(&args).output().unwrap();
        let mut body = out.stdout;
        let pos = body.iter().rposition(|&b| b == b'\n').unwrap();
        let code = String::from_utf8_lossy(&body[pos + 1..]).parse().unwrap();
        body.truncate(pos);
        (code, body)
    })
    .await
    .unwrap()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_api_range_and_temp_urls_with_curl() {
    let (dir, svc, url) = start().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let file = dir.path().join("img.raw");
    std::fs::write(&file, &data).unwrap();

    // Create, upload, show.
    let (code, body) = curl(s(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name": "cirros", "disk_format": "raw", "container_format": "bare"}"#,
        &format!("{url}/v2/images"),
    ]))
    .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let img: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(img["status"], "queued");
    let id = img["id"].as_str().unwrap().to_string();
    let (code, _) = curl(s(&[
        "-X",
        "PUT",
        "-H",
        "content-type: application/octet-stream",
        "-T",
        file.to_str().unwrap(),
        &format!("{url}/v2/images/{id}/file"),
    ]))
    .await;
    assert_eq!(code, 204);
    let (code, body) = curl(s(&[&format!("{url}/v2/images/{id}")])).await;
    assert_eq!(code, 200);
    let img: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len());
    assert_eq!(img["os_hash_algo"], "sha256");
    assert_eq!(img["file"], format!("/v2/images/{id}/file"));
    // A second upload is refused.
    let (code, _) = curl(s(&["-X", "PUT", "-T", file.to_str().unwrap(), &format!("{url}/v2/images/{id}/file")])).await;
    assert_eq!(code, 409);

    // Download and Range.
    let (code, body) = curl(s(&[&format!("{url}/v2/images/{id}/file")])).await;
    assert_eq!((code, body.len()), (200, data.len()));
    assert_eq!(body, data);
    let (code, body) = curl(s(&["-r", "1000-1999", &format!("{url}/v2/images/{id}/file")])).await;
    assert_eq!(code, 206);
    assert_eq!(body, &data[1000..2000]);

    // Temp URLs: valid (GET, HEAD, Range), expired, forged, for another path.
    let good = svc.temp_url(&url, &id, Duration::from_secs(60)).unwrap();
    let (code, body) = curl(s(&[&good])).await;
    assert_eq!(code, 200);
    assert_eq!(body, data);
    let (code, body) = curl(s(&["-r", "299990-", &good])).await;
    assert_eq!((code, &body[..]), (206, &data[299_990..]));
    let (code, _) = curl(s(&["-I", &good])).await;
    assert_eq!(code, 200);
    let now = Clock::system().now_unix();
    let path = format!("{}/{id}", tempurl::PREFIX);
    let expired =
        format!("{url}{path}?temp_url_sig={}&temp_url_expires={}", tempurl::sign(KEY, "GET", now - 1, &path), now - 1);
    let (code, body) = curl(s(&[&expired])).await;
    assert_eq!(code, 401);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert!(err["message"].as_str().unwrap().contains("expired"), "{err}");
    let mut sig_bytes: Vec<char> = good.chars().collect();
    let pos = good.find("temp_url_sig=").unwrap() + "temp_url_sig=".len();
    sig_bytes[pos] = if sig_bytes[pos] == 'a' { 'b' } else { 'a' };
    let forged: String = sig_bytes.into_iter().collect();
    assert_eq!(curl(s(&[&forged])).await.0, 401);
    let longer = good.replace("temp_url_expires=", "temp_url_expires=9");
    assert_eq!(curl(s(&[&longer])).await.0, 401);
    let other_key = format!(
        "{url}{path}?temp_url_sig={}&temp_url_expires={}",
        tempurl::sign(b"wrong", "GET", now + 60, &path),
        now + 60
    );
    assert_eq!(curl(s(&[&other_key])).await.0, 401);
    assert_eq!(curl(s(&[&format!("{url}{path}")])).await.0, 401);
    let put = format!(
        "{url}{path}?temp_url_sig={}&temp_url_expires={}",
        tempurl::sign(KEY, "PUT", now + 60, &path),
        now + 60
    );
    assert_eq!(curl(s(&[&put])).await.0, 401);

    // Bad input: clear JSON errors, nothing created.
    let (code, body) = curl(s(&["-X", "POST", "-d", "{not json", &format!("{url}/v2/images")])).await;
    assert_eq!(code, 400);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["message"].is_string());
    let (code, _) = curl(s(&["-X", "POST", "-d", r#"{"container_format": "zip"}"#, &format!("{url}/v2/images")])).await;
    assert_eq!(code, 400);
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(100 << 10));
    let bigf = dir.path().join("big.json");
    std::fs::write(&bigf, big).unwrap();
    let (code, _) = curl(s(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &format!("@{}", bigf.display()),
        &format!("{url}/v2/images"),
    ]))
    .await;
    assert_eq!(code, 413);
    assert_eq!(curl(s(&[&format!("{url}/v2/images/not-a-uuid")])).await.0, 404);
    // Over the store's size limit: 413, image stays queued without data.
    let (_, body) = curl(s(&["-X", "POST", "-d", "{}", &format!("{url}/v2/images")])).await;
    let big_id = serde_json::from_slice::<Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    let huge = dir.path().join("huge");
    std::fs::File::create(&huge).unwrap().set_len(65 << 20).unwrap();
    let (code, _) =
        curl(s(&["-X", "PUT", "-T", huge.to_str().unwrap(), &format!("{url}/v2/images/{big_id}/file")])).await;
    assert_eq!(code, 413);
    let (_, body) = curl(s(&[&format!("{url}/v2/images/{big_id}")])).await;
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["status"], "queued");
    assert_eq!(curl(s(&[&format!("{url}/v2/images/{big_id}/file")])).await.0, 204);

    let (code, body) = curl(s(&[&format!("{url}/v2/images")])).await;
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["images"].as_array().unwrap().len(), 2);
    assert_eq!(curl(s(&["-X", "DELETE", &format!("{url}/v2/images/{id}")])).await.0, 204);
    assert_eq!(curl(s(&[&good])).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferric_image_cli() {
    let (dir, svc, url) = start().await;
    let file = dir.path().join("disk.qcow2");
    let st = Command::new("qemu-img").args(["create", "-f", "qcow2", file.to_str().unwrap(), "64M"]).output().unwrap();
    assert!(st.status.success());
    let run = |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_ferric")).args(&args).env("FERRIC_URL", url).output().unwrap()
        })
    };
    let out =
        run(s(&["image", "create", "--file", file.to_str().unwrap(), "--name", "tiny", "--disk-format", "qcow2"]))
            .await
            .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let img: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(img["status"], "active");
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(img["virtual_size"], 64 << 20);
    let id = img["id"].as_str().unwrap().to_string();
    let out = run(s(&["image", "list"])).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&id) && text.contains("tiny") && text.contains("active"), "{text}");
    let out = run(s(&["image", "show", &id])).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["name"], "tiny");
    let out = run(s(&["image", "delete", &id])).await.unwrap();
    assert!(out.status.success());
    let out = run(s(&["image", "show", &id])).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = run(s(&["image", "create", "--file", "/nonexistent", "--name", "x"])).await.unwrap();
    assert!(!out.status.success());
    assert!(svc.store.list().unwrap().is_empty());
}
