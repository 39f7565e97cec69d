//! `/v1/allocations` and `/v1/nodes/{id}/allocation` (API 1.52; update 1.57, backfill 1.58,
//! owner 1.60).

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Query};
use super::microversion::{ALLOCATION_BACKFILL, ALLOCATION_OWNER, ALLOCATION_UPDATE, ALLOCATIONS};
use super::nodes::{apply_patch, check_name, load};
use super::paging;
use super::render::fmt_time;
use super::responses::{self, links, no_content, ok};
use super::{ApiState, Ctx};
use crate::db::AllocationFilter;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use ferric_types::models::schema::{self, PATTERNS};
use ferric_types::models::{Allocation, AllocationId};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/allocations", get(list).post(create))
        .route("/allocations/{id}", get(show).patch(update).delete(destroy))
        .route("/nodes/{node}/allocation", get(node_show).delete(node_destroy))
}

const NOT_ALLOWED: &str = "The API version does not allow allocations";

fn need_get(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.allows(ALLOCATIONS) { Ok(()) } else { Err(ApiError::not_found(NOT_ALLOWED)) }
}

fn need_write(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.allows(ALLOCATIONS) { Ok(()) } else { Err(ApiError::method_not_allowed(NOT_ALLOWED)) }
}

/// Below 1.52 `/nodes/{id}/allocation` does not route.
fn need_node_route(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.allows(ALLOCATIONS) {
        Ok(())
    } else {
        Err(ApiError::routing(StatusCode::NOT_FOUND, "The resource could not be found."))
    }
}

fn doc(ctx: &Ctx, a: &Allocation) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(a.uuid.to_string()));
    m.insert("created_at".into(), json!(fmt_time(&a.created_at)));
    m.insert("updated_at".into(), a.updated_at.as_ref().map(|t| json!(fmt_time(t))).unwrap_or(Value::Null));
    m.insert("candidate_nodes".into(), json!(a.candidate_nodes));
    m.insert("extra".into(), Value::Object(a.extra.clone()));
    m.insert("last_error".into(), json!(a.last_error));
    m.insert("name".into(), json!(a.name));
    if ctx.allows(ALLOCATION_OWNER) {
        m.insert("owner".into(), json!(a.owner));
    }
    m.insert("resource_class".into(), json!(a.resource_class));
    m.insert("state".into(), json!(a.state));
    m.insert("traits".into(), json!(a.traits));
    m.insert("links".into(), links(&ctx.base, &format!("allocations/{}", a.uuid)));
    m.insert("node_uuid".into(), json!(a.node_uuid.map(|n| n.to_string())));
    Value::Object(m)
}

/// `fields`, with `owner` refused below 1.60.
fn fields(ctx: &Ctx, q: &Query) -> Result<Option<Vec<String>>, ApiError> {
    let f = paging::field_list(q);
    if f.as_ref().is_some_and(|f| f.iter().any(|x| x == "owner")) && !ctx.allows(ALLOCATION_OWNER) {
        return Err(ApiError::not_acceptable());
    }
    Ok(f)
}

/// By UUID or name (Ironic's `get_rpc_allocation_with_suffix`).
fn load_allocation(state: &ApiState, ident: &str) -> Result<Allocation, ApiError> {
    if ident.parse::<AllocationId>().is_err() && check_name(ident).is_err() {
        return Err(ApiError::bad_request(format!("Expected a logical name or UUID but received {ident}.")));
    }
    Ok(state.db.get_allocation(ident)?)
}

async fn list(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    need_get(&ctx)?;
    let fields = fields(&ctx, &q)?;
    if q.get("owner").is_some() && !ctx.allows(ALLOCATION_OWNER) {
        return Err(ApiError::not_acceptable());
    }
    let page = paging::page(
        &q,
        &["id", "uuid", "name", "node_uuid", "state", "resource_class", "owner", "created_at", "updated_at"],
        &["extra", "candidate_nodes", "traits"],
    )?;
    let node = match q.get("node") {
        Some(ident) => Some(load(&state, &ctx, ident).map_err(|e| ApiError::bad_request(e.message))?.uuid),
        None => None,
    };
    let filter = AllocationFilter {
        node,
        resource_class: q.get("resource_class").map(str::to_string),
        state: q.get("state").map(str::to_string),
        owner: q.get("owner").map(str::to_string),
    };
    let rows = state.db.list_allocations(&filter, &page)?;
    let mut items = Vec::with_capacity(rows.len());
    for a in &rows {
        let mut d = doc(&ctx, a);
        paging::sanitize(&mut d, fields.as_deref())?;
        items.push(d);
    }
    let markers: Vec<String> = rows.iter().map(|a| a.uuid.to_string()).collect();
    let mut args = vec![("sort_key", page.sort_key.clone()), ("sort_dir", q.get("sort_dir").unwrap_or("asc").into())];
    if let Some(f) = &fields {
        args.push(("fields", f.join(",")));
    }
    ok(&paging::collection(&ctx, "allocations", items, &markers, page.limit, "allocations", &args))
}

