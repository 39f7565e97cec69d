//! Who calls the API, and whether they may: Ironic's `auth_strategy` (`noauth`, `http_basic`
//! against an htpasswd file of bcrypt entries, and `token`, bearer tokens ferric issues and
//! keeps hashed in its database), then [`policy`](super::policy) for what the caller's role
//! allows. One middleware inside [`router`](super::router) does both for every route, sets the
//! caller as an [`Identity`] request extension (the audit log and metrics read it), and refuses
//! writes whose body is not JSON. The ramdisk's lookup is open but rate-limited per client IP.

use super::error::ApiError;
use super::identity::{AuthRole, Identity};
use super::policy::{self, Action, Decision};
use super::{ApiState, Ctx, MAX_BODY};
use crate::db::{ApiToken, Db, DbError};
use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use ferric_types::clock::Clock;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the authentication settings cannot be used (reported at start-up, before anything binds).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "refusing to serve the API on {0} without authentication: with auth strategy noauth anyone who reaches \
         it is an admin. Choose --auth-strategy http_basic or token ([auth] strategy), bind a loopback address, \
         or pass --insecure-noauth ([auth] insecure_noauth = true)"
    )]
    InsecureNoauth(SocketAddr),
    #[error("auth strategy http_basic needs an htpasswd file (--htpasswd FILE or [auth] htpasswd)")]
    NoHtpasswd,
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} line {line}: {reason}")]
    Htpasswd { path: PathBuf, line: usize, reason: String },
    #[error("{path} line {line}: {reason}")]
    RoleMap { path: PathBuf, line: usize, reason: String },
}

/// How API callers are authenticated: Ironic's `auth_strategy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AuthStrategy {
    /// Every caller is an anonymous admin (only on a loopback API address unless
    /// `insecure_noauth`).
    #[default]
    #[value(name = "noauth")]
    Noauth,
    /// HTTP Basic against an Apache htpasswd file of bcrypt entries; roles from `roles` /
    /// `role_map`.
    #[value(name = "http_basic")]
    HttpBasic,
    /// Bearer tokens issued by `ferric token create` (`Authorization: Bearer` or
    /// `X-Auth-Token`), stored hashed in the database.
    #[value(name = "token")]
    Token,
}

impl AuthStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStrategy::Noauth => "noauth",
            AuthStrategy::HttpBasic => "http_basic",
            AuthStrategy::Token => "token",
        }
    }
}

/// API authentication and roles (`[auth]` of the configuration). No secrets live here (the htpasswd file holds the
/// hashes), so the derived `Debug` shows it all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub strategy: AuthStrategy,
    /// The htpasswd file of `http_basic` (bcrypt entries: `htpasswd -B`).
    pub htpasswd: Option<PathBuf>,
    /// Role of each `http_basic` user: `{ alice = "admin", bob = "reader" }`. A user without
    /// one is refused (403), never given a default.
    pub roles: BTreeMap<String, AuthRole>,
    /// Project of `http_basic` users (what node `owner`/`lessee` scoping compares against).
    pub projects: BTreeMap<String, String>,
    /// A file of `user role [project]` lines, added to `roles` and `projects`.
    pub role_map: Option<PathBuf>,
    /// Allows `noauth` on an API address that is not loopback (anyone who reaches it is admin).
    pub insecure_noauth: bool,
    /// Agent lookups allowed per second per client IP (a token bucket; 0 turns the limit off).
    pub lookup_rate: f64,
    /// Lookups a client IP may make at once before `lookup_rate` applies.
    pub lookup_burst: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            strategy: AuthStrategy::Noauth,
            htpasswd: None,
            roles: Default::default(),
            projects: Default::default(),
            role_map: None,
            insecure_noauth: false,
            lookup_rate: 5.0,
            lookup_burst: 50,
        }
    }
}

impl AuthConfig {
    /// Refuses `noauth` on an API address other than loopback unless `insecure_noauth`: checked
    /// before anything binds.
    pub fn check_bind(&self, bind: SocketAddr) -> Result<(), AuthError> {
        if self.strategy == AuthStrategy::Noauth && !bind.ip().is_loopback() && !self.insecure_noauth {
            return Err(AuthError::InsecureNoauth(bind));
        }
        Ok(())
    }
}

