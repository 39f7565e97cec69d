//! `GET /ferric/trace/{node}`: ferric's own diagnostic view of a node's recorded deploy messages.

use super::error::ApiResult;
use super::responses::ok;
use super::{ApiState, Ctx};
use axum::extract::{Path, State};
use serde_json::{Value, json};

/// `GET /ferric/trace/{node}`: the messages recorded for a node's deploys, in order, as
/// `{"events": [{at_ms, from, to, label}], "mermaid": "..."}` (ferric's own diagnostic endpoint).
pub async fn trace(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = super::nodes::load(&state, &ctx, &ident)?;
    let events = state.trace.node_events(n.uuid);
    let list: Vec<Value> = events
        .iter()
        .map(|e| json!({"at_ms": e.at_ms, "from": e.from.as_str(), "to": e.to.as_str(), "label": e.label}))
        .collect();
    ok(&json!({"node": n.uuid.to_string(), "events": list, "mermaid": ferric_types::trace::mermaid(&events)}))
}
