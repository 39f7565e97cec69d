//! `ferric vbmc`: serves N virtual BMCs (ferric-sim) in front of simulated machines from one
//! process, like VirtualBMC's vbmcd, until killed.

use ferric_sim::vbmc::BmcConfig;
use ferric_sim::vbmc::fleet::{Fleet, FleetFile, resolve};
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
    #[arg(long, default_value = "password", env = "FERRIC_VBMC_PASSWORD")]
    pub password: String,
    /// Address to listen on; loopback unless given.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// TOML fleet file with per-BMC settings and fault knobs (see ferric_sim::vbmc::fleet).
    #[arg(long)]
    pub fleet: Option<PathBuf>,
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
    Fleet(#[from] ferric_sim::vbmc::fleet::FleetError),
    #[error("a BMC stopped: {0}")]
    Serve(String),
}

/// Builds the fleet, binds every BMC, then serves until the process is killed (or Ctrl-C).
pub async fn run(args: VbmcArgs) -> Result<(), VbmcError> {
    let file = match &args.fleet {
        Some(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|source| VbmcError::Read {
                    path: path.clone(),
                    source,
                })?;
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
    let sockets = fleet.bind(args.address, args.base_port).await?;
    tracing::info!(
        nodes = args.nodes,
        address = %args.address,
        first_port = args.base_port,
        "virtual BMCs listening"
    );
    println!(
        "ferric vbmc: {} BMC(s) on {}:{}-{}",
        args.nodes,
        args.address,
        args.base_port,
        args.base_port as usize + args.nodes - 1
    );
    let mut set = fleet.serve(sockets);
    tokio::select! {
        r = set.join_next() => match r {
            Some(Ok(Err(e))) => Err(VbmcError::Serve(e.to_string())),
            Some(Err(e)) => Err(VbmcError::Serve(e.to_string())),
            _ => Ok(()),
        },
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
