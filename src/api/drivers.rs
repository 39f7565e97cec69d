//! `/v1/drivers` and `/v1/conductors`.

use super::error::{ApiError, ApiResult};
use super::util::{self, Query, ok};
use super::{ApiState, Ctx};
use crate::models::INTERFACE_NAMES;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/drivers", get(list))
        .route("/drivers/{name}", get(show))
        .route("/drivers/{name}/properties", get(properties))
        .route("/conductors", get(conductors))
        .route("/conductors/{host}", get(conductor))
}

/// The min version at which a driver detail shows `<kind>` interfaces.
fn kind_version(kind: &str) -> u32 {
    match kind {
        "storage" => 33,
        "rescue" => 38,
        "bios" => 40,
        "firmware" => 86,
        _ => 30,
    }
}

fn driver_doc(state: &ApiState, ctx: &Ctx, name: &str, hosts: &[String], detail: bool) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("hosts".into(), json!(hosts));
    m.insert("links".into(), util::links(&ctx.base, &format!("drivers/{name}")));
    if ctx.allows(14) {
        m.insert("properties".into(), util::links(&ctx.base, &format!("drivers/{name}/properties")));
    }
    if ctx.allows(30) {
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
        .filter(|c| c.online && c.drivers.iter().any(|d| d == driver))
        .map(|c| c.hostname)
        .collect()
}

async fn list(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    if let Some(t) = q.get("type") {
        if !matches!(t, "classic" | "dynamic") {
            return Err(ApiError::bad_request(format!("Invalid type {t}: must be 'classic' or 'dynamic'.")));
        }
        if t == "classic" {
            return ok(&json!({"drivers": []}));
        }
    }
    let detail = q.bool("detail")? == Some(true);
    let names = state.rpc.hardware_types();
    let items: Vec<Value> =
        names.iter().map(|n| driver_doc(&state, &ctx, n, &conductor_hosts(&state, n), detail)).collect();
    ok(&json!({"drivers": items}))
}

async fn show(State(state): State<ApiState>, ctx: Ctx, Path(name): Path<String>) -> ApiResult {
    if !state.rpc.hardware_types().contains(&name) {
        return Err(ApiError::not_found(format!(
            "Could not find the following driver(s) or hardware type(s): {name}."
        )));
    }
    ok(&driver_doc(&state, &ctx, &name, &conductor_hosts(&state, &name), true))
}

async fn properties(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult {
    let p = state.rpc.driver_properties(&name)?;
    ok(&json!(p))
}

fn conductor_doc(ctx: &Ctx, c: &crate::models::ConductorRecord, detail: bool) -> Value {
    let mut m = Map::new();
    m.insert("hostname".into(), json!(c.hostname));
    m.insert("conductor_group".into(), json!(c.conductor_group));
    if detail {
        m.insert("created_at".into(), json!(super::render::fmt_time(&c.created_at)));
        m.insert("updated_at".into(), json!(super::render::fmt_time(&c.updated_at)));
        m.insert("drivers".into(), json!(c.drivers));
    }
    m.insert("links".into(), util::links(&ctx.base, &format!("conductors/{}", c.hostname)));
    m.insert("alive".into(), json!(c.online));
    Value::Object(m)
}

async fn conductors(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    if !ctx.allows(49) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let detail = q.bool("detail")? == Some(true);
    let items: Vec<Value> = state.db.list_conductors()?.iter().map(|c| conductor_doc(&ctx, c, detail)).collect();
    ok(&json!({"conductors": items}))
}

async fn conductor(State(state): State<ApiState>, ctx: Ctx, Path(host): Path<String>) -> ApiResult {
    if !ctx.allows(49) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let c = state.db.get_conductor(&host)?;
    ok(&conductor_doc(&ctx, &c, true))
}