async fn show(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>, q: Query) -> ApiResult {
    need_get(&ctx)?;
    let a = load_allocation(&state, &id)?;
    let fields = fields(&ctx, &q)?;
    let mut d = doc(&ctx, &a);
    paging::sanitize(&mut d, fields.as_deref())?;
    ok(&d)
}

fn create_schema(ctx: &Ctx) -> Value {
    let mut s = json!({
        "type": "object",
        "properties": {
            "candidate_nodes": {"type": ["array", "null"], "items": {"type": "string"}},
            "extra": {"type": ["object", "null"]},
            "name": {"type": ["string", "null"]},
            "owner": {"type": ["string", "null"]},
            "resource_class": {"type": ["string", "null"], "maxLength": 80},
            "traits": {"type": ["array", "null"], "items": trait_schema()},
            "uuid": {"type": ["string", "null"]},
        },
        "additionalProperties": false,
    });
    if ctx.allows(ALLOCATION_BACKFILL) {
        s["properties"]["node"] = json!({"type": ["string", "null"]});
    }
    s
}

/// Ironic's TRAITS_SCHEMA: a custom trait, or a standard one (upper-case identifiers here).
pub fn trait_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 255,
           "anyOf": [{"pattern": "^CUSTOM_[A-Z0-9_]+$"}, {"pattern": "^[A-Z][A-Z0-9_]*$"}]})
}

