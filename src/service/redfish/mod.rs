//! A Redfish client for the `redfish` hardware type: what real BMCs demand of one, over ferric's
//! [`HttpClient`] seam (reqwest in production, routers called in process on a paused clock in a
//! simulation).
//!
//! - HTTPS with certificates checked unless the node says otherwise ([`TlsVerify`], one client per
//!   policy from the [`HttpConnector`]).
//! - One session (`POST` to the service root's `Links.Sessions`, `X-Auth-Token`) per (address,
//!   user) and password, shared by every call and node, made again after a 401. [`AuthType::Auto`] falls back
//!   to basic authentication when the BMC offers no sessions.
//! - `PATCH` with `If-Match` of the resource's ETag, re-read and retried once on 412.
//! - 503 and 429 honoured with `Retry-After` (a few tries, capped wait); a 202 with a `Location`
//!   is a task monitor, polled until the task ends or a deadline passes.
//! - Every URL comes from `@odata.id` links followed from the service root, and must stay on the
//!   BMC's origin (credentials go nowhere else).
//! - A failure carries the BMC's `@Message.ExtendedInfo` messages; passwords and tokens never
//!   appear in logs, errors or `Debug`.
//!
//! Why not the `nv-redfish` crate (0.22, generated from DMTF's CSDL): its build script compiles
//! the schemas at build time (and needs `nv-redfish-core`, `-csdl-compiler`, `-schema`, none of
//! them in the workspace's lock file or the local registry cache), which on this project's 2-core
//! builds costs far more than the dozen properties ferric reads; its transport is a `Bmc` trait of
//! its own, so sessions, `Retry-After`, task monitors and the paused clock would be re-done on
//! top of it anyway. [`model`] holds hand-written serde types instead: every field optional,
//! unknown properties ignored.

pub mod model;
#[cfg(test)]
mod tests;

use ferric_types::http::{HttpClient, HttpConnector, HttpRequest, TlsVerify, send_with_timeout};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// A secret (password, session token): shown as `******` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

/// How to authenticate (`redfish_auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// A session, or basic authentication when the BMC offers no sessions (the default).
    Auto,
    Session,
    Basic,
}

impl AuthType {
    pub fn parse(s: &str) -> Option<AuthType> {
        match s {
            "auto" => Some(AuthType::Auto),
            "session" => Some(AuthType::Session),
            "basic" => Some(AuthType::Basic),
            _ => None,
        }
    }
}

/// One BMC and the credentials to reach it with.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `scheme://host[:port]/`: where `/redfish/v1/` is.
    pub base: Url,
    pub username: String,
    pub password: Secret,
    pub verify: TlsVerify,
    pub auth: AuthType,
}

impl Endpoint {
    /// Parses a `redfish_address`: `http(s)://host[:port]`, or a plain host (then HTTPS).
    pub fn parse_address(address: &str) -> Result<Url, String> {
        let a = address.trim();
        if a.is_empty() {
            return Err("empty address".into());
        }
        let with_scheme = if a.contains("://") { a.to_owned() } else { format!("https://{a}") };
        let mut url = Url::parse(&with_scheme).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("unsupported scheme {}", url.scheme()));
        }
        if url.host().is_none() {
            return Err("no host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials belong in redfish_username/redfish_password".into());
        }
        url.set_path("/");
        url.set_query(None);
        url.set_fragment(None);
        Ok(url)
    }

    /// `host[:port]` for messages.
    pub fn name(&self) -> String {
        match (self.base.host_str(), self.base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => self.base.to_string(),
        }
    }
}

/// Timeouts and retry bounds.
#[derive(Debug, Clone)]
pub struct RedfishConfig {
    /// Deadline of one request's response head.
    pub request_timeout: Duration,
    /// Tries of a request answered 503/429 (or, for reads, not answered at all).
    pub attempts: u32,
    /// Wait between tries when the BMC gives no `Retry-After`.
    pub retry_wait: Duration,
    /// Longest wait between tries, whatever `Retry-After` says.
    pub max_retry_wait: Duration,
    /// How often a task monitor is polled (unless it asks otherwise).
    pub task_poll_interval: Duration,
    /// How long a task may run.
    pub task_timeout: Duration,
    /// Largest response body read.
    pub body_limit: usize,
}

