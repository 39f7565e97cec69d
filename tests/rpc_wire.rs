//! The conductor's JSON-RPC endpoint on a real socket: calls through `RpcClient` keep their
//! error kinds; wrong credentials, unknown methods, bad params and malformed bodies get JSON-RPC
//! errors and change nothing.

use ferric_service::assemble::{Outside, Service};
use ferric_service::config::{Config, Role};
use ferric_service::db::Db;
use ferric_service::rpc::{RpcClient, RpcCredentials, serve_rpc};
use ferric_types::clock::Clock;
use ferric_types::models::{Node, NodeId};
use ferric_types::rpc::{ConductorApi, RpcError};
use ferric_types::state_machine::Verb;
use ferric_types::trace::Recorder;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn creds(password: &str) -> RpcCredentials {
    RpcCredentials { username: "ferric".into(), password: password.into() }
}

async fn conductor() -> (String, Service) {
    let mut cfg = Config { role: Role::Conductor, ..Config::default() };
    cfg.rpc.password = "right".into();
    cfg.rpc.bind = Some(([127, 0, 0, 1], 0).into());
    let svc = Service::build(
        cfg,
        Db::open_in_memory().unwrap(),
        Outside::real(Clock::system()).unwrap(),
        Recorder::default(),
        |_| {},
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = serve_rpc(Arc::new(svc.conductor.clone()), creds("right"));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, svc)
}

async fn raw(url: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let mut r = reqwest::Client::new().post(url).header("content-type", "application/json").body(body.to_string());
    if let Some(p) = auth {
        r = r.basic_auth("ferric", Some(p));
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn calls_cross_the_socket_with_their_error_kinds() {
    let (url, svc) = conductor().await;
    let client = RpcClient::new("c0", &url, &creds("right"), Duration::from_secs(10)).unwrap();
    let node = Node { uuid: NodeId(uuid::Uuid::new_v4()), driver: "fake-hardware".into(), ..Node::default() };
    let made = client.create_node(node.clone()).await.unwrap();
    assert_eq!(made.uuid, node.uuid);
    assert_eq!(svc.db.get_node_by_uuid(node.uuid).unwrap().driver, "fake-hardware");
    client.do_provisioning_action(node.uuid, Verb::Manage, Default::default()).await.unwrap();
    svc.conductor.wait_idle().await;
    assert_eq!(svc.db.get_node_by_uuid(node.uuid).unwrap().provision_state.as_str(), "manageable");
    let missing = NodeId(uuid::Uuid::new_v4());
    assert!(matches!(client.destroy_node(missing).await, Err(RpcError::NotFound(_))));
    let r = client.do_provisioning_action(node.uuid, Verb::Active, Default::default()).await;
    assert!(matches!(r, Err(RpcError::InvalidState(_))), "{r:?}");
    // Wrong credentials: refused, nothing written.
    let wrong = RpcClient::new("c0", &url, &creds("wrong"), Duration::from_secs(10)).unwrap();
    assert!(wrong.destroy_node(node.uuid).await.is_err());
    assert!(svc.db.get_node_by_uuid(node.uuid).is_ok());
    // A conductor that does not answer is 503 (Unavailable), in bounded time.
    let gone = RpcClient::new("c9", "http://127.0.0.1:9/", &creds("right"), Duration::from_secs(2)).unwrap();
    assert!(matches!(gone.destroy_node(node.uuid).await, Err(RpcError::Unavailable(_))));
}

#[tokio::test]
async fn bad_calls_get_json_rpc_errors() {
    let (url, svc) = conductor().await;
    let call = |m: &str, p: Value| json!({"jsonrpc": "2.0", "method": m, "params": p, "id": 7}).to_string();
    let (s, v) = raw(&url, None, &call("destroy_node", json!({"node": uuid::Uuid::new_v4()}))).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = raw(&url, Some("nope"), &call("destroy_node", json!({}))).await;
    assert_eq!(s, 401, "{v}");
    let (_, v) = raw(&url, Some("right"), &call("format_disks", json!({}))).await;
    assert_eq!(v["error"]["code"], -32601, "{v}");
    assert_eq!(v["id"], 7);
    let (_, v) = raw(&url, Some("right"), &call("destroy_node", json!({"node": "not-a-uuid"}))).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let (_, v) = raw(&url, Some("right"), "{not json").await;
    assert_eq!(v["error"]["code"], -32700, "{v}");
    let (_, v) = raw(&url, Some("right"), &json!({"jsonrpc": "1.0", "method": "vif_list", "id": 1}).to_string()).await;
    assert_eq!(v["error"]["code"], -32600, "{v}");
    let (_, v) = raw(&url, Some("right"), &call("destroy_node", json!({"node": uuid::Uuid::new_v4()}))).await;
    assert_eq!(v["error"]["code"], -32000, "{v}");
    assert!(v["error"]["data"]["NotFound"].is_string(), "the error kind travels: {v}");
    assert_eq!(svc.db.list_nodes(&Default::default()).unwrap().len(), 0);
}
