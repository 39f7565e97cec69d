//! The client against a small in-process BMC (an axum router) on a paused clock: sessions,
//! ETags, Retry-After, task monitors, error messages, secrets.

use super::*;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use ferric_types::http::{HttpError, HttpResponse, SameClient};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::VecDeque;

/// Calls the router in process.
struct RouterHttp(Router);

#[async_trait::async_trait]
impl HttpClient for RouterHttp {
    async fn send(&self, req: HttpRequest) -> Result<ferric_types::http::HttpResponse, HttpError> {
        use tower::ServiceExt;
        let mut b = http::Request::builder().method(req.method).uri(req.url.path());
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let r = b.body(Body::from(req.body)).map_err(|e| HttpError::Request(e.to_string()))?;
        let Ok(resp) = self.0.clone().oneshot(r).await;
        let (parts, body) = resp.into_parts();
        let body = body.into_data_stream().map(|r| r.map_err(|e| HttpError::Body(e.to_string())));
        Ok(HttpResponse { status: parts.status, headers: parts.headers, body: Box::pin(body) })
    }
}

#[derive(Default)]
struct Bmc {
    logins: u32,
    token: Option<String>,
    etag: u32,
    /// Bump the ETag this many times just before a PATCH is checked (someone else wrote).
    concurrent_writes: u32,
    patches: Vec<Value>,
    /// Canned answers (status, Retry-After) for the next requests to the System.
    busy: VecDeque<(u16, Option<u64>)>,
    /// Polls of the task monitor answered 202 before it completes (`u32::MAX`: never).
    task_polls: u32,
    task_state: &'static str,
    requests: Vec<String>,
    sessions_offered: bool,
}

type Shared = Arc<Mutex<Bmc>>;