fn standard_trait(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The patterns allocation and template schemas use.
pub const TRAIT_PATTERNS: &[schema::Pattern] = &[
    ("^CUSTOM_[A-Z0-9_]+$", schema::custom_trait),
    ("^[A-Z][A-Z0-9_]*$", standard_trait),
    ("^[0-9]+$", schema::digits),
];

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn opt_string(v: Option<&Value>) -> Option<String> {
    v.and_then(|v| v.as_str()).map(str::to_string)
}

async fn create(State(state): State<ApiState>, ctx: Ctx, JsonBody(body): JsonBody<Value>) -> ApiResult {
    need_write(&ctx)?;
    if let Some(e) = schema::validate(&create_schema(&ctx), &body, TRAIT_PATTERNS) {
        let mut msg = format!("Schema error: {}", e.message);
        if let Some(c) = e.cause {
            msg.push_str(&format!(". Possible root cause: {c}"));
        }
        return Err(ApiError::bad_request(msg));
    }
    let name = opt_string(body.get("name"));
    if let Some(n) = name.as_deref().filter(|n| !n.is_empty()) {
        if check_name(n).is_err() {
            return Err(ApiError::bad_request(format!("Cannot create allocation with invalid name '{n}'")));
        }
    }
    let node = match opt_string(body.get("node")).filter(|n| !n.is_empty()) {
        Some(ident) => Some(load(&state, &ctx, &ident).map_err(|e| ApiError::bad_request(e.message))?),
        None => None,
    };
    let mut resource_class = opt_string(body.get("resource_class")).filter(|r| !r.is_empty());
    if resource_class.is_none() {
        match &node {
            Some(n) => resource_class = n.resource_class.clone(),
            None => return Err(ApiError::bad_request("The resource_class field is mandatory when not backfilling")),
        }
    }
    // Candidates by UUID or name, converted to UUIDs in the order given.
    let idents = strings(body.get("candidate_nodes"));
    let mut candidates = Vec::new();
    let mut missing = Vec::new();
    for ident in &idents {
        let found = if ident.parse::<uuid::Uuid>().is_ok() || check_name(ident).is_ok() {
            state.db.get_node(ident).ok()
        } else {
            None
        };
        match found {
            Some(n) => candidates.push(n.uuid.to_string()),
            None if !missing.contains(ident) => missing.push(ident.clone()),
            None => {}
        }
    }
    if !missing.is_empty() {
        missing.sort();
        return Err(ApiError::bad_request(format!("Nodes cannot be found: {}", missing.join(", "))));
    }
    let uuid = match opt_string(body.get("uuid")).filter(|u| !u.is_empty()) {
        Some(u) => u.parse().map_err(|_| ApiError::bad_request(format!("Expected UUID for uuid: {u}")))?,
        None => match node.as_ref().and_then(|n| n.instance_uuid.as_deref()).and_then(|u| u.parse().ok()) {
            Some(u) => u,
            None => AllocationId(state.clock.new_uuid()),
        },
    };
    let a = Allocation {
        uuid,
        name: name.filter(|n| !n.is_empty()),
        node_uuid: None,
        state: String::new(),
        last_error: None,
        resource_class,
        traits: strings(body.get("traits")),
        candidate_nodes: candidates,
        extra: body.get("extra").and_then(|e| e.as_object()).cloned().unwrap_or_default(),
        owner: opt_string(body.get("owner")),
        created_at: state.clock.now(),
        updated_at: None,
    };
    let created = state.rpc.create_allocation(a, node.map(|n| n.uuid)).await?;
    responses::created(format!("{}/v1/allocations/{}", ctx.base, created.uuid), &doc(&ctx, &created))
}

async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult {
    if !ctx.allows(ALLOCATION_UPDATE) {
        return Err(ApiError::method_not_allowed("The API version does not allow updating allocations"));
    }
    let a = load_allocation(&state, &id)?;
    let ops = patch.as_array().ok_or_else(|| ApiError::bad_request("Invalid patch: a JSON array was expected."))?;
    for op in ops {
        let path = op.get("path").and_then(|p| p.as_str()).unwrap_or_default();
        let root = path.split('/').nth(1).unwrap_or_default();
        if !matches!(root, "name" | "extra") {
            return Err(ApiError::bad_request(format!(
                "Cannot patch {path}. Only the following can be updated: name, extra"
            )));
        }
        if path == "/name" && op.get("op").and_then(|o| o.as_str()) != Some("remove") {
            if let Some(n) = op.get("value").and_then(|v| v.as_str()).filter(|n| !n.is_empty()) {
                if check_name(n).is_err() {
                    return Err(ApiError::bad_request(format!("Cannot update allocation with invalid name '{n}'")));
                }
            }
        }
    }
    let mut d = json!({"name": a.name, "extra": a.extra});
    let writable = |f: &str| matches!(f, "name" | "extra").then_some(ALLOCATION_UPDATE);
    apply_patch(&mut d, patch, &ctx, &[], &writable)?;
    let check = json!({"type": "object", "properties": {"name": {"type": ["string", "null"]},
                       "extra": {"type": ["object", "null"]}}});
    schema::validate_arg("patch", &check, &d, PATTERNS).map_err(ApiError::bad_request)?;
    let name = opt_string(d.get("name")).filter(|n| !n.is_empty());
    let extra = d.get("extra").and_then(|e| e.as_object()).cloned().unwrap_or_default();
    state.db.patch_allocation(a.uuid, name.as_deref(), &extra, state.clock.now())?;
    let saved = state.db.get_allocation(&a.uuid.to_string())?;
    ok(&doc(&ctx, &saved))
}

async fn destroy(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    need_write(&ctx)?;
    let a = load_allocation(&state, &id)?;
    state.rpc.destroy_allocation(a).await?;
    no_content()
}

fn node_allocation(state: &ApiState, ctx: &Ctx, ident: &str) -> Result<Allocation, ApiError> {
    let n = load(state, ctx, ident)?;
    let filter = AllocationFilter { node: Some(n.uuid), ..Default::default() };
    state
        .db
        .list_allocations(&filter, &Default::default())?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(format!("Allocation for node {ident} was not found")))
}

async fn node_show(State(state): State<ApiState>, ctx: Ctx, Path(node): Path<String>, q: Query) -> ApiResult {
    need_node_route(&ctx)?;
    let fields = fields(&ctx, &q)?;
    let a = node_allocation(&state, &ctx, &node)?;
    let mut d = doc(&ctx, &a);
    paging::sanitize(&mut d, fields.as_deref())?;
    ok(&d)
}

async fn node_destroy(State(state): State<ApiState>, ctx: Ctx, Path(node): Path<String>) -> ApiResult {
    need_node_route(&ctx)?;
    let a = node_allocation(&state, &ctx, &node)?;
    state.rpc.destroy_allocation(a).await?;
    no_content()
}