impl Default for RedfishConfig {
    fn default() -> Self {
        RedfishConfig {
            request_timeout: Duration::from_secs(60),
            attempts: 4,
            retry_wait: Duration::from_secs(2),
            max_retry_wait: Duration::from_secs(30),
            task_poll_interval: Duration::from_secs(5),
            task_timeout: Duration::from_secs(1800),
            body_limit: 4 << 20,
        }
    }
}

/// Why a Redfish call failed. Messages name the BMC and the path, never credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedfishError {
    /// No answer (connection refused, timeout): may work later.
    #[error("Redfish BMC {bmc} did not answer {method} {path}: {message}")]
    Transport { bmc: String, method: String, path: String, message: String },
    /// An error status; `message` is what the BMC said (`@Message.ExtendedInfo`).
    #[error("Redfish BMC {bmc} answered {method} {path} with HTTP {status}: {message}")]
    Status { bmc: String, method: String, path: String, status: u16, message: String },
    /// The credentials were refused.
    #[error("Authentication with Redfish BMC {bmc} failed: {message}")]
    Auth { bmc: String, message: String },
    /// A task monitor did not report an end in time.
    #[error("Redfish task {path} on BMC {bmc} did not finish within {secs} s")]
    TaskTimeout { bmc: String, path: String, secs: u64 },
    /// A task ended badly.
    #[error("Redfish task {path} on BMC {bmc} ended {state}: {message}")]
    TaskFailed { bmc: String, path: String, state: String, message: String },
    /// An answer ferric cannot use (missing link, bad JSON, foreign URL).
    #[error("Unexpected answer from Redfish BMC {bmc}: {message}")]
    Invalid { bmc: String, message: String },
    /// The node's settings cannot reach a BMC (bad CA file...).
    #[error("{0}")]
    Config(String),
}

