//! `ferric vbmc`: serves N virtual BMCs (ferric-sim) in front of simulated machines from one
//! process, like VirtualBMC's vbmcd (IPMI) and sushy-emulator (Redfish), until killed. With both
//! protocols, BMC i answers IPMI on UDP port P+i and Redfish on TCP port P+i, in front of the same
//! machine.

use crate::fleet::{Fleet, FleetFile, NodeSettings, resolve};
use ferric_sim::redfish::{RedfishBmc, RedfishConfig};
use ferric_sim::vbmc::{Bmc, BmcConfig, serve_udp, serve_udp_blocking};
use std::net::IpAddr;
use std::path::PathBuf;

/// Which BMC protocols `ferric vbmc` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// IPMI 2.0 lanplus on UDP.
    Ipmi,
    /// Redfish on TCP (HTTPS unless --http).
    Redfish,
    /// Both, on the same port numbers (UDP for IPMI, TCP for Redfish).
    Both,
}

/// Command-line arguments of `ferric vbmc`.
#[derive(Debug, Clone, clap::Args)]
pub struct VbmcArgs {
    /// Number of BMCs (BMC i listens on base-port + i).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// BMC protocols: IPMI on UDP base-port + i, Redfish on TCP base-port + i, or both.
    #[arg(long, value_enum, default_value_t = Protocol::Both)]
    pub protocol: Protocol,
    /// Serve Redfish over plain HTTP rather than HTTPS (a self-signed certificate).
    #[arg(long)]
    pub http: bool,
    #[arg(long, default_value_t = 6230)]
    pub base_port: u16,
    #[arg(long, default_value = "admin")]
    pub username: String,
    #[arg(long, default_value = "password", env = "FERRIC_VBMC_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Address to listen on; loopback unless given.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// TOML fleet file with per-BMC settings and fault knobs (see crate::fleet).
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// Serving threads (default: available cores). Each runs a current-thread runtime over its
    /// share of the BMCs, so a packet never hops between threads.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Errors of `ferric vbmc`.
#[derive(Debug, thiserror::Error)]
pub enum VbmcError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error("a BMC stopped: {0}")]
    Serve(String),
    #[error("binding Redfish BMC to {addr}: {source}")]
    BindTcp {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS certificate: {0}")]
    Tls(#[from] ferric_sim::redfish::TlsError),
}

/// Builds the fleet, binds every BMC, then serves until the process is killed (or Ctrl-C).
pub async fn run(args: VbmcArgs) -> Result<(), VbmcError> {
    let file = match &args.fleet {
        Some(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|source| VbmcError::Read { path: path.clone(), source })?;
            FleetFile::parse(&text)?
        }
        None => FleetFile::default(),
    };
    let base = BmcConfig {
        username: args.username.clone(),
        password: ferric_sim::vbmc::Password(args.password.clone()),
        ..BmcConfig::default()
    };
    let settings = resolve(args.nodes, &base, &file)?;
    let fleet = Fleet::build(settings.clone())?;
    let ipmi = args.protocol != Protocol::Redfish;
    let redfish = args.protocol != Protocol::Ipmi;
    // Bind everything before serving anything: a port in use fails the command up front.
    let sockets = if ipmi { fleet.bind_std(args.address, args.base_port)? } else { Vec::new() };
    let mut listeners = Vec::new();
    if redfish {
        for i in 0..args.nodes {
            let port = u16::try_from(usize::from(args.base_port) + i).map_err(|_| {
                VbmcError::Fleet(crate::fleet::FleetError::Ports { base: args.base_port, count: args.nodes })
            })?;
            let addr = std::net::SocketAddr::new(args.address, port);
            listeners
                .push(tokio::net::TcpListener::bind(addr).await.map_err(|source| VbmcError::BindTcp { addr, source })?);
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64)
        .min(args.nodes);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<String>(threads + args.nodes);
    if ipmi {
        let mut shards: Vec<Vec<(Bmc, std::net::UdpSocket)>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, (node, socket)) in fleet.nodes.iter().zip(sockets).enumerate() {
            shards[i % threads].push((node.bmc.clone(), socket));
        }
        let runtime = tokio::runtime::Handle::current();
        for (t, shard) in shards.into_iter().enumerate() {
            let done = done_tx.clone();
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name(format!("vbmc-{t}"))
                .spawn(move || {
                    let err = serve_shard(shard, &runtime);
                    let _ = done.blocking_send(err);
                })
                .map_err(|e| VbmcError::Serve(e.to_string()))?;
        }
    }
    if redfish {
        let tls = if args.http {
            None
        } else {
            let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string(), args.address.to_string()];
            Some(ferric_sim::redfish::self_signed_tls(&hosts)?.0)
        };
        for (i, ((node, s), listener)) in fleet.nodes.iter().zip(&settings).zip(listeners).enumerate() {
            let bmc = RedfishBmc::new(redfish_config(s, i), node.machine.clone());
            let done = done_tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let why = match ferric_sim::redfish::serve(listener, bmc, tls).await {
                    Ok(()) => "redfish stopped".to_string(),
                    Err(e) => format!("redfish: {e}"),
                };
                let _ = done.send(why).await;
            });
        }
    }
    let scheme = if args.http { "http" } else { "https" };
    let what = match args.protocol {
        Protocol::Ipmi => "IPMI on UDP".to_string(),
        Protocol::Redfish => format!("Redfish {scheme}://"),
        Protocol::Both => format!("IPMI on UDP, Redfish {scheme}:// on TCP"),
    };
    tracing::info!(
        nodes = args.nodes,
        address = %args.address,
        first_port = args.base_port,
        threads,
        protocol = ?args.protocol,
        "virtual BMCs listening"
    );
    println!(
        "ferric vbmc: {} BMC(s) on {}:{}-{} ({what})",
        args.nodes,
        args.address,
        args.base_port,
        args.base_port as usize + args.nodes - 1
    );
    tokio::select! {
        e = done_rx.recv() => Err(VbmcError::Serve(e.unwrap_or_default())),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The Redfish settings of BMC `i`: its node's credentials and Redfish fault knobs (command line,
/// then fleet file), one System named after the node, a UUID and token seed of its own.
fn redfish_config(s: &NodeSettings, i: usize) -> RedfishConfig {
    RedfishConfig {
        username: s.bmc.username.clone(),
        password: s.bmc.password.0.clone(),
        uuid: format!("8f1c3a52-6d2e-4b7a-9c41-{:012x}", i),
        name: s.name.clone(),
        seed: s.bmc.seed,
        faults: s.redfish,
        ..RedfishConfig::default()
    }
}

/// Serves one thread's BMCs, returning why it stopped: a single BMC with blocking socket calls
/// (`runtime` runs its delayed replies), several on a current-thread runtime.
fn serve_shard(mut shard: Vec<(Bmc, std::net::UdpSocket)>, runtime: &tokio::runtime::Handle) -> String {
    if shard.len() == 1
        && let Some((bmc, socket)) = shard.pop()
    {
        return match serve_udp_blocking(bmc, socket, runtime) {
            Ok(()) => "stopped".into(),
            Err(e) => e.to_string(),
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return e.to_string(),
    };
    rt.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        for (bmc, socket) in shard {
            match tokio::net::UdpSocket::from_std(socket) {
                Ok(s) => {
                    set.spawn(serve_udp(bmc, s));
                }
                Err(e) => return e.to_string(),
            }
        }
        match set.join_next().await {
            Some(Ok(Err(e))) => e.to_string(),
            Some(Err(e)) => e.to_string(),
            _ => "stopped".into(),
        }
    })
}

