//! Volume connectors and targets, allocations, deploy templates, node history, inventory, BIOS
//! settings and shard counts.

use super::nodes::{LockUse, StoredKeys, update_node_tx};
use super::{Db, DbError, SortDir, from_json, to_json, unique_violation};
use ferric_types::models::{
    Allocation, AllocationId, BiosSetting, DeployTemplate, DeployTemplateId, HistoryEvent, Node, NodeId, Port,
    VolumeConnector, VolumeConnectorId, VolumeTarget, VolumeTargetId,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{OptionalExtension, params};

/// A page of a listing: order, size and the UUID of the last row already seen.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub sort_key: String,
    pub sort_dir: SortDir,
    pub limit: Option<usize>,
    pub marker: Option<String>,
}

/// Fields every listing of these tables may also sort by (read from the stored body).
pub const BODY_SORT_KEYS: &[&str] = &["created_at", "updated_at"];

/// Why a sort key was refused (the API words it).
pub const SORT_KEY_ERROR: &str = "invalid sort key";

/// Maps a foreign-key failure (the node vanished meanwhile) to the node's NotFound.
fn fk_or(e: rusqlite::Error, node: &NodeId, dup: impl FnOnce(&str) -> String) -> DbError {
    if let rusqlite::Error::SqliteFailure(err, Some(text)) = &e {
        if err.code == rusqlite::ErrorCode::ConstraintViolation && text.contains("FOREIGN KEY") {
            return DbError::NotFound { kind: "Node", ident: node.to_string() };
        }
    }
    unique_violation(e, dup)
}