fn json_reply(status: u16, body: Value) -> Response {
    let mut r = axum::Json(body).into_response();
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn authorized(bmc: &Bmc, req: &Request) -> bool {
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(t) = h("x-auth-token") {
        return bmc.token.as_deref() == Some(t.as_str());
    }
    // "admin:s3cret"
    h("authorization").as_deref() == Some("Basic YWRtaW46czNjcmV0")
}

async fn handle(State(s): State<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let if_match = req.headers().get("if-match").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let authorized_now = authorized(&s.lock(), &req);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut b = s.lock();
    b.requests.push(format!("{method} {path}"));
    match (method.as_str(), path.as_str()) {
        ("GET", "/redfish/v1/") => {
            let mut root = json!({"Systems": {"@odata.id": "/redfish/v1/Systems"}});
            if b.sessions_offered {
                root["SessionService"] = json!({"@odata.id": "/redfish/v1/SessionService"});
                root["Links"] = json!({"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}});
            }
            json_reply(200, root)
        }
        ("POST", "/redfish/v1/SessionService/Sessions") if b.sessions_offered => {
            if body["UserName"] != "admin" || body["Password"] != "s3cret" {
                return json_reply(
                    401,
                    json!({"error": {"code": "Base.1.0.GeneralError", "message": "see ExtendedInfo",
                        "@Message.ExtendedInfo": [{"MessageId": "Base.1.0.NoValidSession", "Message": "Invalid username or password."}]}}),
                );
            }
            b.logins += 1;
            let token = format!("tok-{}", b.logins);
            b.token = Some(token.clone());
            let mut r = json_reply(201, json!({"Id": "1"}));
            r.headers_mut().insert("x-auth-token", token.parse().unwrap());
            r.headers_mut().insert("location", "/redfish/v1/SessionService/Sessions/1".parse().unwrap());
            r
        }
        _ if !authorized_now => json_reply(401, json!({"error": {"message": "Unauthorized"}})),
        _ if let Some((status, after)) = b.busy.pop_front() => {
            let mut r = json_reply(status, json!({"error": {"message": "busy"}}));
            if let Some(a) = after {
                r.headers_mut().insert("retry-after", a.to_string().parse().unwrap());
            }
            r
        }
        ("GET", "/redfish/v1/Systems") => json_reply(200, json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]})),
        ("GET", "/redfish/v1/Systems/1") => {
            let mut r = json_reply(200, json!({"@odata.id": "/redfish/v1/Systems/1", "Id": "1", "PowerState": "Off"}));
            r.headers_mut().insert("etag", format!("W/\"{}\"", b.etag).parse().unwrap());
            r
        }
        ("PATCH", "/redfish/v1/Systems/1") => {
            if b.concurrent_writes > 0 {
                b.concurrent_writes -= 1;
                b.etag += 1;
            }
            if if_match.as_deref() != Some(format!("W/\"{}\"", b.etag).as_str()) {
                return json_reply(
                    412,
                    json!({"error": {"@Message.ExtendedInfo": [{"Message": "The ETag supplied did not match."}]}}),
                );
            }
            b.etag += 1;
            b.patches.push(body);
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset") => {
            let mut r = StatusCode::ACCEPTED.into_response();
            r.headers_mut().insert("location", "/redfish/v1/TaskMonitors/1".parse().unwrap());
            r
        }
        ("GET", "/redfish/v1/TaskMonitors/1") => {
            if b.task_polls > 0 {
                if b.task_polls != u32::MAX {
                    b.task_polls -= 1;
                }
                let mut r = json_reply(202, json!({"TaskState": "Running"}));
                r.headers_mut().insert("retry-after", "10".parse().unwrap());
                return r;
            }
            json_reply(
                200,
                json!({"TaskState": b.task_state, "TaskStatus": "OK",
                    "Messages": [{"Message": "The BMC firmware image is corrupt."}]}),
            )
        }
        ("POST", "/redfish/v1/Systems/1/Actions/Oem.TaskBody") => {
            json_reply(202, json!({"@odata.id": "/redfish/v1/TaskService/Tasks/7", "TaskState": "New"}))
        }
        ("GET", "/redfish/v1/TaskService/Tasks/7") => {
            if b.task_polls > 0 {
                b.task_polls -= 1;
                return json_reply(200, json!({"TaskState": "Running", "PercentComplete": 50}));
            }
            json_reply(200, json!({"TaskState": "Completed", "TaskStatus": "OK"}))
        }
        ("POST", "/redfish/v1/Systems/1/Actions/Oem.Fail") => json_reply(
            400,
            json!({"error": {"code": "Base.1.8.GeneralError", "message": "A general error has occurred.",
            "@Message.ExtendedInfo": [
                {"MessageId": "Base.1.8.PropertyValueNotInList", "Message": "The value Sideways for ResetType is not in the list of acceptable values."}
            ]}}),
        ),
        _ => json_reply(404, json!({"error": {"message": "not found"}})),
    }
}

fn bmc() -> (Shared, RedfishPool) {
    let state: Shared = Arc::new(Mutex::new(Bmc { task_state: "Completed", sessions_offered: true, ..Bmc::default() }));
    let router = Router::new().fallback(handle).with_state(state.clone());
    let pool = RedfishPool::new(Arc::new(SameClient(Arc::new(RouterHttp(router)))), RedfishConfig::default());
    (state, pool)
}

fn endpoint(auth: AuthType, password: &str) -> Endpoint {
    Endpoint {
        base: Endpoint::parse_address("bmc.example:8443").unwrap(),
        username: "admin".into(),
        password: Secret::new(password),
        verify: TlsVerify::Default,
        auth,
    }
}

#[tokio::test(start_paused = true)]
async fn one_session_shared_and_remade_after_401() {
    let (bmc, pool) = bmc();
    let a = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    let b = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    assert_eq!(a.system_path(None).await.unwrap(), "/redfish/v1/Systems/1");
    b.get("/redfish/v1/Systems/1").await.unwrap();
    assert_eq!(bmc.lock().logins, 1, "one session for both clients");
    // The BMC forgets the session: one 401, one new login, the call succeeds.
    bmc.lock().token = Some("expired-elsewhere".into());
    a.get("/redfish/v1/Systems/1").await.unwrap();
    assert_eq!(bmc.lock().logins, 2);
    b.get("/redfish/v1/Systems/1").await.unwrap();
    assert_eq!(bmc.lock().logins, 2);
}

