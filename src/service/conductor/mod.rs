//! The conductor: state machine table, per-node locks, worker pool, periodic tasks, deploy
//! orchestration.
//!
//! Every operation on a node takes the node's lock (its `reservation` column), works on a
//! [`Task`], and persists the node after each state change. Long work runs on a bounded pool of
//! workers; the API gets its answer (usually 202) as soon as the work is accepted.

mod agent;
mod allocations;
mod cluster;
mod hardware;
mod inspection;
mod ops;
mod periodic;
mod power;
mod provision;
pub mod ring;
mod rpc;
mod steps;
mod vendor;
mod volumes;

pub use inspection::AGENT_INSPECT;

use crate::db::{Db, DbError, LockUse};
use crate::drivers::{DriverEnv, DriverError, Registry, Task};
use ferric_types::models::{ConductorRecord, Node, NodeId, ProvisionState};
use ferric_types::rpc::RpcError;
use ferric_types::state_machine::{self, Event};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Conductor settings (Ironic's `[conductor]` options), in seconds unless noted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConductorConfig {
    /// Hostname recorded in reservations and shown as `conductor`.
    pub host: String,
    pub conductor_group: String,
    /// Size of the worker pool; requests beyond it get 503.
    pub workers: usize,
    pub deploy_callback_timeout: u64,
    pub clean_callback_timeout: u64,
    pub inspect_wait_timeout: u64,
    pub rescue_callback_timeout: u64,
    pub service_callback_timeout: u64,
    pub check_timeouts_interval: u64,
    pub sync_power_state_interval: u64,
    /// Consecutive power-sync failures before the node goes to maintenance.
    pub power_state_sync_max_retries: u32,
    /// Put the hardware back into the recorded power state when they differ (Ironic's default),
    /// rather than recording what the hardware says.
    pub force_power_state_during_sync: bool,
    pub automated_clean: bool,
    /// How long to wait for a requested power state to be reached.
    pub power_state_change_timeout: u64,
    /// How often the power state is read while waiting for a change, in milliseconds.
    pub power_state_poll_interval_ms: u64,
    /// Agents heartbeat at least this often (sent to them at lookup).
    pub agent_heartbeat_timeout: u64,
    /// Whether this conductor shares its database with others (`--role conductor`): it then
    /// heartbeats, acts only on the nodes the hash ring gives it, and takes over silent peers'.
    #[serde(skip)]
    pub cluster: bool,
    /// A conductor built only for an API process's lookups (drivers, interfaces): never
    /// registered, never started.
    #[serde(skip)]
    pub passive: bool,
    /// How often a clustered conductor writes its heartbeat and looks for nodes to take over.
    pub heartbeat_interval: u64,
    /// A conductor not heard from for this long is offline; its nodes are taken over.
    pub heartbeat_timeout: u64,
    /// Each conductor holds 2^this points on each hash ring.
    pub hash_partition_exponent: u32,
    /// The URL this conductor's JSON-RPC endpoint answers on, registered for API processes.
    pub rpc_url: Option<String>,
}

impl Default for ConductorConfig {
    fn default() -> Self {
        ConductorConfig {
            host: "ferric-conductor".into(),
            conductor_group: String::new(),
            workers: 100,
            deploy_callback_timeout: 1800,
            clean_callback_timeout: 1800,
            inspect_wait_timeout: 1800,
            rescue_callback_timeout: 1800,
            service_callback_timeout: 1800,
            check_timeouts_interval: 60,
            sync_power_state_interval: 60,
            power_state_sync_max_retries: 3,
            force_power_state_during_sync: true,
            automated_clean: true,
            power_state_change_timeout: 60,
            power_state_poll_interval_ms: 1000,
            agent_heartbeat_timeout: 300,
            cluster: false,
            passive: false,
            heartbeat_interval: 10,
            heartbeat_timeout: 60,
            hash_partition_exponent: 5,
            rpc_url: None,
        }
    }
}

