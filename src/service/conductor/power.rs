//! Power changes, in one place (Ironic's `node_power_action`): every caller (the API, the power
//! sync, a deploy's steps, failure clean-up) asks here. The power interface is only asked for a
//! change; this module polls the power state until the node gets there, records the user guide's
//! message and the new state, and forgets the agent's session when the ramdisk goes away, so a
//! rebooted agent must look itself up again.

use super::Conductor;
use crate::drivers::{DriverError, PowerProgress, PowerRequest, Task};
use ferric_types::models::{PowerState, PowerTarget};
use ferric_types::trace::{Actor, seed};
use std::time::Duration;

/// What a power target takes, in order: a reboot is off then on (not a reset, so a new boot
/// device applies, as Ironic does), a soft reboot a soft off then on.
fn requests(target: PowerTarget) -> &'static [PowerRequest] {
    match target {
        PowerTarget::On => &[PowerRequest::On],
        PowerTarget::Off => &[PowerRequest::Off],
        PowerTarget::Reboot => &[PowerRequest::Off, PowerRequest::On],
        PowerTarget::SoftOff => &[PowerRequest::SoftOff],
        PowerTarget::SoftReboot => &[PowerRequest::SoftOff, PowerRequest::On],
    }
}

impl Conductor {
    /// How long a power change may take (`[conductor] power_state_change_timeout`).
    fn power_change_timeout(&self) -> Duration {
        Duration::from_secs(self.config().power_state_change_timeout.max(1))
    }

    /// How often the power state is read while waiting for a change.
    fn power_poll_interval(&self) -> Duration {
        Duration::from_millis(self.config().power_state_poll_interval_ms.max(1))
    }

    /// Changes `t`'s power to `target` (within `timeout`, else the configured one per change) and
    /// records it; the message is the user guide's ("POWER OFF", "REBOOT", "POWER ON").
    pub(crate) async fn node_power_action(
        &self,
        t: &mut Task,
        target: PowerTarget,
        timeout: Option<Duration>,
    ) -> Result<(), DriverError> {
        let label = match target {
            PowerTarget::On => seed::POWER_ON,
            PowerTarget::Off | PowerTarget::SoftOff => seed::POWER_OFF,
            PowerTarget::Reboot | PowerTarget::SoftReboot => seed::REBOOT,
        };
        t.record(Actor::Conductor, Actor::Node, label);
        self.set_power(t, target, timeout).await
    }

    /// [`Conductor::node_power_action`] without the message: a fallback inside a step that
    /// already said what it does.
    pub(crate) async fn set_power(
        &self,
        t: &mut Task,
        target: PowerTarget,
        timeout: Option<Duration>,
    ) -> Result<(), DriverError> {
        let timeout = timeout.unwrap_or_else(|| self.power_change_timeout());
        let power = t.driver.power.clone();
        for request in requests(target) {
            if power.request_power(t, *request).await? == PowerProgress::Requested
                && !self.await_power(t, request.end_state(), timeout, true).await?
            {
                let want = if request.end_state() == PowerState::On { "power on" } else { "power off" };
                return Err(DriverError::Timeout(format!(
                    "Power change did not complete: node {} did not reach {want} within {} seconds.",
                    t.node.uuid,
                    timeout.as_secs()
                )));
            }
        }
        self.powered(t, target.end_state());
        Ok(())
    }

    /// Records a power state the node reached.
    pub(crate) fn powered(&self, t: &mut Task, state: PowerState) {
        t.node.power_state = Some(state);
        let now = t.env.clock.now();
        t.node.driver_internal_info.insert(
            "last_power_state_change".into(),
            serde_json::Value::String(now.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        );
        if state != PowerState::On {
            super::agent::forget_agent(&mut t.node);
        }
    }

    /// Reads the power state until it is `want` (true) or `within` has passed (false). With
    /// `fail_fast`, an error that asking again would not mend ends the wait, and the state is
    /// read at least once; otherwise every error only means "not yet" (a ramdisk powering itself
    /// off may take its BMC's answers with it for a while).
    pub(crate) async fn await_power(
        &self,
        t: &mut Task,
        want: PowerState,
        within: Duration,
        fail_fast: bool,
    ) -> Result<bool, DriverError> {
        let power = t.driver.power.clone();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if !fail_fast && tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            match power.get_power_state(t).await {
                Ok(s) if s == want => return Ok(true),
                Ok(_) => {}
                Err(e) if !fail_fast || e.is_transient() => {
                    tracing::debug!(node = %t.node.uuid, error = %e, "power state poll failed; retrying")
                }
                Err(e) => return Err(e),
            }
            if fail_fast && tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(self.power_poll_interval()).await;
        }
    }
}
