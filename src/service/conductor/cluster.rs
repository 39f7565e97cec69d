//! Several conductors on one database: each registers and heartbeats, owns the nodes the hash
//! ring gives it, stops acting once it has been silent too long (fencing), and takes over the
//! nodes of conductors that went silent.

use super::Conductor;
use super::LockedTask;
use super::ring::Rings;
use crate::db::DbError;
use crate::db::NodeFilter;
use chrono::{DateTime, Utc};
use ferric_types::models::{ConductorRecord, NodeId, ProvisionState};
use ferric_types::state_machine::{self, Event};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// What this conductor knows of its peers.
#[derive(Default)]
pub(crate) struct Membership {
    /// Shared, not copied: readers take the `Arc` and let the lock go.
    pub rings: Arc<Rings>,
    /// When this conductor's own heartbeat was last written (by its clock).
    pub last_beat: Option<DateTime<Utc>>,
    /// Nodes found prepared by this conductor since the ring last changed: takeover skips them.
    pub known: HashSet<NodeId>,
    /// The live hosts the rings were built from (a change empties `known`).
    pub hosts: Vec<String>,
    /// Heartbeats until the next full scan for nodes to take over. Membership changes make one
    /// due at once; otherwise a scan every [`SCAN_EVERY`] beats catches stragglers (a node a
    /// peer saved while the rings disagreed).
    pub scan_in: u32,
}

/// Beats between full takeover scans while membership is unchanged.
const SCAN_EVERY: u32 = 6;

impl Conductor {
    /// Whether this conductor shares its database with others (`--role conductor`).
    pub fn is_clustered(&self) -> bool {
        self.config().cluster
    }

    /// Whether this conductor has been silent so long that its peers may soon take its nodes:
    /// it must not act on any node until its next heartbeat is written. It fences itself one
    /// heartbeat interval before the heartbeat timeout (at least half of it), so that its running
    /// work is dropped (see [`Conductor::start`]'s watchdog) before any peer may act on its nodes.
    pub fn fenced(&self) -> bool {
        if !self.is_clustered() {
            return false;
        }
        let Some(last) = self.inner.membership.read().last_beat else { return true };
        let silent = self.env().clock.now() - last;
        let c = self.config();
        let after = c.heartbeat_timeout.saturating_sub(c.heartbeat_interval).max(c.heartbeat_timeout / 2);
        silent.num_milliseconds() > (after as i64) * 1000
    }

    /// Drops this conductor's running work as soon as it is fenced, whatever its periodic loop
    /// is doing (a loop stuck or paused must not leave workers acting on nodes its peers are
    /// about to take over). Runs until [`Conductor::halt`].
    pub(crate) fn start_watchdog(&self) {
        if !self.is_clustered() {
            return;
        }
        let c = self.clone();
        let tick = Duration::from_millis((c.config().heartbeat_interval.max(1) * 500).max(500));
        let handle = tokio::spawn(async move {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut dropped = false;
            loop {
                t.tick().await;
                match (c.fenced(), dropped) {
                    (true, false) => {
                        tracing::error!(
                            host = c.host(),
                            "no heartbeat written for too long: running work dropped (peers may take these nodes over)"
                        );
                        c.inner.tasks.lock().abort_all();
                        // Work the database lost is its peers' to end now.
                        c.inner.locks.lock().orphans.clear();
                        dropped = true;
                    }
                    (false, true) => dropped = false,
                    _ => {}
                }
            }
        });
        if let Some(old) = self.inner.watchdog.lock().replace(handle) {
            old.abort();
        }
    }

    /// Whether this conductor owns the node (always, when it is alone).
    pub fn owns(&self, group: &str, driver: &str, node: NodeId) -> bool {
        if !self.is_clustered() {
            return true;
        }
        if self.fenced() {
            return false;
        }
        self.inner.membership.read().rings.owner(group, driver, node).is_some_and(|c| c.hostname == self.host())
    }

    /// [`Conductor::owns`] as of now, for a scan over many nodes' ring keys (uuid, driver,
    /// conductor group): the rings and the fence are looked at once, not per node.
    pub(crate) fn owner_test(&self) -> impl Fn(NodeId, &str, &str) -> bool + use<> {
        let mine = if !self.is_clustered() {
            None
        } else if self.fenced() {
            Some(None)
        } else {
            Some(Some((self.rings(), self.host().to_string())))
        };
        move |id, driver, group| match &mine {
            None => true,
            Some(None) => false,
            Some(Some((rings, host))) => rings.owner(group, driver, id).is_some_and(|c| c.hostname == *host),
        }
    }

