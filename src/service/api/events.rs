//! `POST /v1/events` (API 1.54): network events from Neutron, validated and logged.

use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::microversion::EVENTS;
use super::responses::no_content;
use super::{ApiState, Ctx};
use axum::Router;
use axum::routing::post;
use ferric_types::models::schema::{self, PATTERNS};
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/events", post(events))
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
    if !ctx.allows(EVENTS) {
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
