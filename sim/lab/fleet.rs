//! A fleet: N virtual BMCs, each in front of a [`SimMachine`], served from one process (what
//! VirtualBMC's vbmcd does for libvirt domains).
//!
//! # Fleet file (TOML)
//!
//! Every key is optional. `[defaults]` applies to every BMC; each `[[bmc]]` table refines the
//! BMC with that `index` (0-based; BMC i listens on base port + i). Precedence, lowest first:
//! built-in defaults, the command line (`--username`, `--password`), `[defaults]`, `[[bmc]]`.
//!
//! ```toml
//! [defaults]
//! username = "admin"
//! password = "password"
//! cipher_suites = [1, 2, 3, 17]   # add 0 to allow unauthenticated sessions
//! max_sessions = 8
//! session_timeout_secs = 60
//! boot_flag_timeout_secs = 60     # 0: one-time boot flags never expire
//! seed = 1                        # BMC i uses seed + i (session IDs, nonces, drop RNG)
//!
//! [defaults.machine]
//! soft_off_delay_ms = 2000
//! acpi_honored = true
//! initially_on = false
//!
//! [defaults.faults]
//! unresponsive = false
//! drop_rate = 0.0                 # probability per datagram, each direction
//! latency_ms = 0
//! ignore_power = false
//! busy = false                    # answer 0xC0 to every in-session command
//!
//! [defaults.redfish]             # the Redfish BMC's knobs (ferric_sim::redfish::RedfishFaultSettings)
//! latency_ms = 0
//!
//! [[bmc]]
//! index = 3
//! name = "node-3"
//! macs = ["52:54:00:00:00:03"]
//! faults = { drop_rate = 0.2, latency_ms = 50 }
//! machine = { soft_off_delay_ms = 60000 }
//! redfish = { busy_retry_after_secs = 2, vmedia_insert_fails = true }
//! ```
//!
//! The credentials apply to both protocols; `faults` are the IPMI BMC's, `redfish` the Redfish
//! BMC's (a `[[bmc]]` table's `redfish` replaces the default's as a whole).

use crate::machine::power::{SimMachine, SimMachineConfig};
use ferric_sim::redfish::RedfishFaultSettings;
use ferric_sim::vbmc::{Bmc, BmcConfig, ConfigError, FaultSettings, Faults, Password, serve_udp};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// Largest fleet one process serves.
pub const MAX_FLEET: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet file: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("BMC {index}: {source}")]
    Config {
        index: usize,
        #[source]
        source: ConfigError,
    },
    #[error("BMC index {0} is outside the fleet")]
    Index(usize),
    #[error("fleet size must be 1..={MAX_FLEET}")]
    Size,
    #[error("bad MAC address {0:?}")]
    Mac(String),
    #[error("port range overflows: base {base} + {count}")]
    Ports { base: u16, count: usize },
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetFile {
    pub defaults: NodeSpec,
    #[serde(rename = "bmc")]
    pub bmcs: Vec<NodeSpec>,
}

/// Partial settings for one BMC (or all, under `[defaults]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSpec {
    pub index: Option<usize>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub cipher_suites: Option<Vec<u8>>,
    pub max_sessions: Option<usize>,
    pub session_timeout_secs: Option<u64>,
    pub boot_flag_timeout_secs: Option<u64>,
    pub seed: Option<u64>,
    pub macs: Option<Vec<String>>,
    pub machine: MachineSpec,
    pub faults: FaultSpec,
    pub redfish: Option<RedfishFaultSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineSpec {
    pub soft_off_delay_ms: Option<u64>,
    pub acpi_honored: Option<bool>,
    pub initially_on: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSpec {
    pub unresponsive: Option<bool>,
    pub drop_rate: Option<f64>,
    pub latency_ms: Option<u64>,
    pub ignore_power: Option<bool>,
    pub busy: Option<bool>,
}

impl FleetFile {
    pub fn parse(text: &str) -> Result<Self, FleetError> {
        Ok(toml::from_str(text)?)
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], FleetError> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(FleetError::Mac(s.into()));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| FleetError::Mac(s.into()))?;
    }
    Ok(mac)
}

