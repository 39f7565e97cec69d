//! `ferric`: the service, its tools and its labs.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ferric",
    version,
    about = "Bare-metal provisioning, simulation-first"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve N virtual BMCs (IPMI 2.0 lanplus) on 127.0.0.1:P+i until killed.
    Vbmc(ferric::lab::vbmc::VbmcArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Vbmc(args) => ferric::lab::vbmc::run(args).await?,
    }
    Ok(())
}
