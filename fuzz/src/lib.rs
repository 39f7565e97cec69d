//! The fuzz harnesses: one function per parser that faces the network, each taking arbitrary
//! bytes and required never to panic (nor hang). `cargo fuzz` drives them coverage-guided (the
//! `fuzz_targets/` binaries, `.ci/fuzz`), and `cargo test` replays every committed input
//! (`corpus/<target>/`: seeds and whatever a run found and a human kept; `regressions/<target>/`:
//! inputs that once crashed a parser) through the same functions, so a crash found once stays a test.
//!
//! The harnesses reach the real code paths: the IPMI client's decoders and the virtual BMC's
//! whole datagram handler, the DHCP server's handler, TFTP decode/negotiate/path resolution,
//! iSCSI PDU and text decoding, the Redfish client's whole request path against a BMC answering
//! with fuzzed responses, the virtual Redfish BMC's router, and ferric's REST API router on a fresh
//! in-memory store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use ferric_disk::iscsi::pdu::{self, Framing};
use ferric_disk::iscsi::text::TextPairs;
use ferric_service::ipmi::codec;
use ferric_service::pxe::MacAddr;
use ferric_service::pxe::dhcp::{DhcpConfig, DhcpHandler, HostEntry, MemoryHostTable, MemoryLeaseStore};
use ferric_service::pxe::tftp::packet::Packet;
use ferric_service::pxe::tftp::{Limits, negotiate, resolve};
use ferric_service::redfish::{self, AuthType, Endpoint, RedfishPool, Secret};
use ferric_types::http::{HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, TlsVerify};
use tower::ServiceExt;

/// A paused-clock runtime: retries and timeouts in the code under test advance virtual time
/// instead of sleeping, so an input that makes a client wait 30 s costs microseconds.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("fuzz harness runtime: {e}"))
}

