//! Node sub-resources of later microversions: RAID target (1.12), inject NMI (1.29), console,
//! BIOS settings (1.40/1.74), indicators (1.63), boot mode and secure boot (1.76), history
//! (1.78), inventory (1.81), children (1.83) and vendor passthru.

use super::error::{ApiError, ApiResult};
use super::nodes::load;
use super::render::fmt_time;
use super::util::{self, JsonBody, Query, accepted, no_content, ok};
use super::{ApiState, Ctx};
use crate::db::{NodeFilter, NodeQuery};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{any, get, put};
use ferric_types::models::{BiosSetting, HistoryEvent, Node};
use ferric_types::state_machine;
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/nodes/{node}/states/raid", put(set_raid))
        .route("/nodes/{node}/states/boot_mode", put(set_boot_mode))
        .route("/nodes/{node}/states/secure_boot", put(set_secure_boot))
        .route("/nodes/{node}/states/console", get(get_console).put(set_console))
        .route("/nodes/{node}/management/inject_nmi", put(inject_nmi))
        .route("/nodes/{node}/management/indicators", get(indicators))
        .route("/nodes/{node}/management/indicators/{indicator}", get(indicator_get).put(indicator_set))
        .route("/nodes/{node}/bios", get(bios_list))
        .route("/nodes/{node}/bios/{name}", get(bios_get))
        .route("/nodes/{node}/history", get(history_list))
        .route("/nodes/{node}/history/{event}", get(history_get))
        .route("/nodes/{node}/inventory", get(inventory))
        .route("/nodes/{node}/firmware", get(firmware))
        .route("/nodes/{node}/children", get(children))
        .route("/nodes/{node}/vendor_passthru/methods", get(vendor_methods))
        .route("/nodes/{node}/vendor_passthru", any(vendor_call))
}

/// Below `minor` a sub-resource does not route (Ironic's `_lookup` aborts with 404).
fn need_route(ctx: &Ctx, minor: u32) -> Result<(), ApiError> {
    if ctx.allows(minor) {
        Ok(())
    } else {
        Err(ApiError::routing(StatusCode::NOT_FOUND, "The resource could not be found."))
    }
}

/// oslo's `bool_from_string(strict=True)` with Ironic's `Invalid <name>: ...` wording.
pub(super) fn py_bool(name: &str, v: &Value) -> Result<bool, ApiError> {
    let s = match v {
        Value::Bool(b) => return Ok(*b),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => ferric_types::models::schema::py_repr(other),
    };
    util::parse_bool(s.trim()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid {name}: Unrecognized value {}, acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'",
            ferric_types::models::schema::py_str(&s)
        ))
    })
}

fn states_location(ctx: &Ctx, ident: &str) -> String {
    format!("{}/v1/nodes/{ident}/states", ctx.base)
}

// ---------------------------------------------------------------- RAID, NMI, boot mode

async fn set_raid(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>, body: Bytes) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    if !ctx.allows(12) {
        return Err(ApiError::not_acceptable());
    }
    let v = util::body_or_empty(&body)?;
    let Value::Object(config) = v else {
        return Err(ApiError::bad_request(format!(
            "Expected types <class 'dict'> for target_raid_config: {}",
            ferric_types::models::schema::py_repr(&v)
        )));
    };
    state.rpc.set_target_raid_config(n.uuid, config).await?;
    no_content()
}

async fn inject_nmi(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    if !ctx.allows(29) {
        return Err(ApiError::not_found("Resource could not be found."));
    }
    let n = load(&state, &ctx, &ident)?;
    state.rpc.inject_nmi(n.uuid).await?;
    no_content()
}

/// States in which a node is mid-operation (Ironic's UNSTABLE_STATES).
fn unstable(n: &Node) -> bool {
    state_machine::is_working(n.provision_state) || state_machine::is_waiting(n.provision_state)
}

