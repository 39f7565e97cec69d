//! The version documents at `/` and `/v1`, and the answer to a path no route matches.

use super::error::{ApiError, ApiResult};
use super::microversion as mv;
use super::responses::ok;
use super::{Ctx, MAX_MINOR, MIN_MINOR};
use axum::http::StatusCode;
use serde_json::{Value, json};

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
        ("portgroups", mv::PORTGROUPS),
        ("volume", mv::VOLUME),
        ("lookup", mv::RAMDISK_ENDPOINTS),
        ("heartbeat", mv::RAMDISK_ENDPOINTS),
        ("conductors", mv::CONDUCTORS),
        ("allocations", mv::ALLOCATIONS),
        ("events", mv::EVENTS),
        ("deploy_templates", mv::DEPLOY_TEMPLATES),
        ("shards", mv::SHARDS),
        ("continue_inspection", mv::CONTINUE_INSPECTION),
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
