//! REST API, wire-compatible with Ironic v1 (microversions, error envelope, resources).
//!
//! The API reads the database directly and asks the conductor (through [`ConductorApi`]) for
//! anything that needs a node's lock, a driver or hardware.

mod allocations;
mod audit;
pub mod auth;
mod chassis;
mod configdrive;
mod deploy_templates;
mod drivers;
pub mod error;
mod events;
mod extract;
pub mod identity;
mod microversion;
mod node_hardware;
mod node_records;
mod nodes;
mod paging;
pub mod policy;
mod ports;
mod ramdisk;
pub mod render;
mod responses;
mod root;
mod shards;
mod trace;
pub use trace::node_events;
mod vendor;
mod volume;

pub use error::{ApiError, ApiResult};

use crate::db::Db;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferric_types::rpc::ConductorApi;
use ferric_types::trace::Recorder;
use std::sync::Arc;

/// Lowest microversion served (1.1).
pub const MIN_MINOR: u32 = 1;
/// Highest microversion served: the features of every version up to this one are implemented.
pub const MAX_MINOR: u32 = 87;

/// Largest request body accepted (Ironic's default limit is 112 KiB; configdrives need more).
pub const MAX_BODY: usize = 1 << 20;

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub db: Db,
    pub rpc: Arc<dyn ConductorApi>,
    /// Timestamps and identifiers of what the API creates (seeded in a simulation).
    pub clock: ferric_types::clock::Clock,
    /// Base URL for links (`http://host:port`); taken from the request's Host when unset.
    pub public_url: Option<String>,
    pub trace: Recorder,
    /// Routes served beside the Ironic API under its headers and path rules: the image service
    /// (`/v2/images`, temp URLs) when this process serves one.
    pub beside: Option<Router>,
    /// The web console's routes (`/nodes/{ident}`, `/console/...`), served under the same
    /// layers as the API; a browser's `GET /` (one preferring `text/html`) goes to its fleet
    /// page at [`CONSOLE_HOME`] while API clients keep the version document.
    pub console: Option<Router>,
    /// Agents must heartbeat at least this often (seconds; sent at lookup).
    pub agent_heartbeat_timeout: u64,
    /// With several conductors: one silent this long (seconds) is shown as not alive. `None`
    /// when this process's conductor is the only one (it is alive while the API answers).
    pub conductor_alive_timeout: Option<u64>,
    /// Whether the API is served over TLS: links taken from the request's Host are `https://`.
    pub https: bool,
    /// Where writes are recorded (`--audit-log`).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// Who may call: the auth strategy, role map and the agent lookup rate limit.
    pub auth: Arc<auth::Auth>,
}

/// The negotiated microversion's minor number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32);

/// Per-request context: version and link base, and what the caller's role limits (set by the
/// authentication layer).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub version: u32,
    pub base: String,
    /// Listings show only nodes (and their ports) this project owns or leases.
    pub scope: Option<String>,
    /// Not an admin: secrets beyond passwords are masked too (temp URLs, credentials in URLs).
    pub restricted: bool,
}

impl Ctx {
    /// Whether the request's version is 1.`minor` or later; `minor` is one of the
    /// [`microversion`] names, so the check says which feature it gates.
    pub fn allows(&self, minor: u32) -> bool {
        self.version >= minor
    }
}

/// Below `minor` a sub-resource does not route (Ironic's `_lookup` aborts with 404).
fn need_route(ctx: &Ctx, minor: u32) -> Result<(), ApiError> {
    if ctx.allows(minor) {
        Ok(())
    } else {
        Err(ApiError::routing(StatusCode::NOT_FOUND, "The resource could not be found."))
    }
}

