//! Scenario files (TOML): the fleet, images, faults, actions and expectations of one run.
//!
//! ```toml
//! name = "direct deploy, happy path"
//! seed = 1
//!
//! [fleet]
//! count = 4
//! [[fleet.profiles]]          # optional; machines take profiles in order of their counts
//! name = "uefi-small"
//! count = 2
//! firmware = "uefi"
//! disk_gib = 240
//! timings = { post_secs = 30 }
//! bmc = "redfish"             # enrolled with the redfish hardware type (default ipmi)
//! boot_interface = "redfish-virtual-media"   # this profile's boot interface
//! [fleet.bmc]                 # fault knobs every BMC starts with
//! latency_ms = 1
//! [fleet.redfish]             # Redfish fault knobs (ferric_sim::redfish::RedfishFaultSettings)
//! busy_retry_after_secs = 1
//!
//! [sim]                       # optional
//! boot_interface = "ipxe"     # ferric's ipxe (default) or pxe boot interface; "fake": none
//! byte_scale = 65536          # virtual bytes per real byte of image and disk data
//! diagram_node = 0            # whose deploy --diagram draws
//! conductors = 3              # clustered conductors c0..c2 behind one API (default 1: all-in-one)
//!
//! [conductor]                 # optional: any ConductorConfig option (Ironic's names)
//! automated_clean = false
//! deploy_callback_timeout = 900
//!
//! [ipmi]                      # optional: the conductor's IPMI client timing
//! retries = 6
//!
//! [[images]]
//! name = "ubuntu"
//! size_mb = 2048              # virtual size (scaled down by sim.byte_scale in memory)
//!
//! [[faults]]
//! kind = "bmc_packet_loss"    # see FaultKind
//! nodes = "0-1"               # default all; fraction = 0.05 or count = 3: a seeded pick among them
//! rate = 0.2
//! from_secs = 0               # window in virtual seconds from the start (default: whole run)
//! until_secs = 600
//! # when = "deploying"        # instead of from_secs: on once a node of `nodes` reaches this state
//! # after = "provide"         # instead of from_secs: on once that action (its first) has finished
//! expect = "active"           # state the affected nodes must end in (optional)
//!
//! [[faults]]
//! kind = "conductor_crash"    # or conductor_pause / db_cut_off (for_secs = 120), conductor_restart,
//!                             # db_restart (for_secs = 30; no conductor)
//! conductor = 1               # which conductor (sim.conductors > 1; default 0)
//! when = "wait call-back"     # when a node of `nodes` first reaches this state (or from_secs)
//!
//! [[actions]]
//! kind = "enroll"             # enroll, manage, provide, deploy, undeploy, rebuild, power, wait, clean
//! [[actions]]
//! kind = "deploy"
//! interface = "direct"        # or "iscsi"
//! image = "ubuntu"
//!
//! [expect]
//! max_virtual_secs = 7200
//! states = { active = 4 }
//! trace_hash = "0123456789abcdef"   # optional: the run's trace hash must be this
//! ```

use crate::machine::node::{BmcProtocol, Firmware, OrderDevice, Timings};
use crate::sim::IpmiTiming;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Default seed (`--seed` overrides it).
    #[serde(default = "one")]
    pub seed: u64,
    pub fleet: FleetSpec,
    #[serde(default, skip_serializing_if = "SimSpec::is_default")]
    pub sim: SimSpec,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conductor: BTreeMap<String, toml::Value>,
    #[serde(default, skip_serializing_if = "is_default_ipmi")]
    pub ipmi: IpmiTiming,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultSpec>,
    pub actions: Vec<ActionSpec>,
    #[serde(default)]
    pub expect: Expect,
}

fn one() -> u64 {
    1
}

fn is_default_ipmi(t: &IpmiTiming) -> bool {
    *t == IpmiTiming::default()
}

