//! Virtual Redfish BMC: a DMTF Redfish service (HTTP/1.1, optionally TLS) in front of a
//! [`Machine`], the Redfish counterpart of the IPMI [`vbmc`](crate::vbmc).
//!
//! Hand-written because no Rust crate implements a Redfish *server*: the crates that exist are
//! clients or schema bindings. What is implemented is what Ironic's `redfish` hardware type drives
//! through sushy, and what DMTF's Redfish Protocol Validator checks: the service root, `$metadata`
//! and the OData service document; one System (power and `#ComputerSystem.Reset`, boot override
//! incl. UEFI HTTP boot, indicator LED, processors, memory, NICs, storage, BIOS attributes with a
//! pending-settings object, virtual media), one Manager (virtual media `Cd` and `Usb`, the same
//! slots as the System's), one Chassis (power, thermal), sessions, accounts (the configured one,
//! plus any created through the AccountService) with the predefined roles' privileges enforced,
//! tasks, and firmware updates (`#UpdateService.SimpleUpdate`) as tasks that run over time. ETags
//! (`If-Match`, `If-None-Match`, `@odata.etag`), Basic and session authentication, Redfish error
//! bodies. Not implemented: events and SSE, SSDP, certificates, `$expand` and other queries (501).
//!
//! Everything runs on tokio's clock (task progress, session expiry, latency) and draws randomness
//! (session tokens) from a seeded RNG, so a simulation on a paused clock gives the same answers
//! for the same seed. Timestamps count from a fixed epoch (2026-01-01T00:00:00Z at the BMC's
//! creation). Faults ([`RedfishFaults`]) and counters ([`RedfishStats`]) live on the BMC.

mod faults;
mod resources;
mod serve;
#[cfg(test)]
mod tests;

pub use faults::{RedfishFaultSettings, RedfishFaults, RedfishStats};
pub use serve::{TlsError, self_signed_tls, serve};

use crate::machine::{BootDevice, BootSelection, Machine, MachineError, PowerState};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use faults::{Counters, inc};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use resources::Res;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Largest request body read (a PATCH or an action); larger ones get 413.
const MAX_BODY: usize = 1 << 20;
/// Task length unless the `task_duration_ms` knob says otherwise.
const DEFAULT_TASK_DURATION: Duration = Duration::from_secs(2);
/// Seconds since the Unix epoch of the BMC's time zero (2026-01-01T00:00:00Z).
const EPOCH_UNIX: u64 = 1_767_225_600;
/// Base message registry version used in error bodies.
const BASE: &str = "Base.1.16";

/// Settings of one Redfish BMC. `Debug` leaves the password out.
#[derive(Clone)]
pub struct RedfishConfig {
    pub username: String,
    pub password: String,
    /// The System's `Id` (`System.1`, or a uuid-like id as libvirt-backed emulators use).
    pub system_id: String,
    pub manager_id: String,
    pub chassis_id: String,
    /// The System's UUID (the service root's is derived from it).
    pub uuid: String,
    /// The System's `Name`.
    pub name: String,
    /// Seeds session tokens: one seed gives the same bytes on every run.
    pub seed: u64,
    /// Idle time after which a session ends (the `SessionTimeout` the service reports).
    pub session_timeout: Duration,
    /// Open sessions at most; a login beyond gets an error.
    pub max_sessions: usize,
    /// Initial fault knobs.
    pub faults: RedfishFaultSettings,
    /// Whether the System offers UEFI HTTP boot (`UefiHttp` among the allowed override targets,
    /// an `HttpBootUri` property); off, both are absent and a PATCH naming either is refused.
    pub uefi_http: bool,
}

impl Default for RedfishConfig {
    fn default() -> Self {
        Self {
            username: "admin".into(),
            password: "password".into(),
            system_id: "System.1".into(),
            manager_id: "BMC.1".into(),
            chassis_id: "Chassis.1".into(),
            uuid: "8f1c3a52-6d2e-4b7a-9c41-0e5f2d7a1b01".into(),
            name: "ferric-node".into(),
            seed: 0,
            session_timeout: Duration::from_secs(1800),
            max_sessions: 16,
            faults: RedfishFaultSettings::default(),
            uefi_http: true,
        }
    }
}

impl std::fmt::Debug for RedfishConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedfishConfig")
            .field("username", &self.username)
            .field("password", &"***")
            .field("system_id", &self.system_id)
            .field("manager_id", &self.manager_id)
            .field("chassis_id", &self.chassis_id)
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("seed", &self.seed)
            .field("session_timeout", &self.session_timeout)
            .field("max_sessions", &self.max_sessions)
            .field("faults", &self.faults)
            .field("uefi_http", &self.uefi_http)
            .finish()
    }
}

/// One virtual Redfish BMC. Cheap to clone (an `Arc` inside): every clone is the same BMC.
#[derive(Clone)]
pub struct RedfishBmc {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedfishBmc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedfishBmc")
            .field("machine", &self.inner.machine.name())
            .field("config", &self.inner.config)
            .field("faults", &self.inner.faults.settings())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: RedfishConfig,
    machine: Arc<dyn Machine>,
    faults: Arc<RedfishFaults>,
    counters: Counters,
    /// Time zero of timestamps.
    started: Instant,
    state: Mutex<State>,
}

/// What the BMC itself stores (the machine holds power and the boot selection).
struct State {
    rng: StdRng,
    /// Boot override as last set through this BMC: used when the machine cannot be asked, and
    /// for what the machine cannot express (UEFI HTTP boot, the mode of a disabled override).
    boot: BootSelection,
    uefi_http: bool,
    http_boot_uri: Option<String>,
    boot_mode_uefi: bool,
    indicator_led: &'static str,
    asset_tag: String,
    bios: BTreeMap<String, Value>,
    bios_pending: Map<String, Value>,
    bios_reset_pending: bool,
    bios_version: String,
    bmc_version: String,
    vmedia: [Slot; 2],
    accounts: BTreeMap<u64, Account>,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    session_timeout: Option<Duration>,
    tasks: Vec<Task>,
    /// Resources whose next `If-Match` PATCH already got its injected 412.
    etag_conflicts: HashSet<String>,
    /// Rate-limit window: start and requests in it.
    rate_window: (Instant, u32),
}

#[derive(Debug, Clone, Default)]
struct Slot {
    image: Option<String>,
    inserted: bool,
    write_protected: bool,
    transfer_protocol: Option<String>,
}

/// A local account (account 1 is the configured one).
#[derive(Debug, Clone)]
struct Account {
    user: String,
    password: String,
    role: Role,
    enabled: bool,
}

/// The predefined roles (Redfish's Administrator, Operator, ReadOnly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Administrator,
    Operator,
    ReadOnly,
}

/// Redfish privileges an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privilege {
    Login,
    ConfigureSelf,
    ConfigureComponents,
    ConfigureManager,
    ConfigureUsers,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Administrator => "Administrator",
            Role::Operator => "Operator",
            Role::ReadOnly => "ReadOnly",
        }
    }
    fn parse(s: &str) -> Option<Role> {
        [Role::Administrator, Role::Operator, Role::ReadOnly].into_iter().find(|r| r.name() == s)
    }
    fn has(self, p: Privilege) -> bool {
        match self {
            Role::Administrator => true,
            Role::Operator => matches!(p, Privilege::Login | Privilege::ConfigureSelf | Privilege::ConfigureComponents),
            Role::ReadOnly => matches!(p, Privilege::Login | Privilege::ConfigureSelf),
        }
    }
}

/// Who sent a request.
#[derive(Debug, Clone, Copy)]
struct Caller {
    account: u64,
    role: Role,
}

