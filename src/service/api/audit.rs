//! The API's side of the audit log: one record per write request (POST, PUT, PATCH, DELETE),
//! whatever its outcome, taken after the response so the status and request id are known.

use super::ApiState;
use super::identity::Identity;
use crate::audit::{AuditLog, AuditRecord, rfc3339};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Records `req` if it writes. Only the method, the path (never the query: temporary URLs sign
/// there) and the caller are taken from the request; nothing of its body or headers.
pub(super) async fn record(
    State((state, log)): State<(ApiState, Arc<AuditLog>)>,
    req: Request,
    next: Next,
) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let caller = req.extensions().get::<Identity>().cloned();
    // Before the request: a node it deletes can no longer be looked up by name afterwards.
    let node = node_in_path(&state, &path);
    let resp = next.run(req).await;
    // No identity: nobody authenticated (a 401, or an open route without credentials).
    let caller = resp.extensions().get::<Identity>().cloned().or(caller);
    let request_id = resp.headers().get("x-openstack-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let node = node.or_else(|| created_node(&path, &resp));
    log.write(&AuditRecord {
        time: rfc3339(state.clock.now()),
        kind: "api",
        user: Some(caller.as_ref().map_or_else(|| "anonymous".to_string(), |c| c.user.clone())),
        role: caller.as_ref().map(|c| c.role.as_str()),
        project: caller.and_then(|c| c.project),
        request_id,
        method: Some(method),
        path: Some(path),
        node,
        result: resp.status().as_u16().into(),
        ..Default::default()
    });
    resp
}

/// The node a path names: `/v1/nodes/{ident}/...` (a name is looked up) or an agent's
/// `/v1/heartbeat/{uuid}`.
fn node_in_path(state: &ApiState, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/nodes/").or_else(|| path.strip_prefix("/v1/heartbeat/"))?;
    let ident = rest.split('/').next().filter(|s| !s.is_empty())?;
    match ident.parse::<uuid::Uuid>() {
        Ok(u) => Some(u.to_string()),
        Err(_) => state.db.get_node(ident).ok().map(|n| n.uuid.to_string()),
    }
}

/// The node a create answered with (`Location: .../v1/nodes/{uuid}`).
fn created_node(path: &str, resp: &Response) -> Option<String> {
    if path != "/v1/nodes" {
        return None;
    }
    let loc = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    let last = loc.trim_end_matches('/').rsplit('/').next()?;
    last.parse::<uuid::Uuid>().ok().map(|u| u.to_string())
}
