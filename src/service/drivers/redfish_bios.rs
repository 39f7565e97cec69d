//! The `redfish` bios and firmware interfaces' clean steps (Ironic's names), run through the BMC
//! with no ramdisk:
//!
//! - `bios.apply_configuration` (`args.settings`: `[{"name", "value"}]`): the attributes go to the
//!   Bios resource's settings object with `ApplyTime: OnReset` when the BMC offers it, and the
//!   conductor reboots the node so they take effect.
//! - `bios.factory_reset`: `#Bios.ResetBios`, then a reboot.
//!
//! After them the conductor caches the BIOS settings as they then are, for the API.
//! - `firmware.update` (`args.settings`: `[{"component", "url"}]`): one
//!   `#UpdateService.SimpleUpdate` per image, its task monitored to its end.

use super::redfish::{NodeBmc, parse_driver_info, redfish_err};
use super::{DriverError, OutOfBandSteps, StepEnd, Task};
use crate::redfish::RedfishPool;
use crate::redfish::model::{Bios, UpdateService};
use async_trait::async_trait;
use ferric_types::models::{BiosSetting, JsonMap};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// `args.settings` as a list of objects.
fn settings<'a>(args: &'a JsonMap, step: &str) -> Result<Vec<&'a Map<String, Value>>, DriverError> {
    let bad = || DriverError::InvalidParameter(format!("Step {step} needs args.settings, a list of objects."));
    let list = args.get("settings").and_then(Value::as_array).ok_or_else(bad)?;
    list.iter().map(|v| v.as_object().ok_or_else(bad)).collect()
}

/// BIOS settings through the BMC.
pub struct RedfishBios {
    pool: Arc<RedfishPool>,
}

impl RedfishBios {
    async fn bios(&self, bmc: &NodeBmc) -> Result<(String, Bios), DriverError> {
        let sys = bmc.system().await?;
        let Some(link) = sys.bios else {
            return Err(DriverError::Unsupported(format!("Redfish System {} has no Bios resource.", bmc.system)));
        };
        let bios = bmc.client.get_as(&link.odata_id).await.map_err(redfish_err)?;
        Ok((link.odata_id, bios))
    }

    async fn apply_configuration(&self, task: &Task, args: &JsonMap) -> Result<StepEnd, DriverError> {
        let mut attributes = Map::new();
        for s in settings(args, "apply_configuration")? {
            let Some(name) = s.get("name").and_then(Value::as_str) else {
                return Err(DriverError::InvalidParameter("Each BIOS setting needs a name.".into()));
            };
            attributes.insert(name.to_owned(), s.get("value").cloned().unwrap_or(Value::Null));
        }
        let bmc = NodeBmc::open(&self.pool, task).await?;
        let (path, bios) = self.bios(&bmc).await?;
        let mut body = json!({ "Attributes": attributes });
        let target = match bios.settings {
            Some(s) => {
                if s.supported_apply_times.iter().any(|t| t == "OnReset") {
                    body["@Redfish.SettingsApplyTime"] = json!({ "ApplyTime": "OnReset" });
                }
                s.settings_object.map(|l| l.odata_id).unwrap_or(path)
            }
            None => path,
        };
        bmc.client.patch(&target, &body).await.map_err(redfish_err)?;
        tracing::info!(node = %task.node.uuid, settings = attributes.len(), "BIOS settings staged; rebooting to apply them");
        Ok(StepEnd::Reboot)
    }

    async fn factory_reset(&self, task: &Task) -> Result<StepEnd, DriverError> {
        let bmc = NodeBmc::open(&self.pool, task).await?;
        let (_, bios) = self.bios(&bmc).await?;
        let Some(action) = bios.actions.reset_bios.filter(|a| !a.target.is_empty()) else {
            return Err(DriverError::Unsupported(format!("Redfish System {} offers no #Bios.ResetBios.", bmc.system)));
        };
        bmc.client.post(&action.target, &json!({})).await.map_err(redfish_err)?;
        Ok(StepEnd::Reboot)
    }
}

