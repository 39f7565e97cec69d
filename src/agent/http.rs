//! The HTTP client seam: the agent's calls to the API and the image store, and the conductor's
//! calls to the agent, go through [`HttpClient`]. [`ReqwestHttp`] is the real network;
//! [`TowerHttp`] calls axum `Router`s (or any tower service) in-process, so a simulation on a
//! paused clock exercises the same request and response bytes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
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

/// A request with a small, buffered body.
#[derive(Debug, Clone)]
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

/// The real network, over reqwest.
#[derive(Clone)]
pub struct ReqwestHttp {
    client: reqwest::Client,
}

impl ReqwestHttp {
    /// A client with a connect timeout; per-request deadlines are the caller's.
    pub fn new(connect_timeout: Duration) -> Result<Self, HttpError> {
        let builder =
            || reqwest::Client::builder().connect_timeout(connect_timeout).pool_max_idle_per_host(2).no_proxy();
        let client = match builder().build() {
            Ok(c) => c,
            // A minimal deploy ramdisk has no CA store for the platform verifier: plain HTTP
            // still works, and HTTPS fails verification (nothing is trusted) instead of passing.
            Err(e) => {
                tracing::warn!(error = %e, "no system CA certificates: HTTPS downloads will be refused");
                builder().tls_certs_only([]).build().map_err(|e| HttpError::Request(e.to_string()))?
            }
        };
        Ok(Self { client })
    }
}

#[async_trait]
impl HttpClient for ReqwestHttp {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        // reqwest's errors quote the whole URL, whose query may carry an agent token or a temp
        // URL signature: errors name the URL without its query instead.
        let shown = super::download::redact(req.url.as_str());
        let resp =
            self.client.request(req.method, req.url).headers(req.headers).body(req.body).send().await.map_err(|e| {
                if e.is_timeout() {
                    HttpError::Timeout(Duration::ZERO)
                } else if e.is_builder() {
                    HttpError::Request(format!("{:#} ({shown})", e.without_url()))
                } else {
                    HttpError::Connect(format!("{:#} ({shown})", e.without_url()))
                }
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes_stream().map(|r| r.map_err(|e| HttpError::Body(e.without_url().to_string())));
        Ok(HttpResponse { status, headers, body: Box::pin(body) })
    }
}

type ServiceFn = Arc<dyn Fn(http::Request<Body>) -> BoxFuture<'static, http::Response<Body>> + Send + Sync>;

/// In-process HTTP: requests go to the tower service registered for the URL's `host:port`
/// (e.g. `api:6385`, `agent-3:9999`); an unknown host is a connection failure.
#[derive(Clone, Default)]
pub struct TowerHttp {
    hosts: Arc<parking_lot::RwLock<HashMap<String, ServiceFn>>>,
}

impl TowerHttp {
    /// No hosts yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `authority` (`host` or `host:port` as in the URL) to `service` (an axum `Router`
    /// or any cloneable tower service).
    pub fn add_host<S>(&self, authority: &str, service: S)
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let f: ServiceFn = Arc::new(move |req| {
            let svc = service.clone();
            Box::pin(async move {
                use tower::ServiceExt;
                match svc.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            })
        });
        self.hosts.write().insert(authority.to_string(), f);
    }

    /// Removes a host (its machine went away: further calls fail to connect).
    pub fn remove_host(&self, authority: &str) {
        self.hosts.write().remove(authority);
    }
}

#[async_trait]
impl HttpClient for TowerHttp {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let host = req.url.host_str().unwrap_or_default().to_string();
        let authority = match req.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let svc = {
            let hosts = self.hosts.read();
            hosts.get(&authority).or_else(|| hosts.get(&host)).cloned()
        };
        let Some(svc) = svc else {
            return Err(HttpError::Connect(format!("no route to {authority}")));
        };
        let mut builder = http::Request::builder().method(req.method).uri(req.url.as_str());
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let request = builder.body(Body::from(req.body)).map_err(|e| HttpError::Request(e.to_string()))?;
        let resp = svc(request).await;
        let (parts, body) = resp.into_parts();
        let body = body.into_data_stream().map(|r| r.map_err(|e| HttpError::Body(e.to_string())));
        Ok(HttpResponse { status: parts.status, headers: parts.headers, body: Box::pin(body) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connection_errors_leave_the_query_out() {
        // A bound socket that never listens: the connection is refused, and nothing else can
        // take the port meanwhile.
        let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        closed.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        let port = closed.local_addr().unwrap().as_socket().unwrap().port();
        let http = ReqwestHttp::new(Duration::from_secs(5)).unwrap();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/v1/commands/?agent_token=s3cret")).unwrap();
        let Err(e) = http.send(HttpRequest::get(url)).await else { panic!("connected to a closed port") };
        let text = e.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}/v1/commands/")), "{text}");
    }
}
