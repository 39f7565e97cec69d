//! Changes to volume connectors and targets (API 1.32), which need their node's lock and, unless
//! the node is being set up or torn down, the node powered off.

use super::{Conductor, Result};
use crate::drivers::Task;
use ferric_types::models::{PowerState, ProvisionState, VolumeConnector, VolumeTarget};
use ferric_types::rpc::RpcError;

/// States in which volume connectors and targets may be removed whatever the power state
/// (Ironic's DELETE_ALLOWED_STATES).
const VOLUME_DELETE_ALLOWED: &[ProvisionState] =
    &[ProvisionState::Manageable, ProvisionState::Enroll, ProvisionState::AdoptFailed];

impl Conductor {
    fn check_volume_change(&self, t: &Task, action: &str, deleting: bool) -> Result<()> {
        let n = &t.node;
        let allowed = deleting && VOLUME_DELETE_ALLOWED.contains(&n.provision_state);
        if !allowed && n.power_state != Some(PowerState::Off) {
            return Err(RpcError::InvalidState(format!(
                "The requested action \"{action}\" can not be performed on node \"{}\" while it is in state \"{}\".",
                n.uuid,
                n.power_state.map(|p| p.as_str()).unwrap_or("None")
            ))
            .into());
        }
        Ok(())
    }

    /// Saves a changed volume connector under its node's lock; the node must be powered off.
    pub async fn update_volume_connector(&self, v: VolumeConnector) -> Result<VolumeConnector> {
        let old = self.db().get_volume_connector(v.uuid)?;
        let t = self.acquire(old.node_uuid)?;
        self.check_volume_change(&t, "volume connector update", false)?;
        let _t2 = if old.node_uuid != v.node_uuid { Some(self.acquire(v.node_uuid)?) } else { None };
        let mut v = v;
        v.updated_at = Some(self.env().clock.now());
        self.db().update_volume_connector(&v)?;
        Ok(v)
    }

    pub async fn destroy_volume_connector(&self, v: VolumeConnector) -> Result<()> {
        let t = self.acquire(v.node_uuid)?;
        self.check_volume_change(&t, "volume connector deletion", true)?;
        self.db().destroy_volume_connector(v.uuid)?;
        Ok(())
    }

    pub async fn update_volume_target(&self, v: VolumeTarget) -> Result<VolumeTarget> {
        let old = self.db().get_volume_target(v.uuid)?;
        let t = self.acquire(old.node_uuid)?;
        self.check_volume_change(&t, "volume target update", false)?;
        let _t2 = if old.node_uuid != v.node_uuid { Some(self.acquire(v.node_uuid)?) } else { None };
        let mut v = v;
        v.updated_at = Some(self.env().clock.now());
        self.db().update_volume_target(&v)?;
        Ok(v)
    }

    pub async fn destroy_volume_target(&self, v: VolumeTarget) -> Result<()> {
        let t = self.acquire(v.node_uuid)?;
        self.check_volume_change(&t, "volume target deletion", true)?;
        self.db().destroy_volume_target(v.uuid)?;
        Ok(())
    }
}
