//! The web console (issue 23): the fleet page with 10,000 nodes (server time per page, and time
//! to first render in headless chromium) and a node page with a finished deploy (server time,
//! and until Mermaid has drawn the diagram).
//!
//! Run: `cargo bench --bench console` (needs chromium and chromedriver; add `-- --nodes N`).

#[path = "../tests/common/browser.rs"]
#[allow(dead_code)]
mod browser;
#[path = "../tests/common/mod.rs"]
mod common;

use axum::body::Body;
use axum::http::Request;
use ferric_types::models::NodeId;
use ferric_types::trace::seed;
use std::time::{Duration, Instant};
use tower::ServiceExt;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[(v.len() * 95 / 100).min(v.len() - 1)]))
}

async fn server_time(router: &axum::Router, path: &str, runs: usize) -> (f64, f64, usize) {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let req = Request::get(path).header("host", "127.0.0.1").body(Body::empty()).unwrap();
        let t = Instant::now();
        let resp = router.clone().oneshot(req).await.unwrap();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        times.push(t.elapsed());
        bytes = body.len();
    }
    let (p50, p95) = stats(times);
    (p50, p95, bytes)
}

/// Milliseconds after navigation start: first contentful paint, and `at` (a page-side time).
async fn render(b: &browser::Browser, url: &str, ready: &str, at: &str) -> (f64, f64) {
    b.client.goto(url).await.unwrap();
    b.wait_for(ready, Duration::from_secs(60), url).await;
    let fcp = b
        .js("const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : -1")
        .await
        .as_f64()
        .unwrap_or(-1.0);
    let at = b.js(at).await.as_f64().unwrap_or(-1.0);
    (fcp, at)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nodes = arg("--nodes", 10_000);
    let runs = 20;
    let api = common::Api::new();
    let t = Instant::now();
    common::fill_fleet(&api, nodes, "node");
    eprintln!("{nodes} nodes inserted in {:.1} s", t.elapsed().as_secs_f64());
    // One node with a finished deploy's messages (the seed's direct deploy, 10 ms apart).
    let deployed = api.node("deployed").await;
    let id: NodeId = deployed.parse().unwrap();
    for (from, to, label) in seed::direct() {
        api.service.api.trace.record(id, from, to, label);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let router = api.service.router();

    println!("console, {nodes} nodes ({runs} runs each; median / p95):");
    for (what, path) in [
        ("fleet page 1 (HTML)", "/console/fleet".to_string()),
        ("fleet page 100, sorted by state desc", "/console/fleet?sort=provision_state&dir=desc&page=100".to_string()),
        ("fleet filtered (state+owner+search)", "/console/fleet?state=active&owner=project-3&q=node-0".to_string()),
        ("fleet poll (JSON fragments)", "/console/fleet.json".to_string()),
        ("node page, finished deploy", format!("/nodes/{deployed}")),
        ("node poll (JSON)", format!("/console/nodes/{deployed}/live.json")),
    ] {
        let (p50, p95, bytes) = server_time(&router, &path, runs).await;
        println!("  server {what:<40} {p50:7.1} ms / {p95:7.1} ms  ({} KiB)", bytes / 1024);
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = router.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, served).await;
    });
    let b = browser::Browser::start().await;
    let base = format!("http://{addr}");
    let mut fleet = Vec::new();
    let mut node = Vec::new();
    for _ in 0..5 {
        let loaded = "return performance.getEntriesByType('navigation')[0].loadEventEnd";
        fleet.push(render(&b, &format!("{base}/"), "return document.readyState === 'complete'", loaded).await);
        node.push(
            render(
                &b,
                &format!("{base}/nodes/{deployed}"),
                "return document.querySelector('#diagram svg') !== null",
                "return Number(document.querySelector('#diagram').dataset.drawnAt)",
            )
            .await,
        );
    }
    let med = |v: &mut Vec<(f64, f64)>, i: usize| {
        let mut x: Vec<f64> = v.iter().map(|p| if i == 0 { p.0 } else { p.1 }).collect();
        x.sort_by(|a, b| a.total_cmp(b));
        x[x.len() / 2]
    };
    println!(
        "  chromium fleet page: first contentful paint {:.0} ms, page loaded {:.0} ms (median of 5)",
        med(&mut fleet, 0),
        med(&mut fleet, 1)
    );
    println!(
        "  chromium node page: first contentful paint {:.0} ms, diagram drawn {:.0} ms (median of 5)",
        med(&mut node, 0),
        med(&mut node, 1)
    );
    b.close().await;
    task.abort();
}
