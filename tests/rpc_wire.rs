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

/// A conductor service on an in-memory store; `tweak` adjusts its configuration.
fn conductor_service(bind: std::net::SocketAddr, tweak: impl FnOnce(&mut Config)) -> Service {
    let mut cfg = Config { role: Role::Conductor, ..Config::default() };
    cfg.rpc.password = "right".into();
    cfg.rpc.bind = Some(bind);
    tweak(&mut cfg);
    let outside = Outside::real(Clock::system()).unwrap();
    Service::build(cfg, Db::open_in_memory().unwrap(), outside, Recorder::default(), |_| {}).unwrap()
}

async fn conductor() -> (String, Service) {
    let svc = conductor_service(([127, 0, 0, 1], 0).into(), |_| {});
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
    let client = RpcClient::new("c0", &url, &creds("right"), Duration::from_secs(10), None).unwrap();
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
    let wrong = RpcClient::new("c0", &url, &creds("wrong"), Duration::from_secs(10), None).unwrap();
    assert!(wrong.destroy_node(node.uuid).await.is_err());
    assert!(svc.db.get_node_by_uuid(node.uuid).is_ok());
    // A conductor that does not answer is 503 (Unavailable), in bounded time.
    let gone = RpcClient::new("c9", "http://127.0.0.1:9/", &creds("right"), Duration::from_secs(2), None).unwrap();
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

/// `[rpc] tls_cert/tls_key`: the conductor's endpoint speaks TLS; a caller with the CA reaches
/// it, one without is refused (Unavailable: nothing done).
#[tokio::test]
async fn the_endpoint_serves_tls_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("rpc.pem"), dir.path().join("rpc.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = conductor_service(addr, |cfg| {
        cfg.rpc.tls_cert = Some(cert.clone());
        cfg.rpc.tls_key = Some(key);
        cfg.data_dir = dir.path().to_path_buf();
        assert_eq!(cfg.rpc.url().unwrap(), format!("https://{addr}"));
    });
    let db = svc.db.clone();
    tokio::spawn(async move { svc.serve_on(listener, std::future::pending()).await.unwrap() });
    let url = format!("https://{addr}/");
    let pem = std::fs::read(&cert).unwrap();
    let client = RpcClient::new("c0", &url, &creds("right"), Duration::from_secs(10), Some(&pem)).unwrap();
    let node = Node { uuid: NodeId(uuid::Uuid::new_v4()), driver: "fake-hardware".into(), ..Node::default() };
    client.create_node(node.clone()).await.unwrap();
    assert!(db.get_node_by_uuid(node.uuid).is_ok());
    let untrusting = RpcClient::new("c0", &url, &creds("right"), Duration::from_secs(10), None).unwrap();
    assert!(matches!(untrusting.destroy_node(node.uuid).await, Err(RpcError::Unavailable(_))));
    assert!(db.get_node_by_uuid(node.uuid).is_ok());
}
