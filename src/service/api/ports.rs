//! `/v1/ports` and `/v1/portgroups`.

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Query};
use super::microversion::{
    DETAIL_QUERY, FIELDS_SELECTOR, INITIAL_VERSION, LOCAL_LINK_NETWORK_TYPE, PORTGROUP_MODE_PROPERTIES,
    PORTGROUP_SUBRESOURCES, PORTGROUPS, SHARDS,
};
use super::nodes::{apply_patch, load};
use super::paging;
use super::render;
use super::responses::{json_response, no_content, ok};
use super::{ApiState, Ctx};
use crate::db::{PORT_SORT_KEYS, PortQuery};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use ferric_types::models::{JsonMap, MacAddr, NodeId, Port, PortId, Portgroup, PortgroupId};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/ports", get(list).post(create))
        .route("/ports/detail", get(list_detail))
        .route("/ports/{port}", get(show).patch(update).delete(destroy))
        .route("/portgroups", get(pg_list).post(pg_create))
        .route("/portgroups/detail", get(pg_list_detail))
        .route("/portgroups/{pg}", get(pg_show).patch(pg_update).delete(pg_destroy))
        .route("/portgroups/{pg}/ports", get(pg_ports))
}

fn load_port(state: &ApiState, ident: &str) -> Result<Port, ApiError> {
    Ok(state.db.get_port(ident)?)
}

fn parse_mac(s: &str) -> Result<MacAddr, ApiError> {
    s.parse().map_err(|_| ApiError::bad_request(format!("Expected a MAC address but received {s}.")))
}

