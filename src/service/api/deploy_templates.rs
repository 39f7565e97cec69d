//! `/v1/deploy_templates` (API 1.55): named sets of deploy steps.

use super::allocations::{TRAIT_PATTERNS, trait_schema};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Query};
use super::microversion::DEPLOY_TEMPLATES;
use super::nodes::{apply_patch, check_name};
use super::paging;
use super::render::{fmt_time, mask_secrets};
use super::responses::{created, links, no_content, ok};
use super::{ApiState, Ctx};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::get;
use ferric_types::models::schema;
use ferric_types::models::{DeployTemplate, DeployTemplateId};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/deploy_templates", get(list).post(create))
        .route("/deploy_templates/{id}", get(show).patch(update).delete(destroy))
}

const NOT_ALLOWED: &str = "The API version does not allow deploy templates";

/// Below 1.55: 404 for reads, 405 for writes, as Ironic's controller routes.
fn need(ctx: &Ctx, method: &Method) -> Result<(), ApiError> {
    if ctx.allows(DEPLOY_TEMPLATES) {
        Ok(())
    } else if method == Method::GET {
        Err(ApiError::not_found(NOT_ALLOWED))
    } else {
        Err(ApiError::method_not_allowed(NOT_ALLOWED))
    }
}

/// Ironic's DEPLOY_STEP_SCHEMA.
pub fn step_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "args": {"type": "object"},
            "interface": {"type": "string",
                          "enum": ["vendor", "power", "management", "firmware", "deploy", "bios", "raid"]},
            "priority": {"anyOf": [{"type": "integer", "minimum": 0},
                                   {"type": "string", "minLength": 1, "pattern": "^[0-9]+$"}]},
            "step": {"type": "string", "minLength": 1},
        },
        "required": ["interface", "step", "args", "priority"],
        "additionalProperties": false,
    })
}

fn template_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "description": {"type": ["string", "null"], "maxLength": 255},
            "extra": {"type": ["object", "null"]},
            "name": trait_schema(),
            "steps": {"type": "array", "items": step_schema(), "minItems": 1},
            "uuid": {"type": ["string", "null"]},
        },
        "required": ["steps", "name"],
        "additionalProperties": false,
    })
}

/// `args.schema` + duplicate steps + UUID check, for a body named `name`.
fn validate(name: &str, v: &Value) -> Result<(), ApiError> {
    schema::validate_arg(name, &template_schema(), v, TRAIT_PATTERNS).map_err(ApiError::bad_request)?;
    let steps = v["steps"].as_array().cloned().unwrap_or_default();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut dups: Vec<String> = Vec::new();
    for s in &steps {
        let key = (s["interface"].as_str().unwrap_or("").to_string(), s["step"].as_str().unwrap_or("").to_string());
        if seen.contains(&key) {
            let d = format!("interface: {}, step: {}", key.0, key.1);
            if !dups.contains(&d) {
                dups.push(d);
            }
        } else {
            seen.push(key);
        }
    }
    if !dups.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Deploy template invalid: Duplicate deploy steps. A template cannot have multiple deploy steps with the same interface and step. Duplicates: {}.",
            dups.join("; ")
        )));
    }
    if let Some(Value::String(u)) = v.get("uuid") {
        if u.parse::<uuid::Uuid>().is_err() {
            return Err(ApiError::bad_request(format!("Expected UUID for uuid: {u}")));
        }
    }
    Ok(())
}

/// Steps as stored: priorities as integers.
fn normalize_steps(steps: &[Value]) -> Vec<Value> {
    steps
        .iter()
        .map(|s| {
            let priority = match &s["priority"] {
                Value::String(p) => p.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
                other => other.clone(),
            };
            json!({"interface": s["interface"], "step": s["step"], "args": s["args"], "priority": priority})
        })
        .collect()
}

fn doc(ctx: &Ctx, t: &DeployTemplate) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(t.uuid.to_string()));
    m.insert("created_at".into(), json!(fmt_time(&t.created_at)));
    m.insert("updated_at".into(), t.updated_at.as_ref().map(|x| json!(fmt_time(x))).unwrap_or(Value::Null));
    m.insert("name".into(), json!(t.name));
    m.insert("extra".into(), Value::Object(t.extra.clone()));
    m.insert("links".into(), links(&ctx.base, &format!("deploy_templates/{}", t.uuid)));
    let steps: Vec<Value> = t
        .steps
        .iter()
        .map(|s| {
            let args = match s.get("args") {
                Some(Value::Object(a)) if !a.is_empty() => mask_secrets(a),
                Some(other) => other.clone(),
                None => json!({}),
            };
            json!({"interface": s["interface"], "step": s["step"], "args": args, "priority": s["priority"]})
        })
        .collect();
    m.insert("steps".into(), Value::Array(steps));
    Value::Object(m)
}