/// The API router, with Ironic's headers, version negotiation and error shapes.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/", get(root::v1_root))
        .merge(nodes::routes())
        .merge(ports::routes())
        .merge(chassis::routes())
        .merge(drivers::routes())
        .merge(ramdisk::routes())
        .merge(node_hardware::routes())
        .merge(node_records::routes())
        .merge(vendor::routes())
        .merge(volume::routes())
        .merge(allocations::routes())
        .merge(deploy_templates::routes())
        .merge(events::routes())
        .merge(shards::routes());
    // ferric's own diagnostics live outside Ironic's namespace.
    let ferric = Router::new().route("/trace/{node}", get(trace::trace));
    let mut inner = Router::new()
        .route("/", get(root::root))
        .route("/metrics", get(metrics))
        .nest("/v1", v1)
        .nest("/ferric", ferric)
        .fallback(root::no_route)
        .with_state(state.clone());
    if let Some(beside) = &state.beside {
        inner = inner.merge(beside.clone());
    }
    if let Some(console) = &state.console {
        inner = inner.merge(console.clone());
    }
    // Authentication and policy inside the headers layer: refusals carry Ironic's headers too;
    // the caller it finds rides on the response out to the audit layer.
    let inner = inner
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authorize))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ironic_headers));
    // Ironic accepts `/v1/nodes/` as `/v1/nodes` (python-ironicclient sends both): trim trailing
    // slashes before routing.
    let inner = tower_http::normalize_path::NormalizePath::trim_trailing_slash(inner);
    let app = if state.console.is_some() {
        // Routing picks a route before a router's own middleware runs, so the browser's `/` is
        // rewritten in front of the router (and so before authentication classifies it).
        Router::new().fallback_service(tower::ServiceExt::map_request(inner, browser_home))
    } else {
        Router::new().fallback_service(inner)
    };
    match state.audit.clone() {
        // Outermost, so requests refused by any layer inside are recorded too.
        Some(log) => app.layer(axum::middleware::from_fn_with_state((state, log), audit::record)),
        None => app,
    }
}

/// `GET /metrics`: Prometheus metrics (see [`crate::metrics`]), in OpenMetrics text when the
/// scraper accepts it, else in Prometheus's text format.
async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("application/openmetrics-text")));
    let nodes = state.db.node_state_counts()?;
    let text = crate::metrics::render(&nodes, openmetrics)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let ct = if openmetrics { crate::metrics::OPENMETRICS } else { crate::metrics::PROMETHEUS_TEXT };
    Ok(([(header::CONTENT_TYPE, ct)], text).into_response())
}
/// Where a browser's `GET /` is served from (the console's fleet page).
pub const CONSOLE_HOME: &str = "/console/fleet";

/// `GET /` from a browser (its `Accept` prefers `text/html` to JSON) becomes [`CONSOLE_HOME`],
/// query kept; everything else passes unchanged.
fn browser_home<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    if req.method() == axum::http::Method::GET && req.uri().path() == "/" && prefers_html(req.headers()) {
        let target = match req.uri().query() {
            Some(q) => format!("{CONSOLE_HOME}?{q}"),
            None => CONSOLE_HOME.to_string(),
        };
        if let Ok(uri) = target.parse() {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// Whether `Accept` ranks `text/html` above `application/json` (browsers send
/// `text/html,...,*/*;q=0.8`; API clients send JSON or nothing).
pub fn prefers_html(h: &HeaderMap) -> bool {
    let Some(accept) = h.get(header::ACCEPT).and_then(|a| a.to_str().ok()) else { return false };
    let q = |want: &str| -> Option<f32> {
        accept.split(',').find_map(|part| {
            let mut it = part.split(';');
            let ty = it.next()?.trim();
            if !ty.eq_ignore_ascii_case(want) {
                return None;
            }
            let q = it.find_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse().ok()));
            Some(q.unwrap_or(1.0))
        })
    };
    match (q("text/html"), q("application/json")) {
        (Some(h), Some(j)) => h > j,
        (Some(h), None) => h > 0.0,
        _ => false,
    }
}