/// The API's authentication settings, loaded once.
pub struct Auth {
    strategy: AuthStrategy,
    /// `http_basic` users and their bcrypt hashes.
    users: HashMap<String, String>,
    /// A hash of the users' cost an unknown user's password is checked against, so that an
    /// unknown user takes as long to refuse as a wrong password.
    decoy: Option<String>,
    /// Role and project of each `http_basic` user.
    roles: BTreeMap<String, (AuthRole, Option<String>)>,
    lookups: Option<Limiter>,
    /// Basic credentials verified lately: the SHA-256 of user, password and stored hash, and
    /// until when it stands. A bcrypt verification costs 100 ms at cost 10 (400 ms at 12), and
    /// clients send the same credentials with every request; only successes are kept.
    verified: Mutex<HashMap<[u8; 32], tokio::time::Instant>>,
}

/// How long a verified Basic credential is taken without bcrypt again.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Most verified credentials kept (the cache is emptied when full).
const VERIFIED_MAX: usize = 1024;

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes are not secrets, but there is no reason to print them either.
        f.debug_struct("Auth")
            .field("strategy", &self.strategy)
            .field("users", &self.users.len())
            .field("roles", &self.roles)
            .finish()
    }
}

impl Auth {
    /// No authentication: every caller is an anonymous admin, lookups unlimited.
    pub fn noauth() -> Auth {
        Auth {
            strategy: AuthStrategy::Noauth,
            users: HashMap::new(),
            decoy: None,
            roles: BTreeMap::new(),
            lookups: None,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Loads the htpasswd file and role map the configuration names.
    pub fn from_config(c: &AuthConfig) -> Result<Auth, AuthError> {
        let users = match c.strategy {
            AuthStrategy::HttpBasic => {
                let path = c.htpasswd.as_deref().ok_or(AuthError::NoHtpasswd)?;
                parse_htpasswd(path, &read(path)?)?
            }
            AuthStrategy::Noauth | AuthStrategy::Token => HashMap::new(),
        };
        let mut roles: BTreeMap<String, (AuthRole, Option<String>)> =
            c.roles.iter().map(|(u, r)| (u.clone(), (*r, c.projects.get(u).cloned()))).collect();
        if let Some(path) = &c.role_map {
            for (user, role, project) in parse_role_map(path, &read(path)?)? {
                let project = project.or_else(|| c.projects.get(&user).cloned());
                roles.insert(user, (role, project));
            }
        }
        let lookups = (c.lookup_rate > 0.0).then(|| Limiter::new(c.lookup_rate, c.lookup_burst));
        let decoy = users.values().filter_map(|h| h.get(4..6)?.parse::<u32>().ok()).max().and_then(|cost| {
            let salt: [u8; 16] = rand::random();
            bcrypt::hash_with_salt("decoy", cost, salt).ok().map(|h| h.to_string())
        });
        Ok(Auth { strategy: c.strategy, users, decoy, roles, lookups, verified: Mutex::new(HashMap::new()) })
    }

    pub fn strategy(&self) -> AuthStrategy {
        self.strategy
    }

    /// The caller the request's credentials name.
    async fn authenticate(&self, db: &Db, clock: &Clock, h: &HeaderMap) -> Result<Identity, Refusal> {
        match self.strategy {
            AuthStrategy::Noauth => Ok(Identity::anonymous_admin()),
            AuthStrategy::HttpBasic => {
                let (user, password) = basic_credentials(h).ok_or(Refusal::Unauthenticated)?;
                let Some(hash) = self.users.get(&user).cloned() else {
                    if let Some(decoy) = self.decoy.clone() {
                        let _ = tokio::task::spawn_blocking(move || bcrypt::verify(password, &decoy)).await;
                    }
                    return Err(Refusal::BadCredentials);
                };
                let key: [u8; 32] = Sha256::new()
                    .chain_update(user.as_bytes())
                    .chain_update([0])
                    .chain_update(password.as_bytes())
                    .chain_update([0])
                    .chain_update(hash.as_bytes())
                    .finalize()
                    .into();
                let now = tokio::time::Instant::now();
                let known = self.verified.lock().get(&key).is_some_and(|until| *until > now);
                if !known {
                    // bcrypt is slow on purpose: off the async workers.
                    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                        .await
                        .unwrap_or(false);
                    if !ok {
                        return Err(Refusal::BadCredentials);
                    }
                    let mut v = self.verified.lock();
                    if v.len() >= VERIFIED_MAX {
                        v.clear();
                    }
                    v.insert(key, now + VERIFIED_TTL);
                }
                let (role, project) = self.roles.get(&user).cloned().ok_or(Refusal::NoRole(user.clone()))?;
                Ok(Identity { user, role, project })
            }
            AuthStrategy::Token => {
                let secret = bearer_token(h).ok_or(Refusal::Unauthenticated)?;
                let t =
                    db.find_api_token(&hash_token(secret)).map_err(Refusal::Store)?.ok_or(Refusal::BadCredentials)?;
                if t.revoked_at.is_some() || t.expires_at.is_some_and(|e| e <= clock.now()) {
                    return Err(Refusal::BadCredentials);
                }
                let role = t.role.parse().map_err(|_| Refusal::NoRole(t.user.clone()))?;
                Ok(Identity { user: t.user, role, project: t.project })
            }
        }
    }

    fn challenge(&self) -> HeaderValue {
        HeaderValue::from_static(match self.strategy {
            AuthStrategy::Token => "Bearer realm=\"ferric\"",
            _ => "Basic realm=\"ferric\"",
        })
    }
}

fn read(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Read { path: path.to_path_buf(), source })
}

/// Parses an Apache htpasswd file: `user:hash` lines, `#` comments. Only bcrypt hashes are
/// accepted (as Ironic's http_basic); any other kind is refused here, at load, not at login.
pub fn parse_htpasswd(path: &Path, text: &str) -> Result<HashMap<String, String>, AuthError> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| AuthError::Htpasswd { path: path.to_path_buf(), line: i + 1, reason };
        let (user, hash) = line.split_once(':').ok_or_else(|| err("expected user:hash".into()))?;
        if user.is_empty() {
            return Err(err("empty user name".into()));
        }
        if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
            return Err(err(format!(
                "user {user}: only bcrypt entries ($2y$, $2b$, $2a$) are supported (create them with `htpasswd -B`)"
            )));
        }
        if bcrypt::verify("", hash).is_err() {
            return Err(err(format!("user {user}: malformed bcrypt hash")));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    Ok(users)
}

