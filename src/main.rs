//! `ferric`: the service, its tools and, with the default `lab` feature, its labs (`scenario`,
//! `lab`, `vbmc`, `serve --sim/--qemu`). `--no-default-features` builds the production binary.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferric_service::config::Config;
use ferric_service::{Service, shutdown_signal};
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc rather than glibc's allocator: ferric makes many small, short-lived allocations (node
/// records, requests, IPMI packets), and a 3,000-node simulation used about a tenth less CPU. Built
/// with `no_thp`: mimalloc's huge-page advice kept freed memory resident (that simulation peaked at
/// 1.4 GB instead of 190 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ferric", version, about = "Bare-metal provisioning, Ironic-compatible, simulation-first")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the conductor in one process.
    Serve(Box<ServeArgs>),
    /// The database schema: `ferric db upgrade --database URL`.
    Db(DbArgs),
    /// Manage images in the image service.
    Image(ferric_service::images::cli::ImageArgs),
    /// API bearer tokens (auth strategy `token`): create, list, revoke.
    Token(TokenArgs),
    /// Serve N virtual BMCs (IPMI 2.0 lanplus on UDP, Redfish on TCP, or both) on 127.0.0.1:P+i until killed.
    #[cfg(feature = "lab")]
    Vbmc(ferric_lab::vbmc::VbmcArgs),
    /// Deterministic simulation: run scenario files against simulated fleets.
    #[cfg(feature = "lab")]
    Scenario(ferric_lab::scenario::cli::ScenarioArgs),
    /// QEMU lab: VMs that PXE-boot from ferric in a private network namespace.
    #[cfg(feature = "lab")]
    Lab(ferric_lab::qemu_cli::LabArgs),
}

