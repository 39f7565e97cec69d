//! The `redfish` power and management interfaces of the `redfish` hardware type (Ironic's names
//! and `driver_info`), over ferric's Redfish client (`crate::redfish`): one session per BMC and
//! user, shared by all nodes. As with `ipmitool`, a power change is asked of the BMC and the
//! conductor polls until the System reports the new state (a soft power off that does not end in
//! time is followed by a hard one, by the conductor, for every driver alike).

use super::{DriverError, ManagementInterface, PowerInterface, PowerProgress, PowerRequest, Task};
use super::{IndicatorInfo, Indicators};
use crate::redfish::model::ComputerSystem;
use crate::redfish::{AuthType, Endpoint, RedfishClient, RedfishError, RedfishPool, Secret};
use async_trait::async_trait;
use ferric_types::http::TlsVerify;
use ferric_types::models::{BootDevice, PowerState, PowerTarget};
use serde_json::{Value, json};
use std::sync::Arc;

/// A node's `redfish_*` driver_info, checked.
#[derive(Debug, Clone)]
pub struct RedfishInfo {
    pub endpoint: Endpoint,
    /// `redfish_system_id`: a path or an `Id`; `None` when the BMC has one System.
    pub system_id: Option<String>,
}

fn info_str(info: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match info.get(key)? {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `redfish_verify_ca`: a boolean (or its string), or the path of a CA bundle or of a directory
/// of CA certificates.
fn verify_ca(task: &Task) -> Result<TlsVerify, DriverError> {
    let bad = |v: &str| {
        DriverError::InvalidParameter(format!(
            "Invalid value type set in driver_info/redfish_verify_ca on node {}. The value should be a Boolean or the path to a file/directory, not \"{v}\"",
            task.node.uuid
        ))
    };
    match task.node.driver_info.get("redfish_verify_ca") {
        None | Some(Value::Null) => Ok(TlsVerify::Default),
        Some(Value::Bool(true)) => Ok(TlsVerify::Default),
        Some(Value::Bool(false)) => Ok(TlsVerify::Insecure),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "y" | "t" => Ok(TlsVerify::Default),
            "false" | "no" | "off" | "0" | "n" | "f" => Ok(TlsVerify::Insecure),
            _ if std::path::Path::new(s.trim()).exists() => Ok(TlsVerify::CaFile(s.trim().into())),
            _ => Err(bad(s)),
        },
        Some(other) => Err(bad(&other.to_string())),
    }
}

/// Reads Ironic's `redfish_*` driver_info, with Ironic's messages for what is missing or wrong.
pub fn parse_driver_info(task: &Task) -> Result<RedfishInfo, DriverError> {
    let info = &task.node.driver_info;
    let uuid = task.node.uuid;
    let Some(address) = info_str(info, "redfish_address") else {
        return Err(DriverError::MissingParameter(format!(
            "Missing the following Redfish properties in node {uuid} driver_info: ['redfish_address']"
        )));
    };
    let base = Endpoint::parse_address(&address).map_err(|why| {
        DriverError::InvalidParameter(format!(
            "Invalid Redfish address {address} set in driver_info/redfish_address on node {uuid}: {why}"
        ))
    })?;
    let system_id = info_str(info, "redfish_system_id");
    if let Some(s) = &system_id
        && (s.contains("://") || s.contains(char::is_whitespace))
    {
        return Err(DriverError::InvalidParameter(format!(
            "Invalid value \"{s}\" set in driver_info/redfish_system_id on node {uuid}. The value should be a path (e.g. /redfish/v1/Systems/1) or a system identity"
        )));
    }
    let auth = match info_str(info, "redfish_auth_type") {
        None => AuthType::Auto,
        Some(a) => AuthType::parse(&a).ok_or_else(|| {
            DriverError::InvalidParameter(format!(
                "Invalid value \"{a}\" set in driver_info/redfish_auth_type on node {uuid}. The value should be one of \"basic\", \"session\", \"auto\""
            ))
        })?,
    };
    Ok(RedfishInfo {
        endpoint: Endpoint {
            base,
            username: info_str(info, "redfish_username").unwrap_or_default(),
            password: Secret::new(info_str(info, "redfish_password").unwrap_or_default()),
            verify: verify_ca(task)?,
            auth,
        },
        system_id,
    })
}

/// Maps a Redfish failure to the driver's error, once, at this boundary.
pub fn redfish_err(e: RedfishError) -> DriverError {
    match e {
        RedfishError::TaskTimeout { .. } => DriverError::Timeout(format!("Redfish call failed: {e}")),
        e if e.is_transient() => DriverError::Busy(format!("Redfish call failed: {e}")),
        RedfishError::Config(m) => DriverError::InvalidParameter(m),
        e => DriverError::Failed(format!("Redfish call failed: {e}")),
    }
}

/// A client for the node's BMC and the path of its System.
pub struct NodeBmc {
    pub client: RedfishClient,
    pub system: String,
}

impl NodeBmc {
    /// Connects (sharing the pool's session) and finds the node's System from the service root.
    pub async fn open(pool: &RedfishPool, task: &Task) -> Result<NodeBmc, DriverError> {
        let info = parse_driver_info(task)?;
        let client = pool.client(info.endpoint).map_err(redfish_err)?;
        let system = client.system_path(info.system_id.as_deref()).await.map_err(redfish_err)?;
        Ok(NodeBmc { client, system })
    }

    pub async fn system(&self) -> Result<ComputerSystem, DriverError> {
        self.client.get_as(&self.system).await.map_err(redfish_err)
    }

    /// `#ComputerSystem.Reset` with `reset_type`, through the action's advertised target.
    pub async fn reset(&self, reset_type: &str) -> Result<(), DriverError> {
        let sys = self.system().await?;
        let Some(action) = sys.actions.reset.filter(|a| !a.target.is_empty()) else {
            return Err(DriverError::Failed(format!(
                "Redfish System {} offers no #ComputerSystem.Reset action.",
                self.system
            )));
        };
        if !action.reset_types.is_empty() && !action.reset_types.iter().any(|t| t == reset_type) {
            return Err(DriverError::Unsupported(format!(
                "Redfish System {} does not support reset type {reset_type} (it offers {}).",
                self.system,
                action.reset_types.join(", ")
            )));
        }
        self.client.post(&action.target, &json!({ "ResetType": reset_type })).await.map_err(redfish_err)?;
        Ok(())
    }

    /// PATCH of the System's `Boot` (ETag, If-Match).
    pub async fn patch_boot(&self, boot: Value) -> Result<(), DriverError> {
        self.client.patch(&self.system, &json!({ "Boot": boot })).await.map_err(redfish_err)
    }

    /// Sets a one-time or persistent boot source override.
    pub async fn set_boot(&self, target: &str, persistent: bool, mode: Option<&str>) -> Result<(), DriverError> {
        let mut boot = json!({
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": if persistent { "Continuous" } else { "Once" },
        });
        if let Some(m) = mode {
            boot["BootSourceOverrideMode"] = Value::String(m.into());
        }
        self.patch_boot(boot).await
    }
}

/// `UEFI`/`Legacy` for the node's boot mode, when it has one.
fn redfish_boot_mode(task: &Task) -> Option<&'static str> {
    let mode = task.node.boot_mode.as_deref().map(str::to_owned).or_else(|| {
        let caps = task.node.properties.get("capabilities").and_then(Value::as_str).unwrap_or("");
        caps.split(',').find_map(|c| c.trim().strip_prefix("boot_mode:").map(str::to_owned))
    })?;
    match mode.as_str() {
        "uefi" => Some("UEFI"),
        "bios" => Some("Legacy"),
        _ => None,
    }
}

