//! Authentication and roles over real HTTP on loopback: every caller (anonymous, a bad
//! password, admin, member with its own and a foreign node, reader, project-scoped reader)
//! against every class of endpoint, checking the status AND that a refused call wrote nothing.
//! Then bearer tokens made by the real `ferric token create` binary and sent by the real `curl`,
//! and the refusal to serve `noauth` on an address that is not loopback.

mod common;

use common::serve::Proc;
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::{AuthStrategy, Config};
use ferric_service::db::Db;
use ferric_service::images::{ImageService, ImageStore};
use ferric_types::clock::Clock;
use ferric_types::trace::Recorder;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "correct horse";

/// A service with `http_basic` auth, served on 127.0.0.1:0 in this process.
struct Served {
    url: String,
    http: reqwest::Client,
    conductor: ferric_service::conductor::Conductor,
    images: Arc<ImageService>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(tweak: impl FnOnce(&mut Config)) -> Served {
    let dir = tempfile::tempdir().unwrap();
    // Cost 4: the lowest bcrypt allows, so the table runs fast; the parsing is the same.
    let hash = bcrypt::hash(PASSWORD, 4).unwrap().replacen("$2b$", "$2y$", 1);
    let htpasswd = dir.path().join("htpasswd");
    let users = ["alice", "bob", "carol", "dave", "erin"];
    std::fs::write(&htpasswd, users.map(|u| format!("{u}:{hash}\n")).concat()).unwrap();
    let role_map = dir.path().join("roles");
    std::fs::write(&role_map, "# user role [project]\nbob member proj-a\ndave reader proj-a\n").unwrap();
    let mut config = Config::default();
    config.auth.strategy = AuthStrategy::HttpBasic;
    config.auth.htpasswd = Some(htpasswd);
    config.auth.role_map = Some(role_map);
    config.auth.roles.insert("alice".into(), "admin".parse().unwrap());
    config.auth.roles.insert("carol".into(), "reader".parse().unwrap());
    tweak(&mut config);
    let store = Arc::new(ImageStore::open(&dir.path().join("images"), Clock::system(), 1 << 30).unwrap());
    let images = Arc::new(ImageService::new(store, b"auth-test-temp-url-key".to_vec(), Clock::system()));
    let service = Service::build(
        config,
        Db::open_in_memory().unwrap(),
        Outside::real(Clock::system()).unwrap(),
        Recorder::default(),
        |p| p.images = Some(images.clone()),
    )
    .unwrap();
    let conductor = service.conductor.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(service.serve_on(listener, async move {
        let _ = stopped.await;
    }));
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("X-OpenStack-Ironic-API-Version", "latest".parse().unwrap());
    let http = reqwest::Client::builder().default_headers(h).build().unwrap();
    Served { url, http, conductor, images, _dir: dir, _stop: stop }
}

/// Who calls.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Anonymous,
    BadPassword,
    Admin,
    Member,
    Reader,
    ScopedReader,
}

const CALLERS: [Caller; 6] =
    [Caller::Anonymous, Caller::BadPassword, Caller::Admin, Caller::Member, Caller::Reader, Caller::ScopedReader];

