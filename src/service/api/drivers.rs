//! `/v1/drivers` and `/v1/conductors`.

use super::error::{ApiError, ApiResult};
use super::extract::{Query, body_or_empty};
use super::microversion::{
    BIOS_INTERFACE, CONDUCTORS, DRIVER_FIELDS_SELECTOR, DYNAMIC_DRIVERS, FIRMWARE_INTERFACE, RAID_CONFIG,
    RESCUE_INTERFACE, STATES_PROPERTIES_LINKS, STORAGE_INTERFACE,
};
use super::paging;
use super::responses::{links, ok};
use super::{ApiState, Ctx};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use ferric_types::models::INTERFACE_NAMES;
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/drivers", get(list))
        .route("/drivers/{name}", get(show))
        .route("/drivers/{name}/properties", get(properties))
        .route("/drivers/{name}/raid/logical_disk_properties", get(raid_properties))
        .route("/drivers/{name}/vendor_passthru/methods", get(vendor_methods))
        .route("/drivers/{name}/vendor_passthru", axum::routing::any(vendor_call))
        .route("/conductors", get(conductors))
        .route("/conductors/{host}", get(conductor))
}

/// The min version at which a driver detail shows `<kind>` interfaces.
fn kind_version(kind: &str) -> u32 {
    match kind {
        "storage" => STORAGE_INTERFACE,
        "rescue" => RESCUE_INTERFACE,
        "bios" => BIOS_INTERFACE,
        "firmware" => FIRMWARE_INTERFACE,
        _ => DYNAMIC_DRIVERS,
    }
}

fn driver_doc(state: &ApiState, ctx: &Ctx, name: &str, hosts: &[String], detail: bool) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("hosts".into(), json!(hosts));
    m.insert("links".into(), links(&ctx.base, &format!("drivers/{name}")));
    if ctx.allows(STATES_PROPERTIES_LINKS) {
        m.insert("properties".into(), links(&ctx.base, &format!("drivers/{name}/properties")));
    }
    if ctx.allows(DYNAMIC_DRIVERS) {
        m.insert("type".into(), json!("dynamic"));
        if detail {
            let reg = state.rpc.registry_view();
            // Ironic's order: network, inspect, boot, raid, management, vendor, power, storage,
            // deploy, bios, rescue, console, firmware.
            for kind in [
                "network",
                "inspect",
                "boot",
                "raid",
                "management",
                "vendor",
                "power",
                "storage",
                "deploy",
                "bios",
                "rescue",
                "console",
                "firmware",
            ] {
                if !ctx.allows(kind_version(kind)) {
                    continue;
                }
                let (default, enabled) = reg.get(&(name.to_string(), kind.to_string())).cloned().unwrap_or_default();
                m.insert(format!("default_{kind}_interface"), json!(default));
                m.insert(format!("enabled_{kind}_interfaces"), json!(enabled));
            }
        }
    }
    let _ = INTERFACE_NAMES;
    Value::Object(m)
}

fn conductor_hosts(state: &ApiState, driver: &str) -> Vec<String> {
    state
        .db
        .list_conductors()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| conductor_alive(state, c) && c.drivers.iter().any(|d| d == driver))
        .map(|c| c.hostname)
        .collect()
}

/// `fields` (API 1.77), checked against the document's keys.
fn driver_fields(ctx: &Ctx, q: &Query) -> Result<Option<Vec<String>>, ApiError> {
    let f = paging::field_list(q);
    if f.is_some() && !ctx.allows(DRIVER_FIELDS_SELECTOR) {
        return Err(ApiError::not_acceptable());
    }
    Ok(f)
}

