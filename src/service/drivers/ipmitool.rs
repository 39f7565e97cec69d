//! The `ipmitool` power and management interfaces of the `ipmi` hardware type (Ironic's names),
//! over ferric's own RMCP+ client (`crate::ipmi`): one session per BMC, bounded retries, and a
//! check after every power change that the BMC really reached the requested state.

use super::{DriverError, ManagementInterface, PowerInterface, Task};
use crate::ipmi::{self, IpmiError, IpmiPool, Privilege, Target};
use async_trait::async_trait;
use ferric_types::models::{BootDevice, PowerState, PowerTarget};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Timing of power changes.
#[derive(Debug, Clone)]
pub struct PowerTiming {
    /// How long a power change may take before it counts as failed (Ironic's
    /// `[conductor]power_state_change_timeout`).
    pub change_timeout: Duration,
    /// How often the power state is polled while waiting.
    pub poll_interval: Duration,
}

impl Default for PowerTiming {
    fn default() -> Self {
        PowerTiming { change_timeout: Duration::from_secs(60), poll_interval: Duration::from_secs(1) }
    }
}

fn info_str(info: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match info.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Reads Ironic's `ipmi_*` driver_info into a [`Target`], with Ironic's messages for what is
/// missing or wrong.
pub fn target_from(task: &Task) -> Result<Target, DriverError> {
    let info = &task.node.driver_info;
    let Some(address) = info_str(info, "ipmi_address").filter(|a| !a.is_empty()) else {
        return Err(DriverError::MissingParameter(
            "Missing the following IPMI credentials in node's driver_info: ['ipmi_address'].".into(),
        ));
    };
    let port = match info_str(info, "ipmi_port") {
        None => 623,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| DriverError::InvalidParameter(format!("IPMI terminal port is not an integer: {p}")))?,
    };
    let suite = match info_str(info, "ipmi_cipher_suite") {
        None => 3,
        Some(s) => match s.parse::<u8>() {
            Ok(n @ (0 | 1 | 2 | 3 | 17)) => n,
            _ => {
                return Err(DriverError::InvalidParameter(format!(
                    "Invalid value for ipmi_cipher_suite: {s}. Supported cipher suites are 0, 1, 2, 3 and 17."
                )));
            }
        },
    };
    let privilege = match info_str(info, "ipmi_priv_level") {
        None => Privilege::Administrator,
        Some(p) => Privilege::parse(&p).ok_or_else(|| {
            DriverError::InvalidParameter(format!(
                "Invalid privilege level value:{p}, the valid value can be one of ADMINISTRATOR, CALLBACK, OPERATOR, USER"
            ))
        })?,
    };
    if let Some(b) = info_str(info, "ipmi_bridging") {
        if b != "no" {
            return Err(DriverError::InvalidParameter(format!(
                "Value for ipmi_bridging is provided as {b}, but IPMI bridging is not supported by ferric's IPMI client."
            )));
        }
    }
    if let Some(v) = info_str(info, "ipmi_protocol_version") {
        if v != "2.0" {
            return Err(DriverError::InvalidParameter(format!(
                "Invalid IPMI protocol version value {v}, the valid value can be one of 2.0"
            )));
        }
    }
    let username = info_str(info, "ipmi_username").unwrap_or_default();
    let password = info_str(info, "ipmi_password").unwrap_or_default();
    if username.len() > 16 || password.len() > 20 {
        return Err(DriverError::InvalidParameter(
            "IPMI user names are at most 16 bytes and passwords at most 20 bytes.".into(),
        ));
    }
    Ok(Target::new(address, username, &password).with_port(port).with_cipher_suite(suite).with_privilege(privilege))
}

fn ipmi_err(e: IpmiError) -> DriverError {
    match e {
        IpmiError::Timeout { .. } => DriverError::Timeout(format!("IPMI call failed: {e}")),
        other => DriverError::Failed(format!("IPMI call failed: {other}")),
    }
}

/// UEFI nodes get EFI boot flags (Ironic reads `boot_mode`, or the `boot_mode` capability).
fn wants_efi(task: &Task) -> bool {
    if let Some(m) = &task.node.boot_mode {
        return m == "uefi";
    }
    let caps = task.node.properties.get("capabilities").and_then(|c| c.as_str()).unwrap_or("");
    caps.split(',').any(|c| c.trim() == "boot_mode:uefi")
}

/// Power through the BMC.
pub struct IpmitoolPower {
    pool: Arc<IpmiPool>,
    timing: PowerTiming,
}

impl IpmitoolPower {
    pub fn new(pool: Arc<IpmiPool>, timing: PowerTiming) -> IpmitoolPower {
        IpmitoolPower { pool, timing }
    }

    fn client(&self, task: &Task) -> Result<Arc<ipmi::IpmiClient>, DriverError> {
        Ok(self.pool.client(&target_from(task)?))
    }