/// Conductor-side errors; converted to [`RpcError`] at the boundary.
#[derive(Debug, thiserror::Error)]
pub enum ConductorError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("{0}")]
    Rpc(RpcError),
}

impl From<RpcError> for ConductorError {
    fn from(e: RpcError) -> Self {
        ConductorError::Rpc(e)
    }
}

impl From<DbError> for RpcError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound { .. } => RpcError::NotFound(e.to_string()),
            DbError::Duplicate(m) => RpcError::Conflict(m),
            DbError::Locked { .. } => RpcError::Locked(e.to_string()),
            // The database is down or unreachable: 503, try again later.
            DbError::Unavailable(_) => RpcError::Unavailable(e.to_string()),
            other => {
                tracing::error!(error = %other, "database failure");
                RpcError::Internal(format!("Database error: {other}"))
            }
        }
    }
}

impl From<DriverError> for RpcError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::InvalidParameter(m) => RpcError::Invalid(m),
            DriverError::MissingParameter(m) => RpcError::MissingParameter(m),
            DriverError::Unsupported(m) => RpcError::Unsupported(m),
            DriverError::Failed(m) | DriverError::Busy(m) => RpcError::DriverFailed(m),
            DriverError::Timeout(m) => RpcError::Timeout(m),
        }
    }
}

impl From<ConductorError> for RpcError {
    fn from(e: ConductorError) -> Self {
        match e {
            ConductorError::Db(d) => d.into(),
            ConductorError::Driver(d) => d.into(),
            ConductorError::Rpc(r) => r,
        }
    }
}

type Result<T, E = ConductorError> = std::result::Result<T, E>;

/// The conductor service. Cheap to clone.
#[derive(Clone)]
pub struct Conductor {
    inner: Arc<Inner>,
}

struct Inner {
    config: ConductorConfig,
    db: Db,
    registry: Registry,
    env: Arc<DriverEnv>,
    workers: Arc<Semaphore>,
    /// Consecutive power-sync failures per node.
    power_failures: parking_lot::Mutex<std::collections::HashMap<NodeId, u32>>,
    /// Background work, so [`Conductor::halt`] can end it as a crash would.
    tasks: parking_lot::Mutex<tokio::task::JoinSet<()>>,
    /// Set by [`Conductor::halt`]: this conductor takes no more locks and starts no more work.
    halted: std::sync::atomic::AtomicBool,
    /// Peers, rings and this conductor's last heartbeat (clustered conductors).
    membership: parking_lot::RwLock<cluster::Membership>,
    /// Where provision-state changes are recorded (`--audit-log`).
    audit: std::sync::OnceLock<Arc<crate::audit::AuditLog>>,
    /// The nodes this conductor's tasks hold, and those whose work the database lost.
    locks: Arc<parking_lot::Mutex<LockBook>>,
    /// See [`Conductor::start`]: drops running work once this conductor is fenced.
    watchdog: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What became of this conductor's node locks when the database went away.
#[derive(Default)]
struct LockBook {
    /// Nodes a live task of this conductor holds (a [`NodeLock`] not dropped yet).
    held: std::collections::HashSet<NodeId>,
    /// Nodes whose task could not record its end (a save, or the lock's release, failed with
    /// the database unreachable): the database may show them mid-operation and locked by this
    /// conductor with nothing running. Once no task holds them and the database answers again,
    /// [`Conductor::adopt_orphans`] fails their interrupted work and releases them.
    orphans: std::collections::BTreeSet<NodeId>,
}

/// A node's lock, released when dropped (also on panics and cancelled tasks) unless a last
/// save released it already ([`Conductor::save_and_release`]).
pub(crate) struct NodeLock {
    db: Db,
    node: NodeId,
    host: String,
    released: bool,
    book: Arc<parking_lot::Mutex<LockBook>>,
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        {
            let mut book = self.book.lock();
            book.held.remove(&self.node);
            // An orphan keeps its lock: nothing else may act on it until its work is failed.
            if self.released || book.orphans.contains(&self.node) {
                return;
            }
        }
        // Not under the book's lock: the release is a database call.
        match self.db.release_node(self.node, &self.host) {
            Ok(()) => {}
            Err(e @ DbError::Unavailable(_)) => {
                tracing::error!(node = %self.node, error = %e, "cannot release the node's lock; released once the database answers");
                self.book.lock().orphans.insert(self.node);
            }
            Err(e) => tracing::error!(node = %self.node, error = %e, "failed to release node lock"),
        }
    }
}

