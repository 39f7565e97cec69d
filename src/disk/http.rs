//! The real network for the [`HttpClient`] seam, over reqwest: the agent's calls and downloads,
//! and the conductor's calls to agents.

use std::time::Duration;

use async_trait::async_trait;
use ferric_types::http::{HttpClient, HttpError, HttpRequest, HttpResponse};
use futures::StreamExt;

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
        let shown = crate::download::redact(req.url.as_str());
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