    /// [`Conductor::owns`] by the node's stored driver and group.
    pub fn owns_id(&self, id: NodeId) -> bool {
        if !self.is_clustered() {
            return true;
        }
        self.db().view_node(id, |n, _| self.owns(&n.conductor_group, &n.driver, id)).unwrap_or(false)
    }

    /// The live conductors' rings, as last read.
    pub fn rings(&self) -> Arc<Rings> {
        self.inner.membership.read().rings.clone()
    }

    /// Writes this conductor's heartbeat and re-reads its peers. A conductor that finds itself
    /// silent for longer than the timeout (paused, or cut off from the database) first drops its
    /// running work: its peers may own those nodes now.
    pub async fn beat(&self) {
        let now = self.env().clock.now();
        let had_beat = self.inner.membership.read().last_beat.is_some();
        if had_beat && self.fenced() {
            tracing::error!(
                host = self.host(),
                "this conductor was silent longer than heartbeat_timeout; its running work is dropped (its nodes may have been taken over)"
            );
            self.inner.tasks.lock().abort_all();
            // Work the database lost is its peers' to end now (they took those nodes over).
            self.inner.locks.lock().orphans.clear();
            let mut m = self.inner.membership.write();
            m.known.clear();
            m.scan_in = 0;
        }
        match self.register() {
            Ok(()) => self.inner.membership.write().last_beat = Some(now),
            Err(e) => tracing::warn!(host = self.host(), error = %e, "cannot write this conductor's heartbeat"),
        }
        self.refresh_rings();
    }