fn list_ports(state: &ApiState, ctx: &Ctx, q: &Query, node: Option<NodeId>, detail: bool, path: &str) -> ApiResult {
    if q.get("portgroup").is_some() && !ctx.allows(PORTGROUP_SUBRESOURCES) {
        return Err(ApiError::not_acceptable());
    }
    let shard = match q.get("shard") {
        Some(_) if !ctx.allows(SHARDS) => return Err(ApiError::not_acceptable_min(SHARDS)),
        Some(s) => Some(s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect::<Vec<_>>()),
        None => None,
    };
    let exclusive = [
        node.is_some() || q.get("node").or(q.get("node_uuid")).is_some(),
        q.get("portgroup").is_some(),
        shard.is_some(),
    ];
    if exclusive.iter().filter(|x| **x).count() > 1 {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Operation not permitted."));
    }
    let nodes = match shard {
        Some(shards) => Some(state.db.node_ids(&crate::db::NodeFilter { shards: Some(shards), ..Default::default() })?),
        None => None,
    };
    let node = match (node, q.get("node").or(q.get("node_uuid"))) {
        (Some(n), _) => Some(n),
        (None, Some(ident)) => Some(load(state, ctx, ident)?.uuid),
        (None, None) => None,
    };
    let portgroup = match q.get("portgroup") {
        Some(pg) => Some(
            state
                .db
                .get_portgroup(pg)?
                .uuid
                .ok_or_else(|| ApiError::not_found(format!("Portgroup {pg} could not be found.")))?,
        ),
        None => None,
    };
    let address = q.get("address").map(parse_mac).transpose()?;
    let marker = match q.get("marker") {
        Some(m) => {
            Some(m.parse::<PortId>().map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {m}.")))?)
        }
        None => None,
    };
    let fields = paging::fields(ctx, q, &render::port_field_version)?;
    if detail && fields.is_some() {
        return Err(ApiError::bad_request("Can not specify ?detail=True and fields in the same request."));
    }
    let pq = PortQuery {
        node,
        portgroup,
        address,
        sort_key: paging::sort_key(q, PORT_SORT_KEYS)?,
        sort_dir: paging::sort_dir(q)?,
        limit: paging::limit(q)?,
        marker,
        nodes,
        project: ctx.scope.clone(),
    };
    let limit = pq.limit.unwrap_or(paging::MAX_PAGE);
    let ports = state.db.list_ports(&pq)?;
    let shown: Option<Vec<String>> =
        if detail { None } else { Some(fields.clone().unwrap_or_else(|| vec!["uuid".into(), "address".into()])) };
    let items: Vec<Value> = ports.iter().map(|p| render::port(p, ctx, shown.as_deref())).collect();
    let mut body = Map::new();
    body.insert("ports".into(), Value::Array(items));
    if ports.len() == limit {
        if let Some(last) = ports.last() {
            let mut args =
                vec![("sort_key", pq.sort_key.clone()), ("sort_dir", q.get("sort_dir").unwrap_or("asc").to_string())];
            if let Some(f) = &fields {
                args.push(("fields", f.join(",")));
            }
            body.insert(
                "next".into(),
                Value::String(paging::next_link(ctx, path, &args, limit, &last.uuid.to_string())),
            );
        }
    }
    ok(&Value::Object(body))
}

async fn list(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    let detail = q.bool("detail")? == Some(true);
    if detail && !ctx.allows(DETAIL_QUERY) {
        return Err(ApiError::not_acceptable());
    }
    list_ports(&state, &ctx, &q, None, detail, "ports")
}

async fn list_detail(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    list_ports(&state, &ctx, &q, None, true, "ports/detail")
}

pub(super) async fn node_ports(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    q: Query,
) -> ApiResult {
    let detail = q.bool("detail")? == Some(true);
    if detail && !ctx.allows(DETAIL_QUERY) {
        return Err(ApiError::not_acceptable());
    }
    let n = load(&state, &ctx, &ident)?;
    list_ports(&state, &ctx, &q, Some(n.uuid), detail, &format!("nodes/{}/ports", n.uuid))
}

pub(super) async fn node_ports_detail(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    q: Query,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    list_ports(&state, &ctx, &q, Some(n.uuid), true, &format!("nodes/{}/ports/detail", n.uuid))
}

async fn show(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>, q: Query) -> ApiResult {
    let fields = paging::fields(&ctx, &q, &render::port_field_version)?;
    let p = load_port(&state, &ident)?;
    ok(&render::port(&p, &ctx, fields.as_deref()))
}

/// Port fields a client may set, with the minor version that allows each (1 = always).
const PORT_WRITABLE: &[(&str, u32)] = &[
    ("uuid", 1),
    ("address", 1),
    ("node_uuid", 1),
    ("extra", 1),
    ("local_link_connection", 19),
    ("pxe_enabled", 19),
    ("portgroup_uuid", 24),
    ("physical_network", 34),
    ("is_smartnic", 53),
];

fn port_writable(f: &str) -> Option<u32> {
    PORT_WRITABLE.iter().find(|(n, _)| *n == f).map(|(_, v)| *v)
}

const LLC_KEYS: &[&str] = &["port_id", "switch_id", "hostname", "switch_info", "network_type"];

fn set_port_field(state: &ApiState, ctx: &Ctx, p: &mut Port, field: &str, v: &Value) -> Result<(), ApiError> {
    let bad = |what: &str| {
        ApiError::bad_request(format!("Invalid input for field/attribute {field}. Value: {v}. Expected {what}"))
    };
    let map = |v: &Value| -> Result<JsonMap, ApiError> {
        match v {
            Value::Null => Ok(JsonMap::new()),
            Value::Object(m) => Ok(m.clone()),
            _ => Err(bad("an object")),
        }
    };
    match field {
        "uuid" => {
            let s = v.as_str().ok_or_else(|| bad("a UUID"))?;
            p.uuid = s.parse().map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {s}.")))?;
        }
        "address" => p.address = parse_mac(v.as_str().ok_or_else(|| bad("a MAC address"))?)?,
        "node_uuid" => {
            let s = v.as_str().ok_or_else(|| bad("a UUID"))?;
            p.node_uuid =
                load(state, ctx, s).map_err(|_| ApiError::bad_request(format!("Node {s} could not be found.")))?.uuid;
        }
        "extra" => p.extra = map(v)?,
        "local_link_connection" => {
            let m = map(v)?;
            if m.contains_key("network_type") && !ctx.allows(LOCAL_LINK_NETWORK_TYPE) {
                return Err(ApiError::not_acceptable());
            }
            if let Some(k) = m.keys().find(|k| !LLC_KEYS.contains(&k.as_str())) {
                return Err(ApiError::bad_request(format!(
                    "Invalid local_link_connection: unexpected key {k:?}; allowed keys are {}.",
                    LLC_KEYS.join(", ")
                )));
            }
            p.local_link_connection = m;
        }
        "pxe_enabled" => p.pxe_enabled = v.as_bool().ok_or_else(|| bad("a boolean"))?,
        "is_smartnic" => p.is_smartnic = v.as_bool().ok_or_else(|| bad("a boolean"))?,
        "physical_network" => p.physical_network = v.as_str().map(str::to_string),
        "portgroup_uuid" => {
            p.portgroup_uuid = match v.as_str() {
                None => None,
                Some(s) => {
                    let g = state
                        .db
                        .get_portgroup(s)
                        .map_err(|_| ApiError::bad_request(format!("Portgroup {s} could not be found.")))?;
                    g.uuid
                }
            }
        }
        _ => return Err(ApiError::bad_request(format!("Unknown attribute {field}."))),
    }
    Ok(())
}

async fn create(State(state): State<ApiState>, ctx: Ctx, JsonBody(body): JsonBody<Value>) -> ApiResult {
    let Value::Object(obj) = body else {
        return Err(ApiError::bad_request("Invalid input: the port must be a JSON object."));
    };
    if let Some(k) = obj.keys().find(|k| port_writable(k).is_none()) {
        return Err(ApiError::bad_request(format!("Additional properties are not allowed ('{k}' was unexpected)")));
    }
    for req in ["address", "node_uuid"] {
        if !obj.contains_key(req) {
            return Err(ApiError::bad_request(format!("'{req}' is a required property")));
        }
    }
    let mut p = Port { uuid: PortId(state.clock.new_uuid()), ..Default::default() };
    for (k, v) in &obj {
        if !ctx.allows(port_writable(k).unwrap_or(u32::MAX)) {
            return Err(ApiError::not_acceptable());
        }
        set_port_field(&state, &ctx, &mut p, k, v)?;
    }
    let p = state.rpc.create_port(p).await?;
    let mut r = json_response(StatusCode::CREATED, &render::port(&p, &ctx, None));
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("{}/v1/ports/{}", ctx.base, p.uuid)) {
        r.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    Ok(r)
}

const PORT_READ_ONLY: &[&str] = &["uuid", "created_at", "updated_at", "internal_info", "links"];

async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult {
    let p = load_port(&state, &ident)?;
    let mut doc = json!({
        "address": p.address.to_string(),
        "node_uuid": p.node_uuid.to_string(),
        "extra": p.extra,
        "local_link_connection": p.local_link_connection,
        "pxe_enabled": p.pxe_enabled,
        "portgroup_uuid": p.portgroup_uuid.map(|g| g.to_string()),
        "physical_network": p.physical_network,
        "is_smartnic": p.is_smartnic,
    });
    let roots = apply_patch(&mut doc, patch, &ctx, PORT_READ_ONLY, &port_writable)?;
    let mut updated = p.clone();
    for r in &roots {
        let v = doc.get(r).cloned().unwrap_or(Value::Null);
        if r == "address" && v.is_null() {
            return Err(ApiError::bad_request("'/address' is a mandatory attribute and can not be removed"));
        }
        if r == "node_uuid" && v.is_null() {
            return Err(ApiError::bad_request("'/node_uuid' is a mandatory attribute and can not be removed"));
        }
        if r == "pxe_enabled" && v.is_null() {
            updated.pxe_enabled = true;
            continue;
        }
        set_port_field(&state, &ctx, &mut updated, r, &v)?;
    }
    let saved = state.rpc.update_port(updated).await?;
    ok(&render::port(&saved, &ctx, None))
}

async fn destroy(State(state): State<ApiState>, Path(ident): Path<String>) -> ApiResult {
    let p = load_port(&state, &ident)?;
    state.rpc.destroy_port(p.uuid).await?;
    no_content()
}

// ---------------------------------------------------------------- portgroups

fn need_portgroups(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.allows(PORTGROUPS) { Ok(()) } else { Err(ApiError::not_found("The resource could not be found.")) }
}

fn pg_list_impl(
    state: &ApiState,
    ctx: &Ctx,
    q: &Query,
    node: Option<NodeId>,
    detail_path: bool,
    path: &str,
) -> ApiResult {
    need_portgroups(ctx)?;
    let fields_q = paging::field_list(q);
    if fields_q.is_some() && !ctx.allows(FIELDS_SELECTOR) {
        return Err(ApiError::not_acceptable());
    }
    if fields_q.as_ref().is_some_and(|f| f.iter().any(|x| x == "mode" || x == "properties"))
        && !ctx.allows(PORTGROUP_MODE_PROPERTIES)
    {
        return Err(ApiError::not_acceptable());
    }
    let (fields, detail) = if detail_path {
        if fields_q.is_some() {
            return Err(ApiError::bad_request("Can not specify ?detail=True and fields in the same request."));
        }
        (None, Some(true))
    } else {
        paging::return_fields(q, &["uuid", "address", "name"], ctx.allows(DETAIL_QUERY))?
    };
    if q.get("node").is_some() && q.get("address").is_some() {
        return Err(ApiError::bad_request("Filtering by node, address, or shard simultaneously is not supported."));
    }
    let node = match (node, q.get("node")) {
        (Some(n), _) => Some(n),
        (None, Some(i)) => Some(load(state, ctx, i)?.uuid),
        _ => None,
    };
    let address = q.get("address").map(parse_mac).transpose()?.map(|m| m.to_string());
    let page =
        paging::page(q, &["id", "uuid", "name", "address", "created_at"], &["extra", "internal_info", "properties"])?;
    let groups: Vec<Portgroup> = state
        .db
        .list_portgroups(node)?
        .into_iter()
        .filter(|g| address.as_ref().is_none_or(|a| g.address.as_ref() == Some(a)))
        .collect();
    let rows = paging::paginate(
        groups,
        &page,
        |g, k| match k {
            "uuid" => g.uuid.map(|u| u.to_string()),
            "name" => g.name.clone(),
            "address" => g.address.clone(),
            "created_at" => g.created_at.map(|t| t.to_rfc3339()),
            _ => None,
        },
        |g| g.uuid.map(|u| u.to_string()).unwrap_or_default(),
        "Portgroup",
    )?;
    let mut items = Vec::with_capacity(rows.len());
    for g in &rows {
        let mut d = render::portgroup(g, ctx, None);
        paging::sanitize(&mut d, fields.as_deref())?;
        items.push(d);
    }
    let markers: Vec<String> = rows.iter().map(|g| g.uuid.map(|u| u.to_string()).unwrap_or_default()).collect();
    let mut args = vec![("sort_key", page.sort_key.clone()), ("sort_dir", q.get("sort_dir").unwrap_or("asc").into())];
    if !detail_path {
        if let Some(d) = detail {
            args.push(("detail", if d { "True".into() } else { "False".into() }));
        }
    }
    if let Some(f) = &fields {
        args.push(("fields", f.join(",")));
    }
    ok(&paging::collection(ctx, "portgroups", items, &markers, page.limit, path, &args))
}

async fn pg_list(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    pg_list_impl(&state, &ctx, &q, None, false, "portgroups")
}

async fn pg_list_detail(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    pg_list_impl(&state, &ctx, &q, None, true, "portgroups/detail")
}

pub(super) async fn node_portgroups(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    q: Query,
) -> ApiResult {
    if !ctx.allows(PORTGROUP_SUBRESOURCES) {
        return Err(ApiError::not_acceptable());
    }
    let n = load(&state, &ctx, &ident)?;
    pg_list_impl(&state, &ctx, &q, Some(n.uuid), false, &format!("nodes/{}/portgroups", n.uuid))
}

async fn pg_show(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>, q: Query) -> ApiResult {
    need_portgroups(&ctx)?;
    let fields = paging::field_list(&q);
    if fields.is_some() && !ctx.allows(FIELDS_SELECTOR) {
        return Err(ApiError::not_acceptable());
    }
    if fields.as_ref().is_some_and(|f| f.iter().any(|x| x == "mode" || x == "properties"))
        && !ctx.allows(PORTGROUP_MODE_PROPERTIES)
    {
        return Err(ApiError::not_acceptable());
    }
    let g = state.db.get_portgroup(&ident)?;
    let mut d = render::portgroup(&g, &ctx, None);
    paging::sanitize(&mut d, fields.as_deref())?;
    ok(&d)
}

fn set_pg_field(state: &ApiState, ctx: &Ctx, g: &mut Portgroup, field: &str, v: &Value) -> Result<(), ApiError> {
    let bad = |what: &str| {
        ApiError::bad_request(format!("Invalid input for field/attribute {field}. Value: {v}. Expected {what}"))
    };
    match field {
        "uuid" => {
            let s = v.as_str().ok_or_else(|| bad("a UUID"))?;
            g.uuid = Some(
                s.parse::<PortgroupId>()
                    .map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {s}.")))?,
            );
        }
        "name" => g.name = v.as_str().map(str::to_string),
        "address" => g.address = v.as_str().map(|s| parse_mac(s).map(|m| m.to_string())).transpose()?,
        "node_uuid" => {
            let s = v.as_str().ok_or_else(|| bad("a UUID"))?;
            g.node_uuid = Some(
                load(state, ctx, s).map_err(|_| ApiError::bad_request(format!("Node {s} could not be found.")))?.uuid,
            );
        }
        "extra" => g.extra = v.as_object().cloned().unwrap_or_default(),
        "standalone_ports_supported" => g.standalone_ports_supported = v.as_bool().ok_or_else(|| bad("a boolean"))?,
        "mode" => g.mode = v.as_str().map(str::to_string),
        "properties" => g.properties = v.as_object().cloned().unwrap_or_default(),
        _ => {
            return Err(ApiError::bad_request(format!(
                "Additional properties are not allowed ('{field}' was unexpected)"
            )));
        }
    }
    Ok(())
}

async fn pg_create(State(state): State<ApiState>, ctx: Ctx, JsonBody(body): JsonBody<Value>) -> ApiResult {
    need_portgroups(&ctx)?;
    let Value::Object(obj) = body else {
        return Err(ApiError::bad_request("Invalid input: the portgroup must be a JSON object."));
    };
    if !obj.contains_key("node_uuid") {
        return Err(ApiError::bad_request("'node_uuid' is a required property"));
    }
    let mut g = Portgroup {
        uuid: Some(PortgroupId(state.clock.new_uuid())),
        standalone_ports_supported: true,
        mode: Some("active-backup".into()),
        ..Default::default()
    };
    for (k, v) in &obj {
        set_pg_field(&state, &ctx, &mut g, k, v)?;
    }
    g.created_at = Some(state.clock.now());
    state.db.create_portgroup(&g)?;
    let mut r = json_response(StatusCode::CREATED, &render::portgroup(&g, &ctx, None));
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
        "{}/v1/portgroups/{}",
        ctx.base,
        g.uuid.map(|u| u.to_string()).unwrap_or_default()
    )) {
        r.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    Ok(r)
}

