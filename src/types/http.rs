//! The HTTP client seam: the agent's calls to the API and the image store, and the conductor's
//! calls to the agent, go through [`HttpClient`]. The real network is `ferric_disk::http::ReqwestHttp`;
//! a simulation calls axum `Router`s in-process (`ferric_lab::http::TowerHttp`), so it exercises
//! the same request and response bytes on a paused clock.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;

/// Transport errors (no HTTP response).
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// Could not connect, or the connection broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The request could not be built (bad URL...).
    #[error("invalid request: {0}")]
    Request(String),
    /// The body broke off or exceeded its limit.
    #[error("response body: {0}")]
    Body(String),
}

/// A request with a small, buffered body. `Debug` shows the body's length only (it may carry
/// credentials, as a Redfish login does); mark secret headers sensitive (`HeaderValue::set_sensitive`).
#[derive(Clone)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: url::Url,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field(
                "url",
                &format_args!("{}://{}{}", self.url.scheme(), self.url.host_str().unwrap_or(""), self.url.path()),
            )
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl HttpRequest {
    /// A GET.
    pub fn get(url: url::Url) -> Self {
        Self { method: Method::GET, url, headers: HeaderMap::new(), body: Bytes::new() }
    }
    /// A POST of a JSON value.
    pub fn post_json<T: serde::Serialize>(url: url::Url, body: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(body).map_err(|e| HttpError::Request(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        Ok(Self { method: Method::POST, url, headers, body: body.into() })
    }
    /// Adds a header.
    pub fn header(mut self, name: http::HeaderName, value: &str) -> Self {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
    /// Adds a header whose value is a secret (a token, credentials): `Debug` hides it.
    pub fn secret_header(mut self, name: http::HeaderName, value: &str) -> Self {
        if let Ok(mut v) = http::HeaderValue::from_str(value) {
            v.set_sensitive(true);
            self.headers.insert(name, v);
        }
        self
    }
}

/// A streamed response body.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, HttpError>> + Send>>;

/// A response whose body is read as a stream.
pub struct HttpResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: BodyStream,
}

impl HttpResponse {
    /// Reads the whole body, refusing more than `limit` bytes.
    pub async fn bytes(mut self, limit: usize) -> Result<Bytes, HttpError> {
        let mut out = BytesMut::new();
        while let Some(chunk) = self.body.next().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > limit {
                return Err(HttpError::Body(format!("larger than {limit} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Reads and parses a JSON body of at most `limit` bytes.
    pub async fn json<T: DeserializeOwned>(self, limit: usize) -> Result<T, HttpError> {
        let b = self.bytes(limit).await?;
        serde_json::from_slice(&b).map_err(|e| HttpError::Body(format!("invalid JSON: {e}")))
    }
}

/// The seam.
#[async_trait]
pub trait HttpClient: Send + Sync + 'static {
    /// Sends a request; returns once the response head has arrived.
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError>;
}

/// Sends with a deadline on the response head (tokio time, so simulated time applies).
pub async fn send_with_timeout(
    http: &dyn HttpClient,
    req: HttpRequest,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    match tokio::time::timeout(timeout, http.send(req)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(timeout)),
    }
}

/// How a client checks a server's TLS certificate: per BMC (`redfish_verify_ca`), since BMCs
/// often carry self-signed certificates or ones from a site CA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TlsVerify {
    /// The system's root certificates (the default: checked).
    Default,
    /// No check at all (the operator said `redfish_verify_ca=false`).
    Insecure,
    /// Only certificates issued by the CA(s) in this PEM file.
    CaFile(std::path::PathBuf),
}

/// Hands out an [`HttpClient`] per TLS policy: BMCs are reached with the node's own policy,
/// through the network (reqwest) or, in a simulation, routers called in process.
pub trait HttpConnector: Send + Sync + 'static {
    /// A client that checks certificates as `verify` says (clients may be cached and shared).
    fn client(&self, verify: &TlsVerify) -> Result<std::sync::Arc<dyn HttpClient>, HttpError>;
}

/// A connector that returns one client whatever the policy: for in-process routers, where there
/// is no TLS to check.
#[derive(Clone)]
pub struct SameClient(pub std::sync::Arc<dyn HttpClient>);

impl HttpConnector for SameClient {
    fn client(&self, _verify: &TlsVerify) -> Result<std::sync::Arc<dyn HttpClient>, HttpError> {
        Ok(self.0.clone())
    }
}

/// The user and password of an `Authorization: Basic ...` value (RFC 7617); `None` for any other
/// scheme or a malformed value. The API's `http_basic` and the virtual Redfish BMC read it alike.
pub fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}