/// Parses a role map: `user role [project]` lines, `#` comments.
pub fn parse_role_map(path: &Path, text: &str) -> Result<Vec<(String, AuthRole, Option<String>)>, AuthError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| AuthError::RoleMap { path: path.to_path_buf(), line: i + 1, reason };
        let f: Vec<&str> = line.split_whitespace().collect();
        let (user, role, project) = match f.as_slice() {
            [u, r] => (u, r, None),
            [u, r, p] => (u, r, Some(p.to_string())),
            _ => return Err(err("expected `user role [project]`".into())),
        };
        out.push((user.to_string(), role.parse().map_err(err)?, project));
    }
    Ok(out)
}

/// `Authorization: Basic ...`'s user and password.
fn basic_credentials(h: &HeaderMap) -> Option<(String, String)> {
    ferric_types::http::basic_credentials(h.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// `Authorization: Bearer T`, or `X-Auth-Token: T` (python-ironicclient's `--os-token`).
fn bearer_token(h: &HeaderMap) -> Option<&str> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, rest) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|t| !t.is_empty());
    }
    h.get("x-auth-token").and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty())
}

// ---------------------------------------------------------------- tokens

/// The stored form of a token secret: SHA-256, hex. A secret is 32 random bytes, so a fast hash
/// is enough (nothing to brute-force, unlike a password).
pub fn hash_token(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Issues a token for `user` with `role` (and `project`), valid for `ttl` (`None`: until
/// revoked): the secret, shown once, and the stored record.
pub fn issue_token(
    db: &Db,
    clock: &Clock,
    user: &str,
    role: AuthRole,
    project: Option<&str>,
    ttl: Option<Duration>,
) -> Result<(String, ApiToken), DbError> {
    let bytes: [u8; 32] = clock.random();
    let secret = format!("ferric_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let now = clock.now();
    let expires_at = ttl.map(|d| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
    let t = ApiToken {
        id: clock.new_uuid().to_string(),
        user: user.to_string(),
        role: role.as_str().to_string(),
        project: project.map(str::to_string),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    db.insert_api_token(&t, &hash_token(&secret))?;
    Ok((secret, t))
}

/// A lifetime such as `8h`, `30m`, `7d`, `3600s` or `3600`; `never` for none. Hand-written: four
/// units do not need a crate.
pub fn parse_ttl(s: &str) -> Result<Option<Duration>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("invalid lifetime {s:?}: expected e.g. 8h, 30m, 7d or never"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("invalid lifetime {s:?}: the unit is s, m, h or d")),
    };
    if n == 0 {
        return Err("a token's lifetime must be more than 0".into());
    }
    Ok(Some(Duration::from_secs(n.saturating_mul(secs))))
}

/// Whether `t` is usable at `now`, for listings.
pub fn token_state(t: &ApiToken, now: DateTime<Utc>) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

/// `ferric token create`: issues a token on the system clock, valid for `expires` (as
/// [`parse_ttl`] reads it); the secret, to be printed once.
pub fn cli_create(db: &Db, user: &str, role: AuthRole, project: Option<&str>, expires: &str) -> anyhow::Result<String> {
    let ttl = parse_ttl(expires).map_err(anyhow::Error::msg)?;
    Ok(issue_token(db, &Clock::system(), user, role, project, ttl)?.0)
}

/// `ferric token list`: a table of every token (never a secret).
pub fn cli_list(db: &Db) -> Result<String, DbError> {
    let now = Clock::system().now();
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut out = format!(
        "{:<36}  {:<16}  {:<6}  {:<16}  {:<20}  {:<20}  STATE\n",
        "ID", "USER", "ROLE", "PROJECT", "CREATED", "EXPIRES"
    );
    for t in db.list_api_tokens()? {
        out.push_str(&format!(
            "{:<36}  {:<16}  {:<6}  {:<16}  {:<20}  {:<20}  {}\n",
            t.id,
            t.user,
            t.role,
            t.project.as_deref().unwrap_or("-"),
            time(t.created_at),
            t.expires_at.map_or("never".to_string(), time),
            token_state(&t, now)
        ));
    }
    Ok(out)
}

/// `ferric token revoke ID`.
pub fn cli_revoke(db: &Db, id: &str) -> Result<(), DbError> {
    db.revoke_api_token(id, Clock::system().now())
}

// ---------------------------------------------------------------- lookup rate limit

/// Token buckets per client IP, on tokio's clock (deterministic under a paused clock).
struct Limiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, tokio::time::Instant)>>,
}

/// Buckets kept before full ones are dropped.
const MAX_BUCKETS: usize = 10_000;

impl Limiter {
    fn new(rate: f64, burst: u32) -> Limiter {
        Limiter { rate, burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token from `ip`'s bucket, if it has one.
    fn allow(&self, ip: IpAddr) -> bool {
        let now = tokio::time::Instant::now();
        let mut b = self.buckets.lock();
        if b.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            b.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = b.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

// ---------------------------------------------------------------- the middleware

/// Why a request is refused before it reaches a handler.
enum Refusal {
    /// No credentials (401).
    Unauthenticated,
    /// Wrong, unknown, expired or revoked credentials (401).
    BadCredentials,
    /// Authenticated, but no role is mapped to the user (403).
    NoRole(String),
    /// The token store failed.
    Store(DbError),
}

impl Refusal {
    fn response(self, auth: &Auth) -> Response {
        let unauthorized = |msg: &str| {
            let mut r = ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, auth.challenge());
            r
        };
        match self {
            Refusal::Unauthenticated => unauthorized("Authentication required."),
            Refusal::BadCredentials => unauthorized("Invalid credentials."),
            Refusal::NoRole(user) => {
                ApiError::new(StatusCode::FORBIDDEN, format!("User {user} has no role: access denied.")).into_response()
            }
            Refusal::Store(e) => ApiError::from(e).into_response(),
        }
    }
}

fn forbidden(action: Action) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, format!("{} is disallowed by policy", action.policy_name())).into_response()
}

/// A write whose body is not JSON is refused (415) on Ironic's and ferric's own routes, before
/// any handler reads it. Image uploads (`/v2/images/{id}/file`, octet-stream) are the image
/// service's, not checked here.
fn check_json_body(req: &Request) -> Result<(), ApiError> {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return Ok(());
    }
    let path = req.uri().path();
    if !(path == "/v1" || path.starts_with("/v1/") || path.starts_with("/ferric/")) {
        return Ok(());
    }
    if req.body().size_hint().exact() == Some(0) {
        return Ok(());
    }
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        return Ok(());
    }
    let shown = if ct.is_empty() { "(none)" } else { ct };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("The media type {shown} is not supported: the request body must be application/json."),
    ))
}

