//! Vendor passthru of a node: listing its vendor interface's methods and calling one.

use super::error::{ApiError, ApiResult};
use super::extract::{Query, body_or_empty};
use super::nodes::load;
use super::responses::{json_response, ok};
use super::{ApiState, Ctx};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{any, get};
use serde_json::json;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/nodes/{node}/vendor_passthru/methods", get(vendor_methods))
        .route("/nodes/{node}/vendor_passthru", any(vendor_call))
}

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
    Ok(json_response(StatusCode::OK, &r.value))
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
    let data = body_or_empty(&body)?;
    let r = state.rpc.vendor_passthru(n.uuid, name, method.as_str().to_string(), data).await?;
    passthru_response(r)
}
