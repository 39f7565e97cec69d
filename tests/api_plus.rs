//! The API features of microversions 1.12 - 1.87 beyond the node/port core: each at its
//! version, with Ironic's shapes, status codes and error texts (in the envelope), backed by the
//! store.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, Resp};
use serde_json::{Value, json};

/// The inner envelope of an error response (also checks it is one).
fn fault(r: &Resp) -> String {
    assert!(r.json()["error_message"].is_string(), "not an envelope: {}", r.text());
    r.fault()
}

async fn at(api: &Api, method: Method, path: &str, body: Option<Value>, v: &str) -> Resp {
    api.raw(method, path, body.map(|b| serde_json::to_vec(&b).unwrap()), Some(v)).await
}

/// A fake-hardware node taken to `available` (so it has a power state).
async fn available(api: &Api, name: &str, rc: &str) -> String {
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "name": name, "resource_class": rc})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let id = r.json()["uuid"].as_str().unwrap().to_string();
    api.provision(&id, "manage").await;
    api.provision(&id, "provide").await;
    assert_eq!(api.state(&id).await, "available");
    id
}

#[tokio::test]
async fn v1_root_advertises_resources_by_version() {
    let api = Api::new();
    let doc = api.get("/v1").await.json();
    for k in ["volume", "allocations", "events", "deploy_templates", "shards", "continue_inspection"] {
        assert_eq!(doc[k][0]["href"], json!(format!("http://127.0.0.1:6385/v1/{k}/")), "{k}");
    }
    assert!(doc.get("runbooks").is_none() && doc.get("inspection_rules").is_none());
    let old = at(&api, Method::GET, "/v1", None, "1.31").await.json();
    for k in ["volume", "allocations", "events", "deploy_templates", "shards", "continue_inspection"] {
        assert!(old.get(k).is_none(), "{k} at 1.31");
    }
    assert!(at(&api, Method::GET, "/v1", None, "1.52").await.json().get("allocations").is_some());
}

