//! Runs a scenario against a simulated lab on a paused clock: builds the fleet, schedules the
//! faults, performs the actions through the API as a client (Nova's role) would, waits for the
//! fleet to settle, then checks expectations and invariants.

use super::model::{ActionKind, ActionSpec, FaultKind, FaultSpec, NodeSel, Scenario};
use super::report::{ActionOutcome, Check, FaultOutcome, Report};
use crate::http::TowerHttp;
use crate::machine::node::{AgentStep, Os, Profile};
use crate::sim::{Customize, LabConfig, LabError, MachineSpec, SimLab, api_call};
use ferric_service::conductor::ConductorConfig;
use ferric_service::db::NodeFilter;
use ferric_service::images::DiskFormat;
use ferric_types::models::{NodeId, PowerState, ProvisionState};
use ferric_types::state_machine;
use ferric_types::trace::Actor;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How a run is done.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Extra service wiring (tests plug stand-in interfaces in here).
    pub customize: Option<Customize>,
}

/// Why a scenario could not run (an expectation failing is not an error: see [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] super::model::ScenarioError),
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// Longest a run may go on in virtual time when the scenario sets no limit.
const DEFAULT_LIMIT: Duration = Duration::from_secs(48 * 3600);
/// Longest the runner waits, once the nodes have settled, for machines to finish booting.
const MACHINE_SETTLE_SECS: f64 = 900.0;
/// Longest the runner waits at the end for the conductor's periodic tasks to release locks.
const QUIET_SECS: f64 = 300.0;
/// Retries of one API call that meets a busy conductor (503) or a locked node (409).
const API_RETRIES: u32 = 600;

/// A run's report and the recorded deploy of one node (for `--diagram`).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: Report,
    /// Machine name and its last deploy's messages (the diagram node, or the first deployed).
    pub deploy: Option<(String, Vec<ferric_types::trace::TraceEvent>)>,
    /// Nodes that ended in a failed state (at most [`MAX_FAILED_DIAGRAMS`]): name, state, last
    /// error and their recorded messages (for `--html`).
    pub failed: Vec<FailedNode>,
}

/// The most failed nodes whose messages an outcome keeps (each becomes a diagram in `--html`).
pub const MAX_FAILED_DIAGRAMS: usize = 20;

/// A node that ended in a failed state.
#[derive(Debug, Clone)]
pub struct FailedNode {
    pub name: String,
    pub state: String,
    pub last_error: Option<String>,
    pub events: Vec<ferric_types::trace::TraceEvent>,
}

/// Runs `scenario` on a fresh paused-clock runtime (one per run, so runs never share state).
pub fn run(scenario: &Scenario, opts: &RunOptions) -> Result<Outcome, RunError> {
    scenario.validate()?;
    let rt = crate::sim::sim_runtime().map_err(RunError::Runtime)?;
    rt.block_on(run_in_runtime(scenario, opts))
}

/// Runs `scenario` inside the current (paused, current-thread) runtime.
pub async fn run_in_runtime(scenario: &Scenario, opts: &RunOptions) -> Result<Outcome, RunError> {
    let wall = std::time::Instant::now();
    let seed = opts.seed.unwrap_or(scenario.seed);
    let mut runner = Runner::build(scenario, seed, opts).await?;
    let report = runner.run(wall).await;
    let which = scenario.sim.diagram_node.or_else(|| runner.deploy_windows.keys().next().copied());
    let deploy = which.map(|i| (format!("node-{i}"), runner.deploy_events(i)));
    let failed = runner.failed_nodes();
    runner.lab.shutdown();
    Ok(Outcome { report, deploy, failed })
}

/// A fault resolved to machines.
struct Fault {
    spec: FaultSpec,
    nodes: Vec<usize>,
    active: bool,
    /// Conductor faults: when it struck.
    fired_at: Option<f64>,
    /// Conductor pause: when the loop goes on (and whether it has).
    resume_at: Option<f64>,
    resumed: bool,
    /// Database outages: API answers 503 to the runner's probe while it lasted.
    api_503: u64,
}