/// Refuses a caller scoped to a project the node or port a request names when its project
/// neither owns nor leases the node: 404, as Ironic answers for a node the caller cannot see.
fn check_visible(state: &ApiState, project: &str, c: &policy::Classified) -> Result<(), ApiError> {
    let hidden = |kind: &str, ident: &str| ApiError::not_found(format!("{kind} {ident} could not be found."));
    let node_visible =
        |n: &ferric_types::models::Node| policy::node_visible(project, n.owner.as_deref(), n.lessee.as_deref());
    if let Some(ident) = &c.node {
        match state.db.get_node(ident) {
            Ok(n) if node_visible(&n) => {}
            Ok(_) | Err(DbError::NotFound { .. }) => return Err(hidden("Node", ident)),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(ident) = &c.port {
        let port = match state.db.get_port(ident) {
            Ok(p) => p,
            Err(DbError::NotFound { .. }) => return Err(hidden("Port", ident)),
            Err(e) => return Err(e.into()),
        };
        match state.db.get_node_by_uuid(port.node_uuid) {
            Ok(n) if node_visible(&n) => {}
            Ok(_) | Err(DbError::NotFound { .. }) => return Err(hidden("Port", ident)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The middleware: authenticates, applies the policy, sets [`Identity`] (request and response
/// extensions) and narrows the request's [`Ctx`] to what the caller may see. Refusals change
/// nothing: they answer before any handler runs. Open routes (version discovery, the agent's,
/// temp URLs) carry an `Identity` only when the request had valid credentials (always under
/// `noauth`, as the anonymous admin).
pub async fn authorize(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let auth = state.auth.clone();
    // Both lookups issue an agent token: limited per client address.
    if matches!(req.uri().path(), "/v1/lookup" | "/v1/continue_inspection") {
        let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip());
        if let (Some(l), Some(ip)) = (&auth.lookups, ip) {
            if !l.allow(ip) {
                let mut r =
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many lookups from this address; retry later.")
                        .into_response();
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        }
    }
    let who = if auth.strategy == AuthStrategy::Noauth {
        // Everyone is the anonymous admin: nothing to classify (simulations take this path for
        // every call). An embedder that authenticated the caller itself may hand in who it is
        // (a request extension no client can set).
        Some(req.extensions().get::<Identity>().cloned().unwrap_or_else(Identity::anonymous_admin))
    } else {
        let c = policy::classify(req.method(), req.uri().path());
        if matches!(c.action, Action::Public | Action::Agent) {
            // Open routes ignore bad credentials; good ones still name the caller.
            auth.authenticate(&state.db, &state.clock, req.headers()).await.ok()
        } else {
            match authorize_caller(&state, &auth, &c, req).await {
                Ok((r, w)) => {
                    req = r;
                    Some(w)
                }
                Err(refused) => return refused,
            }
        }
    };
    if let Err(e) = check_json_body(&req) {
        return e.into_response();
    }
    if let Some(w) = &who {
        req.extensions_mut().insert(w.clone());
    }
    let mut resp = next.run(req).await;
    if let Some(w) = who {
        resp.extensions_mut().insert(w);
    }
    resp
}

/// A refusal of a caller who did authenticate names them (the audit log reads it).
fn naming(mut r: Response, who: &Identity) -> Response {
    r.extensions_mut().insert(who.clone());
    r
}

/// Authenticates the caller of a route that needs one and applies the policy: the request (its
/// body read back in when a patch had to be checked, its [`Ctx`] narrowed) and the caller, or
/// the refusal.
async fn authorize_caller(
    state: &ApiState,
    auth: &Auth,
    c: &policy::Classified,
    mut req: Request,
) -> Result<(Request, Identity), Response> {
    let who = auth.authenticate(&state.db, &state.clock, req.headers()).await.map_err(|r| r.response(auth))?;
    let scope = if who.role == AuthRole::Admin { None } else { who.project.clone() };
    if let Some(p) = &scope {
        check_visible(state, p, c).map_err(|e| naming(e.into_response(), &who))?;
    }
    match policy::decide(&who, c.action) {
        Decision::Allow => {}
        Decision::Deny => return Err(naming(forbidden(c.action), &who)),
        Decision::PatchFields(fields) => {
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request is too large; the limit is {MAX_BODY} bytes."),
                )
                .into_response());
            };
            // Not a patch: the handler refuses it, as for anyone.
            let patch: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            if policy::patch_within(&patch, fields) == Some(false) {
                return Err(naming(forbidden(c.action), &who));
            }
            req = Request::from_parts(parts, Body::from(bytes));
        }
    }
    if let Some(ctx) = req.extensions_mut().get_mut::<Ctx>() {
        ctx.scope = scope;
        ctx.restricted = who.role != AuthRole::Admin;
    }
    Ok((req, who))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("users.htpasswd")
    }

    #[test]
    fn htpasswd_takes_bcrypt_and_refuses_other_hashes_at_load() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let y = hash.replacen("$2b$", "$2y$", 1);
        let text = format!("# users\n\nalice:{hash}\nbob:{y}\n");
        let users = parse_htpasswd(&p(), &text).unwrap();
        assert!(bcrypt::verify("s3cret", &users["alice"]).unwrap());
        assert!(bcrypt::verify("s3cret", &users["bob"]).unwrap(), "$2y$ is Apache's spelling of $2b$");
        for bad in ["carol:$apr1$abc$def", "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "carol:plain"] {
            let e = parse_htpasswd(&p(), bad).unwrap_err().to_string();
            assert!(e.contains("line 1") && e.contains("only bcrypt entries"), "{e}");
        }
        assert!(parse_htpasswd(&p(), "nocolon").unwrap_err().to_string().contains("user:hash"));
        assert!(parse_htpasswd(&p(), "dave:$2y$05$short").unwrap_err().to_string().contains("malformed"));
    }

    #[test]
    fn a_config_loads_users_roles_and_a_decoy_of_their_cost() {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("alice:{}\n", bcrypt::hash("pw", 5).unwrap())).unwrap();
        let map = dir.path().join("roles");
        std::fs::write(&map, "bob reader proj-b\n").unwrap();
        let mut c = AuthConfig { strategy: AuthStrategy::HttpBasic, ..Default::default() };
        assert!(matches!(Auth::from_config(&c), Err(AuthError::NoHtpasswd)));
        c.htpasswd = Some(htpasswd);
        c.role_map = Some(map);
        c.roles.insert("alice".into(), AuthRole::Admin);
        c.projects.insert("alice".into(), "proj-a".into());
        let auth = Auth::from_config(&c).unwrap();
        assert!(auth.decoy.as_deref().is_some_and(|d| d.starts_with("$2b$05$")), "{:?}", auth.decoy);
        assert_eq!(auth.roles["alice"], (AuthRole::Admin, Some("proj-a".into())));
        assert_eq!(auth.roles["bob"], (AuthRole::Reader, Some("proj-b".into())));
        assert!(!format!("{auth:?}").contains("$2b$"), "Debug shows no hashes");
    }

    #[test]
    fn role_maps_read_user_role_and_an_optional_project() {
        let m = parse_role_map(&p(), "# map\nalice admin\nbob member proj-1\n\ncarol READER\n").unwrap();
        assert_eq!(
            m,
            vec![
                ("alice".into(), AuthRole::Admin, None),
                ("bob".into(), AuthRole::Member, Some("proj-1".into())),
                ("carol".into(), AuthRole::Reader, None),
            ]
        );
        let e = parse_role_map(&p(), "alice\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse_role_map(&p(), "alice root\n").unwrap_err().to_string();
        assert!(e.contains("unknown role"), "{e}");
    }

    #[test]
    fn credentials_come_from_basic_bearer_or_x_auth_token() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic YWxpY2U6czNjcjp0")); // alice:s3cr:t
        assert_eq!(basic_credentials(&h), Some(("alice".into(), "s3cr:t".into())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(basic_credentials(&h), None);
        assert_eq!(bearer_token(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert("x-auth-token", HeaderValue::from_static("xyz"));
        assert_eq!(bearer_token(&h), Some("xyz"));
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn token_lifetimes_parse() {
        assert_eq!(parse_ttl("8h").unwrap(), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_ttl("30m").unwrap(), Some(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("2d").unwrap(), Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_ttl("90").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(parse_ttl("never").unwrap(), None);
        assert!(parse_ttl("0h").is_err() && parse_ttl("8y").is_err() && parse_ttl("h").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_stored_hashed_and_expire_and_revoke() {
        let db = Db::open_in_memory().unwrap();
        let epoch = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let clock = Clock::virtual_from(epoch, 1);
        let auth = Auth { strategy: AuthStrategy::Token, ..Auth::noauth() };
        let (secret, t) =
            issue_token(&db, &clock, "bob", AuthRole::Member, Some("p"), Some(Duration::from_secs(60))).unwrap();
        assert!(secret.starts_with("ferric_") && secret.len() > 40);
        let stored = db.find_api_token(&hash_token(&secret)).unwrap().unwrap();
        assert_eq!(stored, t);
        assert!(db.find_api_token(&secret).unwrap().is_none(), "the secret itself is not stored");
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {secret}")).unwrap());
        let who = auth.authenticate(&db, &clock, &h).await.ok().unwrap();
        assert_eq!(who, Identity { user: "bob".into(), role: AuthRole::Member, project: Some("p".into()) });
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(auth.authenticate(&db, &clock, &h).await, Err(Refusal::BadCredentials)));
        assert_eq!(token_state(&t, clock.now()), "expired");

        let (secret, t) = issue_token(&db, &clock, "carol", AuthRole::Reader, None, None).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-auth-token", HeaderValue::from_str(&secret).unwrap());
        assert!(auth.authenticate(&db, &clock, &h).await.is_ok());
        db.revoke_api_token(&t.id, clock.now()).unwrap();
        assert!(matches!(auth.authenticate(&db, &clock, &h).await, Err(Refusal::BadCredentials)));
        assert!(matches!(auth.authenticate(&db, &clock, &HeaderMap::new()).await, Err(Refusal::Unauthenticated)));
    }

    #[tokio::test(start_paused = true)]
    async fn basic_logins_are_verified_by_bcrypt_and_successes_remembered_a_while() {
        let db = Db::open_in_memory().unwrap();
        let clock = Clock::system();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = Auth {
            strategy: AuthStrategy::HttpBasic,
            users: [("alice".to_string(), hash.clone()), ("erin".to_string(), hash)].into(),
            roles: [("alice".to_string(), (AuthRole::Reader, Some("p".to_string())))].into(),
            ..Auth::noauth()
        };
        let basic = |u: &str, p: &str| {
            let mut h = HeaderMap::new();
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {v}")).unwrap());
            h
        };
        let who = auth.authenticate(&db, &clock, &basic("alice", "pw")).await.ok().unwrap();
        assert_eq!((who.role, who.project.as_deref()), (AuthRole::Reader, Some("p")));
        assert_eq!(auth.verified.lock().len(), 1);
        // A remembered success says nothing about another password.
        assert!(matches!(auth.authenticate(&db, &clock, &basic("alice", "nope")).await, Err(Refusal::BadCredentials)));
        assert!(matches!(auth.authenticate(&db, &clock, &basic("bob", "pw")).await, Err(Refusal::BadCredentials)));
        assert!(matches!(auth.authenticate(&db, &clock, &basic("erin", "pw")).await, Err(Refusal::NoRole(_))));
        tokio::time::advance(VERIFIED_TTL + Duration::from_secs(1)).await;
        assert!(auth.authenticate(&db, &clock, &basic("alice", "pw")).await.is_ok(), "verified again after expiry");
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_are_limited_per_ip_by_a_token_bucket() {
        let l = Limiter::new(2.0, 3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!((0..4).map(|_| l.allow(a)).collect::<Vec<_>>(), vec![true, true, true, false]);
        assert!(l.allow(b), "another address has its own bucket");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(l.allow(a) && !l.allow(a), "one token back after half a second at 2/s");
    }
}