fn parse_version(h: &HeaderMap) -> Result<u32, ApiError> {
    let Some(v) = h.get("x-openstack-ironic-api-version") else { return Ok(MIN_MINOR) };
    let s = v.to_str().unwrap_or("").trim();
    if s.eq_ignore_ascii_case("latest") {
        return Ok(MAX_MINOR);
    }
    let bad = || {
        ApiError::bad_request(format!(
            "Invalid value for X-OpenStack-Ironic-API-Version header: {s}. It must be of the form MAJOR.MINOR or \"latest\"."
        ))
    };
    let (maj, min) = s.split_once('.').ok_or_else(bad)?;
    let maj: u32 = maj.parse().map_err(|_| bad())?;
    let min: u32 = min.parse().map_err(|_| bad())?;
    if maj != 1 || !(MIN_MINOR..=MAX_MINOR).contains(&min) {
        let what = if maj != 1 { "major" } else { "minor" };
        return Err(ApiError::routing(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {s} was requested but the {what} version is not supported by this service. The supported version range is: [1.{MIN_MINOR}, 1.{MAX_MINOR}]."
            ),
        ));
    }
    Ok(min)
}

static MIN_HEADER: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
    HeaderValue::from_str(&format!("1.{MIN_MINOR}")).unwrap_or(HeaderValue::from_static("1.1"))
});
static MAX_HEADER: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
    HeaderValue::from_str(&format!("1.{MAX_MINOR}")).unwrap_or(HeaderValue::from_static("1.1"))
});

fn request_id(clock: &ferric_types::clock::Clock) -> HeaderValue {
    let id = format!("req-{}", clock.new_uuid());
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("req-0"))
}

/// Negotiates the microversion, then stamps every response with Ironic's headers and gives
/// bodiless routing errors (405 from the router) the envelope.
async fn ironic_headers(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let rid = request_id(&state.clock);
    let mut resp = match parse_version(req.headers()) {
        Ok(v) => {
            let base = match &state.public_url {
                Some(u) => u.trim_end_matches('/').to_string(),
                None => {
                    let host =
                        req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:6385");
                    let scheme = if state.https { "https" } else { "http" };
                    format!("{scheme}://{host}")
                }
            };
            req.extensions_mut().insert(Ctx { version: v, base, scope: None, restricted: false });
            let mut r = next.run(req).await;
            if r.status() == StatusCode::METHOD_NOT_ALLOWED && r.headers().get(header::CONTENT_TYPE).is_none() {
                let allow = r.headers().get(header::ALLOW).cloned();
                r = ApiError::routing(StatusCode::METHOD_NOT_ALLOWED, "").into_response();
                if let Some(a) = allow {
                    r.headers_mut().insert(header::ALLOW, a);
                }
            } else if r.status() != StatusCode::METHOD_NOT_ALLOWED {
                let h = r.headers_mut();
                h.insert(
                    "x-openstack-ironic-api-version",
                    HeaderValue::from_str(&format!("1.{v}")).unwrap_or(HeaderValue::from_static("1.1")),
                );
            }
            r
        }
        Err(e) => e.into_response(),
    };
    // 405 responses carry no version headers in Ironic (they come from its routing layer).
    let routing_error = resp.status() == StatusCode::METHOD_NOT_ALLOWED;
    let h = resp.headers_mut();
    if !routing_error {
        h.insert("x-openstack-ironic-api-minimum-version", MIN_HEADER.clone());
        h.insert("x-openstack-ironic-api-maximum-version", MAX_HEADER.clone());
    }
    h.insert("x-openstack-request-id", rid.clone());
    h.insert("openstack-request-id", rid);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn browsers_prefer_html_api_clients_do_not() {
        assert!(prefers_html(&accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")));
        assert!(!prefers_html(&accept("application/json")));
        assert!(!prefers_html(&accept("*/*")));
        assert!(!prefers_html(&accept("application/json, text/html;q=0.5")));
        assert!(prefers_html(&accept("text/html;q=0.9, application/json;q=0.5")));
        assert!(!prefers_html(&HeaderMap::new()));
    }
}
