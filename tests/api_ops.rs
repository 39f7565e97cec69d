//! Operating the API: TLS (checked with the real `openssl s_client` and `curl`), certificate
//! reload on SIGHUP, request-head limits and slow clients, the audit log, and `/metrics`
//! (checked with the real `promtool`).

mod common;

use common::Api;
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::Config;
use ferric_service::db::Db;
use ferric_types::clock::Clock;
use ferric_types::trace::Recorder;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test CA that signs server certificates for 127.0.0.1 and localhost.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "ferric test CA");
        let cert = p.self_signed(&key).unwrap();
        Ca { issuer: Issuer::new(p, key), pem: cert.pem() }
    }

    /// Writes a server certificate (subject CN `cn`, serial `serial`) and its key.
    fn issue(&self, cert: &Path, key: &Path, cn: &str, serial: u64) {
        let k = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from(serial));
        let c = p.signed_by(&k, &self.issuer).unwrap();
        std::fs::write(cert, c.pem()).unwrap();
        std::fs::write(key, k.serialize_pem()).unwrap();
    }
}

struct Tls {
    _dir: tempfile::TempDir,
    ca: Ca,
    ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn tls_files() -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (cert, key) = (dir.path().join("api.pem"), dir.path().join("api.key"));
    ca.issue(&cert, &key, "first", 1);
    Tls { _dir: dir, ca, ca_file, cert, key }
}

/// Serves a service built from `config` on a loopback port; returns the address, the service's
/// reload handle, and a sender that shuts it down.
async fn serve(config: Config) -> (SocketAddr, ferric_service::assemble::Reload, tokio::sync::oneshot::Sender<()>) {
    let db = Db::open_in_memory().unwrap();
    let service =
        Service::build(config, db, Outside::real(Clock::system()).unwrap(), Recorder::default(), |_| {}).unwrap();
    let reload = service.reload.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        service
            .serve_on(listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap()
    });
    (addr, reload, tx)
}

async fn s_client(addr: SocketAddr, ca: &Path, extra: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca)
        .args(["-verify_return_error", "-servername", "localhost", "-showcerts"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("openssl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `--tls-cert/--tls-key`: the API speaks TLS 1.2 and 1.3 and refuses 1.1 (openssl), serves
/// `curl --cacert`, and its links are `https://`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_over_tls_1_2_and_1_3_only() {
    let t = tls_files();
    let mut config = Config::default();
    config.api.tls_cert = Some(t.cert.clone());
    config.api.tls_key = Some(t.key.clone());
    let (addr, _reload, stop) = serve(config).await;
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, text) = s_client(addr, &t.ca_file, &[flag]).await;
        assert!(ok, "{flag}: {text}");
        assert!(text.contains(&format!("Protocol  : {version}")) || text.contains(version), "{flag}: {text}");
        assert!(text.contains("Verify return code: 0 (ok)"), "{flag}: {text}");
    }
    // The client is allowed TLS 1.1 (security level 0); the server refuses it.
    let (ok, text) = s_client(addr, &t.ca_file, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]).await;
    assert!(!ok, "TLS 1.1 accepted: {text}");
    assert!(!text.contains("Verify return code: 0 (ok)") || text.contains("alert"), "{text}");

    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&t.ca_file)
        .arg(format!("https://localhost:{}/v1", addr.port()))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let href = v["links"][0]["href"].as_str().unwrap();
    assert!(href.starts_with("https://localhost:"), "{v}");
    // Without the CA, curl refuses the certificate.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("https://localhost:{}/v1", addr.port()))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let _ = stop.send(());
}