/// A conductor lost to a crash or a long pause, and what must follow (see
/// [`super::invariants::cluster_checks`]).
pub struct Loss {
    pub host: String,
    pub at: f64,
    /// By when every node of the lost conductor must be owned again.
    pub deadline: f64,
    /// Its nodes (machine index, node) when it was lost: prepared by it, or the ring's.
    pub nodes: Vec<(usize, NodeId)>,
    /// Those of them waiting for their agent then.
    pub waiting: Vec<usize>,
    /// Problems found at the deadline (None: not checked yet).
    pub owned: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Edge {
    On,
    Off,
}

struct Runner {
    s: Scenario,
    seed: u64,
    lab: SimLab,
    profiles: Vec<String>,
    node_ids: Vec<NodeId>,
    port_ids: Vec<Vec<String>>,
    vif_ids: Vec<String>,
    image_ids: BTreeMap<String, String>,
    faults: Vec<Fault>,
    /// (virtual secs, fault index, edge), in time order.
    timeline: Vec<(f64, usize, Edge)>,
    next_event: usize,
    start: Instant,
    limit: Duration,
    actions: Vec<ActionOutcome>,
    /// Virtual window of each machine's last deploy (for the diagram).
    deploy_windows: BTreeMap<usize, (u64, u64)>,
    enrolled: Vec<bool>,
    /// The last action on machine i was a power action (see [`super::invariants::check`]).
    powered: Vec<bool>,
    /// Conductors lost to conductor faults.
    losses: Vec<Loss>,
    /// Moments one conductor worked on a node whose lock another held (see [`Runner::check_acting`]).
    double_acts: Vec<String>,
}

fn uuid_from(rng: &mut StdRng) -> uuid::Uuid {
    let b: [u8; 16] = rng.random();
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// Ironic's conductor defaults as the simulation runs them, with the scenario's overrides.
fn conductor_config(over: &BTreeMap<String, toml::Value>) -> Result<ConductorConfig, super::model::ScenarioError> {
    let bad = |m: String| super::model::ScenarioError::Invalid(m);
    let base = crate::sim::sim_conductor_config();
    let mut table = match toml::Value::try_from(&base) {
        Ok(toml::Value::Table(t)) => t,
        _ => return Err(bad("conductor defaults".into())),
    };
    for (k, v) in over {
        if !table.contains_key(k) {
            return Err(bad(format!("unknown conductor option {k:?}")));
        }
        table.insert(k.clone(), v.clone());
    }
    let c: ConductorConfig =
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| bad(format!("conductor: {e}")))?;
    if c.workers == 0 || c.workers > 100_000 {
        return Err(bad("conductor.workers must be 1..=100000".into()));
    }
    Ok(c)
}

fn profiles_of(s: &Scenario) -> Vec<Arc<Profile>> {
    let n = s.fleet.count;
    let specs = &s.fleet.profiles;
    if specs.is_empty() {
        // One profile shared by every machine.
        let p = Arc::new(Profile::default());
        return (0..n).map(|_| p.clone()).collect();
    }
    let to_profile = |p: &super::model::ProfileSpec| {
        let d = Profile::default();
        Arc::new(Profile {
            name: p.name.clone(),
            cpus: p.cpus.unwrap_or(d.cpus),
            memory_mb: p.memory_mb.unwrap_or(d.memory_mb),
            disk_gib: p.disk_gib.unwrap_or(d.disk_gib),
            nics: p.nics.unwrap_or(d.nics).clamp(1, 8),
            firmware: p.firmware.unwrap_or(d.firmware),
            boot_order: p.boot_order.clone().unwrap_or(d.boot_order),
            timings: p.timings.clone().unwrap_or_default(),
            bmc: p.bmc.unwrap_or_default(),
            boot_interface: p.boot_interface.clone(),
        })
    };
    let built: Vec<Arc<Profile>> = specs.iter().map(to_profile).collect();
    let counted: usize = specs.iter().filter_map(|p| p.count).sum();
    let uncounted: Vec<usize> = (0..specs.len()).filter(|i| specs[*i].count.is_none()).collect();
    let mut out = Vec::with_capacity(n);
    for (i, p) in specs.iter().enumerate() {
        for _ in 0..p.count.unwrap_or(0) {
            out.push(built[i].clone());
        }
    }
    // The rest, round-robin over profiles without a count (or the last profile).
    let rest = n.saturating_sub(counted);
    for k in 0..rest {
        let i = if uncounted.is_empty() { specs.len() - 1 } else { uncounted[k % uncounted.len()] };
        out.push(built[i].clone());
    }
    out.truncate(n);
    out
}

impl Runner {
    async fn build(s: &Scenario, seed: u64, opts: &RunOptions) -> Result<Runner, RunError> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5ce7_a210_0000_0001);
        let n = s.fleet.count;
        let profiles = profiles_of(s);
        let names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        let node_ids: Vec<NodeId> = (0..n).map(|_| NodeId(uuid_from(&mut rng))).collect();
        let port_ids: Vec<Vec<String>> =
            profiles.iter().map(|p| (0..p.nics.max(1)).map(|_| uuid_from(&mut rng).to_string()).collect()).collect();
        let vif_ids: Vec<String> = (0..n).map(|_| uuid_from(&mut rng).to_string()).collect();
        let mut faults = Vec::new();
        for f in &s.faults {
            // The machines named by `nodes` (default all), then a seeded pick among them when a
            // `fraction` or `count` is given.
            let base = match &f.nodes {
                Some(sel) => NodeSel::parse(sel).map_err(super::model::ScenarioError::Invalid)?.resolve(n, &names),
                None => (0..n).collect::<Vec<usize>>(),
            };
            let nodes = if f.fraction.is_some() || f.count.is_some() {
                let m = base.len();
                let k = f.count.unwrap_or_else(|| (f.fraction.unwrap_or(0.0) * m as f64).round() as usize).min(m);
                // A seeded partial Fisher-Yates pick.
                let mut idx = base;
                for i in 0..k {
                    let j = rng.random_range(i..m);
                    idx.swap(i, j);
                }
                let mut v = idx[..k].to_vec();
                v.sort_unstable();
                v
            } else {
                base
            };
            faults.push(Fault {
                spec: f.clone(),
                nodes,
                active: false,
                fired_at: None,
                resume_at: None,
                resumed: false,
                api_503: 0,
            });
        }
        let mut timeline = Vec::new();
        for (i, f) in faults.iter().enumerate() {
            if start_of(&f.spec) == Start::Time {
                timeline.push((f.spec.from_secs.unwrap_or(0.0).max(0.0), i, Edge::On));
            }
            if let Some(u) = f.spec.until_secs {
                timeline.push((u.max(0.0), i, Edge::Off));
            }
        }
        timeline.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

