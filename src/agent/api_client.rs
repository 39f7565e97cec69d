//! The agent's calls to the ferric (or Ironic) API: lookup and heartbeat.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use ferric_types::agent::{HeartbeatRequest, LookupQuery, LookupResponse};
use ferric_types::http::{HttpClient, HttpError, HttpRequest, send_with_timeout};

/// API version header sent (agent token + agent_verify_ca support, as IPA).
pub const IRONIC_API_VERSION: &str = "1.68";

/// Errors of API calls.
#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    /// Network failure.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// 409: the node is locked by the conductor; try again later.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other refusal.
    #[error("HTTP {0}: {1}")]
    Status(u16, String),
    /// The answer could not be used.
    #[error("invalid answer: {0}")]
    Invalid(String),
}

/// Client of `/v1/lookup` and `/v1/heartbeat/{node}`.
#[derive(Clone)]
pub struct ApiClient {
    http: Arc<dyn HttpClient>,
    base: url::Url,
    timeout: Duration,
}

/// Extracts a readable message from an Ironic error body (the double-encoded envelope).
pub fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body).to_string();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return text;
    };
    let inner = v.get("error_message").cloned().unwrap_or(v);
    let inner = match inner {
        serde_json::Value::String(s) => serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s)),
        other => other,
    };
    inner.get("faultstring").or_else(|| inner.get("title")).and_then(|s| s.as_str()).map(str::to_string).unwrap_or(text)
}

impl ApiClient {
    /// Client of the API at `base` (e.g. `http://192.0.2.1:6385`).
    pub fn new(http: Arc<dyn HttpClient>, base: &str, timeout: Duration) -> Result<Self, ApiCallError> {
        let base =
            url::Url::parse(base.trim_end_matches('/')).map_err(|e| ApiCallError::Invalid(format!("API URL: {e}")))?;
        Ok(Self { http, base, timeout })
    }

    fn url(&self, path: &str) -> Result<url::Url, ApiCallError> {
        self.base.join(path).map_err(|e| ApiCallError::Invalid(e.to_string()))
    }

    /// One lookup attempt.
    pub async fn lookup(&self, q: &LookupQuery) -> Result<LookupResponse, ApiCallError> {
        let mut url = self.url("/v1/lookup")?;
        {
            let mut qp = url.query_pairs_mut();
            if let Some(a) = &q.addresses {
                qp.append_pair("addresses", a);
            }
            if let Some(n) = &q.node_uuid {
                qp.append_pair("node_uuid", n);
            }
        }
        let req = HttpRequest::get(url)
            .header(http::header::ACCEPT, "application/json")
            .header(http::HeaderName::from_static("x-openstack-ironic-api-version"), IRONIC_API_VERSION);
        let resp = send_with_timeout(self.http.as_ref(), req, self.timeout).await?;
        let status = resp.status;
        let body = resp.bytes(4 << 20).await?;
        match status {
            StatusCode::OK => {
                let v: LookupResponse =
                    serde_json::from_slice(&body).map_err(|e| ApiCallError::Invalid(format!("lookup answer: {e}")))?;
                Ok(v)
            }
            StatusCode::CONFLICT => Err(ApiCallError::Conflict(error_text(&body))),
            s => Err(ApiCallError::Status(s.as_u16(), error_text(&body))),
        }
    }

    /// One heartbeat (202 expected).
    pub async fn heartbeat(&self, node: &str, hb: &HeartbeatRequest) -> Result<(), ApiCallError> {
        let url = self.url(&format!("/v1/heartbeat/{node}"))?;
        let req = HttpRequest::post_json(url, hb)?
            .header(http::header::ACCEPT, "application/json")
            .header(http::HeaderName::from_static("x-openstack-ironic-api-version"), IRONIC_API_VERSION);
        let resp = send_with_timeout(self.http.as_ref(), req, self.timeout).await?;
        let status = resp.status;
        let body = resp.bytes(1 << 20).await.unwrap_or_default();
        match status {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            StatusCode::CONFLICT => Err(ApiCallError::Conflict(error_text(&body))),
            s => Err(ApiCallError::Status(s.as_u16(), error_text(&body))),
        }
    }
}
