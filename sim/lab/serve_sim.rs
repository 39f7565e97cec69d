//! `ferric serve --sim N`: the service on its normal API address with N simulated machines
//! already enrolled, managed and cleaned (`available`), so a newcomer can `baremetal node list`
//! and `baremetal node deploy` at once.
//!
//! It is a [`SimLab`] on the real clock: the machines' virtual BMCs listen on UDP 127.0.0.1 (BMC
//! i on `bmc_base_port + i`, so `ipmitool -I lanplus` reaches them too) or, with port 0, on
//! in-memory links; the nodes use the `ipmi` driver with ferric's `ipxe` boot interface; the
//! agents run in-process. An image is uploaded at start and set as every node's
//! `instance_info.image_source` (its UUID is printed). State lives in memory: it is gone when the
//! process ends. Machine timings are shortened (seconds, not minutes) so a deploy takes seconds.

use super::sim::{BmcTransport, LabConfig, LabError, MachineSpec, SimLab};
use crate::machine::node::{Profile, Timings};
use ferric_service::config::Config;
use ferric_service::images::DiskFormat;
use ferric_types::models::NodeId;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Most machines `--sim` builds (the lab runs on one thread).
pub const MAX_SIM_MACHINES: usize = 1000;

/// What `ferric serve --sim` builds.
#[derive(Debug, Clone)]
pub struct SimServeOptions {
    pub machines: usize,
    /// UDP port of BMC 0 on 127.0.0.1 (0: in-memory links).
    pub bmc_base_port: u16,
    /// Virtual size of the image uploaded at start.
    pub image_mb: u64,
}

/// Errors of `ferric serve --sim`.
#[derive(Debug, thiserror::Error)]
pub enum ServeSimError {
    #[error("--sim takes 1 to {MAX_SIM_MACHINES} machines, not {0}")]
    Count(usize),
    #[error("BMC ports {0}..{1} do not fit below 65536")]
    Ports(u16, usize),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot bind the API on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("API server: {0}")]
    Serve(std::io::Error),
}

/// Machine timings for interactive use: a deploy takes seconds of real time.
fn quick_profile() -> Arc<Profile> {
    Arc::new(Profile {
        name: "sim-quick".into(),
        timings: Timings {
            post_secs: 2.0,
            dhcp_secs: 0.05,
            kernel_boot_secs: 2.0,
            instance_boot_secs: 2.0,
            soft_off_secs: 1.0,
            tftp_bytes_per_sec: 64 << 20,
            http_bytes_per_sec: 1 << 30,
            disk_bytes_per_sec: 1 << 30,
            net_bytes_per_sec: 1 << 30,
            ..Timings::default()
        },
        ..Profile::default()
    })
}

/// Builds the lab on this thread (a current-thread runtime on the real clock) and serves until
/// Ctrl-C or SIGTERM.
pub fn run(config: Config, opts: SimServeOptions) -> Result<(), ServeSimError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ServeSimError::Runtime)?;
    rt.block_on(serve(config, opts, ferric_service::assemble::shutdown_signal()))
}

/// Serves the lab's API on `config.api.bind` until `shutdown` resolves; prints the nodes and the
/// image on stdout, then `ferric: simulated lab ready` once every node is `available`.
pub async fn serve(
    config: Config,
    opts: SimServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeSimError> {
    let n = opts.machines;
    if n == 0 || n > MAX_SIM_MACHINES {
        return Err(ServeSimError::Count(n));
    }
    let transport = match opts.bmc_base_port {
        0 => BmcTransport::Channel,
        p if p as usize + n > 65536 => return Err(ServeSimError::Ports(p, p as usize + n)),
        p => BmcTransport::Udp { base_port: p },
    };
    let mut conductor = config.conductor.clone();
    // Agents heartbeat every 0.3-0.6 of this: keep the conductor's polls of a deploy quick.
    conductor.agent_heartbeat_timeout = conductor.agent_heartbeat_timeout.min(30);
    let profile = quick_profile();
    let seed: u64 = rand::random();
    let lab_config = LabConfig {
        seed,
        machines: (0..n).map(|_| MachineSpec { profile: profile.clone(), faults: Default::default() }).collect(),
        byte_scale: 4096,
        conductor,
        transport,
        assume_ramdisk: false,
        real_boot: true,
        real_clock: true,
        trace_capacity: 10_000,
        ..LabConfig::default()
    };
    let lab = SimLab::build(lab_config).await?;
    let addr = config.api.bind;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeSimError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let router = lab.service.router();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    tracing::info!(%local, machines = n, "ferric API listening (simulated lab)");

    let image_id = uuid::Uuid::new_v4().to_string();
    lab.add_image("sim-image", &image_id, opts.image_mb.max(1) << 20, DiskFormat::Raw, seed).await?;
    println!("ferric: API http://{local} (simulated lab, {n} machines, state in memory)");
    println!("ferric: image sim-image {image_id} (raw, {} MiB), set as every node's image_source", opts.image_mb);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = NodeId(uuid::Uuid::new_v4());
        let extra = json!({
            "boot_interface": "ipxe",
            "deploy_interface": "direct",
            "instance_info": {"image_source": image_id, "root_gb": 10},
        });
        lab.enroll(i, id, &[], &extra).await?;
        let bmc = match transport {
            BmcTransport::Udp { base_port } => format!("BMC 127.0.0.1:{} (admin/password)", base_port as usize + i),
            BmcTransport::Channel => "BMC in memory".to_string(),
        };
        println!("ferric: node node-{i} {id} {bmc}");
        ids.push(id);
    }
    // manage, then provide (automated cleaning runs as configured) for every node at once.
    let stop = async {
        for (target, want) in [("manage", "manageable"), ("provide", "available")] {
            for id in &ids {
                let path = format!("/v1/nodes/{id}/states/provision");
                lab.api(http::Method::PUT, &path, Some(json!({"target": target}))).await?;
            }
            wait_all(&lab, &ids, want).await?;
        }
        println!(
            "ferric: simulated lab ready: try `baremetal --os-endpoint http://{local} --os-auth-type none node deploy node-0`"
        );
        Ok::<(), LabError>(())
    };
    tokio::pin!(shutdown);
    tokio::select! {
        r = stop => {
            if let Err(e) = r {
                tracing::error!(error = %e, "the simulated nodes did not become available");
            }
            shutdown.await;
        }
        _ = &mut shutdown => {}
    }
    let _ = stop_tx.send(());
    let served = server.await;
    let mut lab = lab;
    lab.shutdown();
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeSimError::Serve(e)),
        Err(e) => Err(ServeSimError::Serve(std::io::Error::other(e.to_string()))),
    }
}

/// Waits until every node is in `want` (or in a failure state, which is logged).
async fn wait_all(lab: &SimLab, ids: &[NodeId], want: &str) -> Result<(), LabError> {
    loop {
        let mut pending = 0;
        for id in ids {
            let node = lab.db.get_node_by_uuid(*id)?;
            let state = node.provision_state.as_str();
            if state == want && node.reservation.is_none() {
                continue;
            }
            if state.ends_with("failed") {
                return Err(LabError::Invalid(format!(
                    "node {id} ended in {state}: {}",
                    node.last_error.unwrap_or_default()
                )));
            }
            pending += 1;
        }
        if pending == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
