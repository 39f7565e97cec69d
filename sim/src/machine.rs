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
}
