//! The `ferric-agent` command line. Without a subcommand it runs the agent:
//! `ferric-agent --api-url URL --disk PATH [--listen ADDR:PORT] [--mac MAC ...]`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::{Agent, AgentConfig, HostMode, LogRing};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use ferric_disk::disks::Disk;
use ferric_disk::http::ReqwestHttp;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Parser)]
#[command(name = "ferric-agent", version, about = "ferric's deploy ramdisk agent (ironic-python-agent compatible)")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one disk as LUN 0 of an iSCSI target until killed (tests and debugging).
    IscsiTarget(crate::iscsi_target::cli::IscsiTargetArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// ferric (or Ironic) API URL.
    #[arg(long, env = "FERRIC_AGENT_API_URL")]
    api_url: Option<String>,
    /// Disk to deploy to: a block device or a file, optionally with identity for root device
    /// hints: PATH[,serial=S][,wwn=W][,model=M][,vendor=V][,rotational=0|1]. Repeatable. Without
    /// it, disks are discovered, in a deploy ramdisk only.
    #[arg(long = "disk")]
    disks: Vec<String>,
    /// Address of the agent's REST API.
    #[arg(long, default_value = "0.0.0.0:9999")]
    listen: SocketAddr,
    /// URL the conductor calls back (default: http://ADDRESS:PORT, the address that routes to
    /// the API when --listen is a wildcard; https:// with --tls-cert).
    #[arg(long)]
    advertise_url: Option<String>,
    /// Serve the agent's API over HTTPS with this certificate chain (PEM; with --tls-key). The
    /// conductor checks it against its `[agent] verify_ca`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The agent API's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// MAC address sent to lookup (repeatable; default: this machine's NICs).
    #[arg(long = "mac")]
    macs: Vec<String>,
    /// Node UUID sent to lookup.
    #[arg(long)]
    node_uuid: Option<String>,
    /// Allow writing block devices outside a deploy ramdisk.
    #[arg(long)]
    allow_block_devices: bool,
    /// Seconds to keep trying lookup.
    #[arg(long, default_value_t = 600)]
    lookup_timeout: u64,
    /// Retries of an image download (4xx is final).
    #[arg(long, default_value_t = 3)]
    download_retries: u32,
    /// Seconds between download attempts.
    #[arg(long, default_value_t = 5.0)]
    download_retry_interval: f64,
    /// Seed of the agent's RNG (default: random).
    #[arg(long)]
    seed: Option<u64>,
}

fn machine_macs() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        for e in rd.flatten() {
            if e.file_name() == "lo" {
                continue;
            }
            if let Ok(m) = std::fs::read_to_string(e.path().join("address")) {
                let m = m.trim().to_lowercase();
                if m.len() == 17 && m != "00:00:00:00:00:00" {
                    out.push(m);
                }
            }
        }
    }
    out.sort();
    out
}

/// The local address that routes to the API (a UDP connect sends nothing).
fn route_source(api_url: &str) -> Option<IpAddr> {
    let u = url::Url::parse(api_url).ok()?;
    let addr = u.socket_addrs(|| Some(80)).ok()?.into_iter().next()?;
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0".parse().ok()? } else { "[::]:0".parse().ok()? };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(addr).ok()?;
    Some(s.local_addr().ok()?.ip())
}

async fn run(args: RunArgs, logs: Arc<LogRing>) -> anyhow::Result<()> {
    let Some(api_url) = args.api_url.clone() else {
        bail!("--api-url is required");
    };
    let mut disks = Vec::new();
    for spec in &args.disks {
        disks.push(Disk::open_spec(
            spec,
            args.allow_block_devices
                || std::process::id() == 1
                || std::path::Path::new(crate::context::RAMDISK_MARKER).exists(),
        )?);
    }
    let mut mode = HostMode::detect(&disks);
    if args.disks.is_empty() {
        // Only a ramdisk may go looking for the machine's own disks.
        let in_ramdisk = std::process::id() == 1 || std::path::Path::new(crate::context::RAMDISK_MARKER).exists();
        if !in_ramdisk {
            bail!("no --disk given and not in a deploy ramdisk: refusing to pick one of this machine's disks");
        }
        disks = Disk::discover();
        mode = HostMode::detect(&disks);
    }
    tracing::info!(?mode, disks = ?disks, "ferric-agent starting");
    let macs = if args.macs.is_empty() { machine_macs() } else { args.macs.iter().map(|m| m.to_lowercase()).collect() };
    let seed = args.seed.unwrap_or_else(|| rand::Rng::next_u64(&mut rand::rng()));
    let mut config = AgentConfig::new(&api_url, macs, seed);
    config.node_uuid = args.node_uuid.clone();
    config.lookup_timeout = Duration::from_secs(args.lookup_timeout);
    config.settings.writer.download_retries = args.download_retries;
    config.settings.writer.download_retry_interval = Duration::from_secs_f64(args.download_retry_interval.max(0.0));
    config.started_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let http = Arc::new(ReqwestHttp::new(Duration::from_secs(30))?);
    // iSCSI targets (for the iscsi deploy) listen on the agent's own provisioning address.
    let target_ip = if args.listen.ip().is_unspecified() {
        route_source(&api_url).unwrap_or(args.listen.ip())
    } else {
        args.listen.ip()
    };
    let iscsi = crate::iscsi_ext::IscsiExtension::new(Arc::new(crate::iscsi_ext::TcpExposer::default()), target_ip);
    let agent = Agent::new(config, http, disks, mode, vec![Arc::new(iscsi)], logs)?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::server_config(c, k)?),
        _ => None,
    };
    let callback = match args.advertise_url.clone() {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let ip =
                if local.ip().is_unspecified() { route_source(&api_url).unwrap_or(local.ip()) } else { local.ip() };
            let scheme = if tls.is_some() { "https" } else { "http" };
            match ip {
                IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}", local.port()),
                IpAddr::V4(v4) => format!("{scheme}://{v4}:{}", local.port()),
            }
        }
    };
    tracing::info!(listen = %local, callback_url = %callback, "serving the agent API");
    let shutdown = agent.shutdown_token();
    let router = agent.router();
    let sd = shutdown.clone();
    let server = tokio::spawn(async move {
        let stop = async move { sd.cancelled().await };
        match tls {
            None => axum::serve(listener, router).with_graceful_shutdown(stop).await,
            Some(config) => {
                let l = crate::tls::TlsListener::new(listener, config)?;
                axum::serve(l, router).with_graceful_shutdown(stop).await
            }
        }
    });
    let sd = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        sd.cancel();
    });
    let outcome = agent.run(&callback).await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    outcome?;
    tracing::info!("ferric-agent stopped");
    Ok(())
}

/// Keeps freed heap memory in the process (glibc). Image streaming allocates and frees network
/// buffers of a few hundred KiB at a high rate; by default glibc serves such sizes with mmap or
/// trims them from the heap as soon as they are freed, so every buffer costs fresh zeroed pages
/// (page faults were ~8% of the agent's CPU while writing an image). Peak memory is unchanged:
/// only memory the agent already used is kept for reuse.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Runs `ferric-agent` with the process's arguments.
pub fn main() -> anyhow::Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    let logs = Arc::new(LogRing::default());
    let ring = logs.clone();
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || crate::context::RingWriter(ring.clone())),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        None => rt.block_on(run(cli.run, logs)),
        Some(Command::IscsiTarget(args)) => crate::iscsi_target::cli::run(args),
    }
}
