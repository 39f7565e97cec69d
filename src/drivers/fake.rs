//! The fake interfaces of Ironic's `fake-hardware`: they succeed, after optional delays, without
//! touching hardware, so the full lifecycle works through the API with no BMC.

use super::{BootInterface, DeployInterface, DriverError, ManagementInterface, PowerInterface, StepOutcome, Task};
use crate::models::{BootDevice, NodeId, PowerState, PowerTarget};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
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

    async fn set_power_state(
        &self,
        task: &mut Task,
        target: PowerTarget,
        _t: Option<Duration>,
    ) -> Result<(), DriverError> {
        delay(task.env.fake.power_ms).await;
        task.node.power_state = Some(target.end_state());
        Ok(())
    }

    fn supported_power_states(&self) -> Vec<PowerTarget> {
        PowerTarget::ALL.to_vec()
    }
}

/// Remembers the boot device per node in memory.
#[derive(Default)]
pub struct FakeManagement {
    devices: Mutex<HashMap<NodeId, (BootDevice, bool)>>,
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

#[async_trait]
impl DeployInterface for FakeDeploy {
    fn validate(&self, _task: &Task) -> Result<(), DriverError> {
        Ok(())
    }

    async fn deploy(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        delay(task.env.fake.deploy_ms).await;
        let whole_disk = !task.node.instance_info.contains_key("kernel");
        task.node.driver_internal_info.insert("is_whole_disk_image".into(), whole_disk.into());
        if task.node.instance_info.contains_key("image_source") {
            let kind = if whole_disk { "whole-disk" } else { "partition" };
            task.node.instance_info.insert("image_type".into(), kind.into());
        }
        Ok(StepOutcome::Done)
    }

    async fn tear_down(&self, task: &mut Task) -> Result<(), DriverError> {
        delay(task.env.fake.deploy_ms).await;
        task.node.power_state = Some(PowerState::Off);
        Ok(())
    }

    async fn prepare_cleaning(&self, _task: &mut Task) -> Result<StepOutcome, DriverError> {
        Ok(StepOutcome::Done)
    }

    async fn tear_down_cleaning(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
}