/// The simulation's wiring: an IPMI connector that reaches BMC i of `fleet` at its
/// [`crate::sim::bmc_endpoint`] through in-memory links (raw RMCP+ packets on tokio channels, no
/// sockets), so the service's IPMI client runs unchanged on a paused clock.
pub fn channel_connector(fleet: &Fleet) -> ferric_service::ipmi::ChannelConnector {
    let bmcs: Vec<ferric_sim::vbmc::Bmc> = fleet.nodes.iter().map(|n| n.bmc.clone()).collect();
    ferric_service::ipmi::ChannelConnector::new(move |addr, port| {
        bmcs.get(crate::sim::bmc_index(addr, port)?).map(ferric_sim::vbmc::Bmc::link)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferric_service::ipmi::{ClientConfig, IpmiPool, PowerState, Target};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn fleet_over_in_memory_links() {
        let fleet = Fleet::build(resolve(3, &BmcConfig::default(), &FleetFile::default()).unwrap()).unwrap();
        let pool = IpmiPool::new(
            Arc::new(channel_connector(&fleet)),
            ClientConfig { rng_seed: Some(1), ..Default::default() },
            8,
        );
        let t = |i: u16| Target::new("192.0.2.2", "admin", "password").with_port(6230 + i);
        pool.client(&t(2)).power_on().await.unwrap();
        assert_eq!(pool.client(&t(2)).power_state().await.unwrap(), PowerState::On);
        assert_eq!(pool.client(&t(0)).power_state().await.unwrap(), PowerState::Off);
        assert_eq!(fleet.nodes[2].bmc.stats().power_on, 1);
        assert_eq!(fleet.nodes[2].bmc.stats().sessions_opened, 1, "session reused");
        let e = pool.client(&t(3)).power_state().await.unwrap_err();
        assert!(matches!(e, ferric_service::ipmi::IpmiError::Unreachable { .. }), "{e}");
    }
}
