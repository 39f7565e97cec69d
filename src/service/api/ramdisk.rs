//! The ramdisk endpoints: `/v1/lookup` and `/v1/heartbeat/{node}` (ironic-python-agent's calls).

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Query};
use super::microversion::{
    AGENT_VERSION_HEARTBEAT, CONTINUE_INSPECTION, HEARTBEAT_STATUS, HEARTBEAT_VERIFY_CA, INITIAL_VERSION,
    RAMDISK_ENDPOINTS,
};
use super::nodes::view;
use super::render;
use super::responses::{accepted, ok};
use super::{ApiState, Ctx};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use ferric_types::models::NodeId;
use ferric_types::rpc::Heartbeat;
use ferric_types::trace::{Actor, seed};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/lookup", get(lookup))
        .route("/heartbeat/{node}", post(heartbeat))
        .route("/continue_inspection", post(continue_inspection))
}

async fn lookup(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    if !ctx.allows(RAMDISK_ENDPOINTS) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let macs: Vec<String> = q
        .get("addresses")
        .map(|a| {
            a.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| s.parse::<ferric_types::models::MacAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    let node = match q.get("node_uuid") {
        Some(u) => {
            Some(u.parse::<NodeId>().map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {u}.")))?)
        }
        None => None,
    };
    if macs.is_empty() && node.is_none() {
        return Err(ApiError::bad_request("At least one of 'addresses' and 'node_uuid' parameters is required"));
    }
    let (n, token) = state.rpc.agent_lookup(macs, node).await.map_err(|e| match e {
        ferric_types::rpc::RpcError::NotFound(_) => ApiError::not_found("The resource could not be found."),
        other => other.into(),
    })?;
    // A lookup is the first sign that the ramdisk runs.
    state.trace.record(n.uuid, Actor::Node, Actor::Node, seed::RUNS_RAMDISK);
    state.trace.record(n.uuid, Actor::Node, Actor::Api, seed::LOOKUP);
    state.trace.record(n.uuid, Actor::Api, Actor::Node, seed::PASS_UUID);
    ok(&lookup_doc(&ctx, &n, &token, &state))
}

/// The lookup answer an agent gets: a few node fields and its configuration (with the token).
fn lookup_doc(ctx: &Ctx, n: &ferric_types::models::Node, token: &str, state: &ApiState) -> Value {
    // Only the fields the agent gets are rendered (`links` always is), not all ~70 of the node's
    // (agents look themselves up at every ramdisk boot).
    const FIELDS: [&str; 4] = ["uuid", "properties", "instance_info", "driver_internal_info"];
    let full = render::node(n, ctx, Some(&FIELDS.map(String::from)));
    let mut node_doc = Map::new();
    for f in FIELDS.into_iter().chain(["links"]) {
        node_doc.insert(f.into(), full.get(f).cloned().unwrap_or(Value::Null));
    }
    json!({
        "node": node_doc,
        "config": {
            "metrics": {"backend": "noop", "prepend_host": false, "prepend_uuid": false, "prepend_host_reverse": true, "global_prefix": null},
            "metrics_statsd": {"statsd_host": "localhost", "statsd_port": 8125},
            "heartbeat_timeout": state.agent_heartbeat_timeout,
            "agent_token": token,
            "agent_token_required": true,
            "agent_md5_checksum_enable": false,
            "disable_deep_image_inspection": false,
            "permitted_image_formats": ["raw", "qcow2"],
        }
    })
}

/// The minimal inventory Ironic accepts from an inspection ramdisk.
fn inspection_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "inventory": {
                "type": "object",
                "properties": {
                    "bmc_address": {"type": ["string", "null"]},
                    "bmc_v6address": {"type": ["string", "null"]},
                    "interfaces": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"mac_address": {"type": "string"}},
                            "required": ["mac_address"],
                        },
                        "minItems": 1,
                    },
                },
                "required": ["interfaces"],
            },
        },
        "required": ["inventory"],
    })
}