fn load_template(state: &ApiState, ident: &str) -> Result<DeployTemplate, ApiError> {
    if ident.parse::<DeployTemplateId>().is_err() && check_name(ident).is_err() {
        return Err(ApiError::bad_request(format!("Expected a logical name or UUID but received {ident}.")));
    }
    Ok(state.db.get_deploy_template(ident)?)
}

async fn list(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    need(&ctx, &Method::GET)?;
    let (fields, detail) = paging::return_fields(&q, &["uuid", "name"], true)?;
    let page = paging::page(&q, &["id", "uuid", "name", "created_at", "updated_at"], &["extra", "steps"])?;
    let rows = state.db.list_deploy_templates(&page)?;
    let mut items = Vec::with_capacity(rows.len());
    for t in &rows {
        let mut d = doc(&ctx, t);
        paging::sanitize(&mut d, fields.as_deref())?;
        items.push(d);
    }
    let markers: Vec<String> = rows.iter().map(|t| t.uuid.to_string()).collect();
    let mut args = vec![("sort_key", page.sort_key.clone()), ("sort_dir", q.get("sort_dir").unwrap_or("asc").into())];
    if let Some(d) = detail {
        args.push(("detail", if d { "True".into() } else { "False".into() }));
    }
    if let Some(f) = &fields {
        args.push(("fields", f.join(",")));
    }
    ok(&paging::collection(&ctx, "deploy_templates", items, &markers, page.limit, "deploy_templates", &args))
}

async fn show(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>, q: Query) -> ApiResult {
    need(&ctx, &Method::GET)?;
    let t = load_template(&state, &id)?;
    let mut d = doc(&ctx, &t);
    paging::sanitize(&mut d, paging::field_list(&q).as_deref())?;
    ok(&d)
}

async fn create(State(state): State<ApiState>, ctx: Ctx, JsonBody(body): JsonBody<Value>) -> ApiResult {
    need(&ctx, &Method::POST)?;
    validate("template", &body)?;
    let uuid = match body.get("uuid").and_then(|u| u.as_str()) {
        Some(u) => u.parse().map_err(|_| ApiError::bad_request(format!("Expected UUID for uuid: {u}")))?,
        None => DeployTemplateId(state.clock.new_uuid()),
    };
    let t = DeployTemplate {
        uuid,
        name: body["name"].as_str().unwrap_or_default().to_string(),
        steps: normalize_steps(body["steps"].as_array().map(Vec::as_slice).unwrap_or_default()),
        extra: body.get("extra").and_then(|e| e.as_object()).cloned().unwrap_or_default(),
        created_at: state.clock.now(),
        updated_at: None,
    };
    state.db.create_deploy_template(&t)?;
    created(format!("{}/v1/deploy_templates/{}", ctx.base, t.uuid), &doc(&ctx, &t))
}

async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult {
    need(&ctx, &Method::PATCH)?;
    let allowed = ["extra", "name", "steps", "description"];
    let ops = patch.as_array().ok_or_else(|| ApiError::bad_request("Invalid patch: a JSON array was expected."))?;
    for op in ops {
        let path = op.get("path").and_then(|p| p.as_str()).unwrap_or_default();
        if !allowed.contains(&path.split('/').nth(1).unwrap_or_default()) {
            return Err(ApiError::bad_request(format!(
                "Cannot patch {path}. Only the following can be updated: {}",
                allowed.join(", ")
            )));
        }
    }
    let t = load_template(&state, &id)?;
    let mut d = json!({"name": t.name, "extra": t.extra, "steps": t.steps, "description": null});
    let writable = |f: &str| allowed.contains(&f).then_some(DEPLOY_TEMPLATES);
    apply_patch(&mut d, patch, &ctx, &[], &writable)?;
    for s in d["steps"].as_array().cloned().unwrap_or_default() {
        schema::validate_arg("patch", &step_schema(), &s, TRAIT_PATTERNS).map_err(ApiError::bad_request)?;
    }
    validate("patch", &d)?;
    let mut updated = t.clone();
    updated.name = d["name"].as_str().unwrap_or_default().to_string();
    updated.extra = d.get("extra").and_then(|e| e.as_object()).cloned().unwrap_or_default();
    updated.steps = normalize_steps(d["steps"].as_array().map(Vec::as_slice).unwrap_or_default());
    updated.updated_at = Some(state.clock.now());
    state.db.update_deploy_template(&updated)?;
    ok(&doc(&ctx, &updated))
}

async fn destroy(State(state): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    need(&ctx, &Method::DELETE)?;
    let t = load_template(&state, &id)?;
    state.db.destroy_deploy_template(t.uuid)?;
    no_content()
}