/// A rustls client that trusts `ca`.
fn rustls_client(ca: &Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The subject CN of the certificate a TLS connection got.
fn peer_cn(s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    let der = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    // The CN is the last printable string in a certificate this test issued; openssl parses it
    // properly elsewhere, this only tells "first" from "second".
    for cn in ["first", "second"] {
        if der.windows(cn.len()).any(|w| w == cn.as_bytes()) {
            return cn.to_string();
        }
    }
    String::new()
}

async fn get_on(s: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    s.write_all(b"GET /v1 HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// SIGHUP reloads the certificate: a connection opened before keeps working on the old one,
/// a new connection gets the new one (openssl shows its subject and serial); a broken new file
/// keeps the certificate in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let t = tls_files();
    let mut config = Config::default();
    config.api.tls_cert = Some(t.cert.clone());
    config.api.tls_key = Some(t.key.clone());
    let (addr, _reload, stop) = serve(config).await;
    let connector = rustls_client(&t.ca_file);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut before = connector.connect(name.clone(), tcp).await.unwrap();
    assert_eq!(peer_cn(&before), "first");
    assert!(get_on(&mut before).await.starts_with("HTTP/1.1 200"));

    t.ca.issue(&t.cert, &t.key, "second", 2);
    // The service watches SIGHUP while it serves (this process's handler is tokio's).
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, text) = s_client(addr, &t.ca_file, &[]).await;
        assert!(ok, "{text}");
        if text.contains("CN = second") || text.contains("CN=second") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still the old certificate: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The serial, as openssl reads it off a new connection.
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -CAfile {} </dev/null 2>/dev/null | openssl x509 -noout -serial -subject",
            t.ca_file.display()
        ))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serial=02"), "{text}");
    // The connection from before the reload still answers, on its old session.
    assert!(get_on(&mut before).await.starts_with("HTTP/1.1 200"));
    assert_eq!(peer_cn(&before), "first");

    // A broken certificate file: the reload fails and the second certificate stays.
    std::fs::write(&t.cert, "garbage").unwrap();
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new client: this one's would resume its first session, which carries no certificate.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut after = rustls_client(&t.ca_file).connect(name, tcp).await.unwrap();
    assert_eq!(peer_cn(&after), "second");
    assert!(get_on(&mut after).await.starts_with("HTTP/1.1 200"));
    let _ = stop.send(());
}

