//! The simulated boot path on a paused clock: a node powered on with PXE selected on its BMC
//! does DHCP through ferric's DHCP handler, runs the agent in-process, which looks itself up and
//! heartbeats through the real API router and writes the image it downloads through the real
//! image store; booted from disk afterwards, the machine runs the instance.
//!
//! The deploy interface here is a stand-in with the bare steps (the real `direct` and `iscsi`
//! interfaces are exercised by the scenario tests).

use async_trait::async_trait;
use ferric_lab::machine::node::{Os, Profile, Timings};
use ferric_lab::net;
use ferric_lab::sim::{LabConfig, LabWiring, MachineSpec, SimLab, sim_runtime};
use ferric_service::drivers::agent_client::AgentClient;
use ferric_service::drivers::agent_client::{AgentClientConfig, AgentTarget};
use ferric_service::drivers::steps::{Plan, Plans, StepCtx, StepResult, quiet};
use ferric_service::drivers::{DeployInterface, DriverError, Task};
use ferric_service::images::DiskFormat;
use ferric_sim::machine::PowerState;
use ferric_types::agent::ImageInfo;
use ferric_types::http::HttpClient;
use ferric_types::models::Step;
use ferric_types::models::{NodeId, ProvisionState};
use std::sync::Arc;
use std::time::Duration;

/// Power off, PXE, reboot, wait for the agent; then write the image, boot from disk.
struct StandIn {
    http: Arc<dyn HttpClient>,
    images: Arc<ferric_service::images::ImageService>,
}

fn df(e: impl std::fmt::Display) -> DriverError {
    DriverError::failed(e.to_string())
}

static PLANS: std::sync::LazyLock<Plans> = std::sync::LazyLock::new(|| Plans {
    deploy: Plan::of(vec![
        quiet(Step::PowerOff),
        quiet(Step::AddProvisioningNetwork),
        quiet(Step::BootFromNetworkOnce),
        quiet(Step::Reboot),
        quiet(Step::AwaitAgent),
        quiet(Step::WriteImage),
        quiet(Step::SetInstanceBootDevice),
        quiet(Step::PowerOff),
        quiet(Step::RemoveProvisioningNetwork),
        quiet(Step::PowerOn),
    ]),
    tear_down: Plan::of(vec![quiet(Step::PowerOff)]),
    ..Plans::default()
});

#[async_trait]
impl DeployInterface for StandIn {
    fn validate(&self, _t: &Task) -> Result<(), DriverError> {
        Ok(())
    }
    fn plans(&self) -> &Plans {
        &PLANS
    }
    /// The image write: the agent's `prepare_image`, waited for.
    async fn run_step(&self, step: Step, t: &mut Task, _ctx: StepCtx<'_>) -> Result<StepResult, DriverError> {
        assert_eq!(step, Step::WriteImage);
        let session = t.node.agent.clone().unwrap_or_default();
        let client = AgentClient::new(self.http.clone(), AgentClientConfig::default());
        let target = AgentTarget { url: session.url.unwrap_or_default(), token: session.token };
        let id = t.node.instance_info.get("image_source").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let img = self.images.store.get(&id).map_err(df)?;
        let info = ImageInfo {
            id: id.clone(),
            urls: vec![self.images.temp_url(&net::images_url(), &id, Duration::from_secs(3600)).map_err(df)?],
            disk_format: Some("raw".into()),
            os_hash_algo: img.os_hash_algo.clone(),
            os_hash_value: img.os_hash_value.clone(),
            ..Default::default()
        };
        let r = client.prepare_image(&target, &info, None).await.map_err(df)?;
        AgentClient::check(client.wait_for(&target, r).await.map_err(df)?).map_err(df)?;
        Ok(StepResult::next())
    }
}

fn config(n: usize) -> LabConfig {
    let profile = Arc::new(Profile {
        timings: Timings { post_secs: 30.0, ..Timings::default() },
        boot_order: vec![ferric_lab::machine::node::OrderDevice::Disk],
        ..Profile::default()
    });
    let customize = |p: &mut ferric_service::assemble::Parts, w: &LabWiring| {
        p.registry.register_boot("ipxe", Arc::new(ferric_service::drivers::fake::FakeBoot));
        p.registry
            .register_deploy("direct", Arc::new(StandIn { http: Arc::new(w.http.clone()), images: w.images.clone() }));
    };
    LabConfig {
        seed: 7,
        machines: (0..n)
            .map(|_| MachineSpec { profile: profile.clone(), faults: Default::default(), redfish: Default::default() })
            .collect(),
        customize: Some(Arc::new(customize)),
        ..LabConfig::default()
    }
}

