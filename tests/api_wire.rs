//! The API against real Ironic 39.0.0 captures (`tests/wire/ironic/*.json`): same keys, status
//! codes, headers and error texts, for the fields of the microversions ferric serves.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, wire};
use ferric_service::api::MAX_MINOR;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Fields Ironic added after the highest microversion ferric serves.
fn newer_than_max(field: &str) -> bool {
    let v = match field {
        "disable_power_off" => 95,
        "instance_name" => 104,
        "health" => 109,
        "name" => 88, // ports only; nodes have had names since 1.5
        "description" => 97,
        "vendor" => 100,
        "category" => 101,
        "available_for_dynamic_portgroup" => 111,
        _ => 0,
    };
    v > MAX_MINOR
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn assert_node_keys(ours: &Value, theirs: &Value) {
    let want: BTreeSet<String> = keys(theirs)
        .into_iter()
        .filter(|k| k == "name" || k == "description" || !newer_than_max(k))
        .filter(|k| !(k == "disable_power_off" || k == "health" || k == "instance_name"))
        .collect();
    assert_eq!(keys(ours), want);
}

fn assert_port_keys(ours: &Value, theirs: &Value) {
    let want: BTreeSet<String> = keys(theirs).into_iter().filter(|k| !newer_than_max(k)).collect();
    assert_eq!(keys(ours), want);
}

/// Ironic's version headers on a normal response.
fn assert_version_headers(r: &common::Resp, version: &str) {
    assert_eq!(r.header("x-openstack-ironic-api-minimum-version").as_deref(), Some("1.1"));
    assert_eq!(r.header("x-openstack-ironic-api-maximum-version"), Some(format!("1.{MAX_MINOR}")));
    assert_eq!(r.header("x-openstack-ironic-api-version").as_deref(), Some(version));
    let rid = r.header("x-openstack-request-id").unwrap();
    assert!(rid.starts_with("req-"));
    assert_eq!(r.header("openstack-request-id"), Some(rid));
}

#[tokio::test]
async fn root_and_v1_documents() {
    let api = Api::new();
    let r = api.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_version_headers(&r, &format!("1.{MAX_MINOR}"));
    let mut want = wire("root")["body"].clone();
    want["default_version"]["version"] = json!(format!("1.{MAX_MINOR}"));
    want["versions"][0]["version"] = json!(format!("1.{MAX_MINOR}"));
    assert_eq!(r.json(), want);

    let r = api.raw(Method::GET, "/", None, None).await;
    assert_version_headers(&r, "1.1");

    let r = api.get("/v1").await;
    let theirs = wire("v1")["body"].clone();
    let ours = r.json();
    // Resources of versions ferric does not serve are not advertised.
    for k in keys(&ours) {
        assert!(theirs.get(&k).is_some(), "unexpected key {k}");
    }
    for k in [
        "id",
        "links",
        "media_types",
        "chassis",
        "nodes",
        "ports",
        "drivers",
        "version",
        "portgroups",
        "lookup",
        "heartbeat",
        "conductors",
    ] {
        assert!(!ours[k].is_null(), "{k} missing");
    }
    let r = api.raw(Method::GET, "/v1", None, None).await;
    assert_eq!(keys(&r.json()), keys(&wire("v1_no_version_header")["body"]));
}

#[tokio::test]
async fn version_negotiation_errors() {
    let api = Api::new();
    let r = api.raw(Method::GET, "/v1/nodes", None, Some("1.999")).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    let want = wire("err_406_bad_microversion")["body"]["error_message"]
        .as_str()
        .unwrap()
        .replace("1.115", &format!("1.{MAX_MINOR}"));
    assert_eq!(r.json()["error_message"].as_str().unwrap(), want);
    assert_eq!(r.header("x-openstack-ironic-api-maximum-version"), Some(format!("1.{MAX_MINOR}")));
    assert!(r.header("x-openstack-ironic-api-version").is_none());

    let r = api.raw(Method::GET, "/v1/nodes", None, Some("banana")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn method_not_allowed_shape() {
    let api = Api::new();
    let r = api.delete("/v1/drivers").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let w = wire("err_405_method");
    assert_eq!(r.json(), w["body"]);
    assert_eq!(r.header("allow").as_deref(), Some("GET,HEAD"));
    assert!(r.header("x-openstack-ironic-api-minimum-version").is_none());
}

#[tokio::test]
async fn node_lifecycle_shapes() {
    let api = Api::new();
    let w = wire("node_create_201");
    let mut body = w["request"]["body"].clone();
    body["uuid"] = w["body"]["uuid"].clone();
    let r = api.post("/v1/nodes", body).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let node = r.json();
    let uuid = node["uuid"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(format!("http://127.0.0.1:6385/v1/nodes/{uuid}")));
    assert_node_keys(&node, &w["body"]);
    for k in [
        "provision_state",
        "driver",
        "power_state",
        "network_interface",
        "storage_interface",
        "boot_interface",
        "properties",
        "extra",
        "traits",
        "maintenance",
        "resource_class",
        "name",
    ] {
        assert_eq!(node[k], w["body"][k], "{k}");
    }
    assert_eq!(node["links"][0]["href"], json!(format!("http://127.0.0.1:6385/v1/nodes/{uuid}")));

    // By name, with fields.
    let r = api.get("/v1/nodes/shape-node-1795614684").await;
    assert_eq!(r.json()["uuid"], json!(uuid));
    let r = api.get(&format!("/v1/nodes/{uuid}?fields=uuid,name,provision_state")).await;
    assert_eq!(keys(&r.json()), keys(&wire("node_get_fields")["body"]));

    // API 1.1 view.
    let r = api.raw(Method::GET, &format!("/v1/nodes/{uuid}"), None, None).await;
    assert_version_headers(&r, "1.1");
    assert_eq!(keys(&r.json()), keys(&wire("node_get_v1_1_no_header")["body"]));

    // Patch.
    let r = api.patch(&format!("/v1/nodes/{uuid}"), wire("node_patch_200")["request"]["body"].clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["extra"], json!({"owner_note": "anchor", "foo": "bar"}));
    assert_eq!(r.json()["description"], json!("shape node"));
    let r = api.patch(&format!("/v1/nodes/{uuid}"), wire("node_patch_instance_info")["request"]["body"].clone()).await;
    assert_eq!(r.json()["instance_info"]["image_source"], json!("http://127.0.0.1/fake.img"));

    // States, validate, ports.
    let r = api.get(&format!("/v1/nodes/{uuid}/states")).await;
    assert_eq!(keys(&r.json()), keys(&wire("node_states")["body"]));
    assert_eq!(r.json()["provision_state"], json!("enroll"));
    let r = api.get(&format!("/v1/nodes/{uuid}/validate")).await;
    assert_eq!(r.json(), wire("node_validate")["body"]);
    let r = api.post("/v1/ports", json!({"node_uuid": uuid, "address": "52:54:00:06:e7:dc", "extra": {"x": 1}})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let port = r.json();
    assert_port_keys(&port, &wire("port_create_201")["body"]);
    let puuid = port["uuid"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(format!("http://127.0.0.1:6385/v1/ports/{puuid}")));
    let r = api.get(&format!("/v1/nodes/{uuid}/ports")).await;
    assert_eq!(keys(&r.json()["ports"][0]), keys(&wire("node_ports")["body"]["ports"][0]));
    let r = api.get(&format!("/v1/ports?node={uuid}")).await;
    assert_eq!(keys(&r.json()["ports"][0]), keys(&wire("ports_list")["body"]["ports"][0]));
    let r = api.get(&format!("/v1/ports/detail?node={uuid}")).await;
    assert_port_keys(&r.json()["ports"][0], &wire("ports_detail")["body"]["ports"][0]);

    // Bad transition.
    let r = api.put(&format!("/v1/nodes/{uuid}/states/provision"), json!({"target": "active"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json(), wire("err_400_bad_transition")["body"]);

    // Through the lifecycle.
    for (verb, state) in [("manage", "manageable"), ("provide", "available"), ("active", "active")] {
        let r = api.provision(&uuid, verb).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{verb}: {}", r.text());
        assert_eq!(r.header("location"), Some(format!("http://127.0.0.1:6385/v1/nodes/{uuid}/states")));
        assert_eq!(r.body.len(), 0);
        assert_eq!(api.state(&uuid).await, state);
    }
    let r = api.get(&format!("/v1/nodes/{uuid}")).await;
    assert_node_keys(&r.json(), &wire("node_get_active")["body"]);
    assert_eq!(r.json()["instance_info"], wire("node_get_active")["body"]["instance_info"]);
    assert_eq!(r.json()["target_provision_state"], Value::Null);

    // Deleting an active node is refused.
    let r = api.delete(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json(), wire("err_409_delete_active_node")["body"]);

    // Power off.
    let r = api.put(&format!("/v1/nodes/{uuid}/states/power"), json!({"target": "power off"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("location"), Some(format!("http://127.0.0.1:6385/v1/nodes/{uuid}/states")));
    api.idle().await;
    let r = api.get(&format!("/v1/nodes/{uuid}/states")).await;
    assert_eq!(r.json()["power_state"], json!("power off"));

    // Undeploy: instance_info cleared, available again.
    let r = api.provision(&uuid, "deleted").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = api.get(&format!("/v1/nodes/{uuid}")).await;
    let after = wire("node_get_after_undeploy")["body"].clone();
    for k in ["provision_state", "instance_info", "power_state", "target_provision_state", "last_error"] {
        assert_eq!(r.json()[k], after[k], "{k}");
    }

    let r = api.delete(&format!("/v1/ports/{puuid}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.delete(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.get(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json(), wire("err_404_after_delete")["body"]);
}

#[tokio::test]
async fn error_texts_match_ironic() {
    let api = Api::new();
    let r = api.post("/v1/nodes", json!({"driver": "no-such-driver"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json(), wire("err_400_bad_driver")["body"]);

    let uuid = api.node("shape-node-1795614684").await;
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "name": "shape-node-1795614684"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json(), wire("err_409_duplicate_node_name")["body"]);

    let r = api.get(&format!("/v1/nodes/{uuid}?fields=bogus")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json(), wire("err_400_invalid_field")["body"]);

    let r = api.get("/v1/nodes?limit=0").await;
    assert_eq!(r.json(), wire("err_400_limit_0")["body"]);

    for (path, name) in [
        ("/v1/nodes/no-such-node", "err_404_node_name"),
        ("/v1/nodes/00000000-0000-0000-0000-000000000000", "err_404_node_uuid"),
        ("/v1/ports/00000000-0000-0000-0000-000000000000", "err_404_port"),
        ("/v1/drivers/no-such-driver", "err_404_driver"),
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.json(), wire(name)["body"], "{path}");
    }

    let mac = json!({"node_uuid": uuid, "address": "52:54:00:06:e7:dc"});
    assert_eq!(api.post("/v1/ports", mac.clone()).await.status, StatusCode::CREATED);
    let r = api.post("/v1/ports", mac).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json(), wire("err_409_duplicate_port_mac")["body"]);
}

#[tokio::test(start_paused = true)]
async fn locked_node_gets_409() {
    let mut cfg = ferric_service::config::Config::default();
    cfg.fake.deploy_ms = 10_000;
    let api = Api::virtual_clock(cfg);
    let uuid = api.node("busy").await;
    api.provision(&uuid, "manage").await;
    api.provision(&uuid, "provide").await;
    let r = api.put(&format!("/v1/nodes/{uuid}/states/provision"), json!({"target": "active"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // The deploy holds the lock for 10 virtual seconds.
    let r = api.put(&format!("/v1/nodes/{uuid}/states/provision"), json!({"target": "active"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let want = wire("err_second_deploy")["body"]["error_message"]
        .as_str()
        .unwrap()
        .replace("6c52e3e3-e191-4113-ba94-004bad13e7e7", &uuid)
        .replace("anchor-conductor", "ferric-conductor");
    assert_eq!(r.json()["error_message"].as_str().unwrap(), want);
    assert_eq!(api.get(&format!("/v1/nodes/{uuid}")).await.json()["reservation"], json!("ferric-conductor"));
    api.idle().await;
    let n = api.get(&format!("/v1/nodes/{uuid}")).await.json();
    assert_eq!(n["provision_state"], json!("active"));
    assert_eq!(n["reservation"], Value::Null);
}

#[tokio::test]
async fn listing_pages_and_filters() {
    let api = Api::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(api.node(&format!("anchor-bench-{i:05}")).await);
    }
    let r = api.get("/v1/nodes?limit=2").await;
    let body = r.json();
    assert_eq!(keys(&body), keys(&wire("nodes_list_limit2")["body"]));
    assert_eq!(keys(&body["nodes"][0]), keys(&wire("nodes_list_limit2")["body"]["nodes"][0]));
    assert_eq!(
        body["next"],
        json!(format!(
            "http://127.0.0.1:6385/v1/nodes?sort_key=id&sort_dir=asc&fields=instance_uuid,maintenance,power_state,provision_state,uuid,name&limit=2&marker={}",
            ids[1]
        ))
    );
    let r = api.get("/v1/nodes/detail?limit=1").await;
    assert_eq!(
        r.json()["next"],
        json!(format!("http://127.0.0.1:6385/v1/nodes/detail?sort_key=id&sort_dir=asc&limit=1&marker={}", ids[0]))
    );
    assert_node_keys(&r.json()["nodes"][0], &wire("nodes_detail_limit1")["body"]["nodes"][0]);

    // Walk all pages by marker.
    let mut seen = Vec::new();
    let mut url = "/v1/nodes?limit=2".to_string();
    loop {
        let b = api.get(&url).await.json();
        for n in b["nodes"].as_array().unwrap() {
            seen.push(n["uuid"].as_str().unwrap().to_string());
        }
        match b["next"].as_str() {
            Some(n) => url = n.trim_start_matches("http://127.0.0.1:6385").to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    // Sorted by name, descending.
    let b = api.get("/v1/nodes?sort_key=name&sort_dir=desc").await.json();
    assert_eq!(b["nodes"][0]["name"], json!("anchor-bench-00004"));
    assert_eq!(api.get("/v1/nodes?sort_key=driver_info").await.status, StatusCode::BAD_REQUEST);

    // Filters.
    api.provision(&ids[0], "manage").await;
    api.provision(&ids[1], "manage").await;
    api.put(&format!("/v1/nodes/{}/maintenance", ids[2]), json!({"reason": "x"})).await;
    let n = |b: Value| b["nodes"].as_array().unwrap().len();
    assert_eq!(n(api.get("/v1/nodes?provision_state=manageable").await.json()), 2);
    assert_eq!(n(api.get("/v1/nodes?maintenance=true").await.json()), 1);
    assert_eq!(n(api.get("/v1/nodes?driver=fake-hardware").await.json()), 5);
    assert_eq!(n(api.get("/v1/nodes?associated=false").await.json()), 5);
    assert_eq!(n(api.get("/v1/nodes?associated=true").await.json()), 0);
    assert_eq!(n(api.get("/v1/nodes?resource_class=none").await.json()), 0);
    assert_eq!(n(api.get("/v1/nodes?conductor_group=").await.json()), 5);
    assert_eq!(n(api.get("/v1/nodes?fault=power%20failure").await.json()), 0);
    assert_eq!(api.get("/v1/nodes?provision_state=nonsense").await.status, StatusCode::BAD_REQUEST);
    // A filter needs its microversion.
    let r = api.raw(Method::GET, "/v1/nodes?resource_class=x", None, Some("1.20")).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn drivers_and_conductors() {
    let api = Api::new();
    let r = api.get("/v1/drivers").await;
    let d = r.json()["drivers"].as_array().unwrap().clone();
    let fake = d.iter().find(|x| x["name"] == json!("fake-hardware")).unwrap();
    assert_eq!(keys(fake), keys(&wire("drivers")["body"]["drivers"][0]));
    assert_eq!(fake["hosts"], json!(["ferric-conductor"]));
    let r = api.get("/v1/drivers/fake-hardware").await;
    assert_eq!(keys(&r.json()), keys(&wire("driver_fake_hardware")["body"]));
    assert_eq!(r.json()["default_power_interface"], json!("fake"));
    let r = api.get("/v1/drivers/fake-hardware/properties").await;
    assert_eq!(r.json(), wire("driver_fake_hardware_properties")["body"]);
    let r = api.get("/v1/conductors").await;
    let c = &r.json()["conductors"][0];
    assert_eq!(keys(c), keys(&wire("conductors")["body"]["conductors"][0]));
    assert_eq!(c["alive"], json!(true));
}
