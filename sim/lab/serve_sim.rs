//! `ferric serve --sim N`: the service on its normal API address with N simulated machines that
//! it enrolls, manages and cleans at start, so a newcomer can `baremetal node list` at once and
//! `baremetal node deploy` once it prints `ferric: N simulated nodes available (API URL)` (some
//! seconds later: cleaning boots each machine's ramdisk), or which node failed and why.
//!
//! It is a [`SimLab`] on the real clock: the machines' virtual BMCs listen on UDP 127.0.0.1 (BMC
//! i on `bmc_base_port + i`, so `ipmitool -I lanplus` reaches them too) or, with port 0, on
//! in-memory links; the nodes use the `ipmi` driver with ferric's `ipxe` boot interface; the
//! agents run in-process. An image is uploaded at start and set as every node's
//! `instance_info.image_source` (its UUID is printed). State lives in memory: it is gone when the
//! process ends. Machine timings are shortened (seconds, not minutes) so a deploy takes seconds.

use super::sim::{BmcTransport, LabConfig, LabError, MachineSpec, SimLab};
use crate::machine::node::{BmcProtocol, Profile, Timings};
use ferric_service::config::Config;
use ferric_service::db::{NodeFilter, NodeQuery};
use ferric_service::images::DiskFormat;
use ferric_types::models::{NodeId, ProvisionState};
use ferric_types::state_machine;
use serde_json::json;
use std::collections::{HashMap, HashSet};
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
/// image on stdout, then one line once every node is `available` (or, instead, which failed).
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
    // Half the fleet behind IPMI BMCs, half behind Redfish BMCs booting by virtual media.
    let profile = quick_profile();
    let redfish = Arc::new(Profile {
        bmc: BmcProtocol::Redfish,
        boot_interface: Some("redfish-virtual-media".into()),
        ..(*profile).clone()
    });
    let profile_of = |i: usize| if i % 2 == 0 { profile.clone() } else { redfish.clone() };
    let seed: u64 = rand::random();
    let lab_config = LabConfig {
        seed,
        machines: (0..n)
            .map(|i| MachineSpec { profile: profile_of(i), faults: Default::default(), redfish: Default::default() })
            .collect(),
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
        let boot = lab.nodes[i].profile.boot_interface.clone().unwrap_or_else(|| "ipxe".into());
        let extra = json!({
            "boot_interface": boot,
            "deploy_interface": "direct",
            "instance_info": {"image_source": image_id, "root_gb": 10},
        });
        lab.enroll(i, id, &[], &extra).await?;
        let bmc = match (transport, lab.nodes[i].profile.bmc) {
            (BmcTransport::Udp { base_port }, BmcProtocol::Ipmi) => {
                format!("BMC 127.0.0.1:{} (IPMI, admin/password)", base_port as usize + i)
            }
            (BmcTransport::Udp { base_port }, BmcProtocol::Redfish) => {
                format!("BMC http://127.0.0.1:{}/redfish/v1 (Redfish, admin/password)", base_port as usize + i)
            }
            (BmcTransport::Channel, _) => "BMC in memory".to_string(),
        };
        println!("ferric: node node-{i} {id} {bmc}");
        ids.push(id);
    }
    // manage, then provide (automated cleaning runs as configured) for every node at once. The
    // nodes reach `available` only some seconds after the API listens (cleaning boots the
    // ramdisk): one line on stdout says when, so a user or a script knows when to deploy.
    let ready = async {
        let (available, failed) = bring_up(&lab, &ids).await?;
        let api = format!("API http://{local}");
        let nodes = if n == 1 { "node" } else { "nodes" };
        if failed.is_empty() {
            println!("ferric: {n} simulated {nodes} available ({api})");
        } else {
            // Still one line with a thousand failures: the first few, then a count.
            let mut why: Vec<String> = failed.iter().take(SHOWN_FAILURES).map(Failure::to_string).collect();
            if failed.len() > SHOWN_FAILURES {
                why.push(format!("and {} more", failed.len() - SHOWN_FAILURES));
            }
            println!(
                "ferric: {available} of {n} simulated {nodes} available ({api}); {} failed: {}",
                failed.len(),
                why.join("; ")
            );
        }
        Ok::<(), LabError>(())
    };
    tokio::pin!(shutdown);
    tokio::select! {
        r = ready => {
            if let Err(e) = r {
                println!("ferric: the simulated nodes did not become available: {e}");
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

/// Failed nodes named in the bring-up's line.
const SHOWN_FAILURES: usize = 3;

/// A node that did not get to `available`, and why.
struct Failure {
    index: usize,
    id: NodeId,
    state: ProvisionState,
    last_error: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node-{} {} {}: {}", self.index, self.id, self.state.as_str(), self.last_error)
    }
}

/// Manages, then provides the nodes; returns how many got to `available` and the others.
async fn bring_up(lab: &SimLab, ids: &[NodeId]) -> Result<(usize, Vec<Failure>), LabError> {
    let mut nodes: Vec<(usize, NodeId)> = ids.iter().copied().enumerate().collect();
    let mut failed = Vec::new();
    for (target, want) in [("manage", ProvisionState::Manageable), ("provide", ProvisionState::Available)] {
        for (_, id) in &nodes {
            let path = format!("/v1/nodes/{id}/states/provision");
            lab.api(http::Method::PUT, &path, Some(json!({"target": target}))).await?;
        }
        let (ok, bad) = settle(lab, nodes, want).await?;
        nodes = ok;
        failed.extend(bad);
    }
    failed.sort_by_key(|f| f.index);
    Ok((nodes.len(), failed))
}

/// Waits until each node is in `want` and unlocked (a locked node would refuse the next request),
/// or has failed: in a failure state, or back in `enroll` with `last_error` (verification failed).
/// Polls the database every 250 ms: two listings that do not decode node bodies (cheap at 1,000).
async fn settle(
    lab: &SimLab,
    mut pending: Vec<(usize, NodeId)>,
    want: ProvisionState,
) -> Result<(Vec<(usize, NodeId)>, Vec<Failure>), LabError> {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    loop {
        poll.tick().await;
        let states: HashMap<NodeId, ProvisionState> = lab
            .db
            .list_node_summaries(&NodeQuery::default())?
            .into_iter()
            .map(|s| (s.uuid, s.provision_state))
            .collect();
        let locked =
            NodeQuery { filter: NodeFilter { reserved: Some(true), ..NodeFilter::default() }, ..NodeQuery::default() };
        let locked: HashSet<NodeId> = lab.db.list_node_summaries(&locked)?.into_iter().map(|s| s.uuid).collect();
        let mut still = Vec::new();
        for (index, id) in pending {
            match states.get(&id).copied() {
                _ if locked.contains(&id) => still.push((index, id)),
                Some(s) if s == want => ok.push((index, id)),
                Some(s) if !state_machine::is_failure(s) && s != ProvisionState::Enroll => still.push((index, id)),
                // Failed, or back in enroll (a failed verification if `last_error` says so): only
                // these few nodes' bodies are read.
                _ => {
                    let node = lab.db.get_node_by_uuid(id)?;
                    let state = node.provision_state;
                    match node.last_error {
                        Some(last_error) => failed.push(Failure { index, id, state, last_error }),
                        None if state_machine::is_failure(state) => {
                            failed.push(Failure { index, id, state, last_error: "no last_error recorded".into() })
                        }
                        None => still.push((index, id)),
                    }
                }
            }
        }
        if still.is_empty() {
            return Ok((ok, failed));
        }
        pending = still;
    }
}
