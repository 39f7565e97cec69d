//! `/v1/volume`, `/v1/volume/connectors`, `/v1/volume/targets` and their node sub-resources
//! (API 1.32).

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Query};
use super::microversion::VOLUME;
use super::nodes::{apply_patch, load};
use super::paging;
use super::render::{fmt_time, mask_secrets};
use super::responses::{created, links, no_content, ok};
use super::{ApiState, Ctx};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use ferric_types::models::schema::{self, PATTERNS};
use ferric_types::models::{JsonMap, NodeId, VolumeConnector, VolumeConnectorId, VolumeTarget, VolumeTargetId};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/volume", get(root))
        .route("/volume/connectors", get(connectors).post(connector_create))
        .route("/volume/connectors/{id}", get(connector_show).patch(connector_update).delete(connector_destroy))
        .route("/volume/targets", get(targets).post(target_create))
        .route("/volume/targets/{id}", get(target_show).patch(target_update).delete(target_destroy))
        .route("/nodes/{node}/volume", get(node_root))
        .route("/nodes/{node}/volume/connectors", get(node_connectors).post(node_post))
        .route("/nodes/{node}/volume/connectors/{id}", get(node_sub_one).patch(node_sub_one).delete(node_sub_one))
        .route("/nodes/{node}/volume/targets", get(node_targets).post(node_post))
        .route("/nodes/{node}/volume/targets/{id}", get(node_sub_one).patch(node_sub_one).delete(node_sub_one))
}

/// Below 1.32 the volume endpoints are 404 (Ironic's `api_version` default message).
fn need_volume(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.allows(VOLUME) { Ok(()) } else { Err(ApiError::not_found("The API is not supported for this version")) }
}

/// Below 1.32 the sub-resources do not route at all.
fn need_volume_route(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.allows(VOLUME) {
        Ok(())
    } else {
        Err(ApiError::routing(StatusCode::NOT_FOUND, "The resource could not be found."))
    }
}

fn link_pair(ctx: &Ctx, resource: &str, args: &str) -> Value {
    json!([
        {"href": format!("{}/v1/{resource}/{args}", ctx.base), "rel": "self"},
        {"href": format!("{}/{resource}/{args}", ctx.base), "rel": "bookmark"},
    ])
}

fn volume_doc(ctx: &Ctx, node: Option<&str>) -> Value {
    let (resource, args) = match node {
        Some(n) => ("nodes", format!("{n}/volume/")),
        None => ("volume", String::new()),
    };
    json!({
        "links": link_pair(ctx, resource, &args),
        "connectors": link_pair(ctx, resource, &format!("{args}connectors")),
        "targets": link_pair(ctx, resource, &format!("{args}targets")),
    })
}

async fn root(ctx: Ctx) -> ApiResult {
    need_volume(&ctx)?;
    ok(&volume_doc(&ctx, None))
}

async fn node_root(ctx: Ctx, Path(node): Path<String>) -> ApiResult {
    need_volume(&ctx)?;
    ok(&volume_doc(&ctx, Some(&node)))
}

async fn node_post(ctx: Ctx) -> ApiResult {
    need_volume_route(&ctx)?;
    Err(ApiError::bad_request("Malformed request URI."))
}

async fn node_sub_one(State(state): State<ApiState>, ctx: Ctx, Path((_node, id)): Path<(String, String)>) -> ApiResult {
    need_volume_route(&ctx)?;
    let u = id
        .parse::<uuid::Uuid>()
        .map_err(|_| ApiError::bad_request(format!("Expected UUID for connector_uuid: {id}")))?;
    if state.db.get_volume_connector(VolumeConnectorId(u)).is_err() {
        state.db.get_volume_target(VolumeTargetId(u))?;
    }
    Err(ApiError::bad_request("Malformed request URI."))
}

fn ts(t: &Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.as_ref().map(|t| Value::String(fmt_time(t))).unwrap_or(Value::Null)
}