/// `POST /v1/continue_inspection`: an inspection ramdisk's data. The node (found by MAC or the
/// UUID given, and in `inspect wait`) gets its inventory stored and leaves `inspect wait`; from
/// 1.84 the answer is a lookup (with the agent token, issued once), at 1.1 Inspector's
/// `{"uuid": ...}`.
async fn continue_inspection(
    State(state): State<ApiState>,
    ctx: Ctx,
    q: Query,
    JsonBody(mut data): JsonBody<Value>,
) -> ApiResult {
    let node_uuid = match q.get("node_uuid") {
        Some(u) => {
            Some(u.parse::<NodeId>().map_err(|_| ApiError::bad_request(format!("Expected UUID for node_uuid: {u}")))?)
        }
        None => None,
    };
    let new_endpoint = ctx.allows(CONTINUE_INSPECTION);
    if !new_endpoint && (ctx.version != INITIAL_VERSION || node_uuid.is_some()) {
        return Err(ApiError::not_found("API version 1.84 or newer is required"));
    }
    ferric_types::models::schema::validate_arg(
        "data",
        &inspection_schema(),
        &data,
        ferric_types::models::schema::PATTERNS,
    )
    .map_err(ApiError::bad_request)?;
    let inventory = data.as_object_mut().and_then(|m| m.remove("inventory")).unwrap_or(Value::Null);
    let macs: Vec<String> = inventory["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["mac_address"].as_str())
        .filter_map(|m| m.parse::<ferric_types::models::MacAddr>().ok())
        .map(|m| m.to_string())
        .collect();
    let bmc: Vec<String> = ["bmc_address", "bmc_v6address"]
        .iter()
        .filter_map(|k| inventory[*k].as_str())
        .filter(|s| !s.is_empty() && *s != "0.0.0.0" && *s != "::/0")
        .map(str::to_string)
        .collect();
    if macs.is_empty() && bmc.is_empty() && node_uuid.is_none() {
        return Err(ApiError::bad_request("No lookup information provided"));
    }
    let n = state
        .rpc
        .inspection_lookup(macs, bmc, node_uuid)
        .map_err(|_| ApiError::not_found("The resource could not be found."))?;
    let token = if new_endpoint { Some(state.rpc.node_with_token(n.uuid).await?) } else { None };
    state.rpc.continue_inspection(n.uuid, inventory, data).await?;
    let body = match token {
        Some((node, token)) => lookup_doc(&ctx, &node, &token, &state),
        None => json!({"uuid": n.uuid.to_string()}),
    };
    Ok(super::responses::json_response(axum::http::StatusCode::ACCEPTED, &body))
}

#[derive(serde::Deserialize)]
struct HeartbeatBody {
    callback_url: String,
    agent_token: Option<String>,
    agent_version: Option<String>,
    agent_status: Option<String>,
    agent_status_message: Option<String>,
    agent_verify_ca: Option<String>,
}

async fn heartbeat(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody<HeartbeatBody>,
) -> ApiResult {
    if !ctx.allows(RAMDISK_ENDPOINTS) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    if body.agent_version.is_some() && !ctx.allows(AGENT_VERSION_HEARTBEAT) {
        return Err(ApiError::bad_request("Field \"agent_version\" not recognised"));
    }
    if (body.agent_status.is_some() || body.agent_status_message.is_some()) && !ctx.allows(HEARTBEAT_STATUS) {
        return Err(ApiError::bad_request("Fields \"agent_status\" and \"agent_status_message\" not recognised."));
    }
    if body.agent_verify_ca.is_some() && !ctx.allows(HEARTBEAT_VERIFY_CA) {
        return Err(ApiError::bad_request("Field \"agent_verify_ca\" not recognised in this version"));
    }
    let url = &body.callback_url;
    if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::bad_request("An issue with the supplied \"callback_url\" has been detected."));
    }
    if let Some(s) = &body.agent_status {
        if !matches!(s.as_str(), "start" | "end" | "error") {
            return Err(ApiError::bad_request("Agent status is invalid. Valid states are start,end,error."));
        }
    }
    let uuid = view(&state, &ctx, &ident, |n| n.uuid)?;
    // The conductor checks the token and the callback URL (and records the first heartbeat).
    let hb = Heartbeat {
        token: body.agent_token,
        callback_url: body.callback_url,
        agent_version: body.agent_version,
        agent_status: body.agent_status,
        agent_status_message: body.agent_status_message,
    };
    state.rpc.heartbeat(uuid, hb).await?;
    accepted(format!("{}/v1/heartbeat/{}", ctx.base, uuid))
}