        let conductor = conductor_config(&s.conductor)?;
        let machines = profiles
            .iter()
            .map(|p| MachineSpec { profile: p.clone(), faults: s.fleet.bmc, redfish: s.fleet.redfish })
            .collect();
        let mut customize = super::wiring::default_customize(&s.sim.boot_interface);
        if let Some(extra) = opts.customize.clone() {
            let base = customize.clone();
            customize = Arc::new(move |p, w| {
                base(p, w);
                extra(p, w);
            });
        }
        let lab_config = LabConfig {
            seed: seed ^ 0x1ab0_0000_0000_0002,
            machines,
            byte_scale: s.sim.byte_scale,
            conductor,
            ipmi: s.ipmi.clone(),
            assume_ramdisk: super::wiring::assume_ramdisk(&s.sim.boot_interface),
            real_boot: super::wiring::real_boot(&s.sim.boot_interface),
            trace_capacity: s.sim.trace_capacity,
            customize: Some(customize),
            conductors: s.sim.conductors,
            ..LabConfig::default()
        };
        let lab = SimLab::build(lab_config).await?;
        if n > 64 {
            // Keep full events for a few nodes only; the hash still covers every event.
            let mut keep: Vec<NodeId> = node_ids.iter().take(16).copied().collect();
            if let Some(d) = s.sim.diagram_node.and_then(|d| node_ids.get(d)) {
                keep.push(*d);
            }
            lab.trace.keep_only(keep);
        }
        let mut image_ids = BTreeMap::new();
        for img in &s.images {
            let id = uuid_from(&mut rng).to_string();
            let content_seed: u64 = rng.random();
            lab.add_image(&img.name, &id, img.size_mb << 20, DiskFormat::Raw, content_seed).await?;
            image_ids.insert(img.name.clone(), id);
        }
        let limit =
            s.expect.max_virtual_secs.map(|m| Duration::from_secs_f64((m * 1.5).max(60.0))).unwrap_or(DEFAULT_LIMIT);
        Ok(Runner {
            s: s.clone(),
            seed,
            lab,
            profiles: names,
            node_ids,
            port_ids,
            vif_ids,
            image_ids,
            faults,
            timeline,
            next_event: 0,
            start: Instant::now(),
            limit,
            actions: Vec::new(),
            deploy_windows: BTreeMap::new(),
            enrolled: vec![false; n],
            powered: vec![false; n],
            losses: Vec::new(),
            double_acts: Vec::new(),
        })
    }

    fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn over_limit(&self) -> bool {
        self.start.elapsed() > self.limit
    }

    /// Turns a fault on or off on its machines.
    fn apply(&mut self, i: usize, edge: Edge) -> Result<(), RunError> {
        let on = edge == Edge::On;
        let kind = self.faults[i].spec.kind;
        if kind.is_conductor() {
            let c = self.faults[i].spec.conductor.unwrap_or(0);
            let now = self.elapsed();
            if on && self.faults[i].fired_at.is_none() {
                tracing::info!(at = now, kind = kind.as_str(), conductor = c, "conductor fault injected");
                self.faults[i].fired_at = Some(now);
                match kind {
                    FaultKind::ConductorCrash => {
                        self.note_loss(c, now);
                        self.lab.crash_member(c)?;
                    }
                    FaultKind::ConductorPause => {
                        let d = self.faults[i].spec.for_secs;
                        let until = d.map(|d| now + d).or(self.faults[i].spec.until_secs);
                        let timeout = self.lab.config.conductor.heartbeat_timeout as f64;
                        // Silent longer than the timeout: its peers must take its nodes over.
                        if until.is_none_or(|u| u - now > timeout) {
                            self.note_loss(c, now);
                        }
                        self.faults[i].resume_at = d.map(|d| now + d);
                        self.lab.pause_member(c)?;
                    }
                    FaultKind::DbCutOff => {
                        let d = self.faults[i].spec.for_secs;
                        let until = d.map(|d| now + d).or(self.faults[i].spec.until_secs);
                        let timeout = self.lab.config.conductor.heartbeat_timeout as f64;
                        // Cut off longer than the timeout: its peers must take its nodes over.
                        if until.is_none_or(|u| u - now > timeout) && !self.lab.members.is_empty() {
                            self.note_loss(c, now);
                        }
                        self.faults[i].resume_at = d.map(|d| now + d);
                        self.lab.cut_off_member(c, true)?;
                    }
                    FaultKind::DbRestart => {
                        self.faults[i].resume_at = self.faults[i].spec.for_secs.map(|d| now + d);
                        self.lab.set_db_down(true);
                    }
                    _ if self.lab.members.is_empty() => self.lab.restart_conductor()?,
                    _ => self.lab.restart_member(c)?,
                }
            } else if !on && kind.has_end() && self.faults[i].fired_at.is_some() && !self.faults[i].resumed {
                tracing::info!(at = now, kind = kind.as_str(), conductor = c, "conductor fault ends");
                self.faults[i].resumed = true;
                match kind {
                    FaultKind::ConductorPause => self.lab.resume_member(c)?,
                    FaultKind::DbCutOff => self.lab.cut_off_member(c, false)?,
                    _ => self.lab.set_db_down(false),
                }
            }
            return Ok(());
        }
        let f = &self.faults[i];
        let rate = f.spec.rate;
        let base = self.s.fleet.bmc;
        for &m in &f.nodes {
            let Some(node) = self.lab.nodes.get(m) else { continue };
            let bf = node.bmc.faults();
            match kind {
                FaultKind::BmcPacketLoss => bf.set_drop_rate(if on { rate.unwrap_or(0.3) } else { base.drop_rate }),
                FaultKind::BmcUnresponsive => bf.set_unresponsive(on || base.unresponsive),
                FaultKind::PowerOnIgnored => bf.set_ignore_power(on || base.ignore_power),
                FaultKind::BmcBusy => bf.set_busy(on || base.busy),
                FaultKind::AgentCrash => {
                    *node.faults.crash_at.lock() =
                        if on { f.spec.step.as_deref().and_then(AgentStep::parse) } else { None };
                }
                FaultKind::HeartbeatsLost => {
                    node.faults.heartbeats_lost.store(on, std::sync::atomic::Ordering::Relaxed)
                }
                FaultKind::ImageCorrupted => node.faults.image_corrupt.store(on, std::sync::atomic::Ordering::Relaxed),
                FaultKind::ImageServerDown => {
                    node.faults.image_server_down.store(on, std::sync::atomic::Ordering::Relaxed)
                }
                FaultKind::DhcpLost => node.faults.set_dhcp_loss(if on { rate.unwrap_or(1.0) } else { 0.0 }),
                FaultKind::DiskWriteError => {
                    if on {
                        node.disk.fail_writes_after(0)
                    } else {
                        node.disk.heal()
                    }
                }
                FaultKind::Redfish => {
                    if let Some(rf) = &node.redfish {
                        let knobs = if on { f.spec.redfish.unwrap_or_default() } else { self.s.fleet.redfish };
                        rf.faults().apply(knobs);
                    }
                }
                FaultKind::ConductorRestart
                | FaultKind::ConductorCrash
                | FaultKind::ConductorPause
                | FaultKind::DbCutOff
                | FaultKind::DbRestart => {}
            }
        }
        self.faults[i].active = on;
        Ok(())
    }

    /// Applies the faults due by now, and state-triggered conductor restarts.
    fn tick_faults(&mut self) -> Result<(), RunError> {
        let now = self.elapsed();
        while let Some(&(t, i, edge)) = self.timeline.get(self.next_event) {
            if t > now {
                break;
            }
            self.next_event += 1;
            self.apply(i, edge)?;
        }
        for i in 0..self.faults.len() {
            let f = &self.faults[i];
            if f.resume_at.is_some_and(|t| t <= now) && !f.resumed {
                self.apply(i, Edge::Off)?;
                continue;
            }
            if start_of(&f.spec) != Start::State || f.fired_at.is_some() {
                continue;
            }
            let when: ProvisionState =
                f.spec.when.as_deref().unwrap_or("wait call-back").parse().unwrap_or(ProvisionState::DeployWait);
            let ids = self
                .lab
                .db
                .node_ids(&NodeFilter { provision_states: Some(vec![when]), ..Default::default() })
                .unwrap_or_default();
            let selected: HashSet<NodeId> = f.nodes.iter().filter_map(|m| self.node_ids.get(*m).copied()).collect();
            if ids.iter().any(|id| selected.contains(id)) {
                self.apply(i, Edge::On)?;
                // Machine faults fire once too (conductor faults note it as they strike).
                self.faults[i].fired_at.get_or_insert(now);
            }
        }
        self.check_losses();
        Ok(())
    }

    /// Faults that start once an action of this kind has finished (`after`; its first one).
    fn after_action(&mut self, kind: ActionKind) -> Result<(), RunError> {
        let now = self.elapsed();
        for i in 0..self.faults.len() {
            if self.faults[i].spec.after == Some(kind) && self.faults[i].fired_at.is_none() {
                self.apply(i, Edge::On)?;
                self.faults[i].fired_at.get_or_insert(now);
            }
        }
        Ok(())
    }

    /// Records what conductor `c` holds as it is lost (see [`holder`]).
    fn note_loss(&mut self, c: usize, now: f64) {
        let Some(m) = self.lab.members.get(c) else { return };
        let host = m.host().to_string();
        let rings = m.service.conductor.rings();
        let (timeout, interval) =
            (self.lab.config.conductor.heartbeat_timeout, self.lab.config.conductor.heartbeat_interval);
        let mut nodes = Vec::new();
        let mut waiting = Vec::new();
        for (i, id) in self.node_ids.iter().enumerate() {
            if !self.enrolled[i] {
                continue;
            }
            let Ok(r) = self.lab.db.get_node_by_uuid(*id) else { continue };
            if holder(&r, Some(&rings)).as_deref() != Some(host.as_str()) {
                continue;
            }
            nodes.push((i, *id));
            if matches!(r.provision_state, ProvisionState::DeployWait | ProvisionState::CleanWait) {
                waiting.push(i);
            }
        }
        let deadline = now + (timeout + 2 * interval) as f64;
        tracing::info!(%host, nodes = nodes.len(), waiting = waiting.len(), deadline, "conductor lost");
        self.losses.push(Loss { host, at: now, deadline, nodes, waiting, owned: None });
    }

    /// At each loss's deadline: every node it held is a live conductor's again (its
    /// `conductor_affinity`, or for a node never prepared, the ring's owner).
    fn check_losses(&mut self) {
        let now = self.elapsed();
        if !self.losses.iter().any(|l| l.owned.is_none() && l.deadline <= now) {
            return;
        }
        let live = self.lab.live_hosts();
        let rings = self
            .lab
            .members
            .iter()
            .find(|m| m.status == crate::sim::ConductorStatus::Running)
            .map(|m| m.service.conductor.rings());
        for l in self.losses.iter_mut().filter(|l| l.owned.is_none() && l.deadline <= now) {
            let mut bad = Vec::new();
            for &(i, id) in &l.nodes {
                let Ok(r) = self.lab.db.get_node_by_uuid(id) else { continue };
                let owner = holder(&r, rings.as_deref());
                // Who holds the node now is part of the run: the trace hash covers it.
                let label = format!("{} lost: owned by {}", l.host, owner.as_deref().unwrap_or("nobody"));
                self.lab.trace.record(id, Actor::Conductor, Actor::Conductor, label);
                if !owner.as_ref().is_some_and(|o| live.contains(o)) {
                    bad.push(format!(
                        "node-{i}: {} ({})",
                        owner.unwrap_or_else(|| "no owner".into()),
                        r.provision_state
                    ));
                }
            }
            l.owned = Some(bad);
        }
    }

    /// Sleeps one poll interval (shorter while a state-triggered restart is pending), applying
    /// faults that fall due.
    async fn step(&mut self) -> Result<(), RunError> {
        let pending_restart = self
            .faults
            .iter()
            .any(|f| f.spec.kind.is_conductor() && f.fired_at.is_none() && start_of(&f.spec) == Start::State);
        let mut d = Duration::from_secs(if pending_restart { 1 } else { self.s.sim.poll_secs });
        if let Some(&(t, _, _)) = self.timeline.get(self.next_event) {
            let until = Duration::from_secs_f64((t - self.elapsed()).max(0.0));
            d = d.min(until.max(Duration::from_millis(1)));
        }
        // Pauses that end and losses checked at their deadline, on time.
        let due = self.faults.iter().filter(|f| !f.resumed).filter_map(|f| f.resume_at);
        let due = due.chain(self.losses.iter().filter(|l| l.owned.is_none()).map(|l| l.deadline));
        for t in due {
            let until = Duration::from_secs_f64((t - self.elapsed()).max(0.0));
            d = d.min(until.max(Duration::from_millis(1)));
        }
        tokio::time::sleep(d).await;
        self.tick_faults()?;
        self.probe_outages().await;
        self.check_acting();
        Ok(())
    }

    /// Never two conductors acting on one node: no conductor runs a task on a node (holds it
    /// in memory) while the database says another conductor holds its lock, as happens when a
    /// conductor its peers consider lost goes on working. Sampled at every step.
    fn check_acting(&mut self) {
        if self.double_acts.len() >= 20 {
            return;
        }
        let now = self.elapsed();
        for m in self.lab.members.iter().filter(|m| m.status != crate::sim::ConductorStatus::Crashed) {
            let host = m.host();
            let mut held = m.service.conductor.held_nodes();
            held.sort();
            for id in held {
                if let Ok(Some(r)) = self.lab.db.reservation(id)
                    && r != host
                {
                    let i = self.node_ids.iter().position(|n| *n == id).unwrap_or(usize::MAX);
                    self.double_acts
                        .push(format!("node-{i}: {host} works on it while {r} holds its lock ({now:.0} s)"));
                }
            }
        }
    }

    /// While the database is down, asks the API for a node list once per poll, as a client
    /// would: it must answer 503 (counted as the outage's evidence).
    async fn probe_outages(&mut self) {
        let down = |f: &Fault| f.spec.kind == FaultKind::DbRestart && f.fired_at.is_some() && !f.resumed;
        if !self.faults.iter().any(down) {
            return;
        }
        let r = crate::sim::api_call(&self.lab.net.http, http::Method::GET, "/v1/nodes?limit=1", None).await;
        if matches!(r, Err(LabError::Api { status: 503, .. })) {
            for f in self.faults.iter_mut().filter(|f| down(f)) {
                f.api_503 += 1;
            }
        }
    }

    /// Whether none of `nodes` is mid-operation: in a transient provision state or, with
    /// `locks` (power actions, which change no provision state), locked. Locks are not looked at
    /// otherwise: the power-sync task takes them one node after another all the time, and on a
    /// large fleet some node is always locked by it.
    fn settled(&self, nodes: &HashSet<NodeId>, locks: bool) -> bool {
        let transient: Vec<ProvisionState> = ProvisionState::ALL
            .iter()
            .copied()
            .filter(|s| !state_machine::is_stable(*s) && !state_machine::is_failure(*s))
            .collect();
        let busy = self.lab.db.node_ids(&NodeFilter { provision_states: Some(transient), ..Default::default() });
        let reserved = if locks {
            self.lab.db.node_ids(&NodeFilter { reserved: Some(true), ..Default::default() })
        } else {
            Ok(Vec::new())
        };
        match (busy, reserved) {
            (Ok(b), Ok(r)) => !b.iter().chain(r.iter()).any(|id| nodes.contains(id)),
            _ => false,
        }
    }

    async fn run(&mut self, wall: std::time::Instant) -> Report {
        let mut errors = Vec::new();
        if let Err(e) = self.tick_faults() {
            errors.push(e.to_string());
        }
        let actions = self.s.actions.clone();
        for a in &actions {
            if self.over_limit() {
                errors.push(format!("virtual time limit reached before action {}", a.kind.as_str()));
                break;
            }
            match self.action(a).await {
                Ok(o) => self.actions.push(o),
                Err(e) => errors.push(format!("action {}: {e}", a.kind.as_str())),
            }
            if let Err(e) = self.after_action(a.kind) {
                errors.push(e.to_string());
            }
        }
        // Everything settles before the checks.
        let all: HashSet<NodeId> = self.node_ids.iter().copied().collect();
        while (!self.settled(&all, false) || self.losses.iter().any(|l| l.owned.is_none())) && !self.over_limit() {
            if let Err(e) = self.step().await {
                errors.push(e.to_string());
                break;
            }
        }
        // Machines still in their firmware (POST, a disk boot on its way to the instance) get
        // to finish booting, within a bound.
        let boot_deadline = self.elapsed() + MACHINE_SETTLE_SECS;
        while self.lab.nodes.iter().any(|m| m.os() == Os::Firmware)
            && self.elapsed() < boot_deadline
            && !self.over_limit()
        {
            if let Err(e) = self.step().await {
                errors.push(e.to_string());
                break;
            }
        }
        // A power action that failed (a BMC that stopped answering) leaves the recorded power
        // state behind the machine's until the power-sync task catches up: give it a few rounds.
        let sync = self.lab.service.config.conductor.sync_power_state_interval.max(1) as f64;
        let sync_deadline = self.elapsed() + 3.0 * sync + 30.0;
        while !super::invariants::power_mismatches(&self.lab, &self.records()).is_empty()
            && self.elapsed() < sync_deadline
            && !self.over_limit()
        {
            if let Err(e) = self.step().await {
                errors.push(e.to_string());
                break;
            }
        }
        // A conductor lost late: its peers get until the deadline to take its nodes over.
        while self.losses.iter().any(|l| l.owned.is_none()) && !self.over_limit() {
            if let Err(e) = self.step().await {
                errors.push(e.to_string());
                break;
            }
        }
        // The run ends: the periodic tasks stop (a power sync in progress releases its lock) and
        // the checks look at a quiet conductor, once work in flight has released its locks.
        self.lab.stop_periodic();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let quiet_deadline = self.elapsed() + QUIET_SECS;
        while self.lab.db.count_reserved().unwrap_or(0) > 0 && self.elapsed() < quiet_deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.lab.wait_idle().await;
        let virtual_secs = self.elapsed();
        self.report(virtual_secs, wall.elapsed().as_secs_f64(), errors)
    }

    /// Performs one action on its machines, then (unless `wait = false`) waits for them.
    async fn action(&mut self, a: &ActionSpec) -> Result<ActionOutcome, RunError> {
        let t0 = self.elapsed();
        let n = self.s.fleet.count;
        let sel = match &a.nodes {
            Some(s) => NodeSel::parse(s).map_err(super::model::ScenarioError::Invalid)?.resolve(n, &self.profiles),
            None => (0..n).collect(),
        };
        let mut outcome = ActionOutcome { kind: a.kind.as_str().into(), nodes: sel.len(), ..Default::default() };
        if a.kind == ActionKind::Wait {
            let until = self.elapsed() + a.secs.unwrap_or(0.0);
            while self.elapsed() < until && !self.over_limit() {
                let left = Duration::from_secs_f64((until - self.elapsed()).max(0.0));
                let d = left.min(Duration::from_secs(self.s.sim.poll_secs));
                tokio::time::sleep(d.max(Duration::from_millis(1))).await;
                self.tick_faults()?;
            }
            outcome.virtual_secs = self.elapsed() - t0;
            return Ok(outcome);
        }
        if a.kind == ActionKind::Enroll {
            for &i in &sel {
                if self.enrolled[i] {
                    continue;
                }
                let boot = self.lab.nodes[i]
                    .profile
                    .boot_interface
                    .as_deref()
                    .unwrap_or_else(|| super::wiring::boot_interface_name(&self.s.sim.boot_interface));
                let extra = json!({
                    "boot_interface": boot,
                    "network_interface": self.s.sim.network_interface,
                });
                match self.lab.enroll(i, self.node_ids[i], &self.port_ids[i], &extra).await {
                    Ok(()) => self.enrolled[i] = true,
                    Err(e) => push_err(&mut outcome.errors, format!("node-{i}: {e}")),
                }
            }
            outcome.virtual_secs = self.elapsed() - t0;
            return Ok(outcome);
        }
        // Submit per machine, concurrently, each retrying a busy conductor or a locked node; at
        // most a quarter as many clients at once as the conductor has workers (as a bounded
        // client pool would). The workers also serve the nodes' own callbacks, so a pool as large
        // as theirs mostly kept retrying 503s: at 10,000 nodes it made 49,000 retries, this one
        // 12,000, and the fleet settles in the same virtual time.
        let clients = (self.lab.service.config.conductor.workers / 4).max(1);
        let gate = Arc::new(tokio::sync::Semaphore::new(clients));
        let mut set = tokio::task::JoinSet::new();
        for &i in &sel {
            if !self.enrolled[i] {
                continue;
            }
            let calls = self.calls_for(a, i)?;
            let http = self.lab.net.http.clone();
            let gate = gate.clone();
            set.spawn(async move {
                let _permit = gate.acquire_owned().await;
                (i, submit(&http, calls).await)
            });
            if matches!(a.kind, ActionKind::Deploy | ActionKind::Rebuild) {
                let now = self.start.elapsed().as_millis() as u64;
                self.deploy_windows.insert(i, (now, u64::MAX));
            }
        }
        let targets: HashSet<NodeId> = sel.iter().filter_map(|i| self.node_ids.get(*i).copied()).collect();
        loop {
            while let Some(r) = set.try_join_next() {
                if let Ok((i, (retries, err))) = r {
                    outcome.retries += retries;
                    match err {
                        Some(e) => push_err(&mut outcome.errors, format!("node-{i}: {e}")),
                        // Accepted: it is now the node's last action.
                        None => {
                            if let Some(p) = self.powered.get_mut(i) {
                                *p = a.kind == ActionKind::Power;
                            }
                        }
                    }
                }
            }
            if set.is_empty() && (!a.wait || self.settled(&targets, a.kind == ActionKind::Power)) {
                break;
            }
            if self.over_limit() {
                push_err(&mut outcome.errors, "virtual time limit reached while waiting".into());
                set.abort_all();
                break;
            }
            self.step().await?;
        }
        if matches!(a.kind, ActionKind::Deploy | ActionKind::Rebuild) {
            let now = self.start.elapsed().as_millis() as u64;
            for &i in &sel {
                if let Some(w) = self.deploy_windows.get_mut(&i) {
                    w.1 = now;
                }
            }
        }
        outcome.virtual_secs = self.elapsed() - t0;
        Ok(outcome)
    }

    /// The API calls of an action for machine `i`, as a client makes them.
    fn calls_for(&self, a: &ActionSpec, i: usize) -> Result<Vec<Call>, RunError> {
        let id = self.node_ids[i];
        let prov = format!("/v1/nodes/{id}/states/provision");
        let put = |target: &str| Call::new(http::Method::PUT, &prov, Some(json!({"target": target})));
        Ok(match a.kind {
            ActionKind::Manage => vec![put("manage")],
            ActionKind::Clean => {
                let steps = serde_json::to_value(a.clean_steps.clone().unwrap_or_default())
                    .map_err(|e| super::model::ScenarioError::Invalid(format!("clean_steps: {e}")))?;
                vec![Call::new(http::Method::PUT, &prov, Some(json!({"target": "clean", "clean_steps": steps})))]
            }
            ActionKind::Provide => vec![put("provide")],
            ActionKind::Undeploy => vec![
                put("deleted"),
                Call::new(http::Method::DELETE, &format!("/v1/nodes/{id}/vifs/{}", self.vif_ids[i]), None)
                    .tolerate(&[400, 404]),
            ],
            ActionKind::Power => {
                let target = match a.target.as_deref().unwrap_or("on") {
                    "on" | "power on" => "power on",
                    "off" | "power off" => "power off",
                    "reboot" | "rebooting" => "rebooting",
                    "soft off" => "soft power off",
                    _ => "soft rebooting",
                };
                vec![Call::new(
                    http::Method::PUT,
                    &format!("/v1/nodes/{id}/states/power"),
                    Some(json!({"target": target})),
                )]
            }
            ActionKind::Deploy | ActionKind::Rebuild => {
                let mut patch = vec![json!({"op": "add", "path": "/instance_info/root_gb", "value": 10})];
                if let Some(img) = a.image.as_ref().and_then(|n| self.image_ids.get(n)) {
                    patch.push(json!({"op": "add", "path": "/instance_info/image_source", "value": img}));
                }
                if a.kind == ActionKind::Deploy {
                    let iface = a.interface.as_deref().unwrap_or("direct");
                    patch.push(json!({"op": "replace", "path": "/deploy_interface", "value": iface}));
                    patch.push(
                        json!({"op": "add", "path": "/instance_uuid", "value": uuid_like(&self.vif_ids[i], self.seed)}),
                    );
                }
                let mut target = json!({"target": if a.kind == ActionKind::Deploy { "active" } else { "rebuild" }});
                if let Some(cd) = &a.configdrive {
                    target["configdrive"] = json!(cd);
                }
                let mut calls = vec![
                    Call::new(http::Method::PATCH, &format!("/v1/nodes/{id}"), Some(Value::Array(patch))),
                    Call::new(http::Method::GET, &format!("/v1/nodes/{id}/validate"), None),
                ];
                if a.kind == ActionKind::Deploy {
                    calls.push(
                        Call::new(
                            http::Method::POST,
                            &format!("/v1/nodes/{id}/vifs"),
                            Some(json!({"id": self.vif_ids[i]})),
                        )
                        .tolerate(&[409]),
                    );
                }
                calls.push(Call::new(http::Method::PUT, &prov, Some(target)));
                calls
            }
            ActionKind::Enroll | ActionKind::Wait => Vec::new(),
        })
    }

    fn report(&self, virtual_secs: f64, wall_secs: f64, errors: Vec<String>) -> Report {
        let lab = &self.lab;
        let summaries = lab.db.list_node_summaries(&Default::default()).unwrap_or_default();
        let mut states: BTreeMap<String, usize> = BTreeMap::new();
        for s in &summaries {
            *states.entry(s.provision_state.to_string()).or_default() += 1;
        }
        let records = self.records();
        let mut invariants = super::invariants::check(lab, &records, &self.powered);
        if !lab.members.is_empty() {
            invariants.extend(super::invariants::cluster_checks(lab, &records, &self.losses, &self.double_acts));
        }
        let mut expectations = Vec::new();
        let e = &self.s.expect;
        if let Some(m) = e.max_virtual_secs {
            expectations.push(Check::new(
                format!("virtual time <= {m} s"),
                virtual_secs <= m,
                format!("{virtual_secs:.1} s"),
            ));
        }
        for (state, want) in &e.states {
            let got = states.get(state).copied().unwrap_or(0);
            expectations.push(Check::new(format!("{state} = {want}"), got == *want, format!("{got}")));
        }
        for (state, want) in &e.min_states {
            let got = states.get(state).copied().unwrap_or(0);
            expectations.push(Check::new(format!("{state} >= {want}"), got >= *want, format!("{got}")));
        }
        for (state, want) in &e.max_states {
            let got = states.get(state).copied().unwrap_or(0);
            expectations.push(Check::new(format!("{state} <= {want}"), got <= *want, format!("{got}")));
        }
        let n = self.s.fleet.count;
        for ne in &e.nodes {
            let sel = NodeSel::parse(&ne.nodes).map(|s| s.resolve(n, &self.profiles)).unwrap_or_default();
            let mut bad = Vec::new();
            for &i in &sel {
                let rec = records.get(i).and_then(|r| r.as_ref());
                let Some(r) = rec else {
                    bad.push(format!("node-{i}: not enrolled"));
                    continue;
                };
                if let Some(s) = &ne.state
                    && r.provision_state.as_str() != s
                {
                    bad.push(format!("node-{i}: {}", r.provision_state));
                }
                if let Some(t) = &ne.last_error_contains
                    && !r.last_error.as_deref().unwrap_or("").contains(t.as_str())
                {
                    bad.push(format!("node-{i}: last_error {:?}", r.last_error));
                }
                if let Some(p) = &ne.power
                    && r.power_state.map(|p| p.as_str()) != Some(p.as_str())
                {
                    bad.push(format!("node-{i}: power {:?}", r.power_state.map(|p| p.as_str())));
                }
            }
            let what = [
                ne.state.clone().map(|s| format!("state {s}")),
                ne.last_error_contains.clone().map(|s| format!("last_error ~ {s:?}")),
                ne.power.clone().map(|s| format!("power {s}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            expectations.push(Check::new(format!("nodes {}: {what}", ne.nodes), bad.is_empty(), summarize(&bad)));
        }
        if let Some(run) = &e.running {
            let sel = NodeSel::parse(&run.nodes).map(|s| s.resolve(n, &self.profiles)).unwrap_or_default();
            let bad: Vec<String> = sel
                .iter()
                .filter_map(|&i| {
                    let os = lab.nodes.get(i).map(|m| m.os());
                    (os != Some(Os::Instance(run.image.clone()))).then(|| format!("node-{i}: {os:?}"))
                })
                .collect();
            expectations.push(Check::new(
                format!("nodes {} run {}", run.nodes, run.image),
                bad.is_empty(),
                summarize(&bad),
            ));
        }
        let mut faults = Vec::new();
        for f in &self.faults {
            let mut fs: BTreeMap<String, usize> = BTreeMap::new();
            let mut counters: BTreeMap<String, u64> = BTreeMap::new();
            let mut bad = Vec::new();
            for &m in &f.nodes {
                if let Some(Some(r)) = records.get(m) {
                    *fs.entry(r.provision_state.to_string()).or_default() += 1;
                    if let Some(want) = &f.spec.expect
                        && r.provision_state.as_str() != want
                    {
                        bad.push(format!("node-{m}: {}", r.provision_state));
                    }
                }
                let Some(node) = lab.nodes.get(m) else { continue };
                let b = node.bmc.stats();
                let c = node.counters();
                let d = node.disk.stats();
                let mut add = |k: &str, v: u64| *counters.entry(k.to_string()).or_default() += v;
                match f.spec.kind {
                    FaultKind::BmcPacketLoss => add("packets_dropped", b.packets_dropped),
                    FaultKind::BmcUnresponsive => add("packets_ignored", b.packets_ignored),
                    FaultKind::PowerOnIgnored => add("power_commands_ignored", b.power_ignored),
                    FaultKind::BmcBusy => add("busy_replies", b.busy_replies),
                    FaultKind::AgentCrash => add("agent_crashes", c.agent_crashes),
                    FaultKind::HeartbeatsLost => add("heartbeats_dropped", c.heartbeats_dropped),
                    FaultKind::ImageCorrupted | FaultKind::ImageServerDown => add("download_attempts", c.downloads),
                    FaultKind::DhcpLost => add("dhcp_packets_lost", c.dhcp_lost),
                    FaultKind::DiskWriteError => add("write_errors", d.write_errors),
                    FaultKind::Redfish => {
                        if let Some(rf) = &node.redfish {
                            let r = rf.stats();
                            for (k, v) in [
                                ("busy_replies", r.busy_replies),
                                ("rate_limited", r.rate_limited),
                                ("unanswered", r.unanswered),
                                ("delayed", r.delayed),
                                ("etag_conflicts", r.etag_conflicts),
                                ("sessions_refused", r.sessions_refused),
                                ("sessions_expired", r.sessions_expired),
                                ("vmedia_insert_failures", r.vmedia_insert_failures),
                                ("tasks_completed", r.tasks_completed),
                                ("tasks_failed", r.tasks_failed),
                            ] {
                                if v > 0 {
                                    add(k, v);
                                }
                            }
                        }
                    }
                    FaultKind::ConductorRestart
                    | FaultKind::ConductorCrash
                    | FaultKind::ConductorPause
                    | FaultKind::DbCutOff
                    | FaultKind::DbRestart => {}
                }
            }
            match f.spec.kind {
                FaultKind::ConductorRestart => {
                    counters.insert("restarts".into(), u64::from(f.fired_at.is_some()));
                }
                FaultKind::ConductorCrash => {
                    counters.insert("crashes".into(), u64::from(f.fired_at.is_some()));
                }
                FaultKind::ConductorPause => {
                    counters.insert("pauses".into(), u64::from(f.fired_at.is_some()));
                    counters.insert("resumes".into(), u64::from(f.resumed));
                }
                FaultKind::DbCutOff | FaultKind::DbRestart => {
                    counters.insert("outages".into(), u64::from(f.fired_at.is_some()));
                    counters.insert("reconnects".into(), u64::from(f.resumed));
                    counters.insert("api_503".into(), f.api_503);
                }
                _ => {}
            }
            let ok = bad.is_empty() && (!f.spec.kind.is_conductor() || f.fired_at.is_some());
            if f.spec.expect.is_some() || f.spec.kind.is_conductor() {
                let detail = if f.spec.kind.is_conductor() && f.fired_at.is_none() {
                    "never triggered".to_string()
                } else {
                    summarize(&bad)
                };
                expectations.push(Check::new(
                    format!(
                        "fault {} ({} nodes){}",
                        f.spec.kind.as_str(),
                        f.nodes.len(),
                        f.spec.expect.as_ref().map(|s| format!(" → {s}")).unwrap_or_default()
                    ),
                    ok,
                    detail,
                ));
            }
            faults.push(FaultOutcome {
                kind: f.spec.kind.as_str().into(),
                nodes: f.nodes.len(),
                expect: f.spec.expect.clone(),
                fired_at: f.fired_at,
                states: fs,
                counters,
                ok,
            });
        }
        for e in &errors {
            expectations.push(Check::new("run completed".into(), false, e.clone()));
        }
        let (hash, count) = lab.trace.digest();
        // The recorded hash is the file's seed's (`--seed` replays another run).
        if let Some(want) = e.trace_hash.as_ref().filter(|_| self.seed == self.s.seed) {
            let got = format!("{hash:016x}");
            expectations.push(Check::new(format!("trace-hash = {want}"), got == *want, got));
        }
        let passed = expectations.iter().all(|c| c.ok) && invariants.iter().all(|c| c.ok);
        Report {
            scenario: self.s.name.clone(),
            seed: self.seed,
            passed,
            trace_hash: format!("{hash:016x}"),
            trace_events: count,
            virtual_secs,
            wall_secs,
            nodes: self.s.fleet.count,
            conductor_starts: lab.conductor_starts,
            states,
            actions: self.actions.clone(),
            faults,
            expectations,
            invariants,
        }
    }

    /// Machine i's node record (None when not enrolled).
    fn records(&self) -> Vec<Option<ferric_types::models::Node>> {
        (0..self.s.fleet.count)
            .map(|i| if self.enrolled[i] { self.lab.db.get_node_by_uuid(self.node_ids[i]).ok() } else { None })
            .collect()
    }

    /// Machines that ended in a failed state (`... failed`, `error`), with their messages.
    fn failed_nodes(&self) -> Vec<FailedNode> {
        self.records()
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n?;
                let state = n.provision_state.as_str();
                (state.ends_with("failed") || state == "error").then(|| FailedNode {
                    name: format!("node-{i}"),
                    state: state.to_string(),
                    last_error: n.last_error.clone(),
                    events: self.lab.trace.node_events(n.uuid),
                })
            })
            .take(MAX_FAILED_DIAGRAMS)
            .collect()
    }

    /// The recorded events of machine `i`'s last deploy.
    fn deploy_events(&self, i: usize) -> Vec<ferric_types::trace::TraceEvent> {
        let Some(id) = self.node_ids.get(i) else { return Vec::new() };
        let (from, to) = self.deploy_windows.get(&i).copied().unwrap_or((0, u64::MAX));
        self.lab.trace.node_events(*id).into_iter().filter(|e| e.at_ms >= from && e.at_ms <= to).collect()
    }
}

