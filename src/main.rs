//! `ferric`: the service, its tools and its labs.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ferric",
    version,
    about = "Bare-metal provisioning in the spirit of OpenStack Ironic"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage images in the image service.
    Image(ferric::images::cli::ImageArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Image(args) => ferric::images::cli::run(args),
    }
}