fn transitioning(n: &Node) -> ApiError {
    ApiError::conflict(format!(
        "Node is in {} state. Since node is transitioning, the boot mode will not be set as this may interfere with ongoing changes and result in erroneous modification. Try again later.",
        n.provision_state
    ))
}

async fn set_boot_mode(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    if !ctx.allows(76) {
        return Err(ApiError::not_found("This endpoint is supported starting with the API version 1.76"));
    }
    let target = match body.get("target") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => ferric_types::models::schema::py_repr(other),
        None => return Err(ApiError::bad_request("Missing argument: \"target\"")),
    };
    if !matches!(target.as_str(), "bios" | "uefi") {
        return Err(ApiError::bad_request(format!(
            "Invalid boot mode {target} requested for node. Allowed boot modes are: bios, uefi"
        )));
    }
    if unstable(&n) {
        return Err(transitioning(&n));
    }
    state.rpc.change_boot_mode(n.uuid, target).await?;
    accepted(states_location(&ctx, &ident))
}

async fn set_secure_boot(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    if !ctx.allows(76) {
        return Err(ApiError::not_found("This endpoint is supported starting with the API version 1.76"));
    }
    let target = match body.get("target") {
        None => return Err(ApiError::bad_request("Missing argument: \"target\"")),
        Some(Value::Null) => None,
        Some(v) => Some(py_bool("target", v)?),
    };
    let Some(target) = target else {
        return Err(ApiError::bad_request(
            "Invalid secure_boot None requested for node. Allowed secure_boot states are: True, False) ",
        ));
    };
    if unstable(&n) {
        return Err(transitioning(&n));
    }
    state.rpc.change_secure_boot(n.uuid, target).await?;
    accepted(states_location(&ctx, &ident))
}

// ---------------------------------------------------------------- console

async fn get_console(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let info = state.rpc.get_console_information(n.uuid).await?;
    ok(&json!({"console_enabled": info.is_some(), "console_info": info}))
}

async fn set_console(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let enabled = match body.get("enabled") {
        None | Some(Value::Null) => return Err(ApiError::bad_request("Missing argument: \"enabled\"")),
        Some(v) => py_bool("enabled", v)?,
    };
    state.rpc.set_console_mode(n.uuid, enabled).await?;
    accepted(format!("{}/v1/nodes/{ident}/states/console", ctx.base))
}

// ---------------------------------------------------------------- indicators

/// `name@component`, as Ironic names indicators in URLs.
fn split_indicator(unique: &str) -> Result<(String, String), ApiError> {
    let i = unique.find('@').ok_or_else(|| ApiError::bad_request(format!("Malformed indicator name \"{unique}\"")))?;
    Ok((unique[..i].to_string(), unique[i + 1..].to_string()))
}

async fn indicators(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let all = state.rpc.get_supported_indicators(n.uuid).await?;
    let mut list = Vec::new();
    for (component, names) in &all {
        for (name, info) in names {
            let unique = format!("{name}@{component}");
            list.push(json!({
                "name": unique,
                "component": component,
                "readonly": info.readonly,
                "states": info.states,
                "links": [
                    {"href": format!("{}/v1/nodes/{ident}/management/indicators/{unique}", ctx.base), "rel": "self"},
                    {"href": format!("{}/nodes/{ident}/management/indicators/{unique}", ctx.base), "rel": "bookmark"},
                ],
            }));
        }
    }
    ok(&json!({"indicators": list}))
}

async fn indicator_get(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path((ident, indicator)): Path<(String, String)>,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let (name, component) = split_indicator(&indicator)?;
    let s = state.rpc.get_indicator_state(n.uuid, component, name).await?;
    ok(&json!({"state": s}))
}

