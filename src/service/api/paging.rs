//! Shared handler plumbing: context extraction, JSON bodies, query strings, links, root documents.

use super::error::{ApiError, ApiResult};
use super::{Ctx, MAX_BODY, MAX_MINOR, MIN_MINOR};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _s: &S) -> Result<Ctx, ApiError> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "request context missing"))
    }
}

/// A JSON request body, size-limited, with errors in Ironic's envelope.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, _s: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request is too large; the limit is {MAX_BODY} bytes."),
            )
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("The request body is empty; JSON was expected."));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON in request body: {e}")))
    }
}

/// Query parameters (last value wins for repeated keys).
pub struct Query(pub BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _s: &S) -> Result<Query, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(q).map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}")))?;
        Ok(Query(pairs.into_iter().collect()))
    }
}

impl Query {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.as_str())
    }

    /// Ironic's boolean parsing for query parameters.
    pub fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => parse_bool(v)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid boolean value for {k}: {v}"))),
        }
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// `[{"href": base/v1/path, "rel": "self"}, {"href": base/path, "rel": "bookmark"}]`.
pub fn links(base: &str, path: &str) -> Value {
    json!([
        {"href": format!("{base}/v1/{path}"), "rel": "self"},
        {"href": format!("{base}/{path}"), "rel": "bookmark"},
    ])
}

/// A JSON response with status.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn ok(body: &Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}

/// 202 with `Location` (Ironic's answer to asynchronous state changes).
pub fn accepted(location: String) -> ApiResult {
    let mut r = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

pub fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v1",
        "links": [{"href": format!("{base}/v1/"), "rel": "self"}],
        "status": "CURRENT",
        "min_version": format!("1.{MIN_MINOR}"),
        "version": format!("1.{MAX_MINOR}"),
    })
}

pub async fn root(ctx: Ctx) -> ApiResult {
    let v = version_doc(&ctx.base);
    ok(&json!({
        "name": "OpenStack Ironic API",
        "description": "Ironic is an OpenStack project which enables the provision and management of baremetal machines.",
        "default_version": v,
        "versions": [v],
    }))
}

pub async fn v1_root(ctx: Ctx) -> ApiResult {
    let b = &ctx.base;
    let res = |name: &str| {
        json!([
            {"href": format!("{b}/v1/{name}/"), "rel": "self"},
            {"href": format!("{b}/{name}/"), "rel": "bookmark"},
        ])
    };
    let mut doc = serde_json::Map::new();
    doc.insert("id".into(), json!("v1"));
    doc.insert(
        "links".into(),
        json!([
            {"href": format!("{b}/v1/"), "rel": "self"},
            {"href": "https://docs.openstack.org//ironic/latest/contributor//webapi.html", "rel": "describedby", "type": "text/html"},
        ]),
    );
    doc.insert(
        "media_types".into(),
        json!({"base": "application/json", "type": "application/vnd.openstack.ironic.v1+json"}),
    );
    for r in ["chassis", "nodes", "ports", "drivers"] {
        doc.insert(r.into(), res(r));
    }
    doc.insert("version".into(), version_doc(b));
    for (r, min) in [
        ("portgroups", 23),
        ("volume", 32),
        ("lookup", 22),
        ("heartbeat", 22),
        ("conductors", 49),
        ("allocations", 52),
        ("events", 54),
        ("deploy_templates", 55),
        ("shards", 82),
        ("continue_inspection", 84),
    ] {
        if ctx.allows(min) {
            doc.insert(r.into(), res(r));
        }
    }
    ok(&Value::Object(doc))
}

pub async fn no_route() -> ApiError {
    ApiError::routing(StatusCode::NOT_FOUND, "The resource could not be found.")
}

/// Parses `limit` (positive, capped at the API's maximum page).
pub fn limit(q: &super::util::Query) -> Result<Option<usize>, ApiError> {
    match q.get("limit") {
        None => Ok(Some(MAX_PAGE)),
        Some(l) => {
            let n: i64 = l.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input for field/attribute limit. Value: {l}. Wrong type. Expected 'int', got 'str'"
                ))
            })?;
            if n <= 0 {
                return Err(ApiError::bad_request("Limit must be positive"));
            }
            Ok(Some((n as usize).min(MAX_PAGE)))
        }
    }
}

