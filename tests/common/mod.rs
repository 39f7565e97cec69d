//! Shared test helpers: the real API router driven in-process (tower `oneshot`), or served on a
//! loopback socket.
#![allow(dead_code)]

pub mod agent_bin;
pub mod listening;
pub mod serve;
pub mod waiting;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::Config;
use ferric_service::db::Db;
use ferric_types::clock::Clock;
use ferric_types::trace::Recorder;
use serde_json::Value;
use tower::ServiceExt;

/// A response, decoded.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers.get(k).map(|v| v.to_str().unwrap().to_string())
    }
    /// The inner `faultstring` of an Ironic error envelope.
    pub fn fault(&self) -> String {
        let outer = self.json();
        let inner: Value = serde_json::from_str(outer["error_message"].as_str().unwrap_or("{}")).unwrap();
        inner["faultstring"].as_str().or(inner["description"].as_str()).unwrap_or("").to_string()
    }
}

/// The service with an in-memory store, called in-process.
pub struct Api {
    pub service: Service,
    router: axum::Router,
    pub version: Option<String>,
}

impl Api {
    pub fn new() -> Api {
        Api::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Api {
        Api::build(config, Clock::system())
    }

    /// For paused-clock tests: timestamps follow tokio's clock.
    pub fn virtual_clock(config: Config) -> Api {
        let epoch = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
        Api::build(config, Clock::virtual_from(epoch, 7))
    }

    fn build(config: Config, clock: Clock) -> Api {
        let db = Db::open_in_memory().unwrap();
        let service = Service::build(config, db, Outside::real(clock).unwrap(), Recorder::default(), |_| {}).unwrap();
        Api::from_service(service)
    }

    /// Wraps an already built service.
    pub fn from_service(service: Service) -> Api {
        let router = service.router();
        Api { service, router, version: Some("latest".into()) }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.raw(method, path, body.map(|b| serde_json::to_vec(&b).unwrap()), self.version.as_deref()).await
    }

    pub async fn raw(&self, method: Method, path: &str, body: Option<Vec<u8>>, version: Option<&str>) -> Resp {
        let mut b = Request::builder().method(method).uri(path).header("host", "127.0.0.1:6385");
        if let Some(v) = version {
            b = b.header("X-OpenStack-Ironic-API-Version", v);
        }
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec();
        Resp { status, headers, body }
    }

    /// Sends `body` with exactly the `headers` given (the version header aside).
    pub async fn with_headers(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let mut b = Request::builder().method(method).uri(path).header("host", "127.0.0.1:6385");
        if let Some(v) = &self.version {
            b = b.header("X-OpenStack-Ironic-API-Version", v.as_str());
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self.router.clone().oneshot(b.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec();
        Resp { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    /// Waits for the conductor's background work to finish.
    pub async fn idle(&self) {
        self.service.conductor.wait_idle().await;
    }

    /// Creates a fake-hardware node and returns its UUID.
    pub async fn node(&self, name: &str) -> String {
        let r = self.post("/v1/nodes", serde_json::json!({"driver": "fake-hardware", "name": name})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        r.json()["uuid"].as_str().unwrap().to_string()
    }

    /// Runs a provision verb and waits for the work to finish.
    pub async fn provision(&self, node: &str, verb: &str) -> Resp {
        let r = self.put(&format!("/v1/nodes/{node}/states/provision"), serde_json::json!({"target": verb})).await;
        self.idle().await;
        r
    }

    pub async fn state(&self, node: &str) -> String {
        self.get(&format!("/v1/nodes/{node}")).await.json()["provision_state"].as_str().unwrap_or("").to_string()
    }
}

/// A captured Ironic 39.0.0 exchange from `../shared/wire/ironic/`.
pub fn wire(name: &str) -> Value {
    let dir = std::env::var("FERRIC_WIRE_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wire/ironic").to_string());
    let text =
        std::fs::read_to_string(format!("{dir}/{name}.json")).unwrap_or_else(|e| panic!("{dir}/{name}.json: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Inserts `n` fake-hardware nodes named `{prefix}-{i:05}` straight into the database (a tenth
/// active, a third powered on, owners `project-0` .. `project-6`): a large fleet in seconds.
pub fn fill_fleet(api: &Api, n: usize, prefix: &str) {
    use ferric_types::models::{Node, NodeId, PowerState, ProvisionState};
    let now = chrono::Utc::now();
    for i in 0..n {
        let node = Node {
            uuid: NodeId(uuid::Uuid::new_v4()),
            name: Some(format!("{prefix}-{i:05}")),
            driver: "fake-hardware".into(),
            created_at: now,
            provision_state: if i % 10 == 0 { ProvisionState::Active } else { ProvisionState::Available },
            power_state: Some(if i % 3 == 0 { PowerState::On } else { PowerState::Off }),
            owner: Some(format!("project-{}", i % 7)),
            ..Node::default()
        };
        api.service.db.create_node(&node).unwrap();
    }
}