fn connector_doc(ctx: &Ctx, v: &VolumeConnector) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(v.uuid.to_string()));
    m.insert("created_at".into(), json!(fmt_time(&v.created_at)));
    m.insert("updated_at".into(), ts(&v.updated_at));
    m.insert("connector_id".into(), json!(v.connector_id));
    m.insert("extra".into(), Value::Object(v.extra.clone()));
    m.insert("type".into(), json!(v.connector_type));
    m.insert("links".into(), links(&ctx.base, &format!("volume/connectors/{}", v.uuid)));
    m.insert("node_uuid".into(), json!(v.node_uuid.to_string()));
    Value::Object(m)
}

fn target_doc(ctx: &Ctx, v: &VolumeTarget) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(v.uuid.to_string()));
    m.insert("created_at".into(), json!(fmt_time(&v.created_at)));
    m.insert("updated_at".into(), ts(&v.updated_at));
    m.insert("boot_index".into(), json!(v.boot_index));
    m.insert("extra".into(), Value::Object(v.extra.clone()));
    m.insert("properties".into(), mask_secrets(&v.properties));
    m.insert("volume_id".into(), json!(v.volume_id));
    m.insert("volume_type".into(), json!(v.volume_type));
    m.insert("links".into(), links(&ctx.base, &format!("volume/targets/{}", v.uuid)));
    m.insert("node_uuid".into(), json!(v.node_uuid.to_string()));
    Value::Object(m)
}

/// Fields, detail and the node filter of a listing, with Ironic's checks.
struct ListArgs {
    fields: Option<Vec<String>>,
    detail: Option<bool>,
    node: Option<NodeId>,
    page: crate::db::Page,
}

fn list_args(
    state: &ApiState,
    ctx: &Ctx,
    q: &Query,
    parent: Option<&str>,
    defaults: &[&str],
    sortable: &[&str],
    unsortable: &[&str],
) -> Result<ListArgs, ApiError> {
    need_volume(ctx)?;
    let detail = q.bool("detail")?;
    let mut fields = paging::field_list(q);
    if fields.is_some() && detail == Some(true) {
        return Err(ApiError::bad_request("Can't fetch a subset of fields with 'detail' set"));
    }
    if fields.is_none() && detail != Some(true) {
        fields = Some(defaults.iter().map(|s| s.to_string()).collect());
    }
    let page = paging::page(q, sortable, unsortable)?;
    let node = match parent.or(q.get("node")) {
        Some(ident) => Some(load(state, ctx, ident)?.uuid),
        None => None,
    };
    Ok(ListArgs { fields, detail, node, page })
}

fn next_args(a: &ListArgs, q: &Query) -> Vec<(&'static str, String)> {
    let mut args =
        vec![("sort_key", a.page.sort_key.clone()), ("sort_dir", q.get("sort_dir").unwrap_or("asc").to_string())];
    if a.detail == Some(true) {
        args.push(("detail", "True".into()));
    }
    if let Some(f) = &a.fields {
        args.push(("fields", f.join(",")));
    }
    args
}

const CONNECTOR_DEFAULTS: &[&str] = &["uuid", "node_uuid", "type", "connector_id"];
const CONNECTOR_SORT: &[&str] = &["id", "uuid", "node_uuid", "type", "connector_id", "created_at", "updated_at"];

fn connector_list(state: &ApiState, ctx: &Ctx, q: &Query, parent: Option<&str>) -> ApiResult {
    let a = list_args(state, ctx, q, parent, CONNECTOR_DEFAULTS, CONNECTOR_SORT, &["extra"])?;
    let rows = state.db.list_volume_connectors(a.node, &a.page)?;
    let mut items = Vec::with_capacity(rows.len());
    for v in &rows {
        let mut d = connector_doc(ctx, v);
        paging::sanitize(&mut d, a.fields.as_deref())?;
        items.push(d);
    }
    let markers: Vec<String> = rows.iter().map(|v| v.uuid.to_string()).collect();
    ok(&paging::collection(ctx, "connectors", items, &markers, a.page.limit, "volume/connectors", &next_args(&a, q)))
}

