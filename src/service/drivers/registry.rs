//! Hardware types, the interface implementations they support, and which ones are enabled.

use super::fake::{FakeBoot, FakeDeploy, FakeManagement, FakePower};
use super::network::{FlatNetwork, NoopNetwork};
use super::{
    BootInterface, DeployInterface, DriverError, InspectInterface, ManagementInterface, NetworkInterface,
    OutOfBandSteps, PowerInterface,
};
use ferric_types::models::{INTERFACE_NAMES, Node};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Which hardware types and interface implementations this conductor enables (Ironic's
/// `enabled_hardware_types`, `enabled_<kind>_interfaces`, `default_<kind>_interface`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    pub enabled_hardware_types: Vec<String>,
    /// kind → enabled implementations; kinds not listed enable everything their types support.
    pub enabled_interfaces: BTreeMap<String, Vec<String>>,
    /// kind → default implementation, when the hardware type supports and enables it.
    pub default_interfaces: BTreeMap<String, String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            enabled_hardware_types: vec!["fake-hardware".into(), "ipmi".into(), "redfish".into()],
            enabled_interfaces: BTreeMap::new(),
            default_interfaces: BTreeMap::new(),
        }
    }
}

/// A hardware type: for each interface kind, the implementations it supports, preferred first.
#[derive(Debug, Clone)]
pub struct HardwareType {
    pub name: String,
    pub supported: BTreeMap<&'static str, Vec<&'static str>>,
}

fn hw(name: &str, kinds: &[(&'static str, &[&'static str])]) -> HardwareType {
    HardwareType { name: name.into(), supported: kinds.iter().map(|(k, v)| (*k, v.to_vec())).collect() }
}

/// The built-in hardware types.
pub fn builtin_hardware_types() -> Vec<HardwareType> {
    vec![
        hw(
            "fake-hardware",
            &[
                ("bios", &["fake", "no-bios"]),
                ("boot", &["fake", "ipxe", "pxe"]),
                ("console", &["fake", "no-console"]),
                ("deploy", &["fake", "direct", "iscsi"]),
                ("firmware", &["fake", "no-firmware"]),
                ("inspect", &["fake", "no-inspect", "agent"]),
                ("management", &["fake"]),
                ("network", &["noop", "flat"]),
                ("power", &["fake"]),
                ("raid", &["fake", "no-raid"]),
                ("rescue", &["fake", "no-rescue"]),
                ("storage", &["noop", "fake"]),
                ("vendor", &["fake", "no-vendor"]),
            ],
        ),
        hw(
            "ipmi",
            &[
                ("bios", &["no-bios"]),
                ("boot", &["ipxe", "pxe"]),
                ("console", &["no-console"]),
                ("deploy", &["direct", "iscsi"]),
                ("firmware", &["no-firmware"]),
                ("inspect", &["no-inspect", "agent"]),
                ("management", &["ipmitool"]),
                ("network", &["flat", "noop"]),
                ("power", &["ipmitool"]),
                ("raid", &["no-raid"]),
                ("rescue", &["no-rescue"]),
                ("storage", &["noop"]),
                ("vendor", &["no-vendor"]),
            ],
        ),
        hw(
            "redfish",
            &[
                // As Ironic's redfish hardware type: its own out-of-band interfaces first.
                ("bios", &["redfish", "no-bios"]),
                ("boot", &["ipxe", "pxe", "redfish-virtual-media", "redfish-https"]),
                ("console", &["no-console"]),
                ("deploy", &["direct", "iscsi"]),
                ("firmware", &["redfish", "no-firmware"]),
                ("inspect", &["redfish", "no-inspect", "agent"]),
                ("management", &["redfish"]),
                ("network", &["flat", "noop"]),
                ("power", &["redfish"]),
                ("raid", &["no-raid"]),
                ("rescue", &["no-rescue"]),
                ("storage", &["noop"]),
                ("vendor", &["no-vendor"]),
            ],
        ),
    ]
}