/// What starts a fault (the scenario file gives at most one of `from_secs`, `when`, `after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// `from_secs`, or from the beginning: on the timeline.
    Time,
    /// One of its nodes first reaching a state: `when`, or for conductor faults without
    /// `from_secs` its default `wait call-back`. Checked at each tick.
    State,
    /// An action finished (`after`), so a deploy-time fault need not guess when a long provide
    /// ends: applied by the action loop.
    Action,
}

fn start_of(f: &FaultSpec) -> Start {
    if f.from_secs.is_some() {
        Start::Time
    } else if f.after.is_some() {
        Start::Action
    } else if f.kind.is_conductor() || f.when.is_some() {
        Start::State
    } else {
        Start::Time
    }
}

fn push_err(v: &mut Vec<String>, e: String) {
    if v.len() < 20 {
        v.push(e);
    }
}

fn summarize(v: &[String]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    if v.len() > 5 {
        s.push_str(&format!("; and {} more", v.len() - 5));
    }
    s
}

/// A stable instance UUID per node (Nova's instance).
fn uuid_like(vif: &str, seed: u64) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in vif.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut r = StdRng::seed_from_u64(h);
    uuid_from(&mut r).to_string()
}

/// One API call of an action.
struct Call {
    method: http::Method,
    path: String,
    body: Option<Value>,
    /// Error statuses that are fine (a VIF already attached, already detached).
    tolerated: Vec<u16>,
}

