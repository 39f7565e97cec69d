//! The real network for the [`HttpClient`] seam, over reqwest: the agent's calls and downloads,
//! and the conductor's calls to agents.

use std::time::Duration;

use async_trait::async_trait;
use ferric_types::http::{HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, TlsVerify};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

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

/// Clients for BMCs over reqwest, one per TLS policy (built on first use, then shared: each
/// keeps its own connection pool). TLS 1.2 or later; certificates are checked unless the policy
/// says [`TlsVerify::Insecure`].
pub struct ReqwestConnector {
    connect_timeout: Duration,
    clients: parking_lot::Mutex<HashMap<TlsVerify, Arc<dyn HttpClient>>>,
}

impl ReqwestConnector {
    /// A connector whose clients give up connecting after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        Self { connect_timeout, clients: parking_lot::Mutex::new(HashMap::new()) }
    }

    fn build(&self, verify: &TlsVerify) -> Result<ReqwestHttp, HttpError> {
        let b = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .pool_max_idle_per_host(2)
            .no_proxy()
            .tls_version_min(reqwest::tls::Version::TLS_1_2);
        let b = match verify {
            TlsVerify::Default => b,
            TlsVerify::Insecure => b.tls_danger_accept_invalid_certs(true),
            TlsVerify::CaFile(path) => {
                let certs = read_cas(path)?;
                if certs.is_empty() {
                    return Err(HttpError::Request(format!("CA file {} holds no certificate", path.display())));
                }
                b.tls_certs_only(certs)
            }
        };
        let client = b.build().map_err(|e| HttpError::Request(format!("{e:#}")))?;
        Ok(ReqwestHttp { client })
    }
}

/// The CA certificates of a PEM bundle, or of every PEM file in a directory (as OpenSSL's
/// `CApath`, which Ironic's `redfish_verify_ca` may name).
fn read_cas(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let err = |e: &dyn std::fmt::Display| HttpError::Request(format!("CA file {}: {e}", path.display()));
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| err(&e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_owned()]
    };
    let mut certs = Vec::new();
    for f in files {
        let pem = std::fs::read(&f).map_err(|e| err(&e))?;
        // In a directory, files that are not PEM certificates are skipped.
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(c) => certs.extend(c),
            Err(e) if !path.is_dir() => return Err(err(&e)),
            Err(_) => {}
        }
    }
    Ok(certs)
}

impl HttpConnector for ReqwestConnector {
    fn client(&self, verify: &TlsVerify) -> Result<Arc<dyn HttpClient>, HttpError> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(verify) {
            return Ok(c.clone());
        }
        let c: Arc<dyn HttpClient> = Arc::new(self.build(verify)?);
        clients.insert(verify.clone(), c.clone());
        Ok(c)
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

    #[test]
    fn connector_caches_one_client_per_policy() {
        let c = ReqwestConnector::new(Duration::from_secs(1));
        let a = c.client(&TlsVerify::Default).unwrap();
        let b = c.client(&TlsVerify::Default).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let i = c.client(&TlsVerify::Insecure).unwrap();
        assert!(!Arc::ptr_eq(&a, &i));
        let missing = c.client(&TlsVerify::CaFile("/nonexistent/ca.pem".into()));
        assert!(matches!(missing, Err(HttpError::Request(_))));
    }

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
