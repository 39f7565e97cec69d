//! The web console in a real browser (headless chromium over WebDriver): the fleet page lists a
//! simulated fleet (`ferric_lab::serve_sim`, as `ferric serve --sim` runs it), a deploy started
//! from the node page's action (after its confirmation) grows the page's sequence diagram while
//! it runs, a reader sees no actions and the server refuses them anyway, and a 10,000-node fleet
//! page renders one page of rows.

#[path = "common/browser.rs"]
mod browser;
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use browser::Browser;
use fantoccini::Locator;
use ferric_service::api::identity::{AuthRole, Identity};
use ferric_service::config::Config;
use serde_json::Value;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// `ferric serve --sim n` in this process, on its own thread; stopped on drop.
struct Sim {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sim {
    fn start(n: usize) -> Sim {
        let port = common::listening::free_port();
        let mut config = Config::default();
        config.api.bind = ([127, 0, 0, 1], port).into();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let opts = ferric_lab::serve_sim::SimServeOptions { machines: n, bmc_base_port: 0, image_mb: 8 };
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let r = rt.block_on(ferric_lab::serve_sim::serve(config, opts, async move {
                let _ = rx.await;
            }));
            if let Err(e) = r {
                eprintln!("serve --sim: {e}");
            }
        });
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        common::listening::wait_listening(addr, Duration::from_secs(120));
        Sim { base: format!("http://{addr}"), stop: Some(tx), thread: Some(thread) }
    }

    async fn json(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .header("X-OpenStack-Ironic-API-Version", "latest")
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    /// Waits until every node is `available`.
    async fn settled(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let nodes = self.json("/v1/nodes?fields=uuid,name,provision_state").await["nodes"].as_array().cloned();
            let nodes = nodes.unwrap_or_default();
            if nodes.len() == n && nodes.iter().all(|x| x["provision_state"] == "available") {
                return nodes;
            }
            assert!(Instant::now() < deadline, "nodes did not become available: {nodes:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_lists_the_simulated_fleet_and_a_deploy_grows_its_diagram() {
    let sim = Sim::start(2);
    let nodes = sim.settled(2).await;
    let b = Browser::start().await;

    // API clients keep the version document at `/`; the browser gets the fleet page.
    let root = sim.json("/").await;
    assert_eq!(root["name"], "OpenStack Ironic API");
    b.client.goto(&format!("{}/", sim.base)).await.unwrap();
    let rows = b.client.find_all(Locator::Css("#rows tr")).await.unwrap();
    assert_eq!(rows.len(), 2);
    let table = b.client.find(Locator::Css("#nodes")).await.unwrap().text().await.unwrap();
    for n in &nodes {
        assert!(table.contains(n["name"].as_str().unwrap()), "{table}");
    }
    assert!(table.contains("available"), "{table}");
    let bars = b.client.find_all(Locator::Css("#counts svg rect")).await.unwrap();
    assert!(!bars.is_empty(), "no counts picture");

    // The node page, then Deploy with the simulated image, confirmed.
    let name = nodes[0]["name"].as_str().unwrap().to_string();
    b.client.find(Locator::LinkText(&name)).await.unwrap().click().await.unwrap();
    b.wait_for(
        "return document.querySelector('button[data-action=deploy]:not([disabled])') !== null",
        Duration::from_secs(10),
        "the node page's deploy action",
    )
    .await;
    b.client.find(Locator::Css("button[data-action=deploy]")).await.unwrap().click().await.unwrap();
    b.wait_for("return document.querySelector('#confirm') !== null", Duration::from_secs(10), "the confirmation").await;
    b.client.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    b.wait_for("return document.querySelector('#diagram svg') !== null", Duration::from_secs(30), "a drawn diagram")
        .await;
    let messages = "return document.querySelectorAll('#diagram svg .messageText').length";
    let first = b.js(messages).await.as_u64().unwrap_or(0);
    assert!(first >= 1, "the diagram has no messages");
    // It grows without a reload while the deploy runs.
    b.wait_for(
        &format!("return document.querySelectorAll('#diagram svg .messageText').length > {}", first + 3),
        Duration::from_secs(120),
        "the diagram to grow",
    )
    .await;
    b.wait_for(
        "return document.querySelector('#node-state .state').textContent.trim().startsWith('active')",
        Duration::from_secs(180),
        "the node to become active",
    )
    .await;
    let grown = b.js(messages).await.as_u64().unwrap_or(0);
    assert!(grown >= 30, "a finished deploy has the seed's messages; got {grown}");
    let timeline = b.client.find_all(Locator::Css("#timeline svg rect")).await.unwrap();
    assert!(timeline.len() as u64 >= grown.min(30), "timeline bars: {}", timeline.len());
    let node = sim.json(&format!("/v1/nodes/{name}")).await;
    assert_eq!(node["provision_state"], "active");

    // Undeploy: the automated cleaning that follows becomes the page's diagram.
    b.client.find(Locator::Css("button[data-action=undeploy]")).await.unwrap().click().await.unwrap();
    b.wait_for("return document.querySelector('#confirm') !== null", Duration::from_secs(10), "the confirmation").await;
    b.client.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    b.wait_for(
        "return document.querySelector('#node-state .state').textContent.trim().startsWith('available')",
        Duration::from_secs(180),
        "the node to be cleaned",
    )
    .await;
    b.wait_for(
        "return document.querySelector('#run-info').textContent.trim().startsWith('Cleaning') \
         && document.querySelector('#diagram-source').textContent.includes('Mark node as AVAILABLE')",
        Duration::from_secs(30),
        "the cleaning's diagram",
    )
    .await;
    let source = b.client.find(Locator::Css("#diagram-source")).await.unwrap().html(true).await.unwrap();
    for m in
        ["do_node_clean()", "Attach cleaning network", "Execute clean step deploy.erase_devices", "Detach cleaning"]
    {
        assert!(source.contains(m), "{m} not in the cleaning's diagram:\n{source}");
    }
    b.wait_for("return document.querySelector('#diagram svg') !== null", Duration::from_secs(30), "a drawn diagram")
        .await;
    b.close().await;
}

/// A service with fake-hardware nodes in memory, its router served on loopback as `who`.
async fn serve_as(api: &common::Api, who: Option<Identity>) -> (String, tokio::task::JoinHandle<()>) {
    let mut router = api.service.router();
    if let Some(who) = who {
        router = router.layer(axum::Extension(who));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_no_actions_and_the_server_refuses_them() {
    let api = common::Api::new();
    let id = api.node("n1").await;
    let reader = Identity { user: "ro".into(), role: AuthRole::Reader, project: None };
    let (admin_base, admin_task) = serve_as(&api, None).await;
    let (reader_base, reader_task) = serve_as(&api, Some(reader.clone())).await;
    let b = Browser::start().await;

    b.client.goto(&format!("{admin_base}/nodes/{id}")).await.unwrap();
    assert!(!b.client.find_all(Locator::Css("#actions button")).await.unwrap().is_empty(), "admin has actions");
    // An action changes the node: maintenance on, confirmed.
    b.client.find(Locator::Css("button[data-action=maintenance_on]")).await.unwrap().click().await.unwrap();
    b.wait_for("return document.querySelector('#confirm') !== null", Duration::from_secs(10), "the confirmation").await;
    b.client.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    b.wait_for("return document.querySelector('#state-h') !== null", Duration::from_secs(10), "the node page").await;
    api.idle().await;
    b.wait_for(
        "return document.querySelector('button[data-action=maintenance_off]') !== null",
        Duration::from_secs(10),
        "the node page after the action",
    )
    .await;
    assert_eq!(api.get(&format!("/v1/nodes/{id}")).await.json()["maintenance"], true);

    // Live updates: the fleet page follows a change made elsewhere, without reloading.
    b.client.goto(&format!("{admin_base}/")).await.unwrap();
    b.js("window.notReloaded = true; return null").await;
    let maintenance_cell = "return document.querySelector('#rows tr td:nth-child(4)').textContent.trim()";
    assert_eq!(b.js(maintenance_cell).await, "yes");
    let r = api.delete(&format!("/v1/nodes/{id}/maintenance")).await;
    assert!(r.status.is_success(), "{}", r.text());
    api.idle().await;
    b.wait_for(
        "return document.querySelector('#rows tr td:nth-child(4)').textContent.trim() === 'no'",
        Duration::from_secs(15),
        "the fleet table's live update",
    )
    .await;
    assert_eq!(b.js("return window.notReloaded === true").await, true, "the page reloaded");

    b.client.goto(&format!("{reader_base}/nodes/{id}")).await.unwrap();
    let h1 = b.client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert!(h1.contains("n1"), "{h1}");
    assert!(
        b.client.find_all(Locator::Css("#actions, .actions button")).await.unwrap().is_empty(),
        "reader sees actions"
    );

    // The server refuses the reader's action anyway.
    let req = Request::post(format!("/console/nodes/{id}/action"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "127.0.0.1")
        .extension(reader)
        .body(Body::from("action=maintenance_on"))
        .unwrap();
    let resp = api.service.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.get(&format!("/v1/nodes/{id}")).await.json()["maintenance"], false);
    b.close().await;
    admin_task.abort();
    reader_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_ten_thousand_nodes_renders_one_page() {
    let api = common::Api::new();
    common::fill_fleet(&api, 10_000, "big");
    let (base, task) = serve_as(&api, None).await;
    let b = Browser::start().await;
    let t = Instant::now();
    b.client.goto(&format!("{base}/?sort=name&dir=desc")).await.unwrap();
    let rows = b.client.find_all(Locator::Css("#rows tr")).await.unwrap();
    let loaded = t.elapsed();
    assert_eq!(rows.len(), 50);
    assert_eq!(b.client.find(Locator::Css("#total")).await.unwrap().text().await.unwrap(), "10000");
    let first = rows[0].text().await.unwrap();
    assert!(first.starts_with("big-09999"), "{first}");
    // A filter and the next page, through the query string.
    b.client.goto(&format!("{base}/?state=active&owner=project-3&page=2&per=10")).await.unwrap();
    let total = b.client.find(Locator::Css("#total")).await.unwrap().text().await.unwrap();
    assert_eq!(total, (0..10_000).filter(|i| i % 10 == 0 && i % 7 == 3).count().to_string());
    assert_eq!(b.client.find_all(Locator::Css("#rows tr")).await.unwrap().len(), 10);
    eprintln!("10,000-node fleet page loaded in {loaded:?} (debug build)");
    b.close().await;
    task.abort();
}

/// `ferric scenario run FILE --html OUT` on a scenario with a fault: one file, nothing it
/// references from elsewhere, and in chromium it loads no resource and draws every diagram
/// (the diagram node's deploy and each failed node's).
#[test]
fn the_scenario_report_is_self_contained_and_opens_offline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    let args = ferric_lab::scenario::cli::RunArgs {
        file: concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/fault-disk-write-error.toml").into(),
        seed: None,
        json: None,
        diagram: None,
        diagram_node: None,
        html: Some(out.clone()),
    };
    assert_eq!(ferric_lab::scenario::cli::run(args), 0, "the scenario passes");
    let html = std::fs::read_to_string(&out).unwrap();
    // The markup and style (scripts aside: Mermaid's code holds such words as strings; the
    // browser check below covers what scripts load).
    let mut markup = String::new();
    let mut rest = html.as_str();
    while let Some(i) = rest.find("<script>") {
        markup.push_str(&rest[..i]);
        rest = rest[i..].split_once("</script>").map(|(_, after)| after).unwrap_or("");
    }
    markup.push_str(rest);
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "url(http", "url(//"] {
        assert!(!markup.contains(external), "the report refers to something outside it: {external}");
    }
    assert!(html.contains("disk_write_error"), "the fault is reported");
    assert!(html.contains("Failed: node-0 (deploy failed)"), "the failed node has its section");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let b = Browser::start().await;
        b.client.goto(&format!("file://{}", out.display())).await.unwrap();
        b.wait_for("return document.body.dataset.drawn !== undefined", Duration::from_secs(60), "the diagrams").await;
        let drawn = b.js("return document.querySelectorAll('div.diagram svg').length").await;
        // The diagram node's deploy and the two failed nodes.
        assert_eq!(drawn, serde_json::json!(3));
        let fetched = b.js("return performance.getEntriesByType('resource').length").await;
        assert_eq!(fetched, serde_json::json!(0), "the report loaded resources");
        b.close().await;
    });
}

async fn get(api: &common::Api, path: &str, headers: &[(&str, &str)]) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut b = Request::get(path).header("host", "127.0.0.1:6385");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = api.service.router().oneshot(b.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).to_string())
}

/// `/` stays Ironic's version document for API clients; a browser gets the fleet page. The
/// polling endpoint answers 304 to a matching ETag, and Mermaid comes gzip-compressed.
#[tokio::test]
async fn browsers_get_the_console_and_clients_the_version_document() {
    let api = common::Api::new();
    api.node("n1").await;
    let (_, _, doc) = get(&api, "/", &[]).await;
    assert!(doc.contains("\"versions\""), "{doc}");
    let (_, _, doc) = get(&api, "/", &[("accept", "application/json")]).await;
    assert!(doc.contains("\"versions\""), "{doc}");
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let (status, _, page) = get(&api, "/", &[("accept", browser)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("n1"), "{page}");

    let (status, h, _) = get(&api, "/console/fleet.json", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let etag = h.get("etag").unwrap().to_str().unwrap().to_string();
    let (status, _, _) = get(&api, "/console/fleet.json", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    let (status, h, js) = get(&api, "/console/static/mermaid.min.js", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
    assert!(js.len() < 1_500_000, "compressed: {} bytes", js.len());
    let (status, _, _) = get(&api, "/nodes/no-such-node", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