fn power_state(sys: &ComputerSystem) -> Result<PowerState, DriverError> {
    match sys.power_state.as_deref() {
        Some("On" | "PoweringOn" | "Paused") => Ok(PowerState::On),
        Some("Off" | "PoweringOff") => Ok(PowerState::Off),
        other => Err(DriverError::Failed(format!("Redfish System {} reports power state {other:?}.", sys.odata_id))),
    }
}

/// Power through `#ComputerSystem.Reset`.
pub struct RedfishPower {
    pool: Arc<RedfishPool>,
}

impl RedfishPower {
    pub fn new(pool: Arc<RedfishPool>) -> RedfishPower {
        RedfishPower { pool }
    }
}

#[async_trait]
impl PowerInterface for RedfishPower {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        parse_driver_info(task).map(|_| ())
    }

    async fn get_power_state(&self, task: &mut Task) -> Result<PowerState, DriverError> {
        let bmc = NodeBmc::open(&self.pool, task).await?;
        power_state(&bmc.system().await?)
    }

    /// Reads the System first: a node already there is not sent a reset (many BMCs answer a
    /// ForceOff of an off System with an error).
    async fn request_power(&self, task: &mut Task, request: PowerRequest) -> Result<PowerProgress, DriverError> {
        let bmc = NodeBmc::open(&self.pool, task).await?;
        let on = power_state(&bmc.system().await?)? == PowerState::On;
        let reset = match request {
            PowerRequest::On if on => return Ok(PowerProgress::Reached),
            PowerRequest::Off | PowerRequest::SoftOff if !on => return Ok(PowerProgress::Reached),
            PowerRequest::On => "On",
            PowerRequest::Off => "ForceOff",
            PowerRequest::SoftOff => "GracefulShutdown",
        };
        bmc.reset(reset).await?;
        Ok(PowerProgress::Requested)
    }

    fn supported_power_states(&self) -> Vec<PowerTarget> {
        PowerTarget::ALL.to_vec()
    }
}

/// Boot devices, boot mode, the indicator LED and NMIs through the System.
pub struct RedfishManagement {
    pool: Arc<RedfishPool>,
}

impl RedfishManagement {
    pub fn new(pool: Arc<RedfishPool>) -> RedfishManagement {
        RedfishManagement { pool }
    }
}

fn led_indicators() -> Indicators {
    let mut m = Indicators::new();
    m.entry("system".into()).or_default().insert(
        "led".into(),
        IndicatorInfo { readonly: false, states: vec!["blinking".into(), "off".into(), "on".into()] },
    );
    m
}

