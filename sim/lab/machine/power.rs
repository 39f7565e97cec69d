//! A simulated machine: power and boot state on tokio's clock, with the timings a real server
//! has (an OS that takes a while to shut down on an ACPI request, or ignores it).

use async_trait::async_trait;
use ferric_sim::machine::{BootDevice, BootSelection, Inventory, Machine, MachineError, PowerState};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Timings and behaviour of a simulated machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimMachineConfig {
    /// Time from an ACPI soft-off request to power off.
    pub soft_off_delay_ms: u64,
    /// Whether the "OS" acts on ACPI soft-off at all.
    pub acpi_honored: bool,
    pub initially_on: bool,
    /// NIC MACs; empty means one MAC derived from the name.
    pub macs: Vec<[u8; 6]>,
    /// What a Redfish BMC reports of it.
    pub inventory: Inventory,
}

impl Default for SimMachineConfig {
    fn default() -> Self {
        Self {
            soft_off_delay_ms: 2_000,
            acpi_honored: true,
            initially_on: false,
            macs: Vec::new(),
            inventory: Inventory::default(),
        }
    }
}

/// What the machine looks like now; published on a watch channel so a simulation can react to
/// boots (e.g. start a PXE exchange) without polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineStatus {
    pub power: Option<PowerState>,
    /// Number of boots (power on, cycle, reset) so far.
    pub boots: u64,
    /// The selection the last boot used (device None: the machine's own boot order).
    pub last_boot: Option<BootSelection>,
}

/// Counts of what was applied to the machine (compare with the BMC's counters: a difference is
/// what the ignore-power knob or a machine fault swallowed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineStats {
    pub power_ons: u64,
    pub power_offs: u64,
    pub soft_off_requests: u64,
    pub resets: u64,
    pub boots: u64,
}

#[derive(Debug)]
struct State {
    power: PowerState,
    soft_off_at: Option<Instant>,
    boot: BootSelection,
    boots: u64,
    last_boot: Option<BootSelection>,
    stats: MachineStats,
    /// The URL in the virtual CD drive (fetched when the machine boots from it).
    media: Option<String>,
    /// The UEFI HTTP boot URI (a Redfish BMC's `HttpBootUri`), used by an EFI network boot.
    http_boot_uri: Option<String>,
    /// The URI the last boot started a UEFI HTTP boot from.
    last_boot_uri: Option<String>,
}

/// A machine whose state is a few fields and whose time is `tokio::time`.
#[derive(Debug)]
pub struct SimMachine {
    name: String,
    macs: Vec<[u8; 6]>,
    inventory: Inventory,
    soft_off_delay: Duration,
    acpi_honored: AtomicBool,
    /// Power operations fail with `Unresponsive` while set (a wedged machine behind a live BMC).
    wedged: AtomicBool,
    state: Mutex<State>,
    status: watch::Sender<MachineStatus>,
    ops: AtomicU64,
}