/// A task with the lock that protects it.
pub(crate) struct LockedTask {
    pub task: Task,
    _lock: NodeLock,
}

impl std::ops::Deref for LockedTask {
    type Target = Task;
    fn deref(&self) -> &Task {
        &self.task
    }
}

impl std::ops::DerefMut for LockedTask {
    fn deref_mut(&mut self) -> &mut Task {
        &mut self.task
    }
}

impl Conductor {
    /// Builds the conductor and registers it in the database. Call [`Conductor::start`] to
    /// recover from a previous crash and run periodic tasks.
    pub fn new(config: ConductorConfig, db: Db, registry: Registry, env: DriverEnv) -> Result<Conductor> {
        let workers = Arc::new(Semaphore::new(config.workers.max(1)));
        let c = Conductor {
            inner: Arc::new(Inner {
                config,
                db,
                registry,
                env: Arc::new(env),
                workers,
                power_failures: Default::default(),
                tasks: Default::default(),
                halted: Default::default(),
                membership: Default::default(),
                audit: Default::default(),
                locks: Default::default(),
                watchdog: Default::default(),
            }),
        };
        crate::metrics::METRICS.workers_added(c.inner.config.workers.max(1));
        if !c.config().passive {
            c.register()?;
            c.inner.membership.write().last_beat = Some(c.inner.env.clock.now());
            if c.is_clustered() {
                c.refresh_rings();
            }
        }
        Ok(c)
    }

