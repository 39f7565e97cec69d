//! The `ipmitool` power and management interfaces of the `ipmi` hardware type (Ironic's names),
//! over ferric's own RMCP+ client (`crate::ipmi`): one session per BMC, bounded retries. A power
//! change is asked of the BMC; the conductor then polls until the BMC reports the new state.

use super::{DriverError, ManagementInterface, PowerInterface, PowerProgress, PowerRequest, Task};
use crate::ipmi::{self, IpmiError, IpmiPool, Privilege, Target};
use async_trait::async_trait;
use ferric_types::models::{BootDevice, PowerState, PowerTarget};
use serde_json::Value;
use std::sync::Arc;

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
        other if other.is_transient() => DriverError::Busy(format!("IPMI call failed: {other}")),
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
}

impl IpmitoolPower {
    pub fn new(pool: Arc<IpmiPool>) -> IpmitoolPower {
        IpmitoolPower { pool }
    }

    fn client(&self, task: &Task) -> Result<Arc<ipmi::IpmiClient>, DriverError> {
        Ok(self.pool.client(&target_from(task)?))
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

    /// Reads the chassis first: a node already there is not sent a command (a hard off of an
    /// off node, or a soft off, would otherwise be answered with an error by some BMCs).
    async fn request_power(&self, task: &mut Task, request: PowerRequest) -> Result<PowerProgress, DriverError> {
        let bmc = self.client(task)?;
        let now = bmc.power_state().await.map_err(ipmi_err)?;
        let on = now == ipmi::PowerState::On;
        match request {
            PowerRequest::On if on => Ok(PowerProgress::Reached),
            PowerRequest::Off | PowerRequest::SoftOff if !on => Ok(PowerProgress::Reached),
            PowerRequest::On => bmc.power_on().await.map(|_| PowerProgress::Requested).map_err(ipmi_err),
            PowerRequest::Off => bmc.power_off().await.map(|_| PowerProgress::Requested).map_err(ipmi_err),
            PowerRequest::SoftOff => bmc.power_soft().await.map(|_| PowerProgress::Requested).map_err(ipmi_err),
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
            BootDevice::Safe | BootDevice::UefiHttp => {
                return Err(DriverError::InvalidParameter(format!(
                    "Boot device {device} is not supported by ipmitool."
                )));
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
pub fn register(registry: &mut super::Registry, pool: Arc<IpmiPool>) {
    registry.register_power("ipmitool", Arc::new(IpmitoolPower::new(pool.clone())));
    registry.register_management("ipmitool", Arc::new(IpmitoolManagement::new(pool)));
}
