//! A default `ferric serve` (no boot services bound) enrolls `ipmi` and `redfish` nodes: `pxe`
//! and `ipxe` are registered whether or not ferric serves TFTP/HTTP itself (as in Ironic), and a
//! node whose boot needs a server nobody configured fails validation, saying which.

mod common;

use axum::http::StatusCode;
use ferric_service::assemble::Service;
use ferric_service::config::Config;
use serde_json::json;

fn default_serve() -> (common::Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    (common::Api::from_service(Service::open(config).unwrap()), dir)
}

#[tokio::test]
async fn default_serve_enrolls_ipmi_and_redfish_nodes() {
    let (api, _dir) = default_serve();
    for (driver, info) in [
        ("ipmi", json!({"ipmi_address": "192.0.2.10"})),
        ("redfish", json!({"redfish_address": "https://192.0.2.11", "redfish_password": "pw"})),
    ] {
        let r = api.post("/v1/nodes", json!({"driver": driver, "driver_info": info})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{driver}: {}", r.text());
        let n = r.json();
        assert_eq!(n["boot_interface"], json!("ipxe"), "{n}");
        let u = n["uuid"].as_str().unwrap();
        // iPXE needs ferric's HTTP boot server (or an http_url): validation says so.
        let v = api.get(&format!("/v1/nodes/{u}/validate")).await.json();
        assert_eq!(v["boot"]["result"], json!(false), "{v}");
        let why = v["boot"]["reason"].as_str().unwrap();
        assert!(why.contains("boot interface ipxe needs an HTTP boot server"), "{why}");
        // pxe works with someone else's TFTP server: only the usual checks apply.
        let r = api
            .patch(&format!("/v1/nodes/{u}"), json!([{"op": "replace", "path": "/boot_interface", "value": "pxe"}]))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = api.get(&format!("/v1/nodes/{u}/validate")).await.json();
        assert!(!v["boot"]["reason"].as_str().unwrap_or("").contains("HTTP boot server"), "{v}");
    }
    // Virtual media needs the HTTP boot server too.
    let r = api
        .post(
            "/v1/nodes",
            json!({"driver": "redfish", "boot_interface": "redfish-virtual-media",
                   "driver_info": {"redfish_address": "192.0.2.12", "deploy_kernel": "http://192.0.2.1/k", "deploy_ramdisk": "http://192.0.2.1/r"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let u = r.json()["uuid"].as_str().unwrap().to_string();
    let v = api.get(&format!("/v1/nodes/{u}/validate")).await.json();
    assert_eq!(
        v["boot"]["reason"],
        json!("boot interface redfish-virtual-media needs an HTTP boot server: set [pxe] http_bind or http_url")
    );
}
