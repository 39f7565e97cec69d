//! The allocation process (Ironic's `conductor/allocations.py`): pick an available node that
//! matches an allocation's resource class, traits, candidates and owner, and bind it under the
//! node's lock in one transaction, so a node is never allocated twice.

use super::{Conductor, ConductorError, Result};
use crate::db::{AllocationFilter, DbError, NodeFilter, NodeQuery};
use ferric_types::models::allocation_state::{ACTIVE, ALLOCATING, ERROR};
use ferric_types::models::{Allocation, Node, NodeId, ProvisionState};
use ferric_types::rpc::RpcError;
use serde_json::Value;
use std::time::Duration;

/// Attempts over the nodes that were locked (Ironic's `node_locked_retry_attempts`).
const LOCKED_RETRY_ATTEMPTS: u32 = 3;
/// Pause between attempts (Ironic's `node_locked_retry_interval`).
const LOCKED_RETRY_INTERVAL: Duration = Duration::from_secs(1);

fn failed(a: &Allocation, error: &str) -> String {
    format!("Failed to process allocation {}: {error}.", a.uuid)
}

fn traits_match(wanted: &[String], node: &Node) -> bool {
    wanted.iter().all(|t| node.traits.contains(t))
}

/// States in which an allocated node may be freed without maintenance (Ironic's
/// UPDATE_ALLOWED_STATES).
fn update_allowed(s: ProvisionState) -> bool {
    use ProvisionState::*;
    matches!(
        s,
        DeployFailed
            | InspectFailed
            | CleanFailed
            | Verifying
            | RescueFailed
            | UnrescueFailed
            | ServiceFailed
            | InspectWait
    )
}

impl Conductor {
    /// Stores a new allocation and starts its processing; with `backfill`, binds the given
    /// (active) node at once instead.
    pub async fn create_allocation(&self, mut a: Allocation, backfill: Option<NodeId>) -> Result<Allocation> {
        a.state = ALLOCATING.into();
        a.node_uuid = None;
        a.created_at = self.env().clock.now();
        match backfill {
            Some(node) => {
                self.db().create_allocation(&a)?;
                match self.backfill(&mut a, node).await {
                    Ok(()) => Ok(a),
                    Err(e) => {
                        let msg = RpcError::from(e).to_string();
                        self.mark_failed(&mut a, &msg);
                        Err(RpcError::Invalid(msg).into())
                    }
                }
            }
            None => {
                let permit = self.worker()?;
                self.db().create_allocation(&a)?;
                let c = self.clone();
                let work = a.clone();
                self.spawn(permit, async move { c.do_allocate(work).await });
                Ok(a)
            }
        }
    }

    fn mark_failed(&self, a: &mut Allocation, error: &str) {
        tracing::warn!(allocation = %a.uuid, error, "allocation failed");
        a.state = ERROR.into();
        a.node_uuid = None;
        a.last_error = Some(error.to_string());
        a.updated_at = Some(self.env().clock.now());
        if let Err(e) = self.db().update_allocation(a) {
            tracing::debug!(allocation = %a.uuid, error = %e, "not saving a failed allocation");
        }
    }

    async fn backfill(&self, a: &mut Allocation, node: NodeId) -> Result<()> {
        let mut t = self.acquire(node)?;
        let n = &t.node;
        let mut errors = Vec::new();
        if n.provision_state != ProvisionState::Active {
            errors.push(format!(
                "Node must be in the \"active\" state, but the current state is \"{}\"",
                n.provision_state
            ));
        }
        if let Some(rc) = &a.resource_class {
            if n.resource_class.as_ref() != Some(rc) {
                errors.push(format!(
                    "Resource class {} does not match the requested resource class {rc}",
                    n.resource_class.as_deref().unwrap_or("None")
                ));
            }
        }
        if !a.traits.is_empty() && !traits_match(&a.traits, n) {
            errors.push(format!("List of traits {:?} does not match the requested traits {:?}", n.traits, a.traits));
        }
        if !a.candidate_nodes.is_empty() && !a.candidate_nodes.contains(&n.uuid.to_string()) {
            errors.push(format!(
                "Candidate nodes must be empty or contain the target node, but got {:?}",
                a.candidate_nodes
            ));
        }
        if !errors.is_empty() {
            let error = format!("Cannot backfill an allocation for node {}: {}", n.uuid, errors.join("; "));
            return Err(RpcError::Invalid(failed(a, &error)).into());
        }
        self.bind(a, &mut t.task)?;
        Ok(())
    }

    /// Marks `a` active on the task's node and writes both in one transaction.
    fn bind(&self, a: &mut Allocation, t: &mut crate::drivers::Task) -> Result<()> {
        a.state = ACTIVE.into();
        a.node_uuid = Some(t.node.uuid);
        a.last_error = None;
        a.updated_at = Some(self.env().clock.now());
        t.node.instance_uuid = Some(a.uuid.to_string());
        t.node.allocation_uuid = Some(a.uuid.to_string());
        t.node.instance_info.insert("traits".into(), Value::from(a.traits.clone()));
        t.node.updated_at = Some(self.env().clock.now());
        self.db().allocate_node(a, &t.node)?;
        tracing::info!(node = %t.node.uuid, allocation = %a.uuid, "node reserved for allocation");
        Ok(())
    }