impl Db {
    /// `SELECT body FROM table WHERE conds ORDER BY key LIMIT`, keyset-paginated after a marker.
    fn list_bodies(
        &self,
        table: &str,
        sortable: &[&str],
        mut conds: Vec<String>,
        mut args: Vec<SqlValue>,
        page: &Page,
    ) -> Result<Vec<String>, DbError> {
        let key = if page.sort_key.is_empty() { "id" } else { page.sort_key.as_str() };
        if !sortable.contains(&key) && !BODY_SORT_KEYS.contains(&key) {
            return Err(DbError::Corrupt(format!("{SORT_KEY_ERROR} {key}")));
        }
        // Fields without a column sort by their value in the body.
        let key_expr = if sortable.contains(&key) { key.to_string() } else { format!("json_extract(body, '$.{key}')") };
        let key = key_expr.as_str();
        let (cmp, dir) = match page.sort_dir {
            SortDir::Asc => (">", "ASC"),
            SortDir::Desc => ("<", "DESC"),
        };
        if let Some(m) = &page.marker {
            args.push(SqlValue::Text(m.clone()));
            let p = args.len();
            conds.push(format!(
                "({key}, id) {cmp} ((SELECT {key} FROM {table} WHERE uuid = ?{p}), (SELECT id FROM {table} WHERE uuid = ?{p}))"
            ));
        }
        let mut sql = format!("SELECT body FROM {table}");
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY {key} {dir}, id {dir}"));
        if let Some(l) = page.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        self.read(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| r.get::<_, String>(0))?;
            rows.map(|r| Ok(r?)).collect()
        })
    }

    fn get_body(&self, table: &str, col: &str, val: &str) -> Result<Option<String>, DbError> {
        let sql = format!("SELECT body FROM {table} WHERE {col} = ?1");
        self.read(|c| Ok(c.prepare_cached(&sql)?.query_row([val], |r| r.get::<_, String>(0)).optional()?))
    }

    fn delete_row(&self, table: &str, uuid: &str, kind: &'static str) -> Result<(), DbError> {
        let sql = format!("DELETE FROM {table} WHERE uuid = ?1");
        self.write(|tx| {
            if tx.prepare_cached(&sql)?.execute([uuid])? == 0 {
                return Err(DbError::NotFound { kind, ident: uuid.to_string() });
            }
            Ok(())
        })
    }

    // ---- volume connectors ----

    pub fn create_volume_connector(&self, v: &VolumeConnector) -> Result<(), DbError> {
        let body = to_json(v)?;
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO volume_connectors (uuid, node_uuid, type, connector_id, body) VALUES (?1,?2,?3,?4,?5)",
            )?
            .execute(params![v.uuid.to_string(), v.node_uuid.to_string(), v.connector_type, v.connector_id, body])
            .map_err(|e| fk_or(e, &v.node_uuid, |t| connector_duplicate(v, t)))?;
            Ok(())
        })
    }

    pub fn update_volume_connector(&self, v: &VolumeConnector) -> Result<(), DbError> {
        let body = to_json(v)?;
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE volume_connectors SET node_uuid=?2, type=?3, connector_id=?4, body=?5 WHERE uuid=?1",
                )?
                .execute(params![v.uuid.to_string(), v.node_uuid.to_string(), v.connector_type, v.connector_id, body])
                .map_err(|e| fk_or(e, &v.node_uuid, |t| connector_duplicate(v, t)))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Volume connector", ident: v.uuid.to_string() });
            }
            Ok(())
        })
    }

    pub fn get_volume_connector(&self, id: VolumeConnectorId) -> Result<VolumeConnector, DbError> {
        match self.get_body("volume_connectors", "uuid", &id.to_string())? {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Volume connector", ident: id.to_string() }),
        }
    }

    pub fn destroy_volume_connector(&self, id: VolumeConnectorId) -> Result<(), DbError> {
        self.delete_row("volume_connectors", &id.to_string(), "Volume connector")
    }

    pub fn list_volume_connectors(&self, node: Option<NodeId>, page: &Page) -> Result<Vec<VolumeConnector>, DbError> {
        let (conds, args) = node_cond(node);
        self.list_bodies("volume_connectors", &["id", "uuid", "node_uuid", "type", "connector_id"], conds, args, page)?
            .iter()
            .map(|b| from_json(b))
            .collect()
    }

    // ---- volume targets ----

    pub fn create_volume_target(&self, v: &VolumeTarget) -> Result<(), DbError> {
        let body = to_json(v)?;
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO volume_targets (uuid, node_uuid, volume_type, volume_id, boot_index, body)
                 VALUES (?1,?2,?3,?4,?5,?6)",
            )?
            .execute(params![
                v.uuid.to_string(),
                v.node_uuid.to_string(),
                v.volume_type,
                v.volume_id,
                v.boot_index,
                body
            ])
            .map_err(|e| fk_or(e, &v.node_uuid, |t| target_duplicate(v, t)))?;
            Ok(())
        })
    }

    pub fn update_volume_target(&self, v: &VolumeTarget) -> Result<(), DbError> {
        let body = to_json(v)?;
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE volume_targets SET node_uuid=?2, volume_type=?3, volume_id=?4, boot_index=?5, body=?6
                     WHERE uuid=?1",
                )?
                .execute(params![
                    v.uuid.to_string(),
                    v.node_uuid.to_string(),
                    v.volume_type,
                    v.volume_id,
                    v.boot_index,
                    body
                ])
                .map_err(|e| fk_or(e, &v.node_uuid, |t| target_duplicate(v, t)))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Volume target", ident: v.uuid.to_string() });
            }
            Ok(())
        })
    }

    pub fn get_volume_target(&self, id: VolumeTargetId) -> Result<VolumeTarget, DbError> {
        match self.get_body("volume_targets", "uuid", &id.to_string())? {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Volume target", ident: id.to_string() }),
        }
    }

    pub fn destroy_volume_target(&self, id: VolumeTargetId) -> Result<(), DbError> {
        self.delete_row("volume_targets", &id.to_string(), "Volume target")
    }

    pub fn list_volume_targets(&self, node: Option<NodeId>, page: &Page) -> Result<Vec<VolumeTarget>, DbError> {
        let (conds, args) = node_cond(node);
        self.list_bodies(
            "volume_targets",
            &["id", "uuid", "node_uuid", "volume_type", "volume_id", "boot_index"],
            conds,
            args,
            page,
        )?
        .iter()
        .map(|b| from_json(b))
        .collect()
    }

    // ---- allocations ----

    pub fn create_allocation(&self, a: &Allocation) -> Result<(), DbError> {
        let body = to_json(a)?;
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO allocations (uuid, name, node_uuid, state, resource_class, owner, body)
                 VALUES (?1,?2,NULL,?3,?4,?5,?6)",
            )?
            .execute(params![a.uuid.to_string(), a.name, a.state, a.resource_class, a.owner, body])
            .map_err(|e| unique_violation(e, |t| allocation_duplicate(a, t)))?;
            Ok(())
        })
    }

    /// Saves an allocation's own fields (name, extra, state, last_error); its node link changes
    /// only through [`Db::allocate_node`] and [`Db::destroy_allocation`].
    pub fn update_allocation(&self, a: &Allocation) -> Result<(), DbError> {
        let body = to_json(a)?;
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE allocations SET name=?2, state=?3, resource_class=?4, owner=?5,
                     body=json_set(?6, '$.node_uuid', json_extract(body, '$.node_uuid')) WHERE uuid=?1",
                )?
                .execute(params![a.uuid.to_string(), a.name, a.state, a.resource_class, a.owner, body])
                .map_err(|e| unique_violation(e, |t| allocation_duplicate(a, t)))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Allocation", ident: a.uuid.to_string() });
            }
            Ok(())
        })
    }

    /// Changes only an allocation's name and extra (its PATCH), leaving state and node alone
    /// however the allocation process moves them meanwhile.
    pub fn patch_allocation(
        &self,
        id: AllocationId,
        name: Option<&str>,
        extra: &ferric_types::models::JsonMap,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), DbError> {
        let name_json = to_json(&name)?;
        let extra_json = to_json(extra)?;
        let at_json = to_json(&at)?;
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE allocations SET name = ?2,
                     body = json_set(body, '$.name', json(?3), '$.extra', json(?4), '$.updated_at', json(?5))
                     WHERE uuid = ?1",
                )?
                .execute(params![id.to_string(), name, name_json, extra_json, at_json])
                .map_err(|e| {
                    unique_violation(e, |_| format!("An allocation with name {} already exists.", name.unwrap_or("")))
                })?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Allocation", ident: id.to_string() });
            }
            Ok(())
        })
    }

    /// By UUID, or by name.
    pub fn get_allocation(&self, ident: &str) -> Result<Allocation, DbError> {
        let col = if ident.parse::<AllocationId>().is_ok() { "uuid" } else { "name" };
        match self.get_body("allocations", col, ident)? {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Allocation", ident: ident.to_string() }),
        }
    }

    pub fn list_allocations(&self, f: &AllocationFilter, page: &Page) -> Result<Vec<Allocation>, DbError> {
        let (mut conds, mut args) = node_cond(f.node);
        for (col, v) in [("resource_class", &f.resource_class), ("state", &f.state), ("owner", &f.owner)] {
            if let Some(v) = v {
                args.push(SqlValue::Text(v.clone()));
                conds.push(format!("{col} = ?{}", args.len()));
            }
        }
        self.list_bodies(
            "allocations",
            &["id", "uuid", "name", "node_uuid", "state", "resource_class", "owner"],
            conds,
            args,
            page,
        )?
        .iter()
        .map(|b| from_json(b))
        .collect()
    }

    /// Deletes an allocation and, in the same transaction, frees its node's instance.
    pub fn destroy_allocation(&self, id: AllocationId) -> Result<(), DbError> {
        self.write(|tx| {
            let node: Option<Option<String>> = tx
                .prepare_cached("SELECT node_uuid FROM allocations WHERE uuid = ?1")?
                .query_row([id.to_string()], |r| r.get(0))
                .optional()?;
            let Some(node) = node else {
                return Err(DbError::NotFound { kind: "Allocation", ident: id.to_string() });
            };
            tx.prepare_cached("DELETE FROM allocations WHERE uuid = ?1")?.execute([id.to_string()])?;
            if let Some(n) = node {
                tx.prepare_cached(
                    "UPDATE nodes SET instance_uuid = NULL, version = version + 1,
                     body = json_set(body, '$.instance_uuid', json('null'), '$.allocation_uuid', json('null'))
                     WHERE uuid = ?1 AND instance_uuid = ?2",
                )?
                .execute(params![n, id.to_string()])?;
            }
            Ok(())
        })
    }

    /// Binds `a` (already `active`, with `node_uuid` set) to `node` and writes the node (with its
    /// `instance_uuid` set to the allocation's UUID) in one transaction. Fails with
    /// `Duplicate` when the node is associated with another instance or allocation, or the
    /// allocation's UUID is some other node's instance: a node is allocated once.
    pub fn allocate_node(&self, a: &Allocation, node: &Node) -> Result<(), DbError> {
        let abody = to_json(a)?;
        let nbody = to_json(node)?;
        let alloc = a.uuid.to_string();
        let version = self.write(|tx| {
            let current: Option<Option<String>> = tx
                .prepare_cached("SELECT instance_uuid FROM nodes WHERE uuid = ?1")?
                .query_row([node.uuid.to_string()], |r| r.get(0))
                .optional()?;
            let Some(current) = current else {
                return Err(DbError::NotFound { kind: "Node", ident: node.uuid.to_string() });
            };
            if let Some(inst) = current.filter(|i| *i != alloc) {
                return Err(DbError::Duplicate(format!("Node {} is associated with instance {inst}.", node.uuid)));
            }
            let n = tx
                .prepare_cached("UPDATE allocations SET node_uuid = ?2, state = ?3, body = ?4 WHERE uuid = ?1")?
                .execute(params![alloc, node.uuid.to_string(), a.state, abody])
                .map_err(|e| {
                    unique_violation(e, |_| {
                        format!("Node {} is associated with instance {}.", node.uuid, alloc)
                    })
                })?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Allocation", ident: alloc.clone() });
            }
            update_node_tx(tx, node, &nbody, LockUse::Ignore, None).map_err(|e| match e {
                DbError::Duplicate(_) => DbError::Duplicate(format!(
                    "Instance {alloc} is already associated with a node, it cannot be associated with this other node {}",
                    node.uuid
                )),
                other => other,
            })
        })?;
        self.cache_node(version, node);
        Ok(())
    }

    // ---- deploy templates ----

    pub fn create_deploy_template(&self, t: &DeployTemplate) -> Result<(), DbError> {
        let body = to_json(t)?;
        self.write(|tx| {
            tx.prepare_cached("INSERT INTO deploy_templates (uuid, name, body) VALUES (?1,?2,?3)")?
                .execute(params![t.uuid.to_string(), t.name, body])
                .map_err(|e| unique_violation(e, |txt| template_duplicate(t, txt)))?;
            Ok(())
        })
    }

    pub fn update_deploy_template(&self, t: &DeployTemplate) -> Result<(), DbError> {
        let body = to_json(t)?;
        self.write(|tx| {
            let n = tx
                .prepare_cached("UPDATE deploy_templates SET name=?2, body=?3 WHERE uuid=?1")?
                .execute(params![t.uuid.to_string(), t.name, body])
                .map_err(|e| unique_violation(e, |txt| template_duplicate(t, txt)))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Deploy template", ident: t.uuid.to_string() });
            }
            Ok(())
        })
    }

    /// By UUID, or by name.
    pub fn get_deploy_template(&self, ident: &str) -> Result<DeployTemplate, DbError> {
        let col = if ident.parse::<DeployTemplateId>().is_ok() { "uuid" } else { "name" };
        match self.get_body("deploy_templates", col, ident)? {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Deploy template", ident: ident.to_string() }),
        }
    }

    pub fn destroy_deploy_template(&self, id: DeployTemplateId) -> Result<(), DbError> {
        self.delete_row("deploy_templates", &id.to_string(), "Deploy template")
    }

    pub fn list_deploy_templates(&self, page: &Page) -> Result<Vec<DeployTemplate>, DbError> {
        self.list_bodies("deploy_templates", &["id", "uuid", "name"], Vec::new(), Vec::new(), page)?
            .iter()
            .map(|b| from_json(b))
            .collect()
    }

    // ---- node history ----

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
        let port_bodies = super::ports::port_bodies(ports)?;
        let version = self.write(|tx| {
            super::ports::update_ports_tx(tx, ports, port_bodies)?;
            let stored = StoredKeys::read(tx, n.uuid)?;
            let version = update_node_tx(tx, n, &body, lock, stored.as_ref())?;
            let changed = n.last_error.is_some() && stored.and_then(|k| k.last_error) != n.last_error;
            if !changed {
                return Ok(version);
            }
            let e = make_event();
            tx.prepare_cached("INSERT INTO node_history (uuid, node_uuid, created_at, body) VALUES (?1,?2,?3,?4)")?
                .execute(params![e.uuid.to_string(), n.uuid.to_string(), e.created_at.to_rfc3339(), to_json(&e)?])?;
            tx.prepare_cached(
                "DELETE FROM node_history WHERE node_uuid = ?1 AND id NOT IN
                 (SELECT id FROM node_history WHERE node_uuid = ?1 ORDER BY id DESC LIMIT ?2)",
            )?
            .execute(params![n.uuid.to_string(), keep as i64])?;
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
        let body: Option<String> = self.read(|c| {
            Ok(c.prepare_cached("SELECT body FROM node_history WHERE uuid = ?1 AND node_uuid = ?2")?
                .query_row([id, &node.to_string()], |r| r.get(0))
                .optional()?)
        })?;
        match body {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Node history record", ident: id.to_string() }),
        }
    }

    // ---- inventory ----

    /// Stores (replacing) the inventory and plugin data an inspection produced.
    pub fn put_inventory(
        &self,
        node: NodeId,
        inventory: &serde_json::Value,
        plugin_data: &serde_json::Value,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), DbError> {
        let (i, p) = (to_json(inventory)?, to_json(plugin_data)?);
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO node_inventory (node_uuid, inventory, plugin_data, created_at) VALUES (?1,?2,?3,?4)
                 ON CONFLICT(node_uuid) DO UPDATE SET inventory = excluded.inventory,
                 plugin_data = excluded.plugin_data, created_at = excluded.created_at",
            )?
            .execute(params![node.to_string(), i, p, at.to_rfc3339()])
            .map_err(|e| fk_or(e, &node, |_| String::new()))?;
            Ok(())
        })
    }

    /// (inventory, plugin_data), if an inspection stored them.
    pub fn get_inventory(&self, node: NodeId) -> Result<Option<(serde_json::Value, serde_json::Value)>, DbError> {
        let row: Option<(String, String)> = self.read(|c| {
            Ok(c.prepare_cached("SELECT inventory, plugin_data FROM node_inventory WHERE node_uuid = ?1")?
                .query_row([node.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })?;
        row.map(|(i, p)| Ok((from_json(&i)?, from_json(&p)?))).transpose()
    }

    // ---- BIOS settings ----

    /// Replaces a node's cached BIOS settings.
    pub fn put_bios_settings(&self, node: NodeId, settings: &[BiosSetting]) -> Result<(), DbError> {
        let bodies: Vec<String> = settings.iter().map(to_json).collect::<Result<_, _>>()?;
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM bios_settings WHERE node_uuid = ?1")?.execute([node.to_string()])?;
            let mut st = tx.prepare_cached("INSERT INTO bios_settings (node_uuid, name, body) VALUES (?1,?2,?3)")?;
            for (s, b) in settings.iter().zip(bodies) {
                st.execute(params![node.to_string(), s.name, b]).map_err(|e| fk_or(e, &node, |_| String::new()))?;
            }
            Ok(())
        })
    }

    /// A node's BIOS settings, by name.
    pub fn list_bios_settings(&self, node: NodeId) -> Result<Vec<BiosSetting>, DbError> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT body FROM bios_settings WHERE node_uuid = ?1 ORDER BY name")?;
            let rows = st.query_map([node.to_string()], |r| r.get::<_, String>(0))?;
            rows.map(|b| from_json(&b?)).collect()
        })
    }

    pub fn get_bios_setting(&self, node: NodeId, name: &str) -> Result<Option<BiosSetting>, DbError> {
        let body: Option<String> = self.read(|c| {
            Ok(c.prepare_cached("SELECT body FROM bios_settings WHERE node_uuid = ?1 AND name = ?2")?
                .query_row([node.to_string(), name.to_string()], |r| r.get(0))
                .optional()?)
        })?;
        body.map(|b| from_json(&b)).transpose()
    }

    // ---- firmware components ----

    /// Replaces a node's cached firmware components.
    pub fn put_firmware_components(
        &self,
        node: NodeId,
        comps: &[ferric_types::models::FirmwareComponent],
    ) -> Result<(), DbError> {
        let bodies: Vec<String> = comps.iter().map(to_json).collect::<Result<_, _>>()?;
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM firmware_components WHERE node_uuid = ?1")?.execute([node.to_string()])?;
            let mut st =
                tx.prepare_cached("INSERT INTO firmware_components (node_uuid, component, body) VALUES (?1,?2,?3)")?;
            for (c, b) in comps.iter().zip(bodies) {
                st.execute(params![node.to_string(), c.component, b])
                    .map_err(|e| fk_or(e, &node, |_| String::new()))?;
            }
            Ok(())
        })
    }

    pub fn list_firmware_components(
        &self,
        node: NodeId,
    ) -> Result<Vec<ferric_types::models::FirmwareComponent>, DbError> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT body FROM firmware_components WHERE node_uuid = ?1 ORDER BY component")?;
            let rows = st.query_map([node.to_string()], |r| r.get::<_, String>(0))?;
            rows.map(|b| from_json(&b?)).collect()
        })
    }

    // ---- shards ----

    /// (shard, node count), largest first, as Ironic's `get_shard_list` counts them.
    pub fn shard_counts(&self) -> Result<Vec<(Option<String>, i64)>, DbError> {
        let mut rows: Vec<(Option<String>, i64)> = self.read(|c| {
            let mut st = c.prepare_cached("SELECT shard, COUNT(id) FROM nodes GROUP BY shard")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.map(|r| Ok(r?)).collect::<Result<Vec<_>, DbError>>()
        })?;
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        Ok(rows)
    }
}

