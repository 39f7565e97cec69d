//! Node sub-resources that act on or report the hardware: RAID target (API 1.12), inject NMI
//! (1.29), boot mode and secure boot (1.76), console, indicators (1.63), BIOS settings
//! (1.40/1.74) and firmware components (1.86).

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Query, body_or_empty, parse_bool};
use super::microversion::{
    BIOS_INTERFACE, BIOS_REGISTRY, CHANGE_BOOT_MODE, FIRMWARE_INTERFACE, INJECT_NMI, RAID_CONFIG,
};
use super::nodes::load;
use super::paging;
use super::render::fmt_time;
use super::responses::{accepted, links, no_content, ok};
use super::{ApiState, Ctx, need_route};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use ferric_types::models::{BiosSetting, Node};
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
        .route("/nodes/{node}/firmware", get(firmware))
}

/// oslo's `bool_from_string(strict=True)` with Ironic's `Invalid <name>: ...` wording.
fn py_bool(name: &str, v: &Value) -> Result<bool, ApiError> {
    let s = match v {
        Value::Bool(b) => return Ok(*b),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => ferric_types::models::schema::py_repr(other),
    };
    parse_bool(s.trim()).ok_or_else(|| {
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
    if !ctx.allows(RAID_CONFIG) {
        return Err(ApiError::not_acceptable());
    }
    let v = body_or_empty(&body)?;
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
    if !ctx.allows(INJECT_NMI) {
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
    if !ctx.allows(CHANGE_BOOT_MODE) {
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
    if !ctx.allows(CHANGE_BOOT_MODE) {
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
    let b = body_or_empty(&body)?;
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

/// The fields a BIOS setting shows by default, and with the registry (API 1.74) or `?detail=True`.
const BIOS_DEFAULT_FIELDS: &[&str] = &["name", "value"];
const BIOS_REGISTRY_FIELDS: &[&str] = &[
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
    m.insert("links".into(), links(&ctx.base, &format!("nodes/{node}/bios/{}", s.name)));
    Value::Object(m)
}

async fn bios_list(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>, q: Query) -> ApiResult {
    need_route(&ctx, BIOS_INTERFACE)?;
    let n = load(&state, &ctx, &ident)?;
    let detail = q.bool("detail")?;
    let fields = paging::field_list(&q);
    if let Some(d) = detail {
        if !ctx.allows(BIOS_REGISTRY) {
            return Err(ApiError::bad_request(format!(
                "Invalid query parameter ?detail={} received.",
                if d { "True" } else { "False" }
            )));
        }
    }
    if let Some(f) = &fields {
        if !ctx.allows(BIOS_REGISTRY) {
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
        (Some(true), _) => BIOS_REGISTRY_FIELDS.iter().map(|s| s.to_string()).collect(),
        (_, Some(f)) => f,
        _ => BIOS_DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect(),
    };
    let items: Vec<Value> =
        state.db.list_bios_settings(n.uuid)?.iter().map(|s| bios_doc(&ctx, &ident, s, &shown)).collect();
    ok(&json!({"bios": items}))
}

async fn bios_get(State(state): State<ApiState>, ctx: Ctx, Path((ident, name)): Path<(String, String)>) -> ApiResult {
    need_route(&ctx, BIOS_INTERFACE)?;
    let n = load(&state, &ctx, &ident)?;
    let s = state
        .db
        .get_bios_setting(n.uuid, &name)?
        .ok_or_else(|| ApiError::not_found(format!("Node {} doesn't have a BIOS setting '{name}'", n.uuid)))?;
    let fields = if ctx.allows(BIOS_REGISTRY) { BIOS_REGISTRY_FIELDS } else { BIOS_DEFAULT_FIELDS };
    let shown: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    let mut m = Map::new();
    m.insert(name, bios_doc(&ctx, &n.uuid.to_string(), &s, &shown));
    ok(&Value::Object(m))
}

async fn firmware(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>, q: Query) -> ApiResult {
    need_route(&ctx, FIRMWARE_INTERFACE)?;
    let n = load(&state, &ctx, &ident)?;
    let defaults = ["component", "initial_version", "current_version", "last_version_flashed"];
    let (fields, _) = paging::return_fields(&q, &defaults, true)?;
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