/// The machines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    pub count: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<ProfileSpec>,
    /// BMC fault knobs every machine starts with.
    #[serde(default, skip_serializing_if = "is_default_bmc")]
    pub bmc: ferric_sim::vbmc::FaultSettings,
    /// Redfish fault knobs every Redfish BMC starts with.
    #[serde(default, skip_serializing_if = "is_default_redfish")]
    pub redfish: ferric_sim::redfish::RedfishFaultSettings,
}

fn is_default_redfish(r: &ferric_sim::redfish::RedfishFaultSettings) -> bool {
    *r == ferric_sim::redfish::RedfishFaultSettings::default()
}

fn is_default_bmc(b: &ferric_sim::vbmc::FaultSettings) -> bool {
    *b == ferric_sim::vbmc::FaultSettings::default()
}

/// A hardware profile (every field optional; defaults are a typical 1U server).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    pub name: String,
    /// Machines of this profile; profiles without a count share what is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nics: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_order: Option<Vec<OrderDevice>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// `ipmi` (default) or `redfish`: the hardware type the machines are enrolled with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc: Option<BmcProtocol>,
    /// Boot interface of these machines' nodes (default `sim.boot_interface`), e.g.
    /// `redfish-virtual-media`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_interface: Option<String>,
}

/// Simulation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSpec {
    /// Virtual bytes per real byte of image and disk data.
    pub byte_scale: u64,
    /// Boot interface of enrolled nodes (`ipxe`, `pxe`, or `fake`: no boot files served, the
    /// machines boot the ramdisk straight after DHCP).
    pub boot_interface: String,
    /// Network interface of enrolled nodes (`flat` or `noop`).
    pub network_interface: String,
    /// Trace events kept in full (the trace hash always covers every event).
    pub trace_capacity: usize,
    /// How often the runner looks at the fleet while waiting (virtual seconds).
    pub poll_secs: u64,
    /// Node whose deploy `--diagram` draws (machine index).
    pub diagram_node: Option<usize>,
    /// Conductors: 1 (an all-in-one service) or several clustered ones (hosts `c0`, `c1`, ...)
    /// behind one API service; `[conductor]` settings (heartbeat_interval, heartbeat_timeout, ...)
    /// apply to each.
    pub conductors: usize,
}

impl Default for SimSpec {
    fn default() -> Self {
        Self {
            byte_scale: 65_536,
            boot_interface: "ipxe".into(),
            network_interface: "flat".into(),
            trace_capacity: 200_000,
            poll_secs: 5,
            diagram_node: None,
            conductors: 1,
        }
    }
}

impl SimSpec {
    fn is_default(&self) -> bool {
        *self == SimSpec::default()
    }
}

/// An image in the image service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub name: String,
    /// Virtual size.
    #[serde(default = "default_image_mb")]
    pub size_mb: u64,
    /// `raw` (qcow2 needs real qcow2 bytes: not simulated).
    #[serde(default = "raw")]
    pub format: String,
}

fn default_image_mb() -> u64 {
    2048
}

fn raw() -> String {
    "raw".into()
}

