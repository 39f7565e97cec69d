//! The agent library in-process on tokio's paused clock, as the deterministic simulation runs
//! it: the API (a minimal stand-in), the image store and the agent are axum routers called
//! through `TowerHttp`, and the disk is in memory. A 30 s heartbeat interval and download retry
//! pauses take no real time.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use ferric_agent::{Agent, AgentConfig, HostMode, LogRing};
use ferric_disk::blockdev::MemDisk;
use ferric_disk::disks::Disk;
use ferric_lab::http::TowerHttp;
use ferric_service::drivers::agent_client::AgentClient;
use ferric_service::drivers::agent_client::{AgentClientConfig, AgentTarget};
use ferric_service::images::{CreateImage, DiskFormat, ImageService, ImageStore};
use ferric_types::agent::{CommandStatus, HeartbeatRequest, ImageInfo, LookupConfig, LookupNode, LookupResponse};
use ferric_types::clock::Clock;
use parking_lot::Mutex;
use serde_json::Map;

#[derive(Clone, Default)]
struct Api {
    beats: Arc<Mutex<Vec<(tokio::time::Instant, HeartbeatRequest)>>>,
}

async fn lookup(State(_): State<Api>) -> axum::Json<LookupResponse> {
    axum::Json(LookupResponse {
        node: LookupNode {
            uuid: "node-1".into(),
            properties: Map::new(),
            instance_info: Map::new(),
            driver_internal_info: Map::new(),
            extra: Map::new(),
        },
        config: LookupConfig::new(30, "sim-token".into()),
    })
}

async fn heartbeat(State(api): State<Api>, axum::Json(hb): axum::Json<HeartbeatRequest>) -> StatusCode {
    api.beats.lock().push((tokio::time::Instant::now(), hb));
    StatusCode::ACCEPTED
}

#[tokio::test(start_paused = true)]
async fn deploy_in_process_on_paused_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::virtual_from(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(), 1);
    let store = Arc::new(ImageStore::open(dir.path(), clock.clone(), 1 << 30).unwrap());
    let svc = Arc::new(ImageService::new(store.clone(), b"key".to_vec(), clock));
    let image: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 241) as u8).collect();
    let img = store
        .create(CreateImage { name: Some("x".into()), disk_format: Some(DiskFormat::Raw), ..Default::default() })
        .unwrap();
    let img = store
        .upload(&img.id, futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(image.clone()))]))
        .await
        .unwrap();

    let net = TowerHttp::new();
    let api = Api::default();
    net.add_host(
        "api:6385",
        Router::new()
            .route("/v1/lookup", get(lookup))
            .route("/v1/heartbeat/{node}", post(heartbeat))
            .with_state(api.clone()),
    );
    net.add_host("images:8080", svc.clone().router());
    let disk = Arc::new(MemDisk::new(8 << 20));
    let mut config = AgentConfig::new("http://api:6385", vec!["52:54:00:00:00:01".into()], 42);
    config.settings.writer.download_retry_interval = Duration::from_secs(30);
    let agent = Arc::new(
        Agent::new(
            config,
            Arc::new(net.clone()),
            vec![Disk::from_device("/dev/vda", disk.clone())],
            HostMode::Process,
            vec![],
            Arc::new(LogRing::default()),
        )
        .unwrap(),
    );
    net.add_host("agent:9999", agent.router());
    let runner = agent.clone();
    let run = tokio::spawn(async move { runner.run("http://agent:9999").await });

    while api.beats.lock().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = AgentClient::new(Arc::new(net.clone()), AgentClientConfig::default());
    let target = AgentTarget { url: "http://agent:9999".into(), token: Some("sim-token".into()) };
    let info = ImageInfo {
        id: img.id.clone(),
        urls: vec![svc.temp_url("http://images:8080", &img.id, Duration::from_secs(3600)).unwrap()],
        disk_format: Some("raw".into()),
        os_hash_algo: img.os_hash_algo.clone(),
        os_hash_value: img.os_hash_value.clone(),
        ..Default::default()
    };
    let start = tokio::time::Instant::now();
    let r = client
        .run_to_completion(
            &target,
            "standby.prepare_image",
            Map::from_iter([("image_info".to_string(), serde_json::to_value(&info).unwrap())]),
        )
        .await
        .unwrap();
    assert_eq!(r.command_status, CommandStatus::Succeeded);
    assert_eq!(&disk.contents()[..image.len()], &image[..]);

    // An unreachable image store is retried with 30 s pauses: simulated, not waited for.
    net.remove_host("images:8080");
    let r = client
        .execute(
            &target,
            "standby.prepare_image",
            Map::from_iter([("image_info".to_string(), serde_json::to_value(&info).unwrap())]),
            false,
        )
        .await
        .unwrap();
    let r = client.wait_for(&target, r).await.unwrap();
    assert_eq!(r.command_status, CommandStatus::Failed);
    assert!(r.command_error.unwrap().details.contains("gave up after 4 attempts"));
    assert!(start.elapsed() >= Duration::from_secs(90));

    // Heartbeats every 9-18 s (0.3-0.6 x 30 s), the token on each.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let beats = api.beats.lock().clone();
    assert!(beats.len() >= 30, "{} heartbeats", beats.len());
    for w in beats.windows(2).skip(3) {
        let gap = w[1].0 - w[0].0;
        assert!(gap >= Duration::from_secs(5) && gap <= Duration::from_secs(18), "{gap:?}");
    }
    assert!(
        beats
            .iter()
            .all(|(_, h)| h.agent_token.as_deref() == Some("sim-token") && h.callback_url == "http://agent:9999")
    );

    // power_off outside a ramdisk ends the agent's loop.
    client.power_off(&target).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap().unwrap();
}
