//! JSON-RPC 2.0 over HTTP: `POST /` with `{"jsonrpc": "2.0", "method": "<rpc contract method>",
//! "params": {<argument name>: <value>}, "id": N}`, answered with `result` or an `error` whose
//! `data` is the [`RpcError`] (its kind survives the hop, as in process). HTTP basic
//! authentication from credentials every process shares.
//!
//! Written here rather than with a JSON-RPC crate: the wire format is a dozen lines of serde, and
//! what matters is the mapping onto the rpc contract, which the macro below keeps in one list.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ferric_types::models::{
    Allocation, BootDevice, JsonMap, Node, NodeId, Port, PortId, PowerTarget, VolumeConnector, VolumeTarget,
};
use ferric_types::rpc::{
    ConductorApi, Heartbeat, Indicators, PassthruResult, ProvisionArgs, RpcError, ValidationResult,
};
use ferric_types::state_machine::Verb;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Shared RPC credentials (`[rpc] username/password`, the same on every process).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct RpcCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RpcCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcCredentials").field("username", &self.username).field("password", &"******").finish()
    }
}

impl RpcCredentials {
    fn header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    jsonrpc: String,
    method: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    id: Value,
}

/// Largest call accepted: a node with its configdrive (the API takes bodies up to 1 MiB) and
/// the node record it applies to.
const MAX_CALL: usize = 4 << 20;

/// JSON-RPC's "server error" code, with the [`RpcError`] in `data`.
const SERVER_ERROR: i64 = -32000;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

fn error_body(id: &Value, code: i64, message: &str, data: Option<&RpcError>) -> Value {
    let mut e = json!({"code": code, "message": message});
    if let Some(d) = data {
        e["data"] = json!(d);
    }
    json!({"jsonrpc": "2.0", "error": e, "id": id})
}

fn local_only() -> RpcError {
    RpcError::Internal("answered by each process from its own configuration, not over RPC".into())
}

/// Unknown method or bad params: a call the other side's contract does not have.
enum DispatchError {
    NoMethod,
    Params(String),
    Rpc(RpcError),
}

macro_rules! contract {
    ($( $name:ident ( $( $arg:ident : $ty:ty ),* ) -> $ret:ty ; )*) => {
        /// Runs one call on `target` (the conductor of this process).
        async fn dispatch(target: &dyn ConductorApi, method: &str, params: Value) -> Result<Value, DispatchError> {
            match method {
                $(stringify!($name) => {
                    #[derive(Deserialize)]
                    struct P { $( $arg: $ty ),* }
                    let p: P = serde_json::from_value(params).map_err(|e| DispatchError::Params(e.to_string()))?;
                    let out: $ret = target.$name($( p.$arg ),*).await.map_err(DispatchError::Rpc)?;
                    serde_json::to_value(out).map_err(|e| DispatchError::Rpc(RpcError::Internal(e.to_string())))
                })*
                _ => Err(DispatchError::NoMethod),
            }
        }

        #[async_trait::async_trait]
        impl ConductorApi for RpcClient {
            $(
                async fn $name(&self, $( $arg: $ty ),*) -> Result<$ret, RpcError> {
                    #[derive(Serialize)]
                    struct P<'a> { $( $arg: &'a $ty ),* }
                    let v = self.call(stringify!($name), serde_json::to_value(P { $( $arg: &$arg ),* })
                        .map_err(|e| RpcError::Internal(e.to_string()))?).await?;
                    serde_json::from_value(v).map_err(|e| RpcError::Internal(format!("bad RPC answer: {e}")))
                }
            )*

            // What every process answers from its own configuration (the router asks its own
            // conductor): a remote conductor is never asked these.
            fn conductor_for(&self, _node: &Node) -> Option<String> {
                Some(self.host.clone())
            }
            fn driver_properties(&self, _driver: &str) -> Result<BTreeMap<String, String>, RpcError> {
                Err(local_only())
            }
            fn hardware_types(&self) -> Vec<String> {
                Vec::new()
            }
            fn registry_view(&self) -> BTreeMap<(String, String), (Option<String>, Vec<String>)> {
                BTreeMap::new()
            }
            fn raid_logical_disk_properties(&self, _driver: &str) -> Result<BTreeMap<String, String>, RpcError> {
                Err(local_only())
            }
            fn driver_vendor_methods(&self, _driver: &str) -> Result<BTreeMap<String, Value>, RpcError> {
                Err(local_only())
            }
            fn driver_vendor_passthru(&self, _driver: &str, _method: &str, _http: &str) -> Result<PassthruResult, RpcError> {
                Err(local_only())
            }
            fn inspection_lookup(&self, _macs: Vec<String>, _bmc: Vec<String>, _node: Option<NodeId>) -> Result<Node, RpcError> {
                Err(local_only())
            }
        }
    };
}