    /// Rebuilds the rings from the conductors table; returns every registered conductor (alive
    /// or not), or `None` when the table cannot be read.
    pub fn refresh_rings(&self) -> Option<Vec<ConductorRecord>> {
        let conductors = match self.db().list_conductors() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the conductors");
                return None;
            }
        };
        let now = self.env().clock.now();
        let c = self.config();
        let rings = Rings::alive(&conductors, now, c.heartbeat_timeout, c.hash_partition_exponent);
        let mut m = self.inner.membership.write();
        if !m.hosts.iter().map(String::as_str).eq(rings.hosts()) {
            let hosts: Vec<String> = rings.hosts().map(str::to_string).collect();
            tracing::info!(live = ?hosts, "conductor membership changed");
            m.known.clear();
            m.hosts = hosts;
            m.scan_in = 0;
        }
        m.rings = Arc::new(rings);
        Some(conductors)
    }

    /// Takes over what silent conductors left: their locks are released, and every node this
    /// conductor now owns but another one prepared is taken over (see [`Conductor::take_over_node`]).
    pub async fn take_over(&self) {
        if !self.is_clustered() || self.fenced() {
            return;
        }
        // Never on an old view: a ring missing a peer that joined since would take its nodes.
        let Some(all) = self.refresh_rings() else { return };
        let rings = self.rings();
        for c in all.iter().filter(|c| c.hostname != self.host() && !rings.is_live(&c.hostname)) {
            match self.db().clear_reservations(&c.hostname) {
                Ok(n) if n > 0 => {
                    tracing::warn!(lost = %c.hostname, count = n, "released the locks of a silent conductor")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(lost = %c.hostname, error = %e, "cannot release a silent conductor's locks"),
            }
        }
        {
            let mut m = self.inner.membership.write();
            if m.scan_in > 0 {
                m.scan_in -= 1;
                return;
            }
            m.scan_in = SCAN_EVERY - 1;
        }
        // The unlocked nodes this conductor owns as the scan starts, kept by their ring keys
        // (each is looked at again below: takeovers await, and the ring may change meanwhile).
        let unlocked = NodeFilter { reserved: Some(false), ..Default::default() };
        let keys = match self.db().node_ids_keyed(&unlocked, self.owner_test()) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "takeover: cannot list nodes");
                return;
            }
        };
        for id in keys {
            if self.inner.membership.read().known.contains(&id) {
                continue;
            }
            let mine = self.db().view_node(id, |n, _| {
                self.owns(&n.conductor_group, &n.driver, id)
                    .then(|| n.conductor_affinity.as_deref() == Some(self.host()))
            });
            match mine {
                Ok(Some(true)) => {
                    self.inner.membership.write().known.insert(id);
                }
                Ok(Some(false)) => self.take_over_node(id, &rings).await,
                Ok(None) | Err(_) => {}
            }
        }
    }

    /// Makes this conductor the node's: an operation the silent conductor was running fails
    /// (naming it); a node waiting for its agent gets its ramdisk boot prepared again here and
    /// goes on at the agent's next heartbeat; an active node gets its boot configuration rebuilt
    /// (Ironic's take-over).
    async fn take_over_node(&self, id: NodeId, rings: &Rings) {
        let Ok(mut t) = self.acquire(id) else { return };
        let host = self.host().to_string();
        let prev = t.node.conductor_affinity.clone();
        if prev.as_deref() == Some(host.as_str()) {
            self.inner.membership.write().known.insert(id);
            return;
        }
        let prev_name = prev.clone().unwrap_or_else(|| "(unknown)".into());
        let prev_alive = prev.as_deref().is_some_and(|p| rings.is_live(p));
        let state = t.node.provision_state;
        tracing::info!(node = %id, from = %prev_name, %state, "taking the node over");
        if state_machine::is_working(state) {
            if prev_alive {
                // Its owner is alive and merely between two steps: its work goes on there.
                return;
            }
            let msg = format!(
                "Conductor {prev_name} went offline while node {id} was in state \"{state}\"; conductor {host} took the node over and failed the operation."
            );
            t.node.target_power_state = None;
            t.node.conductor_affinity = Some(host);
            self.fail_interrupted_work(&mut t, msg).await;
            return;
        }
        if t.node.target_power_state.take().is_some() && !prev_alive {
            t.node.last_error = Some(format!(
                "Conductor {prev_name} went offline during a power state change of node {id}; conductor {host} took the node over."
            ));
        }
        let boot = t.driver.boot.clone();
        let result = match state {
            s if state_machine::is_waiting(s) => boot.prepare_ramdisk(&mut t).await,
            ProvisionState::Active => boot.prepare_instance(&mut t).await,
            _ => Ok(()),
        };
        t.node.conductor_affinity = Some(host.clone());
        if let Err(e) = result {
            let msg = format!("Conductor {host} could not take node {id} over from {prev_name}: {e}");
            if state_machine::is_waiting(state) {
                self.finish(&mut t, Event::Fail, Some(msg));
                return;
            }
            t.node.last_error = Some(msg);
        }
        match self.save_and_release(&mut t) {
            Ok(()) => {
                self.inner.membership.write().known.insert(id);
            }
            Err(e) => tracing::warn!(node = %id, error = %e, "takeover: cannot save"),
        }
    }

    /// Fails the work a node was in the middle of when the conductor running it was lost
    /// (crashed, restarted, cut off from the database) through that work's own failure path, so
    /// its clean-up runs (the ramdisk's boot, the provisioning network's ports, the power) as
    /// after any failure; a node not in a working state is only recorded.
    pub(crate) async fn fail_interrupted_work(&self, t: &mut LockedTask, msg: String) {
        match t.node.provision_state {
            ProvisionState::Deploying => self.fail_deploy(t, msg).await,
            ProvisionState::Cleaning => self.fail_cleaning(t, msg).await,
            s if state_machine::is_working(s) => self.finish(t, Event::Fail, Some(msg)),
            _ => {
                if let Err(e) = self.save_and_release(t) {
                    tracing::warn!(node = %t.node.uuid, error = %e, "cannot record the node");
                }
            }
        }
    }

    /// Ends the work the database lost (see `LockBook::orphans`): once it answers again, each
    /// orphan no task holds any more that is still locked by this conductor (or unlocked and
    /// this conductor's) is taken back under its lock and its interrupted operation failed; a
    /// power change left half-done is forgotten, with `last_error` saying so.
    pub async fn adopt_orphans(&self) {
        let ids: Vec<NodeId> = {
            let book = self.inner.locks.lock();
            book.orphans.iter().filter(|id| !book.held.contains(id)).copied().collect()
        };
        let host = self.host().to_string();
        for id in ids {
            let view = self.db().view_node(id, |n, r| {
                (r.map(str::to_string), self.owns(&n.conductor_group, &n.driver, id), n.provision_state)
            });
            let (reservation, owned, state) = match view {
                Ok(v) => v,
                Err(DbError::Unavailable(_)) => return,
                Err(_) => {
                    self.inner.locks.lock().orphans.remove(&id);
                    continue;
                }
            };
            self.inner.locks.lock().orphans.remove(&id);
            let mut t = match reservation.as_deref() {
                // Still this conductor's lock: its work, whoever the ring now names.
                Some(r) if r == host => match self.relock(id) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(node = %id, error = %e, "cannot take back a node the database lost");
                        continue;
                    }
                },
                None if owned => match self.acquire(id) {
                    Ok(t) => t,
                    Err(_) => continue,
                },
                // Another conductor's now (taken over, or locked by a request since).
                _ => continue,
            };
            tracing::warn!(node = %id, %state, "taking back a node whose work the database lost");
            let msg = format!(
                "The connection of conductor {host} to the database was lost while node {id} was in state \"{state}\"; the operation cannot be resumed."
            );
            if t.node.target_power_state.take().is_some() {
                t.node.last_error = Some(msg.clone());
            }
            self.fail_interrupted_work(&mut t, msg).await;
        }
    }
}
