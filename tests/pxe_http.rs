//! The HTTP boot server on loopback, fetched with curl (Range, HEAD, traversal).

use tokio::process::Command;

async fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "--path-as-is", "--max-time", "30", "-D", "/dev/stderr"])
        .args(args)
        .output()
        .await
        .unwrap();
    (String::from_utf8_lossy(&out.stderr).into_owned(), out.stdout)
}

fn status(headers: &str) -> u16 {
    headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn serves_ranges_and_refuses_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("http");
    std::fs::create_dir_all(root.join("node-1")).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("node-1/deploy_kernel"), &data).unwrap();
    std::fs::write(root.join("node-1/config"), b"#!ipxe\n").unwrap();
    std::fs::write(dir.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = ferric_service::pxe::http::router(&root);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");

    let (h, body) = curl(&[&format!("{base}/node-1/deploy_kernel")]).await;
    assert_eq!(status(&h), 200, "{h}");
    assert_eq!(body, data);
    let (h, body) = curl(&["-r", "1000-1999", &format!("{base}/node-1/deploy_kernel")]).await;
    assert_eq!(status(&h), 206, "{h}");
    assert!(h.to_ascii_lowercase().contains("content-range: bytes 1000-1999/200000"), "{h}");
    assert_eq!(body, &data[1000..2000]);
    let (h, body) = curl(&["-r", "199990-", &format!("{base}/node-1/deploy_kernel")]).await;
    assert_eq!(status(&h), 206, "{h}");
    assert_eq!(body, &data[199_990..]);
    let (h, _) = curl(&["-r", "300000-300010", &format!("{base}/node-1/deploy_kernel")]).await;
    assert_eq!(status(&h), 416, "{h}");
    let (h, body) = curl(&["-I", &format!("{base}/node-1/config")]).await;
    assert_eq!(status(&h), 200, "{h}");
    assert!(body.is_empty() || String::from_utf8_lossy(&body).contains("200"));

    for path in ["/../secret", "/node-1/../../secret", "/%2e%2e/secret", "/escape"] {
        let (h, body) = curl(&[&format!("{base}{path}")]).await;
        assert!(matches!(status(&h), 400 | 403 | 404), "{path}: {h}");
        assert_ne!(body, b"secret", "{path}");
    }
    let (h, _) = curl(&[&format!("{base}/missing")]).await;
    assert_eq!(status(&h), 404);
    let (h, _) = curl(&["-X", "PUT", "-d", "x", &format!("{base}/node-1/config")]).await;
    assert_eq!(status(&h), 405);
    server.abort();
}