/// Filters for allocation listings.
#[derive(Debug, Clone, Default)]
pub struct AllocationFilter {
    pub node: Option<NodeId>,
    pub resource_class: Option<String>,
    pub state: Option<String>,
    pub owner: Option<String>,
}

fn node_cond(node: Option<NodeId>) -> (Vec<String>, Vec<SqlValue>) {
    match node {
        Some(n) => (vec!["node_uuid = ?1".into()], vec![SqlValue::Text(n.to_string())]),
        None => (Vec::new(), Vec::new()),
    }
}

fn connector_duplicate(v: &VolumeConnector, text: &str) -> String {
    if text.contains("volume_connectors.type") || text.contains("connector_id") {
        format!("A volume connector with type {} and connector ID {} already exists.", v.connector_type, v.connector_id)
    } else {
        format!("A volume connector with UUID {} already exists.", v.uuid)
    }
}

fn target_duplicate(v: &VolumeTarget, text: &str) -> String {
    if text.contains("boot_index") {
        format!("A volume target with boot index '{}' for the same node already exists.", v.boot_index)
    } else {
        format!("A volume target with UUID {} already exists.", v.uuid)
    }
}

fn allocation_duplicate(a: &Allocation, text: &str) -> String {
    if text.contains("allocations.name") {
        format!("An allocation with name {} already exists.", a.name.as_deref().unwrap_or(""))
    } else {
        format!("An allocation with UUID {} already exists.", a.uuid)
    }
}

fn template_duplicate(t: &DeployTemplate, text: &str) -> String {
    if text.contains("deploy_templates.name") {
        format!("A deploy template with name {} already exists.", t.name)
    } else {
        format!("A deploy template with UUID {} already exists.", t.uuid)
    }
}