impl RedfishError {
    /// Worth asking again later (the conductor's power polling does).
    pub fn is_transient(&self) -> bool {
        match self {
            RedfishError::Transport { .. } => true,
            RedfishError::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            RedfishError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An answer. `Debug` leaves out headers and body (a login's answer carries the token).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    /// The request's path (for messages).
    pub path: String,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("path", &self.path)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Reply {
    /// The body as JSON (`Null` when empty).
    pub fn json(&self) -> Result<Value, String> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| format!("invalid JSON: {e}"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The session state of one (address, user).
#[derive(Default)]
struct SessionState {
    token: Option<Secret>,
    /// Bumped at every login: a 401 ends only the session it was answered for.
    generation: u64,
    /// `Auto` found no session service: basic from now on.
    basic: bool,
}

/// Whose session: the BMC's base URL, the user, the password's SHA-256.
type SessionKey = (String, String, [u8; 32]);

/// One session's state, shared by the clients of its (address, user); logins are serialised.
type SharedSession = Arc<tokio::sync::Mutex<SessionState>>;

/// Sessions and clients shared by every node's calls: one session per (address, user).
pub struct RedfishPool {
    connector: Arc<dyn HttpConnector>,
    config: RedfishConfig,
    sessions: parking_lot::Mutex<HashMap<SessionKey, SharedSession>>,
}

impl RedfishPool {
    pub fn new(connector: Arc<dyn HttpConnector>, config: RedfishConfig) -> RedfishPool {
        RedfishPool { connector, config, sessions: parking_lot::Mutex::new(HashMap::new()) }
    }

    pub fn config(&self) -> &RedfishConfig {
        &self.config
    }

    /// A client for `endpoint`, sharing the session of its (address, user).
    pub fn client(&self, endpoint: Endpoint) -> Result<RedfishClient, RedfishError> {
        let http = self
            .connector
            .client(&endpoint.verify)
            .map_err(|e| RedfishError::Config(format!("Redfish BMC {}: {e}", endpoint.name())))?;
        // The password's digest is part of the key: a node with a wrong (or older) password
        // must not ride on a session another node's credentials opened.
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(endpoint.password.expose().as_bytes()).into();
        let key = (endpoint.base.as_str().to_owned(), endpoint.username.clone(), digest);
        let session = self.sessions.lock().entry(key).or_default().clone();
        Ok(RedfishClient { http, endpoint, session, config: self.config.clone() })
    }
}

/// Calls to one BMC.
pub struct RedfishClient {
    http: Arc<dyn HttpClient>,
    endpoint: Endpoint,
    session: SharedSession,
    config: RedfishConfig,
}

impl fmt::Debug for RedfishClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishClient").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

/// Credentials a request carries.
enum Auth {
    None,
    Basic,
    Token(Secret, u64),
}

const ROOT: &str = "/redfish/v1/";

impl RedfishClient {
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn bmc(&self) -> String {
        self.endpoint.name()
    }

    fn invalid(&self, message: impl Into<String>) -> RedfishError {
        RedfishError::Invalid { bmc: self.bmc(), message: message.into() }
    }

    /// A path or URL the BMC gave, resolved against its origin; a URL elsewhere is refused.
    fn url(&self, path: &str) -> Result<Url, RedfishError> {
        let u = self.endpoint.base.join(path).map_err(|e| self.invalid(format!("bad link {path:?}: {e}")))?;
        if u.origin() != self.endpoint.base.origin() {
            return Err(self.invalid(format!("link {path:?} leaves the BMC")));
        }
        Ok(u)
    }

    /// The credentials for the next request: the session's token (logging in first when there
    /// is none), or basic.
    async fn auth(&self) -> Result<Auth, RedfishError> {
        if self.endpoint.auth == AuthType::Basic {
            return Ok(Auth::Basic);
        }
        let mut s = self.session.lock().await;
        if s.basic && self.endpoint.auth == AuthType::Auto {
            return Ok(Auth::Basic);
        }
        if let Some(t) = &s.token {
            return Ok(Auth::Token(t.clone(), s.generation));
        }
        match self.login().await {
            Ok(token) => {
                s.generation += 1;
                s.token = Some(token.clone());
                Ok(Auth::Token(token, s.generation))
            }
            Err(e @ RedfishError::Auth { .. }) => Err(e),
            Err(e) if self.endpoint.auth == AuthType::Auto && !e.is_transient() => {
                tracing::info!(bmc = %self.bmc(), error = %e, "no Redfish session: using basic authentication");
                s.basic = true;
                Ok(Auth::Basic)
            }
            Err(e) => Err(e),
        }
    }

    /// Ends the session a 401 was answered for (not a newer one another call made meanwhile).
    async fn forget_session(&self, generation: u64) {
        let mut s = self.session.lock().await;
        if s.generation == generation {
            s.token = None;
        }
    }

    /// `POST` of the credentials to the service root's `Links.Sessions` (else
    /// `SessionService.Sessions`).
    async fn login(&self) -> Result<Secret, RedfishError> {
        let root: model::ServiceRoot = self.get_as_with(ROOT, &Auth::None).await?;
        let sessions = match root.links.and_then(|l| l.sessions) {
            Some(l) => l.odata_id,
            None => {
                let Some(svc) = root.session_service else {
                    return Err(self.invalid("the service root links no SessionService"));
                };
                let svc: model::SessionService = self.get_as_with(&svc.odata_id, &Auth::None).await?;
                svc.sessions.ok_or_else(|| self.invalid("the SessionService links no Sessions"))?.odata_id
            }
        };
        let body = serde_json::json!({
            "UserName": self.endpoint.username,
            "Password": self.endpoint.password.expose(),
        });
        let reply = match self.busy_retried(Method::POST, &sessions, Some(&body), &[], &Auth::None).await {
            Ok(r) => r,
            Err(RedfishError::Status { status: 401 | 403, message, .. }) => {
                return Err(RedfishError::Auth { bmc: self.bmc(), message });
            }
            Err(e) => return Err(e),
        };
        let token = reply.header("x-auth-token").filter(|t| !t.is_empty()).map(Secret::new);
        tracing::debug!(bmc = %self.bmc(), "Redfish session created");
        token.ok_or_else(|| self.invalid("the new session has no X-Auth-Token"))
    }

    /// One request; any status is an answer (only no answer is an error).
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(HeaderName, String)],
        auth: &Auth,
    ) -> Result<Reply, RedfishError> {
        let url = self.url(path)?;
        let shown = url.path().to_owned();
        let mut req = match body {
            Some(b) => HttpRequest::post_json(url, b).map_err(|e| self.invalid(e.to_string()))?,
            None => HttpRequest::get(url),
        };
        req.method = method.clone();
        req = req
            .header(http::header::ACCEPT, "application/json")
            .header(HeaderName::from_static("odata-version"), "4.0");
        for (k, v) in headers {
            req = req.header(k.clone(), v);
        }
        match auth {
            Auth::None => {}
            Auth::Basic => {
                use base64::Engine;
                let raw = format!("{}:{}", self.endpoint.username, self.endpoint.password.expose());
                let b = base64::engine::general_purpose::STANDARD.encode(raw);
                req = req.secret_header(http::header::AUTHORIZATION, &format!("Basic {b}"));
            }
            Auth::Token(t, _) => req = req.secret_header(HeaderName::from_static("x-auth-token"), t.expose()),
        }
        tracing::debug!(bmc = %self.bmc(), %method, path = %shown, "Redfish request");
        let transport = |message: String| RedfishError::Transport {
            bmc: self.bmc(),
            method: method.to_string(),
            path: shown.clone(),
            message,
        };
        let resp = send_with_timeout(self.http.as_ref(), req, self.config.request_timeout)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status;
        let headers = resp.headers.clone();
        let body = resp.bytes(self.config.body_limit).await.map_err(|e| transport(e.to_string()))?;
        Ok(Reply { status, headers, body, path: shown })
    }

    /// An error status as [`RedfishError::Status`] with what the BMC said.
    fn check(&self, method: &Method, r: Reply) -> Result<Reply, RedfishError> {
        if r.status.is_success() {
            return Ok(r);
        }
        let message = serde_json::from_slice::<model::ErrorBody>(&r.body)
            .ok()
            .and_then(|b| b.text())
            .unwrap_or_else(|| r.status.canonical_reason().unwrap_or("error").to_owned());
        Err(RedfishError::Status {
            bmc: self.bmc(),
            method: method.to_string(),
            path: r.path,
            status: r.status.as_u16(),
            message,
        })
    }

    /// How long a 503/429 asks to wait: `Retry-After` seconds, capped.
    fn retry_after(&self, headers: Option<&HeaderMap>) -> Duration {
        let secs = headers
            .and_then(|h| h.get(http::header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        secs.map(Duration::from_secs).unwrap_or(self.config.retry_wait).min(self.config.max_retry_wait)
    }

    /// A request with the session (made again once after a 401) and bounded retries of 503/429
    /// (and, for reads only, of no answer: a repeated action could act twice).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(HeaderName, String)],
    ) -> Result<Reply, RedfishError> {
        let started = tokio::time::Instant::now();
        let r = self.request_counted(method, path, body, headers).await;
        crate::metrics::METRICS.redfish.observe(started.elapsed(), r.is_ok());
        r
    }

    async fn request_counted(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(HeaderName, String)],
    ) -> Result<Reply, RedfishError> {
        let mut relogged = false;
        loop {
            let auth = self.auth().await?;
            let result = match self.busy_retried(method.clone(), path, body, headers, &auth).await {
                Ok(r) => return Ok(r),
                Err(e) if e.status() == Some(401) => e,
                Err(e) => return Err(e),
            };
            match &auth {
                Auth::Token(_, generation) if !relogged => {
                    tracing::info!(bmc = %self.bmc(), "Redfish session refused: logging in again");
                    self.forget_session(*generation).await;
                    relogged = true;
                }
                _ => {
                    let message = match result {
                        RedfishError::Status { message, .. } => message,
                        other => other.to_string(),
                    };
                    return Err(RedfishError::Auth { bmc: self.bmc(), message });
                }
            }
        }
    }

    /// One request with `auth`, asked again (a few times, waiting as `Retry-After` says, capped)
    /// while the BMC answers 503 or 429, or, for reads, does not answer.
    async fn busy_retried(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(HeaderName, String)],
        auth: &Auth,
    ) -> Result<Reply, RedfishError> {
        let mut tries = 0u32;
        loop {
            tries += 1;
            let (result, answer_headers) = match self.exchange(method.clone(), path, body, headers, auth).await {
                Ok(r) => {
                    let h = r.headers.clone();
                    match self.check(&method, r) {
                        Ok(r) => return Ok(r),
                        Err(e) => (e, Some(h)),
                    }
                }
                Err(e) => (e, None),
            };
            let retry = match &result {
                RedfishError::Status { status: 429 | 503, .. } => true,
                RedfishError::Transport { .. } => method == Method::GET,
                _ => false,
            };
            if !retry || tries >= self.config.attempts.max(1) {
                return Err(result);
            }
            let wait = self.retry_after(answer_headers.as_ref());
            tracing::info!(bmc = %self.bmc(), error = %result, ?wait, "Redfish BMC busy: retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn get_as_with<T: DeserializeOwned>(&self, path: &str, auth: &Auth) -> Result<T, RedfishError> {
        let r = self.busy_retried(Method::GET, path, None, &[], auth).await?;
        serde_json::from_slice(&r.body).map_err(|e| self.invalid(format!("{path}: {e}")))
    }

    /// GET of a resource as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, RedfishError> {
        let r = self.request(Method::GET, path, None, &[]).await?;
        r.json().map_err(|e| self.invalid(format!("{path}: {e}")))
    }

    /// GET of a resource as a model type.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, RedfishError> {
        let v = self.get(path).await?;
        serde_json::from_value(v).map_err(|e| self.invalid(format!("{path}: {e}")))
    }

    /// GET with the resource's ETag (the header, else `@odata.etag`).
    pub async fn get_with_etag(&self, path: &str) -> Result<(Value, Option<String>), RedfishError> {
        let r = self.request(Method::GET, path, None, &[]).await?;
        let v = r.json().map_err(|e| self.invalid(format!("{path}: {e}")))?;
        let etag = r
            .header("etag")
            .map(str::to_owned)
            .or_else(|| v.get("@odata.etag").and_then(Value::as_str).map(str::to_owned));
        Ok((v, etag))
    }

    /// The service root.
    pub async fn root(&self) -> Result<model::ServiceRoot, RedfishError> {
        self.get_as(ROOT).await
    }

    /// PATCH with `If-Match` of the resource's current ETag; on 412 (changed meanwhile) the
    /// resource is read again and the PATCH retried once. A task the BMC starts is waited for.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<(), RedfishError> {
        let mut retried = false;
        loop {
            let (_, etag) = self.get_with_etag(path).await?;
            let headers: Vec<(HeaderName, String)> = etag.into_iter().map(|e| (http::header::IF_MATCH, e)).collect();
            match self.request(Method::PATCH, path, Some(body), &headers).await {
                Ok(r) => return self.finish(r).await.map(|_| ()),
                Err(RedfishError::Status { status: 412, .. }) if !retried => {
                    tracing::info!(bmc = %self.bmc(), path, "Redfish resource changed meanwhile (412): reading it again");
                    retried = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// POST of an action (or any request body); a task the BMC starts is waited for.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, RedfishError> {
        let r = self.request(Method::POST, path, Some(body), &[]).await?;
        self.finish(r).await
    }

    /// DELETE of a resource.
    pub async fn delete(&self, path: &str) -> Result<(), RedfishError> {
        self.request(Method::DELETE, path, None, &[]).await.map(|_| ())
    }

    /// An answer's JSON, after its task when it is a 202 with a task monitor.
    async fn finish(&self, r: Reply) -> Result<Value, RedfishError> {
        if r.status == StatusCode::ACCEPTED {
            if let Some(loc) = r.header("location").map(str::to_owned) {
                return self.wait_task(&loc).await;
            }
            // Some BMCs answer with the Task itself and no Location: follow its link.
            let body = r.json().unwrap_or(Value::Null);
            if body.get("TaskState").is_some()
                && let Some(task) = body.get("@odata.id").and_then(Value::as_str)
            {
                return self.wait_task(task).await;
            }
            return Ok(body);
        }
        r.json().map_err(|e| self.invalid(e))
    }

    /// Polls a task monitor until the task ends (202 while it runs, then its result or the task
    /// resource) or [`RedfishConfig::task_timeout`] passes.
    pub async fn wait_task(&self, monitor: &str) -> Result<Value, RedfishError> {
        let path = self.url(monitor)?.path().to_owned();
        let deadline = tokio::time::Instant::now() + self.config.task_timeout;
        loop {
            let r = self.request(Method::GET, monitor, None, &[]).await?;
            let body = r.json().unwrap_or(Value::Null);
            let task: Option<model::Task> =
                body.get("TaskState").and_then(|_| serde_json::from_value(body.clone()).ok());
            let running = r.status == StatusCode::ACCEPTED || task.as_ref().is_some_and(|t| !t.finished());
            if !running {
                if let Some(t) = task.filter(model::Task::failed) {
                    return Err(RedfishError::TaskFailed {
                        bmc: self.bmc(),
                        path,
                        state: t.task_state.clone().unwrap_or_else(|| "badly".into()),
                        message: t.message_text(),
                    });
                }
                return Ok(body);
            }
            let wait = r
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(self.config.task_poll_interval)
                .min(self.config.max_retry_wait);
            if tokio::time::Instant::now() + wait > deadline {
                return Err(RedfishError::TaskTimeout {
                    bmc: self.bmc(),
                    path,
                    secs: self.config.task_timeout.as_secs(),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The members of a collection.
    pub async fn members(&self, collection: &str) -> Result<Vec<String>, RedfishError> {
        let c: model::Collection = self.get_as(collection).await?;
        Ok(c.members.into_iter().map(|m| m.odata_id).collect())
    }

    /// The System's path: `system_id` (a path, or the `Id` at the end of one) found among the
    /// service root's Systems, or the only System when none is given.
    pub async fn system_path(&self, system_id: Option<&str>) -> Result<String, RedfishError> {
        let root = self.root().await?;
        let systems = root.systems.ok_or_else(|| self.invalid("the service root links no Systems"))?;
        let members = self.members(&systems.odata_id).await?;
        match system_id {
            Some(id) => {
                let want = id.trim_end_matches('/');
                members
                    .into_iter()
                    .find(|m| {
                        let m = m.trim_end_matches('/');
                        m == want || m.rsplit('/').next() == Some(want)
                    })
                    .ok_or_else(|| RedfishError::Invalid {
                        bmc: self.bmc(),
                        message: format!("no System {id} among the BMC's Systems"),
                    })
            }
            None if members.len() == 1 => Ok(members.into_iter().next().unwrap_or_default()),
            None => Err(RedfishError::Invalid {
                bmc: self.bmc(),
                message: format!(
                    "the BMC has {} Systems: set driver_info/redfish_system_id to one of {}",
                    members.len(),
                    members.join(", ")
                ),
            }),
        }
    }
}