impl Caller {
    fn require(&self, p: Privilege) -> Result<(), RfError> {
        if self.role.has(p) {
            Ok(())
        } else {
            Err(RfError::new(StatusCode::FORBIDDEN, "InsufficientPrivilege", format!("There are insufficient privileges for the account or credentials associated with the current session to perform the requested operation ({p:?} is needed)."))
                .resolution("Either abandon the operation or change the associated access rights and resubmit the request if the operation failed."))
        }
    }
}

/// Accounts a service holds at most.
const MAX_ACCOUNTS: usize = 16;

struct Session {
    token: String,
    account: u64,
    user: String,
    created: Instant,
    last_used: Instant,
}

#[derive(Debug, Clone)]
struct Task {
    id: u64,
    started: Instant,
    duration: Duration,
    fails: bool,
    image: String,
    /// Updates the BMC's firmware rather than the BIOS.
    bmc_target: bool,
    /// Whether the task's end (version bump, counters) has been applied.
    finished: bool,
}

/// The states a task goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    New,
    Running,
    Completed,
    Exception,
}

impl TaskState {
    fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "New",
            TaskState::Running => "Running",
            TaskState::Completed => "Completed",
            TaskState::Exception => "Exception",
        }
    }
}

impl Task {
    fn state(&self, now: Instant) -> (TaskState, u64) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.duration {
            (if self.fails { TaskState::Exception } else { TaskState::Completed }, 100)
        } else if elapsed.is_zero() {
            (TaskState::New, 0)
        } else {
            let pct = (elapsed.as_millis() * 100 / self.duration.as_millis().max(1)).min(99) as u64;
            (TaskState::Running, pct)
        }
    }
}

