//! `ferric`: the service, its tools and its labs.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferric::config::Config;
use ferric::service::Service;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "ferric", version, about = "Bare-metal provisioning, Ironic-compatible, simulation-first")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the conductor in one process.
    Serve(ServeArgs),
    /// Serve N virtual BMCs (IPMI 2.0 lanplus) on 127.0.0.1:P+i until killed.
    Vbmc(ferric::lab::vbmc::VbmcArgs),
    /// Manage images in the image service.
    Image(ferric::images::cli::ImageArgs),
    /// Deterministic simulation: run scenario files against simulated fleets.
    Scenario(ferric::scenario::cli::ScenarioArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (flags and FERRIC_* variables override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address the API listens on (default 127.0.0.1:6385).
    #[arg(long)]
    api_bind: Option<SocketAddr>,
    /// Data directory holding the database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long)]
    log_format: Option<String>,
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(b) = args.api_bind {
        config.api.bind = b;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(f) = args.log_format {
        config.log.format = f;
    }
    init_tracing(&config.log.format, &config.log.level);
    let service = Service::open(config).context("starting ferric")?;
    service.serve(shutdown_signal()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Vbmc(a) => {
            init_tracing("human", "info");
            Ok(ferric::lab::vbmc::run(a).await?)
        }
        Command::Image(a) => ferric::images::cli::run_async(a).await,
        Command::Scenario(a) => {
            init_tracing("human", "warn");
            let ferric::scenario::cli::ScenarioCommand::Run(r) = a.command;
            // The simulation runs on its own paused-clock runtime, off this one.
            let code = std::thread::Builder::new()
                .name("scenario".into())
                .spawn(move || ferric::scenario::cli::run(r))?
                .join()
                .unwrap_or(2);
            std::process::exit(code)
        }
    }
}