/// The kinds of fault a scenario can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Datagrams to and from the BMC are lost with probability `rate`.
    BmcPacketLoss,
    /// The BMC answers nothing during the window.
    BmcUnresponsive,
    /// Chassis Control is acknowledged but the machine's power does not change.
    PowerOnIgnored,
    /// Every command gets completion code 0xC0 (node busy).
    BmcBusy,
    /// The agent crashes at `step` (boot, lookup, heartbeat, download, write, or a command
    /// name such as `iscsi.start_iscsi_target`).
    AgentCrash,
    /// The agent's heartbeats never reach the API.
    HeartbeatsLost,
    /// Image downloads arrive corrupted (checksum mismatch).
    ImageCorrupted,
    /// The image store cannot be reached.
    ImageServerDown,
    /// DHCP packets are lost with probability `rate` (default 1: every one).
    DhcpLost,
    /// The conductor dies and a new one starts on the same database, at `from_secs` or when a
    /// selected node first reaches state `when` (default `deploying`).
    ConductorRestart,
    /// Disk writes fail with an I/O error.
    DiskWriteError,
    /// The Redfish BMCs' fault knobs are set to `redfish` for the window (503 with
    /// Retry-After, 429, latency, an unresponsive BMC, a session limit, sessions that expire,
    /// ETag conflicts, virtual media insert failures, slow or failing tasks).
    Redfish,
    /// Conductor `conductor` (of several) halts for good, at `from_secs` or when a selected node
    /// first reaches state `when` (default `wait call-back`).
    ConductorCrash,
    /// Conductor `conductor`'s periodic loop (heartbeats, takeover, timeouts, power sync) stops
    /// for `for_secs` (default: until `until_secs`, or for good), its process living on; then
    /// the loop goes on. Triggered as `conductor_crash`.
    ConductorPause,
    /// Conductor `conductor`'s connection to the database fails every call for `for_secs`
    /// (default: until `until_secs`, or for good): its heartbeats stop, its peers take its nodes
    /// over, it fences itself, and it rejoins once reconnected. Triggered as `conductor_crash`.
    DbCutOff,
    /// The database is down for `for_secs` (default: until `until_secs`, or for good): every
    /// ferric process's calls fail (the API answers 503), then it is back with nothing lost.
    /// Triggered as `conductor_crash`.
    DbRestart,
}

impl FaultKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FaultKind::BmcPacketLoss => "bmc_packet_loss",
            FaultKind::BmcUnresponsive => "bmc_unresponsive",
            FaultKind::PowerOnIgnored => "power_on_ignored",
            FaultKind::BmcBusy => "bmc_busy",
            FaultKind::AgentCrash => "agent_crash",
            FaultKind::HeartbeatsLost => "heartbeats_lost",
            FaultKind::ImageCorrupted => "image_corrupted",
            FaultKind::ImageServerDown => "image_server_down",
            FaultKind::DhcpLost => "dhcp_lost",
            FaultKind::ConductorRestart => "conductor_restart",
            FaultKind::DiskWriteError => "disk_write_error",
            FaultKind::Redfish => "redfish",
            FaultKind::ConductorCrash => "conductor_crash",
            FaultKind::ConductorPause => "conductor_pause",
            FaultKind::DbCutOff => "db_cut_off",
            FaultKind::DbRestart => "db_restart",
        }
    }

    /// Faults of a conductor rather than of machines (triggered at a time or by a state).
    pub fn is_conductor(&self) -> bool {
        matches!(
            self,
            FaultKind::ConductorRestart
                | FaultKind::ConductorCrash
                | FaultKind::ConductorPause
                | FaultKind::DbCutOff
                | FaultKind::DbRestart
        )
    }

    /// Conductor faults that end by themselves after `for_secs` (or at `until_secs`).
    pub fn has_end(&self) -> bool {
        matches!(self, FaultKind::ConductorPause | FaultKind::DbCutOff | FaultKind::DbRestart)
    }

    pub const ALL: &'static [FaultKind] = &[
        FaultKind::BmcPacketLoss,
        FaultKind::BmcUnresponsive,
        FaultKind::PowerOnIgnored,
        FaultKind::BmcBusy,
        FaultKind::AgentCrash,
        FaultKind::HeartbeatsLost,
        FaultKind::ImageCorrupted,
        FaultKind::ImageServerDown,
        FaultKind::DhcpLost,
        FaultKind::ConductorRestart,
        FaultKind::DiskWriteError,
        FaultKind::Redfish,
        FaultKind::ConductorCrash,
        FaultKind::ConductorPause,
        FaultKind::DbCutOff,
        FaultKind::DbRestart,
    ];
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// Which machines: `all`, `3`, `0-9`, `0,2,5`, `profile:NAME` (default: all); with
    /// `fraction` or `count`, the seeded pick is made among these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    /// A seeded random share of the machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// A seeded random number of machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Probability for loss faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Agent crash step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Window start, virtual seconds from the start of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_secs: Option<f64>,
    /// Window end (default: the end of the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_secs: Option<f64>,
    /// Redfish fault knobs for the window (kind `redfish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redfish: Option<ferric_sim::redfish::RedfishFaultSettings>,
    /// The state that triggers the fault when one of its nodes first reaches it (conductor
    /// faults: default `wait call-back`; machine faults: only when given, instead of `from_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The fault starts once the scenario's first action of this kind has finished (instead of
    /// `from_secs` or `when`): a deploy-time fault that must not strike a long provide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ActionKind>,
    /// Conductor faults with several conductors: which one (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conductor: Option<usize>,
    /// Conductor pause, cut-off or database restart: how long, in virtual seconds from when it
    /// struck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_secs: Option<f64>,
    /// State the affected machines' nodes must end in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

