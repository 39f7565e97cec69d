//! Node sub-resources that report what ferric recorded about a node: its history (API 1.78),
//! its inspection inventory (1.81) and its child nodes (1.83).

use super::error::{ApiError, ApiResult};
use super::extract::Query;
use super::microversion::{CHILD_NODES, NODE_HISTORY, NODE_INVENTORY};
use super::nodes::load;
use super::paging;
use super::render::fmt_time;
use super::responses::ok;
use super::{ApiState, Ctx, need_route};
use crate::db::{NodeFilter, NodeQuery};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use ferric_types::models::HistoryEvent;
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/nodes/{node}/history", get(history_list))
        .route("/nodes/{node}/history/{event}", get(history_get))
        .route("/nodes/{node}/inventory", get(inventory))
        .route("/nodes/{node}/children", get(children))
}

fn history_doc(ctx: &Ctx, node: &str, e: &HistoryEvent, detail: bool) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(e.uuid.to_string()));
    m.insert("created_at".into(), json!(fmt_time(&e.created_at)));
    m.insert("severity".into(), json!(e.severity));
    if detail {
        m.insert("event_type".into(), json!(e.event_type));
        m.insert("event".into(), json!(e.event));
        m.insert("conductor".into(), json!(e.conductor));
        m.insert("user".into(), json!(e.user));
    } else {
        let ev: String = if e.event.chars().count() > 255 {
            format!("{}...", e.event.chars().take(251).collect::<String>())
        } else {
            e.event.clone()
        };
        m.insert("event".into(), json!(ev));
    }
    m.insert(
        "links".into(),
        json!([{"href": format!("{}/v1/nodes/{node}/history/{}", ctx.base, e.uuid), "rel": "self"}]),
    );
    Value::Object(m)
}

async fn history_list(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>, q: Query) -> ApiResult {
    need_route(&ctx, NODE_HISTORY)?;
    let n = load(&state, &ctx, &ident)?;
    let detail = q.bool("detail")?.unwrap_or(false);
    let mut qq = q.0.clone();
    qq.entry("sort_key".into()).or_insert_with(|| "created_at".into());
    let page = paging::page(&Query(qq), &["id", "uuid", "created_at"], &[])?;
    let rows = state.db.list_history(n.uuid, &page)?;
    let node = n.uuid.to_string();
    let items: Vec<Value> = rows.iter().map(|e| history_doc(&ctx, &node, e, detail)).collect();
    let markers: Vec<String> = rows.iter().map(|e| e.uuid.to_string()).collect();
    let fields: &[&str] = if detail {
        &["uuid", "created_at", "severity", "event_type", "event", "conductor", "user"]
    } else {
        &["uuid", "created_at", "severity", "event"]
    };
    let args = vec![
        ("sort_key", page.sort_key.clone()),
        ("sort_dir", q.get("sort_dir").unwrap_or("asc").to_string()),
        ("fields", fields.join(",")),
    ];
    ok(&paging::collection(&ctx, "history", items, &markers, page.limit, &format!("nodes/{ident}/history"), &args))
}

async fn history_get(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path((ident, event)): Path<(String, String)>,
) -> ApiResult {
    need_route(&ctx, NODE_HISTORY)?;
    let n = load(&state, &ctx, &ident)?;
    let e = state.db.get_history(n.uuid, &event)?;
    ok(&history_doc(&ctx, &n.uuid.to_string(), &e, true))
}

async fn inventory(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    need_route(&ctx, NODE_INVENTORY)?;
    let n = load(&state, &ctx, &ident)?;
    let (inventory, plugin_data) = state
        .db
        .get_inventory(n.uuid)?
        .ok_or_else(|| ApiError::not_found(format!("Node inventory record for node {} could not be found.", n.uuid)))?;
    ok(&json!({"inventory": inventory, "plugin_data": plugin_data}))
}

async fn children(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    if !ctx.allows(CHILD_NODES) {
        return Err(ApiError::routing(StatusCode::NOT_FOUND, "The resource could not be found."));
    }
    let n = load(&state, &ctx, &ident)?;
    let q = NodeQuery {
        filter: NodeFilter {
            parent_node: Some(n.uuid.to_string()),
            include_children: Some(false),
            ..Default::default()
        },
        ..Default::default()
    };
    let kids: Vec<String> = state.db.list_node_summaries(&q)?.iter().map(|s| s.uuid.to_string()).collect();
    ok(&json!({
        "children": kids,
        "links": {"href": format!("{}/v1/nodes?parent_node={}", ctx.base, n.uuid), "rel": "children"},
    }))
}
