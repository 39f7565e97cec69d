//! Start-up recovery and periodic tasks: power-state sync and wait-state timeouts.

use super::Conductor;
use crate::db::NodeFilter;
use ferric_types::models::{PowerState, PowerTarget, ProvisionState};
use ferric_types::state_machine;
use std::time::Duration;

impl Conductor {
    /// Recovers from a previous crash of this conductor, then runs the periodic tasks until the
    /// returned handle is aborted (or the runtime stops). A clustered conductor also gets a
    /// watchdog of its own, outside the periodic loop, that drops its running work once it is
    /// fenced; it ends with [`Conductor::halt`].
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        self.recover();
        self.start_watchdog();
        self.run_periodic(false)
    }

    /// The periodic tasks of a process that goes on after a pause (no start-up recovery: its
    /// running work is its own): it beats and looks for nodes to take over first, as its peers
    /// may have moved on meanwhile.
    pub fn resume(&self) -> tokio::task::JoinHandle<()> {
        self.run_periodic(true)
    }

    fn run_periodic(&self, beat_first: bool) -> tokio::task::JoinHandle<()> {
        let c = self.clone();
        tokio::spawn(async move {
            if beat_first && c.is_clustered() {
                c.beat().await;
                c.take_over().await;
            }
            let timeouts = Duration::from_secs(c.config().check_timeouts_interval.max(1));
            let sync = Duration::from_secs(c.config().sync_power_state_interval.max(1));
            let beat = Duration::from_secs(c.config().heartbeat_interval.max(1));
            let mut t1 = tokio::time::interval_at(tokio::time::Instant::now() + timeouts, timeouts);
            let mut t2 = tokio::time::interval_at(tokio::time::Instant::now() + sync, sync);
            let mut t3 = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
            t1.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t2.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t3.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The heartbeat has a task of its own: a long power sync or takeover pass must not
            // make peers think this conductor is dead. It ends with this task (the set is dropped).
            let mut beats = tokio::task::JoinSet::new();
            if c.is_clustered() {
                let b = c.clone();
                let mut t = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                beats.spawn(async move {
                    loop {
                        t.tick().await;
                        b.beat().await;
                    }
                });
            }
            let clustered = c.is_clustered();
            loop {
                // Biased: when several are due at once, the order is fixed (a simulation's trace
                // must not depend on select!'s random branch choice).
                tokio::select! {
                    biased;
                    _ = t3.tick(), if clustered => c.take_over().await,
                    _ = t1.tick() => {
                        c.adopt_orphans().await;
                        c.check_timeouts().await
                    }
                    _ = t2.tick() => c.sync_power_states().await,
                }
            }
        })
    }

    /// Drops this host's stale locks and fails operations that were running when it died: their
    /// work was in this process and cannot be resumed. Nodes waiting for a callback keep waiting.
    pub fn recover(&self) {
        let host = self.host().to_string();
        let stale = match self.db().node_ids(&NodeFilter {
            provision_states: Some(
                ProvisionState::ALL.iter().copied().filter(|s| state_machine::is_working(*s)).collect(),
            ),
            ..Default::default()
        }) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "recovery: cannot list nodes");
                return;
            }
        };
        match self.db().clear_reservations(&host) {
            Ok(n) if n > 0 => tracing::warn!(count = n, "recovery: released stale locks"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "recovery: cannot release locks"),
        }
        // Locked now (so nothing else starts on them), failed below through the interrupted
        // work's own failure path, as a takeover fails a lost peer's: its clean-up runs (the
        // ramdisk's boot, the provisioning network's ports, the power).
        let mut interrupted = Vec::new();
        for id in stale {
            match self.acquire(id) {
                Ok(t) if state_machine::is_working(t.node.provision_state) => interrupted.push(t),
                Ok(_) => {}
                Err(e) => tracing::warn!(node = %id, error = %e, "recovery: node skipped"),
            }
        }
        if !interrupted.is_empty() {
            let c = self.clone();
            let work = async move {
                for mut t in interrupted {
                    let state = t.node.provision_state;
                    let msg = format!(
                        "The conductor {host} restarted while node {} was in state \"{state}\"; the operation cannot be resumed.",
                        t.node.uuid
                    );
                    c.fail_interrupted_work(&mut t, msg).await;
                }
            };
            // On a worker (every one is free at start), so waiting for idle workers waits for it.
            match self.inner.workers.clone().try_acquire_owned() {
                Ok(permit) => self.spawn(permit, work),
                Err(_) => {
                    self.inner.tasks.lock().spawn(work);
                }
            }
        }
        self.resume_allocations();
    }

    /// Fails nodes whose callback did not come in time.
    pub async fn check_timeouts(&self) {
        let now = self.env().clock.now();
        let waiting: Vec<_> = ProvisionState::ALL.iter().copied().filter(|s| state_machine::is_waiting(*s)).collect();
        let filter = NodeFilter {
            provision_states: Some(waiting),
            reserved: Some(false),
            maintenance: Some(false),
            ..Default::default()
        };
        // This conductor's nodes only, kept by their ring keys in the scan (nothing awaits in
        // this loop, so ownership is as of now for every row, as a per-node check would see it).
        let Ok(rows) = self.db().node_provision_times(&filter, self.owner_test()) else {
            return;
        };
        for (id, state, since) in rows {
            let (Some(limit), Some(since)) = (self.timeout_for(state), since) else {
                continue;
            };
            let elapsed = (now - since).to_std().unwrap_or_default();
            if elapsed < limit {
                continue;
            }
            let Ok(permit) = self.worker() else { return };
            let Ok(t) = self.acquire(id) else { continue };
            if t.node.provision_state != state {
                continue;
            }
            tracing::warn!(node = %id, %state, "callback timeout");
            let c = self.clone();
            self.spawn(permit, async move { c.time_out_wait(t).await });
        }
    }

    /// Compares recorded and actual power states of idle nodes (Ironic's `_sync_power_states`).
    pub async fn sync_power_states(&self) {
        let excluded = |s: ProvisionState| {
            matches!(s, ProvisionState::Enroll | ProvisionState::AdoptFailed)
                || state_machine::is_waiting(s)
                || state_machine::is_working(s)
        };
        let filter = NodeFilter {
            reserved: Some(false),
            maintenance: Some(false),
            provision_states: Some(ProvisionState::ALL.iter().copied().filter(|s| !excluded(*s)).collect()),
            ..Default::default()
        };
        // The nodes this conductor owns as the pass starts (by their ring keys, without reading
        // the others' nodes); each is looked at again below, as the ring may change meanwhile.
        let Ok(ids) = self.db().node_ids_keyed(&filter, self.owner_test()) else {
            return;
        };
        for id in ids {
            // As Ironic does, the hardware is read under a shared (lock-free) task; the node is
            // locked only when something has to be recorded or corrected, so the common case
            // (states agree) writes nothing and never blocks an API request behind the sync.
            let Ok(mut shared) = self.power_task(id) else { continue };
            if !self.owns(&shared.node.conductor_group, &shared.node.driver, id) {
                continue;
            }
            if shared.node.reservation.is_some() || shared.node.maintenance || excluded(shared.node.provision_state) {
                continue;
            }
            let power = shared.driver.power.clone();
            let actual = power.get_power_state(&mut shared).await;
            if let Ok(a) = &actual
                && shared.node.power_state == Some(*a)
            {
                self.inner.power_failures.lock().remove(&id);
                continue;
            }
            let Ok(mut t) = self.acquire(id) else { continue };
            if t.node.maintenance || excluded(t.node.provision_state) || t.node.power_state != shared.node.power_state {
                // Someone acted on the node in between: the next round looks again.
                continue;
            }
            let result = match actual {
                Err(e) => Err(e.to_string()),
                Ok(actual) => match t.node.power_state {
                    None | Some(PowerState::Error) => {
                        t.node.power_state = Some(actual);
                        Ok(())
                    }
                    Some(recorded) if recorded == actual => Ok(()),
                    Some(recorded) if self.config().force_power_state_during_sync => {
                        tracing::warn!(node = %id, %recorded, %actual, "power state differs; restoring recorded state");
                        let target = if recorded == PowerState::On { PowerTarget::On } else { PowerTarget::Off };
                        self.node_power_action(&mut t, target, None).await.map_err(|e| e.to_string())
                    }
                    Some(recorded) => {
                        tracing::warn!(node = %id, %recorded, %actual, "power state differs; recording hardware state");
                        t.node.power_state = Some(actual);
                        Ok(())
                    }
                },
            };
            // A failure below the retry limit is only counted (in memory, as Ironic does).
            let mut record = true;
            match result {
                Ok(()) => {
                    self.inner.power_failures.lock().remove(&id);
                }
                Err(e) => {
                    let count = {
                        let mut f = self.inner.power_failures.lock();
                        let c = f.entry(id).or_insert(0);
                        *c += 1;
                        *c
                    };
                    tracing::warn!(node = %id, error = %e, attempt = count, "power sync failed");
                    if count >= self.config().power_state_sync_max_retries {
                        t.node.maintenance = true;
                        t.node.fault = Some("power failure".into());
                        let msg = format!(
                            "During sync_power_state, max retries exceeded for node {id}, node state {} does not match expected state 'None'. Updating DB state to 'None' Switching node to maintenance mode. Error: {e}",
                            t.node.power_state.map(|p| p.as_str()).unwrap_or("None")
                        );
                        t.node.maintenance_reason = Some(msg.clone());
                        t.node.last_error = Some(msg);
                        t.node.power_state = None;
                        self.inner.power_failures.lock().remove(&id);
                    } else {
                        record = false;
                    }
                }
            }
            if record && let Err(e) = self.save(&mut t) {
                tracing::error!(node = %id, error = %e, "power sync: cannot save");
            }
        }
    }
}
