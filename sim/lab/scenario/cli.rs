//! `ferric scenario run FILE [--seed N] [--json OUT] [--diagram OUT] [--html OUT]`.

use super::{RunOptions, Scenario, diagram};
use std::path::{Path, PathBuf};

/// `ferric scenario ...`
#[derive(Debug, Clone, clap::Args)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    pub command: ScenarioCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ScenarioCommand {
    /// Run a scenario file on a simulated fleet; prints a summary and `trace-hash: HEX`, exits 0
    /// exactly when every expectation and invariant held.
    Run(RunArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Scenario file (TOML).
    pub file: PathBuf,
    /// Seed (default: the file's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a node's deploy as a Mermaid sequence diagram here, and as seqdiag next to it
    /// (`.diag`; or the other way round when OUT ends in `.diag`).
    #[arg(long)]
    pub diagram: Option<PathBuf>,
    /// Machine index whose deploy the diagram shows (default: the scenario's, else the first
    /// deployed).
    #[arg(long)]
    pub diagram_node: Option<usize>,
    /// Write the report as one self-contained HTML page here (counts, faults, invariants, the
    /// timeline, the diagram of each failed node; opens offline).
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// Exit status: 0 passed, 1 an expectation or invariant failed, 2 the scenario could not run.
pub fn run(args: RunArgs) -> i32 {
    match run_inner(&args) {
        Ok(passed) => i32::from(!passed),
        Err(e) => {
            eprintln!("ferric scenario: {e}");
            2
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn run_inner(args: &RunArgs) -> Result<bool, String> {
    let meta = std::fs::metadata(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    if meta.len() > 4 << 20 {
        return Err(format!("{}: larger than 4 MiB", args.file.display()));
    }
    let text = std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let mut scenario = Scenario::parse(&text).map_err(|e| e.to_string())?;
    if let Some(d) = args.diagram_node {
        scenario.sim.diagram_node = Some(d);
    }
    let opts = RunOptions { seed: args.seed, ..Default::default() };
    let out = super::run(&scenario, &opts).map_err(|e| e.to_string())?;
    print!("{}", out.report.table());
    if let Some(p) = &args.json {
        let j = serde_json::to_string_pretty(&out.report).map_err(|e| e.to_string())?;
        write(p, &j)?;
    }
    if let Some(p) = &args.diagram {
        match &out.deploy {
            Some((name, events)) => {
                let title = format!("{}: deploy of {name}", scenario.name);
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                let (mmd, diag) = if ext == "diag" || ext == "seqdiag" {
                    (p.with_extension("mmd"), p.clone())
                } else {
                    (p.clone(), p.with_extension("diag"))
                };
                write(&mmd, &diagram::mermaid(&title, events))?;
                write(&diag, &diagram::seqdiag(events))?;
                eprintln!("diagram of {name}'s deploy: {} (Mermaid), {} (seqdiag)", mmd.display(), diag.display());
            }
            None => eprintln!("no deploy to draw: the scenario deploys nothing"),
        }
    }
    if let Some(p) = &args.html {
        write(p, &super::html::page(&scenario.name, &out))?;
    }
    Ok(out.report.passed)
}
