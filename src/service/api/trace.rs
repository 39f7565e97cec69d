//! `GET /ferric/trace/{node}`: ferric's own diagnostic view of a node's recorded deploy messages.

use super::error::ApiResult;
use super::responses::ok;
use super::{ApiState, Ctx};
use axum::extract::{Path, State};
use ferric_types::models::NodeId;
use ferric_types::trace::TraceEvent;
use serde_json::{Value, json};

/// A node's messages: this process's, with those of the conductor that owns the node when that
/// is another process (`--role api`). A conductor that cannot answer leaves this process's alone.
pub async fn node_events(state: &ApiState, node: NodeId) -> Vec<TraceEvent> {
    let remote = match state.rpc.node_trace(node, state.trace.id()).await {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::debug!(node = %node, error = %e, "no trace from the node's conductor");
            None
        }
    };
    state.trace.node_events_with(node, remote)
}

/// `GET /ferric/trace/{node}`: the messages recorded for a node's deploys, in order, as
/// `{"events": [{at_ms, from, to, label}], "mermaid": "..."}` (ferric's own diagnostic endpoint).
pub async fn trace(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = super::nodes::load(&state, &ctx, &ident)?;
    let events = node_events(&state, n.uuid).await;
    let list: Vec<Value> = events
        .iter()
        .map(|e| json!({"at_ms": e.at_ms, "from": e.from.as_str(), "to": e.to.as_str(), "label": e.label}))
        .collect();
    ok(&json!({"node": n.uuid.to_string(), "events": list, "mermaid": ferric_types::trace::mermaid(&events)}))
}