contract! {
    create_node(node: Node) -> Node;
    update_node(base: Node, updated: Node, reset_interfaces: bool) -> Node;
    destroy_node(node: NodeId) -> ();
    node_trace(node: NodeId, asker: u64) -> ferric_types::trace::NodeTrace;
    change_power_state(node: NodeId, target: PowerTarget, timeout: Option<u64>) -> ();
    do_provisioning_action(node: NodeId, verb: Verb, args: ProvisionArgs) -> ();
    set_boot_device(node: NodeId, device: BootDevice, persistent: bool) -> ();
    get_boot_device(node: NodeId) -> (Option<BootDevice>, Option<bool>);
    supported_boot_devices(node: NodeId) -> Vec<BootDevice>;
    validate(node: NodeId) -> BTreeMap<String, ValidationResult>;
    set_maintenance(node: NodeId, on: bool, reason: Option<String>) -> ();
    vif_list(node: NodeId) -> Vec<String>;
    vif_attach(node: NodeId, vif: String, port: Option<String>) -> ();
    vif_detach(node: NodeId, vif: String) -> ();
    set_traits(node: NodeId, traits: Vec<String>) -> ();
    create_port(port: Port) -> Port;
    update_port(port: Port) -> Port;
    destroy_port(port: PortId) -> ();
    agent_lookup(macs: Vec<String>, node: Option<NodeId>) -> (Node, String);
    heartbeat(node: NodeId, hb: Heartbeat) -> ();
    set_target_raid_config(node: NodeId, config: JsonMap) -> ();
    inject_nmi(node: NodeId) -> ();
    get_supported_indicators(node: NodeId) -> Indicators;
    set_indicator_state(node: NodeId, component: String, indicator: String, state: String) -> ();
    get_indicator_state(node: NodeId, component: String, indicator: String) -> String;
    change_boot_mode(node: NodeId, mode: String) -> ();
    change_secure_boot(node: NodeId, enabled: bool) -> ();
    set_console_mode(node: NodeId, enabled: bool) -> ();
    get_console_information(node: NodeId) -> Option<Value>;
    update_volume_connector(v: VolumeConnector) -> VolumeConnector;
    destroy_volume_connector(v: VolumeConnector) -> ();
    update_volume_target(v: VolumeTarget) -> VolumeTarget;
    destroy_volume_target(v: VolumeTarget) -> ();
    create_allocation(a: Allocation, backfill: Option<NodeId>) -> Allocation;
    destroy_allocation(a: Allocation) -> ();
    node_vendor_methods(node: NodeId) -> BTreeMap<String, Value>;
    vendor_passthru(node: NodeId, method: String, http: String, args: Value) -> PassthruResult;
    node_with_token(node: NodeId) -> (Node, String);
    continue_inspection(node: NodeId, inventory: Value, plugin_data: Value) -> ();
}

#[derive(Clone)]
struct ServerState {
    target: Arc<dyn ConductorApi>,
    /// The Authorization header callers must send, built once.
    expected: Arc<str>,
}

/// The conductor's RPC endpoint: `POST /` answers calls on `target` for callers that present
/// `credentials`.
pub fn serve_rpc(target: Arc<dyn ConductorApi>, credentials: RpcCredentials) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::post(handle))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_CALL))
        .with_state(ServerState { target, expected: credentials.header().into() })
}

async fn handle(State(s): State<ServerState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
    if !ferric_disk::iscsi::text::constant_time_eq(given, s.expected.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"ferric-rpc\"")],
            axum::Json(error_body(&Value::Null, INVALID_REQUEST, "Authentication required", None)),
        )
            .into_response();
    }
    let req: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return axum::Json(error_body(&Value::Null, -32700, &format!("Parse error: {e}"), None)).into_response();
        }
    };
    if req.jsonrpc != "2.0" {
        return axum::Json(error_body(&req.id, INVALID_REQUEST, "jsonrpc must be \"2.0\"", None)).into_response();
    }
    let out = match dispatch(s.target.as_ref(), &req.method, req.params).await {
        Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": req.id}),
        Err(DispatchError::NoMethod) => {
            error_body(&req.id, METHOD_NOT_FOUND, &format!("Method {} not found", req.method), None)
        }
        Err(DispatchError::Params(m)) => error_body(&req.id, INVALID_PARAMS, &format!("Invalid params: {m}"), None),
        Err(DispatchError::Rpc(e)) => error_body(&req.id, SERVER_ERROR, &e.to_string(), Some(&e)),
    };
    axum::Json(out).into_response()
}

/// A client of one conductor's endpoint.
#[derive(Clone)]
pub struct RpcClient {
    url: String,
    host: String,
    http: reqwest::Client,
    auth: String,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl RpcClient {
    /// A client of the conductor `host` answering at `url`; every call is bounded by `timeout`.
    /// `ca_pem`: CA certificates (PEM) an `https://` conductor's certificate may chain to, beside
    /// the system's roots.
    pub fn new(
        host: &str,
        url: &str,
        credentials: &RpcCredentials,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<RpcClient, RpcError> {
        let mut b = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RpcError::Internal(format!("RPC CA file: {e}")))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| RpcError::Internal(format!("RPC client: {e}")))?;
        Ok(RpcClient {
            url: url.to_string(),
            host: host.to_string(),
            http,
            auth: credentials.header(),
            next_id: Default::default(),
        })
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        let unreachable = |e: String| {
            tracing::warn!(conductor = %self.host, %method, error = %e, "RPC failed");
            RpcError::Unavailable(format!("Conductor {} could not be reached: {e}", self.host))
        };
        let resp = self
            .http
            .post(&self.url)
            .header(header::AUTHORIZATION, &self.auth)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(RpcError::Internal(format!(
                "Conductor {} refused this process's RPC credentials ([rpc] username and password must match).",
                self.host
            )));
        }
        let mut v: Value = resp.json().await.map_err(|e| unreachable(e.to_string()))?;
        if let Some(e) = v.get("error") {
            if let Some(kind) = e.get("data").and_then(|d| serde_json::from_value::<RpcError>(d.clone()).ok()) {
                return Err(kind);
            }
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("unknown RPC error");
            return Err(RpcError::Internal(format!("Conductor {}: {msg}", self.host)));
        }
        Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }
}