#[async_trait]
impl OutOfBandSteps for RedfishBios {
    fn step_names(&self) -> &'static [&'static str] {
        &["apply_configuration", "factory_reset"]
    }

    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        parse_driver_info(task).map(|_| ())
    }

    async fn bios_settings(&self, task: &mut Task) -> Result<Option<Vec<BiosSetting>>, DriverError> {
        let bmc = NodeBmc::open(&self.pool, task).await?;
        let (_, bios) = self.bios(&bmc).await?;
        let now = task.env.clock.now();
        let settings = bios
            .attributes
            .into_iter()
            .map(|(name, v)| BiosSetting {
                name,
                value: match v {
                    Value::Null => None,
                    Value::String(s) => Some(s),
                    other => Some(other.to_string()),
                },
                created_at: Some(now),
                ..BiosSetting::default()
            })
            .collect();
        Ok(Some(settings))
    }

    async fn run_step(&self, task: &mut Task, step: &str, args: &JsonMap) -> Result<StepEnd, DriverError> {
        match step {
            "apply_configuration" => self.apply_configuration(task, args).await,
            "factory_reset" => self.factory_reset(task).await,
            other => Err(DriverError::InvalidParameter(format!("bios interface redfish has no step {other}."))),
        }
    }
}

/// Firmware updates through the BMC's UpdateService.
pub struct RedfishFirmware {
    pool: Arc<RedfishPool>,
}

#[async_trait]
impl OutOfBandSteps for RedfishFirmware {
    fn step_names(&self) -> &'static [&'static str] {
        &["update"]
    }

    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        parse_driver_info(task).map(|_| ())
    }

    async fn run_step(&self, task: &mut Task, step: &str, args: &JsonMap) -> Result<StepEnd, DriverError> {
        if step != "update" {
            return Err(DriverError::InvalidParameter(format!("firmware interface redfish has no step {step}.")));
        }
        let images = settings(args, "update")?;
        let bmc = NodeBmc::open(&self.pool, task).await?;
        let root = bmc.client.root().await.map_err(redfish_err)?;
        let Some(us) = root.update_service else {
            return Err(DriverError::Unsupported(format!(
                "Redfish BMC {} has no UpdateService.",
                bmc.client.endpoint().name()
            )));
        };
        let us: UpdateService = bmc.client.get_as(&us.odata_id).await.map_err(redfish_err)?;
        let Some(action) = us.actions.simple_update.filter(|a| !a.target.is_empty()) else {
            return Err(DriverError::Unsupported("The UpdateService offers no #UpdateService.SimpleUpdate.".into()));
        };
        for img in images {
            let Some(url) = img.get("url").and_then(Value::as_str) else {
                return Err(DriverError::InvalidParameter("Each firmware image needs a url.".into()));
            };
            let component = img.get("component").and_then(Value::as_str).unwrap_or("unknown");
            let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_uppercase()).unwrap_or_default();
            let mut body = json!({ "ImageURI": url });
            if matches!(scheme.as_str(), "HTTP" | "HTTPS" | "NFS" | "CIFS" | "FTP" | "SFTP") {
                body["TransferProtocol"] = Value::String(scheme);
            }
            tracing::info!(node = %task.node.uuid, component, "firmware update started");
            bmc.client.post(&action.target, &body).await.map_err(|e| {
                DriverError::Failed(format!("Firmware update of {component} on node {} failed: {e}", task.node.uuid))
            })?;
            tracing::info!(node = %task.node.uuid, component, "firmware update done");
        }
        Ok(StepEnd::Done)
    }
}

/// Registers the `redfish` bios and firmware steps.
pub fn register(registry: &mut super::Registry, pool: Arc<RedfishPool>) {
    registry.register_steps("bios", "redfish", Arc::new(RedfishBios { pool: pool.clone() }));
    registry.register_steps("firmware", "redfish", Arc::new(RedfishFirmware { pool }));
}