#[derive(clap::Args)]
struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Brings the schema up to this binary's version (both SQLite and PostgreSQL).
    Upgrade {
        /// `sqlite://PATH` or `postgres://USER@HOST/DB` (default: the data directory's SQLite file).
        #[arg(long)]
        database: Option<String>,
        /// TOML configuration file (for `[database] url`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct TokenArgs {
    /// TOML configuration file (for `data_dir` and `[database] url`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The store: `sqlite://PATH` or `postgres://...` (default: DATA_DIR/ferric.sqlite).
    #[arg(long, value_name = "URL", global = true)]
    database: Option<String>,
    /// Data directory holding the database.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issues a token and prints it (only it, once: it is stored hashed).
    Create {
        #[arg(long)]
        user: String,
        /// admin, member or reader.
        #[arg(long)]
        role: ferric_service::api::identity::AuthRole,
        /// Lifetime: 8h, 30m, 7d, 3600s, or `never`.
        #[arg(long, default_value = "8h")]
        expires: String,
        /// The project node owner/lessee scoping compares against.
        #[arg(long)]
        project: Option<String>,
    },
    /// Lists tokens (never their secrets).
    List,
    /// Revokes a token by its ID (from `ferric token list`).
    Revoke { id: String },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (flags and FERRIC_* variables override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address the API listens on (default 127.0.0.1:6385).
    #[arg(long)]
    api_bind: Option<SocketAddr>,
    /// Serve the API over HTTPS with this certificate chain (PEM, leaf first; with --tls-key).
    /// Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The API's private key (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Append a JSON line for every API write and provision-state change to FILE (reopened on
    /// SIGHUP).
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// How API callers authenticate: noauth (only on a loopback address unless
    /// --insecure-noauth), http_basic (--htpasswd) or token (`ferric token create`).
    #[arg(long, value_enum)]
    auth_strategy: Option<ferric_service::config::AuthStrategy>,
    /// The htpasswd file (bcrypt entries) of --auth-strategy http_basic.
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// Roles of http_basic users: `user role [project]` lines.
    #[arg(long, value_name = "FILE")]
    role_map: Option<PathBuf>,
    /// Allow noauth on an address other than loopback: anyone who reaches the API is admin.
    #[arg(long)]
    insecure_noauth: bool,
    /// What this process runs: `all` (API and conductor, alone on its database), `api`, or
    /// `conductor` (one of several sharing a database).
    #[arg(long, value_enum)]
    role: Option<ferric_service::config::Role>,
    /// The store: `sqlite://PATH` (default: DATA_DIR/ferric.sqlite) or `postgres://...`.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Where a conductor's JSON-RPC endpoint listens.
    #[arg(long, value_name = "ADDR:PORT")]
    rpc_bind: Option<SocketAddr>,
    /// The URL API processes reach this conductor at (default http://RPC_BIND).
    #[arg(long, value_name = "URL")]
    rpc_url: Option<String>,
    /// RPC user, the same on every process (default `ferric`).
    #[arg(long)]
    rpc_username: Option<String>,
    /// RPC password, the same on every process (or FERRIC_RPC__PASSWORD).
    #[arg(long)]
    rpc_password: Option<String>,
    /// Serve the RPC endpoint over TLS with this certificate chain (PEM; with --rpc-tls-key).
    #[arg(long, value_name = "FILE")]
    rpc_tls_cert: Option<PathBuf>,
    /// The RPC endpoint's private key (PEM).
    #[arg(long, value_name = "FILE")]
    rpc_tls_key: Option<PathBuf>,
    /// CA certificates (PEM) conductors' RPC certificates are checked against.
    #[arg(long, value_name = "FILE")]
    rpc_ca_file: Option<PathBuf>,
    /// This conductor's name (reservations, `conductor` of nodes, `/v1/conductors`).
    #[arg(long, value_name = "NAME")]
    conductor_host: Option<String>,
    /// This conductor's group (nodes' `conductor_group`).
    #[arg(long, value_name = "G")]
    conductor_group: Option<String>,
    /// Seconds without a heartbeat after which a conductor is offline and its nodes taken over.
    #[arg(long, value_name = "S")]
    heartbeat_timeout: Option<u64>,
    /// Seconds between a conductor's heartbeats (and takeover checks).
    #[arg(long, value_name = "S")]
    heartbeat_interval: Option<u64>,
    /// Data directory holding the database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long)]
    log_format: Option<String>,
    /// TFTP server address (TFTP is off unless this or `[pxe] tftp_bind` is given).
    #[arg(long, value_name = "ADDR:PORT")]
    tftp_bind: Option<SocketAddr>,
    /// TFTP root (default DATA_DIR/tftp).
    #[arg(long, value_name = "DIR")]
    tftp_root: Option<PathBuf>,
    /// HTTP boot server address (off unless given or configured).
    #[arg(long, value_name = "ADDR:PORT")]
    http_bind: Option<SocketAddr>,
    /// HTTP boot root (default DATA_DIR/httpboot).
    #[arg(long, value_name = "DIR")]
    http_root: Option<PathBuf>,
    /// Serve HTTP boot over HTTPS with this certificate chain (PEM; with --http-tls-key).
    #[arg(long, value_name = "FILE")]
    http_tls_cert: Option<PathBuf>,
    /// The HTTP boot server's private key (PEM).
    #[arg(long, value_name = "FILE")]
    http_tls_key: Option<PathBuf>,
    /// DHCP server address, e.g. 0.0.0.0:67 (off unless given or configured; any port for tests).
    #[arg(long, value_name = "ADDR:PORT")]
    dhcp_bind: Option<SocketAddr>,
    /// DHCP dynamic range.
    #[arg(long, value_name = "FIRST,LAST")]
    dhcp_range: Option<String>,
    /// Provisioning interface the DHCP server (and router advertisements) bind to.
    #[arg(long, value_name = "IFNAME")]
    dhcp_interface: Option<String>,
    /// Instead of real hardware: N QEMU VMs behind virtual BMCs in a private network namespace,
    /// enrolled and available; the API is forwarded to --api-bind (default 127.0.0.1:6385).
    #[cfg(feature = "lab")]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    qemu: Option<u8>,
    /// Start with N simulated machines enrolled and available (virtual BMCs, in-process agents,
    /// an image uploaded; state in memory): see `ferric_lab::serve_sim`.
    #[cfg(feature = "lab")]
    #[arg(long, value_name = "N")]
    sim: Option<usize>,
    /// With --sim: UDP port of machine 0's BMC on 127.0.0.1 (machine i: PORT+i); 0 for in-memory links.
    #[cfg(feature = "lab")]
    #[arg(long, value_name = "PORT", default_value_t = 6230)]
    sim_bmc_port: u16,
}

fn init_tracing(format: &str, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    #[cfg(feature = "lab")]
    if let Some(n) = args.qemu {
        init_tracing("human", "warn");
        let forward = args.api_bind.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6385)));
        let dir = args.data_dir.clone();
        // The lab runs its own runtime inside the namespace; start it off this one.
        let lab = std::thread::spawn(move || ferric_lab::qemu_cli::serve(usize::from(n), dir, forward));
        return match lab.join() {
            Ok(r) => Ok(r?),
            Err(_) => Err(anyhow::anyhow!("the QEMU lab panicked")),
        };
    }
    #[cfg(feature = "lab")]
    let (sim, sim_bmc_port) = (args.sim, args.sim_bmc_port);
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(b) = args.api_bind {
        config.api.bind = b;
    }
    config.api.tls_cert = args.tls_cert.or(config.api.tls_cert.take());
    config.api.tls_key = args.tls_key.or(config.api.tls_key.take());
    config.audit.file = args.audit_log.or(config.audit.file.take());
    let auth = &mut config.auth;
    auth.strategy = args.auth_strategy.unwrap_or(auth.strategy);
    auth.htpasswd = args.htpasswd.or(auth.htpasswd.take());
    auth.role_map = args.role_map.or(auth.role_map.take());
    auth.insecure_noauth |= args.insecure_noauth;
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(f) = args.log_format {
        config.log.format = f;
    }
    if let Some(r) = args.role {
        config.role = r;
    }
    if let Some(u) = args.database {
        config.database.url = Some(u);
    }
    let rpc = &mut config.rpc;
    rpc.bind = args.rpc_bind.or(rpc.bind);
    rpc.public_url = args.rpc_url.or(rpc.public_url.take());
    if let Some(u) = args.rpc_username {
        rpc.username = u;
    }
    if let Some(p) = args.rpc_password {
        rpc.password = p;
    }
    rpc.tls_cert = args.rpc_tls_cert.or(rpc.tls_cert.take());
    rpc.tls_key = args.rpc_tls_key.or(rpc.tls_key.take());
    rpc.ca_file = args.rpc_ca_file.or(rpc.ca_file.take());
    let cc = &mut config.conductor;
    if let Some(h) = args.conductor_host {
        cc.host = h;
    }
    if let Some(g) = args.conductor_group {
        cc.conductor_group = g;
    }
    cc.heartbeat_timeout = args.heartbeat_timeout.unwrap_or(cc.heartbeat_timeout);
    cc.heartbeat_interval = args.heartbeat_interval.unwrap_or(cc.heartbeat_interval);
    let pxe = &mut config.pxe;
    pxe.tftp_bind = args.tftp_bind.or(pxe.tftp_bind);
    pxe.tftp_root = args.tftp_root.or(pxe.tftp_root.take());
    pxe.http_bind = args.http_bind.or(pxe.http_bind);
    pxe.http_root = args.http_root.or(pxe.http_root.take());
    pxe.http_tls_cert = args.http_tls_cert.or(pxe.http_tls_cert.take());
    pxe.http_tls_key = args.http_tls_key.or(pxe.http_tls_key.take());
    let dhcp = &mut config.dhcp;
    dhcp.bind = args.dhcp_bind.or(dhcp.bind);
    dhcp.range = args.dhcp_range.or(dhcp.range.take());
    dhcp.interface = args.dhcp_interface.or(dhcp.interface.take());
    init_tracing(&config.log.format, &config.log.level);
    if config.role != ferric_service::config::Role::Conductor {
        // Before anything is opened or bound (the simulated fleet's API too).
        config.auth.check_bind(config.api.bind)?;
    }
    #[cfg(feature = "lab")]
    if let Some(machines) = sim {
        let opts = ferric_lab::serve_sim::SimServeOptions { machines, bmc_base_port: sim_bmc_port, image_mb: 512 };
        // The lab runs on its own current-thread runtime (real clock), off this one.
        tokio::task::spawn_blocking(move || ferric_lab::serve_sim::run(config, opts)).await??;
        return Ok(());
    }
    let service = Service::open(config).context("starting ferric")?;
    service.serve(shutdown_signal()).await?;
    Ok(())
}