/// The actions a scenario performs, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Enroll,
    Manage,
    Provide,
    Deploy,
    Undeploy,
    Rebuild,
    Power,
    /// Let virtual time pass.
    Wait,
    /// Manual cleaning of `manageable` nodes with `clean_steps` (Ironic's `clean` verb).
    Clean,
}

impl ActionKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionKind::Enroll => "enroll",
            ActionKind::Manage => "manage",
            ActionKind::Provide => "provide",
            ActionKind::Deploy => "deploy",
            ActionKind::Undeploy => "undeploy",
            ActionKind::Rebuild => "rebuild",
            ActionKind::Power => "power",
            ActionKind::Wait => "wait",
            ActionKind::Clean => "clean",
        }
    }
}

/// One action on a set of machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub kind: ActionKind,
    /// Which machines (as for faults; default all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    /// Deploy interface (`direct` or `iscsi`) for deploy and rebuild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Image name for deploy and rebuild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A config drive (plain string, passed as Ironic's `configdrive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configdrive: Option<String>,
    /// Power target (`on`, `off`, `reboot`, `soft off`, `soft reboot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For `wait`: how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secs: Option<f64>,
    /// For `clean`: the steps, as Ironic's `clean_steps` (`{interface, step, args}` tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_steps: Option<Vec<toml::Value>>,
    /// Wait for the machines to settle before the next action (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// What must hold at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The run (all actions settled) must end within this much virtual time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_virtual_secs: Option<f64>,
    /// Exact node counts per provision state (states not listed are unconstrained).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub states: BTreeMap<String, usize>,
    /// Lower bounds per state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_states: BTreeMap<String, usize>,
    /// Upper bounds per state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_states: BTreeMap<String, usize>,
    /// Per-node expectations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeExpect>,
    /// Machines whose OS must be running the instance (by image name) at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<NodeExpectRunning>,
    /// The run's trace hash (16 hex digits, as `trace-hash:` prints it): the same file and seed
    /// must replay the same run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_hash: Option<String>,
}

/// State (and error) of some nodes at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeExpect {
    pub nodes: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `last_error` must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<String>,
}

/// Machines running an image at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeExpectRunning {
    pub nodes: String,
    pub image: String,
}