/// Splits `data` at the first `sep`: (before, after). No `sep`: all of it, then nothing.
fn split(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// IPMI client: an incoming RMCP/RMCP+ datagram and an IPMI response message.
pub fn ipmi_client(data: &[u8]) {
    let _ = codec::parse_incoming(data);
    let _ = codec::parse_ipmi_response(data);
}

/// The virtual BMC's datagram handler (every transport's single entry point), one fresh BMC per
/// input: the first bytes choose how many datagrams the rest is split into, so multi-packet
/// session establishment can be reached.
pub fn ipmi_bmc(data: &[u8]) {
    use ferric_lab::machine::power::SimMachine;
    use ferric_sim::vbmc::{Bmc, BmcConfig, Faults, Peer};
    let machine = Arc::new(SimMachine::new("fuzz", Default::default()));
    let config = BmcConfig { seed: 1, max_sessions: 8, cipher_suites: vec![0, 1, 2, 3, 17], ..Default::default() };
    let Ok(bmc) = Bmc::new("fuzz", config, machine, Arc::new(Faults::default())) else { return };
    runtime().block_on(async {
        // Datagrams are separated by the 4-byte marker "\xffPKT".
        for packet in chunks(data, b"\xffPKT").take(16) {
            let _ = bmc.on_datagram(Peer::Link(1), packet).await;
        }
    });
}

fn chunks<'a>(data: &'a [u8], marker: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(marker.len()).position(|w| w == marker) {
            Some(i) => {
                rest = Some(&r[i + marker.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// The DHCP server's handler with one PXE-enabled host and a small pool: every datagram of the
/// input (split as in [`ipmi_bmc`]) in turn, so lease state carries from one to the next.
pub fn dhcp(data: &[u8]) {
    use std::net::Ipv4Addr;
    let hosts = Arc::new(MemoryHostTable::new());
    hosts.upsert(MacAddr([0x52, 0x54, 0, 0, 1, 1]), HostEntry { pxe_enabled: true, ..Default::default() });
    let leases = Arc::new(MemoryLeaseStore::new());
    let cfg = DhcpConfig::new(
        Ipv4Addr::new(192, 0, 2, 1),
        (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 13)),
        "http://192.0.2.1/pxelinux.cfg/{mac}".into(),
    );
    let h = DhcpHandler::new(cfg, hosts, leases);
    for (i, d) in chunks(data, b"\xffPKT").take(16).enumerate() {
        let _ = h.handle(d, 1_700_000_000 + i as u64 * 30);
    }
}

/// TFTP: packet decoding, option negotiation of a request, and resolving its file name under a
/// root (traversal must be refused, never panic).
pub fn tftp(data: &[u8]) {
    if let Ok(Packet::Request(req)) = Packet::decode(data) {
        let _ = negotiate(&req, 1 << 20, &Limits::default());
        let _ = resolve(std::path::Path::new("/nonexistent-tftp-root"), &req.filename);
    }
}

/// iSCSI: PDUs decoded back to back (the first byte picks header/data digests), and text
/// key=value segments.
pub fn iscsi(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let f = Framing { header_digest: flags & 1 != 0, data_digest: flags & 2 != 0, max_recv_data_segment: 1 << 16 };
    let mut buf = rest;
    for _ in 0..64 {
        match pdu::decode_pdu(buf, &f) {
            Ok(Some((p, used))) if used > 0 && used <= buf.len() => {
                let _ = TextPairs::parse(&p.data);
                buf = &buf[used..];
            }
            _ => break,
        }
    }
    let _ = TextPairs::parse(rest);
}

/// A BMC whose answers come from the fuzz input: each answer is a status selector, a header
/// selector and a body, separated by the "\xffPKT" marker; once they run out, the connection fails.
struct ScriptedBmc {
    answers: Mutex<VecDeque<Vec<u8>>>,
}

const STATUSES: [u16; 12] = [200, 201, 202, 204, 400, 401, 404, 409, 412, 429, 500, 503];

#[async_trait::async_trait]
impl HttpClient for ScriptedBmc {
    async fn send(&self, _req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let Some(answer) = self.answers.lock().ok().and_then(|mut q| q.pop_front()) else {
            return Err(HttpError::Connect("script ended".into()));
        };
        let (status_sel, rest) = answer.split_first().map(|(s, r)| (*s, r)).unwrap_or((0, &[]));
        let (header_sel, body) = rest.split_first().map(|(s, r)| (*s, r)).unwrap_or((0, &[]));
        let status = http::StatusCode::from_u16(STATUSES[usize::from(status_sel) % STATUSES.len()])
            .unwrap_or(http::StatusCode::OK);
        let mut headers = http::HeaderMap::new();
        let pick = |bit: u8| header_sel & bit != 0;
        if pick(1) {
            headers.insert("etag", http::HeaderValue::from_static("W/\"1\""));
        }
        if pick(2) {
            headers.insert("retry-after", http::HeaderValue::from_static("3"));
        }
        if pick(4) {
            headers.insert("location", http::HeaderValue::from_static("/redfish/v1/TaskService/Tasks/1"));
        }
        if pick(8) {
            headers.insert("x-auth-token", http::HeaderValue::from_static("tok"));
        }
        if pick(16) {
            headers.insert("location", http::HeaderValue::from_static("/redfish/v1/SessionService/Sessions/1"));
        }
        if pick(32) {
            headers.insert("retry-after", http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        }
        let body = bytes::Bytes::copy_from_slice(body);
        Ok(HttpResponse { status, headers, body: Box::pin(futures::stream::once(async move { Ok(body) })) })
    }
}

struct ScriptedConnector(Arc<ScriptedBmc>);

impl HttpConnector for ScriptedConnector {
    fn client(&self, _verify: &TlsVerify) -> Result<Arc<dyn HttpClient>, HttpError> {
        Ok(self.0.clone())
    }
}

/// The Redfish client's whole request path (sessions, ETags, retries, task monitors, links)
/// against a BMC answering with fuzzed statuses, headers and bodies, then the inspection
/// conversions on what it read.
pub fn redfish_client(data: &[u8]) {
    let (auth_sel, rest) = data.split_first().map(|(a, r)| (*a, r)).unwrap_or((0, &[]));
    let answers = Mutex::new(chunks(rest, b"\xffPKT").take(64).map(<[u8]>::to_vec).collect());
    let bmc = Arc::new(ScriptedBmc { answers });
    let config = redfish::RedfishConfig { task_timeout: Duration::from_secs(120), ..Default::default() };
    let pool = RedfishPool::new(Arc::new(ScriptedConnector(bmc)), config);
    let Ok(base) = url::Url::parse("https://192.0.2.9/") else { return };
    let auth = [AuthType::Auto, AuthType::Session, AuthType::Basic][usize::from(auth_sel) % 3];
    let endpoint =
        Endpoint { base, username: "admin".into(), password: Secret::new("pw"), verify: TlsVerify::Insecure, auth };
    let Ok(client) = pool.client(endpoint) else { return };
    runtime().block_on(async {
        let _ = client.root().await;
        if let Ok(system) = client.system_path(None).await {
            if let Ok(s) = client.get_as::<redfish::model::ComputerSystem>(&system).await {
                let _ = format!("{s:?}");
            }
            let boot = serde_json::json!({"Boot": {"BootSourceOverrideTarget": "Pxe"}});
            let _ = client.patch(&system, &boot).await;
            let reset = serde_json::json!({"ResetType": "On"});
            let _ = client.post(&format!("{system}/Actions/ComputerSystem.Reset"), &reset).await;
        }
        let _ = client.wait_task("/redfish/v1/TaskService/Tasks/1").await;
        if let Ok(cpus) = client.members("/redfish/v1/Systems/1/Processors").await {
            for c in cpus.iter().take(4) {
                if let Ok(p) = client.get_as::<redfish::model::Processor>(c).await {
                    let _ = ferric_service::drivers::redfish_inspect::cpu_arch(&p);
                }
            }
        }
        let _ = client.delete("/redfish/v1/SessionService/Sessions/1").await;
    });
    // The response models on their own, as the inspection reads them.
    for chunk in chunks(rest, b"\xffPKT").take(8) {
        let _ = serde_json::from_slice::<redfish::model::ErrorBody>(chunk).map(|e| e.text());
        let _ =
            serde_json::from_slice::<redfish::model::Task>(chunk).map(|t| (t.finished(), t.failed(), t.message_text()));
        let _ = serde_json::from_slice::<redfish::model::Drive>(chunk);
        let _ = serde_json::from_slice::<redfish::model::Storage>(chunk);
    }
    let sizes: Vec<u64> =
        rest.chunks(8).take(16).map(|c| c.iter().fold(0u64, |a, &b| a.rotate_left(8) ^ u64::from(b))).collect();
    let _ = ferric_service::drivers::redfish_inspect::local_gb(&sizes);
}

const METHODS: [&str; 6] = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"];

/// Builds a request from fuzz bytes: a method selector, then path, headers and body separated
/// by NUL bytes (headers as `name: value` lines).
fn request(data: &[u8], content_type: &str) -> Option<http::Request<Body>> {
    let (&m, rest) = data.split_first()?;
    let (path, rest) = split(rest, 0);
    let (headers, body) = split(rest, 0);
    let path = std::str::from_utf8(path).ok()?;
    let uri: http::Uri = if path.starts_with('/') { path.parse().ok()? } else { format!("/{path}").parse().ok()? };
    let mut b = http::Request::builder().method(METHODS[usize::from(m) % METHODS.len()]).uri(uri);
    b = b.header("host", "127.0.0.1:6385").header("content-type", content_type);
    for line in String::from_utf8_lossy(headers).lines().take(16) {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (http::HeaderName::try_from(k.trim()), http::HeaderValue::try_from(v.trim())) {
                b = b.header(k, v);
            }
        }
    }
    b.body(Body::from(body.to_vec())).ok()
}

/// The virtual Redfish BMC's router (what sushy and ferric's client talk to).
pub fn redfish_bmc(data: &[u8]) {
    use ferric_lab::machine::power::SimMachine;
    use ferric_sim::redfish::{RedfishBmc, RedfishConfig};
    let Some(req) = request(data, "application/json") else { return };
    let machine = Arc::new(SimMachine::new("fuzz", Default::default()));
    let bmc = RedfishBmc::new(RedfishConfig::default(), machine);
    runtime().block_on(async {
        let _ = bmc.router().oneshot(req).await;
    });
}

/// The REST API's router (version negotiation, JSON bodies, JSON patches, query strings,
/// paging, filters) with its conductor, on an in-memory store holding one node and one port, so
/// paths that name them reach the handlers. `{node}` and `{port}` in the fuzzed path stand for them.
pub fn api(data: &[u8]) {
    let Some(f) = api_fixture() else { return };
    let replaced = String::from_utf8_lossy(data).replace("{node}", NODE).replace("{port}", PORT).into_bytes();
    let Some(req) = request(&replaced, "application/json") else { return };
    f.rt.block_on(async {
        f.restore().await;
        let Ok(r) = f.router.clone().oneshot(req).await;
        // The whole body, as a client would read it.
        let _ = axum::body::to_bytes(r.into_body(), 1 << 24).await;
    });
}

const NODE: &str = "00000000-0000-4000-8000-000000000001";
const PORT: &str = "00000000-0000-4000-8000-000000000002";

/// One service for the whole run (a fresh one per input would cost a migration each), on a
/// runtime of its own whose worker runs the conductor between inputs.
struct ApiFixture {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _service: ferric_service::Service,
}

impl ApiFixture {
    /// Gives the fixture its node and port back when an earlier input deleted them.
    async fn restore(&self) {
        let post = |path: &'static str, body: serde_json::Value| {
            http::Request::builder()
                .method("POST")
                .uri(path)
                .header("host", "127.0.0.1:6385")
                .header("content-type", "application/json")
                .header("x-openstack-ironic-api-version", "latest")
                .body(Body::from(body.to_string()))
        };
        let node = serde_json::json!({"uuid": NODE, "name": "fz", "driver": "fake-hardware"});
        if let Ok(r) = post("/v1/nodes", node) {
            let _ = self.router.clone().oneshot(r).await;
        }
        let port = serde_json::json!({"uuid": PORT, "node_uuid": NODE, "address": "52:54:00:00:00:01"});
        if let Ok(r) = post("/v1/ports", port) {
            let _ = self.router.clone().oneshot(r).await;
        }
    }
}

fn api_fixture() -> Option<&'static ApiFixture> {
    static FIXTURE: OnceLock<Option<ApiFixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            use ferric_service::Service;
            use ferric_service::assemble::Outside;
            use ferric_service::config::Config;
            use ferric_service::db::Db;
            use ferric_types::trace::Recorder;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().ok()?;
            let service = {
                let _guard = rt.enter();
                let db = Db::open_in_memory().ok()?;
                let outside = Outside::real(ferric_types::clock::Clock::system()).ok()?;
                Service::build(Config::default(), db, outside, Recorder::default(), |_| {}).ok()?
            };
            let router = service.router();
            Some(ApiFixture { rt, router, _service: service })
        })
        .as_ref()
}

/// A harness: arbitrary bytes in, no panic out.
pub type Harness = fn(&[u8]);

/// Every harness by its `fuzz_targets/` name.
pub const TARGETS: &[(&str, Harness)] = &[
    ("ipmi_client", ipmi_client),
    ("ipmi_bmc", ipmi_bmc),
    ("dhcp", dhcp),
    ("tftp", tftp),
    ("iscsi", iscsi),
    ("redfish_client", redfish_client),
    ("redfish_bmc", redfish_bmc),
    ("api", api),
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every committed input of every target, replayed: seeds, kept findings and regressions.
    #[test]
    fn committed_inputs_replay_without_panic() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut replayed = 0;
        for &(name, f) in super::TARGETS {
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
                for e in entries.flatten() {
                    let data = std::fs::read(e.path()).unwrap();
                    eprintln!("{name}: {}", e.path().display());
                    f(&data);
                    replayed += 1;
                }
            }
        }
        assert!(replayed >= 8, "only {replayed} committed inputs found");
    }
}