async fn connectors(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    connector_list(&state, &ctx, &q, None)
}

async fn node_connectors(State(state): State<ApiState>, ctx: Ctx, Path(node): Path<String>, q: Query) -> ApiResult {
    need_volume_route(&ctx)?;
    connector_list(&state, &ctx, &q, Some(&node))
}

const TARGET_DEFAULTS: &[&str] = &["uuid", "node_uuid", "volume_type", "boot_index", "volume_id"];
const TARGET_SORT: &[&str] =
    &["id", "uuid", "node_uuid", "volume_type", "volume_id", "boot_index", "created_at", "updated_at"];

fn target_list(state: &ApiState, ctx: &Ctx, q: &Query, parent: Option<&str>) -> ApiResult {
    let a = list_args(state, ctx, q, parent, TARGET_DEFAULTS, TARGET_SORT, &["extra", "properties"])?;
    let rows = state.db.list_volume_targets(a.node, &a.page)?;
    let mut items = Vec::with_capacity(rows.len());
    for v in &rows {
        let mut d = target_doc(ctx, v);
        paging::sanitize(&mut d, a.fields.as_deref())?;
        items.push(d);
    }
    let markers: Vec<String> = rows.iter().map(|v| v.uuid.to_string()).collect();
    ok(&paging::collection(ctx, "targets", items, &markers, a.page.limit, "volume/targets", &next_args(&a, q)))
}

async fn targets(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    target_list(&state, &ctx, &q, None)
}

async fn node_targets(State(state): State<ApiState>, ctx: Ctx, Path(node): Path<String>, q: Query) -> ApiResult {
    need_volume_route(&ctx)?;
    target_list(&state, &ctx, &q, Some(&node))
}

fn parse_connector_id(s: &str) -> Result<VolumeConnectorId, ApiError> {
    s.parse().map_err(|_| ApiError::bad_request(format!("Expected UUID for connector_uuid: {s}")))
}

fn parse_target_id(s: &str) -> Result<VolumeTargetId, ApiError> {
    s.parse().map_err(|_| ApiError::bad_request(format!("Expected UUID for target_uuid: {s}")))
}

async fn connector_show(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>, q: Query) -> ApiResult {
    need_volume(&ctx)?;
    let v = state.db.get_volume_connector(parse_connector_id(&id)?)?;
    let mut d = connector_doc(&ctx, &v);
    paging::sanitize(&mut d, paging::field_list(&q).as_deref())?;
    ok(&d)
}

async fn target_show(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>, q: Query) -> ApiResult {
    need_volume(&ctx)?;
    let v = state.db.get_volume_target(parse_target_id(&id)?)?;
    let mut d = target_doc(&ctx, &v);
    paging::sanitize(&mut d, paging::field_list(&q).as_deref())?;
    ok(&d)
}

fn connector_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "connector_id": {"type": "string"},
            "extra": {"type": ["object", "null"]},
            "node_uuid": {"type": "string"},
            "type": {"type": "string"},
            "uuid": {"type": ["string", "null"]},
        },
        "required": ["connector_id", "node_uuid", "type"],
        "additionalProperties": false,
    })
}

fn target_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "boot_index": {"type": "integer"},
            "extra": {"type": ["object", "null"]},
            "node_uuid": {"type": "string"},
            "properties": {"type": ["object", "null"]},
            "volume_id": {"type": "string"},
            "volume_type": {"type": "string"},
            "uuid": {"type": ["string", "null"]},
        },
        "required": ["boot_index", "node_uuid", "volume_id", "volume_type"],
        "additionalProperties": false,
    })
}

