//! The agent's REST API (ironic-python-agent's, on :9999) as an axum `Router`, so it is served on
//! a socket in a ramdisk and called in-process (`Router::oneshot`) in simulation.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::{Value, json};

use super::commands::{Commands, Refusal};
use super::context::AgentContext;
use ferric_types::agent::{AgentStatus, CommandList, Fault};

/// Largest command body (a 64 MiB config drive, base64-encoded, fits).
pub const MAX_COMMAND_BODY: usize = 96 << 20;

/// What the REST layer serves.
pub struct AgentCore {
    /// Shared state.
    pub ctx: Arc<AgentContext>,
    /// Command table.
    pub commands: Commands,
    /// The token from lookup; `None` refuses every command.
    pub token: RwLock<Option<String>>,
    /// Unix time the agent started (for `/v1/status`).
    pub started_at: f64,
    /// Version reported.
    pub version: String,
}

impl AgentCore {
    /// Constant-time token check; a missing token on either side fails.
    pub fn validate_token(&self, given: Option<&str>) -> bool {
        let expected = self.token.read();
        match (given, expected.as_deref()) {
            (Some(g), Some(e)) if !g.is_empty() => {
                let (g, e) = (g.as_bytes(), e.as_bytes());
                g.len() == e.len() && g.iter().zip(e).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            }
            _ => false,
        }
    }
}

fn fault(status: StatusCode, msg: impl Into<String>) -> Response {
    let code = if status.is_server_error() { "Server" } else { "Client" };
    (status, Json(Fault { faultcode: code.into(), faultstring: msg.into() })).into_response()
}

fn refusal(r: Refusal) -> Response {
    fault(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST), r.faultstring)
}

#[derive(Deserialize)]
struct CmdQuery {
    agent_token: Option<String>,
    wait: Option<String>,
}

impl CmdQuery {
    fn wait(&self) -> bool {
        self.wait.as_deref().is_some_and(|w| w.eq_ignore_ascii_case("true"))
    }
}

/// The agent a request is for, from the request's extensions: [`router`] puts its one agent
/// there; a simulation puts each machine's there in front of one shared [`routes`].
type St = axum::Extension<Arc<AgentCore>>;

fn check_token(core: &AgentCore, q: &CmdQuery, uri: &Uri) -> Result<(), Box<Response>> {
    if core.validate_token(q.agent_token.as_deref()) {
        return Ok(());
    }
    // Never log the token itself.
    tracing::warn!(
        path = %uri.path(),
        token_present = q.agent_token.is_some(),
        "refused agent API call: agent token missing or invalid"
    );
    Err(Box::new(fault(StatusCode::UNAUTHORIZED, "401 Unauthorized: Token invalid.")))
}

/// Builds the router of one agent.
pub fn router(core: Arc<AgentCore>) -> Router {
    routes().layer(axum::Extension(core))
}

/// The routes without their agent: each request must carry an `Arc<AgentCore>` extension. One
/// of these serves a whole simulated fleet (a router of its own per agent was 12.5 KB, held by
/// every machine whose ramdisk runs).
pub fn routes() -> Router {
    let mut r = Router::new().route("/", get(root));
    for prefix in ["/v1", ""] {
        r = r
            .route(&format!("{prefix}/status"), get(status))
            .route(&format!("{prefix}/commands/"), get(list).post(run))
            .route(&format!("{prefix}/commands"), get(list).post(run))
            .route(&format!("{prefix}/commands/{{id}}"), get(get_one));
    }
    r.route("/v1/", get(v1))
        .route("/v1", get(v1))
        .fallback(|| async {
            fault(StatusCode::NOT_FOUND, "404 Not Found: The requested URL was not found on the server.")
        })
        .layer(DefaultBodyLimit::max(MAX_COMMAND_BODY))
}

async fn root() -> Json<Value> {
    let v1 = json!({"id": "v1", "links": [{"href": "/v1/", "rel": "self"}]});
    Json(json!({
        "name": "OpenStack Ironic Python Agent API",
        "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
        "versions": [v1.clone()],
        "default_version": v1,
    }))
}

async fn v1() -> Json<Value> {
    Json(json!({
        "id": "v1",
        "commands": [{"href": "/v1/commands", "rel": "self"}],
        "status": [{"href": "/v1/status", "rel": "self"}],
        "media_types": [{"base": "application/json", "type": "application/vnd.openstack.ironic-python-agent.v1+json"}],
    }))
}

async fn status(axum::Extension(core): St) -> Json<AgentStatus> {
    Json(AgentStatus { started_at: core.started_at, version: core.version.clone() })
}

async fn list(axum::Extension(core): St, Query(q): Query<CmdQuery>, uri: Uri) -> Response {
    if let Err(r) = check_token(&core, &q, &uri) {
        return *r;
    }
    Json(CommandList { commands: core.commands.list() }).into_response()
}

async fn get_one(axum::Extension(core): St, Path(id): Path<String>, Query(q): Query<CmdQuery>, uri: Uri) -> Response {
    if let Err(r) = check_token(&core, &q, &uri) {
        return *r;
    }
    let Some(entry) = core.commands.get(&id) else {
        return fault(StatusCode::NOT_FOUND, format!("Not found: Command Result with id {id} not found."));
    };
    let result = if q.wait() { entry.wait(core.ctx.settings.max_wait).await } else { entry.snapshot() };
    Json(result).into_response()
}

async fn run(axum::Extension(core): St, Query(q): Query<CmdQuery>, uri: Uri, body: Bytes) -> Response {
    if let Err(r) = check_token(&core, &q, &uri) {
        return *r;
    }
    let parsed: Option<(String, serde_json::Map<String, Value>)> =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| match (v.get("name"), v.get("params")) {
            (Some(Value::String(n)), Some(Value::Object(p))) => Some((n.clone(), p.clone())),
            _ => None,
        });
    let Some((name, params)) = parsed else {
        return fault(StatusCode::BAD_REQUEST, "400 Bad Request: Missing or invalid name or params");
    };
    match core.commands.execute(&core.ctx, &name, params).await {
        Ok(entry) => {
            let result = if q.wait() { entry.wait(core.ctx.settings.max_wait).await } else { entry.snapshot() };
            Json(result).into_response()
        }
        Err(r) => refusal(r),
    }
}
