//! HTTP boot server: iPXE scripts, deploy and instance kernels/ramdisks from the HTTP root.
//!
//! Names are confined with the same [`resolve`] as TFTP (no `..`, no symlink out of the root).
//! Small files (scripts, configs) are read in the same blocking call that resolves their name
//! and answered from memory; everything else goes to tower-http's `ServeFile`, which implements
//! HEAD, conditional requests and byte ranges (206 / 416), and streams large files.

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::tftp::{PathError, resolve};

/// Files up to this size are answered from memory. `ServeFile` makes four or five blocking-pool
/// round trips per file (open, metadata, seek, reads), which cost a small file more than its
/// content; one blocking call resolves, opens and reads it here.
const INLINE_MAX: u64 = 256 << 10;

/// The boot server's routes over `http_root`; the caller serves it on its own listener (or
/// calls it in-process in a simulation).
pub fn router(http_root: impl Into<PathBuf>) -> Router {
    Router::new().route("/{*path}", get(serve)).with_state(Arc::new(http_root.into()))
}

/// What the blocking call found for a name.
enum Found {
    /// A small file, read whole.
    Inline { path: PathBuf, data: Bytes, modified: Option<SystemTime> },
    /// A file for `ServeFile`.
    Path(PathBuf),
}

async fn serve(State(root): State<Arc<PathBuf>>, Path(path): Path<String>, req: Request) -> Response {
    let name = path.clone();
    let inline = answerable_inline(&req);
    let found = ferric_types::blocking::run(move || find(&root, &name, inline)).await;
    let file = match found {
        Ok(Ok(Found::Inline { path, data, modified })) => match inline_response(&req, &path, data, modified) {
            Some(resp) => return resp,
            None => path,
        },
        Ok(Ok(Found::Path(p))) => p,
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

/// A GET or HEAD without conditions: what this server answers itself (conditional requests go
/// to `ServeFile`).
fn answerable_inline(req: &Request) -> bool {
    use header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && ![IF_MODIFIED_SINCE, IF_UNMODIFIED_SINCE, IF_MATCH, IF_NONE_MATCH, IF_RANGE]
            .iter()
            .any(|h| req.headers().contains_key(h))
}

/// Resolves `name` under `root` and, with `inline`, reads the file if it is small.
fn find(root: &FsPath, name: &str, inline: bool) -> Result<Found, PathError> {
    let path = resolve(root, name)?;
    if inline && let Some((data, modified)) = read_small(&path) {
        return Ok(Found::Inline { path, data, modified });
    }
    Ok(Found::Path(path))
}

fn read_small(path: &FsPath) -> Option<(Bytes, Option<SystemTime>)> {
    let mut f = std::fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > INLINE_MAX {
        return None;
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut data).ok()?;
    Some((data.into(), meta.modified().ok()))
}

/// The response `ServeFile` gives for a small file read whole: 200, or 206 for one satisfiable
/// range. `None` for what only `ServeFile` answers (several ranges, an unsatisfiable one).
/// HEAD gets the same headers; axum drops the body.
fn inline_response(req: &Request, path: &FsPath, data: Bytes, modified: Option<SystemTime>) -> Option<Response> {
    let len = data.len() as u64;
    let mut resp = match req.headers().get(header::RANGE) {
        None => Response::new(Body::from(data)),
        Some(v) => {
            let ranges = http_range_header::parse_range_header(v.to_str().ok()?).ok()?.validate(len).ok()?;
            let [range] = ranges.as_slice() else { return None };
            let (start, end) = (*range.start(), *range.end());
            if start > end || end >= len {
                return None;
            }
            let mut r = Response::new(Body::from(data.slice(start as usize..=end as usize)));
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            r.headers_mut().insert(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}").parse().ok()?);
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            r
        }
    };
    let h = resp.headers_mut();
    let mime = mime_guess::from_path(path).first_raw().unwrap_or("application/octet-stream");
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.entry(header::CONTENT_LENGTH).or_insert(HeaderValue::from(len));
    if let Some(m) = modified {
        h.insert(header::LAST_MODIFIED, httpdate::fmt_http_date(m).parse().ok()?);
    }
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For every request this server answers itself, the answer is `ServeFile`'s: status,
    /// headers and body.
    #[tokio::test]
    async fn small_files_are_answered_as_the_file_service_answers() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for name in ["boot.ipxe", "deploy_kernel", "grub.cfg", "config.json"] {
            std::fs::write(dir.path().join(name), &content).unwrap();
        }
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        let ranges = [None, Some("bytes=0-0"), Some("bytes=10-19"), Some("bytes=4990-"), Some("bytes=-7")];
        for name in ["boot.ipxe", "deploy_kernel", "grub.cfg", "config.json", "empty"] {
            for method in [Method::GET, Method::HEAD] {
                for range in ranges {
                    let build = || {
                        let mut b = Request::builder().method(method.clone()).uri(format!("/{name}"));
                        if let Some(r) = range {
                            b = b.header(header::RANGE, r);
                        }
                        b.body(Body::empty()).unwrap()
                    };
                    let path = dir.path().join(name);
                    let Some((data, modified)) = read_small(&path) else { panic!("{name} is small") };
                    let ours = inline_response(&build(), &path, data, modified);
                    let theirs = ServeFile::new(&path).oneshot(build()).await.unwrap();
                    let Some(ours) = ours else {
                        // Only a range of an empty file falls through to the file service here.
                        assert!(name == "empty" && range.is_some(), "{name} {range:?}");
                        continue;
                    };
                    let what = format!("{method} {name} {range:?}");
                    assert_eq!(ours.status(), theirs.status(), "{what}");
                    assert_eq!(ours.headers(), theirs.headers(), "{what}");
                    let ours = axum::body::to_bytes(ours.into_body(), usize::MAX).await.unwrap();
                    let theirs = axum::body::to_bytes(Body::new(theirs.into_body()), usize::MAX).await.unwrap();
                    if method == Method::GET {
                        assert_eq!(ours, theirs, "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn conditional_and_other_requests_go_to_the_file_service() {
        let get = |h: Option<(header::HeaderName, &str)>, m: Method| {
            let mut b = Request::builder().method(m).uri("/x");
            if let Some((k, v)) = h {
                b = b.header(k, v);
            }
            answerable_inline(&b.body(Body::empty()).unwrap())
        };
        assert!(get(None, Method::GET));
        assert!(get(None, Method::HEAD));
        assert!(get(Some((header::RANGE, "bytes=0-0")), Method::GET));
        assert!(!get(None, Method::POST));
        for h in [header::IF_MODIFIED_SINCE, header::IF_NONE_MATCH, header::IF_RANGE, header::IF_UNMODIFIED_SINCE] {
            assert!(!get(Some((h, "x")), Method::GET));
        }
    }
}