fn default_bios() -> BTreeMap<String, Value> {
    [
        ("BootMode", json!("Uefi")),
        ("EmbeddedSata", json!("Ahci")),
        ("NicBoot1", json!("NetworkBoot")),
        ("ProcTurboMode", json!("Enabled")),
        ("ProcVirtualization", json!("Enabled")),
        ("SecureBoot", json!("Disabled")),
        ("SerialConsole", json!("Com1")),
        ("BootRetryCount", json!(3)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl RedfishBmc {
    /// A BMC in front of `machine`; nothing is served until [`serve`] or [`RedfishBmc::router`].
    pub fn new(config: RedfishConfig, machine: Arc<dyn Machine>) -> Self {
        let now = Instant::now();
        let state = State {
            rng: StdRng::seed_from_u64(config.seed),
            boot: BootSelection::default(),
            uefi_http: false,
            http_boot_uri: None,
            boot_mode_uefi: true,
            indicator_led: "Off",
            asset_tag: String::new(),
            bios: default_bios(),
            bios_pending: Map::new(),
            bios_reset_pending: false,
            bios_version: "1.0.0".into(),
            bmc_version: "1.00".into(),
            vmedia: [
                Slot { write_protected: true, ..Slot::default() },
                Slot { write_protected: true, ..Slot::default() },
            ],
            accounts: BTreeMap::from([(
                1,
                Account {
                    user: config.username.clone(),
                    password: config.password.clone(),
                    role: Role::Administrator,
                    enabled: true,
                },
            )]),
            sessions: BTreeMap::new(),
            next_session: 1,
            session_timeout: None,
            tasks: Vec::new(),
            etag_conflicts: HashSet::new(),
            rate_window: (now, 0),
        };
        let faults = Arc::new(RedfishFaults::new(config.faults));
        Self {
            inner: Arc::new(Inner {
                config,
                machine,
                faults,
                counters: Counters::default(),
                started: now,
                state: Mutex::new(state),
            }),
        }
    }

    /// The service as an axum router, for in-process use (a simulation calls it with tower's
    /// `oneshot`, no sockets) or under [`serve`].
    pub fn router(&self) -> axum::Router {
        let bmc = self.clone();
        axum::Router::new().fallback(move |req: Request| {
            let bmc = bmc.clone();
            async move { bmc.handle(req).await }
        })
    }

    /// The runtime fault knobs of this BMC.
    pub fn faults(&self) -> Arc<RedfishFaults> {
        self.inner.faults.clone()
    }

    /// Counters so far (tasks that ended by now count as ended).
    pub fn stats(&self) -> RedfishStats {
        self.tick();
        self.inner.counters.snapshot()
    }

    /// The configuration this BMC was built with.
    pub fn config(&self) -> &RedfishConfig {
        &self.inner.config
    }

    fn c(&self) -> &Counters {
        &self.inner.counters
    }

    /// Applies the end of every task that ended by now.
    fn tick(&self) {
        let now = Instant::now();
        let mut st = self.inner.state.lock();
        let mut ended = Vec::new();
        for t in st.tasks.iter_mut() {
            if !t.finished && t.state(now).1 == 100 {
                t.finished = true;
                ended.push((t.fails, t.bmc_target));
            }
        }
        for (fails, bmc_target) in ended {
            if fails {
                inc(&self.c().tasks_failed);
            } else {
                inc(&self.c().tasks_completed);
                if bmc_target {
                    st.bmc_version = bump_version(&st.bmc_version);
                } else {
                    st.bios_version = bump_version(&st.bios_version);
                }
            }
        }
    }

    /// Formats `at` on the BMC's clock as an ISO 8601 timestamp.
    fn timestamp(&self, at: Instant) -> String {
        iso8601(EPOCH_UNIX + at.saturating_duration_since(self.inner.started).as_secs())
    }

    async fn handle(&self, req: Request) -> Response {
        let c = self.c();
        inc(&c.requests);
        let method = req.method().clone();
        match method {
            Method::GET => inc(&c.get),
            Method::HEAD => inc(&c.head),
            Method::PATCH => inc(&c.patch),
            Method::POST => inc(&c.post),
            Method::DELETE => inc(&c.delete),
            _ => inc(&c.other_methods),
        }
        let faults = &self.inner.faults;
        if faults.unresponsive() {
            inc(&c.unanswered);
            std::future::pending::<()>().await;
        }
        let latency = faults.latency();
        if !latency.is_zero() {
            inc(&c.delayed);
            tokio::time::sleep(latency).await;
        }
        self.tick();
        let result = if let Some(secs) = faults.busy_retry_after_secs() {
            inc(&c.busy_replies);
            Err(RfError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceTemporarilyUnavailable",
                format!("The service is temporarily unavailable.  Retry in {secs} seconds."),
            )
            .resolution("Wait for the indicated retry duration and retry the operation.")
            .header(header::RETRY_AFTER, secs.to_string()))
        } else if let Some(retry) = self.rate_limited() {
            inc(&c.rate_limited);
            Err(RfError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ServiceTemporarilyUnavailable",
                "Too many requests; the service is rate limited.".into(),
            )
            .resolution("Wait for the indicated retry duration and retry the operation.")
            .header(header::RETRY_AFTER, retry.to_string()))
        } else {
            self.route(req).await
        };
        let mut resp = result.unwrap_or_else(RfError::into_response);
        if resp.status().is_client_error() || resp.status().is_server_error() {
            inc(&c.errors);
        }
        if method == Method::HEAD {
            *resp.body_mut() = Body::empty();
        }
        let h = resp.headers_mut();
        h.insert("odata-version", HeaderValue::from_static("4.0"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }

    /// `Some(retry-after seconds)` when this request is over the rate limit.
    fn rate_limited(&self) -> Option<u64> {
        let limit = self.inner.faults.rate_limit()?;
        let now = Instant::now();
        let mut st = self.inner.state.lock();
        let (start, count) = &mut st.rate_window;
        if now.saturating_duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        if *count >= limit {
            let left = Duration::from_secs(1).saturating_sub(now.saturating_duration_since(*start));
            return Some(left.as_secs_f64().ceil().max(1.0) as u64);
        }
        *count += 1;
        None
    }

    async fn route(&self, req: Request) -> Result<Response, RfError> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        if let Some(q) = parts.uri.query()
            && let Some(p) = q
                .split('&')
                .map(|kv| kv.split('=').next().unwrap_or(""))
                .find(|k| k.starts_with('$') || *k == "only" || *k == "excerpt" || *k == "includeoriginuri")
        {
            return Err(RfError::new(
                StatusCode::NOT_IMPLEMENTED,
                "QueryNotSupported",
                format!("Querying is not supported by the implementation ({p})."),
            ));
        }
        if let Some(v) = parts.headers.get("odata-version")
            && v.as_bytes() != b"4.0"
        {
            return Err(RfError::new(
                StatusCode::PRECONDITION_FAILED,
                "HeaderInvalid",
                "The OData-Version requested is not supported; this service supports 4.0.".into(),
            ));
        }
        let res = Res::parse(&path, &self.inner.config).ok_or_else(|| RfError::not_found(&path))?;
        let allow = res.allow();
        let method = parts.method.clone();
        let allowed = allow.split(", ").any(|m| m == method.as_str());
        if !allowed {
            return Err(RfError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "OperationNotAllowed",
                format!("The {method} operation is not allowed on {path}."),
            )
            .header(header::ALLOW, allow.to_string()));
        }
        let public = matches!(res, Res::Versions | Res::Root | Res::Metadata | Res::OData)
            || (res == Res::Sessions && method == Method::POST);
        let caller = if public { None } else { Some(self.authenticate(&parts.headers)?) };
        if let Some(c) = &caller {
            let need = match (&res, &method) {
                (_, &Method::GET | &Method::HEAD) => Privilege::Login,
                // Own session or account: checked where the target is known.
                (Res::Session(_), _) | (Res::Account(_), &Method::PATCH) => Privilege::ConfigureSelf,
                (Res::Accounts | Res::Account(_), _) => Privilege::ConfigureUsers,
                (Res::SessionService, _) => Privilege::ConfigureManager,
                _ => Privilege::ConfigureComponents,
            };
            c.require(need)?;
        }
        check_accept(&parts.headers, &res)?;
        let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            RfError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "GeneralError",
                "The request body is too large or could not be read.".into(),
            )
        })?;
        match method {
            Method::GET | Method::HEAD => self.get_response(&res, &parts.headers).await,
            Method::PATCH => {
                let body = parse_object(&parts.headers, &bytes, false)?;
                if body.keys().all(|k| k.starts_with("@odata.")) {
                    return Err(RfError::new(StatusCode::BAD_REQUEST, "NoOperation", "The request body submitted contain no data to act upon and no changes to the resource took place.".into())
                        .resolution("Add properties in the JSON object and resubmit the request."));
                }
                self.patch(&res, &path, &parts.headers, body, caller).await
            }
            Method::POST => {
                let body = parse_object(&parts.headers, &bytes, true)?;
                self.post(&res, body).await
            }
            Method::DELETE => self.delete(&res, caller).await,
            _ => Err(RfError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "OperationNotAllowed",
                format!("The {method} operation is not allowed."),
            )
            .header(header::ALLOW, allow.to_string())),
        }
    }

    /// The caller of a request: a live session's token, or Basic credentials of an enabled
    /// account.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, RfError> {
        if let Some(token) = headers.get("x-auth-token") {
            let now = Instant::now();
            let timeout = self.session_timeout();
            let mut st = self.inner.state.lock();
            self.expire_sessions(&mut st, now, timeout);
            let found = st.sessions.values_mut().find(|s| s.token.as_bytes() == token.as_bytes());
            if let Some(s) = found {
                s.last_used = now;
                let account = s.account;
                if let Some(a) = st.accounts.get(&account).filter(|a| a.enabled) {
                    return Ok(Caller { account, role: a.role });
                }
            }
            drop(st);
            inc(&self.c().auth_failures);
            return Err(RfError::unauthorized("The session token is not valid or has expired."));
        }
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            if let Some((user, pass)) = basic_credentials(v)
                && let Some((account, role)) = self.check_password(&user, &pass)
            {
                return Ok(Caller { account, role });
            }
            inc(&self.c().auth_failures);
            return Err(RfError::unauthorized("The credentials are not valid."));
        }
        inc(&self.c().auth_failures);
        Err(RfError::unauthorized("Authentication is required: HTTP Basic or an X-Auth-Token session."))
    }

    /// The enabled account with these credentials, if any.
    fn check_password(&self, user: &str, pass: &str) -> Option<(u64, Role)> {
        let st = self.inner.state.lock();
        st.accounts.iter().find(|(_, a)| a.enabled && a.user == user && a.password == pass).map(|(id, a)| (*id, a.role))
    }

    fn session_timeout(&self) -> Duration {
        let st_timeout = self.inner.state.lock().session_timeout;
        self.inner.faults.session_timeout().or(st_timeout).unwrap_or(self.inner.config.session_timeout)
    }

    fn max_sessions(&self) -> usize {
        self.inner.faults.max_sessions().unwrap_or(self.inner.config.max_sessions)
    }

    fn expire_sessions(&self, st: &mut State, now: Instant, timeout: Duration) {
        let before = st.sessions.len();
        st.sessions.retain(|_, s| now.saturating_duration_since(s.last_used) < timeout);
        for _ in st.sessions.len()..before {
            inc(&self.c().sessions_expired);
        }
    }

    async fn get_response(&self, res: &Res, headers: &HeaderMap) -> Result<Response, RfError> {
        match res {
            Res::Metadata => {
                return Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/xml")
                    .header(header::ALLOW, res.allow())
                    .body(Body::from(resources::metadata()))
                    .unwrap_or_default());
            }
            // sushy (hence Ironic) polls the Task's own URI when the 202 body names it, as
            // iDRAC's tasks answer: 202 while running there too.
            Res::TaskMonitor(id) | Res::Task(id) => {
                let now = Instant::now();
                let task = self.inner.state.lock().tasks.iter().find(|t| t.id == *id).cloned();
                let task =
                    task.ok_or_else(|| RfError::not_found(&format!("/redfish/v1/TaskService/TaskMonitors/{id}")))?;
                let body = self.task_json(&task);
                let (state, _) = task.state(now);
                if matches!(state, TaskState::New | TaskState::Running) {
                    let mut r = json_response(StatusCode::ACCEPTED, &body);
                    let h = r.headers_mut();
                    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    if let Ok(v) = HeaderValue::from_str(&resources::task_monitor_uri(*id)) {
                        h.insert(header::LOCATION, v);
                    }
                    h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                    return Ok(r);
                }
                return Ok(json_response(StatusCode::OK, &body));
            }
            _ => {}
        }
        let body = self.get_json(res).await?;
        let (etag, bytes) = with_etag(&body);
        let link = body.get("@odata.type").and_then(Value::as_str).and_then(resources::schema_link);
        let mut builder = Response::builder().header(header::ETAG, &etag).header(header::ALLOW, res.allow());
        if let Some(link) = link {
            builder = builder.header(header::LINK, link);
        }
        if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok())
            && etag_matches(inm, &etag)
        {
            return Ok(builder.status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap_or_default());
        }
        Ok(builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Body::from(bytes))
            .unwrap_or_default())
    }

    async fn patch(
        &self,
        res: &Res,
        path: &str,
        headers: &HeaderMap,
        body: Map<String, Value>,
        caller: Option<Caller>,
    ) -> Result<Response, RfError> {
        if let Some(im) = headers.get(header::IF_MATCH) {
            let im = im.to_str().unwrap_or("");
            if self.inner.faults.etag_conflict() && self.inner.state.lock().etag_conflicts.insert(normalize(path)) {
                inc(&self.c().etag_conflicts);
                return Err(RfError::precondition_failed());
            }
            let current = self.get_json(res).await?;
            let etag = etag_of(&serde_json::to_vec(&current).unwrap_or_default());
            if !etag_matches(im, &etag) {
                inc(&self.c().etag_mismatches);
                return Err(RfError::precondition_failed());
            }
        }
        match res {
            Res::System => self.patch_system(body).await?,
            Res::BiosSettings => self.patch_bios(body)?,
            Res::VMedia(_, slot) => self.patch_vmedia(*slot, body).await?,
            Res::SessionService => self.patch_session_service(body)?,
            Res::Account(id) => self.patch_account(*id, body, caller)?,
            _ => {
                return Err(RfError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "OperationNotAllowed",
                    "PATCH is not allowed here.".into(),
                ));
            }
        }
        self.inner.state.lock().etag_conflicts.remove(&normalize(path));
        let body = self.get_json(res).await?;
        let (etag, bytes) = with_etag(&body);
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::ETAG, etag)
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Body::from(bytes))
            .unwrap_or_default())
    }

    async fn post(&self, res: &Res, body: Map<String, Value>) -> Result<Response, RfError> {
        match res {
            Res::SystemReset => {
                let t = action_string(&body, "ResetType", "ComputerSystem.Reset", true)?.unwrap_or_default();
                self.reset(&t).await?;
                Ok(no_content())
            }
            Res::BiosReset => {
                only_params(&body, &[], "Bios.ResetBios")?;
                self.inner.state.lock().bios_reset_pending = true;
                Ok(no_content())
            }
            Res::VMediaInsert(_, slot) => {
                only_params(
                    &body,
                    &[
                        "Image",
                        "Inserted",
                        "WriteProtected",
                        "TransferProtocolType",
                        "TransferMethod",
                        "UserName",
                        "Password",
                    ],
                    "VirtualMedia.InsertMedia",
                )?;
                let image = action_string(&body, "Image", "VirtualMedia.InsertMedia", true)?.unwrap_or_default();
                let inserted = action_bool(&body, "Inserted", "VirtualMedia.InsertMedia")?.unwrap_or(true);
                let wp = action_bool(&body, "WriteProtected", "VirtualMedia.InsertMedia")?.unwrap_or(true);
                let proto = action_string(&body, "TransferProtocolType", "VirtualMedia.InsertMedia", false)?;
                if let Some(p) = &proto
                    && !resources::TRANSFER_PROTOCOLS.contains(&p.as_str())
                {
                    return Err(RfError::action_value(p, "TransferProtocolType", "VirtualMedia.InsertMedia"));
                }
                if let Some(m) = body.get("TransferMethod")
                    && m.as_str().is_none_or(|m| m != "Stream" && m != "Upload")
                {
                    return Err(RfError::action_value(&m.to_string(), "TransferMethod", "VirtualMedia.InsertMedia"));
                }
                self.insert(*slot, image, inserted, wp, proto).await?;
                Ok(no_content())
            }
            Res::VMediaEject(_, slot) => {
                only_params(&body, &[], "VirtualMedia.EjectMedia")?;
                self.eject(*slot).await?;
                Ok(no_content())
            }
            Res::Sessions => self.login(body),
            Res::Accounts => self.create_account(body),
            Res::SimpleUpdate => self.simple_update(body),
            _ => Err(RfError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "OperationNotAllowed",
                "POST is not allowed here.".into(),
            )),
        }
    }

    async fn delete(&self, res: &Res, caller: Option<Caller>) -> Result<Response, RfError> {
        match res {
            Res::Session(id) => {
                let mut st = self.inner.state.lock();
                let Some(session) = st.sessions.get(id) else {
                    return Err(RfError::not_found(&resources::session_uri(*id)));
                };
                // One's own session needs ConfigureSelf (checked already); others', ConfigureManager.
                if let Some(c) = caller
                    && session.account != c.account
                {
                    c.require(Privilege::ConfigureManager)?;
                }
                st.sessions.remove(id);
                drop(st);
                inc(&self.c().sessions_deleted);
                Ok(no_content())
            }
            Res::Account(id) => {
                if *id == 1 {
                    return Err(RfError::new(StatusCode::METHOD_NOT_ALLOWED, "ResourceCannotBeDeleted", "The delete request failed because the resource requested cannot be deleted: it is the BMC's configured account.".into())
                        .header(header::ALLOW, res.allow().to_string()));
                }
                let mut st = self.inner.state.lock();
                if st.accounts.remove(id).is_none() {
                    return Err(RfError::not_found(&resources::account_uri(*id)));
                }
                // Its sessions end with it.
                st.sessions.retain(|_, s| s.account != *id);
                Ok(no_content())
            }
            _ => Err(RfError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "OperationNotAllowed",
                "DELETE is not allowed here.".into(),
            )),
        }
    }

    fn create_account(&self, body: Map<String, Value>) -> Result<Response, RfError> {
        let mut user = None;
        let mut password = None;
        let mut role = Role::ReadOnly;
        let mut enabled = true;
        for (k, v) in &body {
            match k.as_str() {
                "UserName" => user = Some(v.as_str().ok_or_else(|| RfError::type_error(v, k))?.to_string()),
                "Password" => password = Some(v.as_str().ok_or_else(|| RfError::type_error(v, k))?.to_string()),
                "RoleId" => {
                    role = Role::parse(v.as_str().ok_or_else(|| RfError::type_error(v, k))?)
                        .ok_or_else(|| RfError::value_not_in_list(v, k))?
                }
                "Enabled" => enabled = v.as_bool().ok_or_else(|| RfError::type_error(v, k))?,
                "AccountTypes" => {
                    if v != &json!(["Redfish"]) {
                        return Err(RfError::value_not_in_list(v, k));
                    }
                }
                "Id" | "Locked" | "Links" | "Name" => return Err(RfError::not_writable(k)),
                _ => return Err(RfError::property_unknown(k)),
            }
        }
        let missing = |p: &str| {
            RfError::new(
                StatusCode::BAD_REQUEST,
                "PropertyMissing",
                format!("The property {p} is a required property and must be included in the request."),
            )
            .args(&[p])
        };
        let user = user.ok_or_else(|| missing("UserName"))?;
        let password = password.ok_or_else(|| missing("Password"))?;
        check_user_name(&user)?;
        check_password_rules(&password)?;
        let mut st = self.inner.state.lock();
        if st.accounts.values().any(|a| a.user == user) {
            return Err(RfError::new(StatusCode::CONFLICT, "ResourceAlreadyExists", format!("The requested resource of type ManagerAccount with the property UserName with the value {user} already exists."))
                .args(&["ManagerAccount", "UserName", &user]));
        }
        if st.accounts.len() >= MAX_ACCOUNTS {
            return Err(RfError::new(
                StatusCode::BAD_REQUEST,
                "CreateLimitReachedForResource",
                "The create operation failed because the resource has reached the limit of possible resources.".into(),
            ));
        }
        let id = st.accounts.keys().next_back().map_or(1, |i| i + 1);
        st.accounts.insert(id, Account { user, password, role, enabled });
        drop(st);
        let body = json!({
            "@odata.type": "#ManagerAccount.v1_10_0.ManagerAccount",
            "@odata.id": resources::account_uri(id),
            "Id": id.to_string(),
        });
        let mut r = json_response(StatusCode::CREATED, &body);
        if let Ok(v) = HeaderValue::from_str(&resources::account_uri(id)) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Ok(r)
    }

    fn login(&self, body: Map<String, Value>) -> Result<Response, RfError> {
        let user = body.get("UserName").and_then(Value::as_str);
        let pass = body.get("Password").and_then(Value::as_str);
        let (Some(user), Some(pass)) = (user, pass) else {
            let missing = if user.is_none() { "UserName" } else { "Password" };
            return Err(RfError::new(
                StatusCode::BAD_REQUEST,
                "PropertyMissing",
                format!("The property {missing} is a required property and must be included in the request."),
            )
            .args(&[missing]));
        };
        if let Some(k) = body.keys().find(|k| *k != "UserName" && *k != "Password") {
            return Err(RfError::property_unknown(k));
        }
        let Some((account, _)) = self.check_password(user, pass) else {
            inc(&self.c().auth_failures);
            return Err(RfError::unauthorized("The credentials are not valid."));
        };
        let now = Instant::now();
        let timeout = self.session_timeout();
        let max = self.max_sessions();
        let mut st = self.inner.state.lock();
        self.expire_sessions(&mut st, now, timeout);
        if st.sessions.len() >= max {
            drop(st);
            inc(&self.c().sessions_refused);
            return Err(RfError::new(StatusCode::SERVICE_UNAVAILABLE, "SessionLimitExceeded", "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.".into())
                .resolution("Reduce the number of other sessions before trying to establish the session or increase the limit of simultaneous sessions (if supported)."));
        }
        let bytes: [u8; 16] = st.rng.random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let id = st.next_session;
        st.next_session += 1;
        st.sessions.insert(
            id,
            Session { token: token.clone(), account, user: user.to_string(), created: now, last_used: now },
        );
        drop(st);
        inc(&self.c().sessions_created);
        let body = self.session_json(id).unwrap_or(Value::Null);
        let mut r = json_response(StatusCode::CREATED, &body);
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&token) {
            h.insert("x-auth-token", v);
        }
        if let Ok(v) = HeaderValue::from_str(&resources::session_uri(id)) {
            h.insert(header::LOCATION, v);
        }
        Ok(r)
    }

    fn simple_update(&self, body: Map<String, Value>) -> Result<Response, RfError> {
        const ACTION: &str = "UpdateService.SimpleUpdate";
        only_params(
            &body,
            &["ImageURI", "TransferProtocol", "Targets", "Username", "Password", "ForceUpdate"],
            ACTION,
        )?;
        let image = action_string(&body, "ImageURI", ACTION, true)?.unwrap_or_default();
        if let Some(p) = action_string(&body, "TransferProtocol", ACTION, false)?
            && !resources::TRANSFER_PROTOCOLS.contains(&p.as_str())
        {
            return Err(RfError::action_value(&p, "TransferProtocol", ACTION));
        }
        let mut bmc_target = false;
        if let Some(t) = body.get("Targets") {
            let Some(list) = t.as_array() else {
                return Err(RfError::action_type(&t.to_string(), "Targets", ACTION));
            };
            for t in list {
                let Some(uri) = t.as_str() else {
                    return Err(RfError::action_type(&t.to_string(), "Targets", ACTION));
                };
                match resources::firmware_target(uri, &self.inner.config) {
                    Some(is_bmc) => bmc_target |= is_bmc,
                    None => return Err(RfError::action_value(uri, "Targets", ACTION)),
                }
            }
        }
        let duration = self.inner.faults.task_duration().unwrap_or(DEFAULT_TASK_DURATION);
        let fails = self.inner.faults.task_fails();
        let now = Instant::now();
        let task = {
            let mut st = self.inner.state.lock();
            let id = st.tasks.last().map_or(1, |t| t.id + 1);
            let task = Task { id, started: now, duration, fails, image, bmc_target, finished: false };
            st.tasks.push(task.clone());
            // Keep the collection bounded, as BMCs do (oldest finished tasks go first).
            while st.tasks.len() > 64 {
                match st.tasks.iter().position(|t| t.finished) {
                    Some(i) => {
                        st.tasks.remove(i);
                    }
                    None => break,
                }
            }
            task
        };
        inc(&self.c().tasks_started);
        let body = self.task_json(&task);
        let mut r = json_response(StatusCode::ACCEPTED, &body);
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&resources::task_monitor_uri(task.id)) {
            h.insert(header::LOCATION, v);
        }
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Ok(r)
    }

    async fn reset(&self, reset_type: &str) -> Result<(), RfError> {
        let m = &self.inner.machine;
        let c = self.c();
        let boots = match reset_type {
            "On" | "ForceOn" => {
                m.power_on().await.map_err(RfError::machine)?;
                inc(&c.power_on);
                true
            }
            "ForceOff" => {
                m.power_off().await.map_err(RfError::machine)?;
                inc(&c.power_off);
                false
            }
            "GracefulShutdown" => {
                m.soft_off().await.map_err(RfError::machine)?;
                inc(&c.soft_off);
                false
            }
            "ForceRestart" | "GracefulRestart" => {
                m.reset().await.map_err(RfError::machine)?;
                inc(&c.reset);
                true
            }
            "PowerCycle" => {
                m.power_cycle().await.map_err(RfError::machine)?;
                inc(&c.power_cycle);
                true
            }
            "Nmi" => {
                inc(&c.nmi);
                false
            }
            other => return Err(RfError::action_value(other, "ResetType", "ComputerSystem.Reset")),
        };
        if boots {
            let mut st = self.inner.state.lock();
            let mut applied = false;
            if st.bios_reset_pending {
                st.bios = default_bios();
                st.bios_reset_pending = false;
                applied = true;
            }
            let pending = std::mem::take(&mut st.bios_pending);
            applied |= !pending.is_empty();
            for (k, v) in pending {
                st.bios.insert(k, v);
            }
            drop(st);
            if applied {
                inc(&c.bios_applied);
            }
        }
        Ok(())
    }

    async fn insert(
        &self,
        slot: usize,
        image: String,
        inserted: bool,
        wp: bool,
        proto: Option<String>,
    ) -> Result<(), RfError> {
        if image.is_empty() {
            return Err(RfError::action_value("", "Image", "VirtualMedia.InsertMedia"));
        }
        if self.inner.faults.vmedia_insert_fails() {
            inc(&self.c().vmedia_insert_failures);
            return Err(RfError::internal("The virtual media could not be inserted (injected fault)."));
        }
        // The machine has one virtual CD drive: the Cd slot is it; the Usb slot is the BMC's.
        if inserted && slot == 0 {
            self.inner.machine.insert_media(&image).await.map_err(RfError::machine)?;
        }
        let mut st = self.inner.state.lock();
        let s = st.vmedia.get_mut(slot).ok_or_else(|| RfError::internal("no such slot"))?;
        *s = Slot { image: Some(image), inserted, write_protected: wp, transfer_protocol: proto };
        drop(st);
        inc(&self.c().vmedia_inserts);
        Ok(())
    }

    async fn eject(&self, slot: usize) -> Result<(), RfError> {
        if slot == 0 {
            self.inner.machine.eject_media().await.map_err(RfError::machine)?;
        }
        let mut st = self.inner.state.lock();
        let s = st.vmedia.get_mut(slot).ok_or_else(|| RfError::internal("no such slot"))?;
        *s = Slot { write_protected: s.write_protected, ..Slot::default() };
        drop(st);
        inc(&self.c().vmedia_ejects);
        Ok(())
    }

    /// The System's boot override as Redfish shows it: (target, enabled, mode).
    async fn boot_view(&self) -> (&'static str, &'static str, &'static str) {
        let from_machine = self.inner.machine.boot().await.ok();
        let st = self.inner.state.lock();
        let sel = from_machine.unwrap_or(st.boot);
        let mode = |efi: bool| if efi { "UEFI" } else { "Legacy" };
        let target = match sel.device {
            BootDevice::None => return ("None", "Disabled", mode(st.boot_mode_uefi)),
            BootDevice::Pxe if st.uefi_http && sel.efi => "UefiHttp",
            BootDevice::Pxe => "Pxe",
            BootDevice::Disk => "Hdd",
            BootDevice::Cdrom => "Cd",
            BootDevice::Bios => "BiosSetup",
        };
        (target, if sel.persistent { "Continuous" } else { "Once" }, mode(sel.efi))
    }

    async fn patch_system(&self, body: Map<String, Value>) -> Result<(), RfError> {
        let mut boot: Option<Map<String, Value>> = None;
        let mut led: Option<&'static str> = None;
        let mut locate: Option<bool> = None;
        let mut asset: Option<String> = None;
        for (k, v) in &body {
            match k.as_str() {
                "Boot" => match v {
                    Value::Object(o) => boot = Some(o.clone()),
                    _ => return Err(RfError::type_error(v, k)),
                },
                "IndicatorLED" => led = Some(one_of(v, k, &["Lit", "Blinking", "Off"])?),
                "LocationIndicatorActive" => locate = Some(v.as_bool().ok_or_else(|| RfError::type_error(v, k))?),
                "AssetTag" => asset = Some(v.as_str().ok_or_else(|| RfError::type_error(v, k))?.to_string()),
                _ if resources::SYSTEM_READ_ONLY.contains(&k.as_str()) => return Err(RfError::not_writable(k)),
                _ => return Err(RfError::property_unknown(k)),
            }
        }
        if let Some(boot) = boot {
            let mut target = None;
            let mut enabled = None;
            let mut mode = None;
            let mut uri: Option<Option<String>> = None;
            for (k, v) in &boot {
                match k.as_str() {
                    "BootSourceOverrideTarget" => target = Some(one_of(v, k, self.boot_targets())?),
                    "BootSourceOverrideEnabled" => enabled = Some(one_of(v, k, &["Disabled", "Once", "Continuous"])?),
                    "BootSourceOverrideMode" => mode = Some(one_of(v, k, &["UEFI", "Legacy"])?),
                    "HttpBootUri" if !self.inner.config.uefi_http => return Err(RfError::property_unknown(k)),
                    "HttpBootUri" => {
                        uri = Some(match v {
                            Value::Null => None,
                            Value::String(s) if s.is_empty() => None,
                            Value::String(s) => Some(s.clone()),
                            _ => return Err(RfError::type_error(v, k)),
                        })
                    }
                    "BootSourceOverrideTarget@Redfish.AllowableValues"
                    | "BootSourceOverrideMode@Redfish.AllowableValues" => {
                        return Err(RfError::not_writable(k));
                    }
                    _ => return Err(RfError::property_unknown(k)),
                }
            }
            let (cur_target, cur_enabled, cur_mode) = self.boot_view().await;
            let target = target.unwrap_or(cur_target);
            let mut enabled = enabled.unwrap_or(cur_enabled);
            let mode = mode.unwrap_or(cur_mode);
            if enabled == "Disabled" && boot.contains_key("BootSourceOverrideTarget") && target != "None" {
                enabled = "Once";
            }
            let uefi_http = target == "UefiHttp";
            let efi = mode == "UEFI" || uefi_http;
            let device = match target {
                _ if enabled == "Disabled" => BootDevice::None,
                "Pxe" | "UefiHttp" => BootDevice::Pxe,
                "Hdd" => BootDevice::Disk,
                "Cd" => BootDevice::Cdrom,
                "BiosSetup" => BootDevice::Bios,
                _ => BootDevice::None,
            };
            let sel = BootSelection { device, persistent: enabled == "Continuous" && device != BootDevice::None, efi };
            // The machine learns the URI with a UEFI HTTP boot selection (the one in this PATCH,
            // else the one stored), and that a network boot is plain PXE otherwise.
            let http_uri = if uefi_http && device != BootDevice::None {
                uri.clone().unwrap_or_else(|| self.inner.state.lock().http_boot_uri.clone())
            } else {
                None
            };
            self.inner.machine.set_http_boot_uri(http_uri).await.map_err(RfError::machine)?;
            self.inner.machine.set_boot(sel).await.map_err(RfError::machine)?;
            inc(&self.c().boot_patches);
            let mut st = self.inner.state.lock();
            st.boot = sel;
            st.uefi_http = uefi_http;
            st.boot_mode_uefi = mode == "UEFI";
            if let Some(uri) = uri {
                st.http_boot_uri = uri;
            }
        }
        let mut st = self.inner.state.lock();
        if let Some(led) = led {
            st.indicator_led = led;
        }
        if let Some(on) = locate {
            st.indicator_led = if on { "Lit" } else { "Off" };
        }
        if let Some(a) = asset {
            st.asset_tag = a;
        }
        Ok(())
    }

    fn patch_bios(&self, body: Map<String, Value>) -> Result<(), RfError> {
        let mut staged = Map::new();
        for (k, v) in &body {
            match k.as_str() {
                "Attributes" => {
                    let Value::Object(attrs) = v else { return Err(RfError::type_error(v, k)) };
                    let st = self.inner.state.lock();
                    for (name, value) in attrs {
                        let Some(current) = st.bios.get(name) else { return Err(RfError::property_unknown(name)) };
                        let same_type = matches!(
                            (current, value),
                            (Value::String(_), Value::String(_))
                                | (Value::Number(_), Value::Number(_))
                                | (Value::Bool(_), Value::Bool(_))
                        );
                        if !same_type {
                            return Err(RfError::type_error(value, name));
                        }
                        staged.insert(name.clone(), value.clone());
                    }
                }
                "@Redfish.SettingsApplyTime" => {
                    let t = v.get("ApplyTime").and_then(Value::as_str);
                    if t.is_some_and(|t| t != "OnReset") {
                        return Err(RfError::value_not_in_list(v, "ApplyTime"));
                    }
                }
                _ => return Err(RfError::property_unknown(k)),
            }
        }
        let mut st = self.inner.state.lock();
        for (k, v) in staged {
            st.bios_pending.insert(k, v);
        }
        Ok(())
    }

    async fn patch_vmedia(&self, slot: usize, body: Map<String, Value>) -> Result<(), RfError> {
        let mut image: Option<Option<String>> = None;
        let mut inserted = None;
        let mut wp = None;
        let mut proto = None;
        for (k, v) in &body {
            match k.as_str() {
                "Image" => {
                    image = Some(match v {
                        Value::Null => None,
                        Value::String(s) if s.is_empty() => None,
                        Value::String(s) => Some(s.clone()),
                        _ => return Err(RfError::type_error(v, k)),
                    })
                }
                "Inserted" => inserted = Some(v.as_bool().ok_or_else(|| RfError::type_error(v, k))?),
                "WriteProtected" => wp = Some(v.as_bool().ok_or_else(|| RfError::type_error(v, k))?),
                "TransferProtocolType" => proto = Some(one_of(v, k, resources::TRANSFER_PROTOCOLS)?.to_string()),
                "TransferMethod" => {
                    one_of(v, k, &["Stream", "Upload"])?;
                }
                "UserName" | "Password" => {
                    v.as_str().ok_or_else(|| RfError::type_error(v, k))?;
                }
                _ if resources::VMEDIA_READ_ONLY.contains(&k.as_str()) => return Err(RfError::not_writable(k)),
                _ => return Err(RfError::property_unknown(k)),
            }
        }
        let current = self.inner.state.lock().vmedia.get(slot).cloned().unwrap_or_default();
        let wp = wp.unwrap_or(current.write_protected);
        match image {
            Some(Some(url)) => self.insert(slot, url, inserted.unwrap_or(true), wp, proto).await,
            Some(None) => self.eject(slot).await,
            None => match inserted {
                Some(false) if current.inserted => self.eject(slot).await,
                Some(true) if !current.inserted => match current.image {
                    Some(url) => self.insert(slot, url, true, wp, proto.or(current.transfer_protocol)).await,
                    None => Err(RfError::new(
                        StatusCode::BAD_REQUEST,
                        "PropertyValueConflict",
                        "Inserted cannot be true without an Image.".into(),
                    )),
                },
                _ => {
                    if let Some(s) = self.inner.state.lock().vmedia.get_mut(slot) {
                        s.write_protected = wp;
                    }
                    Ok(())
                }
            },
        }
    }

    fn patch_session_service(&self, body: Map<String, Value>) -> Result<(), RfError> {
        let mut timeout = None;
        for (k, v) in &body {
            match k.as_str() {
                "SessionTimeout" => {
                    let secs = v.as_u64().ok_or_else(|| RfError::type_error(v, k))?;
                    if !(30..=86400).contains(&secs) {
                        return Err(RfError::new(StatusCode::BAD_REQUEST, "PropertyValueOutOfRange", format!("The value {secs} for the property SessionTimeout is not in the supported range of acceptable values (30 to 86400)."))
                            .args(&[&secs.to_string(), "SessionTimeout"]));
                    }
                    timeout = Some(Duration::from_secs(secs));
                }
                "ServiceEnabled" => {
                    if v != &Value::Bool(true) {
                        return Err(RfError::value_not_in_list(v, k));
                    }
                }
                "Id" | "Name" | "Sessions" | "Status" | "Description" => return Err(RfError::not_writable(k)),
                _ => return Err(RfError::property_unknown(k)),
            }
        }
        if let Some(t) = timeout {
            self.inner.state.lock().session_timeout = Some(t);
        }
        Ok(())
    }

    fn patch_account(&self, id: u64, body: Map<String, Value>, caller: Option<Caller>) -> Result<(), RfError> {
        // Changing one's own password needs ConfigureSelf (checked already); anything else, or
        // another account, ConfigureUsers.
        if let Some(c) = caller
            && (c.account != id || body.keys().any(|k| k != "Password"))
        {
            c.require(Privilege::ConfigureUsers)?;
        }
        let mut st = self.inner.state.lock();
        let Some(mut a) = st.accounts.get(&id).cloned() else {
            return Err(RfError::not_found(&resources::account_uri(id)));
        };
        for (k, v) in &body {
            match k.as_str() {
                "UserName" => {
                    let u = v.as_str().ok_or_else(|| RfError::type_error(v, k))?;
                    check_user_name(u)?;
                    if st.accounts.iter().any(|(i, a)| *i != id && a.user == u) {
                        return Err(RfError::new(
                            StatusCode::CONFLICT,
                            "ResourceAlreadyExists",
                            format!("An account with the UserName {u} already exists."),
                        ));
                    }
                    a.user = u.to_string();
                }
                "Password" => {
                    let p = v.as_str().ok_or_else(|| RfError::type_error(v, k))?;
                    check_password_rules(p)?;
                    a.password = p.to_string();
                }
                "RoleId" => {
                    a.role = Role::parse(v.as_str().ok_or_else(|| RfError::type_error(v, k))?)
                        .ok_or_else(|| RfError::value_not_in_list(v, k))?
                }
                "Enabled" => a.enabled = v.as_bool().ok_or_else(|| RfError::type_error(v, k))?,
                "Locked" => {
                    if v != &Value::Bool(false) {
                        return Err(RfError::value_not_in_list(v, k));
                    }
                }
                "Id" | "Name" | "AccountTypes" | "Links" => return Err(RfError::not_writable(k)),
                _ => return Err(RfError::property_unknown(k)),
            }
        }
        if id == 1 && (a.role != Role::Administrator || !a.enabled) {
            return Err(RfError::new(
                StatusCode::BAD_REQUEST,
                "PropertyValueConflict",
                "The BMC's configured account stays an enabled Administrator.".into(),
            ));
        }
        st.accounts.insert(id, a);
        Ok(())
    }

    async fn power(&self) -> Result<PowerState, RfError> {
        self.inner.machine.power_state().await.map_err(RfError::machine)
    }
}

