//! `ferric vbmc`: serves N virtual BMCs (ferric-sim) in front of simulated machines from one
//! process, like VirtualBMC's vbmcd, until killed.

use crate::fleet::{Fleet, FleetFile, resolve};
use ferric_sim::vbmc::{Bmc, BmcConfig, serve_udp, serve_udp_blocking};
use std::net::IpAddr;
use std::path::PathBuf;

/// Command-line arguments of `ferric vbmc`.
#[derive(Debug, Clone, clap::Args)]
pub struct VbmcArgs {
    /// Number of BMCs (BMC i listens on base-port + i).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
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
    let fleet = Fleet::build(resolve(args.nodes, &base, &file)?)?;
    let sockets = fleet.bind_std(args.address, args.base_port)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64)
        .min(args.nodes);
    let mut shards: Vec<Vec<(Bmc, std::net::UdpSocket)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, (node, socket)) in fleet.nodes.iter().zip(sockets).enumerate() {
        shards[i % threads].push((node.bmc.clone(), socket));
    }
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<String>(threads);
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
    tracing::info!(
        nodes = args.nodes,
        address = %args.address,
        first_port = args.base_port,
        threads,
        "virtual BMCs listening"
    );
    println!(
        "ferric vbmc: {} BMC(s) on {}:{}-{}",
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

/// The simulation's wiring: an IPMI connector that reaches BMC i of `fleet` at
/// `address`:`base_port + i` through in-memory links (raw RMCP+ packets on tokio channels, no
/// sockets), so the service's IPMI client runs unchanged on a paused clock.
pub fn channel_connector(
    fleet: &Fleet,
    address: impl Into<String>,
    base_port: u16,
) -> ferric_service::ipmi::ChannelConnector {
    let address = address.into();
    let bmcs: Vec<ferric_sim::vbmc::Bmc> = fleet.nodes.iter().map(|n| n.bmc.clone()).collect();
    ferric_service::ipmi::ChannelConnector::new(move |addr, port| {
        if addr != address {
            return None;
        }
        let i = usize::from(port.checked_sub(base_port)?);
        bmcs.get(i).map(ferric_sim::vbmc::Bmc::link)
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
            Arc::new(channel_connector(&fleet, "192.0.2.1", 6230)),
            ClientConfig { rng_seed: Some(1), ..Default::default() },
            8,
        );
        let t = |i: u16| Target::new("192.0.2.1", "admin", "password").with_port(6230 + i);
        pool.client(&t(2)).power_on().await.unwrap();
        assert_eq!(pool.client(&t(2)).power_state().await.unwrap(), PowerState::On);
        assert_eq!(pool.client(&t(0)).power_state().await.unwrap(), PowerState::Off);
        assert_eq!(fleet.nodes[2].bmc.stats().power_on, 1);
        assert_eq!(fleet.nodes[2].bmc.stats().sessions_opened, 1, "session reused");
        let e = pool.client(&t(3)).power_state().await.unwrap_err();
        assert!(matches!(e, ferric_service::ipmi::IpmiError::Unreachable { .. }), "{e}");
    }
}
