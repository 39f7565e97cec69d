//! The fake interfaces of Ironic's `fake-hardware`: they succeed, after optional delays, without
//! touching hardware, so the full lifecycle works through the API with no BMC.

use super::steps::{Plan, Plans, StepCtx, StepResult, quiet};
use super::{
    BootInterface, DeployInterface, DriverError, IndicatorInfo, Indicators, ManagementInterface, PowerInterface,
    PowerProgress, PowerRequest, Task,
};
use async_trait::async_trait;
use ferric_types::models::{BootDevice, NodeId, PowerState, PowerTarget, Step};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

async fn delay(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Power state lives in the node record itself.
pub struct FakePower;

#[async_trait]
impl PowerInterface for FakePower {
    fn validate(&self, _task: &Task) -> Result<(), DriverError> {
        Ok(())
    }

    async fn get_power_state(&self, task: &mut Task) -> Result<PowerState, DriverError> {
        delay(task.env.fake.power_ms).await;
        Ok(task.node.power_state.unwrap_or(PowerState::Off))
    }

    async fn request_power(&self, task: &mut Task, request: PowerRequest) -> Result<PowerProgress, DriverError> {
        delay(task.env.fake.power_ms).await;
        task.node.power_state = Some(request.end_state());
        Ok(PowerProgress::Reached)
    }

    fn supported_power_states(&self) -> Vec<PowerTarget> {
        PowerTarget::ALL.to_vec()
    }
}

/// Remembers the boot device (and indicator states) per node in memory.
#[derive(Default)]
pub struct FakeManagement {
    devices: Mutex<HashMap<NodeId, (BootDevice, bool)>>,
    indicators: Mutex<HashMap<(NodeId, String, String), String>>,
}

/// The indicators of Ironic's fake management interface.
fn fake_indicators() -> Indicators {
    let info = |readonly: bool, states: &[&str]| IndicatorInfo {
        readonly,
        states: states.iter().map(|s| s.to_string()).collect(),
    };
    let mut m = Indicators::new();
    m.entry("chassis".into()).or_default().insert("led-0".into(), info(true, &["off", "on"]));
    m.entry("system".into()).or_default().insert("led".into(), info(false, &["blinking", "off", "on"]));
    m
}

fn check_indicator(component: &str, indicator: &str) -> Result<IndicatorInfo, DriverError> {
    let all = fake_indicators();
    let c = all
        .get(component)
        .ok_or_else(|| DriverError::InvalidParameter(format!("Invalid component {component} specified.")))?;
    c.get(indicator)
        .cloned()
        .ok_or_else(|| DriverError::InvalidParameter(format!("Invalid indicator {indicator} specified.")))
}

#[async_trait]
impl ManagementInterface for FakeManagement {
    fn validate(&self, _task: &Task) -> Result<(), DriverError> {
        Ok(())
    }

    fn supported_boot_devices(&self) -> Vec<BootDevice> {
        vec![BootDevice::Pxe, BootDevice::Disk, BootDevice::Cdrom, BootDevice::Bios, BootDevice::Safe]
    }

    async fn set_boot_device(&self, task: &mut Task, device: BootDevice, persistent: bool) -> Result<(), DriverError> {
        delay(task.env.fake.management_ms).await;
        self.devices.lock().insert(task.node.uuid, (device, persistent));
        Ok(())
    }

    async fn get_boot_device(&self, task: &mut Task) -> Result<(Option<BootDevice>, Option<bool>), DriverError> {
        delay(task.env.fake.management_ms).await;
        let (d, p) = self.devices.lock().get(&task.node.uuid).copied().unwrap_or((BootDevice::Pxe, false));
        Ok((Some(d), Some(p)))
    }

    async fn inject_nmi(&self, task: &mut Task) -> Result<(), DriverError> {
        delay(task.env.fake.management_ms).await;
        Ok(())
    }

    fn supported_indicators(&self, _task: &Task) -> Result<Indicators, DriverError> {
        Ok(fake_indicators())
    }

    async fn set_indicator_state(
        &self,
        task: &mut Task,
        component: &str,
        indicator: &str,
        state: &str,
    ) -> Result<(), DriverError> {
        let info = check_indicator(component, indicator)?;
        if info.readonly {
            return Err(DriverError::InvalidParameter(format!(
                "Indicator {indicator} of component {component} is read-only."
            )));
        }
        if !info.states.iter().any(|s| s == state) {
            return Err(DriverError::InvalidParameter(format!("Invalid indicator state {state} specified.")));
        }
        delay(task.env.fake.management_ms).await;
        self.indicators.lock().insert((task.node.uuid, component.into(), indicator.into()), state.into());
        Ok(())
    }

    async fn get_indicator_state(
        &self,
        task: &mut Task,
        component: &str,
        indicator: &str,
    ) -> Result<String, DriverError> {
        check_indicator(component, indicator)?;
        delay(task.env.fake.management_ms).await;
        let key = (task.node.uuid, component.to_string(), indicator.to_string());
        Ok(self.indicators.lock().get(&key).cloned().unwrap_or_else(|| "on".into()))
    }

    async fn set_boot_mode(&self, task: &mut Task, _mode: &str) -> Result<(), DriverError> {
        delay(task.env.fake.management_ms).await;
        Ok(())
    }

    async fn set_secure_boot_state(&self, task: &mut Task, _enabled: bool) -> Result<(), DriverError> {
        delay(task.env.fake.management_ms).await;
        Ok(())
    }
}

pub struct FakeBoot;

#[async_trait]
impl BootInterface for FakeBoot {
    fn validate(&self, _task: &Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn prepare_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        delay(task.env.fake.boot_ms).await;
        Ok(())
    }
    async fn clean_up_ramdisk(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        delay(task.env.fake.boot_ms).await;
        Ok(())
    }
    async fn clean_up_instance(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
}

/// Deploys and cleans instantly (after the configured delay).
pub struct FakeDeploy;

/// `fake-hardware`'s plans: one step each, no ramdisk, nothing to clean.
static PLANS: LazyLock<Plans> = LazyLock::new(|| Plans {
    deploy: Plan::of(vec![quiet(Step::FakeDeploy)]),
    tear_down: Plan::of(vec![quiet(Step::FakeTearDown)]),
    ..Plans::default()
});

#[async_trait]
impl DeployInterface for FakeDeploy {
    fn validate(&self, _task: &Task) -> Result<(), DriverError> {
        Ok(())
    }

    fn plans(&self) -> &Plans {
        &PLANS
    }

    async fn run_step(&self, step: Step, task: &mut Task, _ctx: StepCtx<'_>) -> Result<StepResult, DriverError> {
        match step {
            Step::FakeDeploy => {
                delay(task.env.fake.deploy_ms).await;
                let whole_disk = !task.node.instance_info.contains_key("kernel");
                task.node.driver_internal_info.insert("is_whole_disk_image".into(), whole_disk.into());
                if task.node.instance_info.contains_key("image_source") {
                    let kind = if whole_disk { "whole-disk" } else { "partition" };
                    task.node.instance_info.insert("image_type".into(), kind.into());
                }
                Ok(StepResult::next())
            }
            Step::FakeTearDown => {
                delay(task.env.fake.deploy_ms).await;
                task.node.power_state = Some(PowerState::Off);
                Ok(StepResult::next())
            }
            other => Err(DriverError::Unsupported(format!("fake deploy has no step {other:?}"))),
        }
    }
}