/// Ironic's `args.schema` + `dict_valid(node_uuid=uuid, uuid=uuid)` for a body named `name`.
fn validate_body(name: &str, schema: &Value, body: &Value) -> Result<(), ApiError> {
    schema::validate_arg(name, schema, body, PATTERNS).map_err(ApiError::bad_request)?;
    for k in ["node_uuid", "uuid"] {
        if let Some(Value::String(s)) = body.get(k) {
            if s.parse::<uuid::Uuid>().is_err() {
                return Err(ApiError::bad_request(format!("Expected UUID for {k}: {s}")));
            }
        }
    }
    Ok(())
}

fn map_of(v: Option<&Value>) -> JsonMap {
    v.and_then(|v| v.as_object()).cloned().unwrap_or_default()
}

/// The node a new volume object belongs to: a missing node is Ironic's InvalidInput (400).
fn owning_node(state: &ApiState, body: &Value) -> Result<NodeId, ApiError> {
    let s = body.get("node_uuid").and_then(|v| v.as_str()).unwrap_or_default();
    let invalid = || ApiError::bad_request(format!("Invalid input for field/attribute node_uuid. Value: '{s}'. "));
    let id: NodeId = s.parse().map_err(|_| invalid())?;
    state.db.get_node_by_uuid(id).map_err(|_| invalid())?;
    Ok(id)
}

fn new_uuid(state: &ApiState, body: &Value) -> Result<uuid::Uuid, ApiError> {
    match body.get("uuid").and_then(|v| v.as_str()) {
        Some(s) => s.parse().map_err(|_| ApiError::bad_request(format!("Expected UUID for uuid: {s}"))),
        None => Ok(state.clock.new_uuid()),
    }
}

async fn connector_create(State(state): State<ApiState>, ctx: Ctx, JsonBody(body): JsonBody<Value>) -> ApiResult {
    need_volume(&ctx)?;
    validate_body("connector", &connector_schema(), &body)?;
    let node_uuid = owning_node(&state, &body)?;
    let v = VolumeConnector {
        uuid: VolumeConnectorId(new_uuid(&state, &body)?),
        node_uuid,
        connector_type: body["type"].as_str().unwrap_or_default().to_string(),
        connector_id: body["connector_id"].as_str().unwrap_or_default().to_string(),
        extra: map_of(body.get("extra")),
        created_at: state.clock.now(),
        updated_at: None,
    };
    state.db.create_volume_connector(&v)?;
    created(format!("{}/v1/volume/connectors/{}", ctx.base, v.uuid), &connector_doc(&ctx, &v))
}

async fn target_create(State(state): State<ApiState>, ctx: Ctx, JsonBody(body): JsonBody<Value>) -> ApiResult {
    need_volume(&ctx)?;
    validate_body("target", &target_schema(), &body)?;
    let node_uuid = owning_node(&state, &body)?;
    let v = VolumeTarget {
        uuid: VolumeTargetId(new_uuid(&state, &body)?),
        node_uuid,
        volume_type: body["volume_type"].as_str().unwrap_or_default().to_string(),
        volume_id: body["volume_id"].as_str().unwrap_or_default().to_string(),
        boot_index: body["boot_index"].as_i64().unwrap_or_default(),
        properties: map_of(body.get("properties")),
        extra: map_of(body.get("extra")),
        created_at: state.clock.now(),
        updated_at: None,
    };
    state.db.create_volume_target(&v)?;
    created(format!("{}/v1/volume/targets/{}", ctx.base, v.uuid), &target_doc(&ctx, &v))
}

/// Checks a patch's paths against `allowed` and a new `node_uuid`, Ironic's way.
fn check_volume_patch(state: &ApiState, ctx: &Ctx, patch: &Value, allowed: &[&str]) -> Result<(), ApiError> {
    let ops = patch.as_array().ok_or_else(|| ApiError::bad_request("Invalid patch: a JSON array was expected."))?;
    for op in ops {
        let path = op.get("path").and_then(|p| p.as_str()).unwrap_or_default();
        let root = path.split('/').nth(1).unwrap_or_default();
        if !allowed.contains(&root) {
            return Err(ApiError::bad_request(format!(
                "Cannot patch {path}. Only the following can be updated: {}",
                allowed.join(", ")
            )));
        }
        if path == "/node_uuid" && op.get("op").and_then(|o| o.as_str()) != Some("remove") {
            let v = op.get("value").cloned().unwrap_or(Value::Null);
            let s = v.as_str().map(str::to_string).unwrap_or_else(|| schema::py_repr(&v));
            if s.parse::<uuid::Uuid>().is_err() {
                return Err(ApiError::bad_request(format!("Expected a UUID for node_uuid, but received {s}.")));
            }
            if load(state, ctx, &s).is_err() {
                return Err(ApiError::bad_request(format!(
                    "Unable to apply the requested node_uuid '{s}'. Requested value was invalid."
                )));
            }
        }
    }
    Ok(())
}