/// Largest page a listing returns (Ironic's `max_limit`).
pub const MAX_PAGE: usize = 1000;

/// Sort direction parameter.
pub fn sort_dir(q: &Query) -> Result<crate::db::SortDir, ApiError> {
    match q.get("sort_dir").unwrap_or("asc") {
        "asc" => Ok(crate::db::SortDir::Asc),
        "desc" => Ok(crate::db::SortDir::Desc),
        other => Err(ApiError::bad_request(format!(
            "Invalid sort direction: {other}. Acceptable values are 'asc' or 'desc'"
        ))),
    }
}

/// Sort key parameter, checked against what the store can sort by.
pub fn sort_key(q: &Query, allowed: &[&str]) -> Result<String, ApiError> {
    let k = q.get("sort_key").unwrap_or("id");
    if !allowed.contains(&k) {
        return Err(ApiError::bad_request(format!("The sort_key value \"{k}\" is an invalid field for sorting")));
    }
    Ok(k.to_string())
}

/// `fields` parameter: a comma-separated list, checked against `valid` (needs API 1.8).
pub fn fields(ctx: &Ctx, q: &Query, valid: &dyn Fn(&str) -> Option<u32>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(f) = q.get("fields") else { return Ok(None) };
    if !ctx.allows(8) {
        return Err(ApiError::not_acceptable());
    }
    let mut out = Vec::new();
    for name in f.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match valid(name) {
            None => return Err(ApiError::bad_request(format!("Field {name} is not a valid field."))),
            Some(min) if !ctx.allows(min) => return Err(ApiError::not_acceptable()),
            Some(_) => out.push(name.to_string()),
        }
    }
    Ok(Some(out))
}

/// A `next` link for a page that came back full.
pub fn next_link(ctx: &Ctx, path: &str, args: &[(&str, String)], limit: usize, marker: &str) -> String {
    let mut s = format!("{}/v1/{path}?", ctx.base);
    for (k, v) in args {
        s.push_str(&format!("{k}={v}&"));
    }
    s.push_str(&format!("limit={limit}&marker={marker}"));
    s
}

/// `GET /ferric/trace/{node}`: the messages recorded for a node's deploys, in order, as
/// `{"events": [{at_ms, from, to, label}], "mermaid": "..."}` (ferric's own diagnostic endpoint).
pub async fn trace(
    axum::extract::State(state): axum::extract::State<super::ApiState>,
    ctx: Ctx,
    axum::extract::Path(ident): axum::extract::Path<String>,
) -> ApiResult {
    let n = super::nodes::load(&state, &ctx, &ident)?;
    let events = state.trace.node_events(n.uuid);
    let list: Vec<Value> = events
        .iter()
        .map(|e| json!({"at_ms": e.at_ms, "from": e.from.as_str(), "to": e.to.as_str(), "label": e.label}))
        .collect();
    ok(&json!({"node": n.uuid.to_string(), "events": list, "mermaid": crate::trace::mermaid(&events)}))
}

/// The `limit`, `marker` (a UUID), `sort_key` and `sort_dir` of a listing, as Ironic's
/// collections read them.
pub fn page(q: &Query, sortable: &[&str], unsortable: &[&str]) -> Result<crate::db::Page, ApiError> {
    let marker = match q.get("marker") {
        Some(m) => {
            m.parse::<uuid::Uuid>().map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {m}.")))?;
            Some(m.to_string())
        }
        None => None,
    };
    let key = q.get("sort_key").unwrap_or("id");
    if unsortable.contains(&key) {
        return Err(ApiError::bad_request(format!("The sort_key value {key} is an invalid field for sorting")));
    }
    if !sortable.contains(&key) {
        return Err(ApiError::bad_request(format!("The sort_key value \"{key}\" is an invalid field for sorting")));
    }
    Ok(crate::db::Page { sort_key: key.to_string(), sort_dir: sort_dir(q)?, limit: limit(q)?, marker })
}