impl Caller {
    fn credentials(self) -> Option<(&'static str, &'static str)> {
        match self {
            Caller::Anonymous => None,
            Caller::BadPassword => Some(("alice", "wrong")),
            Caller::Admin => Some(("alice", PASSWORD)),
            Caller::Member => Some(("bob", PASSWORD)),
            Caller::Reader => Some(("carol", PASSWORD)),
            Caller::ScopedReader => Some(("dave", PASSWORD)),
        }
    }
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Served {
    async fn call_as(&self, user: Option<(&str, &str)>, method: Method, path: &str, body: Body) -> Resp {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some((u, p)) = user {
            r = r.basic_auth(u, Some(p));
        }
        r = match body {
            Body::None => r,
            Body::Json(v) => r.json(&v),
            Body::Raw(ct, bytes) => r.header("content-type", ct).body(bytes),
        };
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Resp { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let body = body.map_or(Body::None, Body::Json);
        let r = self.call_as(Caller::Admin.credentials(), method.clone(), path, body).await;
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
        r.body
    }

    /// What a refused call must leave as it was: nodes (their state and every writable field),
    /// ports and images.
    async fn snapshot(&self) -> Value {
        self.conductor.wait_idle().await;
        let nodes = self.admin(Method::GET, "/v1/nodes/detail?sort_key=name", None).await;
        let nodes: Vec<Value> = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let keep = [
                    "uuid",
                    "name",
                    "provision_state",
                    "target_provision_state",
                    "target_power_state",
                    "maintenance",
                    "maintenance_reason",
                    "extra",
                    "driver_info",
                    "instance_info",
                    "owner",
                    "description",
                ];
                Value::Object(keep.iter().map(|k| (k.to_string(), n[*k].clone())).collect())
            })
            .collect();
        let ports = self.admin(Method::GET, "/v1/ports?sort_key=address", None).await;
        let images = self.admin(Method::GET, "/v2/images", None).await;
        let image_ids: Vec<Value> = images["images"].as_array().unwrap().iter().map(|i| i["id"].clone()).collect();
        json!({"nodes": nodes, "ports": ports["ports"], "images": image_ids})
    }
}

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

/// The fixture every caller meets: a node of project proj-a ("own") and one of proj-b
/// ("foreign"), each with a port; an image.
struct Fixture {
    own: String,
    foreign: String,
    own_port: String,
    image: String,
    /// A temporary URL of an uploaded image (path and query).
    temp_url: String,
}

async fn fixture(s: &Served) -> Fixture {
    let mut ids = Vec::new();
    for (name, project, mac) in [("own", "proj-a", "52:54:00:00:00:01"), ("foreign", "proj-b", "52:54:00:00:00:02")] {
        let n = s
            .admin(
                Method::POST,
                "/v1/nodes",
                Some(json!({"driver": "fake-hardware", "name": name, "owner": project,
                    "driver_info": {"ipmi_password": "bmc-secret"}})),
            )
            .await;
        let id = n["uuid"].as_str().unwrap().to_string();
        let p = s.admin(Method::POST, "/v1/ports", Some(json!({"address": mac, "node_uuid": id}))).await;
        ids.push((id, p["uuid"].as_str().unwrap().to_string()));
    }
    let img = s
        .admin(
            Method::POST,
            "/v2/images",
            Some(json!({"name": "img", "disk_format": "raw", "container_format": "bare"})),
        )
        .await;
    let served = s
        .admin(
            Method::POST,
            "/v2/images",
            Some(json!({"name": "served", "disk_format": "raw", "container_format": "bare"})),
        )
        .await;
    let served = served["id"].as_str().unwrap();
    let path = format!("/v2/images/{served}/file");
    let up = s
        .call_as(Caller::Admin.credentials(), Method::PUT, &path, Body::Raw("application/octet-stream", vec![1; 512]))
        .await;
    assert_eq!(up.status, 204, "{}", up.body);
    let temp_url = s.images.temp_url("", served, Duration::from_secs(3600)).unwrap();
    Fixture {
        temp_url,
        own: ids[0].0.clone(),
        own_port: ids[0].1.clone(),
        foreign: ids[1].0.clone(),
        image: img["id"].as_str().unwrap().to_string(),
    }
}

/// One row of the table: a request and the status each caller gets, in [`CALLERS`] order.
struct Row {
    what: &'static str,
    method: Method,
    path: String,
    body: Body,
    want: [u16; 6],
}