/// Why a scenario file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario file: {0}")]
    Parse(String),
    #[error("scenario: {0}")]
    Invalid(String),
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    pub fn to_toml(&self) -> Result<String, ScenarioError> {
        toml::to_string_pretty(self).map_err(|e| ScenarioError::Invalid(e.to_string()))
    }

    /// Checks what parsing cannot: sizes, names, references.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        let n = self.fleet.count;
        if n == 0 || n > crate::sim::MAX_MACHINES {
            return bad(format!("fleet.count must be 1..={}", crate::sim::MAX_MACHINES));
        }
        let counted: usize = self.fleet.profiles.iter().filter_map(|p| p.count).sum();
        if counted > n {
            return bad(format!("profiles count {counted} machines but the fleet has {n}"));
        }
        if self.actions.len() > 1000 || self.faults.len() > 1000 || self.images.len() > 100 {
            return bad("at most 1000 actions, 1000 faults and 100 images".into());
        }
        if !matches!(self.sim.boot_interface.as_str(), "ipxe" | "pxe" | "fake") {
            return bad(format!("sim.boot_interface {:?} is not ipxe, pxe or fake", self.sim.boot_interface));
        }
        if !matches!(self.sim.network_interface.as_str(), "flat" | "noop") {
            return bad(format!("sim.network_interface {:?} is not flat or noop", self.sim.network_interface));
        }
        if self.sim.conductors == 0 || self.sim.conductors > 64 {
            return bad("sim.conductors must be 1..=64".into());
        }
        if self.sim.byte_scale == 0 || self.sim.poll_secs == 0 || self.sim.poll_secs > 3600 {
            return bad("sim.byte_scale must be positive and sim.poll_secs 1..=3600".into());
        }
        for i in &self.images {
            if i.format != "raw" {
                return bad(format!("image {:?}: only raw images are simulated", i.name));
            }
            if i.size_mb == 0 || i.size_mb > (1 << 22) {
                return bad(format!("image {:?}: size_mb must be 1..=4194304", i.name));
            }
        }
        for a in &self.actions {
            if let Some(sel) = &a.nodes {
                NodeSel::parse(sel).map_err(ScenarioError::Invalid)?;
            }
            match a.kind {
                ActionKind::Deploy | ActionKind::Rebuild => {
                    let iface = a.interface.as_deref().unwrap_or("direct");
                    if !matches!(iface, "direct" | "iscsi" | "fake") {
                        return bad(format!("deploy interface {iface:?} is not direct, iscsi or fake"));
                    }
                    if a.kind == ActionKind::Deploy {
                        let Some(img) = &a.image else { return bad("deploy needs an image".into()) };
                        if !self.images.iter().any(|i| &i.name == img) {
                            return bad(format!("deploy names unknown image {img:?}"));
                        }
                    }
                }
                ActionKind::Power => {
                    let t = a.target.as_deref().unwrap_or("");
                    if !matches!(
                        t,
                        "on" | "off" | "reboot" | "soft off" | "soft reboot" | "power on" | "power off" | "rebooting"
                    ) {
                        return bad(format!("power target {t:?} is not on, off, reboot, soft off or soft reboot"));
                    }
                }
                ActionKind::Wait => {
                    let s = a.secs.unwrap_or(-1.0);
                    if !(0.0..=30.0 * 86400.0).contains(&s) {
                        return bad("wait needs secs in 0..=2592000".into());
                    }
                }
                _ => {}
            }
        }
        for f in &self.faults {
            if let Some(sel) = &f.nodes {
                NodeSel::parse(sel).map_err(ScenarioError::Invalid)?;
            }
            if let Some(fr) = f.fraction
                && !(0.0..=1.0).contains(&fr)
            {
                return bad(format!("{}: fraction must be in 0..=1", f.kind.as_str()));
            }
            if let Some(r) = f.rate
                && !(0.0..=1.0).contains(&r)
            {
                return bad(format!("{}: rate must be in 0..=1", f.kind.as_str()));
            }
            if f.kind == FaultKind::AgentCrash {
                let step = f.step.as_deref().unwrap_or("");
                if crate::machine::node::AgentStep::parse(step).is_none() {
                    return bad(format!(
                        "agent_crash step {step:?} is not boot, lookup, heartbeat, download, write or a command name"
                    ));
                }
            }
            if f.kind.is_conductor() {
                let c = f.conductor.unwrap_or(0);
                if c >= self.sim.conductors {
                    return bad(format!(
                        "{}: no conductor {c} (sim.conductors = {})",
                        f.kind.as_str(),
                        self.sim.conductors
                    ));
                }
                if matches!(f.kind, FaultKind::ConductorCrash | FaultKind::ConductorPause) && self.sim.conductors < 2 {
                    return bad(format!("{} needs sim.conductors >= 2", f.kind.as_str()));
                }
                if f.kind == FaultKind::DbRestart && f.conductor.is_some() {
                    return bad("db_restart stops the whole database: it takes no conductor".into());
                }
                if f.for_secs.is_some() && !f.kind.has_end() {
                    return bad(format!(
                        "{}: for_secs is for conductor_pause, db_cut_off and db_restart",
                        f.kind.as_str()
                    ));
                }
            } else if f.conductor.is_some() || f.for_secs.is_some() {
                return bad(format!("{}: conductor and for_secs are for conductor faults", f.kind.as_str()));
            }
            if [f.from_secs.is_some(), f.when.is_some(), f.after.is_some()].iter().filter(|x| **x).count() > 1 {
                return bad(format!("{}: one of from_secs, when and after", f.kind.as_str()));
            }
            if let Some(a) = f.after
                && !self.actions.iter().any(|x| x.kind == a)
            {
                return bad(format!(
                    "{}: after = {:?}, but the scenario has no such action",
                    f.kind.as_str(),
                    a.as_str()
                ));
            }
            if let Some(d) = f.for_secs
                && !(0.0..=30.0 * 86400.0).contains(&d)
            {
                return bad(format!("{}: for_secs must be in 0..=2592000", f.kind.as_str()));
            }
            for s in [&f.expect, &f.when].into_iter().flatten() {
                s.parse::<ferric_types::models::ProvisionState>()
                    .map_err(|_| ScenarioError::Invalid(format!("unknown provision state {s:?}")))?;
            }
        }
        for s in self.expect.states.keys().chain(self.expect.min_states.keys()).chain(self.expect.max_states.keys()) {
            s.parse::<ferric_types::models::ProvisionState>()
                .map_err(|_| ScenarioError::Invalid(format!("unknown provision state {s:?} in expect")))?;
        }
        for ne in &self.expect.nodes {
            NodeSel::parse(&ne.nodes).map_err(ScenarioError::Invalid)?;
            if let Some(s) = &ne.state {
                s.parse::<ferric_types::models::ProvisionState>()
                    .map_err(|_| ScenarioError::Invalid(format!("unknown provision state {s:?} in expect")))?;
            }
        }
        Ok(())
    }
}