/// Everything one node of the fleet needs, resolved.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub name: String,
    pub bmc: BmcConfig,
    pub machine: SimMachineConfig,
    pub faults: FaultSettings,
    /// The Redfish BMC's fault knobs (when the machine has one).
    pub redfish: RedfishFaultSettings,
}

impl NodeSpec {
    fn apply(&self, n: &mut NodeSettings) -> Result<(), FleetError> {
        if let Some(v) = &self.name {
            n.name = v.clone();
        }
        if let Some(v) = &self.username {
            n.bmc.username = v.clone();
        }
        if let Some(v) = &self.password {
            n.bmc.password = Password(v.clone());
        }
        if let Some(v) = &self.cipher_suites {
            n.bmc.cipher_suites = v.clone();
        }
        if let Some(v) = self.max_sessions {
            n.bmc.max_sessions = v;
        }
        if let Some(v) = self.session_timeout_secs {
            n.bmc.session_timeout_secs = v;
        }
        if let Some(v) = self.boot_flag_timeout_secs {
            n.bmc.boot_flag_timeout_secs = v;
        }
        if let Some(v) = &self.macs {
            n.machine.macs = v.iter().map(|m| parse_mac(m)).collect::<Result<_, _>>()?;
        }
        let m = &self.machine;
        if let Some(v) = m.soft_off_delay_ms {
            n.machine.soft_off_delay_ms = v;
        }
        if let Some(v) = m.acpi_honored {
            n.machine.acpi_honored = v;
        }
        if let Some(v) = m.initially_on {
            n.machine.initially_on = v;
        }
        let f = &self.faults;
        if let Some(v) = f.unresponsive {
            n.faults.unresponsive = v;
        }
        if let Some(v) = f.drop_rate {
            n.faults.drop_rate = v;
        }
        if let Some(v) = f.latency_ms {
            n.faults.latency_ms = v;
        }
        if let Some(v) = f.ignore_power {
            n.faults.ignore_power = v;
        }
        if let Some(v) = f.busy {
            n.faults.busy = v;
        }
        if let Some(v) = self.redfish {
            n.redfish = v;
        }
        Ok(())
    }
}

/// Resolves the settings of `count` nodes from a base BMC config and a fleet file.
pub fn resolve(count: usize, base: &BmcConfig, file: &FleetFile) -> Result<Vec<NodeSettings>, FleetError> {
    if count == 0 || count > MAX_FLEET {
        return Err(FleetError::Size);
    }
    let base_seed = file.defaults.seed.unwrap_or(base.seed);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let mut n = NodeSettings {
            name: format!("node-{i}"),
            bmc: base.clone(),
            machine: SimMachineConfig::default(),
            faults: FaultSettings::default(),
            redfish: RedfishFaultSettings::default(),
        };
        file.defaults.apply(&mut n)?;
        n.bmc.seed = base_seed.wrapping_add(i as u64);
        out.push(n);
    }
    for spec in &file.bmcs {
        let i = spec.index.ok_or(FleetError::Index(usize::MAX))?;
        let n = out.get_mut(i).ok_or(FleetError::Index(i))?;
        spec.apply(n)?;
        if let Some(s) = spec.seed {
            n.bmc.seed = s;
        }
    }
    for (index, n) in out.iter().enumerate() {
        n.bmc.validate().map_err(|source| FleetError::Config { index, source })?;
    }
    Ok(out)
}

/// One BMC of the fleet and the machine behind it.
#[derive(Debug, Clone)]
pub struct FleetNode {
    pub bmc: Bmc,
    pub machine: Arc<SimMachine>,
}

/// N BMCs with simulated machines.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub nodes: Vec<FleetNode>,
}