impl Call {
    fn new(method: http::Method, path: &str, body: Option<Value>) -> Call {
        Call { method, path: path.to_string(), body, tolerated: Vec::new() }
    }
    fn tolerate(mut self, codes: &[u16]) -> Call {
        self.tolerated = codes.to_vec();
        self
    }
}

/// Makes the calls in order, retrying 503 (no free worker) and 409 (node locked).
/// (The API records the seed's Nova → API messages itself.)
async fn submit(http: &TowerHttp, calls: Vec<Call>) -> (u64, Option<String>) {
    let mut retries = 0u64;
    for c in calls {
        let mut attempt = 0;
        loop {
            match api_call(http, c.method.clone(), &c.path, c.body.clone()).await {
                Ok(_) => break,
                Err(LabError::Api { status, .. }) if c.tolerated.contains(&status) => break,
                Err(LabError::Api { status: 503 | 409, .. }) if attempt < API_RETRIES => {
                    attempt += 1;
                    retries += 1;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return (retries, Some(e.to_string())),
            }
        }
    }
    (retries, None)
}

/// Power state names as the machine reports them, for the invariant.
pub fn machine_power(p: ferric_sim::machine::PowerState) -> PowerState {
    match p {
        ferric_sim::machine::PowerState::On => PowerState::On,
        ferric_sim::machine::PowerState::Off => PowerState::Off,
    }
}

/// The conductor holding a node: the one that last prepared it (`conductor_affinity`), or for a
/// node never prepared, its owner on `rings`.
fn holder(n: &ferric_types::models::Node, rings: Option<&ferric_service::conductor::ring::Rings>) -> Option<String> {
    match &n.conductor_affinity {
        Some(a) => Some(a.clone()),
        None => rings?.owner(&n.conductor_group, &n.driver, n.uuid).map(|o| o.hostname.clone()),
    }
}