/// A set of machines, by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSel {
    All,
    Indices(Vec<usize>),
    Profile(String),
}

impl NodeSel {
    /// `all`, `3`, `0-9`, `0,2,5-7`, `profile:NAME`.
    pub fn parse(s: &str) -> Result<NodeSel, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(NodeSel::All);
        }
        if let Some(p) = s.strip_prefix("profile:") {
            return Ok(NodeSel::Profile(p.to_string()));
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let bad = || format!("node selection {s:?}: {part:?} is not an index or a range a-b");
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: usize = a.trim().parse().map_err(|_| bad())?;
                    let b: usize = b.trim().parse().map_err(|_| bad())?;
                    if b < a || b - a > crate::sim::MAX_MACHINES {
                        return Err(bad());
                    }
                    out.extend(a..=b);
                }
                None => out.push(part.parse().map_err(|_| bad())?),
            }
        }
        Ok(NodeSel::Indices(out))
    }

    /// The selected indices below `n` (`profiles[i]` is machine i's profile name).
    pub fn resolve(&self, n: usize, profiles: &[String]) -> Vec<usize> {
        match self {
            NodeSel::All => (0..n).collect(),
            NodeSel::Indices(v) => {
                let mut v: Vec<usize> = v.iter().copied().filter(|i| *i < n).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            NodeSel::Profile(p) => (0..n).filter(|i| profiles.get(*i) == Some(p)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections() {
        let p: Vec<String> = vec!["a".into(), "b".into(), "a".into()];
        assert_eq!(NodeSel::parse("all").unwrap().resolve(3, &p), vec![0, 1, 2]);
        assert_eq!(NodeSel::parse("2,0-1,7").unwrap().resolve(3, &p), vec![0, 1, 2]);
        assert_eq!(NodeSel::parse("profile:a").unwrap().resolve(3, &p), vec![0, 2]);
        assert!(NodeSel::parse("x").is_err());
        assert!(NodeSel::parse("3-1").is_err());
    }

    #[test]
    fn parse_round_trip_and_refusals() {
        let s = Scenario::parse(
            r#"
            name = "t"
            [fleet]
            count = 2
            [[images]]
            name = "img"
            [[faults]]
            kind = "agent_crash"
            step = "download"
            nodes = "1"
            expect = "deploy failed"
            [[actions]]
            kind = "enroll"
            [[actions]]
            kind = "deploy"
            image = "img"
            [expect]
            states = { active = 1, "deploy failed" = 1 }
            "#,
        )
        .unwrap();
        assert_eq!(s.seed, 1);
        let again = Scenario::parse(&s.to_toml().unwrap()).unwrap();
        assert_eq!(again, s);
        assert!(Scenario::parse("name = 1").is_err());
        let bad = s.to_toml().unwrap().replace("\"download\"", "\"nowhere\"");
        assert!(Scenario::parse(&bad).is_err());
        assert!(Scenario::parse(&s.to_toml().unwrap().replace("count = 2", "count = 0")).is_err());
        // A machine fault starts at a time or at a state, not both.
        let when = s.to_toml().unwrap().replace("step = \"download\"", "step = \"download\"\nwhen = \"deploying\"");
        assert_eq!(Scenario::parse(&when).unwrap().faults[0].when.as_deref(), Some("deploying"));
        let both = when.replace("when = ", "from_secs = 1.0\nwhen = ");
        assert!(Scenario::parse(&both).is_err());
        let after = s.to_toml().unwrap().replace("step = \"download\"", "step = \"download\"\nafter = \"enroll\"");
        assert!(Scenario::parse(&after).is_ok());
        assert!(
            Scenario::parse(&after.replace("after = \"enroll\"", "after = \"provide\"")).is_err(),
            "no provide action"
        );
    }

    #[test]
    fn conductor_faults_name_one_of_several_conductors() {
        let text = |conductors: usize, kind: &str, which: usize| {
            // Only faults that end by themselves take `for_secs`.
            let ends = if kind == "conductor_pause" { "for_secs = 90\n" } else { "" };
            format!(
                "name = \"t\"\n[fleet]\ncount = 2\n[sim]\nconductors = {conductors}\n[[faults]]\nkind = \"{kind}\"\nconductor = {which}\n{ends}when = \"wait call-back\"\n[[actions]]\nkind = \"enroll\"\n[expect]\ntrace_hash = \"0123456789abcdef\"\n"
            )
        };
        let s = Scenario::parse(&text(3, "conductor_pause", 2)).unwrap();
        assert_eq!(s.sim.conductors, 3);
        assert_eq!(s.faults[0].kind, FaultKind::ConductorPause);
        assert_eq!((s.faults[0].conductor, s.faults[0].for_secs), (Some(2), Some(90.0)));
        assert_eq!(s.expect.trace_hash.as_deref(), Some("0123456789abcdef"));
        assert_eq!(Scenario::parse(&s.to_toml().unwrap()).unwrap(), s);
        assert!(Scenario::parse(&text(3, "conductor_crash", 1)).is_ok());
        // A crash does not end by itself.
        let crash_for = text(3, "conductor_crash", 1).replace("when =", "for_secs = 90\nwhen =");
        assert!(Scenario::parse(&crash_for).is_err());
        // No such conductor; a crash of the only one; a conductor for a machine fault.
        assert!(Scenario::parse(&text(3, "conductor_crash", 3)).is_err());
        assert!(Scenario::parse(&text(1, "conductor_crash", 0)).is_err());
        assert!(Scenario::parse(&text(3, "bmc_busy", 0)).is_err());
        assert!(Scenario::parse(&text(0, "conductor_restart", 0)).is_err());
    }
}