fn check_user_name(u: &str) -> Result<(), RfError> {
    if u.is_empty() || u.len() > 32 || u.contains(':') || u.chars().any(char::is_control) {
        return Err(RfError::new(StatusCode::BAD_REQUEST, "PropertyValueFormatError", format!("The value '{u}' for the property UserName is not a format that the property can accept (1 to 32 characters, no ':')."))
            .args(&[u, "UserName"]));
    }
    Ok(())
}

fn check_password_rules(p: &str) -> Result<(), RfError> {
    if p.is_empty() || p.len() > 64 {
        return Err(RfError::new(
            StatusCode::BAD_REQUEST,
            "PropertyValueFormatError",
            "The value for the property Password is not a format that the property can accept (1 to 64 characters)."
                .into(),
        )
        .args(&["Password"]));
    }
    Ok(())
}

/// Increments the last number of a dotted version (`1.0.9` → `1.0.10`).
fn bump_version(v: &str) -> String {
    match v.rsplit_once('.') {
        Some((head, last)) => match last.parse::<u64>() {
            Ok(n) => format!("{head}.{:0width$}", n.saturating_add(1), width = last.len()),
            Err(_) => format!("{v}.1"),
        },
        None => v.parse::<u64>().map_or_else(|_| format!("{v}.1"), |n| n.saturating_add(1).to_string()),
    }
}

