//! `/v1/chassis`.

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Query};
use super::microversion::{DETAIL_QUERY, FIELDS_SELECTOR, INITIAL_VERSION};
use super::nodes::apply_patch;
use super::paging;
use super::render;
use super::responses::{json_response, links, no_content, ok};
use super::{ApiState, Ctx};
use crate::db::NodeQuery;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use ferric_types::models::{Chassis, ChassisId};
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/chassis", get(list).post(create))
        .route("/chassis/detail", get(list_detail))
        .route("/chassis/{id}", get(show).patch(update).delete(destroy))
        .route("/chassis/{id}/nodes", get(nodes))
}

fn parse_id(s: &str) -> Result<ChassisId, ApiError> {
    s.parse().map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {s}.")))
}

async fn list(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    list_impl(&state, &ctx, &q, false)
}

async fn list_detail(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    list_impl(&state, &ctx, &q, true)
}

fn list_impl(state: &ApiState, ctx: &Ctx, q: &Query, detail_path: bool) -> ApiResult {
    if q.get("fields").is_some() && !ctx.allows(FIELDS_SELECTOR) {
        return Err(ApiError::not_acceptable());
    }
    let (fields, detail) = if detail_path {
        if q.get("fields").is_some() {
            return Err(ApiError::bad_request("Can not specify ?detail=True and fields in the same request."));
        }
        (None, Some(true))
    } else {
        paging::return_fields(q, &["uuid", "description"], ctx.allows(DETAIL_QUERY))?
    };
    let page = paging::page(q, &["id", "uuid", "description", "created_at", "updated_at"], &["extra"])?;
    let rows = paging::paginate(
        state.db.list_chassis()?,
        &page,
        |c, k| match k {
            "uuid" => c.uuid.map(|u| u.to_string()),
            "description" => c.description.clone(),
            "created_at" => c.created_at.map(|t| t.to_rfc3339()),
            "updated_at" => c.updated_at.map(|t| t.to_rfc3339()),
            _ => None,
        },
        |c| c.uuid.map(|u| u.to_string()).unwrap_or_default(),
        "Chassis",
    )?;
    let mut items = Vec::with_capacity(rows.len());
    for c in &rows {
        let mut d = render::chassis(c, ctx, None);
        paging::sanitize(&mut d, fields.as_deref())?;
        items.push(d);
    }
    let markers: Vec<String> = rows.iter().map(|c| c.uuid.map(|u| u.to_string()).unwrap_or_default()).collect();
    let mut args = vec![("sort_key", page.sort_key.clone()), ("sort_dir", q.get("sort_dir").unwrap_or("asc").into())];
    if !detail_path {
        if let Some(d) = detail {
            args.push(("detail", if d { "True".into() } else { "False".into() }));
        }
    }
    if let Some(f) = &fields {
        args.push(("fields", f.join(",")));
    }
    let path = if detail_path { "chassis/detail" } else { "chassis" };
    ok(&paging::collection(ctx, "chassis", items, &markers, page.limit, path, &args))
}

async fn show(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>, q: Query) -> ApiResult {
    if q.get("fields").is_some() && !ctx.allows(FIELDS_SELECTOR) {
        return Err(ApiError::not_acceptable());
    }
    let c = state.db.get_chassis(parse_id(&id)?)?;
    let mut d = render::chassis(&c, &ctx, None);
    paging::sanitize(&mut d, paging::field_list(&q).as_deref())?;
    ok(&d)
}

async fn create(State(state): State<ApiState>, ctx: Ctx, JsonBody(body): JsonBody<Value>) -> ApiResult {
    let Value::Object(obj) = body else {
        return Err(ApiError::bad_request("Invalid input: the chassis must be a JSON object."));
    };
    let mut c = Chassis {
        uuid: Some(ChassisId(state.clock.new_uuid())),
        created_at: Some(state.clock.now()),
        ..Default::default()
    };
    for (k, v) in &obj {
        match k.as_str() {
            "uuid" => c.uuid = Some(parse_id(v.as_str().unwrap_or_default())?),
            "description" => c.description = v.as_str().map(str::to_string),
            "extra" => {
                c.extra = v.as_object().cloned().ok_or_else(|| ApiError::bad_request("extra must be an object"))?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "Additional properties are not allowed ('{other}' was unexpected)"
                )));
            }
        }
    }
    state.db.create_chassis(&c)?;
    let mut r = json_response(StatusCode::CREATED, &render::chassis(&c, &ctx, None));
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
        "{}/v1/chassis/{}",
        ctx.base,
        c.uuid.map(|u| u.to_string()).unwrap_or_default()
    )) {
        r.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    Ok(r)
}

async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult {
    let c = state.db.get_chassis(parse_id(&id)?)?;
    let mut doc = json!({"description": c.description, "extra": c.extra});
    let writable = |f: &str| matches!(f, "description" | "extra").then_some(INITIAL_VERSION);
    apply_patch(&mut doc, patch, &ctx, &["uuid", "created_at", "updated_at", "links", "nodes"], &writable)?;
    let mut updated = c.clone();
    updated.description = doc.get("description").and_then(|d| d.as_str()).map(str::to_string);
    updated.extra = doc.get("extra").and_then(|e| e.as_object()).cloned().unwrap_or_default();
    updated.updated_at = Some(state.clock.now());
    state.db.update_chassis(&updated)?;
    ok(&render::chassis(&updated, &ctx, None))
}

async fn destroy(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    state.db.destroy_chassis(parse_id(&id)?)?;
    no_content()
}

async fn nodes(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let c = state.db.get_chassis(parse_id(&id)?)?;
    let mut q = NodeQuery::default();
    q.filter.chassis_uuid = c.uuid.map(|u| u.to_string());
    let rows = state.db.list_node_summaries(&q)?;
    let items: Vec<Value> = rows
        .iter()
        .map(|s| {
            json!({
                "uuid": s.uuid.to_string(), "instance_uuid": s.instance_uuid, "maintenance": s.maintenance,
                "power_state": s.power_state.map(|p| p.as_str()), "provision_state": s.provision_state.as_str(),
                "name": s.name, "links": links(&ctx.base, &format!("nodes/{}", s.uuid)),
            })
        })
        .collect();
    ok(&json!({"nodes": items}))
}