/// The active interfaces for one node.
pub struct InterfaceSet {
    pub power: Arc<dyn PowerInterface>,
    pub management: Arc<dyn ManagementInterface>,
    pub boot: Arc<dyn BootInterface>,
    pub deploy: Arc<dyn DeployInterface>,
    pub network: Arc<dyn NetworkInterface>,
}

/// All hardware types and interface implementations known to this conductor.
pub struct Registry {
    config: RegistryConfig,
    hardware: BTreeMap<String, HardwareType>,
    power: HashMap<String, Arc<dyn PowerInterface>>,
    management: HashMap<String, Arc<dyn ManagementInterface>>,
    boot: HashMap<String, Arc<dyn BootInterface>>,
    deploy: HashMap<String, Arc<dyn DeployInterface>>,
    network: HashMap<String, Arc<dyn NetworkInterface>>,
    /// Out-of-band inspect interfaces (the kind is otherwise passive: names only).
    inspect: HashMap<String, Arc<dyn InspectInterface>>,
    /// (kind, name) → out-of-band clean steps (`bios`, `firmware`: otherwise names only).
    steps: HashMap<(String, String), Arc<dyn OutOfBandSteps>>,
}

impl Registry {
    /// A registry with the built-in hardware types and the fake, noop and flat interfaces.
    /// Whoever assembles the service registers the rest (ipmitool, pxe, direct, ...).
    pub fn new(config: RegistryConfig) -> Registry {
        let mut r = Registry {
            hardware: builtin_hardware_types()
                .into_iter()
                .filter(|h| config.enabled_hardware_types.contains(&h.name))
                .map(|h| (h.name.clone(), h))
                .collect(),
            config,
            power: HashMap::new(),
            management: HashMap::new(),
            boot: HashMap::new(),
            deploy: HashMap::new(),
            network: HashMap::new(),
            inspect: HashMap::new(),
            steps: HashMap::new(),
        };
        r.power.insert("fake".into(), Arc::new(FakePower));
        r.management.insert("fake".into(), Arc::new(FakeManagement::default()));
        r.boot.insert("fake".into(), Arc::new(FakeBoot));
        r.deploy.insert("fake".into(), Arc::new(FakeDeploy));
        r.deploy.insert("direct".into(), Arc::new(super::direct::DirectDeploy));
        r.network.insert("noop".into(), Arc::new(NoopNetwork));
        r.network.insert("flat".into(), Arc::new(FlatNetwork));
        r
    }

    pub fn register_power(&mut self, name: &str, i: Arc<dyn PowerInterface>) {
        self.power.insert(name.into(), i);
    }
    pub fn register_management(&mut self, name: &str, i: Arc<dyn ManagementInterface>) {
        self.management.insert(name.into(), i);
    }
    pub fn register_boot(&mut self, name: &str, i: Arc<dyn BootInterface>) {
        self.boot.insert(name.into(), i);
    }
    pub fn register_deploy(&mut self, name: &str, i: Arc<dyn DeployInterface>) {
        self.deploy.insert(name.into(), i);
    }
    pub fn register_network(&mut self, name: &str, i: Arc<dyn NetworkInterface>) {
        self.network.insert(name.into(), i);
    }
    pub fn register_inspect(&mut self, name: &str, i: Arc<dyn InspectInterface>) {
        self.inspect.insert(name.into(), i);
    }

    /// Registers the out-of-band steps of the `kind` interface `name` (e.g. `bios`, `redfish`).
    pub fn register_steps(&mut self, kind: &str, name: &str, i: Arc<dyn OutOfBandSteps>) {
        self.steps.insert((kind.into(), name.into()), i);
    }

    /// The out-of-band steps of the `kind` interface `name`, if it has any.
    pub fn steps_interface(&self, kind: &str, name: &str) -> Option<Arc<dyn OutOfBandSteps>> {
        self.steps.get(&(kind.to_owned(), name.to_owned())).cloned()
    }