impl Fleet {
    pub fn build(settings: Vec<NodeSettings>) -> Result<Self, FleetError> {
        let mut nodes = Vec::with_capacity(settings.len());
        for (index, s) in settings.into_iter().enumerate() {
            let machine = Arc::new(SimMachine::new(s.name.clone(), s.machine));
            let faults = Arc::new(Faults::new(s.faults));
            let bmc = Bmc::new(s.name, s.bmc, machine.clone(), faults)
                .map_err(|source| FleetError::Config { index, source })?;
            nodes.push(FleetNode { bmc, machine });
        }
        Ok(Self { nodes })
    }

    /// Binds BMC i to `ip`:`base_port + i` (all or nothing), as non-blocking std sockets that
    /// any runtime can adopt (`tokio::net::UdpSocket::from_std`), e.g. one per serving thread.
    pub fn bind_std(&self, ip: IpAddr, base_port: u16) -> Result<Vec<std::net::UdpSocket>, FleetError> {
        let count = self.nodes.len();
        if base_port as usize + count > 65_536 {
            return Err(FleetError::Ports { base: base_port, count });
        }
        let mut sockets = Vec::with_capacity(count);
        for i in 0..count {
            let addr = SocketAddr::new(ip, base_port + i as u16);
            let s = std::net::UdpSocket::bind(addr)
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .map_err(|source| FleetError::Bind { addr, source })?;
            sockets.push(s);
        }
        Ok(sockets)
    }

    /// [`Fleet::bind_std`] registered with the current tokio runtime.
    pub async fn bind(&self, ip: IpAddr, base_port: u16) -> Result<Vec<UdpSocket>, FleetError> {
        let mut out = Vec::new();
        for (i, s) in self.bind_std(ip, base_port)?.into_iter().enumerate() {
            let addr = SocketAddr::new(ip, base_port + i as u16);
            out.push(UdpSocket::from_std(s).map_err(|source| FleetError::Bind { addr, source })?);
        }
        Ok(out)
    }

    /// Serves each BMC on its socket (from [`Fleet::bind`]) on tasks in the returned set.
    pub fn serve(&self, sockets: Vec<UdpSocket>) -> JoinSet<std::io::Result<()>> {
        let mut set = JoinSet::new();
        for (node, socket) in self.nodes.iter().zip(sockets) {
            set.spawn(serve_udp(node.bmc.clone(), socket));
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_file_overrides_in_order() {
        let f = FleetFile::parse(
            r#"
            [defaults]
            password = "fleetpw"
            seed = 100
            [defaults.faults]
            latency_ms = 5
            [[bmc]]
            index = 1
            name = "special"
            macs = ["52:54:00:aa:bb:cc"]
            faults = { drop_rate = 0.5 }
            machine = { soft_off_delay_ms = 9 }
            redfish = { busy_retry_after_secs = 3 }
            "#,
        )
        .unwrap();
        let base = BmcConfig { username: "cli".into(), ..Default::default() };
        let s = resolve(2, &base, &f).unwrap();
        assert_eq!(s[0].bmc.username, "cli");
        assert_eq!(s[0].bmc.password.0, "fleetpw");
        assert_eq!(s[0].bmc.seed, 100);
        assert_eq!(s[1].bmc.seed, 101);
        assert_eq!(s[1].name, "special");
        assert_eq!(s[1].faults.drop_rate, 0.5);
        assert_eq!(s[1].faults.latency_ms, 5);
        assert_eq!(s[1].machine.soft_off_delay_ms, 9);
        assert_eq!(s[1].machine.macs, vec![[0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]]);
        assert_eq!(s[1].redfish.busy_retry_after_secs, Some(3));
        assert_eq!(s[0].redfish, RedfishFaultSettings::default());
        assert!(matches!(resolve(1, &base, &f), Err(FleetError::Index(1))));
        assert!(FleetFile::parse("[defaults]\nbogus = 1").is_err());
    }
}