async fn connector_update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult {
    need_volume(&ctx)?;
    let v = state.db.get_volume_connector(parse_connector_id(&id)?)?;
    let allowed = ["connector_id", "extra", "node_uuid", "type"];
    check_volume_patch(&state, &ctx, &patch, &allowed)?;
    let mut doc = json!({"connector_id": v.connector_id, "extra": v.extra, "node_uuid": v.node_uuid.to_string(),
                         "type": v.connector_type, "uuid": v.uuid.to_string()});
    let writable = |f: &str| allowed.contains(&f).then_some(VOLUME);
    apply_patch(&mut doc, patch, &ctx, &[], &writable)?;
    schema::validate_arg("patch", &connector_schema(), &doc, PATTERNS).map_err(ApiError::bad_request)?;
    let mut updated = v.clone();
    updated.connector_id = doc["connector_id"].as_str().unwrap_or_default().to_string();
    updated.connector_type = doc["type"].as_str().unwrap_or_default().to_string();
    updated.extra = map_of(doc.get("extra"));
    updated.node_uuid = doc["node_uuid"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::bad_request("'/node_uuid' is a mandatory attribute and can not be removed"))?;
    let saved = state.rpc.update_volume_connector(updated).await?;
    ok(&connector_doc(&ctx, &saved))
}

async fn target_update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult {
    need_volume(&ctx)?;
    let v = state.db.get_volume_target(parse_target_id(&id)?)?;
    let allowed = ["boot_index", "extra", "node_uuid", "properties", "volume_id", "volume_type"];
    check_volume_patch(&state, &ctx, &patch, &allowed)?;
    let mut doc = json!({"boot_index": v.boot_index, "extra": v.extra, "node_uuid": v.node_uuid.to_string(),
                         "properties": v.properties, "volume_id": v.volume_id, "volume_type": v.volume_type,
                         "uuid": v.uuid.to_string()});
    let writable = |f: &str| allowed.contains(&f).then_some(VOLUME);
    apply_patch(&mut doc, patch, &ctx, &[], &writable)?;
    schema::validate_arg("patch", &target_schema(), &doc, PATTERNS).map_err(ApiError::bad_request)?;
    let mut updated = v.clone();
    updated.boot_index = doc["boot_index"].as_i64().unwrap_or_default();
    updated.volume_id = doc["volume_id"].as_str().unwrap_or_default().to_string();
    updated.volume_type = doc["volume_type"].as_str().unwrap_or_default().to_string();
    updated.extra = map_of(doc.get("extra"));
    updated.properties = map_of(doc.get("properties"));
    updated.node_uuid = doc["node_uuid"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::bad_request("'/node_uuid' is a mandatory attribute and can not be removed"))?;
    let saved = state.rpc.update_volume_target(updated).await?;
    ok(&target_doc(&ctx, &saved))
}

async fn connector_destroy(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    need_volume(&ctx)?;
    let v = state.db.get_volume_connector(parse_connector_id(&id)?)?;
    state.rpc.destroy_volume_connector(v).await?;
    no_content()
}

async fn target_destroy(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    need_volume(&ctx)?;
    let v = state.db.get_volume_target(parse_target_id(&id)?)?;
    state.rpc.destroy_volume_target(v).await?;
    no_content()
}
