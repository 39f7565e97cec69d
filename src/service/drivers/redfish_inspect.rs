//! The `redfish` inspect interface (Ironic's out-of-band inspection): CPUs, memory, disks and NICs
//! read from the System (`ProcessorSummary`, `Processors`, `MemorySummary`, `SimpleStorage`,
//! `Storage`, `EthernetInterfaces`), recorded as Ironic's redfish inspection records them:
//! `cpus`, `cpu_arch`, `memory_mb` and `local_gb` (the smallest disk of at least 4 GiB, in GiB,
//! less one), and one port per NIC MAC.

use super::redfish::{NodeBmc, parse_driver_info, redfish_err};
use super::{DriverError, InspectInterface, Task};
use crate::redfish::RedfishPool;
use crate::redfish::model::{Drive, EthernetInterface, Processor, SimpleStorage, Storage};
use async_trait::async_trait;
use ferric_types::models::MacAddr;
use std::sync::Arc;

const GIB: u64 = 1 << 30;

/// Inspection through the BMC.
pub struct RedfishInspect {
    pool: Arc<RedfishPool>,
}

impl RedfishInspect {
    pub fn new(pool: Arc<RedfishPool>) -> RedfishInspect {
        RedfishInspect { pool }
    }
}

/// Ironic's `cpu_arch` for a Processor's `InstructionSet` (else `ProcessorArchitecture`).
pub fn cpu_arch(p: &Processor) -> Option<&'static str> {
    match p.instruction_set.as_deref() {
        Some("x86-64") => return Some("x86_64"),
        Some("x86") => return Some("i686"),
        Some("IA-64") => return Some("ia64"),
        Some("ARM-A64") => return Some("aarch64"),
        Some("ARM-A32") => return Some("arm"),
        Some("PowerISA") => return Some("ppc64le"),
        Some("MIPS64") => return Some("mips64"),
        _ => {}
    }
    match p.processor_architecture.as_deref() {
        Some("x86") => Some("x86_64"),
        Some("IA-64") => Some("ia64"),
        Some("ARM") => Some("aarch64"),
        Some("Power") => Some("ppc64le"),
        Some("MIPS") => Some("mips"),
        _ => None,
    }
}

/// `local_gb` from disk sizes: the smallest of at least 4 GiB, in GiB, less one (Ironic's rule,
/// leaving room for partitioning); 0 when there is none.
pub fn local_gb(sizes: &[u64]) -> u64 {
    sizes.iter().copied().filter(|s| *s >= 4 * GIB).min().map_or(0, |s| (s / GIB).saturating_sub(1))
}

impl RedfishInspect {
    async fn members_as<T: serde::de::DeserializeOwned>(
        bmc: &NodeBmc,
        collection: &str,
    ) -> Result<Vec<T>, DriverError> {
        let mut out = Vec::new();
        for m in bmc.client.members(collection).await.map_err(redfish_err)? {
            out.push(bmc.client.get_as(&m).await.map_err(redfish_err)?);
        }
        Ok(out)
    }

    async fn disk_sizes(bmc: &NodeBmc, sys: &crate::redfish::model::ComputerSystem) -> Result<Vec<u64>, DriverError> {
        let mut sizes = Vec::new();
        if let Some(ss) = &sys.simple_storage {
            for s in Self::members_as::<SimpleStorage>(bmc, &ss.odata_id).await? {
                sizes.extend(s.devices.iter().filter_map(|d| d.capacity_bytes));
            }
        }
        if let Some(st) = &sys.storage {
            for s in Self::members_as::<Storage>(bmc, &st.odata_id).await? {
                for d in s.drives {
                    let drive: Drive = bmc.client.get_as(&d.odata_id).await.map_err(redfish_err)?;
                    sizes.extend(drive.capacity_bytes);
                }
            }
        }
        Ok(sizes)
    }
}

#[async_trait]
impl InspectInterface for RedfishInspect {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        parse_driver_info(task).map(|_| ())
    }

    async fn inspect_hardware(&self, task: &mut Task) -> Result<Vec<MacAddr>, DriverError> {
        let bmc = NodeBmc::open(&self.pool, task).await?;
        let sys = bmc.system().await?;
        let mut props = serde_json::Map::new();
        let mut arch = None;
        if let Some(p) = &sys.processors {
            arch = Self::members_as::<Processor>(&bmc, &p.odata_id).await?.iter().find_map(cpu_arch);
        }
        match sys.processor_summary.count {
            Some(n) => {
                props.insert("cpus".into(), n.into());
            }
            None => tracing::warn!(node = %task.node.uuid, "Redfish inspection: the BMC reports no CPU count"),
        }
        if let Some(a) = arch {
            props.insert("cpu_arch".into(), a.into());
        }
        match sys.memory_summary.total_system_memory_gib {
            Some(g) => {
                props.insert("memory_mb".into(), ((g * 1024.0).round() as u64).into());
            }
            None => tracing::warn!(node = %task.node.uuid, "Redfish inspection: the BMC reports no memory size"),
        }
        let disks = Self::disk_sizes(&bmc, &sys).await?;
        props.insert("local_gb".into(), local_gb(&disks).into());
        let mut macs = Vec::new();
        if let Some(e) = &sys.ethernet_interfaces {
            for nic in Self::members_as::<EthernetInterface>(&bmc, &e.odata_id).await? {
                let mac = nic.mac_address.or(nic.permanent_mac_address);
                match mac.as_deref().map(str::parse::<MacAddr>) {
                    Some(Ok(m)) if !macs.contains(&m) => macs.push(m),
                    Some(Err(_)) => {
                        tracing::warn!(node = %task.node.uuid, mac = ?mac, "Redfish inspection: invalid MAC")
                    }
                    _ => {}
                }
            }
        }
        for (k, v) in props {
            task.node.properties.insert(k, v);
        }
        tracing::info!(node = %task.node.uuid, props = ?task.node.properties, nics = macs.len(), "inspected through Redfish");
        Ok(macs)
    }
}

/// Registers the `redfish` inspect interface.
pub fn register(registry: &mut super::Registry, pool: Arc<RedfishPool>) {
    registry.register_inspect("redfish", Arc::new(RedfishInspect::new(pool)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ironic_properties() {
        assert_eq!(local_gb(&[]), 0);
        assert_eq!(local_gb(&[GIB, 100 * GIB, 50 * GIB]), 49);
        let p = |isa: Option<&str>, arch: Option<&str>| Processor {
            instruction_set: isa.map(Into::into),
            processor_architecture: arch.map(Into::into),
            ..Default::default()
        };
        assert_eq!(cpu_arch(&p(Some("x86-64"), Some("x86"))), Some("x86_64"));
        assert_eq!(cpu_arch(&p(Some("ARM-A64"), None)), Some("aarch64"));
        assert_eq!(cpu_arch(&p(None, Some("x86"))), Some("x86_64"));
        assert_eq!(cpu_arch(&p(None, None)), None);
    }
}