/// `ferric token ...`: runs against the configured store (the data directory's SQLite file is
/// created and brought up to date; a shared database must be at this binary's schema).
fn token(a: TokenArgs) -> anyhow::Result<()> {
    use ferric_service::api::auth;
    let mut c = Config::load(a.config.as_deref())?;
    if let Some(u) = a.database {
        c.database.url = Some(u);
    }
    if let Some(d) = a.data_dir {
        c.data_dir = d;
    }
    if c.database.url.is_none() {
        std::fs::create_dir_all(&c.data_dir).with_context(|| format!("creating {}", c.data_dir.display()))?;
    }
    let db = ferric_service::assemble::open_db(&c).context("opening the database")?;
    match a.command {
        TokenCommand::Create { user, role, expires, project } => {
            println!("{}", auth::cli_create(&db, &user, role, project.as_deref(), &expires)?);
        }
        TokenCommand::List => print!("{}", auth::cli_list(&db)?),
        TokenCommand::Revoke { id } => {
            auth::cli_revoke(&db, &id)?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => serve(*a).await,
        Command::Db(DbArgs { command: DbCommand::Upgrade { database, config } }) => {
            let mut c = Config::load(config.as_deref())?;
            if let Some(u) = database {
                c.database.url = Some(u);
            }
            let url = c.database_url();
            let (from, to) = ferric_service::db::upgrade(&url).with_context(|| format!("upgrading {url}"))?;
            if from == to {
                println!("schema already at version {to}");
            } else {
                println!("schema upgraded from version {from} to {to}");
            }
            Ok(())
        }
        Command::Image(a) => ferric_service::images::cli::run_async(a).await,
        Command::Token(a) => token(a),
        #[cfg(feature = "lab")]
        Command::Vbmc(a) => {
            init_tracing("human", "info");
            Ok(ferric_lab::vbmc::run(a).await?)
        }
        #[cfg(feature = "lab")]
        Command::Scenario(a) => {
            init_tracing("human", "warn");
            let ferric_lab::scenario::cli::ScenarioCommand::Run(r) = a.command;
            // The simulation runs on its own paused-clock runtime, off this one.
            let code = std::thread::Builder::new()
                .name("scenario".into())
                .spawn(move || ferric_lab::scenario::cli::run(r))?
                .join()
                .unwrap_or(2);
            std::process::exit(code)
        }
        #[cfg(feature = "lab")]
        Command::Lab(a) => {
            init_tracing("human", "warn");
            let code = std::thread::Builder::new()
                .name("lab".into())
                .spawn(move || ferric_lab::qemu_cli::run(a))?
                .join()
                .unwrap_or(1);
            std::process::exit(code)
        }
    }
}