impl SimMachine {
    pub fn new(name: impl Into<String>, config: SimMachineConfig) -> Self {
        let name = name.into();
        let macs = if config.macs.is_empty() { vec![derived_mac(&name)] } else { config.macs.clone() };
        let power = if config.initially_on { PowerState::On } else { PowerState::Off };
        let (status, _) = watch::channel(MachineStatus { power: Some(power), ..Default::default() });
        Self {
            name,
            macs,
            inventory: config.inventory.clone(),
            soft_off_delay: Duration::from_millis(config.soft_off_delay_ms),
            acpi_honored: AtomicBool::new(config.acpi_honored),
            wedged: AtomicBool::new(false),
            state: Mutex::new(State {
                power,
                soft_off_at: None,
                boot: BootSelection::default(),
                boots: 0,
                last_boot: None,
                stats: MachineStats::default(),
                media: None,
                http_boot_uri: None,
                last_boot_uri: None,
            }),
            status,
            ops: AtomicU64::new(0),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<MachineStatus> {
        self.status.subscribe()
    }
    pub fn stats(&self) -> MachineStats {
        self.lock().stats
    }
    pub fn set_acpi_honored(&self, v: bool) {
        self.acpi_honored.store(v, Relaxed)
    }
    pub fn set_wedged(&self, v: bool) {
        self.wedged.store(v, Relaxed)
    }
    /// Current power without going through the trait (tests, invariants).
    /// The image URL in the virtual CD drive, if any.
    pub fn media(&self) -> Option<String> {
        self.lock().media.clone()
    }
    /// The UEFI HTTP boot URI the BMC set, if any.
    pub fn http_boot_uri(&self) -> Option<String> {
        self.lock().http_boot_uri.clone()
    }
    /// The URI the last boot fetched by UEFI HTTP boot (an EFI network boot with a URI set).
    pub fn last_boot_uri(&self) -> Option<String> {
        self.lock().last_boot_uri.clone()
    }
    pub fn power_now(&self) -> PowerState {
        let mut st = self.lock();
        self.settle(&mut st);
        st.power
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a pending soft-off whose time has come.
    fn settle(&self, st: &mut State) {
        if let Some(t) = st.soft_off_at
            && Instant::now() >= t
        {
            st.soft_off_at = None;
            st.power = PowerState::Off;
            st.stats.power_offs += 1;
            self.publish(st);
        }
    }

    fn publish(&self, st: &State) {
        self.status.send_replace(MachineStatus { power: Some(st.power), boots: st.boots, last_boot: st.last_boot });
    }

    fn boot_now(&self, st: &mut State) {
        st.boots += 1;
        st.stats.boots += 1;
        st.last_boot = Some(st.boot);
        let http = st.boot.device == BootDevice::Pxe && st.boot.efi;
        st.last_boot_uri = if http { st.http_boot_uri.clone() } else { None };
        if !st.boot.persistent {
            st.boot = BootSelection::default();
        }
    }

    fn check(&self) -> Result<(), MachineError> {
        self.ops.fetch_add(1, Relaxed);
        if self.wedged.load(Relaxed) { Err(MachineError::Unresponsive) } else { Ok(()) }
    }
}

/// A locally administered MAC derived from the name (stable across runs).
fn derived_mac(name: &str) -> [u8; 6] {
    let h =
        name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)).to_be_bytes();
    [0x52, 0x54, h[0], h[1], h[2], h[3]]
}

#[async_trait]
impl Machine for SimMachine {
    fn name(&self) -> &str {
        &self.name
    }
    fn macs(&self) -> Vec<[u8; 6]> {
        self.macs.clone()
    }
    async fn power_state(&self) -> Result<PowerState, MachineError> {
        self.check()?;
        let mut st = self.lock();
        self.settle(&mut st);
        Ok(st.power)
    }
    async fn power_on(&self) -> Result<(), MachineError> {
        self.check()?;
        let mut st = self.lock();
        self.settle(&mut st);
        if st.power == PowerState::Off {
            st.power = PowerState::On;
            st.stats.power_ons += 1;
            self.boot_now(&mut st);
            self.publish(&st);
        }
        Ok(())
    }
    async fn power_off(&self) -> Result<(), MachineError> {
        self.check()?;
        let mut st = self.lock();
        self.settle(&mut st);
        st.soft_off_at = None;
        if st.power == PowerState::On {
            st.power = PowerState::Off;
            st.stats.power_offs += 1;
            self.publish(&st);
        }
        Ok(())
    }
    async fn soft_off(&self) -> Result<(), MachineError> {
        self.check()?;
        let mut st = self.lock();
        self.settle(&mut st);
        st.stats.soft_off_requests += 1;
        if st.power == PowerState::On && st.soft_off_at.is_none() && self.acpi_honored.load(Relaxed) {
            st.soft_off_at = Some(Instant::now() + self.soft_off_delay);
            drop(st);
            if self.soft_off_delay.is_zero() {
                let mut st = self.lock();
                self.settle(&mut st);
            }
        }
        Ok(())
    }
    async fn reset(&self) -> Result<(), MachineError> {
        self.check()?;
        let mut st = self.lock();
        self.settle(&mut st);
        if st.power != PowerState::On {
            return Err(MachineError::Failed("reset while powered off".into()));
        }
        st.soft_off_at = None;
        st.stats.resets += 1;
        self.boot_now(&mut st);
        self.publish(&st);
        Ok(())
    }
    async fn power_cycle(&self) -> Result<(), MachineError> {
        self.check()?;
        let mut st = self.lock();
        self.settle(&mut st);
        st.soft_off_at = None;
        if st.power == PowerState::On {
            st.stats.power_offs += 1;
        }
        st.power = PowerState::On;
        st.stats.power_ons += 1;
        self.boot_now(&mut st);
        self.publish(&st);
        Ok(())
    }
    async fn set_boot(&self, selection: BootSelection) -> Result<(), MachineError> {
        self.check()?;
        let sel = if selection.device == BootDevice::None { BootSelection::default() } else { selection };
        self.lock().boot = sel;
        Ok(())
    }
    async fn boot(&self) -> Result<BootSelection, MachineError> {
        self.check()?;
        Ok(self.lock().boot)
    }
    fn inventory(&self) -> Inventory {
        self.inventory.clone()
    }
    async fn insert_media(&self, url: &str) -> Result<(), MachineError> {
        self.check()?;
        self.lock().media = Some(url.to_string());
        Ok(())
    }
    async fn eject_media(&self) -> Result<(), MachineError> {
        self.check()?;
        self.lock().media = None;
        Ok(())
    }
    /// Stored with no `check()`: the BMC sends it (mostly `None`) with every boot selection,
    /// and the selection's own `set_boot` is what a wedged machine refuses.
    async fn set_http_boot_uri(&self, uri: Option<String>) -> Result<(), MachineError> {
        self.lock().http_boot_uri = uri;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn soft_off_takes_its_delay_and_one_time_boot_is_consumed() {
        let m = SimMachine::new("n0", SimMachineConfig { soft_off_delay_ms: 5_000, ..Default::default() });
        m.set_boot(BootSelection { device: BootDevice::Pxe, persistent: false, efi: true }).await.unwrap();
        m.power_on().await.unwrap();
        assert_eq!(m.boot().await.unwrap(), BootSelection::default());
        assert_eq!(m.subscribe().borrow().last_boot.unwrap().device, BootDevice::Pxe);
        m.soft_off().await.unwrap();
        tokio::time::sleep(Duration::from_millis(4_999)).await;
        assert_eq!(m.power_state().await.unwrap(), PowerState::On);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(m.power_state().await.unwrap(), PowerState::Off);
        assert_eq!(m.stats().power_offs, 1);
    }
}
