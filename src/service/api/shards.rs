//! `GET /v1/shards` (API 1.82): how many nodes each shard holds.

use super::error::{ApiError, ApiResult};
use super::microversion::SHARDS;
use super::responses::ok;
use super::{ApiState, Ctx};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/shards", get(shards)).route("/shards/{name}", get(shard_one))
}

fn need_shards(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.allows(SHARDS) { Ok(()) } else { Err(ApiError::not_found("The API version does not allow shards")) }
}

async fn shards(State(state): State<ApiState>, ctx: Ctx) -> ApiResult {
    need_shards(&ctx)?;
    // Nodes without a shard count under the name "None", as Ironic's str(None) does.
    let list: Vec<Value> = state
        .db
        .shard_counts()?
        .into_iter()
        .map(|(name, count)| json!({"name": name.unwrap_or_else(|| "None".into()), "count": count}))
        .collect();
    ok(&json!({"shards": list}))
}

async fn shard_one(ctx: Ctx) -> ApiResult {
    need_shards(&ctx)?;
    Err(ApiError::not_found("The resource could not be found."))
}