async fn wait_state(lab: &SimLab, i: usize, want: ProvisionState, limit: Duration) -> ferric_types::models::Node {
    let start = tokio::time::Instant::now();
    loop {
        let n = lab.node_record(i).expect("enrolled");
        if n.provision_state == want && n.reservation.is_none() {
            return n;
        }
        assert!(start.elapsed() < limit, "node {i} stuck in {} (last_error {:?})", n.provision_state, n.last_error);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[test]
fn pxe_boot_runs_the_agent_and_the_disk_boots_the_instance() {
    let rt = sim_runtime().unwrap();
    rt.block_on(async {
        let mut lab = SimLab::build(config(2)).await.unwrap();
        let img =
            lab.add_image("ubuntu", "11111111-2222-3333-4444-555555555555", 2 << 30, DiskFormat::Raw, 3).await.unwrap();
        let ids: Vec<NodeId> = (0..2u128).map(|i| NodeId(uuid::Uuid::from_u128(0xabc0 + i))).collect();
        for (i, id) in ids.iter().enumerate() {
            lab.enroll(i, *id, &[], &serde_json::json!({"deploy_interface": "direct", "boot_interface": "ipxe"}))
                .await
                .unwrap();
            let p = format!("/v1/nodes/{id}/states/provision");
            lab.api(http::Method::PUT, &p, Some(serde_json::json!({"target": "manage"}))).await.unwrap();
            wait_state(&lab, i, ProvisionState::Manageable, Duration::from_secs(120)).await;
            lab.api(http::Method::PUT, &p, Some(serde_json::json!({"target": "provide"}))).await.unwrap();
            wait_state(&lab, i, ProvisionState::Available, Duration::from_secs(120)).await;
        }
        let u = ids[0];
        lab.api(
            http::Method::PATCH,
            &format!("/v1/nodes/{u}"),
            Some(serde_json::json!([{"op": "add", "path": "/instance_info/image_source", "value": img.id}])),
        )
        .await
        .unwrap();
        let t0 = tokio::time::Instant::now();
        lab.api(
            http::Method::PUT,
            &format!("/v1/nodes/{u}/states/provision"),
            Some(serde_json::json!({"target": "active"})),
        )
        .await
        .unwrap();
        let n = wait_state(&lab, 0, ProvisionState::Active, Duration::from_secs(3600)).await;
        let took = t0.elapsed();
        assert_eq!(n.last_error, None);
        // Two POSTs, DHCP, a ramdisk boot and a 2 GiB image at 110 MiB/s: minutes of virtual time.
        assert!(took > Duration::from_secs(60) && took < Duration::from_secs(900), "{took:?}");
        // The machine boots the instance from disk.
        tokio::time::sleep(Duration::from_secs(300)).await;
        let m = &lab.nodes[0];
        assert_eq!(m.os(), Os::Instance("ubuntu".into()));
        assert_eq!(m.machine.power_now(), PowerState::On);
        let c = m.counters();
        assert_eq!((c.agent_starts, c.instance_boots, c.downloads), (1, 1, 1), "{c:?}");
        assert!(lab.shared.stray_writes.lock().is_empty(), "{:?}", lab.shared.stray_writes.lock());
        // The other machine was never written, nor booted into anything.
        assert!(lab.nodes[1].disk.is_blank());
        assert_eq!(lab.nodes[1].counters().agent_starts, 0);
        // The node side of the trace.
        let labels: Vec<String> = lab.trace.node_events(u).into_iter().map(|e| e.label).collect();
        for want in ["DHCP request", "next-server = Conductor", "Runs agent ramdisk", "lookup()", "Pass UUID"] {
            assert!(labels.iter().any(|l| l == want), "{want} missing from {labels:?}");
        }
        lab.shutdown();
    });
}