/// `secs` since the Unix epoch as `YYYY-MM-DDThh:mm:ss+00:00`.
fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn normalize(path: &str) -> String {
    let p = path.trim_end_matches('/');
    if p.is_empty() { "/".into() } else { p.to_string() }
}

/// A resource's ETag and its serialised body carrying the same value as `@odata.etag`.
fn with_etag(body: &Value) -> (String, Vec<u8>) {
    let etag = etag_of(&serde_json::to_vec(body).unwrap_or_default());
    let mut body = body.clone();
    if let Some(o) = body.as_object_mut()
        && o.contains_key("@odata.id")
    {
        o.insert("@odata.etag".into(), Value::String(etag.clone()));
    }
    (etag, serde_json::to_vec(&body).unwrap_or_default())
}

fn etag_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Weak comparison of an `If-Match`/`If-None-Match` list against `etag`.
fn etag_matches(list: &str, etag: &str) -> bool {
    let strip = |s: &str| s.trim().trim_start_matches("W/").to_string();
    list.split(',').any(|t| t.trim() == "*" || strip(t) == strip(etag))
}

fn basic_credentials(v: &HeaderValue) -> Option<(String, String)> {
    ferric_types::http::basic_credentials(v.to_str().ok()?)
}

/// 406 unless the `Accept` header allows what `res` is (JSON, or XML for `$metadata`).
fn check_accept(headers: &HeaderMap, res: &Res) -> Result<(), RfError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let ok: &[&str] = if *res == Res::Metadata {
        &["*/*", "application/*", "application/xml", "text/xml", "text/*"]
    } else {
        &["*/*", "application/*", "application/json"]
    };
    let fine = accept.split(',').any(|m| {
        let m = m.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        ok.contains(&m.as_str())
    });
    if fine || accept.trim().is_empty() {
        Ok(())
    } else {
        Err(RfError::new(
            StatusCode::NOT_ACCEPTABLE,
            "GeneralError",
            format!("None of the media types in Accept ({accept}) can be produced for this resource."),
        ))
    }
}