    /// Polls until the chassis reports `want`, or fails after `timeout`.
    async fn wait_for(
        &self,
        bmc: &ipmi::IpmiClient,
        want: ipmi::PowerState,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match bmc.power_state().await {
                Ok(s) if s == want => return Ok(()),
                Ok(_) => {}
                Err(e) if e.is_transient() => tracing::debug!(error = %e, "power state poll failed; retrying"),
                Err(e) => return Err(ipmi_err(e)),
            }
            if tokio::time::Instant::now() >= deadline {
                let want = if want == ipmi::PowerState::On { "power on" } else { "power off" };
                return Err(DriverError::Timeout(format!(
                    "IPMI power change did not complete: the node did not reach {want} within {} seconds.",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(self.timing.poll_interval).await;
        }
    }

    async fn turn(&self, bmc: &ipmi::IpmiClient, on: bool, timeout: Duration) -> Result<(), DriverError> {
        let want = if on { ipmi::PowerState::On } else { ipmi::PowerState::Off };
        if bmc.power_state().await.map_err(ipmi_err)? == want {
            return Ok(());
        }
        if on { bmc.power_on().await } else { bmc.power_off().await }.map_err(ipmi_err)?;
        self.wait_for(bmc, want, timeout).await
    }
}

#[async_trait]
impl PowerInterface for IpmitoolPower {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        target_from(task).map(|_| ())
    }

    async fn get_power_state(&self, task: &mut Task) -> Result<PowerState, DriverError> {
        let bmc = self.client(task)?;
        Ok(match bmc.power_state().await.map_err(ipmi_err)? {
            ipmi::PowerState::On => PowerState::On,
            ipmi::PowerState::Off => PowerState::Off,
        })
    }

    async fn set_power_state(
        &self,
        task: &mut Task,
        target: PowerTarget,
        timeout: Option<Duration>,
    ) -> Result<(), DriverError> {
        let bmc = self.client(task)?;
        let timeout = timeout.unwrap_or(self.timing.change_timeout);
        match target {
            PowerTarget::On => self.turn(&bmc, true, timeout).await,
            PowerTarget::Off => self.turn(&bmc, false, timeout).await,
            // Off then on (not a chassis reset), so a new boot device applies, as Ironic does.
            PowerTarget::Reboot => {
                self.turn(&bmc, false, timeout).await?;
                self.turn(&bmc, true, timeout).await
            }
            PowerTarget::SoftOff | PowerTarget::SoftReboot => {
                if bmc.power_state().await.map_err(ipmi_err)? == ipmi::PowerState::On {
                    bmc.power_soft().await.map_err(ipmi_err)?;
                    self.wait_for(&bmc, ipmi::PowerState::Off, timeout).await?;
                }
                if target == PowerTarget::SoftReboot {
                    self.turn(&bmc, true, timeout).await?;
                }
                Ok(())
            }
        }
    }

    fn supported_power_states(&self) -> Vec<PowerTarget> {
        PowerTarget::ALL.to_vec()
    }
}

/// Boot devices through the BMC's boot options.
pub struct IpmitoolManagement {
    pool: Arc<IpmiPool>,
}

impl IpmitoolManagement {
    pub fn new(pool: Arc<IpmiPool>) -> IpmitoolManagement {
        IpmitoolManagement { pool }
    }
}

#[async_trait]
impl ManagementInterface for IpmitoolManagement {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        target_from(task).map(|_| ())
    }

    fn supported_boot_devices(&self) -> Vec<BootDevice> {
        vec![BootDevice::Pxe, BootDevice::Disk, BootDevice::Cdrom, BootDevice::Bios]
    }

    async fn set_boot_device(&self, task: &mut Task, device: BootDevice, persistent: bool) -> Result<(), DriverError> {
        let dev = match device {
            BootDevice::Pxe => ipmi::BootDevice::Pxe,
            BootDevice::Disk => ipmi::BootDevice::Disk,
            BootDevice::Cdrom => ipmi::BootDevice::Cdrom,
            BootDevice::Bios => ipmi::BootDevice::Bios,
            BootDevice::Safe => {
                return Err(DriverError::InvalidParameter("Boot device safe is not supported by ipmitool.".into()));
            }
        };
        let bmc = self.pool.client(&target_from(task)?);
        bmc.set_boot_device(dev, persistent, wants_efi(task)).await.map_err(ipmi_err)
    }

    async fn get_boot_device(&self, task: &mut Task) -> Result<(Option<BootDevice>, Option<bool>), DriverError> {
        let bmc = self.pool.client(&target_from(task)?);
        let s = bmc.get_boot_device().await.map_err(ipmi_err)?;
        if !s.valid {
            return Ok((None, None));
        }
        let dev = match s.device {
            ipmi::BootDevice::Pxe => Some(BootDevice::Pxe),
            ipmi::BootDevice::Disk => Some(BootDevice::Disk),
            ipmi::BootDevice::Cdrom => Some(BootDevice::Cdrom),
            ipmi::BootDevice::Bios => Some(BootDevice::Bios),
            ipmi::BootDevice::None | ipmi::BootDevice::Other(_) => None,
        };
        Ok((dev, Some(s.persistent)))
    }
}

/// Registers `ipmitool` power and management on a registry.
pub fn register(registry: &mut super::Registry, pool: Arc<IpmiPool>, timing: PowerTiming) {
    registry.register_power("ipmitool", Arc::new(IpmitoolPower::new(pool.clone(), timing)));
    registry.register_management("ipmitool", Arc::new(IpmitoolManagement::new(pool)));
}
