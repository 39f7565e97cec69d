//! The hardware a virtual BMC drives. One trait, so the same BMC code fronts a simulated machine
//! (virtual clock, fault knobs) or a QEMU VM (real firmware, real PXE).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Chassis power as a BMC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    On,
    Off,
}

/// Boot devices a BMC can select (IPMI boot option parameter 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    /// No override: the machine's own boot order.
    #[default]
    None,
    Pxe,
    Disk,
    Cdrom,
    Bios,
}

/// A boot device override as the BMC stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct BootSelection {
    pub device: BootDevice,
    /// Applies to every boot rather than only the next one.
    pub persistent: bool,
    /// EFI boot rather than legacy BIOS.
    pub efi: bool,
}

/// Why a machine could not do what its BMC asked.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("machine is not responding")]
    Unresponsive,
    #[error("machine failed: {0}")]
    Failed(String),
    /// The machine has no such device (no virtual media drive, say).
    #[error("not supported by this machine: {0}")]
    Unsupported(&'static str),
}

/// What a BMC reports of a machine's hardware (Redfish's ProcessorSummary, MemorySummary,
/// storage and NICs; IPMI reports none of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Logical CPUs.
    pub cpus: u32,
    /// CPU architecture as Redfish names it (`x86-64`).
    pub cpu_arch: String,
    /// Installed memory, MiB.
    pub memory_mib: u64,
    /// Disk sizes in bytes, in slot order (the first is the root device).
    pub disks: Vec<u64>,
}

impl Default for Inventory {
    fn default() -> Self {
        Self { cpus: 2, cpu_arch: "x86-64".into(), memory_mib: 4096, disks: vec![10 << 30] }
    }
}

/// The machine behind a BMC. Implementations consume a non-persistent boot selection when they
/// boot (power on, reset, cycle), as real firmware clears the IPMI boot-flags valid bit.
#[async_trait]
pub trait Machine: Send + Sync + 'static {
    /// Stable name (used in logs and traces).
    fn name(&self) -> &str;
    /// MAC addresses of the machine's NICs, in slot order.
    fn macs(&self) -> Vec<[u8; 6]>;
    async fn power_state(&self) -> Result<PowerState, MachineError>;
    async fn power_on(&self) -> Result<(), MachineError>;
    /// Hard power off.
    async fn power_off(&self) -> Result<(), MachineError>;
    /// ACPI soft shutdown request; the OS may take a while, or ignore it.
    async fn soft_off(&self) -> Result<(), MachineError>;
    /// Hard reset (power stays on).
    async fn reset(&self) -> Result<(), MachineError>;
    /// Off, then on.
    async fn power_cycle(&self) -> Result<(), MachineError> {
        self.power_off().await?;
        self.power_on().await
    }
    async fn set_boot(&self, selection: BootSelection) -> Result<(), MachineError>;
    async fn boot(&self) -> Result<BootSelection, MachineError>;
    /// CPUs, memory, disks (what a Redfish BMC reports; MACs come from [`Machine::macs`]).
    fn inventory(&self) -> Inventory {
        Inventory::default()
    }
    /// Puts the image at `url` into the machine's virtual CD drive (a Redfish BMC's
    /// `InsertMedia`). A machine may fetch it now (QEMU) or when it boots from the CD
    /// (simulated); a boot from [`BootDevice::Cdrom`] then starts what the image holds.
    async fn insert_media(&self, url: &str) -> Result<(), MachineError> {
        let _ = url;
        Err(MachineError::Unsupported("virtual media"))
    }
    /// Empties the virtual CD drive (`EjectMedia`); empty already is fine.
    async fn eject_media(&self) -> Result<(), MachineError> {
        Err(MachineError::Unsupported("virtual media"))
    }
    /// The URI a UEFI HTTP boot fetches (a Redfish BMC's `HttpBootUri` with the override target
    /// `UefiHttp`, which the BMC selects as an EFI [`BootDevice::Pxe`]); `None`: a network boot
    /// is a plain PXE boot again. A Redfish BMC calls it before every boot selection it makes.
    /// Clearing is always fine; a machine without UEFI HTTP boot (QEMU with SeaBIOS) refuses a
    /// URI.
    async fn set_http_boot_uri(&self, uri: Option<String>) -> Result<(), MachineError> {
        match uri {
            None => Ok(()),
            Some(_) => Err(MachineError::Unsupported("UEFI HTTP boot")),
        }
    }
}
