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