    /// The out-of-band inspect interface called `name`, if it is one.
    pub fn inspect_interface(&self, name: &str) -> Option<Arc<dyn InspectInterface>> {
        self.inspect.get(name).cloned()
    }

    /// Enabled hardware type names.
    pub fn hardware_types(&self) -> impl Iterator<Item = &HardwareType> {
        self.hardware.values()
    }

    pub fn hardware_type(&self, name: &str) -> Option<&HardwareType> {
        self.hardware.get(name)
    }

    fn implemented(&self, kind: &str, name: &str) -> bool {
        match kind {
            "power" => self.power.contains_key(name),
            "management" => self.management.contains_key(name),
            "boot" => self.boot.contains_key(name),
            "deploy" => self.deploy.contains_key(name),
            "network" => self.network.contains_key(name),
            // Passive kinds exist as names only.
            _ => true,
        }
    }

    /// Implementations of `kind` the hardware type supports, that are enabled and built in.
    pub fn enabled_interfaces(&self, hw: &str, kind: &str) -> Vec<String> {
        let Some(h) = self.hardware.get(hw) else { return Vec::new() };
        let enabled = self.config.enabled_interfaces.get(kind);
        h.supported
            .get(kind)
            .into_iter()
            .flatten()
            .filter(|n| enabled.is_none_or(|e| e.iter().any(|x| x == *n)))
            .filter(|n| self.implemented(kind, n))
            .map(|n| n.to_string())
            .collect()
    }

    /// The implementation a new node of `hw` gets for `kind`.
    pub fn default_interface(&self, hw: &str, kind: &str) -> Option<String> {
        let enabled = self.enabled_interfaces(hw, kind);
        if let Some(d) = self.config.default_interfaces.get(kind) {
            if enabled.contains(d) {
                return Some(d.clone());
            }
        }
        enabled.into_iter().next()
    }

    /// Fills unset interfaces with defaults and checks the chosen ones, as node create/update do.
    pub fn resolve_node_interfaces(&self, node: &mut Node) -> Result<(), DriverError> {
        if !self.hardware.contains_key(&node.driver) {
            return Err(DriverError::InvalidParameter(format!(
                "No valid host was found. Reason: No conductor service registered which supports driver {} for conductor group \"{}\". Ensure the driver is valid and enabled.",
                node.driver, node.conductor_group
            )));
        }
        let hw = node.driver.clone();
        for kind in INTERFACE_NAMES {
            let enabled = self.enabled_interfaces(&hw, kind);
            let Some(slot) = node.interface_mut(kind) else { continue };
            if slot.is_empty() {
                match self.default_interface(&hw, kind) {
                    Some(d) => *slot = d,
                    None => {
                        return Err(DriverError::InvalidParameter(format!(
                            "No default value found for {kind} interface of hardware type {hw}."
                        )));
                    }
                }
            } else if !enabled.contains(slot) {
                return Err(DriverError::InvalidParameter(format!(
                    "Could not find the following interface in the 'ironic.hardware.interfaces.{kind}' entrypoint: {slot}. Valid interfaces are {}.",
                    enabled.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Trait objects for a node's interfaces.
    pub fn interfaces_for(&self, node: &Node) -> Result<Arc<InterfaceSet>, DriverError> {
        fn pick<T: ?Sized>(m: &HashMap<String, Arc<T>>, kind: &str, name: &str) -> Result<Arc<T>, DriverError> {
            m.get(name).cloned().ok_or_else(|| {
                DriverError::Unsupported(format!("{kind} interface {name:?} is not available in this conductor"))
            })
        }
        Ok(Arc::new(InterfaceSet {
            power: pick(&self.power, "power", &node.power_interface)?,
            management: pick(&self.management, "management", &node.management_interface)?,
            boot: pick(&self.boot, "boot", &node.boot_interface)?,
            deploy: pick(&self.deploy, "deploy", &node.deploy_interface)?,
            network: pick(&self.network, "network", &node.network_interface)?,
        }))
    }
}
