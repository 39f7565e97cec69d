//! `ferric-agent`: the deploy ramdisk agent.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ferric-agent", about = "ferric deploy ramdisk agent")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one disk as LUN 0 of an iSCSI target until killed (tests and debugging).
    IscsiTarget(ferric::iscsi::target::cli::IscsiTargetArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::IscsiTarget(args)) => ferric::iscsi::target::cli::run(args),
        None => Ok(()),
    }
}