/// The JSON object of a PATCH or POST body (`empty_ok`: an empty POST body is `{}`).
fn parse_object(headers: &HeaderMap, bytes: &[u8], empty_ok: bool) -> Result<Map<String, Value>, RfError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if empty_ok {
            return Ok(Map::new());
        }
        return Err(RfError::new(
            StatusCode::BAD_REQUEST,
            "MalformedJSON",
            "The request body submitted was malformed JSON and could not be parsed by the receiving service.".into(),
        ));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if ct != "application/json" {
            return Err(RfError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "GeneralError",
                format!("The Content-Type {ct} is not supported; use application/json."),
            ));
        }
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(RfError::new(
            StatusCode::BAD_REQUEST,
            "MalformedJSON",
            "The request body submitted was malformed JSON and could not be parsed by the receiving service.".into(),
        )),
    }
}

/// The value of `v` if it is one of `allowed`.
fn one_of(v: &Value, prop: &str, allowed: &[&'static str]) -> Result<&'static str, RfError> {
    let s = v.as_str().ok_or_else(|| RfError::type_error(v, prop))?;
    allowed.iter().find(|a| **a == s).copied().ok_or_else(|| RfError::value_not_in_list(v, prop))
}

fn only_params(body: &Map<String, Value>, allowed: &[&str], action: &str) -> Result<(), RfError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(RfError::new(
            StatusCode::BAD_REQUEST,
            "ActionParameterUnknown",
            format!("The action {action} was submitted with the invalid parameter {k}."),
        )
        .args(&[action, k])),
        None => Ok(()),
    }
}

