//! `/v1/events` (API 1.54) and `/v1/shards` (API 1.82).

use super::error::{ApiError, ApiResult};
use super::util::{JsonBody, no_content, ok};
use super::{ApiState, Ctx};
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use ferric_types::models::schema::{self, PATTERNS};
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/events", post(events)).route("/shards", get(shards)).route("/shards/{name}", get(shard_one))
}

/// Ironic's schema for network events (Neutron's port notifications).
fn events_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "event": {"type": "string",
                                  "enum": ["network.bind_port", "network.unbind_port", "network.delete_port"]},
                        "port_id": {"type": "string", "format": "uuid"},
                        "mac_address": {"type": "string", "format": "mac-address"},
                        "status": {"type": "string"},
                        "device_id": {"type": ["string", "null"], "format": "uuid"},
                        "binding:host_id": {"type": ["string", "null"], "format": "uuid"},
                        "binding:vnic_type": {"type": ["string", "null"]},
                    },
                    "required": ["event", "port_id", "mac_address", "status"],
                    "additionalProperties": false,
                },
            },
        },
        "required": ["events"],
        "additionalProperties": false,
    })
}

/// Accepts network events after validating them; Ironic only logs them too.
async fn events(ctx: Ctx, JsonBody(body): JsonBody<Value>) -> ApiResult {
    if !ctx.allows(54) {
        return Err(ApiError::not_found("The API is not supported for this version"));
    }
    if let Some(e) = schema::validate(&events_schema(), &body, PATTERNS) {
        let mut msg = format!("Schema error: {}", e.message);
        if let Some(c) = e.cause {
            msg.push_str(&format!(". Possible root cause: {c}"));
        }
        return Err(ApiError::bad_request(msg));
    }
    for e in body["events"].as_array().into_iter().flatten() {
        tracing::debug!(event = %e, "received external event");
    }
    no_content()
}

fn need_shards(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.allows(82) { Ok(()) } else { Err(ApiError::not_found("The API version does not allow shards")) }
}

async fn shards(State(state): State<ApiState>, ctx: Ctx) -> ApiResult {
    need_shards(&ctx)?;
    // Nodes without a shard count under the name "None", as Ironic's str(None) does.
    let list: Vec<Value> = state
        .db
        .shard_counts()?
        .into_iter()
        .map(|(name, count)| json!({"name": name.unwrap_or_else(|| "None".into()), "count": count}))
        .collect();
    ok(&json!({"shards": list}))
}

async fn shard_one(ctx: Ctx) -> ApiResult {
    need_shards(&ctx)?;
    Err(ApiError::not_found("The resource could not be found."))
}