#[tokio::test(start_paused = true)]
async fn wrong_password_is_an_auth_error_with_the_bmc_message() {
    let (_bmc, pool) = bmc();
    // Another node's good credentials opened a session: the wrong password does not ride on it.
    pool.client(endpoint(AuthType::Session, "s3cret")).unwrap().get("/redfish/v1/Systems/1").await.unwrap();
    let c = pool.client(endpoint(AuthType::Session, "wrong")).unwrap();
    let e = c.get("/redfish/v1/Systems/1").await.unwrap_err();
    assert!(matches!(e, RedfishError::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains("Invalid username or password."), "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn auto_falls_back_to_basic_without_sessions() {
    let (bmc, pool) = bmc();
    bmc.lock().sessions_offered = false;
    let c = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    c.get("/redfish/v1/Systems/1").await.unwrap();
    assert_eq!(bmc.lock().logins, 0);
    let strict = pool.client(endpoint(AuthType::Session, "s3cret")).unwrap();
    assert!(strict.get("/redfish/v1/Systems/1").await.is_err());
    let basic = pool.client(endpoint(AuthType::Basic, "s3cret")).unwrap();
    basic.get("/redfish/v1/Systems/1").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn patch_sends_if_match_and_retries_once_on_412() {
    let (bmc, pool) = bmc();
    let c = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    c.patch("/redfish/v1/Systems/1", &json!({"Boot": {"BootSourceOverrideTarget": "Pxe"}})).await.unwrap();
    assert_eq!(bmc.lock().patches.len(), 1);
    // Someone writes between our read and our PATCH: re-read, retry, done.
    bmc.lock().concurrent_writes = 1;
    c.patch("/redfish/v1/Systems/1", &json!({"IndicatorLED": "Lit"})).await.unwrap();
    assert_eq!(bmc.lock().patches.len(), 2);
    let patches = bmc.lock().requests.iter().filter(|r| *r == "PATCH /redfish/v1/Systems/1").count();
    assert_eq!(patches, 3);
    // Twice in a row: the 412 is reported, with the BMC's message.
    bmc.lock().concurrent_writes = 2;
    let e = c.patch("/redfish/v1/Systems/1", &json!({"IndicatorLED": "Off"})).await.unwrap_err();
    assert_eq!(e.status(), Some(412));
    assert!(e.to_string().contains("The ETag supplied did not match."), "{e}");
}

#[tokio::test(start_paused = true)]
async fn busy_answers_wait_as_asked_but_bounded() {
    let (bmc, pool) = bmc();
    let c = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    c.get("/redfish/v1/Systems/1").await.unwrap();
    bmc.lock().busy.extend([(503, Some(3)), (429, Some(3600))]);
    let t0 = tokio::time::Instant::now();
    c.get("/redfish/v1/Systems/1").await.unwrap();
    // 3 s as asked, then 30 s (the cap) instead of an hour.
    assert_eq!(t0.elapsed(), Duration::from_secs(33));
    // Always busy: a few tries, then the error.
    bmc.lock().busy.extend([(503, None); 10]);
    let e = c.get("/redfish/v1/Systems/1").await.unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert!(e.is_transient());
    assert_eq!(bmc.lock().busy.len(), 6, "four tries");
}

#[tokio::test(start_paused = true)]
async fn task_monitors_are_polled_to_their_end() {
    let (bmc, pool) = bmc();
    let c = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    bmc.lock().task_polls = 3;
    let t0 = tokio::time::Instant::now();
    let v = c.post("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", &json!({"ResetType": "On"})).await.unwrap();
    assert_eq!(v["TaskState"], "Completed");
    assert_eq!(t0.elapsed(), Duration::from_secs(30), "three polls, Retry-After 10 s each");
    // A task that fails carries its messages.
    bmc.lock().task_state = "Exception";
    let e = c.post("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", &json!({})).await.unwrap_err();
    assert!(matches!(e, RedfishError::TaskFailed { .. }), "{e:?}");
    assert!(e.to_string().contains("The BMC firmware image is corrupt."), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_task_answered_without_location_is_followed_by_its_link() {
    let (bmc, pool) = bmc();
    let c = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    bmc.lock().task_polls = 2;
    let t0 = tokio::time::Instant::now();
    let v = c.post("/redfish/v1/Systems/1/Actions/Oem.TaskBody", &json!({})).await.unwrap();
    assert_eq!(v["TaskState"], "Completed");
    assert_eq!(t0.elapsed(), Duration::from_secs(10), "two polls at the default 5 s");
}

#[tokio::test(start_paused = true)]
async fn task_monitors_have_a_deadline() {
    let (bmc, mut pool) = bmc();
    pool.config.task_timeout = Duration::from_secs(120);
    let c = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    bmc.lock().task_polls = u32::MAX;
    let t0 = tokio::time::Instant::now();
    let e = c.post("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", &json!({})).await.unwrap_err();
    assert!(matches!(e, RedfishError::TaskTimeout { .. }), "{e:?}");
    assert!(t0.elapsed() <= Duration::from_secs(120));
}

#[tokio::test(start_paused = true)]
async fn errors_carry_extended_info() {
    let (_bmc, pool) = bmc();
    let c = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    let e = c.post("/redfish/v1/Systems/1/Actions/Oem.Fail", &json!({"ResetType": "Sideways"})).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    let text = e.to_string();
    assert!(text.contains("The value Sideways for ResetType is not in the list of acceptable values."), "{text}");
    assert!(text.contains("bmc.example:8443"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn secrets_never_shown() {
    let (bmc, pool) = bmc();
    let c = pool.client(endpoint(AuthType::Auto, "s3cret")).unwrap();
    c.get("/redfish/v1/Systems/1").await.unwrap();
    let token = bmc.lock().token.clone().unwrap();
    let shown = format!("{c:?} {:?} {}", c.endpoint(), Secret::new("s3cret"));
    assert!(!shown.contains("s3cret") && !shown.contains(&token), "{shown}");
    let state = c.session.lock().await;
    let t = state.token.as_ref().unwrap();
    assert_eq!(format!("{t:?} {t}"), "****** ******");
}

#[test]
fn requests_hide_credentials_in_debug() {
    let url = Url::parse("https://bmc.example/redfish/v1/SessionService/Sessions?x=secret-q").unwrap();
    let req = HttpRequest::post_json(url, &json!({"UserName": "admin", "Password": "s3cret"}))
        .unwrap()
        .secret_header(HeaderName::from_static("x-auth-token"), "tok-123");
    let shown = format!("{req:?}");
    assert!(!shown.contains("s3cret") && !shown.contains("tok-123") && !shown.contains("secret-q"), "{shown}");
    assert!(shown.contains("/redfish/v1/SessionService/Sessions"), "{shown}");
}

#[tokio::test(start_paused = true)]
async fn links_stay_on_the_bmc() {
    let (_bmc, pool) = bmc();
    let c = pool.client(endpoint(AuthType::Basic, "s3cret")).unwrap();
    let e = c.get("https://elsewhere.example/redfish/v1/").await.unwrap_err();
    assert!(matches!(e, RedfishError::Invalid { .. }), "{e:?}");
}

#[test]
fn addresses() {
    let u = |a| Endpoint::parse_address(a).map(|u| u.to_string());
    assert_eq!(u("10.0.0.1").unwrap(), "https://10.0.0.1/");
    assert_eq!(u("http://10.0.0.1:8000").unwrap(), "http://10.0.0.1:8000/");
    assert_eq!(u("https://[2001:db8::1]:8443/redfish/v1").unwrap(), "https://[2001:db8::1]:8443/");
    assert!(u("ftp://10.0.0.1").is_err());
    assert!(u("").is_err());
    assert!(u("https://user:pw@10.0.0.1").is_err());
}