async fn indicator_set(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path((ident, indicator)): Path<(String, String)>,
    q: Query,
    body: Bytes,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let b = util::body_or_empty(&body)?;
    let st = match b.get("state").or(None) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Expected string for state: {}",
                ferric_types::models::schema::py_repr(other)
            )));
        }
        None => {
            q.get("state").map(str::to_string).ok_or_else(|| ApiError::bad_request("Missing argument: \"state\""))?
        }
    };
    let (name, component) = split_indicator(&indicator)?;
    state.rpc.set_indicator_state(n.uuid, component, name, st).await?;
    no_content()
}

// ---------------------------------------------------------------- BIOS

const BIOS_DEFAULT: &[&str] = &["name", "value"];
const BIOS_REGISTRY: &[&str] = &[
    "name",
    "value",
    "attribute_type",
    "allowable_values",
    "lower_bound",
    "max_length",
    "min_length",
    "read_only",
    "reset_required",
    "unique",
    "upper_bound",
];

fn bios_doc(ctx: &Ctx, node: &str, s: &BiosSetting, fields: &[String]) -> Value {
    let ts = |t: &Option<chrono::DateTime<chrono::Utc>>| t.as_ref().map(|t| json!(fmt_time(t))).unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert("created_at".into(), ts(&s.created_at));
    m.insert("updated_at".into(), ts(&s.updated_at));
    for f in fields {
        let v = match f.as_str() {
            "name" => json!(s.name),
            "value" => json!(s.value),
            "attribute_type" => json!(s.attribute_type),
            "allowable_values" => json!(s.allowable_values.clone().unwrap_or_default()),
            "lower_bound" => json!(s.lower_bound),
            "max_length" => json!(s.max_length),
            "min_length" => json!(s.min_length),
            "read_only" => json!(s.read_only),
            "reset_required" => json!(s.reset_required),
            "unique" => json!(s.unique),
            "upper_bound" => json!(s.upper_bound),
            _ => continue,
        };
        m.insert(f.clone(), v);
    }
    m.insert("links".into(), util::links(&ctx.base, &format!("nodes/{node}/bios/{}", s.name)));
    Value::Object(m)
}

async fn bios_list(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>, q: Query) -> ApiResult {
    need_route(&ctx, 40)?;
    let n = load(&state, &ctx, &ident)?;
    let detail = q.bool("detail")?;
    let fields = util::field_list(&q);
    if let Some(d) = detail {
        if !ctx.allows(74) {
            return Err(ApiError::bad_request(format!(
                "Invalid query parameter ?detail={} received.",
                if d { "True" } else { "False" }
            )));
        }
    }
    if let Some(f) = &fields {
        if !ctx.allows(74) {
            let list: Vec<String> = f.iter().map(|s| ferric_types::models::schema::py_str(s)).collect();
            return Err(ApiError::bad_request(format!(
                "Invalid query parameter ?fields=[{}] received.",
                list.join(", ")
            )));
        }
        if detail == Some(true) {
            return Err(ApiError::bad_request("Can not specify ?detail=True and fields in the same request."));
        }
    }
    let shown: Vec<String> = match (detail, fields) {
        (Some(true), _) => BIOS_REGISTRY.iter().map(|s| s.to_string()).collect(),
        (_, Some(f)) => f,
        _ => BIOS_DEFAULT.iter().map(|s| s.to_string()).collect(),
    };
    let items: Vec<Value> =
        state.db.list_bios_settings(n.uuid)?.iter().map(|s| bios_doc(&ctx, &ident, s, &shown)).collect();
    ok(&json!({"bios": items}))
}

async fn bios_get(State(state): State<ApiState>, ctx: Ctx, Path((ident, name)): Path<(String, String)>) -> ApiResult {
    need_route(&ctx, 40)?;
    let n = load(&state, &ctx, &ident)?;
    let s = state
        .db
        .get_bios_setting(n.uuid, &name)?
        .ok_or_else(|| ApiError::not_found(format!("Node {} doesn't have a BIOS setting '{name}'", n.uuid)))?;
    let fields = if ctx.allows(74) { BIOS_REGISTRY } else { BIOS_DEFAULT };
    let shown: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    let mut m = Map::new();
    m.insert(name, bios_doc(&ctx, &n.uuid.to_string(), &s, &shown));
    ok(&Value::Object(m))
}