fn action_string(
    body: &Map<String, Value>,
    param: &str,
    action: &str,
    required: bool,
) -> Result<Option<String>, RfError> {
    match body.get(param) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(RfError::action_type(&v.to_string(), param, action)),
        None if required => Err(RfError::new(
            StatusCode::BAD_REQUEST,
            "ActionParameterMissing",
            format!("The action {action} requires the parameter {param} to be present in the request body."),
        )
        .args(&[action, param])),
        None => Ok(None),
    }
}

fn action_bool(body: &Map<String, Value>, param: &str, action: &str) -> Result<Option<bool>, RfError> {
    match body.get(param) {
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(RfError::action_type(&v.to_string(), param, action)),
        None => Ok(None),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap_or_default()
}

fn no_content() -> Response {
    Response::builder().status(StatusCode::NO_CONTENT).body(Body::empty()).unwrap_or_default()
}

/// A Redfish error: status, a Base registry message, extra headers (boxed: errors travel in
/// every `Result` of the request path).
#[derive(Debug)]
pub(crate) struct RfError(Box<ErrorInfo>);

#[derive(Debug)]
struct ErrorInfo {
    status: StatusCode,
    message_id: &'static str,
    message: String,
    args: Vec<String>,
    severity: &'static str,
    resolution: &'static str,
    headers: Vec<(HeaderName, String)>,
}

impl RfError {
    fn new(status: StatusCode, message_id: &'static str, message: String) -> Self {
        let severity =
            if status.is_server_error() || status == StatusCode::UNAUTHORIZED { "Critical" } else { "Warning" };
        Self(Box::new(ErrorInfo {
            status,
            message_id,
            message,
            args: Vec::new(),
            severity,
            resolution: "None.",
            headers: Vec::new(),
        }))
    }
    fn resolution(mut self, r: &'static str) -> Self {
        self.0.resolution = r;
        self
    }
    fn args(mut self, a: &[&str]) -> Self {
        self.0.args = a.iter().map(|s| s.to_string()).collect();
        self
    }
    fn header(mut self, name: HeaderName, value: String) -> Self {
        self.0.headers.push((name, value));
        self
    }
    fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceMissingAtURI",
            format!("The resource at the URI {path} was not found."),
        )
        .args(&[path])
        .resolution("Place a valid resource at the URI or correct the URI and resubmit the request.")
    }
    fn unauthorized(why: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "InsufficientPrivilege", format!("There are insufficient privileges for the account or credentials associated with the current session to perform the requested operation. {why}"))
            .resolution("Provide valid credentials (HTTP Basic or a session's X-Auth-Token) and resubmit the request.")
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"ferric Redfish\"".into())
    }
    fn precondition_failed() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "The ETag supplied did not match the ETag required to change this resource.".into(),
        )
        .resolution("Try the operation again using the appropriate ETag.")
    }
    fn property_unknown(p: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "PropertyUnknown",
            format!("The property {p} is not in the list of valid properties for the resource."),
        )
        .args(&[p])
        .resolution(
            "Remove the unknown property from the request body and resubmit the request if the operation failed.",
        )
    }
    fn not_writable(p: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "PropertyNotWritable",
            format!("The property {p} is a read only property and cannot be assigned a value."),
        )
        .args(&[p])
        .resolution("Remove the property from the request body and resubmit the request if the operation failed.")
    }
    fn value_not_in_list(v: &Value, p: &str) -> Self {
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        Self::new(StatusCode::BAD_REQUEST, "PropertyValueNotInList", format!("The value '{v}' for the property {p} is not in the list of acceptable values."))
            .args(&[&v, p])
            .resolution("Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.")
    }
    fn type_error(v: &Value, p: &str) -> Self {
        let v = v.to_string();
        Self::new(
            StatusCode::BAD_REQUEST,
            "PropertyValueTypeError",
            format!("The value '{v}' for the property {p} is not a type that the property can accept."),
        )
        .args(&[&v, p])
        .resolution(
            "Correct the value for the property in the request body and resubmit the request if the operation failed.",
        )
    }
    fn action_value(v: &str, p: &str, action: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ActionParameterValueNotInList", format!("The value '{v}' for the parameter {p} in the action {action} is not in the list of acceptable values."))
            .args(&[v, p, action])
            .resolution("Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.")
    }
    fn action_type(v: &str, p: &str, action: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ActionParameterValueTypeError", format!("The value '{v}' for the parameter {p} in the action {action} is a different type than the parameter can accept."))
            .args(&[v, p, action])
            .resolution("Correct the value for the parameter in the request body and resubmit the request if the operation failed.")
    }
    fn internal(msg: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("The request failed due to an internal service error: {msg}"),
        )
        .resolution("Resubmit the request.  If the problem persists, consider resetting the service.")
    }
    fn machine(e: MachineError) -> Self {
        match e {
            MachineError::Unresponsive => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceTemporarilyUnavailable",
                "The machine is not responding.".into(),
            )
            .resolution("Wait for the indicated retry duration and retry the operation.")
            .header(header::RETRY_AFTER, "1".into()),
            MachineError::Failed(m) => Self::internal(&m),
            MachineError::Unsupported(what) => Self::new(
                StatusCode::BAD_REQUEST,
                "ActionNotSupported",
                format!("The action is not supported by the resource: this machine has no {what}."),
            )
            .args(&[what]),
        }
    }

    fn into_response(self) -> Response {
        let e = *self.0;
        let id = format!("{BASE}.{}", e.message_id);
        let body = json!({
            "error": {
                "code": format!("{BASE}.GeneralError"),
                "message": "A general error has occurred. See ExtendedInfo for more information.",
                "@Message.ExtendedInfo": [{
                    "@odata.type": "#Message.v1_1_1.Message",
                    "MessageId": id,
                    "Message": e.message,
                    "MessageArgs": e.args,
                    "Severity": e.severity,
                    "MessageSeverity": e.severity,
                    "Resolution": e.resolution,
                }]
            }
        });
        let mut r = json_response(e.status, &body);
        for (name, value) in e.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}