    pub fn config(&self) -> &ConductorConfig {
        &self.inner.config
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn env(&self) -> &Arc<DriverEnv> {
        &self.inner.env
    }

    pub fn host(&self) -> &str {
        &self.inner.config.host
    }

    fn register(&self) -> Result<()> {
        let now = self.inner.env.clock.now();
        let created_at = self.db().get_conductor(self.host()).map(|c| c.created_at).unwrap_or(now);
        self.db().upsert_conductor(&ConductorRecord {
            hostname: self.host().to_string(),
            conductor_group: self.inner.config.conductor_group.clone(),
            drivers: self.registry().hardware_types().map(|h| h.name.clone()).collect(),
            created_at,
            updated_at: now,
            online: true,
            rpc_url: self.inner.config.rpc_url.clone(),
        })?;
        Ok(())
    }

    /// Marks this conductor offline (clean shutdown).
    pub fn unregister(&self) {
        if let Ok(mut rec) = self.db().get_conductor(self.host()) {
            rec.online = false;
            rec.updated_at = self.inner.env.clock.now();
            if let Err(e) = self.db().upsert_conductor(&rec) {
                tracing::warn!(host = self.host(), error = %e, "cannot mark this conductor offline");
            }
        }
    }

    /// Takes `node`'s lock and loads its task.
    pub(crate) fn acquire(&self, node: NodeId) -> Result<LockedTask> {
        if self.is_halted() {
            return Err(RpcError::Locked(format!("Conductor {} is stopped.", self.host())).into());
        }
        self.check_not_fenced()?;
        let db = self.db().clone();
        let n = db.reserve_node(node, self.host())?;
        self.inner.locks.lock().held.insert(node);
        let book = self.inner.locks.clone();
        let lock = NodeLock { db: db.clone(), node, host: self.host().to_string(), released: false, book };
        let mut n = n;
        n.conductor = Some(self.host().to_string());
        let driver = self.registry().interfaces_for(&n)?;
        let ports = db.node_ports(node)?;
        Ok(LockedTask { task: Task { node: n, ports, driver, env: self.inner.env.clone() }, _lock: lock })
    }

    /// The task of a node whose lock this conductor still holds in the database, though no task
    /// of it holds the node any more (see `LockBook::orphans`).
    pub(crate) fn relock(&self, node: NodeId) -> Result<LockedTask> {
        self.check_not_fenced()?;
        let db = self.db().clone();
        let mut n = db.get_node_by_uuid(node)?;
        if n.reservation.as_deref() != Some(self.host()) {
            return Err(DbError::Locked { node: node.to_string(), host: n.reservation.unwrap_or_default() }.into());
        }
        self.inner.locks.lock().held.insert(node);
        let book = self.inner.locks.clone();
        let lock = NodeLock { db: db.clone(), node, host: self.host().to_string(), released: false, book };
        n.conductor = Some(self.host().to_string());
        let driver = self.registry().interfaces_for(&n)?;
        let ports = db.node_ports(node)?;
        Ok(LockedTask { task: Task { node: n, ports, driver, env: self.inner.env.clone() }, _lock: lock })
    }

    /// The nodes this conductor's tasks hold locked right now (simulations check that no
    /// other conductor holds the lock of one of them in the database).
    pub fn held_nodes(&self) -> Vec<NodeId> {
        self.inner.locks.lock().held.iter().copied().collect()
    }

    /// A task without the lock, for read-only driver calls (validation, boot device reads).
    pub(crate) fn shared_task(&self, node: NodeId) -> Result<Task> {
        let n = self.db().get_node_by_uuid(node)?;
        let driver = self.registry().interfaces_for(&n)?;
        let ports = self.db().node_ports(node)?;
        Ok(Task { node: n, ports, driver, env: self.inner.env.clone() })
    }

    /// A shared task for reading the hardware's power state, whose node carries only what power
    /// interfaces and the power sync look at: its identity, states, interfaces, ring key and
    /// `driver_info`. The sync reads every idle node each round, and copying whole nodes was
    /// a tenth of its cost. Never saved: saves need the lock, which this task does not hold.
    pub(crate) fn power_task(&self, node: NodeId) -> Result<Task> {
        let n = self.db().view_node(node, |n, reservation| Node {
            uuid: n.uuid,
            name: n.name.clone(),
            driver: n.driver.clone(),
            conductor_group: n.conductor_group.clone(),
            created_at: n.created_at,
            driver_info: n.driver_info.clone(),
            power_state: n.power_state,
            provision_state: n.provision_state,
            target_provision_state: n.target_provision_state,
            maintenance: n.maintenance,
            reservation: reservation.map(str::to_string),
            boot_interface: n.boot_interface.clone(),
            deploy_interface: n.deploy_interface.clone(),
            management_interface: n.management_interface.clone(),
            network_interface: n.network_interface.clone(),
            power_interface: n.power_interface.clone(),
            ..Node::default()
        })?;
        let driver = self.registry().interfaces_for(&n)?;
        Ok(Task { node: n, ports: Vec::new(), driver, env: self.inner.env.clone() })
    }

    /// Writes the task's node (and ports) back; refused (`Locked`) unless this conductor holds
    /// the node's lock.
    pub(crate) fn save(&self, task: &mut Task) -> Result<()> {
        self.save_with(task, LockUse::Held(self.host()))
    }

    /// A task's last save: writes the node and releases its lock in one transaction. Nothing
    /// may save the task afterwards (such a save is refused, the lock being gone).
    pub(crate) fn save_and_release(&self, t: &mut LockedTask) -> Result<()> {
        self.save_with(&mut t.task, LockUse::Release(self.host()))?;
        t._lock.released = true;
        Ok(())
    }

    fn save_with(&self, task: &mut Task, lock: LockUse<'_>) -> Result<()> {
        self.check_not_fenced()?;
        if self.is_clustered() {
            task.node.conductor_affinity = Some(self.host().to_string());
        }
        let now = self.inner.env.clock.now();
        task.node.updated_at = Some(now);
        let node = &task.node;
        let event = || history_event(node, self.host(), &self.inner.env.clock, now);
        if let Err(e) = self.db().update_node_recording(&task.node, &task.ports, event, HISTORY_PER_NODE, lock) {
            if matches!(e, DbError::Unavailable(_)) {
                // What the node went through since its last save is lost: its work is failed
                // once the database answers again.
                self.inner.locks.lock().orphans.insert(task.node.uuid);
            }
            return Err(e.into());
        }
        if self.inner.locks.lock().orphans.remove(&task.node.uuid) {
            tracing::info!(node = %task.node.uuid, "the database answers again; nothing of this node's work was lost");
        }
        Ok(())
    }

    /// Records provision-state changes in `log` (set once, when the service is assembled).
    pub fn set_audit(&self, log: Arc<crate::audit::AuditLog>) {
        let _ = self.inner.audit.set(log);
    }

    /// Moves the node along the state machine (and records when), without saving. Every
    /// provision-state change goes through here: it is where they are audited and where
    /// deploys and their failures are counted.
    pub(crate) fn process_event(&self, task: &mut Task, event: Event, target: Option<ProvisionState>) -> Result<()> {
        let from = task.node.provision_state;
        let next = state_machine::next(from, event);
        self.observe_transition(&task.node, event, from, next);
        let to = next.ok_or_else(|| {
            RpcError::InvalidState(format!(
                "The requested action \"{event}\" can not be performed on node \"{}\" while it is in state \"{from}\".",
                task.node.uuid
            ))
        })?;
        task.node.provision_state = to;
        task.node.target_provision_state =
            if state_machine::is_stable(to) { None } else { target.or(state_machine::target_of(to)) };
        task.node.provision_updated_at = Some(self.inner.env.clock.now());
        tracing::info!(node = %task.node.uuid, %from, %to, %event, "provision state change");
        Ok(())
    }

    /// Audits a provision-state change (`to` is `None` when the state machine refused it) and
    /// counts deploys (leaving `available` or `active` to deploy) and deploy failures.
    fn observe_transition(&self, node: &Node, event: Event, from: ProvisionState, to: Option<ProvisionState>) {
        let flow = || if node.deploy_interface.is_empty() { "default" } else { node.deploy_interface.as_str() };
        match to {
            Some(ProvisionState::Deploying) if event == Event::Deploy || event == Event::Rebuild => {
                crate::metrics::METRICS.deploy_started(flow())
            }
            Some(ProvisionState::DeployFailed) if from != ProvisionState::DeployFailed => {
                crate::metrics::METRICS.deploy_failed(flow())
            }
            _ => {}
        }
        let Some(log) = self.inner.audit.get() else { return };
        log.write(&crate::audit::AuditRecord {
            time: crate::audit::rfc3339(self.inner.env.clock.now()),
            kind: "provision",
            node: Some(node.uuid.to_string()),
            from: Some(from.to_string()),
            to: to.map(|t| t.to_string()),
            event: Some(event.to_string()),
            conductor: Some(self.host().to_string()),
            result: if to.is_some() { "ok" } else { "error" }.into(),
            ..Default::default()
        });
    }

    /// A worker slot, or Ironic's NoFreeConductorWorker.
    pub(crate) fn worker(&self) -> Result<OwnedSemaphorePermit> {
        self.inner.workers.clone().try_acquire_owned().map_err(|_| {
            ConductorError::Rpc(RpcError::NoFreeWorker(
                "Requested action cannot be performed due to lack of free conductor workers.".into(),
            ))
        })
    }

    /// Runs `work` on the worker pool, holding `permit` until it finishes.
    pub(crate) fn spawn<F>(&self, permit: OwnedSemaphorePermit, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if self.is_halted() {
            return;
        }
        let mut tasks = self.inner.tasks.lock();
        while tasks.try_join_next().is_some() {}
        let busy = crate::metrics::METRICS.worker_busy();
        tasks.spawn(async move {
            work.await;
            drop(permit);
            drop(busy);
        });
    }

    /// Stops this conductor as a crash would: running work is dropped where it stands, and no
    /// lock is taken nor work started afterwards. Simulations use it to restart a conductor
    /// mid-deploy on the same database (the new one recovers, as after a real crash).
    pub fn halt(&self) {
        self.inner.halted.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.tasks.lock().abort_all();
        if let Some(w) = self.inner.watchdog.lock().take() {
            w.abort();
        }
    }

    pub fn is_halted(&self) -> bool {
        self.inner.halted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until every worker is idle (tests, clean shutdown, simulations).
    pub async fn wait_idle(&self) {
        let n = self.inner.config.workers.max(1) as u32;
        if let Ok(all) = self.inner.workers.acquire_many(n).await {
            drop(all);
        }
    }

    /// Refuses to act while fenced (see [`Conductor::fenced`]).
    fn check_not_fenced(&self) -> Result<()> {
        if self.fenced() {
            return Err(RpcError::Unavailable(format!(
                "Conductor {} has not written its heartbeat for longer than {} s and may have lost its nodes to other conductors.",
                self.host(),
                self.config().heartbeat_timeout
            ))
            .into());
        }
        Ok(())
    }

    /// Loads a node by UUID or name.
    pub fn get_node(&self, ident: &str) -> Result<Node> {
        Ok(self.db().get_node(ident)?)
    }

    fn timeout_for(&self, s: ProvisionState) -> Option<Duration> {
        let c = &self.inner.config;
        let secs = match s {
            ProvisionState::DeployWait => c.deploy_callback_timeout,
            ProvisionState::CleanWait => c.clean_callback_timeout,
            ProvisionState::InspectWait => c.inspect_wait_timeout,
            ProvisionState::RescueWait => c.rescue_callback_timeout,
            ProvisionState::ServiceWait => c.service_callback_timeout,
            _ => return None,
        };
        (secs > 0).then(|| Duration::from_secs(secs))
    }
}

/// Node history entries kept per node (Ironic's `[conductor]node_history_max_entries`).
pub const HISTORY_PER_NODE: usize = 300;

/// The history entry for a node whose `last_error` just changed (Ironic's
/// `node_history_record`), with the kind of activity its state tells.
fn history_event(
    n: &Node,
    host: &str,
    clock: &ferric_types::clock::Clock,
    now: chrono::DateTime<chrono::Utc>,
) -> ferric_types::models::HistoryEvent {
    use ProvisionState::*;
    let event_type = match n.provision_state {
        Inspecting | InspectWait | InspectFailed => "introspection",
        Enroll | Verifying => "verify",
        Deleting | Error => "unprovision",
        Adopting | AdoptFailed => "adoption",
        Manageable | Available | Active | Rescue => "monitoring",
        _ => "provisioning",
    };
    ferric_types::models::HistoryEvent {
        uuid: ferric_types::models::HistoryId(clock.new_uuid()),
        node_uuid: n.uuid,
        created_at: now,
        severity: "ERROR".into(),
        event_type: event_type.into(),
        event: n.last_error.clone().unwrap_or_default(),
        conductor: Some(host.to_string()),
        user: None,
        state: Some(n.provision_state.as_str().into()),
        target_provision_state: n.target_provision_state.map(|t| t.as_str().into()),
        duration_seconds: n.provision_updated_at.map(|t| (now - t).num_seconds()),
    }
}
