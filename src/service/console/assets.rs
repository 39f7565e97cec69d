//! Static assets under `/console/static/`: the page script and style sheet, and Mermaid (kept
//! gzip-compressed in the binary by `build.rs`, served compressed to browsers that accept it),
//! each with an ETag so browsers revalidate instead of downloading again.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::io::Read;
use std::sync::LazyLock;

/// Mermaid's browser bundle, gzip-compressed; empty when the build had no npm.
static MERMAID_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mermaid.min.js.gz"));
/// The console's script: polling with ETags, drawing diagrams.
pub static SCRIPT: &str = include_str!("static/console.js");
/// The console's style sheet.
pub static STYLE: &str = include_str!("static/console.css");

/// Whether this build has Mermaid (the node page shows the diagram's text otherwise).
pub fn have_mermaid() -> bool {
    !MERMAID_GZ.is_empty()
}

/// Mermaid's script, uncompressed (for self-contained reports); `None` without npm at build.
pub fn mermaid_js() -> Option<String> {
    if !have_mermaid() {
        return None;
    }
    let mut s = String::new();
    flate2::read::GzDecoder::new(MERMAID_GZ).read_to_string(&mut s).ok()?;
    Some(s)
}

fn etag(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{:016x}\"", super::fnv1a(bytes))).unwrap_or(HeaderValue::from_static("\"0\""))
}

static ETAGS: LazyLock<[HeaderValue; 3]> =
    LazyLock::new(|| [etag(MERMAID_GZ), etag(SCRIPT.as_bytes()), etag(STYLE.as_bytes())]);

fn accepts_gzip(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().split(';').next().is_some_and(|t| t.trim() == "gzip")))
}

/// `GET /console/static/{file}`.
pub async fn asset(Path(file): Path<String>, req: HeaderMap) -> Response {
    let (i, ty) = match file.as_str() {
        "mermaid.min.js" if have_mermaid() => (0, "text/javascript; charset=utf-8"),
        "console.js" => (1, "text/javascript; charset=utf-8"),
        "console.css" => (2, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let tag = ETAGS[i].clone();
    let mut resp = if req.get(header::IF_NONE_MATCH).is_some_and(|v| v == tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match i {
            0 if accepts_gzip(&req) => ([(header::CONTENT_ENCODING, "gzip")], MERMAID_GZ).into_response(),
            0 => match mermaid_js() {
                Some(js) => js.into_response(),
                None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            },
            1 => SCRIPT.into_response(),
            _ => STYLE.into_response(),
        }
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    h.insert(header::ETAG, tag);
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    // Revalidated after a day at most; a new build has new ETags.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    resp
}
