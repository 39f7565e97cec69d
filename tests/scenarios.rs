//! The scenario library and the runner's guarantees: every `scenarios/*.toml` passes; one file and
//! one seed give one trace hash, another seed another; the recorded direct and iscsi deploys
//! follow the user guide's Example 2 and Example 1 message lists in order; a broken expectation or
//! a broken invariant makes the run fail (and `ferric scenario run` exit non-zero).
//!
//! `scenarios/fleet-1000-mixed.toml` takes about 2 minutes in a debug build (about 20 s with
//! `--release`), so here it runs as a 100-node variant of the same file (every profile, fault kind
//! and flow, counts scaled by 1/10; about 9 s); the full file is run by
//! `ferric scenario run scenarios/fleet-1000-mixed.toml`.

use async_trait::async_trait;
use ferric_lab::scenario::seed::{self, SeedItem};
use ferric_lab::scenario::{RunOptions, Scenario};
use ferric_service::drivers::network::FlatNetwork;
use ferric_service::drivers::{DriverError, NetworkInterface, Task};
use ferric_types::trace::TraceEvent;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn load(name: &str) -> Scenario {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    Scenario::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn run(s: &Scenario, seed: Option<u64>) -> ferric_lab::scenario::run::Outcome {
    ferric_lab::scenario::run(s, &RunOptions { seed, ..Default::default() }).unwrap()
}

/// The 1,000-node file with every count divided by ten.
fn fleet_variant() -> Scenario {
    let text = std::fs::read_to_string(dir().join("fleet-1000-mixed.toml")).unwrap();
    let mut text = text;
    for (from, to) in [
        ("count = 1000", "count = 100"),
        ("count = 500", "count = 50"),
        ("count = 300", "count = 30"),
        ("\"0-499\"", "\"0-49\""),
        ("\"500-999\"", "\"50-99\""),
        ("active = 950", "active = 95"),
        ("\"deploy failed\" = 35", "\"deploy failed\" = 3"),
        ("\"deploy failed\" = 40", "\"deploy failed\" = 4"),
    ] {
        assert!(text.contains(from), "fleet-1000-mixed.toml no longer has {from:?}");
        text = text.replace(from, to);
    }
    Scenario::parse(&text).unwrap()
}

#[test]
fn every_library_scenario_passes() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 16, "the library has {} scenarios", files.len());
    let mut failed = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let s = if name == "fleet-1000-mixed.toml" { fleet_variant() } else { load(&name) };
        let out = run(&s, None);
        eprintln!(
            "{name}: {} in {:.0} s virtual, {:.2} s wall, trace-hash {}",
            if out.report.passed { "passed" } else { "FAILED" },
            out.report.virtual_secs,
            out.report.wall_secs,
            out.report.trace_hash
        );
        if !out.report.passed {
            failed.push(format!("{name}\n{}", out.report.table()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn same_seed_same_hash_other_seed_other_hash() {
    let s = load("fault-bmc-packet-loss.toml");
    let a = run(&s, Some(11));
    let b = run(&s, Some(11));
    let c = run(&s, Some(12));
    assert!(a.report.passed && c.report.passed);
    assert_eq!(a.report.trace_hash, b.report.trace_hash);
    assert_eq!(a.report.trace_events, b.report.trace_events);
    assert_ne!(a.report.trace_hash, c.report.trace_hash);
}

/// A virtual media deploy over Redfish: one seed, one hash; the recorded deploy boots the ISO
/// from the virtual CD in place of DHCP and PXE.
#[test]
fn redfish_virtual_media_deploy_is_deterministic_and_needs_no_pxe() {
    let s = load("redfish-virtual-media.toml");
    let a = run(&s, Some(5));
    let b = run(&s, Some(5));
    assert!(a.report.passed, "{}", a.report.table());
    assert_eq!(a.report.trace_hash, b.report.trace_hash);
    let (_, events) = a.deploy.expect("a deploy was recorded");
    let labels: Vec<&str> = events.iter().map(|e| e.label.as_str()).collect();
    assert!(labels.contains(&"Get deploy ISO (virtual media)"), "{labels:#?}");
    use ferric_service::drivers::redfish_boot::{PREPARE_VMEDIA_DEPLOY, SET_VMEDIA_BOOT};
    assert!(labels.contains(&PREPARE_VMEDIA_DEPLOY) && labels.contains(&SET_VMEDIA_BOOT), "{labels:#?}");
    assert!(!labels.contains(&ferric_types::trace::seed::UPDATE_DHCP), "{labels:#?}");
    assert!(!labels.contains(&ferric_types::trace::seed::DHCP_REQUEST), "{labels:#?}");
    let (lookup, active) = (ferric_types::trace::seed::LOOKUP, ferric_types::trace::seed::MARK_ACTIVE);
    assert!(labels.contains(&lookup) && labels.contains(&active), "{labels:#?}");
}

/// A UEFI HTTP boot deploy over Redfish: the firmware fetches the deploy ISO from the System's
/// `HttpBootUri`; no virtual media, no DHCP boot options.
#[test]
fn redfish_https_deploy_boots_the_iso_by_uefi_http_boot() {
    let out = run(&load("redfish-https.toml"), None);
    assert!(out.report.passed, "{}", out.report.table());
    let (_, events) = out.deploy.expect("a deploy was recorded");
    let labels: Vec<&str> = events.iter().map(|e| e.label.as_str()).collect();
    assert!(labels.contains(&"Get deploy ISO (UEFI HTTP boot)"), "{labels:#?}");
    assert!(!labels.contains(&"Get deploy ISO (virtual media)"), "{labels:#?}");
    use ferric_service::drivers::redfish_boot::{PREPARE_HTTPS_DEPLOY, SET_HTTPS_BOOT};
    assert!(labels.contains(&PREPARE_HTTPS_DEPLOY) && labels.contains(&SET_HTTPS_BOOT), "{labels:#?}");
    assert!(!labels.contains(&ferric_types::trace::seed::UPDATE_DHCP), "{labels:#?}");
    assert!(!labels.contains(&ferric_types::trace::seed::DHCP_REQUEST), "{labels:#?}");
    let (lookup, active) = (ferric_types::trace::seed::LOOKUP, ferric_types::trace::seed::MARK_ACTIVE);
    assert!(labels.contains(&lookup) && labels.contains(&active), "{labels:#?}");
}

fn deploy_of(file: &str) -> Vec<TraceEvent> {
    let out = run(&load(file), None);
    assert!(out.report.passed, "{}", out.report.table());
    let (_, events) = out.deploy.expect("a deploy was recorded");
    assert!(!events.is_empty());
    events
}

#[test]
fn direct_deploy_follows_the_guides_example_2() {
    let events = deploy_of("seed-example2-direct.toml");
    let guide = seed::parse(seed::EXAMPLE2_DIRECT);
    seed::compare(&guide, &events).unwrap();
    // ferric's own list of the diagram agrees with the guide's text.
    let own: Vec<TraceEvent> = as_events(&ferric_types::trace::seed::direct());
    seed::compare(&guide, &own).unwrap();
}

#[test]
fn iscsi_deploy_follows_the_guides_example_1() {
    let events = deploy_of("seed-example1-iscsi.toml");
    let guide = seed::parse(seed::EXAMPLE1_ISCSI);
    seed::compare(&guide, &events).unwrap();
    let own: Vec<TraceEvent> = as_events(&ferric_types::trace::seed::iscsi());
    seed::compare(&guide, &own).unwrap();
    // Every message of the guide's list was recorded, in the guide's order.
    let n = guide.iter().filter(|i| matches!(i, SeedItem::Message { .. })).count();
    assert!(events.len() >= n, "{} recorded, {n} in the guide", events.len());
}

fn as_events(list: &[ferric_types::trace::seed::Message]) -> Vec<TraceEvent> {
    list.iter()
        .map(|(from, to, label)| TraceEvent {
            at_ms: 0,
            node: ferric_types::models::NodeId(uuid::Uuid::nil()),
            from: *from,
            to: *to,
            label: label.to_string(),
        })
        .collect()
}

#[test]
fn a_broken_expectation_exits_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(dir().join("seed-example2-direct.toml")).unwrap();
    let broken = text.replace("states = { active = 1 }", "states = { active = 1, \"deploy failed\" = 1 }");
    assert_ne!(broken, text);
    let path = tmp.path().join("broken.toml");
    std::fs::write(&path, broken).unwrap();
    let json = tmp.path().join("report.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferric"))
        .args(["scenario", "run"])
        .arg(&path)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL deploy failed = 1 (0)"), "{stdout}");
    assert!(stdout.contains("result: FAILED"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("trace-hash: ")), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    // The unmodified file passes: exit 0.
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_ferric"))
        .args(["scenario", "run"])
        .arg(dir().join("seed-example2-direct.toml"))
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    // A file that cannot run: exit 2.
    std::fs::write(&path, "name = \"x\"\n[fleet]\ncount = 0\n[[actions]]\nkind = \"enroll\"\n").unwrap();
    let bad =
        std::process::Command::new(env!("CARGO_BIN_EXE_ferric")).args(["scenario", "run"]).arg(&path).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// A flat network that forgets to take nodes off the provisioning network.
struct Leaky;

#[async_trait]
impl NetworkInterface for Leaky {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        FlatNetwork.validate(task)
    }
    async fn add_provisioning_network(&self, task: &mut Task) -> Result<(), DriverError> {
        FlatNetwork.add_provisioning_network(task).await
    }
    async fn remove_provisioning_network(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn configure_tenant_networks(&self, task: &mut Task) -> Result<(), DriverError> {
        FlatNetwork.configure_tenant_networks(task).await
    }
    async fn unconfigure_tenant_networks(&self, task: &mut Task) -> Result<(), DriverError> {
        FlatNetwork.unconfigure_tenant_networks(task).await
    }
    async fn add_cleaning_network(&self, task: &mut Task) -> Result<(), DriverError> {
        FlatNetwork.add_cleaning_network(task).await
    }
    async fn remove_cleaning_network(&self, task: &mut Task) -> Result<(), DriverError> {
        FlatNetwork.remove_cleaning_network(task).await
    }
}

#[test]
fn a_broken_invariant_fails_the_run() {
    let s = load("seed-example2-direct.toml");
    let customize: ferric_lab::sim::Customize = Arc::new(|p, _w| p.registry.register_network("flat", Arc::new(Leaky)));
    let out = ferric_lab::scenario::run(&s, &RunOptions { seed: None, customize: Some(customize) }).unwrap();
    assert!(!out.report.passed, "{}", out.report.table());
    let leak = out.report.invariants.iter().find(|c| c.name.contains("provisioning port")).unwrap();
    assert!(!leak.ok, "{}", out.report.table());
    // The expectations themselves held: only the invariant caught it.
    assert!(out.report.expectations.iter().all(|c| c.ok), "{}", out.report.table());
}