/// Sends `head` on a new connection and returns everything the server answers until it
/// closes (or 10 s pass).
async fn raw_exchange(addr: SocketAddr, head: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before it has read everything.
    let _ = s.write_all(head).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// Too many headers (200), or a too-large one (64 KiB): 431. (TLS connections are served by the
/// same connection builder, so the same limits hold over HTTPS.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_431() {
    let (addr, _r, stop) = serve(Config::default()).await;
    let mut many = String::from("GET /v1 HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = raw_exchange(addr, many.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let big = format!("GET /v1 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 << 10));
    let r = raw_exchange(addr, big.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    // Within the limits: answered.
    let ok = raw_exchange(addr, b"GET /v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let _ = stop.send(());
}

/// A client that sends half a request line and stalls is disconnected after
/// `header_read_timeout` (on tokio's paused clock: no waiting in real time).
#[tokio::test(start_paused = true)]
async fn a_stalled_client_is_cut_off() {
    let mut config = Config::default();
    config.api.header_read_timeout = 5;
    let (addr, _r, stop) = serve(config).await;
    let started = tokio::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1 HT").await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "still connected after 60 s");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(30), "{waited:?}");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    let _ = stop.send(());
}

/// `--audit-log`: JSON lines for writes (refused ones too) and provision-state changes, with the
/// request id the API answered with, and no secret.
#[tokio::test]
async fn the_audit_log_records_writes_and_state_changes_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut config = Config::default();
    config.audit.file = Some(log.clone());
    let api = Api::with_config(config);
    let r = api
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": "n1",
                   "driver_info": {"ipmi_password": "hunter2-secret", "ipmi_username": "admin"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created_rid = r.header("x-openstack-request-id").unwrap();
    let uuid = r.json()["uuid"].as_str().unwrap().to_string();
    let r = api
        .patch(
            "/v1/nodes/n1",
            json!([{"op": "replace", "path": "/driver_info/ipmi_password", "value": "other-secret"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let refused = api.post("/v1/nodes", json!({"driver": "no-such-driver"})).await;
    assert!(refused.status.is_client_error());
    api.get("/v1/nodes").await;
    let r = api.provision("n1", "manage").await;
    assert_eq!(r.status, 202, "{}", r.text());
    api.call(axum::http::Method::DELETE, "/v1/images/x?temp_url_sig=abc&temp_url_expires=1", None).await;
    let r = api.delete("/v1/nodes/n1").await;
    assert_eq!(r.status, 204, "{}", r.text());

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("hunter2") && !text.contains("other-secret"), "{text}");
    assert!(!text.contains("temp_url_sig"), "{text}");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let api_lines: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "api").collect();
    // Writes only: the GET is not there.
    assert!(api_lines.iter().all(|l| l["method"] != "GET"));
    let create = &api_lines[0];
    assert_eq!(create["method"], "POST");
    assert_eq!(create["path"], "/v1/nodes");
    assert_eq!(create["result"], 201);
    assert_eq!(create["node"], uuid.as_str());
    assert_eq!(create["request_id"], created_rid.as_str());
    assert_eq!(create["user"], "anonymous");
    assert_eq!(create["role"], "admin");
    chrono::DateTime::parse_from_rfc3339(create["time"].as_str().unwrap()).unwrap();
    assert_eq!(api_lines[1]["method"], "PATCH");
    assert_eq!(api_lines[1]["node"], uuid.as_str(), "a name in the path is resolved");
    assert!(api_lines.iter().any(|l| l["method"] == "POST" && l["result"].as_u64().unwrap() >= 400));
    assert!(api_lines.iter().any(|l| l["method"] == "PUT" && l["result"] == 202));
    let deleted = api_lines.iter().find(|l| l["method"] == "DELETE" && l["path"] == "/v1/nodes/n1").unwrap();
    assert_eq!(deleted["node"], uuid.as_str(), "the name was resolved before the node went");
    assert_eq!(deleted["result"], 204);
    let changes: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["kind"] == "provision" && l["node"] == uuid.as_str())
        .map(|l| (l["from"].as_str().unwrap().to_string(), l["to"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(changes.contains(&("enroll".into(), "verifying".into())), "{changes:?}");
    assert!(changes.contains(&("verifying".into(), "manageable".into())), "{changes:?}");
}

/// `GET /metrics` after a few operations passes `promtool check metrics` and counts what
/// happened.
#[tokio::test]
async fn metrics_pass_promtool() {
    let api = Api::new();
    let n = api.node("m1").await;
    api.provision(&n, "manage").await;
    api.provision(&n, "provide").await;
    let r = api.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    assert!(text.contains("ironic_nodes{provision_state=\"available\""), "{text}");
    assert!(text.contains("ironic_db_query_duration_seconds_count{op=\"write\"}"), "{text}");
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool: {said}\n{text}");
    assert!(said.trim().is_empty(), "promtool lint: {said}\n{text}");
}

/// Agent TLS: `ferric-agent --tls-cert/--tls-key` serves its API over HTTPS, and the conductor's
/// agent client with `[agent] verify_ca` reaches it, while one trusting another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conductor_checks_the_agents_certificate() {
    use ferric_disk::http::ReqwestConnector;
    use ferric_service::drivers::agent_client::{AgentClient, AgentClientConfig, AgentTarget};
    use ferric_types::http::{HttpConnector, TlsVerify};
    let t = tls_files();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let port = common::listening::free_port();
    let closed = common::listening::free_port();
    let mut agent = tokio::process::Command::new(common::agent_bin::path())
        .args(["--api-url", &format!("http://127.0.0.1:{closed}"), "--listen", &format!("127.0.0.1:{port}")])
        .arg("--disk")
        .arg(&disk)
        .args(["--mac", "52:54:00:00:00:01", "--tls-cert"])
        .arg(&t.cert)
        .arg("--tls-key")
        .arg(&t.key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::task::spawn_blocking(move || common::listening::wait_listening(addr, Duration::from_secs(30)))
        .await
        .unwrap();
    let target = AgentTarget { url: format!("https://127.0.0.1:{port}"), token: None };
    let connector = ReqwestConnector::new(Duration::from_secs(5));
    let trusting = connector.client(&TlsVerify::CaFile(t.ca_file.clone())).unwrap();
    let status = AgentClient::new(trusting, AgentClientConfig::default()).status(&target).await.unwrap();
    assert!(!status.version.is_empty());
    // A conductor whose verify_ca is another CA refuses the agent.
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, Ca::new().pem).unwrap();
    let untrusting = connector.client(&TlsVerify::CaFile(other)).unwrap();
    assert!(AgentClient::new(untrusting, AgentClientConfig::default()).status(&target).await.is_err());
    // SIGHUP: the agent reads its renewed certificate for new connections.
    t.ca.issue(&t.cert, &t.key, "renewed", 7);
    let pid = agent.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let mut seen = String::new();
    for _ in 0..100 {
        let (ok, text) = s_client(addr, &t.ca_file, &[]).await;
        if ok && (text.contains("CN=renewed") || text.contains("CN = renewed")) {
            seen = text;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.contains("renewed"), "the agent still serves its old certificate after SIGHUP");
    let status = AgentClient::new(
        connector.client(&TlsVerify::CaFile(t.ca_file.clone())).unwrap(),
        AgentClientConfig::default(),
    )
    .status(&target)
    .await;
    assert!(status.is_ok(), "{status:?}");
    // The service takes `[agent] verify_ca` for its agent client: a missing file stops it.
    let mut config = Config::default();
    config.agent.verify_ca = Some(dir.path().join("missing.pem"));
    let images_dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(ferric_service::images::ImageStore::open(images_dir.path(), Clock::system(), 1 << 20).unwrap());
    let images = Arc::new(ferric_service::images::ImageService::new(store, b"k".repeat(32), Clock::system()));
    let built = Service::build(
        config,
        Db::open_in_memory().unwrap(),
        Outside::real(Clock::system()).unwrap(),
        Recorder::default(),
        |p| p.images = Some(images),
    );
    assert!(built.is_err());
    agent.kill().await.unwrap();
}

/// `[pxe] http_tls_cert/http_tls_key`: the HTTP boot server serves its root over HTTPS
/// (`curl --cacert`), with byte ranges as over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_boot_over_tls() {
    use ferric_service::pxe::dhcp::{MemoryHostTable, MemoryLeaseStore};
    use ferric_service::pxe::{PxeServiceConfig, start};
    let t = tls_files();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("boot.ipxe"), b"#!ipxe\nchain http://x/y\n").unwrap();
    let cert = ferric_service::tls::ReloadingCert::load(&t.cert, &t.key).unwrap();
    let cfg = PxeServiceConfig {
        http: Some(("127.0.0.1:0".parse().unwrap(), root.path().to_path_buf())),
        http_tls: Some(cert.server_config().unwrap()),
        ..Default::default()
    };
    let mut svc = start(cfg, Arc::new(MemoryHostTable::new()), Arc::new(MemoryLeaseStore::new())).await.unwrap();
    let port = svc.http_addr.unwrap().port();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-r", "0-5", "--cacert"])
        .arg(&t.ca_file)
        .arg(format!("https://localhost:{port}/boot.ipxe"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"#!ipxe");
    svc.tasks.abort_all();
}

async fn curl_create(ca: &Path, port: u16, name: &str) -> Value {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-OpenStack-Ironic-API-Version: latest",
            "-d",
        ])
        .arg(
            json!({"driver": "fake-hardware", "name": name, "driver_info": {"ipmi_password": "pw-not-logged"}})
                .to_string(),
        )
        .arg(format!("https://localhost:{port}/v1/nodes"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ferric serve --tls-cert --tls-key --audit-log`: the process serves HTTPS and audits; after
/// logrotate moves the log away, `kill -HUP` makes it write a new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferric_serve_reopens_its_audit_log_on_sighup() {
    let t = tls_files();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let port = common::listening::free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferric"))
        .args(["serve", "--api-bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(&t.cert)
        .arg("--tls-key")
        .arg(&t.key)
        .arg("--audit-log")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::task::spawn_blocking(move || common::listening::wait_listening(addr, Duration::from_secs(60)))
        .await
        .unwrap();
    let a = curl_create(&t.ca_file, port, "a").await;
    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    let pid = child.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log.exists() {
        assert!(std::time::Instant::now() < deadline, "no new audit log after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = curl_create(&t.ca_file, port, "b").await;
    let old = std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap();
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(old.contains(a["uuid"].as_str().unwrap()) && !old.contains(b["uuid"].as_str().unwrap()), "{old}");
    assert!(new.contains(b["uuid"].as_str().unwrap()), "{new}");
    assert!(!old.contains("pw-not-logged") && !new.contains("pw-not-logged"));
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}