async fn list(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    let fields = driver_fields(&ctx, &q)?;
    let detail = q.bool("detail")?;
    if fields.is_some() && detail == Some(true) {
        return Err(ApiError::bad_request("Can not specify ?detail=True and fields in the same request."));
    }
    if detail.is_some() && !ctx.allows(DYNAMIC_DRIVERS) {
        return Err(ApiError::not_acceptable_min(DYNAMIC_DRIVERS));
    }
    if let Some(t) = q.get("type") {
        if !ctx.allows(DYNAMIC_DRIVERS) {
            return Err(ApiError::not_acceptable_min(DYNAMIC_DRIVERS));
        }
        if !matches!(t, "classic" | "dynamic") {
            return Err(ApiError::bad_request(
                "\"type\" filter must be one of \"classic\" or \"dynamic\", if specified.",
            ));
        }
        if t == "classic" {
            return ok(&json!({"drivers": []}));
        }
    }
    let names = state.rpc.hardware_types();
    let mut items = Vec::with_capacity(names.len());
    for n in &names {
        let mut d = driver_doc(&state, &ctx, n, &conductor_hosts(&state, n), detail == Some(true));
        paging::sanitize(&mut d, fields.as_deref())?;
        items.push(d);
    }
    ok(&json!({"drivers": items}))
}

async fn show(State(state): State<ApiState>, ctx: Ctx, Path(name): Path<String>, q: Query) -> ApiResult {
    let fields = driver_fields(&ctx, &q)?;
    if !state.rpc.hardware_types().contains(&name) {
        return Err(ApiError::not_found(format!(
            "Could not find the following driver(s) or hardware type(s): {name}."
        )));
    }
    let mut d = driver_doc(&state, &ctx, &name, &conductor_hosts(&state, &name), true);
    paging::sanitize(&mut d, fields.as_deref())?;
    ok(&d)
}

async fn raid_properties(State(state): State<ApiState>, ctx: Ctx, Path(name): Path<String>) -> ApiResult {
    if !ctx.allows(RAID_CONFIG) {
        return Err(ApiError::not_acceptable());
    }
    let p = state.rpc.raid_logical_disk_properties(&name)?;
    ok(&json!(p))
}

async fn vendor_methods(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult {
    let m = state.rpc.driver_vendor_methods(&name)?;
    ok(&json!(m))
}

async fn vendor_call(
    State(state): State<ApiState>,
    method: axum::http::Method,
    Path(name): Path<String>,
    q: Query,
    body: axum::body::Bytes,
) -> ApiResult {
    let m = q.get("method").unwrap_or_default();
    if m.is_empty() {
        return Err(ApiError::bad_request("Method not specified"));
    }
    body_or_empty(&body)?;
    let r = state.rpc.driver_vendor_passthru(&name, m, method.as_str())?;
    super::vendor::passthru_response(r)
}

async fn properties(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult {
    let p = state.rpc.driver_properties(&name)?;
    ok(&json!(p))
}

/// Whether a conductor counts as alive: online, and (with several) heard from recently.
fn conductor_alive(state: &ApiState, c: &ferric_types::models::ConductorRecord) -> bool {
    match state.conductor_alive_timeout {
        None => c.online,
        Some(t) => c.alive_at(state.clock.now(), t),
    }
}

fn conductor_doc(state: &ApiState, ctx: &Ctx, c: &ferric_types::models::ConductorRecord, detail: bool) -> Value {
    let mut m = Map::new();
    m.insert("hostname".into(), json!(c.hostname));
    m.insert("conductor_group".into(), json!(c.conductor_group));
    if detail {
        m.insert("created_at".into(), json!(super::render::fmt_time(&c.created_at)));
        m.insert("updated_at".into(), json!(super::render::fmt_time(&c.updated_at)));
        m.insert("drivers".into(), json!(c.drivers));
    }
    m.insert("links".into(), links(&ctx.base, &format!("conductors/{}", c.hostname)));
    m.insert("alive".into(), json!(conductor_alive(state, c)));
    Value::Object(m)
}

async fn conductors(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    if !ctx.allows(CONDUCTORS) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let detail = q.bool("detail")? == Some(true);
    let items: Vec<Value> =
        state.db.list_conductors()?.iter().map(|c| conductor_doc(&state, &ctx, c, detail)).collect();
    ok(&json!({"conductors": items}))
}

async fn conductor(State(state): State<ApiState>, ctx: Ctx, Path(host): Path<String>) -> ApiResult {
    if !ctx.allows(CONDUCTORS) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let c = state.db.get_conductor(&host)?;
    ok(&conductor_doc(&state, &ctx, &c, true))
}
