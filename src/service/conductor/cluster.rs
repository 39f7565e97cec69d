//! Several conductors on one database: each registers and heartbeats, owns the nodes the hash
//! ring gives it, stops acting once it has been silent too long (fencing), and takes over the
//! nodes of conductors that went silent.

use super::Conductor;
use super::ring::Rings;
use chrono::{DateTime, Utc};
use ferric_types::models::{ConductorRecord, NodeId, ProvisionState};
use ferric_types::state_machine::{self, Event};
use std::collections::HashSet;
use std::sync::Arc;

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

    /// Whether this conductor has been silent longer than the heartbeat timeout, so its peers may
    /// have taken its nodes: it must not act on any node until its next heartbeat is written.
    pub fn fenced(&self) -> bool {
        if !self.is_clustered() {
            return false;
        }
        let Some(last) = self.inner.membership.read().last_beat else { return true };
        let silent = self.env().clock.now() - last;
        silent.num_milliseconds() > (self.config().heartbeat_timeout as i64) * 1000
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
        let keys = match self.db().node_ring_keys() {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "takeover: cannot list nodes");
                return;
            }
        };
        for (id, driver, group, reserved) in keys {
            if reserved || !self.owns(&group, &driver, id) || self.inner.membership.read().known.contains(&id) {
                continue;
            }
            let mine = self.db().view_node(id, |n, _| n.conductor_affinity.as_deref() == Some(self.host()));
            match mine {
                Ok(true) => {
                    self.inner.membership.write().known.insert(id);
                }
                Ok(false) => self.take_over_node(id, &rings).await,
                Err(_) => {}
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
            // The failure paths of the interrupted work, so its clean-up runs (the ramdisk's
            // boot, the provisioning network's ports, the power) as after any failure.
            match state {
                ProvisionState::Deploying => self.fail_deploy(&mut t, msg).await,
                ProvisionState::Cleaning => self.fail_cleaning(&mut t, msg).await,
                _ => self.finish(&mut t, Event::Fail, Some(msg)),
            }
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
}