// ---------------------------------------------------------------- history, inventory, children

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
    need_route(&ctx, 78)?;
    let n = load(&state, &ctx, &ident)?;
    let detail = q.bool("detail")?.unwrap_or(false);
    let mut qq = q.0.clone();
    qq.entry("sort_key".into()).or_insert_with(|| "created_at".into());
    let page = util::page(&Query(qq), &["id", "uuid", "created_at"], &[])?;
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
    ok(&util::collection(&ctx, "history", items, &markers, page.limit, &format!("nodes/{ident}/history"), &args))
}

async fn history_get(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path((ident, event)): Path<(String, String)>,
) -> ApiResult {
    need_route(&ctx, 78)?;
    let n = load(&state, &ctx, &ident)?;
    let e = state.db.get_history(n.uuid, &event)?;
    ok(&history_doc(&ctx, &n.uuid.to_string(), &e, true))
}

async fn inventory(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    need_route(&ctx, 81)?;
    let n = load(&state, &ctx, &ident)?;
    let (inventory, plugin_data) = state
        .db
        .get_inventory(n.uuid)?
        .ok_or_else(|| ApiError::not_found(format!("Node inventory record for node {} could not be found.", n.uuid)))?;
    ok(&json!({"inventory": inventory, "plugin_data": plugin_data}))
}

async fn children(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    if !ctx.allows(83) {
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

async fn firmware(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>, q: Query) -> ApiResult {
    need_route(&ctx, 86)?;
    let n = load(&state, &ctx, &ident)?;
    let defaults = ["component", "initial_version", "current_version", "last_version_flashed"];
    let (fields, _) = util::return_fields(&q, &defaults, true)?;
    let ts = |t: &Option<chrono::DateTime<chrono::Utc>>| t.as_ref().map(|t| json!(fmt_time(t))).unwrap_or(Value::Null);
    let mut items = Vec::new();
    for c in state.db.list_firmware_components(n.uuid)? {
        let mut m = Map::new();
        m.insert("created_at".into(), ts(&c.created_at));
        m.insert("updated_at".into(), ts(&c.updated_at));
        for f in fields.as_deref().unwrap_or_default() {
            let v = match f.as_str() {
                "component" => json!(c.component),
                "initial_version" => json!(c.initial_version),
                "current_version" => json!(c.current_version),
                "last_version_flashed" => json!(c.last_version_flashed),
                "created_at" | "updated_at" => continue,
                other => return Err(ApiError::bad_request(format!("Field(s) \"{other}\" are not valid"))),
            };
            m.insert(f.clone(), v);
        }
        items.push(Value::Object(m));
    }
    ok(&json!({"firmware": items}))
}

// ---------------------------------------------------------------- vendor passthru

async fn vendor_methods(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let m = state.rpc.node_vendor_methods(n.uuid).await?;
    ok(&json!(m))
}

/// A vendor passthru call's answer: 202 without a body when asynchronous, 200 with the
/// method's value otherwise.
pub(super) fn passthru_response(r: ferric_types::rpc::PassthruResult) -> ApiResult {
    if r.is_async {
        return Ok(axum::response::IntoResponse::into_response(StatusCode::ACCEPTED));
    }
    Ok(util::json_response(StatusCode::OK, &r.value))
}

async fn vendor_call(
    State(state): State<ApiState>,
    ctx: Ctx,
    method: Method,
    Path(ident): Path<String>,
    q: Query,
    body: Bytes,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let name = q.get("method").unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Method not specified"));
    }
    let data = util::body_or_empty(&body)?;
    let r = state.rpc.vendor_passthru(n.uuid, name, method.as_str().to_string(), data).await?;
    passthru_response(r)
}