fn rows(f: &Fixture) -> Vec<Row> {
    let row = |what, method, path: String, body, want| Row { what, method, path, body, want };
    let (own, foreign) = (&f.own, &f.foreign);
    let extra = json!([{"op": "add", "path": "/extra/k", "value": "v"}]);
    vec![
        //                                                        anon bad  admin member reader scoped
        row("version discovery", Method::GET, "/".into(), Body::None, [200, 200, 200, 200, 200, 200]),
        row("v1 discovery", Method::GET, "/v1".into(), Body::None, [200, 200, 200, 200, 200, 200]),
        row("list nodes", Method::GET, "/v1/nodes".into(), Body::None, [401, 401, 200, 200, 200, 200]),
        row("show own node", Method::GET, format!("/v1/nodes/{own}"), Body::None, [401, 401, 200, 200, 200, 200]),
        row(
            "show foreign node",
            Method::GET,
            format!("/v1/nodes/{foreign}"),
            Body::None,
            [401, 401, 200, 404, 200, 404],
        ),
        row(
            "foreign node's ports",
            Method::GET,
            format!("/v1/nodes/{foreign}/ports"),
            Body::None,
            [401, 401, 200, 404, 200, 404],
        ),
        row(
            "show own port",
            Method::GET,
            format!("/v1/ports/{}", f.own_port),
            Body::None,
            [401, 401, 200, 200, 200, 200],
        ),
        row("chassis list", Method::GET, "/v1/chassis".into(), Body::None, [401, 401, 200, 403, 200, 403]),
        row(
            "create node",
            Method::POST,
            "/v1/nodes".into(),
            Body::Json(json!({"driver": "fake-hardware", "name": "new"})),
            [401, 401, 201, 403, 403, 403],
        ),
        row(
            "create node as text/plain",
            Method::POST,
            "/v1/nodes".into(),
            Body::Raw("text/plain", br#"{"driver": "fake-hardware", "name": "plain"}"#.to_vec()),
            [401, 401, 415, 403, 403, 403],
        ),
        row(
            "patch own extra",
            Method::PATCH,
            format!("/v1/nodes/{own}"),
            Body::Json(extra.clone()),
            [401, 401, 200, 200, 403, 403],
        ),
        row(
            "patch own BMC password",
            Method::PATCH,
            format!("/v1/nodes/{own}"),
            Body::Json(json!([{"op": "add", "path": "/driver_info/ipmi_password", "value": "mine"}])),
            [401, 401, 200, 403, 403, 403],
        ),
        row(
            "patch foreign extra",
            Method::PATCH,
            format!("/v1/nodes/{foreign}"),
            Body::Json(extra),
            [401, 401, 200, 404, 403, 404],
        ),
        row(
            "power own",
            Method::PUT,
            format!("/v1/nodes/{own}/states/power"),
            Body::Json(json!({"target": "power on"})),
            [401, 401, 202, 202, 403, 403],
        ),
        row(
            "power foreign",
            Method::PUT,
            format!("/v1/nodes/{foreign}/states/power"),
            Body::Json(json!({"target": "power on"})),
            [401, 401, 202, 404, 403, 404],
        ),
        row(
            "provision own",
            Method::PUT,
            format!("/v1/nodes/{own}/states/provision"),
            Body::Json(json!({"target": "manage"})),
            [401, 401, 202, 202, 403, 403],
        ),
        row(
            "maintenance own",
            Method::PUT,
            format!("/v1/nodes/{own}/maintenance"),
            Body::Json(json!({"reason": "checking"})),
            [401, 401, 202, 202, 403, 403],
        ),
        // Open to anyone; the conductor answers: no node in a state that expects an agent.
        row("agent lookup", Method::GET, "/v1/lookup?addresses=52:54:00:00:00:01".into(), Body::None, [404; 6]),
        // Open to anyone; the conductor refuses a heartbeat without the node's agent token.
        row(
            "agent heartbeat",
            Method::POST,
            format!("/v1/heartbeat/{own}"),
            Body::Json(json!({"callback_url": "http://127.0.0.1:9999"})),
            [400; 6],
        ),
        // Agents download without a user: the signature is the credential.
        row("temp URL download", Method::GET, f.temp_url.clone(), Body::None, [200; 6]),
        row("image list", Method::GET, "/v2/images".into(), Body::None, [401, 401, 200, 200, 200, 200]),
        row(
            "image create",
            Method::POST,
            "/v2/images".into(),
            Body::Json(json!({"name": "new", "disk_format": "raw", "container_format": "bare"})),
            [401, 401, 201, 403, 403, 403],
        ),
        row(
            "image upload",
            Method::PUT,
            format!("/v2/images/{}/file", f.image),
            Body::Raw("application/octet-stream", vec![7; 4096]),
            [401, 401, 204, 403, 403, 403],
        ),
        row(
            "delete own port",
            Method::DELETE,
            format!("/v1/ports/{}", f.own_port),
            Body::None,
            [401, 401, 204, 403, 403, 403],
        ),
        row("delete own node", Method::DELETE, format!("/v1/nodes/{own}"), Body::None, [401, 401, 204, 403, 403, 403]),
        row(
            "delete image",
            Method::DELETE,
            format!("/v2/images/{}", f.image),
            Body::None,
            [401, 401, 204, 403, 403, 403],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_class_of_endpoint() {
    let mut failures = Vec::new();
    for (i, caller) in CALLERS.iter().enumerate() {
        // A fresh service per caller: the allowed writes of one do not change what the next meets.
        let s = serve(|_| {}).await;
        let f = fixture(&s).await;
        for row in rows(&f) {
            let before = s.snapshot().await;
            let r = s.call_as(caller.credentials(), row.method.clone(), &row.path, row.body.clone()).await;
            let want = row.want[i];
            if r.status != want {
                failures.push(format!("{caller:?} {}: got {} want {want}: {}", row.what, r.status, r.body));
                continue;
            }
            if r.status == 401 {
                let challenge = r.headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
                assert_eq!(challenge.as_deref(), Some("Basic realm=\"ferric\""), "{caller:?} {}", row.what);
            }
            if r.status >= 400 {
                // Ironic's envelope, and nothing written.
                assert!(r.body["error_message"].is_string(), "{caller:?} {}: {}", row.what, r.body);
                assert_eq!(s.snapshot().await, before, "{caller:?} {}: a refused call changed something", row.what);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_show_a_scoped_caller_its_projects_nodes_and_mask_secrets_for_non_admins() {
    let s = serve(|_| {}).await;
    let f = fixture(&s).await;
    let temp = "http://127.0.0.1:1/swift/v1/images/x?temp_url_sig=abc&temp_url_expires=1";
    s.admin(
        Method::PATCH,
        &format!("/v1/nodes/{}", f.own),
        Some(json!([{"op": "add", "path": "/instance_info", "value": {"image_source": temp, "root_gb": 10}}])),
    )
    .await;
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> =
            v["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    for (caller, want) in [
        (Caller::Admin, vec!["foreign", "own"]),
        (Caller::Member, vec!["own"]),
        (Caller::Reader, vec!["foreign", "own"]),
        (Caller::ScopedReader, vec!["own"]),
    ] {
        for path in ["/v1/nodes", "/v1/nodes/detail", "/v1/nodes?owner=proj-b&fields=name"] {
            let r = s.call_as(caller.credentials(), Method::GET, path, Body::None).await;
            assert_eq!(r.status, 200, "{caller:?} {path}: {}", r.body);
            let want: Vec<&str> = if path.contains("proj-b") {
                want.iter().copied().filter(|n| *n == "foreign").collect()
            } else {
                want.clone()
            };
            assert_eq!(names(&r.body), want, "{caller:?} {path}");
        }
        let ports = s.call_as(caller.credentials(), Method::GET, "/v1/ports", Body::None).await;
        assert_eq!(ports.body["ports"].as_array().unwrap().len(), want.len(), "{caller:?} ports");
        let n = s.call_as(caller.credentials(), Method::GET, &format!("/v1/nodes/{}", f.own), Body::None).await;
        assert_eq!(n.body["driver_info"]["ipmi_password"], "******", "{caller:?}");
        let shown = n.body["instance_info"]["image_source"].clone();
        match caller {
            Caller::Admin => assert_eq!(shown, temp, "an admin sees the temp URL"),
            _ => assert_eq!(shown, "******", "{caller:?} must not see a temp URL"),
        }
        assert_eq!(n.body["instance_info"]["root_gb"], 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_role_is_refused() {
    let s = serve(|_| {}).await;
    let r = s.call_as(Some(("erin", PASSWORD)), Method::GET, "/v1/nodes", Body::None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body["error_message"].as_str().unwrap().contains("no role"), "{}", r.body);
    // Unknown users are refused as a wrong password is.
    let r = s.call_as(Some(("mallory", PASSWORD)), Method::GET, "/v1/nodes", Body::None).await;
    assert_eq!(r.status, 401);
    // Ironic's headers on refusals too.
    assert!(r.headers.get("x-openstack-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_lookups_are_rate_limited_per_client_address() {
    let s = serve(|c| {
        c.auth.lookup_burst = 3;
        c.auth.lookup_rate = 0.001;
    })
    .await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(s.call_as(None, Method::GET, "/v1/lookup?addresses=52:54:00:00:00:09", Body::None).await);
    }
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![404, 404, 404, 429, 429]);
    assert_eq!(got[3].headers.get("retry-after").unwrap(), "1");
    assert!(got[3].body["error_message"].is_string());
    // Other endpoints are not limited.
    assert_eq!(s.call_as(Caller::Admin.credentials(), Method::GET, "/v1/nodes", Body::None).await.status, 200);
}

// ---------------------------------------------------------------- the real binary

fn ferric() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferric"))
}

/// `ferric token create` (the real binary) prints a token, and only it.
fn create_token(data: &std::path::Path, args: &[&str]) -> String {
    let out = ferric().args(["token", "create"]).args(args).arg("--data-dir").arg(data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "token create prints the token and nothing else: {stdout:?}");
    lines[0].to_string()
}

/// `curl` with a bearer token (and `X-Auth-Token`) against `ferric serve --auth-strategy token`:
/// the status and body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "X-OpenStack-Ironic-API-Version: latest"])
        .args(args)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn curl_with_a_token_from_ferric_token_create() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = create_token(&data, &["--user", "alice", "--role", "admin"]);
    let reader = create_token(&data, &["--user", "carol", "--role", "reader", "--expires", "1h"]);
    let doomed = create_token(&data, &["--user", "dave", "--role", "admin", "--project", "proj-a"]);
    let list = ferric().args(["token", "list", "--data-dir"]).arg(&data).output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(!list.contains(&admin) && !list.contains(&reader), "a listing never shows secrets: {list}");
    let dave = list.lines().find(|l| l.contains("dave")).unwrap();
    assert!(dave.contains("proj-a") && dave.contains("active"), "{dave}");
    let id = dave.split_whitespace().next().unwrap();
    let out = ferric().args(["token", "revoke", id, "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let port = common::serve::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = Proc(
        ferric()
            .args(["serve", "--auth-strategy", "token", "--api-bind", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::listening::wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(30));
    let bearer = |t: &str| format!("Authorization: Bearer {t}");

    let (code, body) = curl(&[&format!("{url}/v1/nodes")]);
    assert_eq!(code, 401, "{body}");
    let (code, body) = curl(&[
        "-H",
        &bearer(&admin),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"driver": "fake-hardware", "name": "by-curl"}"#,
        &format!("{url}/v1/nodes"),
    ]);
    assert_eq!(code, 201, "{body}");
    let (code, body) = curl(&["-H", &bearer(&reader), &format!("{url}/v1/nodes/by-curl")]);
    assert_eq!(code, 200, "{body}");
    // What python-ironicclient sends with --os-token.
    let (code, _) = curl(&["-H", &format!("X-Auth-Token: {reader}"), &format!("{url}/v1/nodes")]);
    assert_eq!(code, 200);
    let (code, body) = curl(&["-H", &bearer(&reader), "-X", "DELETE", &format!("{url}/v1/nodes/by-curl")]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("disallowed by policy"), "{body}");
    let (code, _) = curl(&["-H", &bearer(&doomed), &format!("{url}/v1/nodes")]);
    assert_eq!(code, 401, "a revoked token");
    let (code, _) = curl(&["-H", &bearer("ferric_not-a-token"), &format!("{url}/v1/nodes")]);
    assert_eq!(code, 401);
    // curl -d sends application/x-www-form-urlencoded: not JSON.
    let (code, body) =
        curl(&["-H", &bearer(&admin), "-d", r#"{"driver": "fake-hardware"}"#, &format!("{url}/v1/nodes")]);
    assert_eq!(code, 415, "{body}");
    let (code, body) = curl(&["-H", &bearer(&admin), &format!("{url}/v1/nodes")]);
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["nodes"].as_array().unwrap().len(), 1);
}

#[test]
fn noauth_refuses_to_serve_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 (TEST-NET-1) is on no interface here: binding it would fail too, but the refusal
    // comes first, with its own message.
    let out = ferric()
        .args(["serve", "--api-bind", "192.0.2.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without authentication") && err.contains("--insecure-noauth"), "{err}");
    assert!(!err.contains("cannot bind"), "{err}");
    assert!(!dir.path().join("data").exists(), "refused before touching the data directory");
    // http_basic without an htpasswd file: a clear message too.
    let out = ferric()
        .args(["serve", "--auth-strategy", "http_basic", "--api-bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs an htpasswd file"));
}

#[test]
fn an_htpasswd_with_other_hash_kinds_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, "alice:$apr1$Zk3s8Q1x$Lr0fQ7rUqv2yq1l0O0lWm.\n").unwrap();
    let out = ferric()
        .args(["serve", "--auth-strategy", "http_basic", "--api-bind", "127.0.0.1:0", "--htpasswd"])
        .arg(&htpasswd)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only bcrypt entries") && err.contains("line 1"), "{err}");
}

/// The caller is set as an `Identity` extension (request and response) for the layers that log
/// or count requests: the user under `http_basic`, the anonymous admin under `noauth`.
#[tokio::test]
async fn the_caller_is_an_identity_extension() {
    use axum::body::Body;
    use ferric_service::api::identity::{AuthRole, Identity};
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("bob:{}\n", bcrypt::hash(PASSWORD, 4).unwrap())).unwrap();
    let build = |config: Config| {
        Service::build(
            config,
            Db::open_in_memory().unwrap(),
            Outside::real(Clock::system()).unwrap(),
            Recorder::default(),
            |_| {},
        )
        .unwrap()
    };
    let mut config = Config::default();
    config.auth.strategy = AuthStrategy::HttpBasic;
    config.auth.htpasswd = Some(htpasswd);
    config.auth.roles.insert("bob".into(), AuthRole::Member);
    config.auth.projects.insert("bob".into(), "proj-a".into());
    let basic = build(config);
    let noauth = build(Config::default());
    let get = |creds: Option<&str>| {
        let mut b = axum::http::Request::builder().uri("/v1/nodes").header("host", "127.0.0.1");
        if let Some(c) = creds {
            use base64::Engine;
            b = b.header("authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(c)));
        }
        b.body(Body::empty()).unwrap()
    };
    let r = basic.router().oneshot(get(Some(&format!("bob:{PASSWORD}")))).await.unwrap();
    assert_eq!(r.status(), 200);
    let want = Identity { user: "bob".into(), role: AuthRole::Member, project: Some("proj-a".into()) };
    assert_eq!(r.extensions().get::<Identity>(), Some(&want));
    let r = basic.router().oneshot(get(None)).await.unwrap();
    assert_eq!((r.status().as_u16(), r.extensions().get::<Identity>()), (401, None));
    let r = noauth.router().oneshot(get(None)).await.unwrap();
    assert_eq!(r.extensions().get::<Identity>(), Some(&Identity::anonymous_admin()));
}

/// With authentication on, the audit log names the caller (the auth layer's identity reaches the
/// outermost audit layer), refusals included; `/metrics` needs credentials and a reader suffices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_name_the_authenticated_caller_and_metrics_need_a_reader() {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.jsonl");
    let file = audit.clone();
    let s = serve(move |c| c.audit.file = Some(file)).await;
    let admin = Some(("alice", PASSWORD));
    let r = s
        .call_as(admin, Method::POST, "/v1/nodes", Body::Json(json!({"driver": "fake-hardware", "name": "aud"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.call_as(Some(("carol", PASSWORD)), Method::DELETE, "/v1/nodes/aud", Body::None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let lines: Vec<Value> =
        std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let create = lines.iter().find(|l| l["method"] == "POST" && l["path"] == "/v1/nodes").expect("create recorded");
    assert_eq!((create["user"].as_str(), create["role"].as_str()), (Some("alice"), Some("admin")), "{create}");
    let refused = lines.iter().find(|l| l["method"] == "DELETE").expect("refusal recorded");
    assert_eq!(refused["user"], "carol", "{refused}");
    assert_eq!(refused["result"], 403, "{refused}");
    assert!(!std::fs::read_to_string(&audit).unwrap().contains(PASSWORD));

    assert_eq!(s.call_as(None, Method::GET, "/metrics", Body::None).await.status, 401);
    let url = format!("{}/metrics", s.url);
    let m = s.http.get(&url).basic_auth("carol", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(m.status().as_u16(), 200);
    assert!(m.text().await.unwrap().contains("ironic_nodes"));
}

/// The web console sits behind the same authentication: nobody gets nothing, a reader sees the
/// fleet but no actions and is refused one, an admin acts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_needs_credentials_and_follows_the_roles() {
    let s = serve(|_| {}).await;
    let admin = Some(("alice", PASSWORD));
    let r = s
        .call_as(admin, Method::POST, "/v1/nodes", Body::Json(json!({"driver": "fake-hardware", "name": "web"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let page = |user: Option<(&'static str, &'static str)>, path: &str| {
        let mut r = s.http.get(format!("{}{path}", s.url)).header("accept", "text/html");
        if let Some((u, p)) = user {
            r = r.basic_auth(u, Some(p));
        }
        r.send()
    };
    let r = page(None, "/").await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    assert_eq!(page(None, "/nodes/web").await.unwrap().status().as_u16(), 401);
    let reader = Some(("carol", PASSWORD));
    let fleet = page(reader, "/").await.unwrap();
    assert_eq!(fleet.status().as_u16(), 200);
    assert!(fleet.text().await.unwrap().contains("web"));
    let node = page(reader, "/nodes/web").await.unwrap().text().await.unwrap();
    assert!(!node.contains("data-action="), "a reader sees no action buttons");
    let act = |user: (&'static str, &'static str)| {
        s.http
            .post(format!("{}/console/nodes/web/action", s.url))
            .basic_auth(user.0, Some(user.1))
            .header("origin", s.url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("action=maintenance_on")
            .send()
    };
    assert_eq!(act(("carol", PASSWORD)).await.unwrap().status().as_u16(), 403);
    let r = s.call_as(admin, Method::GET, "/v1/nodes/web", Body::None).await;
    assert_eq!(r.body["maintenance"], false, "a refused action changed nothing");
    let page_admin = page(admin, "/nodes/web").await.unwrap().text().await.unwrap();
    assert!(page_admin.contains("data-action="), "an admin sees actions");
}
