//! HTTP boot server: iPXE scripts, deploy and instance kernels/ramdisks from the HTTP root.
//!
//! Names are confined with the same [`resolve`] as TFTP (no `..`, no symlink out of the root);
//! the resolved file is then served by tower-http's `ServeFile`, which implements HEAD,
//! conditional requests and single byte ranges (206 / 416).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::tftp::{PathError, resolve};

/// The boot server's routes over `http_root`; the caller serves it on its own listener (or
/// calls it in-process in a simulation).
pub fn router(http_root: impl Into<PathBuf>) -> Router {
    Router::new().route("/{*path}", get(serve)).with_state(Arc::new(http_root.into()))
}

async fn serve(State(root): State<Arc<PathBuf>>, Path(path): Path<String>, req: Request) -> Response {
    let name = path.clone();
    let resolved = tokio::task::spawn_blocking(move || resolve(&root, &name)).await;
    let file = match resolved {
        Ok(Ok(p)) => p,
        Ok(Err(PathError::NotFound)) => {
            return (StatusCode::NOT_FOUND, "not found\n").into_response();
        }
        Ok(Err(PathError::AccessViolation)) => {
            tracing::info!(path = %path, "http boot: access violation");
            return (StatusCode::FORBIDDEN, "forbidden\n").into_response();
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    match ServeFile::new(file).oneshot(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(e) => {
            tracing::warn!(error = %e, "http boot: serve failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
