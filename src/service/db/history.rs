//! Node history: error events recorded in the same transaction as the node write that set
//! `last_error`, kept to a bounded number per node.

use super::nodes::{LockUse, StoredKeys, update_node_tx};
use super::paging::node_cond;
use super::ports::{port_bodies, update_ports_tx};
use super::sql::vals;
use super::{Db, DbError, Page, from_json, to_json};
use ferric_types::models::{HistoryEvent, Node, NodeId, Port};

impl Db {
    /// Writes `n` and its `ports` and, in the same transaction, records the event `make_event`
    /// builds if the node's `last_error` changed to a new value; keeps at most `keep` events per
    /// node. `lock` says whose lock the write needs, and whether it releases it.
    pub fn update_node_recording(
        &self,
        n: &Node,
        ports: &[Port],
        make_event: impl FnOnce() -> HistoryEvent,
        keep: usize,
        lock: LockUse<'_>,
    ) -> Result<(), DbError> {
        let body = to_json(n)?;
        let port_bodies = port_bodies(ports)?;
        let uuid = n.uuid.to_string();
        // Made at most once, however often the transaction runs.
        let mut make_event = Some(make_event);
        let mut event: Option<(HistoryEvent, String)> = None;
        let version = self.write(|tx| {
            update_ports_tx(tx, ports, &port_bodies)?;
            let stored = StoredKeys::read(tx, n.uuid)?;
            let version = update_node_tx(tx, n, &body, lock, stored.as_ref())?;
            let changed = n.last_error.is_some() && stored.and_then(|k| k.last_error) != n.last_error;
            if !changed {
                return Ok(version);
            }
            if let Some(make) = make_event.take() {
                let e = make();
                let body = to_json(&e)?;
                event = Some((e, body));
            }
            let Some((e, body)) = &event else { unreachable!("made above") };
            tx.execute(
                "INSERT INTO node_history (uuid, node_uuid, created_at, body) VALUES (?1,?2,?3,?4)",
                &vals![e.uuid.to_string(), &uuid, e.created_at.to_rfc3339(), body],
            )?;
            tx.execute(
                "DELETE FROM node_history WHERE node_uuid = ?1 AND id NOT IN
                 (SELECT id FROM node_history WHERE node_uuid = ?1 ORDER BY id DESC LIMIT ?2)",
                &vals![&uuid, i64::try_from(keep).unwrap_or(i64::MAX)],
            )?;
            Ok(version)
        })?;
        self.cache_node(version, n);
        Ok(())
    }

    pub fn list_history(&self, node: NodeId, page: &Page) -> Result<Vec<HistoryEvent>, DbError> {
        let (conds, args) = node_cond(Some(node));
        self.list_bodies("node_history", &["id", "uuid", "created_at"], conds, args, page)?
            .iter()
            .map(|b| from_json(b))
            .collect()
    }

    pub fn get_history(&self, node: NodeId, id: &str) -> Result<HistoryEvent, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT body FROM node_history WHERE uuid = ?1 AND node_uuid = ?2",
                &vals![id, node.to_string()],
                |r| from_json(r.str(0)?),
            )
        })?
        .ok_or_else(|| DbError::NotFound { kind: "Node history record", ident: id.to_string() })
    }
}