fn check_led(component: &str, indicator: &str) -> Result<(), DriverError> {
    if component != "system" {
        return Err(DriverError::InvalidParameter(format!("Invalid component {component} specified.")));
    }
    if indicator != "led" {
        return Err(DriverError::InvalidParameter(format!("Invalid indicator {indicator} specified.")));
    }
    Ok(())
}

#[async_trait]
impl ManagementInterface for RedfishManagement {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        parse_driver_info(task).map(|_| ())
    }

    fn supported_boot_devices(&self) -> Vec<BootDevice> {
        vec![BootDevice::Pxe, BootDevice::Disk, BootDevice::Cdrom, BootDevice::Bios]
    }

    async fn set_boot_device(&self, task: &mut Task, device: BootDevice, persistent: bool) -> Result<(), DriverError> {
        let target = match device {
            BootDevice::Pxe => "Pxe",
            BootDevice::Disk => "Hdd",
            BootDevice::Cdrom => "Cd",
            BootDevice::Bios => "BiosSetup",
            // The `redfish-https` boot interface's device: its `prepare_ramdisk` PATCHed the
            // override with the ISO's `HttpBootUri`; this PATCH names the target, the mode
            // (UEFI HTTP boot exists only in UEFI mode) and `Once`, and leaves `HttpBootUri`
            // out, so the BMC keeps the URI (a PATCH changes only the properties it names).
            BootDevice::UefiHttp => {
                let bmc = NodeBmc::open(&self.pool, task).await?;
                return bmc.set_boot("UefiHttp", persistent, Some("UEFI")).await;
            }
            BootDevice::Safe => {
                return Err(DriverError::InvalidParameter("Boot device safe is not supported by redfish.".into()));
            }
        };
        let bmc = NodeBmc::open(&self.pool, task).await?;
        bmc.set_boot(target, persistent, redfish_boot_mode(task)).await
    }

    async fn get_boot_device(&self, task: &mut Task) -> Result<(Option<BootDevice>, Option<bool>), DriverError> {
        let bmc = NodeBmc::open(&self.pool, task).await?;
        let boot = bmc.system().await?.boot;
        let dev = match boot.boot_source_override_target.as_deref() {
            Some("Pxe") => Some(BootDevice::Pxe),
            Some("UefiHttp") => Some(BootDevice::UefiHttp),
            Some("Hdd") => Some(BootDevice::Disk),
            Some("Cd") => Some(BootDevice::Cdrom),
            Some("BiosSetup") => Some(BootDevice::Bios),
            _ => None,
        };
        let persistent = match boot.boot_source_override_enabled.as_deref() {
            Some("Continuous") => Some(true),
            Some("Once") => Some(false),
            _ => None,
        };
        Ok((dev, persistent))
    }

    async fn inject_nmi(&self, task: &mut Task) -> Result<(), DriverError> {
        NodeBmc::open(&self.pool, task).await?.reset("Nmi").await
    }

    fn supported_indicators(&self, _task: &Task) -> Result<Indicators, DriverError> {
        Ok(led_indicators())
    }

    async fn set_indicator_state(
        &self,
        task: &mut Task,
        component: &str,
        indicator: &str,
        state: &str,
    ) -> Result<(), DriverError> {
        check_led(component, indicator)?;
        let led = match state {
            "on" => "Lit",
            "off" => "Off",
            "blinking" => "Blinking",
            other => return Err(DriverError::InvalidParameter(format!("Invalid indicator state {other} specified."))),
        };
        let bmc = NodeBmc::open(&self.pool, task).await?;
        bmc.client.patch(&bmc.system, &json!({ "IndicatorLED": led })).await.map_err(redfish_err)
    }

    async fn get_indicator_state(
        &self,
        task: &mut Task,
        component: &str,
        indicator: &str,
    ) -> Result<String, DriverError> {
        check_led(component, indicator)?;
        let bmc = NodeBmc::open(&self.pool, task).await?;
        let sys = bmc.system().await?;
        Ok(match (sys.indicator_led.as_deref(), sys.location_indicator_active) {
            (Some("Lit"), _) | (None, Some(true)) => "on",
            (Some("Blinking"), _) => "blinking",
            (Some("Off"), _) | (None, Some(false)) => "off",
            _ => "unknown",
        }
        .into())
    }

    async fn set_boot_mode(&self, task: &mut Task, mode: &str) -> Result<(), DriverError> {
        let m = match mode {
            "uefi" => "UEFI",
            "bios" => "Legacy",
            other => return Err(DriverError::InvalidParameter(format!("Invalid boot mode {other} specified."))),
        };
        let bmc = NodeBmc::open(&self.pool, task).await?;
        bmc.patch_boot(json!({ "BootSourceOverrideMode": m })).await
    }
}

/// Registers `redfish` power and management on a registry.
pub fn register(registry: &mut super::Registry, pool: Arc<RedfishPool>) {
    registry.register_power("redfish", Arc::new(RedfishPower::new(pool.clone())));
    registry.register_management("redfish", Arc::new(RedfishManagement::new(pool)));
}