const PG_WRITABLE: &[&str] =
    &["name", "address", "node_uuid", "extra", "standalone_ports_supported", "mode", "properties"];

async fn pg_update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult {
    need_portgroups(&ctx)?;
    let g = state.db.get_portgroup(&ident)?;
    let mut doc = json!({
        "name": g.name, "address": g.address, "node_uuid": g.node_uuid.map(|n| n.to_string()),
        "extra": g.extra, "standalone_ports_supported": g.standalone_ports_supported,
        "mode": g.mode, "properties": g.properties,
    });
    let writable = |f: &str| PG_WRITABLE.contains(&f).then_some(INITIAL_VERSION);
    let roots = apply_patch(
        &mut doc,
        patch,
        &ctx,
        &["uuid", "created_at", "updated_at", "internal_info", "links", "ports"],
        &writable,
    )?;
    let mut updated = g.clone();
    for r in &roots {
        let v = doc.get(r).cloned().unwrap_or(Value::Null);
        set_pg_field(&state, &ctx, &mut updated, r, &v)?;
    }
    updated.updated_at = Some(state.clock.now());
    state.db.update_portgroup(&updated)?;
    ok(&render::portgroup(&updated, &ctx, None))
}

async fn pg_destroy(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    need_portgroups(&ctx)?;
    let g = state.db.get_portgroup(&ident)?;
    let id = g.uuid.ok_or_else(|| ApiError::not_found(format!("Portgroup {ident} could not be found.")))?;
    let members = state.db.list_ports(&PortQuery { portgroup: Some(id), ..Default::default() })?;
    if !members.is_empty() {
        return Err(ApiError::conflict(format!("Port group {id} still has ports. Update the ports first.")));
    }
    state.db.destroy_portgroup(id)?;
    no_content()
}

async fn pg_ports(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    if !ctx.allows(PORTGROUP_SUBRESOURCES) {
        return Err(ApiError::not_acceptable());
    }
    let g = state.db.get_portgroup(&ident)?;
    let ports = state.db.list_ports(&PortQuery { portgroup: g.uuid, ..Default::default() })?;
    let shown = vec!["uuid".to_string(), "address".to_string()];
    ok(&json!({"ports": ports.iter().map(|p| render::port(p, &ctx, Some(&shown))).collect::<Vec<_>>()}))
}