    /// Finds and binds a node; records the failure on the allocation otherwise.
    async fn do_allocate(&self, mut a: Allocation) {
        let result = async {
            let mut nodes = self.candidate_nodes(&a)?;
            for attempt in 0..LOCKED_RETRY_ATTEMPTS {
                let mut retry = Vec::new();
                for id in &nodes {
                    match self.try_node(&mut a, *id) {
                        Ok(true) => return Ok(()),
                        Ok(false) => {}
                        Err(ConductorError::Db(DbError::Locked { .. })) => retry.push(*id),
                        Err(ConductorError::Db(DbError::Duplicate(m))) => {
                            tracing::debug!(node = %id, reason = %m, "node already associated")
                        }
                        Err(ConductorError::Db(DbError::NotFound { kind: "Allocation", .. })) => {
                            return Err("the allocation was deleted".to_string());
                        }
                        Err(e) => tracing::debug!(node = %id, error = %e, "node skipped"),
                    }
                }
                nodes = retry;
                if nodes.is_empty() || attempt + 1 == LOCKED_RETRY_ATTEMPTS {
                    break;
                }
                tokio::time::sleep(LOCKED_RETRY_INTERVAL).await;
            }
            Err(if nodes.is_empty() {
                "all nodes were filtered out during reservation".to_string()
            } else {
                format!("could not reserve any of {} suitable nodes", nodes.len())
            })
        }
        .await;
        if let Err(error) = result {
            if self.db().get_allocation(&a.uuid.to_string()).is_ok() {
                let msg = failed(&a, &error);
                self.mark_failed(&mut a, &msg);
            }
        }
    }

    /// Locks one candidate, re-checks it and binds it; `Ok(false)` when it no longer fits.
    fn try_node(&self, a: &mut Allocation, id: NodeId) -> Result<bool> {
        let mut t = self.acquire(id)?;
        let n = &t.node;
        let fits = !n.maintenance
            && n.instance_uuid.is_none()
            && n.provision_state == ProvisionState::Available
            && n.resource_class == a.resource_class
            && traits_match(&a.traits, n);
        if !fits {
            return Ok(false);
        }
        self.bind(a, &mut t.task)?;
        Ok(true)
    }

    /// Suitable nodes in the order to try them: shuffled (so parallel allocations spread out),
    /// with a node named like the allocation first.
    fn candidate_nodes(&self, a: &Allocation) -> std::result::Result<Vec<NodeId>, String> {
        let q = NodeQuery {
            filter: NodeFilter {
                resource_class: a.resource_class.clone(),
                provision_state: Some(ProvisionState::Available),
                associated: Some(false),
                maintenance: Some(false),
                project: a.owner.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let rc = a.resource_class.as_deref().unwrap_or("None");
        let mut nodes: Vec<Node> = self
            .db()
            .list_nodes(&q)
            .map_err(|e| format!("Unexpected exception during allocation: {e}"))?
            .into_iter()
            .filter(|n| n.power_state.is_some())
            .filter(|n| a.candidate_nodes.is_empty() || a.candidate_nodes.contains(&n.uuid.to_string()))
            .collect();
        if nodes.is_empty() {
            return Err(if a.candidate_nodes.is_empty() {
                format!("no available nodes match the resource class {rc}")
            } else {
                format!("none of the requested nodes are available and match the resource class {rc}")
            });
        }
        if !a.traits.is_empty() {
            nodes.retain(|n| traits_match(&a.traits, n));
            if nodes.is_empty() {
                return Err(format!("no suitable nodes have the requested traits {}", a.traits.join(", ")));
            }
        }
        // Fisher-Yates with the clock's generator (seeded in simulations).
        for i in (1..nodes.len()).rev() {
            let r = u128::from_le_bytes(*self.env().clock.new_uuid().as_bytes());
            let j = (r % (i as u128 + 1)) as usize;
            nodes.swap(i, j);
        }
        if let Some(name) = &a.name {
            if let Some(i) = nodes.iter().position(|n| n.name.as_ref() == Some(name)) {
                let n = nodes.remove(i);
                nodes.insert(0, n);
            }
        }
        Ok(nodes.into_iter().map(|n| n.uuid).collect())
    }

    /// Restarts allocations a previous run of this conductor left `allocating` (Ironic's
    /// orphan-allocation take-over).
    pub(crate) fn resume_allocations(&self) {
        let filter = AllocationFilter { state: Some(ALLOCATING.into()), ..Default::default() };
        let pending = match self.db().list_allocations(&filter, &Default::default()) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "recovery: cannot list allocations");
                return;
            }
        };
        for a in pending {
            let Ok(permit) = self.worker() else {
                tracing::warn!(allocation = %a.uuid, "recovery: no free worker for the allocation");
                return;
            };
            tracing::info!(allocation = %a.uuid, "recovery: resuming allocation");
            let c = self.clone();
            self.spawn(permit, async move { c.do_allocate(a).await });
        }
    }

    /// Deletes an allocation; an allocated node must allow it (not active, not mid-operation,
    /// unless in maintenance). Its instance is freed in the same transaction.
    pub async fn destroy_allocation(&self, a: Allocation) -> Result<()> {
        let _lock = match a.node_uuid {
            Some(node) => {
                let t = self.acquire(node)?;
                let n = &t.node;
                if !n.maintenance {
                    if n.target_provision_state.is_some() && !update_allowed(n.provision_state) {
                        return Err(RpcError::Conflict(format!(
                            "Cannot remove allocation {} for node {}, because the node is in state {} where updates are not allowed (and maintenance mode is off)",
                            a.uuid, n.uuid, n.provision_state
                        ))
                        .into());
                    }
                    if n.provision_state == ProvisionState::Active {
                        return Err(RpcError::Conflict(format!(
                            "Cannot remove allocation {} for node {}, because the node is active (and maintenance mode is off)",
                            a.uuid, n.uuid
                        ))
                        .into());
                    }
                }
                Some(t)
            }
            None => None,
        };
        self.db().destroy_allocation(a.uuid)?;
        Ok(())
    }
}