/// `?fields=a,b` as a list (no version or name checks).
pub fn field_list(q: &Query) -> Option<Vec<String>> {
    q.get("fields").map(|f| f.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
}

/// Ironic's `get_request_return_fields`: `fields` or `detail` (not both), else the defaults.
pub fn return_fields(
    q: &Query,
    defaults: &[&str],
    detail_allowed: bool,
) -> Result<(Option<Vec<String>>, Option<bool>), ApiError> {
    let detail = q.bool("detail")?;
    if let Some(d) = detail {
        if !detail_allowed {
            return Err(ApiError::bad_request(format!(
                "Invalid query parameter ?detail={} received.",
                if d { "True" } else { "False" }
            )));
        }
    }
    let fields = field_list(q);
    if fields.is_some() && detail == Some(true) {
        return Err(ApiError::bad_request("Can not specify ?detail=True and fields in the same request."));
    }
    if fields.is_none() && detail != Some(true) {
        return Ok((Some(defaults.iter().map(|s| s.to_string()).collect()), detail));
    }
    Ok((fields, detail))
}

/// Keeps only `fields` (and `links`) of a rendered object; unknown names are Ironic's 400.
pub fn sanitize(obj: &mut Value, fields: Option<&[String]>) -> Result<(), ApiError> {
    let Some(fields) = fields else { return Ok(()) };
    let Some(m) = obj.as_object_mut() else { return Ok(()) };
    let invalid: Vec<&str> = fields.iter().filter(|f| !m.contains_key(f.as_str())).map(|s| s.as_str()).collect();
    if !invalid.is_empty() {
        return Err(ApiError::bad_request(format!("Field(s) \"{}\" are not valid", invalid.join(", "))));
    }
    m.retain(|k, _| k == "links" || fields.iter().any(|f| f == k));
    Ok(())
}

/// A collection body `{name: items, next?}` with Ironic's `next` link when the page is full.
pub fn collection(
    ctx: &Ctx,
    name: &str,
    items: Vec<Value>,
    markers: &[String],
    limit: Option<usize>,
    path: &str,
    args: &[(&str, String)],
) -> Value {
    let mut m = serde_json::Map::new();
    let full = limit.is_some_and(|l| l > 0 && markers.len() == l);
    m.insert(name.into(), Value::Array(items));
    if let (true, Some(last), Some(l)) = (full, markers.last(), limit) {
        m.insert("next".into(), Value::String(next_link(ctx, path, args, l, last)));
    }
    Value::Object(m)
}

/// `201 Created` with a body and `Location`.
pub fn created(location: String, body: &Value) -> ApiResult {
    let mut r = json_response(StatusCode::CREATED, body);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// The request body as JSON, or `{}` when empty (Ironic's `method.body`).
pub fn body_or_empty(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    if bytes.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request is too large; the limit is {MAX_BODY} bytes."),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("Invalid JSON in request body: {e}")))
}

/// Orders and pages a small in-memory listing (chassis, portgroups) as the store pages the
/// large ones: stable sort by `key` (rows come in id order), after the `marker` row, `limit`.
pub fn paginate<T>(
    mut rows: Vec<T>,
    page: &crate::db::Page,
    key: impl Fn(&T, &str) -> Option<String>,
    uuid_of: impl Fn(&T) -> String,
    kind: &str,
) -> Result<Vec<T>, ApiError> {
    if page.sort_key != "id" {
        rows.sort_by_key(|r| key(r, &page.sort_key));
    }
    if page.sort_dir == crate::db::SortDir::Desc {
        rows.reverse();
    }
    if let Some(m) = &page.marker {
        let i = rows
            .iter()
            .position(|r| uuid_of(r) == *m)
            .ok_or_else(|| ApiError::not_found(format!("{kind} {m} could not be found.")))?;
        rows.drain(..=i);
    }
    if let Some(l) = page.limit {
        rows.truncate(l);
    }
    Ok(rows)
}
