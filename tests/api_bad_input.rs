//! Bad input gets an Ironic-shaped 4xx with a clear message, and changes nothing.

mod common;

use axum::http::{Method, StatusCode};
use common::Api;
use serde_json::{Value, json};

/// Every error response is the envelope with a non-empty message.
fn assert_error(r: &common::Resp, status: StatusCode, contains: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    let msg = r.fault();
    assert!(msg.contains(contains), "message {msg:?} lacks {contains:?}");
}

async fn snapshot(api: &Api) -> Value {
    api.get("/v1/nodes/detail").await.json()
}

#[tokio::test]
async fn malformed_and_unknown_input_changes_nothing() {
    let api = Api::new();
    let uuid = api.node("n1").await;
    let before = snapshot(&api).await;

    let r = api.raw(Method::POST, "/v1/nodes", Some(b"{not json".to_vec()), Some("latest")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "Invalid JSON");
    let r = api.raw(Method::POST, "/v1/nodes", Some(Vec::new()), Some("latest")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "empty");
    let r = api.post("/v1/nodes", json!([1, 2])).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "object");
    let r = api.post("/v1/nodes", json!({"name": "x"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'driver' is a required property");
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "provision_state": "active"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'provision_state' was unexpected");
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "bogus": 1})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'bogus' was unexpected");
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "uuid": "not-a-uuid"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "Expected a UUID");
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "name": "has space"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "name");
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "driver_info": "nope"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "driver_info");
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "deploy_interface": "warp"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "warp");
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "name": "n1"})).await;
    assert_error(&r, StatusCode::CONFLICT, "already exists");
    // A field newer than the requested version.
    let r = api
        .raw(Method::POST, "/v1/nodes", Some(br#"{"driver":"fake-hardware","owner":"x"}"#.to_vec()), Some("1.49"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);

    // Oversized body.
    let big = format!(r#"{{"driver":"fake-hardware","extra":{{"x":"{}"}}}}"#, "a".repeat(2 << 20));
    let r = api.raw(Method::POST, "/v1/nodes", Some(big.into_bytes()), Some("latest")).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too large");

    // Patches.
    let node_path = format!("/v1/nodes/{uuid}");
    let p = |ops: Value| api.patch(&node_path, ops);
    assert_error(&p(json!({"op": "add"})).await, StatusCode::BAD_REQUEST, "Invalid patch");
    assert_error(&p(json!([])).await, StatusCode::BAD_REQUEST, "empty");
    assert_error(
        &p(json!([{"op": "frobnicate", "path": "/extra/a", "value": 1}])).await,
        StatusCode::BAD_REQUEST,
        "Invalid patch",
    );
    assert_error(
        &p(json!([{"op": "replace", "path": "/provision_state", "value": "active"}])).await,
        StatusCode::BAD_REQUEST,
        "internal attribute",
    );
    assert_error(
        &p(json!([{"op": "add", "path": "/newroot", "value": 1}])).await,
        StatusCode::BAD_REQUEST,
        "root of the resource",
    );
    assert_error(
        &p(json!([{"op": "remove", "path": "/extra/missing"}])).await,
        StatusCode::BAD_REQUEST,
        "Invalid patch",
    );
    assert_error(&p(json!([{"op": "remove", "path": "/driver"}])).await, StatusCode::BAD_REQUEST, "mandatory");
    assert_error(
        &p(json!([{"op": "replace", "path": "/driver", "value": "nope"}])).await,
        StatusCode::BAD_REQUEST,
        "No valid host",
    );
    assert_error(
        &p(json!([{"op": "add", "path": "/traits", "value": ["CUSTOM_X"]}])).await,
        StatusCode::BAD_REQUEST,
        "traits API",
    );
    assert_error(&p(json!([{"op": "replace", "path": "/extra", "value": 5}])).await, StatusCode::BAD_REQUEST, "extra");
    // A failing op in the middle leaves earlier ops unapplied.
    let r = p(json!([
        {"op": "add", "path": "/extra/ok", "value": 1},
        {"op": "remove", "path": "/extra/missing"}
    ]))
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Bad UUIDs and unknown resources.
    assert_error(&api.get("/v1/nodes/?marker=zzz").await, StatusCode::BAD_REQUEST, "UUID");
    assert_error(&api.get("/v1/ports/not-a-port").await, StatusCode::NOT_FOUND, "could not be found");
    assert_error(&api.get("/v1/nodes?limit=abc").await, StatusCode::BAD_REQUEST, "limit");
    assert_error(&api.get("/v1/nodes?sort_dir=up").await, StatusCode::BAD_REQUEST, "sort direction");
    assert_error(&api.get("/v1/bogus").await, StatusCode::NOT_FOUND, "could not be found");

    // Invalid transitions and verbs.
    let prov_path = format!("/v1/nodes/{uuid}/states/provision");
    let prov = |t: Value| api.put(&prov_path, t);
    assert_error(&prov(json!({"target": "provide"})).await, StatusCode::BAD_REQUEST, "can not be performed");
    assert_error(&prov(json!({"target": "fly"})).await, StatusCode::BAD_REQUEST, "could not be understood");
    assert_error(&prov(json!({"target": "clean"})).await, StatusCode::BAD_REQUEST, "clean_steps");
    assert_error(&prov(json!({"target": "rescue"})).await, StatusCode::BAD_REQUEST, "rescue_password");
    assert_error(&prov(json!({})).await, StatusCode::BAD_REQUEST, "target");
    let r = api
        .raw(
            Method::PUT,
            &format!("/v1/nodes/{uuid}/states/provision"),
            Some(br#"{"target":"deploy"}"#.to_vec()),
            Some("1.72"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    let power_path = format!("/v1/nodes/{uuid}/states/power");
    let pw = |t: Value| api.put(&power_path, t);
    assert_error(&pw(json!({"target": "explode"})).await, StatusCode::BAD_REQUEST, "can not be performed");
    assert_error(&pw(json!({"target": "power on", "timeout": -3})).await, StatusCode::BAD_REQUEST, "timeout");
    let r = api.put(&format!("/v1/nodes/{uuid}/management/boot_device"), json!({"boot_device": "floppy"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "boot device");

    // Ports.
    assert_error(
        &api.post("/v1/ports", json!({"node_uuid": uuid, "address": "zz:zz"})).await,
        StatusCode::BAD_REQUEST,
        "MAC",
    );
    assert_error(
        &api.post("/v1/ports", json!({"address": "52:54:00:00:00:01"})).await,
        StatusCode::BAD_REQUEST,
        "node_uuid",
    );
    let r = api
        .post("/v1/ports", json!({"node_uuid": "00000000-0000-0000-0000-000000000000", "address": "52:54:00:00:00:01"}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "could not be found");
    let r = api
        .post(
            "/v1/ports",
            json!({"node_uuid": uuid, "address": "52:54:00:00:00:01", "local_link_connection": {"bogus": 1}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "local_link_connection");

    // Traits and VIFs.
    assert_error(
        &api.put(&format!("/v1/nodes/{uuid}/traits"), json!({"traits": ["lower"]})).await,
        StatusCode::BAD_REQUEST,
        "trait",
    );
    assert_error(&api.delete(&format!("/v1/nodes/{uuid}/traits/CUSTOM_NOPE")).await, StatusCode::NOT_FOUND, "trait");
    assert_error(
        &api.post(&format!("/v1/nodes/{uuid}/vifs"), json!({"id": "v1"})).await,
        StatusCode::BAD_REQUEST,
        "free physical ports",
    );
    assert_error(&api.delete(&format!("/v1/nodes/{uuid}/vifs/v1")).await, StatusCode::BAD_REQUEST, "not attached");

    assert_eq!(snapshot(&api).await, before, "bad input changed something");
}

#[tokio::test]
async fn traits_vifs_maintenance_boot_device() {
    let api = Api::new();
    let uuid = api.node("n1").await;
    let base = format!("/v1/nodes/{uuid}");
    assert_eq!(
        api.put(&format!("{base}/traits"), json!({"traits": ["CUSTOM_A", "HW_CPU_X86_VMX"]})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.put(&format!("{base}/traits/CUSTOM_B"), json!({})).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&format!("{base}/traits")).await.json()["traits"],
        json!(["CUSTOM_A", "HW_CPU_X86_VMX", "CUSTOM_B"])
    );
    assert_eq!(api.delete(&format!("{base}/traits/CUSTOM_A")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.delete(&format!("{base}/traits")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("{base}/traits")).await.json()["traits"], json!([]));

    api.post("/v1/ports", json!({"node_uuid": uuid, "address": "52:54:00:00:00:01"})).await;
    assert_eq!(api.post(&format!("{base}/vifs"), json!({"id": "vif-1"})).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("{base}/vifs")).await.json(), json!({"vifs": [{"id": "vif-1"}]}));
    assert_eq!(api.delete(&format!("{base}/vifs/vif-1")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("{base}/vifs")).await.json(), json!({"vifs": []}));

    assert_eq!(
        api.put(&format!("{base}/maintenance"), json!({"reason": "broken fan"})).await.status,
        StatusCode::ACCEPTED
    );
    let n = api.get(&base).await.json();
    assert_eq!((n["maintenance"].clone(), n["maintenance_reason"].clone()), (json!(true), json!("broken fan")));
    assert_eq!(api.delete(&format!("{base}/maintenance")).await.status, StatusCode::ACCEPTED);
    assert_eq!(api.get(&base).await.json()["maintenance"], json!(false));

    let r = api.put(&format!("{base}/management/boot_device"), json!({"boot_device": "pxe", "persistent": true})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&format!("{base}/management/boot_device")).await.json(),
        json!({"boot_device": "pxe", "persistent": true})
    );
    let s = api.get(&format!("{base}/management/boot_device/supported")).await.json();
    assert!(s["supported_boot_devices"].as_array().unwrap().contains(&json!("disk")));

    // Secrets are masked.
    let r = api.patch(&base, json!([{"op": "add", "path": "/driver_info/ipmi_password", "value": "hunter2"}])).await;
    assert_eq!(r.json()["driver_info"]["ipmi_password"], json!("******"));
    assert!(!api.get(&base).await.text().contains("hunter2"));
    assert!(!api.get("/v1/nodes/detail").await.text().contains("hunter2"));
}

#[tokio::test]
async fn every_verb_of_the_state_machine() {
    let api = Api::new();
    let u = api.node("n").await;
    let go = |verb: &'static str, body: Value| {
        let api = &api;
        let u = u.clone();
        async move {
            let mut b = body;
            b["target"] = json!(verb);
            let r = api.put(&format!("/v1/nodes/{u}/states/provision"), b).await;
            api.idle().await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{verb}: {}", r.text());
            api.state(&u).await
        }
    };
    assert_eq!(go("manage", json!({})).await, "manageable");
    assert_eq!(go("inspect", json!({})).await, "manageable");
    assert_eq!(
        go("clean", json!({"clean_steps": [{"interface": "deploy", "step": "erase_devices_metadata"}]})).await,
        "manageable"
    );
    assert_eq!(go("adopt", json!({})).await, "active");
    assert_eq!(go("rescue", json!({"rescue_password": "pw"})).await, "rescue");
    assert_eq!(go("unrescue", json!({})).await, "active");
    assert_eq!(go("service", json!({"service_steps": [{"interface": "deploy", "step": "noop"}]})).await, "active");
    assert_eq!(go("rebuild", json!({})).await, "active");
    assert_eq!(go("undeploy", json!({})).await, "available");
    assert_eq!(go("deploy", json!({"configdrive": "H4sI"})).await, "active");
    let n = api.get(&format!("/v1/nodes/{u}")).await.json();
    assert_eq!(n["instance_info"]["configdrive"], json!("******"));
    assert_eq!(go("deleted", json!({})).await, "available");
    assert_eq!(go("manage", json!({})).await, "manageable");
    assert_eq!(go("provide", json!({})).await, "available");
    // Verbs that need a wait state are refused elsewhere.
    for v in ["abort", "unhold"] {
        let r = api.put(&format!("/v1/nodes/{u}/states/provision"), json!({"target": v})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{v}");
    }
}

/// A write whose body is not JSON is refused (415) before any handler reads it: a `text/plain`
/// POST used to create a node. JSON with parameters, and `+json` types, are JSON.
#[tokio::test]
async fn writes_that_are_not_json_are_refused_with_415() {
    let api = Api::new();
    let uuid = api.node("n1").await;
    let before = snapshot(&api).await;
    let node = br#"{"driver": "fake-hardware", "name": "plain"}"#.to_vec();
    for ct in
        [vec![("content-type", "text/plain")], vec![("content-type", "application/x-www-form-urlencoded")], vec![]]
    {
        let r = api.with_headers(Method::POST, "/v1/nodes", &ct, node.clone()).await;
        assert_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json");
    }
    let patch = br#"[{"op": "add", "path": "/extra/a", "value": 1}]"#.to_vec();
    let r = api
        .with_headers(Method::PATCH, &format!("/v1/nodes/{uuid}"), &[("content-type", "text/plain")], patch.clone())
        .await;
    assert_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain");
    assert_eq!(snapshot(&api).await, before);

    let json_ct = [("content-type", "application/json; charset=UTF-8")];
    assert_eq!(api.with_headers(Method::POST, "/v1/nodes", &json_ct, node).await.status, StatusCode::CREATED);
    let patch_ct = [("content-type", "application/json-patch+json")];
    assert_eq!(
        api.with_headers(Method::PATCH, &format!("/v1/nodes/{uuid}"), &patch_ct, patch).await.status,
        StatusCode::OK
    );
    // A write without a body needs no type.
    let r = api.with_headers(Method::PUT, &format!("/v1/nodes/{uuid}/maintenance"), &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}