#[tokio::test]
async fn volume_connectors_and_targets() {
    let api = Api::new();
    let node = api.node("vol-node").await;
    let r = api.get("/v1/volume").await;
    assert_eq!(r.json()["connectors"][0]["href"], json!("http://127.0.0.1:6385/v1/volume/connectors"));
    let r = api.get(&format!("/v1/nodes/{node}/volume")).await;
    assert_eq!(r.json()["targets"][1]["href"], json!(format!("http://127.0.0.1:6385/nodes/{node}/volume/targets")));
    let r = at(&api, Method::GET, "/v1/volume", None, "1.31").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(fault(&r), "The API is not supported for this version");

    let body = json!({"node_uuid": node, "type": "iqn", "connector_id": "iqn.2010-10.org.openstack:node1"});
    let r = api.post("/v1/volume/connectors", body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let c = r.json();
    let cid = c["uuid"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(format!("http://127.0.0.1:6385/v1/volume/connectors/{cid}")));
    let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["uuid", "created_at", "updated_at", "connector_id", "extra", "type", "links", "node_uuid"]);
    // (type, connector_id) is unique.
    let r = api.post("/v1/volume/connectors", body.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        fault(&r),
        "A volume connector with type iqn and connector ID iqn.2010-10.org.openstack:node1 already exists."
    );
    let r = api.post("/v1/volume/connectors", json!({"node_uuid": node, "connector_id": "x"})).await;
    assert_eq!(fault(&r), "Schema error for connector: 'type' is a required property");
    let r = api.post("/v1/volume/connectors", json!({"node_uuid": node, "type": "ip", "connector_id": 5})).await;
    assert_eq!(fault(&r), "Schema error for connector: 5 is not of type 'string'");
    let ghost = "11111111-2222-3333-4444-555555555555";
    let r = api.post("/v1/volume/connectors", json!({"node_uuid": ghost, "type": "ip", "connector_id": "1"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(fault(&r), format!("Invalid input for field/attribute node_uuid. Value: '{ghost}'. "));
    // Nothing was written by the failures.
    let list = api.get("/v1/volume/connectors").await.json();
    assert_eq!(list["connectors"].as_array().unwrap().len(), 1);
    assert_eq!(list["connectors"][0].as_object().unwrap().len(), 5, "default fields + links");
    let d = api.get("/v1/volume/connectors?detail=True").await.json();
    assert!(d["connectors"][0].get("extra").is_some());
    let r = api.get("/v1/volume/connectors?detail=True&fields=uuid").await;
    assert_eq!(fault(&r), "Can't fetch a subset of fields with 'detail' set");
    let r = api.get(&format!("/v1/nodes/{node}/volume/connectors")).await;
    assert_eq!(r.json()["connectors"][0]["uuid"], json!(cid));
    let r = api.get("/v1/volume/connectors/not-a-uuid").await;
    assert_eq!(fault(&r), "Expected UUID for connector_uuid: not-a-uuid");
    let r = api.get(&format!("/v1/volume/connectors/{ghost}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(fault(&r), format!("Volume connector {ghost} could not be found."));

    // Updates need the node powered off.
    let patch = json!([{"op": "replace", "path": "/connector_id", "value": "iqn.new"}]);
    let r = api.patch(&format!("/v1/volume/connectors/{cid}"), patch.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        fault(&r),
        format!(
            "The requested action \"volume connector update\" can not be performed on node \"{node}\" while it is in state \"None\"."
        )
    );
    let r = api
        .patch(&format!("/v1/volume/connectors/{cid}"), json!([{"op": "add", "path": "/uuid", "value": ghost}]))
        .await;
    assert_eq!(
        fault(&r),
        "Cannot patch /uuid. Only the following can be updated: connector_id, extra, node_uuid, type"
    );
    api.put(&format!("/v1/nodes/{node}/states/power"), json!({"target": "power off"})).await;
    api.idle().await;
    let r = api.patch(&format!("/v1/volume/connectors/{cid}"), patch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["connector_id"], json!("iqn.new"));

    // Targets: boot_index unique per node.
    let t = json!({"node_uuid": node, "volume_type": "iscsi", "volume_id": "vol-1", "boot_index": 0,
                   "properties": {"auth_password": "secret"}});
    let r = api.post("/v1/volume/targets", t.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let tid = r.json()["uuid"].as_str().unwrap().to_string();
    assert_eq!(r.json()["properties"]["auth_password"], json!("******"));
    let r = api.post("/v1/volume/targets", t).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(fault(&r), "A volume target with boot index '0' for the same node already exists.");
    let r = api.get("/v1/volume/targets").await.json();
    assert_eq!(r["targets"][0]["volume_id"], json!("vol-1"));
    let r = api.delete(&format!("/v1/volume/targets/{tid}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Deleting the node removes its connectors.
    assert_eq!(api.delete(&format!("/v1/nodes/{node}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("/v1/volume/connectors/{cid}")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn allocations_pick_nodes_once() {
    let api = Api::new();
    let n1 = available(&api, "alloc-1", "gold").await;
    let n2 = available(&api, "alloc-2", "gold").await;
    let _n3 = available(&api, "alloc-3", "silver").await;
    api.put(&format!("/v1/nodes/{n2}/traits/CUSTOM_GPU"), json!(null)).await;

    let r = at(&api, Method::GET, "/v1/allocations", None, "1.51").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(fault(&r), "The API version does not allow allocations");
    let r = at(&api, Method::POST, "/v1/allocations", Some(json!({"resource_class": "gold"})), "1.51").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = api.post("/v1/allocations", json!({})).await;
    assert_eq!(fault(&r), "The resource_class field is mandatory when not backfilling");
    let r = api.post("/v1/allocations", json!({"resource_class": "gold", "bogus": 1})).await;
    assert_eq!(fault(&r), "Schema error: Additional properties are not allowed ('bogus' was unexpected)");
    let r = api.post("/v1/allocations", json!({"resource_class": "gold", "candidate_nodes": ["nope"]})).await;
    assert_eq!(fault(&r), "Nodes cannot be found: nope");

    // Traits narrow the choice.
    let r =
        api.post("/v1/allocations", json!({"resource_class": "gold", "traits": ["CUSTOM_GPU"], "name": "a1"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["state"], json!("allocating"));
    let a1 = r.json()["uuid"].as_str().unwrap().to_string();
    api.idle().await;
    let a = api.get("/v1/allocations/a1").await.json();
    assert_eq!(a["state"], json!("active"), "{a}");
    assert_eq!(a["node_uuid"], json!(n2));
    let node = api.get(&format!("/v1/nodes/{n2}")).await.json();
    assert_eq!(node["instance_uuid"], json!(a1));
    assert_eq!(node["allocation_uuid"], json!(a1));
    assert_eq!(node["instance_info"]["traits"], json!(["CUSTOM_GPU"]));
    assert_eq!(api.get(&format!("/v1/nodes/{n2}/allocation")).await.json()["uuid"], json!(a1));
    let r = api.get(&format!("/v1/nodes/{n1}/allocation")).await;
    assert_eq!(fault(&r), format!("Allocation for node {n1} was not found"));

    // Candidates by name; then nothing is left for a third.
    let r = api.post("/v1/allocations", json!({"resource_class": "gold", "candidate_nodes": ["alloc-1"]})).await;
    let a2 = r.json()["uuid"].as_str().unwrap().to_string();
    api.idle().await;
    assert_eq!(api.get(&format!("/v1/allocations/{a2}")).await.json()["node_uuid"], json!(n1));
    let r = api.post("/v1/allocations", json!({"resource_class": "gold"})).await;
    let a3 = r.json()["uuid"].as_str().unwrap().to_string();
    api.idle().await;
    let a = api.get(&format!("/v1/allocations/{a3}")).await.json();
    assert_eq!(a["state"], json!("error"));
    assert_eq!(
        a["last_error"],
        json!(format!("Failed to process allocation {a3}: no available nodes match the resource class gold."))
    );
    assert_eq!(a["node_uuid"], Value::Null);

    let list = api.get("/v1/allocations?state=active").await.json();
    assert_eq!(list["allocations"].as_array().unwrap().len(), 2);
    assert_eq!(api.get(&format!("/v1/allocations?node={n1}")).await.json()["allocations"][0]["uuid"], json!(a2));
    let r = api.get("/v1/allocations?sort_key=traits").await;
    assert_eq!(fault(&r), "The sort_key value traits is an invalid field for sorting");
    // owner is shown from 1.60.
    assert!(at(&api, Method::GET, &format!("/v1/allocations/{a1}"), None, "1.59").await.json().get("owner").is_none());

    // Update (1.57) and delete: the node is freed with its allocation.
    let r = at(
        &api,
        Method::PATCH,
        &format!("/v1/allocations/{a1}"),
        Some(json!([{"op": "add", "path": "/name", "value": "x"}])),
        "1.56",
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = api.patch(&format!("/v1/allocations/{a1}"), json!([{"op": "add", "path": "/extra/k", "value": "v"}])).await;
    assert_eq!(r.json()["extra"], json!({"k": "v"}));
    assert_eq!(r.json()["state"], json!("active"));
    let r = api.patch(&format!("/v1/allocations/{a1}"), json!([{"op": "add", "path": "/state", "value": "x"}])).await;
    assert_eq!(fault(&r), "Cannot patch /state. Only the following can be updated: name, extra");
    assert_eq!(api.delete(&format!("/v1/allocations/{a1}")).await.status, StatusCode::NO_CONTENT);
    let node = api.get(&format!("/v1/nodes/{n2}")).await.json();
    assert_eq!(node["instance_uuid"], Value::Null);
    assert_eq!(node["allocation_uuid"], Value::Null);
    // Deleting a node's allocation through the node.
    assert_eq!(api.delete(&format!("/v1/nodes/{n1}/allocation")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("/v1/nodes/{n1}")).await.json()["instance_uuid"], Value::Null);
}

#[tokio::test]
async fn concurrent_allocations_never_share_a_node() {
    let api = std::sync::Arc::new(Api::new());
    let mut nodes = Vec::new();
    for i in 0..4 {
        nodes.push(available(&api, &format!("race-{i}"), "race").await);
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let r = api.post("/v1/allocations", json!({"resource_class": "race"})).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            r.json()["uuid"].as_str().unwrap().to_string()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    api.idle().await;
    // Allocation workers may still be retrying locked nodes: wait for every one to settle.
    for _ in 0..100 {
        let list = api.get("/v1/allocations").await.json();
        if list["allocations"].as_array().unwrap().iter().all(|a| a["state"] != json!("allocating")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut used = Vec::new();
    let mut active = 0;
    for id in &ids {
        let a = api.get(&format!("/v1/allocations/{id}")).await.json();
        if a["state"] == json!("active") {
            active += 1;
            let n = a["node_uuid"].as_str().unwrap().to_string();
            assert!(!used.contains(&n), "node {n} allocated twice");
            let node = api.get(&format!("/v1/nodes/{n}")).await.json();
            assert_eq!(node["instance_uuid"], json!(id));
            used.push(n);
        } else {
            assert_eq!(a["state"], json!("error"), "{a}");
        }
    }
    assert_eq!(active, 4);
}

#[tokio::test]
async fn allocation_backfill() {
    let api = Api::new();
    let n = available(&api, "bf", "gold").await;
    let r = at(&api, Method::POST, "/v1/allocations", Some(json!({"node": n})), "1.57").await;
    assert_eq!(fault(&r), "Schema error: Additional properties are not allowed ('node' was unexpected)");
    // Backfilling needs an active node.
    let r = api.post("/v1/allocations", json!({"node": "bf"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(fault(&r).contains("Node must be in the \"active\" state"), "{}", r.text());
    api.provision(&n, "active").await;
    let r = api.post("/v1/allocations", json!({"node": "bf", "name": "bf-alloc"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["state"], json!("active"));
    assert_eq!(r.json()["resource_class"], json!("gold"));
    let id = r.json()["uuid"].as_str().unwrap().to_string();
    // An active node's allocation cannot go away, and undeploying removes it.
    let r = api.delete(&format!("/v1/allocations/{id}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(fault(&r).contains("because the node is active"));
    api.provision(&n, "deleted").await;
    assert_eq!(api.get(&format!("/v1/allocations/{id}")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deploy_templates_crud() {
    let api = Api::new();
    let r = at(&api, Method::GET, "/v1/deploy_templates", None, "1.54").await;
    assert_eq!(
        (r.status, fault(&r).as_str()),
        (StatusCode::NOT_FOUND, "The API version does not allow deploy templates")
    );
    let r = at(&api, Method::POST, "/v1/deploy_templates", Some(json!({})), "1.54").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let step =
        json!({"interface": "bios", "step": "apply_configuration", "args": {"password": "x"}, "priority": "150"});
    let r = api.post("/v1/deploy_templates", json!({"name": "CUSTOM_HYPERTHREADING_ON", "steps": [step]})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let t = r.json();
    assert_eq!(t["steps"][0]["priority"], json!(150));
    assert_eq!(t["steps"][0]["args"]["password"], json!("******"));
    let r = api.post("/v1/deploy_templates", json!({"name": "CUSTOM_HYPERTHREADING_ON", "steps": [step]})).await;
    assert_eq!(
        (r.status, fault(&r)),
        (StatusCode::CONFLICT, "A deploy template with name CUSTOM_HYPERTHREADING_ON already exists.".into())
    );
    let r = api.post("/v1/deploy_templates", json!({"name": "CUSTOM_X", "steps": [step, step]})).await;
    assert_eq!(
        fault(&r),
        "Deploy template invalid: Duplicate deploy steps. A template cannot have multiple deploy steps with the same interface and step. Duplicates: interface: bios, step: apply_configuration."
    );
    let r = api.post("/v1/deploy_templates", json!({"name": "CUSTOM_X", "steps": []})).await;
    assert_eq!(fault(&r), "Schema error for template: [] should be non-empty");
    let r = api
        .post(
            "/v1/deploy_templates",
            json!({"name": "CUSTOM_X", "steps": [{"interface": "nope", "step": "s", "args": {}, "priority": 1}]}),
        )
        .await;
    assert_eq!(
        fault(&r),
        "Schema error for template: 'nope' is not one of ['vendor', 'power', 'management', 'firmware', 'deploy', 'bios', 'raid']"
    );
    let list = api.get("/v1/deploy_templates").await.json();
    assert_eq!(list["deploy_templates"][0].as_object().unwrap().len(), 3, "uuid, name, links");
    let r = api
        .patch(
            "/v1/deploy_templates/CUSTOM_HYPERTHREADING_ON",
            json!([{"op": "replace", "path": "/name", "value": "CUSTOM_HT"}]),
        )
        .await;
    assert_eq!(r.json()["name"], json!("CUSTOM_HT"), "{}", r.text());
    assert_eq!(api.delete("/v1/deploy_templates/CUSTOM_HT").await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/v1/deploy_templates").await.json()["deploy_templates"], json!([]));
}

#[tokio::test]
async fn events_and_shards() {
    let api = Api::new();
    let ev = json!({"events": [{"event": "network.bind_port", "port_id": "11111111-2222-3333-4444-555555555555",
                                "mac_address": "52:54:00:12:34:56", "status": "ACTIVE", "device_id": null}]});
    assert_eq!(api.post("/v1/events", ev.clone()).await.status, StatusCode::NO_CONTENT);
    let r = at(&api, Method::POST, "/v1/events", Some(ev), "1.53").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .post("/v1/events", json!({"events": [{"event": "x", "port_id": "p", "mac_address": "m", "status": "s"}]}))
        .await;
    assert_eq!(
        fault(&r),
        "Schema error: 'x' is not one of ['network.bind_port', 'network.unbind_port', 'network.delete_port']"
    );
    let r = api.post("/v1/events", json!({"events": []})).await;
    assert_eq!(fault(&r), "Schema error: [] should be non-empty");

    for (name, shard) in [("s1", Some("a")), ("s2", Some("a")), ("s3", Some("b")), ("s4", None)] {
        let mut body = json!({"driver": "fake-hardware", "name": name});
        if let Some(s) = shard {
            body["shard"] = json!(s);
        }
        assert_eq!(api.post("/v1/nodes", body).await.status, StatusCode::CREATED);
    }
    let r = api.get("/v1/shards").await.json();
    assert_eq!(r["shards"][0], json!({"name": "a", "count": 2}));
    assert_eq!(r["shards"].as_array().unwrap().len(), 3);
    assert_eq!(at(&api, Method::GET, "/v1/shards", None, "1.81").await.status, StatusCode::NOT_FOUND);
    let count = |v: Value| v["nodes"].as_array().unwrap().len();
    assert_eq!(count(api.get("/v1/nodes?shard=a,b").await.json()), 3);
    assert_eq!(count(api.get("/v1/nodes?sharded=false").await.json()), 1);
    assert_eq!(at(&api, Method::GET, "/v1/nodes?sharded=true", None, "1.81").await.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn raid_nmi_indicators_boot_mode() {
    let api = Api::new();
    let n = api.node("mgmt").await;
    let cfg = json!({"logical_disks": [{"raid_level": "1", "size_gb": 100, "is_root_volume": true}]});
    let r = at(&api, Method::PUT, &format!("/v1/nodes/{n}/states/raid"), Some(cfg.clone()), "1.11").await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(api.put(&format!("/v1/nodes/{n}/states/raid"), cfg.clone()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("/v1/nodes/{n}/states")).await.json()["target_raid_config"], cfg);
    let r = api.put(&format!("/v1/nodes/{n}/states/raid"), json!({"logical_disks": [{"raid_level": "1"}]})).await;
    assert_eq!(fault(&r), "RAID config validation error: 'size_gb' is a required property");
    assert_eq!(api.get(&format!("/v1/nodes/{n}/states")).await.json()["target_raid_config"], cfg, "unchanged");
    api.patch(&format!("/v1/nodes/{n}"), json!([{"op": "replace", "path": "/raid_interface", "value": "no-raid"}]))
        .await;
    let r = api.put(&format!("/v1/nodes/{n}/states/raid"), cfg).await;
    assert_eq!(
        (r.status, fault(&r)),
        (StatusCode::NOT_FOUND, "Driver fake-hardware does not support raid (disabled or not implemented).".into())
    );
    let props = api.get("/v1/drivers/fake-hardware/raid/logical_disk_properties").await.json();
    assert!(props["raid_level"].as_str().unwrap().starts_with("RAID level for the logical disk."));
    assert_eq!(api.get("/v1/drivers/nope/raid/logical_disk_properties").await.status, StatusCode::NOT_FOUND);

    let r = at(&api, Method::PUT, &format!("/v1/nodes/{n}/management/inject_nmi"), Some(json!({})), "1.28").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.put(&format!("/v1/nodes/{n}/management/inject_nmi"), json!({})).await.status,
        StatusCode::NO_CONTENT
    );

    let r = api.get(&format!("/v1/nodes/{n}/management/indicators")).await.json();
    let names: Vec<&str> = r["indicators"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["led-0@chassis", "led@system"]);
    let path = format!("/v1/nodes/{n}/management/indicators/led@system");
    assert_eq!(api.get(&path).await.json(), json!({"state": "on"}));
    assert_eq!(api.put(&path, json!({"state": "blinking"})).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&path).await.json(), json!({"state": "blinking"}));
    let r = api.put(&format!("/v1/nodes/{n}/management/indicators/led-0@chassis"), json!({"state": "off"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api.get(&format!("/v1/nodes/{n}/management/indicators/led")).await;
    assert_eq!(fault(&r), "Malformed indicator name \"led\"");

    let r = at(&api, Method::PUT, &format!("/v1/nodes/{n}/states/boot_mode"), Some(json!({"target": "uefi"})), "1.75")
        .await;
    assert_eq!(fault(&r), "This endpoint is supported starting with the API version 1.76");
    let r = api.put(&format!("/v1/nodes/{n}/states/boot_mode"), json!({"target": "efi"})).await;
    assert_eq!(fault(&r), "Invalid boot mode efi requested for node. Allowed boot modes are: bios, uefi");
    let r = api.put(&format!("/v1/nodes/{n}/states/boot_mode"), json!({"target": "uefi"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("location"), Some(format!("http://127.0.0.1:6385/v1/nodes/{n}/states")));
    api.idle().await;
    assert_eq!(
        api.put(&format!("/v1/nodes/{n}/states/secure_boot"), json!({"target": true})).await.status,
        StatusCode::ACCEPTED
    );
    api.idle().await;
    let s = api.get(&format!("/v1/nodes/{n}/states")).await.json();
    assert_eq!((s["boot_mode"].clone(), s["secure_boot"].clone()), (json!("uefi"), json!(true)));
    let r = api.put(&format!("/v1/nodes/{n}/states/secure_boot"), json!({"target": "maybe"})).await;
    assert!(fault(&r).starts_with("Invalid target: Unrecognized value 'maybe'"));
}

#[tokio::test]
async fn console_bios_inventory_children_history() {
    let api = Api::new();
    let n = api.node("cons").await;
    let path = format!("/v1/nodes/{n}/states/console");
    assert_eq!(api.get(&path).await.json(), json!({"console_enabled": false, "console_info": null}));
    let r = api.put(&path, json!({"enabled": true})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    api.idle().await;
    assert_eq!(api.get(&path).await.json(), json!({"console_enabled": true, "console_info": {}}));
    let m = api.node("nocons").await;
    api.patch(
        &format!("/v1/nodes/{m}"),
        json!([{"op": "replace", "path": "/console_interface", "value": "no-console"}]),
    )
    .await;
    let r = api.put(&format!("/v1/nodes/{m}/states/console"), json!({"enabled": true})).await;
    assert_eq!(fault(&r), "Driver fake-hardware does not support console (disabled or not implemented).");
    let r = api.put(&format!("/v1/nodes/{m}/states/console"), json!({"enabled": "perhaps"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    assert_eq!(api.get(&format!("/v1/nodes/{n}/bios")).await.json(), json!({"bios": []}));
    assert_eq!(at(&api, Method::GET, &format!("/v1/nodes/{n}/bios"), None, "1.39").await.status, StatusCode::NOT_FOUND);
    let r = api.get(&format!("/v1/nodes/{n}/bios/ProcVirtualization")).await;
    assert_eq!(fault(&r), format!("Node {n} doesn't have a BIOS setting 'ProcVirtualization'"));
    let id: ferric_types::models::NodeId = n.parse().unwrap();
    let s = ferric_types::models::BiosSetting {
        name: "ProcVirtualization".into(),
        value: Some("Enabled".into()),
        ..Default::default()
    };
    api.service.db.put_bios_settings(id, &[s]).unwrap();
    let r = at(&api, Method::GET, &format!("/v1/nodes/{n}/bios"), None, "1.73").await.json();
    assert_eq!(r["bios"][0]["value"], json!("Enabled"));
    assert!(r["bios"][0].get("read_only").is_none());
    let r = at(&api, Method::GET, &format!("/v1/nodes/{n}/bios?detail=True"), None, "1.73").await;
    assert_eq!(fault(&r), "Invalid query parameter ?detail=True received.");
    assert!(api.get(&format!("/v1/nodes/{n}/bios?detail=True")).await.json()["bios"][0].get("read_only").is_some());

    let r = api.get(&format!("/v1/nodes/{n}/inventory")).await;
    assert_eq!(fault(&r), format!("Node inventory record for node {n} could not be found."));
    assert_eq!(
        at(&api, Method::GET, &format!("/v1/nodes/{n}/inventory"), None, "1.80").await.status,
        StatusCode::NOT_FOUND
    );

    // Children (1.83): hidden from the default listing.
    let c = api.node("child").await;
    let r = api.patch(&format!("/v1/nodes/{c}"), json!([{"op": "add", "path": "/parent_node", "value": n}])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let kids = api.get(&format!("/v1/nodes/{n}/children")).await.json();
    assert_eq!(kids["children"], json!([c]));
    assert_eq!(kids["links"]["href"], json!(format!("http://127.0.0.1:6385/v1/nodes?parent_node={n}")));
    let count = |v: Value| v["nodes"].as_array().unwrap().len();
    assert_eq!(count(api.get("/v1/nodes").await.json()), 2);
    assert_eq!(count(api.get("/v1/nodes?include_children=true").await.json()), 3);
    assert_eq!(count(api.get(&format!("/v1/nodes?parent_node={n}")).await.json()), 1);
    assert_eq!(
        at(&api, Method::GET, &format!("/v1/nodes/{n}/children"), None, "1.82").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        at(&api, Method::GET, "/v1/nodes?include_children=true", None, "1.82").await.status,
        StatusCode::NOT_ACCEPTABLE
    );

    // Other filters.
    api.patch(
        &format!("/v1/nodes/{m}"),
        json!([{"op": "add", "path": "/description", "value": "Rack 12, slot 4"},
                                                 {"op": "add", "path": "/retired", "value": true}]),
    )
    .await;
    assert_eq!(api.get("/v1/nodes?description_contains=rack%2012").await.json()["nodes"][0]["uuid"], json!(m));
    assert_eq!(api.get("/v1/nodes?retired=true").await.json()["nodes"][0]["uuid"], json!(m));
    assert_eq!(count(api.get("/v1/nodes?retired=false").await.json()), 1);
    assert_eq!(count(api.get("/v1/nodes?conductor=elsewhere").await.json()), 0);

    // History: an aborted agent inspection leaves its error there.
    assert_eq!(api.get(&format!("/v1/nodes/{n}/history")).await.json(), json!({"history": []}));
    api.patch(&format!("/v1/nodes/{n}"), json!([{"op": "replace", "path": "/inspect_interface", "value": "agent"}]))
        .await;
    api.provision(&n, "manage").await;
    api.provision(&n, "inspect").await;
    assert_eq!(api.state(&n).await, "inspect wait");
    api.provision(&n, "abort").await;
    assert_eq!(api.state(&n).await, "inspect failed");
    let h = api.get(&format!("/v1/nodes/{n}/history")).await.json();
    let e = &h["history"][0];
    assert_eq!(e["severity"], json!("ERROR"));
    assert_eq!(e["event"], json!("By request, the inspection was aborted."));
    assert!(e.get("event_type").is_none());
    let one = api.get(&format!("/v1/nodes/{n}/history/{}", e["uuid"].as_str().unwrap())).await.json();
    assert_eq!(one["event_type"], json!("introspection"));
    assert_eq!(one["conductor"], json!("ferric-conductor"));
    assert_eq!(
        at(&api, Method::GET, &format!("/v1/nodes/{n}/history"), None, "1.77").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn agent_inspection_continues_with_inventory() {
    let api = Api::new();
    let r =
        api.post("/v1/nodes", json!({"driver": "fake-hardware", "name": "insp", "inspect_interface": "agent"})).await;
    let n = r.json()["uuid"].as_str().unwrap().to_string();
    let mac = "52:54:00:aa:bb:01";
    assert_eq!(api.post("/v1/ports", json!({"node_uuid": n, "address": mac})).await.status, StatusCode::CREATED);
    api.provision(&n, "manage").await;
    let data = json!({"inventory": {"interfaces": [{"name": "eth0", "mac_address": mac},
                                                   {"name": "eth1", "mac_address": "52:54:00:aa:bb:02"},
                                                   {"name": "lo", "mac_address": "00:00:00:00:00:00"}],
                                    "cpu": {"count": 4, "architecture": "x86_64"}},
                      "root_disk": {"size": 10}});
    // Not waiting for inspection: the lookup finds nothing.
    let r = api.post("/v1/continue_inspection", data.clone()).await;
    assert_eq!((r.status, fault(&r)), (StatusCode::NOT_FOUND, "The resource could not be found.".into()));
    api.provision(&n, "inspect").await;
    assert_eq!(api.state(&n).await, "inspect wait");
    let r = at(&api, Method::POST, "/v1/continue_inspection", Some(data.clone()), "1.83").await;
    assert_eq!(fault(&r), "API version 1.84 or newer is required");
    let r = api.post("/v1/continue_inspection", json!({"inventory": {"interfaces": []}})).await;
    assert_eq!(fault(&r), "Schema error for data: [] should be non-empty");
    let r = api.post("/v1/continue_inspection", data.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let token = r.json()["config"]["agent_token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    assert_eq!(r.json()["node"]["uuid"], json!(n));
    api.idle().await;
    assert_eq!(api.state(&n).await, "manageable");
    let inv = api.get(&format!("/v1/nodes/{n}/inventory")).await.json();
    assert_eq!(inv["inventory"]["cpu"]["count"], json!(4));
    assert_eq!(inv["plugin_data"], json!({"root_disk": {"size": 10}}));
    let node = api.get(&format!("/v1/nodes/{n}")).await.json();
    assert!(node["inspection_finished_at"].is_string());
    assert_eq!(node["power_state"], json!("power off"));
    // Ironic's default hooks: the architecture, and ports for the interfaces found.
    assert_eq!(node["properties"]["cpu_arch"], json!("x86_64"));
    let ports = api.get(&format!("/v1/nodes/{n}/ports")).await.json();
    assert_eq!(ports["ports"].as_array().unwrap().len(), 2, "{ports}");
    // A ramdisk error fails the inspection.
    api.provision(&n, "inspect").await;
    let r = api
        .post(
            "/v1/continue_inspection",
            json!({"inventory": {"interfaces": [{"mac_address": mac}]}, "error": "disk on fire"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    api.idle().await;
    assert_eq!(api.state(&n).await, "inspect failed");
    let node = api.get(&format!("/v1/nodes/{n}")).await.json();
    assert_eq!(node["last_error"], json!("Failed to inspect hardware. Reason: Ramdisk reported error: disk on fire"));
    api.provision(&n, "manage").await;
    // Ironic-inspector compatibility at 1.1.
    api.provision(&n, "inspect").await;
    let r = at(&api, Method::POST, "/v1/continue_inspection", Some(data), "1.1").await;
    assert_eq!(r.json(), json!({"uuid": n}));
}

#[tokio::test]
async fn vendor_passthru_and_driver_fields() {
    let api = Api::new();
    let n = api.node("vend").await;
    let m = api.get(&format!("/v1/nodes/{n}/vendor_passthru/methods")).await.json();
    assert_eq!(
        m["third_method_sync"],
        json!({"http_methods": ["POST"], "async": false, "description": "Test if the value of bar is meow",
               "attach": false, "require_exclusive_lock": true})
    );
    let path = format!("/v1/nodes/{n}/vendor_passthru?method=third_method_sync");
    let r = api.post(&path, json!({"bar": "meow"})).await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!(true)));
    let r = api.post(&path, json!({})).await;
    assert_eq!(fault(&r), "Parameter 'bar' not passed to method 'third_method_sync'.");
    let r = api.post(&format!("/v1/nodes/{n}/vendor_passthru?method=second_method"), json!({"bar": "x"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = api.post(&format!("/v1/nodes/{n}/vendor_passthru?method=nope"), json!({})).await;
    assert_eq!(fault(&r), "No handler for method nope");
    let r = api.get(&format!("/v1/nodes/{n}/vendor_passthru?method=third_method_sync")).await;
    assert_eq!(fault(&r), "The method third_method_sync does not support HTTP GET");
    let r = api.post(&format!("/v1/nodes/{n}/vendor_passthru"), json!({})).await;
    assert_eq!(fault(&r), "Method not specified");
    api.idle().await;
    api.patch(&format!("/v1/nodes/{n}"), json!([{"op": "replace", "path": "/vendor_interface", "value": "no-vendor"}]))
        .await;
    assert_eq!(api.get(&format!("/v1/nodes/{n}/vendor_passthru/methods")).await.json(), json!({}));
    assert_eq!(api.get("/v1/drivers/fake-hardware/vendor_passthru/methods").await.json(), json!({}));
    let r = api.post("/v1/drivers/fake-hardware/vendor_passthru?method=x", json!({})).await;
    assert_eq!(fault(&r), "No handler for method x");
    assert_eq!(api.get("/v1/drivers/nope/vendor_passthru/methods").await.status, StatusCode::NOT_FOUND);

    let r = api.get("/v1/drivers?fields=name").await.json();
    let keys: Vec<&String> = r["drivers"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["name", "links"]);
    assert_eq!(at(&api, Method::GET, "/v1/drivers?fields=name", None, "1.76").await.status, StatusCode::NOT_ACCEPTABLE);
    let r = api.get("/v1/drivers/fake-hardware?fields=bogus").await;
    assert_eq!(fault(&r), "Field(s) \"bogus\" are not valid");
}

/// Runs `isoinfo` (genisoimage, installed by `.ci/install-deps`) on an image: the real reader
/// checks the config drive ferric writes.
fn isoinfo(image: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("isoinfo")
        .args(args)
        .arg("-i")
        .arg(image)
        .output()
        .expect("isoinfo (genisoimage) is installed by .ci/install-deps");
    assert!(out.status.success(), "isoinfo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn configdrive_from_json_is_a_config2_iso() {
    use base64::Engine;
    use std::io::Read;
    let api = Api::new();
    let n = available(&api, "cd-node", "gold").await;
    let path = format!("/v1/nodes/{n}/states/provision");
    let cd = json!({"meta_data": {"hostname": "web-1", "public_keys": {"k": "ssh-ed25519 AAAA"}},
                    "user_data": "#cloud-config\npackages: [nginx]\n",
                    "network_data": {"links": [], "networks": [], "services": []},
                    "vendor_data": {"cloud": "ferric"}});
    let r = at(&api, Method::PUT, &path, Some(json!({"target": "active", "configdrive": cd})), "1.55").await;
    assert_eq!(fault(&r), "Providing a JSON object for configdrive is only supported starting with API version 1.56");
    let r = at(&api, Method::PUT, &path, Some(json!({"target": "active", "configdrive": cd})), "1.58").await;
    assert_eq!(fault(&r), "Providing vendor_data in configdrive is only supported starting with API version 1.59");
    let r = api.put(&path, json!({"target": "active", "configdrive": {"bogus": 1}})).await;
    assert_eq!(fault(&r), "Invalid configdrive format: Additional properties are not allowed ('bogus' was unexpected)");
    let r = api.put(&path, json!({"target": "active", "configdrive": "not base64!"})).await;
    assert_eq!(fault(&r), "Invalid configdrive format: it is neither a JSON, nor a URL, nor a base64 string");
    let r = api.put(&path, json!({"target": "manage", "configdrive": "H4sI"})).await;
    assert_eq!(fault(&r), "Adding a config drive is only supported when setting provision state to active, rebuild");
    assert_eq!(api.state(&n).await, "available", "refusals change nothing");

    let r = api.put(&path, json!({"target": "active", "configdrive": cd})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    api.idle().await;
    let node = api.service.db.get_node(&n).unwrap();
    let stored = node.instance_info["configdrive"].as_str().unwrap().to_string();
    let gz = base64::engine::general_purpose::STANDARD.decode(stored).unwrap();
    let mut iso = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut iso).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cd.iso");
    std::fs::write(&file, &iso).unwrap();
    assert!(isoinfo(&file, &["-d"]).contains("Volume id: config-2"));
    let listing = isoinfo(&file, &["-R", "-f"]);
    for f in ["meta_data.json", "network_data.json", "vendor_data2.json", "user_data"] {
        for v in ["2012-08-10", "latest"] {
            assert!(listing.contains(&format!("/openstack/{v}/{f}")), "{f} in {v}: {listing}");
        }
    }
    let meta = isoinfo(&file, &["-R", "-x", "/openstack/latest/meta_data.json"]);
    assert_eq!(
        meta,
        format!(
            "{{\"hostname\": \"web-1\", \"public_keys\": {{\"k\": \"ssh-ed25519 AAAA\"}}, \"uuid\": \"{n}\", \"name\": \"cd-node\"}}"
        )
    );
    let joliet = isoinfo(&file, &["-J", "-x", "/openstack/latest/user_data"]);
    assert_eq!(joliet, "#cloud-config\npackages: [nginx]\n");
}

#[tokio::test]
async fn chassis_portgroups_ports_lists() {
    let api = Api::new();
    for i in 0..3 {
        let r = api.post("/v1/chassis", json!({"description": format!("rack {i}")})).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = api.get("/v1/chassis?limit=2").await.json();
    assert_eq!(r["chassis"].as_array().unwrap().len(), 2);
    let next = r["next"].as_str().unwrap().to_string();
    assert!(
        next.starts_with(
            "http://127.0.0.1:6385/v1/chassis?sort_key=id&sort_dir=asc&fields=uuid,description&limit=2&marker="
        ),
        "{next}"
    );
    let rest = api.get(next.trim_start_matches("http://127.0.0.1:6385")).await.json();
    assert_eq!(rest["chassis"].as_array().unwrap().len(), 1);
    assert_eq!(rest["chassis"][0]["description"], json!("rack 2"));
    let r = api.get("/v1/chassis?sort_key=description&sort_dir=desc&fields=description").await.json();
    assert_eq!(r["chassis"][0].as_object().unwrap().len(), 2);
    assert_eq!(r["chassis"][0]["description"], json!("rack 2"));
    let r = at(&api, Method::GET, "/v1/chassis?detail=True", None, "1.42").await;
    assert_eq!(fault(&r), "Invalid query parameter ?detail=True received.");
    assert!(api.get("/v1/chassis?detail=True").await.json()["chassis"][0].get("extra").is_some());
    assert_eq!(api.get("/v1/chassis?sort_key=extra").await.status, StatusCode::BAD_REQUEST);

    let n = api.node("pg-node").await;
    for (i, mac) in ["52:54:00:00:00:01", "52:54:00:00:00:02"].iter().enumerate() {
        let r = api.post("/v1/portgroups", json!({"node_uuid": n, "address": mac, "name": format!("pg{i}")})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let r = api.get("/v1/portgroups?limit=1").await.json();
    assert_eq!(r["portgroups"][0]["name"], json!("pg0"));
    assert!(r["next"].as_str().unwrap().contains("fields=uuid,address,name&limit=1&marker="));
    let r = api.get("/v1/portgroups?fields=name,mode").await.json();
    assert_eq!(
        r["portgroups"][1],
        json!({"name": "pg1", "mode": "active-backup",
        "links": r["portgroups"][1]["links"].clone()})
    );
    assert_eq!(
        at(&api, Method::GET, "/v1/portgroups?fields=mode", None, "1.25").await.status,
        StatusCode::NOT_ACCEPTABLE
    );
    let r = api.get(&format!("/v1/portgroups?node={n}&address=52:54:00:00:00:01")).await;
    assert_eq!(fault(&r), "Filtering by node, address, or shard simultaneously is not supported.");

    // Ports by shard (1.82).
    let s = api.post("/v1/nodes", json!({"driver": "fake-hardware", "shard": "east"})).await.json();
    let s = s["uuid"].as_str().unwrap();
    api.post("/v1/ports", json!({"node_uuid": s, "address": "52:54:00:00:01:01"})).await;
    api.post("/v1/ports", json!({"node_uuid": n, "address": "52:54:00:00:01:02"})).await;
    let r = api.get("/v1/ports?shard=east").await.json();
    assert_eq!(r["ports"].as_array().unwrap().len(), 1);
    assert_eq!(r["ports"][0]["address"], json!("52:54:00:00:01:01"));
    let r = api.get(&format!("/v1/ports?shard=east&node={n}")).await;
    assert_eq!((r.status, fault(&r)), (StatusCode::FORBIDDEN, "Operation not permitted.".into()));
    let llc = json!({"node_uuid": n, "address": "52:54:00:00:01:03",
                     "local_link_connection": {"network_type": "unmanaged"}});
    assert_eq!(at(&api, Method::POST, "/v1/ports", Some(llc.clone()), "1.63").await.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(api.post("/v1/ports", llc).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn node_link_and_version_rules() {
    let api = Api::new();
    let p = api.node("parent").await;
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "parent_node": "parent"})).await;
    assert_eq!(r.json()["parent_node"], json!(p), "stored as a UUID");
    let r = api.post("/v1/nodes", json!({"driver": "fake-hardware", "parent_node": "ghost"})).await;
    assert_eq!(fault(&r), "Unable to apply the requested parent_node 'ghost'. Requested value was invalid.");
    let r = api
        .call(
            Method::PATCH,
            &format!("/v1/nodes/{p}?reset_interfaces=true"),
            Some(json!([{"op": "add", "path": "/extra/a", "value": 1}])),
        )
        .await;
    assert_eq!(fault(&r), "The reset_interfaces parameter can only be used when changing the node's driver.");
    let c = api.post("/v1/chassis", json!({})).await.json()["uuid"].as_str().unwrap().to_string();
    api.patch(&format!("/v1/nodes/{p}"), json!([{"op": "add", "path": "/chassis_uuid", "value": c}])).await;
    let remove = json!([{"op": "remove", "path": "/chassis_uuid"}]);
    assert_eq!(
        at(&api, Method::PATCH, &format!("/v1/nodes/{p}"), Some(remove.clone()), "1.24").await.status,
        StatusCode::NOT_ACCEPTABLE
    );
    assert_eq!(api.patch(&format!("/v1/nodes/{p}"), remove).await.status, StatusCode::OK);

    // Firmware components (1.86): none cached for fake hardware.
    assert_eq!(api.get(&format!("/v1/nodes/{p}/firmware")).await.json(), json!({"firmware": []}));
    assert_eq!(
        at(&api, Method::GET, &format!("/v1/nodes/{p}/firmware"), None, "1.85").await.status,
        StatusCode::NOT_FOUND
    );
    let id: ferric_types::models::NodeId = p.parse().unwrap();
    let fw = ferric_types::models::FirmwareComponent {
        component: "bios".into(),
        current_version: Some("1.2".into()),
        ..Default::default()
    };
    api.service.db.put_firmware_components(id, &[fw]).unwrap();
    let r = api.get(&format!("/v1/nodes/{p}/firmware")).await.json();
    assert_eq!(r["firmware"][0]["current_version"], json!("1.2"));

    // Aborting inspection needs 1.41.
    let n = api.post("/v1/nodes", json!({"driver": "fake-hardware", "inspect_interface": "agent"})).await.json();
    let n = n["uuid"].as_str().unwrap().to_string();
    api.provision(&n, "manage").await;
    api.provision(&n, "inspect").await;
    let r = at(&api, Method::PUT, &format!("/v1/nodes/{n}/states/provision"), Some(json!({"target": "abort"})), "1.40")
        .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(api.state(&n).await, "inspect wait");
}

#[tokio::test]
async fn allocated_active_node_keeps_its_instance() {
    let api = Api::new();
    let n = available(&api, "keep", "gold").await;
    api.provision(&n, "active").await;
    let r = api.post("/v1/allocations", json!({"node": n})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let remove = json!([{"op": "remove", "path": "/instance_uuid"}]);
    let r = api.patch(&format!("/v1/nodes/{n}"), remove.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(fault(&r).starts_with(&format!("Node {n} with an allocation can not have instance_uuid removed")));
    // In maintenance it may go, and the allocation with it.
    api.put(&format!("/v1/nodes/{n}/maintenance"), json!({})).await;
    assert_eq!(api.patch(&format!("/v1/nodes/{n}"), remove).await.status, StatusCode::OK);
    assert_eq!(api.get("/v1/allocations").await.json()["allocations"], json!([]));
}

#[tokio::test]
async fn junk_bodies_get_the_envelope_and_change_nothing() {
    let api = Api::new();
    let n = api.node("junk").await;
    let c = api
        .post("/v1/volume/connectors", json!({"node_uuid": n, "type": "ip", "connector_id": "192.0.2.10"}))
        .await
        .json()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let t = api
        .post(
            "/v1/deploy_templates",
            json!({"name": "CUSTOM_J", "steps": [{"interface": "raid", "step": "s", "args": {}, "priority": 1}]}),
        )
        .await
        .json()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let before = api.get(&format!("/v1/nodes/{n}")).await.json();
    let endpoints: Vec<(Method, String)> = vec![
        (Method::POST, "/v1/volume/connectors".into()),
        (Method::POST, "/v1/volume/targets".into()),
        (Method::PATCH, format!("/v1/volume/connectors/{c}")),
        (Method::POST, "/v1/allocations".into()),
        (Method::POST, "/v1/deploy_templates".into()),
        (Method::PATCH, format!("/v1/deploy_templates/{t}")),
        (Method::POST, "/v1/events".into()),
        (Method::POST, "/v1/continue_inspection".into()),
        (Method::PUT, format!("/v1/nodes/{n}/states/raid")),
        (Method::PUT, format!("/v1/nodes/{n}/states/boot_mode")),
        (Method::PUT, format!("/v1/nodes/{n}/states/secure_boot")),
        (Method::PUT, format!("/v1/nodes/{n}/states/console")),
        (Method::PUT, format!("/v1/nodes/{n}/management/indicators/led@system")),
        (Method::POST, format!("/v1/nodes/{n}/vendor_passthru?method=third_method_sync")),
    ];
    let bodies: [&[u8]; 7] = [
        b"{{{",
        b"\"x\"",
        b"[]",
        b"123",
        b"null",
        br#"{"a": [1, {"b": null}], "steps": "x", "target": [], "enabled": {}, "state": 5}"#,
        br#"[{"op": "replace", "path": "/nope", "value": 1}]"#,
    ];
    for (m, path) in &endpoints {
        for b in bodies {
            let r = api.raw(m.clone(), path, Some(b.to_vec()), Some("latest")).await;
            assert!(r.status.is_client_error(), "{m} {path} {}: {} {}", String::from_utf8_lossy(b), r.status, r.text());
            fault(&r);
        }
    }
    let r = api
        .put(&format!("/v1/nodes/{n}/states/provision"), json!({"target": "active", "configdrive": {"meta_data": "x"}}))
        .await;
    assert!(fault(&r).starts_with("Invalid configdrive format: "), "{}", r.text());
    api.idle().await;
    let after = api.get(&format!("/v1/nodes/{n}")).await.json();
    for k in ["provision_state", "target_raid_config", "boot_mode", "secure_boot", "console_enabled", "last_error"] {
        assert_eq!(before[k], after[k], "{k} changed");
    }
    assert_eq!(api.get("/v1/allocations").await.json()["allocations"], json!([]));
    assert_eq!(api.get("/v1/volume/targets").await.json()["targets"], json!([]));
    assert_eq!(api.get("/v1/volume/connectors").await.json()["connectors"].as_array().unwrap().len(), 1);
    assert_eq!(api.get("/v1/deploy_templates/CUSTOM_J").await.json()["steps"][0]["step"], json!("s"));
    let r = api.get("/v1/volume/connectors?sort_key=bogus").await;
    assert_eq!(fault(&r), "The sort_key value \"bogus\" is an invalid field for sorting");
    assert_eq!(api.get("/v1/volume/connectors?sort_key=created_at&sort_dir=desc").await.status, StatusCode::OK);
}

#[tokio::test]
async fn allocations_left_allocating_resume_after_restart() {
    let api = Api::new();
    let n = available(&api, "resume", "gold").await;
    // What a crash mid-allocation leaves: the row, still allocating.
    let a = ferric_types::models::Allocation {
        uuid: ferric_types::models::AllocationId(uuid::Uuid::new_v4()),
        name: None,
        node_uuid: None,
        state: "allocating".into(),
        last_error: None,
        resource_class: Some("gold".into()),
        traits: vec![],
        candidate_nodes: vec![],
        extra: Default::default(),
        owner: None,
        created_at: chrono::Utc::now(),
        updated_at: None,
    };
    api.service.db.create_allocation(&a).unwrap();
    api.service.conductor.recover();
    api.idle().await;
    let r = api.get(&format!("/v1/allocations/{}", a.uuid)).await.json();
    assert_eq!((r["state"].clone(), r["node_uuid"].clone()), (json!("active"), json!(n)));
}

#[tokio::test]
async fn inspection_finds_nodes_by_bmc_address() {
    let api = Api::new();
    let r = api
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "inspect_interface": "agent",
                   "driver_info": {"ipmi_address": "192.0.2.5"}}),
        )
        .await;
    let n = r.json()["uuid"].as_str().unwrap().to_string();
    api.provision(&n, "manage").await;
    api.provision(&n, "inspect").await;
    let data = json!({"inventory": {"bmc_address": "192.0.2.5", "cpu": {"architecture": "aarch64"},
                                    "interfaces": [{"name": "eth0", "mac_address": "52:54:00:cc:00:01"}],
                                    "boot": {"pxe_interface": "01-52-54-00-cc-00-01"}}});
    let r = api.post("/v1/continue_inspection", data).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    api.idle().await;
    assert_eq!(api.state(&n).await, "manageable");
    let p = api.get(&format!("/v1/nodes/{n}/ports?detail=True")).await.json();
    assert_eq!(p["ports"][0]["address"], json!("52:54:00:cc:00:01"));
    assert_eq!(p["ports"][0]["pxe_enabled"], json!(true));
    let r = api
        .post(
            "/v1/continue_inspection",
            json!({"inventory": {"bmc_address": "192.0.2.99",
        "interfaces": [{"mac_address": "52:54:00:cc:00:09"}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// An `ipmi` node (ipmitool power and management, `no-*` for the rest): the later features its
/// interfaces lack answer with Ironic's errors. No BMC is contacted: these fail before any call.
#[tokio::test]
async fn ipmi_nodes_refuse_what_their_interfaces_lack() {
    use std::sync::Arc;
    let db = ferric_service::db::Db::open_in_memory().unwrap();
    let service = ferric_service::assemble::Service::build(
        ferric_service::config::Config::default(),
        db,
        ferric_service::assemble::Outside::real(ferric_types::clock::Clock::system()).unwrap(),
        ferric_types::trace::Recorder::default(),
        |p| {
            // Boot and deploy do not matter here: stand-ins under the ipmi type's names.
            p.registry.register_boot("pxe", Arc::new(ferric_service::drivers::fake::FakeBoot));
            p.registry.register_deploy("direct", Arc::new(ferric_service::drivers::fake::FakeDeploy));
        },
    )
    .unwrap();
    let api = Api::from_service(service);
    let r = api
        .post("/v1/nodes", json!({"driver": "ipmi", "name": "bmc", "driver_info": {"ipmi_address": "192.0.2.1"}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let n = r.json()["uuid"].as_str().unwrap().to_string();
    let r = api.put(&format!("/v1/nodes/{n}/management/inject_nmi"), json!({})).await;
    assert_eq!(
        (r.status, fault(&r)),
        (StatusCode::BAD_REQUEST, "Driver ipmi does not support inject_nmi (disabled or not implemented).".into())
    );
    let r = api.get(&format!("/v1/nodes/{n}/management/indicators")).await;
    assert_eq!(fault(&r), "Driver ipmi does not support get_supported_indicators (disabled or not implemented).");
    let r = api.put(&format!("/v1/nodes/{n}/states/boot_mode"), json!({"target": "uefi"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    api.idle().await;
    let node = api.get(&format!("/v1/nodes/{n}")).await.json();
    assert_eq!(node["boot_mode"], Value::Null);
    assert_eq!(
        node["last_error"],
        json!(
            "Failed to change boot mode to 'uefi'. Error: Driver ipmi does not support set_boot_mode (disabled or not implemented)."
        )
    );
    let r = api
        .put(&format!("/v1/nodes/{n}/states/raid"), json!({"logical_disks": [{"raid_level": "1", "size_gb": 1}]}))
        .await;
    assert_eq!(
        (r.status, fault(&r)),
        (StatusCode::NOT_FOUND, "Driver ipmi does not support raid (disabled or not implemented).".into())
    );
    let r = api.put(&format!("/v1/nodes/{n}/states/console"), json!({"enabled": true})).await;
    assert_eq!(fault(&r), "Driver ipmi does not support console (disabled or not implemented).");
    assert_eq!(api.get(&format!("/v1/nodes/{n}/vendor_passthru/methods")).await.json(), json!({}));
    let r = api.post(&format!("/v1/nodes/{n}/vendor_passthru?method=send_raw"), json!({})).await;
    assert_eq!(fault(&r), "No handler for method send_raw");
    assert_eq!(api.get("/v1/drivers/ipmi/vendor_passthru/methods").await.json(), json!({}));
    // The failed boot-mode change is in the node's history.
    let h = api.get(&format!("/v1/nodes/{n}/history")).await.json();
    assert_eq!(h["history"].as_array().unwrap().len(), 1);
}
