//! In-process HTTP for simulations: the [`HttpClient`] seam answered by axum `Router`s (or any
//! tower service) registered per host, so a paused-clock run exercises the real request and
//! response bytes without sockets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use ferric_types::http::{HttpClient, HttpError, HttpRequest, HttpResponse};
use futures::StreamExt;
use futures::future::BoxFuture;

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
