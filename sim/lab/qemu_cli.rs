//! `ferric lab deploy` (one-command demo and acceptance entry point) and `ferric serve --qemu N`.

use super::qemu::{API_URL, BmcKind, BootKind, DeployTimings, Flow, LabError, LabOptions, QemuLab};
use ferric_sim::qemu::BuildProgress;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;

/// `ferric lab ...`
#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum LabCommand {
    /// Bring up a namespace, ferric and N QEMU VMs, deploy every VM, check the instance's serial
    /// marker, tear everything down; prints per-step timings, exits 0 only on success.
    Deploy(DeployArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// Deploy interface.
    #[arg(long, value_enum, default_value = "direct")]
    pub flow: Flow,
    /// The VMs' BMC protocol (hardware type `ipmi` or `redfish`).
    #[arg(long, value_enum, default_value = "ipmi")]
    pub bmc: BmcKind,
    /// How the deploy ramdisk boots: PXE (iPXE) or the deploy ISO by Redfish virtual media.
    #[arg(long, value_enum, default_value = "pxe")]
    pub boot: BootKind,
    /// VMs to deploy at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub vms: u8,
    /// Instance image: the whole-disk `raw` or `qcow2` fixture.
    #[arg(long, default_value = "raw", value_parser = ["raw", "qcow2"])]
    pub image: String,
    /// State directory (default: a fresh one under /tmp, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the timings as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What one VM's deploy did, step by step (the trace's messages, seconds from the deploy request).
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmReport {
    pub timings: DeployTimings,
    pub steps: Vec<(f64, String, String, String)>,
}

/// Exit status: 0 every VM deployed and booted its instance, 1 otherwise.
pub fn run(args: LabArgs) -> i32 {
    let LabCommand::Deploy(d) = args.command;
    match deploy(&d) {
        Ok(reports) => {
            if let Some(p) = &d.json {
                let text = serde_json::to_string_pretty(&reports).unwrap_or_default();
                if let Err(e) = std::fs::write(p, text) {
                    eprintln!("ferric lab: writing {}: {e}", p.display());
                    return 1;
                }
            }
            0
        }
        Err(e) => {
            eprintln!("ferric lab deploy: FAILED: {e}");
            1
        }
    }
}

/// The lab's options for a user at a terminal: the fixture build shows its progress (on a fresh
/// machine it builds the ramdisk's static agent for minutes).
fn lab_options(vms: usize, dir: &std::path::Path) -> LabOptions {
    LabOptions { fixture_progress: BuildProgress::Stderr, ..LabOptions::new(vms, dir) }
}

fn deploy(args: &DeployArgs) -> Result<Vec<VmReport>, LabError> {
    if args.boot == BootKind::VirtualMedia && args.bmc != BmcKind::Redfish {
        return Err(LabError::Api(
            "--boot virtual-media needs --bmc redfish (virtual media is a Redfish service)".into(),
        ));
    }
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new().prefix("ferric-lab-").tempdir_in("/tmp")?;
            tmp.path().to_path_buf()
        }
    };
    let t0 = Instant::now();
    eprintln!("ferric lab: building fixtures and starting {} VM(s) in {}", args.vms, dir.display());
    let lab = QemuLab::start(lab_options(usize::from(args.vms), &dir))?;
    eprintln!("ferric lab: lab up in {:.1} s (namespace {})", t0.elapsed().as_secs_f64(), lab.netns().name());
    let (path, format) = match args.image.as_str() {
        "qcow2" => (lab.fixtures.whole_disk_qcow2.clone(), "qcow2"),
        _ => (lab.fixtures.whole_disk_raw.clone(), "raw"),
    };
    let flow = args.flow;
    let reports = lab.block_on(async {
        let image = lab.upload("instance", &path, format).await?;
        let mut ids = Vec::new();
        for i in 0..lab.vms.len() {
            ids.push(lab.enroll_with(i, flow, args.bmc, args.boot, Value::Null).await?);
        }
        let runs = ids.iter().enumerate().map(|(i, id)| {
            let image = image.clone();
            let lab = &lab;
            async move {
                let timings = lab.deploy(i, id, &image, flow).await?;
                let steps = lab.steps(id).await?;
                Ok::<_, LabError>(VmReport { timings, steps })
            }
        });
        let results = futures::future::join_all(runs).await;
        results.into_iter().collect::<Result<Vec<_>, _>>()
    })?;
    for r in &reports {
        println!("== {} ({} deploy)", r.timings.node, r.timings.flow);
        for (at, from, to, label) in &r.steps {
            println!("{at:8.1} s  {from:>10} -> {to:<10} {label}");
        }
        println!(
            "{}: active after {:.1} s, instance booted (serial marker) after {:.1} s",
            r.timings.node, r.timings.to_active, r.timings.to_marker
        );
    }
    println!("ferric lab deploy: OK ({} VM(s), {:.1} s in all)", reports.len(), t0.elapsed().as_secs_f64());
    drop(lab);
    Ok(reports)
}

/// `ferric serve --qemu N`: the lab with N VMs enrolled and `available`, the instance images
/// uploaded, the API forwarded to `forward` on the host; runs until interrupted. Its files go to
/// `dir`, or to a scratch directory under /tmp that goes with the run.
pub fn serve(vms: usize, dir: Option<PathBuf>, forward: std::net::SocketAddr) -> Result<(), LabError> {
    let (dir, scratch) = match dir {
        Some(d) => (d, false),
        None => (tempfile::Builder::new().prefix("ferric-qemu-").tempdir_in("/tmp")?.keep(), true),
    };
    let lab = QemuLab::start(lab_options(vms, &dir))?;
    let forwarded = lab.forward_api(forward)?;
    let (raw, qcow2) = (lab.fixtures.whole_disk_raw.clone(), lab.fixtures.whole_disk_qcow2.clone());
    let ids = lab.block_on(async {
        let raw = lab.upload("whole-disk-raw", &raw, "raw").await?;
        let qcow2 = lab.upload("whole-disk-qcow2", &qcow2, "qcow2").await?;
        let mut nodes = Vec::new();
        for i in 0..lab.vms.len() {
            nodes.push(lab.enroll(i, Flow::Direct, Value::Null).await?);
        }
        Ok::<_, LabError>((raw, qcow2, nodes))
    })?;
    println!("ferric QEMU lab: {vms} VM(s) available, API {API_URL} in namespace {}", lab.netns().name());
    println!("  forwarded to http://{forwarded}");
    println!("  images: whole-disk raw {}, qcow2 {}", ids.0, ids.1);
    for (vm, id) in lab.vms.iter().zip(&ids.2) {
        println!(
            "  node {} ({id}), MAC {}, serial log {}",
            vm.name,
            vm.mac_string(),
            vm.machine.serial().path().display()
        );
    }
    println!(
        "  try: baremetal --os-endpoint http://{forwarded} --os-auth-type none node set {} --instance-info image_source={} && baremetal ... node deploy {} --wait",
        lab.vms[0].name, ids.0, lab.vms[0].name
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // SIGINT or SIGTERM: return, so the lab's drop stops the VMs and removes the namespace.
    rt.block_on(ferric_service::assemble::shutdown_signal());
    drop(lab);
    if scratch {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
