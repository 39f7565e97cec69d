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
use chrono::Utc;
use fantoccini::Locator;
use ferric_service::api::identity::{AuthRole, Identity};
use ferric_service::config::Config;
use ferric_types::models::{Node, NodeId, PowerState, ProvisionState};
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
        .body(Body::from("action=maintenance_off"))
        .unwrap();
    let resp = api.service.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.get(&format!("/v1/nodes/{id}")).await.json()["maintenance"], true);
    b.close().await;
    admin_task.abort();
    reader_task.abort();
}

/// Inserts `n` available fake-hardware nodes straight into the database.
pub fn fill(api: &common::Api, n: usize) {
    let now = Utc::now();
    for i in 0..n {
        let node = Node {
            uuid: NodeId(uuid::Uuid::new_v4()),
            name: Some(format!("big-{i:05}")),
            driver: "fake-hardware".into(),
            created_at: now,
            provision_state: if i % 10 == 0 { ProvisionState::Active } else { ProvisionState::Available },
            power_state: Some(if i % 3 == 0 { PowerState::On } else { PowerState::Off }),
            owner: Some(format!("project-{}", i % 7)),
            ..Node::default()
        };
        api.service.db.create_node(&node).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_ten_thousand_nodes_renders_one_page() {
    let api = common::Api::new();
    fill(&api, 10_000);
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
