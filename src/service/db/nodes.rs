//! Node rows.

use super::sql::{Conn, Dialect, Row, Val, vals};
use super::{Db, DbError, from_json, to_json, unique_violation};
use chrono::{DateTime, Utc};
use ferric_types::models::{Node, NodeId, PowerState, ProvisionState};

/// Sort direction for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortDir {
    #[default]
    Asc,
    Desc,
}

/// Filters for node listings (the API's query parameters).
#[derive(Debug, Clone, Default)]
pub struct NodeFilter {
    pub provision_state: Option<ProvisionState>,
    pub driver: Option<String>,
    pub resource_class: Option<String>,
    pub maintenance: Option<bool>,
    pub associated: Option<bool>,
    pub fault: Option<String>,
    pub conductor_group: Option<String>,
    pub chassis_uuid: Option<String>,
    pub instance_uuid: Option<String>,
    pub owner: Option<String>,
    pub lessee: Option<String>,
    pub shard: Option<String>,
    /// Only nodes reserved by anyone (`Some(true)`) or by no one (`Some(false)`).
    pub reserved: Option<bool>,
    /// Only nodes in one of these states.
    pub provision_states: Option<Vec<ProvisionState>>,
    pub retired: Option<bool>,
    /// Substring of the description (case-insensitive, as SQL `LIKE`).
    pub description_contains: Option<String>,
    /// Owner or lessee.
    pub project: Option<String>,
    /// Shard in this list (API 1.82 `shard=a,b`).
    pub shards: Option<Vec<String>>,
    /// With a shard (`Some(true)`) or without one.
    pub sharded: Option<bool>,
    pub parent_node: Option<String>,
    /// Ironic's child-node rule for listings (API): `Some(false)` hides child nodes unless
    /// `parent_node` asks for a parent's children; `Some(true)` lists all; `None` applies no rule.
    pub include_children: Option<bool>,
}

/// A page of a node listing.
#[derive(Debug, Clone, Default)]
pub struct NodeQuery {
    pub filter: NodeFilter,
    pub sort_key: String,
    pub sort_dir: SortDir,
    pub limit: Option<usize>,
    pub marker: Option<NodeId>,
}

/// Columns a listing may sort by (anything else is refused by the API first).
pub const NODE_SORT_KEYS: &[&str] = &[
    "id",
    "uuid",
    "name",
    "driver",
    "provision_state",
    "power_state",
    "instance_uuid",
    "maintenance",
    "fault",
    "resource_class",
    "conductor_group",
    "chassis_uuid",
    "owner",
    "lessee",
    "shard",
    "created_at",
    "updated_at",
    "provision_updated_at",
];

/// The fields of a plain node listing, read without decoding bodies.
#[derive(Debug, Clone)]
pub struct NodeSummary {
    pub uuid: NodeId,
    pub name: Option<String>,
    pub instance_uuid: Option<String>,
    pub maintenance: bool,
    pub power_state: Option<PowerState>,
    pub provision_state: ProvisionState,
}

/// One node's overview columns (the web console's fleet table).
#[derive(Debug, Clone)]
pub struct FleetRow {
    pub uuid: NodeId,
    pub name: Option<String>,
    pub driver: String,
    pub provision_state: ProvisionState,
    pub power_state: Option<PowerState>,
    pub maintenance: bool,
    pub owner: Option<String>,
    pub conductor_group: String,
    pub fault: Option<String>,
    /// RFC 3339, as stored.
    pub updated_at: Option<String>,
    /// Locked by a conductor right now.
    pub reserved: bool,
    pub lessee: Option<String>,
}

/// The allocation column comes from the allocations table (Ironic's `allocation_id` join), so
/// it is right whoever last wrote the node's body.
const NODE_COLS: &str = "body, reservation, (SELECT a.uuid FROM allocations a WHERE a.node_uuid = nodes.uuid)";

fn node_from_row(r: &Row<'_>) -> Result<Node, DbError> {
    let mut n: Node = from_json(r.str(0)?)?;
    n.adopt_legacy_keys();
    n.reservation = r.opt_string(1)?;
    n.allocation_uuid = r.opt_string(2)?;
    Ok(n)
}

/// A node read through the decoded-node cache: the body comes back only when the row's version
/// is not the cached one (`?2`, NULL when nothing is cached).
const NODE_READ: &str = "SELECT version, reservation,
     (SELECT a.uuid FROM allocations a WHERE a.node_uuid = nodes.uuid),
     CASE WHEN version IS NOT DISTINCT FROM ?2 THEN NULL ELSE body END
     FROM nodes WHERE uuid = ?1";

/// A row read with [`NODE_READ`].
struct NodeRow {
    version: i64,
    reservation: Option<String>,
    allocation: Option<String>,
    body: Option<String>,
}

fn read_node_row(c: &Conn<'_>, id: NodeId, known: Option<i64>) -> Result<Option<NodeRow>, DbError> {
    c.query_opt(NODE_READ, &vals![id.to_string(), known], |r| {
        Ok(NodeRow {
            version: r.i64(0)?,
            reservation: r.opt_string(1)?,
            allocation: r.opt_string(2)?,
            body: r.opt_string(3)?,
        })
    })
}

/// What a node write requires of, and does to, the node's lock (its `reservation`).
#[derive(Debug, Clone, Copy)]
pub enum LockUse<'a> {
    /// Writes whoever holds the lock (API edits under their own rules, allocations).
    Ignore,
    /// Writes only while `host` holds the lock: a task's save.
    Held(&'a str),
    /// As `Held`, and releases the lock in the same statement: a task's last save, one
    /// transaction instead of two (lock releases were a third of a simulation's writes).
    Release(&'a str),
}

/// A node row's indexed columns as stored, read in the transaction that writes the node.
pub(crate) struct StoredKeys {
    pub last_error: Option<String>,
    name: Option<String>,
    instance_uuid: Option<String>,
    provision_state: String,
}

impl StoredKeys {
    pub(crate) fn read(tx: &Conn<'_>, id: NodeId) -> Result<Option<StoredKeys>, DbError> {
        tx.query_opt(
            "SELECT last_error, name, instance_uuid, provision_state FROM nodes WHERE uuid = ?1",
            &vals![id.to_string()],
            |r| {
                Ok(StoredKeys {
                    last_error: r.opt_string(0)?,
                    name: r.opt_string(1)?,
                    instance_uuid: r.opt_string(2)?,
                    provision_state: r.string(3)?,
                })
            },
        )
    }

    fn match_node(&self, n: &Node) -> bool {
        self.name == n.name
            && self.instance_uuid == n.instance_uuid
            && self.provision_state == n.provision_state.as_str()
    }
}

/// The node UPDATE, `lean` or not, releasing the lock or not. SQLite rewrites the index entries
/// of every column an UPDATE sets, changed or not (a third of a save's cost), so the lean form
/// leaves the indexed columns (`name`, `instance_uuid`, `provision_state`, `reservation`) out;
/// it only matches a row whose indexed columns already hold the node's values.
fn update_sql(lean: bool, release: bool) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        let mut out = Vec::new();
        for lean in [false, true] {
            for release in [false, true] {
                let (keys, same_keys) = match lean {
                    false => ("name=?2, provision_state=?4, instance_uuid=?6, ", ""),
                    true => (
                        "",
                        " AND name IS NOT DISTINCT FROM ?2 AND provision_state = ?4
                         AND instance_uuid IS NOT DISTINCT FROM ?6",
                    ),
                };
                let unlock = if release { ", reservation = NULL" } else { "" };
                out.push(format!(
                    "UPDATE nodes SET {keys}driver=?3, power_state=?5, maintenance=?7, fault=?8,
                     resource_class=?9, conductor_group=?10, chassis_uuid=?11, owner=?12, lessee=?13,
                     shard=?14, updated_at=?15, provision_updated_at=?16, body=?17, last_error=?18,
                     version = version + 1{unlock}
                     WHERE uuid=?1 AND (CAST(?19 AS TEXT) IS NULL OR reservation = ?19) AND ?20 = {}{same_keys}
                     RETURNING version",
                    u8::from(release)
                ));
            }
        }
        out
    });
    &all[usize::from(lean) * 2 + usize::from(release)]
}

/// The UPDATE behind [`Db::update_node`], for writes that change a node together with other rows;
/// returns the row's new version, for [`Db::cache_node`] once the transaction commits. With the
/// row's `stored` keys (read in the same transaction), a write that leaves them as they are
/// skips their indexes.
pub(crate) fn update_node_tx(
    tx: &Conn<'_>,
    n: &Node,
    body: &str,
    lock: LockUse<'_>,
    stored: Option<&StoredKeys>,
) -> Result<i64, DbError> {
    let (holder, release) = match lock {
        LockUse::Ignore => (None, false),
        LockUse::Held(h) => (Some(h), false),
        LockUse::Release(h) => (Some(h), true),
    };
    let keys = Keys::of(n);
    let (updated, provisioned) = (ts(&n.updated_at), ts(&n.provision_updated_at));
    let mut p = mirrored(n, &keys).to_vec();
    p.extend(vals![updated.as_deref(), provisioned.as_deref(), body, &n.last_error, holder, release]);
    let run = |lean: bool| {
        tx.query_opt(update_sql(lean, release), &p, |r| r.i64(0))
            .map_err(|e| unique_violation(e, |t| node_duplicate(n, t)))
    };
    let lean = stored.is_some_and(|k| k.match_node(n));
    let mut version = run(lean)?;
    if version.is_none() && lean {
        version = run(false)?;
    }
    if let Some(v) = version {
        return Ok(v);
    }
    // No row written: the node is gone, or (with a holder) someone else's lock is on it.
    let current: Option<Option<String>> =
        tx.query_opt("SELECT reservation FROM nodes WHERE uuid = ?1", &vals![&keys.uuid], |r| r.opt_string(0))?;
    match current {
        None => Err(DbError::NotFound { kind: "Node", ident: n.uuid.to_string() }),
        Some(h) => Err(DbError::Locked { node: n.uuid.to_string(), host: h.unwrap_or_default() }),
    }
}

/// The node's fields the mirrored columns store in another form.
struct Keys {
    uuid: String,
    state: &'static str,
    power: Option<&'static str>,
    chassis: Option<String>,
}

impl Keys {
    fn of(n: &Node) -> Keys {
        Keys {
            uuid: n.uuid.to_string(),
            state: n.provision_state.as_str(),
            power: n.power_state.map(|p| p.as_str()),
            chassis: n.chassis_uuid.map(|c| c.to_string()),
        }
    }
}

/// `?1`..`?14` of the node INSERT and UPDATE: the columns that mirror the body's fields.
fn mirrored<'a>(n: &'a Node, k: &'a Keys) -> [Val<'a>; 14] {
    vals![
        &k.uuid,
        &n.name,
        &n.driver,
        k.state,
        k.power,
        &n.instance_uuid,
        n.maintenance,
        &n.fault,
        &n.resource_class,
        &n.conductor_group,
        &k.chassis,
        &n.owner,
        &n.lessee,
        &n.shard,
    ]
}

fn ts(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

fn node_duplicate(n: &Node, text: &str) -> String {
    if text.contains("nodes.name") {
        format!("A node with name {} already exists.", n.name.as_deref().unwrap_or(""))
    } else if text.contains("nodes.instance_uuid") {
        format!("Instance {} is already associated with a node.", n.instance_uuid.as_deref().unwrap_or(""))
    } else {
        format!("A node with UUID {} already exists.", n.uuid)
    }
}

impl Db {
    /// Inserts a new node.
    pub fn create_node(&self, n: &Node) -> Result<(), DbError> {
        let body = to_json(n)?;
        // A random first version: a node deleted and created again under the same UUID (by any
        // process) never matches a cached copy of its predecessor.
        let version = self.random_i64() >> 1;
        let keys = Keys::of(n);
        let (created, updated, provisioned) =
            (n.created_at.to_rfc3339(), ts(&n.updated_at), ts(&n.provision_updated_at));
        let mut p = mirrored(n, &keys).to_vec();
        p.extend(vals![&created, &updated, &provisioned, &n.reservation, &body, &n.last_error, version]);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO nodes (uuid, name, driver, provision_state, power_state, instance_uuid,
                 maintenance, fault, resource_class, conductor_group, chassis_uuid, owner, lessee, shard,
                 created_at, updated_at, provision_updated_at, reservation, body, last_error, version)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)",
                &p,
            )
            .map_err(|e| unique_violation(e, |t| node_duplicate(n, t)))?;
            Ok(())
        })
    }

    /// Writes every field of an existing node except its reservation.
    pub fn update_node(&self, n: &Node) -> Result<(), DbError> {
        let body = to_json(n)?;
        let version = self.write(|tx| update_node_tx(tx, n, &body, LockUse::Ignore, None))?;
        self.cache_node(version, n);
        Ok(())
    }

    /// Remembers `n` as the body of `version` (call once the write that stored it committed).
    pub(crate) fn cache_node(&self, version: i64, n: &Node) {
        let mut copy = n.clone();
        // What decoding the body gives: these come from columns on every read.
        copy.reservation = None;
        copy.conductor = None;
        self.cache_decoded(version, copy);
    }

    fn cache_decoded(&self, version: i64, n: Node) {
        let max = self.inner.node_cache_max.load(std::sync::atomic::Ordering::Relaxed);
        let mut nodes = self.inner.nodes.lock();
        if !nodes.contains_key(&n.uuid) {
            let Some(room) = max.checked_sub(1) else { return };
            super::evict_down_to(&mut nodes, room);
        }
        nodes.insert(n.uuid, (version, n));
    }

    fn cached_version(&self, id: NodeId) -> Option<i64> {
        self.inner.nodes.lock().get(&id).map(|(v, _)| *v)
    }

    /// Reads node `id` on `c` through the cache and hands `f` the node with its row: the cached
    /// copy when the row's version is the cached one, else the body, decoded and cached. `f`
    /// may run under the cache's lock.
    fn with_node_row<T>(&self, c: &Conn<'_>, id: NodeId, f: impl FnOnce(&Node, &NodeRow) -> T) -> Result<T, DbError> {
        let not_found = || DbError::NotFound { kind: "Node", ident: id.to_string() };
        let mut row = read_node_row(c, id, self.cached_version(id))?.ok_or_else(not_found)?;
        if row.body.is_none() {
            if let Some((v, n)) = self.inner.nodes.lock().get(&id)
                && *v == row.version
            {
                return Ok(f(n, &row));
            }
            // The cached copy changed under us: read the body.
            row = read_node_row(c, id, None)?.ok_or_else(not_found)?;
        }
        let mut n: Node = from_json(row.body.take().as_deref().ok_or_else(not_found)?)?;
        n.adopt_legacy_keys();
        let out = f(&n, &row);
        self.cache_decoded(row.version, n);
        Ok(out)
    }

    /// Reads node `id` on `c`, through the cache.
    fn read_node(&self, c: &Conn<'_>, id: NodeId) -> Result<Node, DbError> {
        self.with_node_row(c, id, |n, row| Node {
            reservation: row.reservation.clone(),
            allocation_uuid: row.allocation.clone(),
            ..n.clone()
        })
    }

    /// Looks a node up by UUID or, failing that, by name (as the API's `{node_ident}` does).
    pub fn get_node(&self, ident: &str) -> Result<Node, DbError> {
        if let Ok(id) = ident.parse::<NodeId>() {
            return self.get_node_by_uuid(id);
        }
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| format!("SELECT {NODE_COLS} FROM nodes WHERE name = ?1"));
        self.read(|c| c.query_opt(sql, &vals![ident], node_from_row))?
            .ok_or_else(|| DbError::NotFound { kind: "Node", ident: ident.to_string() })
    }

    pub fn get_node_by_uuid(&self, id: NodeId) -> Result<Node, DbError> {
        self.read(|c| self.read_node(c, id))
    }

    /// Hands `f` the node's committed state by reference, with the row's lock holder beside it
    /// (a cached copy's own `reservation` is not the row's): for readers that need a few fields
    /// of many nodes, without copying each whole node. `f` runs under the cache's lock, so it
    /// must be quick and must not use this `Db`.
    pub fn view_node<T>(&self, id: NodeId, f: impl FnOnce(&Node, Option<&str>) -> T) -> Result<T, DbError> {
        self.read(|c| self.with_node_row(c, id, |n, row| f(n, row.reservation.as_deref())))
    }

    /// A node's provision state from its column, without decoding the body (the simulation's
    /// per-write disk guard asks this for every block written).
    pub fn node_provision_state(&self, id: NodeId) -> Result<ProvisionState, DbError> {
        let state: Option<String> = self.read(|c| {
            c.query_opt("SELECT provision_state FROM nodes WHERE uuid = ?1", &vals![id.to_string()], |r| r.string(0))
        })?;
        provision_state(&state.ok_or_else(|| DbError::NotFound { kind: "Node", ident: id.to_string() })?)
    }

    /// A node's provision state as this handle last wrote or read it, without asking the
    /// database (else [`Db::node_provision_state`]). Writes made through another handle show
    /// only once this one reads the node again: for the owner of the only handle, such as a
    /// simulation, whose per-write disk guard asks this for every block written.
    pub fn known_provision_state(&self, id: NodeId) -> Result<ProvisionState, DbError> {
        if let Some((_, n)) = self.inner.nodes.lock().get(&id) {
            return Ok(n.provision_state);
        }
        self.node_provision_state(id)
    }

    pub fn get_node_by_instance(&self, instance_uuid: &str) -> Result<Node, DbError> {
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| format!("SELECT {NODE_COLS} FROM nodes WHERE instance_uuid = ?1"));
        self.read(|c| c.query_opt(sql, &vals![instance_uuid], node_from_row))?
            .ok_or_else(|| DbError::NotFound { kind: "Node with instance", ident: instance_uuid.to_string() })
    }

    /// Deletes a node and its ports and portgroups.
    pub fn destroy_node(&self, id: NodeId) -> Result<(), DbError> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM nodes WHERE uuid = ?1", &vals![id.to_string()])?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Node", ident: id.to_string() });
            }
            Ok(())
        })?;
        self.inner.nodes.lock().remove(&id);
        Ok(())
    }

    /// Takes the node's lock for `host`; fails with `Locked` if someone holds it.
    pub fn reserve_node(&self, id: NodeId, host: &str) -> Result<Node, DbError> {
        let uuid = id.to_string();
        self.write(|tx| {
            // Compare-and-swap: the lock is taken only from no one.
            let n = tx.execute(
                "UPDATE nodes SET reservation = ?2 WHERE uuid = ?1 AND reservation IS NULL",
                &vals![&uuid, host],
            )?;
            if n == 0 {
                let holder: Option<String> = tx
                    .query_opt("SELECT reservation FROM nodes WHERE uuid = ?1", &vals![&uuid], |r| r.opt_string(0))?
                    .ok_or_else(|| DbError::NotFound { kind: "Node", ident: uuid.clone() })?;
                return Err(DbError::Locked { node: id.to_string(), host: holder.unwrap_or_default() });
            }
            self.read_node(tx, id)
        })
    }

    /// Releases the node's lock if `host` holds it.
    pub fn release_node(&self, id: NodeId, host: &str) -> Result<(), DbError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE nodes SET reservation = NULL WHERE uuid = ?1 AND reservation = ?2",
                &vals![id.to_string(), host],
            )?;
            Ok(())
        })
    }

    /// Drops every lock `host` holds (a restarted conductor's stale locks).
    pub fn clear_reservations(&self, host: &str) -> Result<usize, DbError> {
        self.write(|tx| tx.execute("UPDATE nodes SET reservation = NULL WHERE reservation = ?1", &vals![host]))
    }

    /// Who holds the node's lock, from its column alone (invariant checks).
    pub fn reservation(&self, id: NodeId) -> Result<Option<String>, DbError> {
        let r = self.read(|c| {
            c.query_opt("SELECT reservation FROM nodes WHERE uuid = ?1", &vals![id.to_string()], |r| r.opt_string(0))
        })?;
        r.ok_or_else(|| DbError::NotFound { kind: "Node", ident: id.to_string() })
    }

    /// How many nodes are locked (invariant checks).
    pub fn count_reserved(&self) -> Result<usize, DbError> {
        let n =
            self.read(|c| c.query_one("SELECT COUNT(*) FROM nodes WHERE reservation IS NOT NULL", &[], |r| r.i64(0)))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Full nodes matching a query, in the requested order.
    pub fn list_nodes(&self, q: &NodeQuery) -> Result<Vec<Node>, DbError> {
        let (sql, args) = build_query(self.dialect(), &format!("SELECT {NODE_COLS} FROM nodes"), q)?;
        self.read(|c| c.query_map(&sql, &args, node_from_row))
    }

    /// The plain listing's fields, without decoding node bodies.
    pub fn list_node_summaries(&self, q: &NodeQuery) -> Result<Vec<NodeSummary>, DbError> {
        let (sql, args) = build_query(
            self.dialect(),
            "SELECT uuid, name, instance_uuid, maintenance, power_state, provision_state FROM nodes",
            q,
        )?;
        self.read(|c| {
            c.query_map(&sql, &args, |r| {
                Ok(NodeSummary {
                    uuid: node_uuid(r.str(0)?)?,
                    name: r.opt_string(1)?,
                    instance_uuid: r.opt_string(2)?,
                    maintenance: r.bool(3)?,
                    power_state: r.opt_str(4)?.and_then(|p| p.parse().ok()),
                    provision_state: provision_state(r.str(5)?)?,
                })
            })
        })
    }

    /// Every node's overview columns, in id order, without decoding bodies: the web console
    /// counts, filters, sorts and pages the fleet from these (10,000 rows read in milliseconds).
    pub fn fleet_rows(&self) -> Result<Vec<FleetRow>, DbError> {
        self.read(|c| {
            c.query_map(
                "SELECT uuid, name, driver, provision_state, power_state, maintenance, owner, conductor_group, \
                 fault, updated_at, reservation, lessee FROM nodes ORDER BY id",
                &[],
                |r| {
                    Ok(FleetRow {
                        uuid: node_uuid(r.str(0)?)?,
                        name: r.opt_string(1)?,
                        driver: r.string(2)?,
                        provision_state: provision_state(r.str(3)?)?,
                        power_state: r.opt_str(4)?.and_then(|p| p.parse().ok()),
                        maintenance: r.bool(5)?,
                        owner: r.opt_string(6)?,
                        conductor_group: r.string(7)?,
                        fault: r.opt_string(8)?,
                        updated_at: r.opt_string(9)?,
                        reserved: r.opt_str(10)?.is_some(),
                        lessee: r.opt_string(11)?,
                    })
                },
            )
        })
    }

    /// UUIDs of nodes matching a filter, in id order (conductor's periodic tasks).
    pub fn node_ids(&self, filter: &NodeFilter) -> Result<Vec<NodeId>, DbError> {
        let q = NodeQuery { filter: filter.clone(), sort_key: "id".into(), ..Default::default() };
        let (sql, args) = build_query(self.dialect(), "SELECT uuid FROM nodes", &q)?;
        self.read(|c| c.query_map(&sql, &args, |r| node_uuid(r.str(0)?)))
    }

    /// UUIDs of nodes matching a filter whose ring key `keep(uuid, driver, conductor_group)`
    /// accepts, in id order: a conductor's periodic tasks keep its own nodes from the columns,
    /// without reading the other conductors' nodes (each of N conductors would read them all).
    pub fn node_ids_keyed(
        &self,
        filter: &NodeFilter,
        mut keep: impl FnMut(NodeId, &str, &str) -> bool,
    ) -> Result<Vec<NodeId>, DbError> {
        let q = NodeQuery { filter: filter.clone(), sort_key: "id".into(), ..Default::default() };
        let (sql, args) = build_query(self.dialect(), "SELECT uuid, driver, conductor_group FROM nodes", &q)?;
        self.read(|c| {
            c.query_filter_map(&sql, &args, |r| {
                let id = node_uuid(r.str(0)?)?;
                Ok(keep(id, r.str(1)?, r.str(2)?).then_some(id))
            })
        })
    }

    /// The provision state and when it was entered of each node matching `filter`, read from
    /// columns only: periodic tasks scan the whole fleet with it and must not parse every body.
    /// Only the rows whose ring key `keep(uuid, driver, conductor_group)` accepts are decoded
    /// (see [`Db::node_ids_keyed`]).
    pub fn node_provision_times(
        &self,
        filter: &NodeFilter,
        mut keep: impl FnMut(NodeId, &str, &str) -> bool,
    ) -> Result<Vec<ProvisionTime>, DbError> {
        let q = NodeQuery { filter: filter.clone(), sort_key: "id".into(), ..Default::default() };
        let (sql, args) = build_query(
            self.dialect(),
            "SELECT uuid, provision_state, provision_updated_at, driver, conductor_group FROM nodes",
            &q,
        )?;
        self.read(|c| {
            c.query_filter_map(&sql, &args, |r| {
                let id = node_uuid(r.str(0)?)?;
                if !keep(id, r.str(3)?, r.str(4)?) {
                    return Ok(None);
                }
                let state = provision_state(r.str(1)?)?;
                let since = r
                    .opt_str(2)?
                    .map(|t| {
                        DateTime::parse_from_rfc3339(t)
                            .map(|d| d.with_timezone(&Utc))
                            .map_err(|_| DbError::Corrupt(format!("provision_updated_at {t}")))
                    })
                    .transpose()?;
                Ok(Some((id, state, since)))
            })
        })
    }

    /// (provision state, power state, node count) for every pair that has nodes: what
    /// `/metrics` shows, in one indexed scan. A node without a power state counts as `None`.
    pub fn node_state_counts(&self) -> Result<Vec<(String, String, i64)>, DbError> {
        self.read(|c| {
            c.query_map(
                "SELECT provision_state, COALESCE(power_state, 'None'), COUNT(*) FROM nodes \
                 GROUP BY provision_state, COALESCE(power_state, 'None')",
                &[],
                |r| Ok((r.string(0)?, r.string(1)?, r.i64(2)?)),
            )
        })
    }

    /// (shard, node count), largest first, as Ironic's `get_shard_list` counts them.
    pub fn shard_counts(&self) -> Result<Vec<(Option<String>, i64)>, DbError> {
        let mut rows: Vec<(Option<String>, i64)> = self.read(|c| {
            c.query_map("SELECT shard, COUNT(id) FROM nodes GROUP BY shard", &[], |r| Ok((r.opt_string(0)?, r.i64(1)?)))
        })?;
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        Ok(rows)
    }
}

/// A node, its provision state and when it entered it.
pub type ProvisionTime = (NodeId, ProvisionState, Option<DateTime<Utc>>);

fn node_uuid(s: &str) -> Result<NodeId, DbError> {
    s.parse().map_err(|_| DbError::Corrupt(format!("node uuid {s}")))
}

fn provision_state(s: &str) -> Result<ProvisionState, DbError> {
    s.parse().map_err(|_| DbError::Corrupt(format!("provision state {s}")))
}

/// Builds `base WHERE ... ORDER BY ... LIMIT` with keyset pagination after `marker`.
fn build_query(d: Dialect, base: &str, q: &NodeQuery) -> Result<(String, Vec<Val<'static>>), DbError> {
    let key = if q.sort_key.is_empty() { "id" } else { q.sort_key.as_str() };
    if !NODE_SORT_KEYS.contains(&key) {
        return Err(DbError::Corrupt(format!("invalid sort key {key}")));
    }
    let f = &q.filter;
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Val<'static>> = Vec::new();
    let eq = |col: &str, v: &Option<String>, conds: &mut Vec<String>, args: &mut Vec<Val<'static>>| {
        if let Some(v) = v {
            args.push(Val::from(v.clone()));
            conds.push(format!("{col} = ?{}", args.len()));
        }
    };
    eq("provision_state", &f.provision_state.map(|s| s.as_str().to_string()), &mut conds, &mut args);
    eq("driver", &f.driver, &mut conds, &mut args);
    eq("resource_class", &f.resource_class, &mut conds, &mut args);
    eq("fault", &f.fault, &mut conds, &mut args);
    eq("conductor_group", &f.conductor_group.as_ref().map(|g| g.to_lowercase()), &mut conds, &mut args);
    eq("chassis_uuid", &f.chassis_uuid, &mut conds, &mut args);
    eq("instance_uuid", &f.instance_uuid, &mut conds, &mut args);
    eq("owner", &f.owner, &mut conds, &mut args);
    eq("lessee", &f.lessee, &mut conds, &mut args);
    eq("shard", &f.shard, &mut conds, &mut args);
    if let Some(m) = f.maintenance {
        conds.push(format!("maintenance = {}", m as i32));
    }
    match f.associated {
        Some(true) => conds.push("instance_uuid IS NOT NULL".into()),
        Some(false) => conds.push("instance_uuid IS NULL".into()),
        None => {}
    }
    match f.reserved {
        Some(true) => conds.push("reservation IS NOT NULL".into()),
        Some(false) => conds.push("reservation IS NULL".into()),
        None => {}
    }
    if let Some(r) = f.retired {
        conds.push(d.json_flag_is("body", "retired", r));
    }
    if let Some(desc) = &f.description_contains {
        let escaped = desc.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        args.push(Val::from(format!("%{escaped}%")));
        conds.push(format!("{} {} ?{} ESCAPE '\\'", d.json_text("body", "description"), d.like(), args.len()));
    }
    if let Some(p) = &f.project {
        args.push(Val::from(p.clone()));
        conds.push(format!("(owner = ?{0} OR lessee = ?{0})", args.len()));
    }
    if let Some(shards) = &f.shards {
        let mut ph = Vec::new();
        for s in shards {
            args.push(Val::from(s.clone()));
            ph.push(format!("?{}", args.len()));
        }
        conds.push(if ph.is_empty() { "1 = 0".into() } else { format!("shard IN ({})", ph.join(",")) });
    }
    match f.sharded {
        Some(true) => conds.push("shard IS NOT NULL".into()),
        Some(false) => conds.push("shard IS NULL".into()),
        None => {}
    }
    if f.include_children == Some(false) {
        match &f.parent_node {
            Some(p) => {
                args.push(Val::from(p.clone()));
                conds.push(format!("{} = ?{}", d.json_text("body", "parent_node"), args.len()));
            }
            None => conds.push(format!("{} IS NULL", d.json_text("body", "parent_node"))),
        }
    }
    if let Some(states) = &f.provision_states {
        let mut ph = Vec::new();
        for s in states {
            args.push(Val::from(s.as_str()));
            ph.push(format!("?{}", args.len()));
        }
        if ph.is_empty() {
            conds.push("1 = 0".into());
        } else {
            conds.push(format!("provision_state IN ({})", ph.join(",")));
        }
    }
    let (cmp, dir) = match q.sort_dir {
        SortDir::Asc => (">", "ASC"),
        SortDir::Desc => ("<", "DESC"),
    };
    if let Some(m) = q.marker {
        args.push(Val::from(m.to_string()));
        let p = args.len();
        if key == "id" {
            conds.push(format!("id {cmp} (SELECT id FROM nodes WHERE uuid = ?{p})"));
        } else {
            // Rows after the marker's (key, id); NULLs sort first (ascending) on both backends.
            conds.push(format!(
                "(({key} IS NOT DISTINCT FROM (SELECT {key} FROM nodes WHERE uuid = ?{p}) AND id {cmp} (SELECT id FROM nodes WHERE uuid = ?{p}))
                  OR COALESCE({key} {cmp} (SELECT {key} FROM nodes WHERE uuid = ?{p}),
                      {null_side}))",
                null_side = match q.sort_dir {
                    // asc: NULL < anything, so a non-NULL row follows a NULL marker.
                    SortDir::Asc => format!("(SELECT {key} FROM nodes WHERE uuid = ?{p}) IS NULL AND {key} IS NOT NULL"),
                    SortDir::Desc => format!("{key} IS NULL AND (SELECT {key} FROM nodes WHERE uuid = ?{p}) IS NOT NULL"),
                }
            ));
        }
    }
    let mut sql = base.to_string();
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    if key == "id" {
        sql.push_str(&format!(" ORDER BY id {dir}"));
    } else {
        sql.push_str(&format!(" ORDER BY {key} {dir}{}, id {dir}", d.nulls(q.sort_dir == SortDir::Desc)));
    }
    if let Some(l) = q.limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    Ok((sql, args))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TestStore, node, on_both_backends};
    use super::*;

    on_both_backends!(
        cached_nodes_follow_writes_made_elsewhere,
        cached_copies_hold_only_what_was_committed,
        views_show_the_committed_node_and_its_lock,
        task_saves_need_the_lock_and_the_last_one_releases_it,
        a_bounded_cache_still_reads_every_node,
        listings_page_alike_with_nulls_and_body_filters,
    );

    /// Two handles on one database stand for two processes: each sees the other's writes,
    /// although it holds a decoded copy of the node.
    fn cached_nodes_follow_writes_made_elsewhere(t: &TestStore) {
        let (a, b) = (t.open(), t.open());
        let mut n = node("one");
        a.create_node(&n).unwrap();
        assert_eq!(a.get_node_by_uuid(n.uuid).unwrap().name.as_deref(), Some("one"));

        n.description = Some("written by b".into());
        b.update_node(&n).unwrap();
        assert_eq!(a.get_node_by_uuid(n.uuid).unwrap().description.as_deref(), Some("written by b"));
        let locked = a.reserve_node(n.uuid, "host-a").unwrap();
        assert_eq!(locked.description.as_deref(), Some("written by b"));
        assert_eq!(locked.reservation.as_deref(), Some("host-a"));
        a.release_node(n.uuid, "host-a").unwrap();

        b.destroy_node(n.uuid).unwrap();
        let again = Node { uuid: n.uuid, ..node("two") };
        b.create_node(&again).unwrap();
        let got = a.get_node_by_uuid(n.uuid).unwrap();
        assert_eq!((got.name.as_deref(), got.description), (Some("two"), None));
    }

    fn cached_copies_hold_only_what_was_committed(t: &TestStore) {
        let db = t.open();
        let (x, y) = (node("x"), node("y"));
        db.create_node(&x).unwrap();
        db.create_node(&y).unwrap();

        // A refused write leaves the cached copy as it was.
        let clash = Node { name: Some("x".into()), ..y.clone() };
        assert!(matches!(db.update_node(&clash), Err(DbError::Duplicate(_))));
        assert_eq!(db.get_node_by_uuid(y.uuid).unwrap().name.as_deref(), Some("y"));

        // A saved task's lock holder and conductor are not part of the body.
        let mut task = db.reserve_node(x.uuid, "host").unwrap();
        task.conductor = Some("host".into());
        task.description = Some("saved".into());
        db.update_node(&task).unwrap();
        db.release_node(x.uuid, "host").unwrap();
        let got = db.get_node_by_uuid(x.uuid).unwrap();
        assert_eq!((got.reservation, got.conductor), (None, None));
        assert_eq!(got.description.as_deref(), Some("saved"));
        assert_eq!(db.get_node("x").unwrap().description.as_deref(), Some("saved"));
    }

    /// A view of a node shows its committed body and the row's lock holder, whether the node
    /// was cached or not, and wherever it was written.
    fn views_show_the_committed_node_and_its_lock(t: &TestStore) {
        let (a, b) = (t.open(), t.open());
        let mut n = node("v");
        a.create_node(&n).unwrap();
        let view = |db: &Db| db.view_node(n.uuid, |n, r| (n.description.clone(), r.map(str::to_string))).unwrap();
        assert_eq!(view(&a), (None, None));
        a.reserve_node(n.uuid, "host").unwrap();
        assert_eq!(view(&a), (None, Some("host".into())));
        n.description = Some("from b".into());
        b.update_node(&n).unwrap();
        assert_eq!(view(&a), (Some("from b".into()), Some("host".into())));
        assert_eq!(view(&a), (Some("from b".into()), Some("host".into())));
        b.destroy_node(n.uuid).unwrap();
        assert!(matches!(a.view_node(n.uuid, |_, _| ()), Err(DbError::NotFound { .. })));
    }

    /// A task's save needs its conductor's lock; its last save releases the lock with the write.
    fn task_saves_need_the_lock_and_the_last_one_releases_it(t: &TestStore) {
        let db = t.open();
        let mut n = node("n");
        db.create_node(&n).unwrap();
        let save = |n: &Node, lock| db.update_node_recording(n, &[], || unreachable!("no error recorded"), 10, lock);
        n.description = Some("refused".into());
        let holder = |r: Result<(), DbError>| match r {
            Err(DbError::Locked { host, .. }) => host,
            other => panic!("expected Locked, got {other:?}"),
        };
        assert_eq!(holder(save(&n, LockUse::Held("a"))), "");
        db.reserve_node(n.uuid, "b").unwrap();
        assert_eq!(holder(save(&n, LockUse::Held("a"))), "b");
        assert_eq!(holder(save(&n, LockUse::Release("a"))), "b");
        let got = db.get_node_by_uuid(n.uuid).unwrap();
        assert_eq!((got.description, got.reservation.as_deref()), (None, Some("b")));
        db.release_node(n.uuid, "b").unwrap();

        db.reserve_node(n.uuid, "a").unwrap();
        n.description = Some("kept".into());
        save(&n, LockUse::Held("a")).unwrap();
        assert_eq!(db.get_node_by_uuid(n.uuid).unwrap().reservation.as_deref(), Some("a"));
        // A save that changes an indexed column keeps its index right; the lean form (nothing
        // indexed changed) leaves them as they are.
        n.provision_state = ferric_types::models::ProvisionState::Manageable;
        save(&n, LockUse::Held("a")).unwrap();
        let manageable = NodeFilter {
            provision_states: Some(vec![ferric_types::models::ProvisionState::Manageable]),
            ..Default::default()
        };
        assert_eq!(db.node_ids(&manageable).unwrap(), vec![n.uuid]);
        assert_eq!(db.node_provision_state(n.uuid).unwrap(), ferric_types::models::ProvisionState::Manageable);
        assert_eq!(db.known_provision_state(n.uuid).unwrap(), ferric_types::models::ProvisionState::Manageable);
        n.description = Some("last".into());
        save(&n, LockUse::Release("a")).unwrap();
        assert_eq!(db.node_ids(&manageable).unwrap(), vec![n.uuid]);
        assert_eq!(db.node_ids(&NodeFilter { reserved: Some(true), ..Default::default() }).unwrap(), vec![]);
        let got = db.get_node_by_uuid(n.uuid).unwrap();
        assert_eq!((got.description.as_deref(), got.reservation), (Some("last"), None));
        assert_eq!(db.count_reserved().unwrap(), 0);

        db.destroy_node(n.uuid).unwrap();
        assert!(matches!(save(&n, LockUse::Held("a")), Err(DbError::NotFound { .. })));
    }

    fn a_bounded_cache_still_reads_every_node(t: &TestStore) {
        let db = t.open();
        let nodes: Vec<Node> = (0..5).map(|i| node(&format!("n{i}"))).collect();
        for n in &nodes {
            db.create_node(n).unwrap();
        }
        for cap in [2, 0] {
            db.set_node_cache_capacity(cap);
            for _ in 0..2 {
                for n in &nodes {
                    assert_eq!(db.get_node_by_uuid(n.uuid).unwrap().name, n.name);
                }
            }
            assert!(db.inner.nodes.lock().len() <= cap);
        }
    }

    /// Keyset pages over a column with NULLs, in both directions, add up to the whole listing
    /// (PostgreSQL sorts NULLs as SQLite does), and the filters that read bodies agree.
    fn listings_page_alike_with_nulls_and_body_filters(t: &TestStore) {
        let db = t.open();
        let mut all = Vec::new();
        for i in 0..7 {
            let mut n = node(&format!("n{i}"));
            n.owner = (i % 3 != 0).then(|| format!("owner-{}", i % 2));
            n.description = Some(if i == 2 { "The Big Box".into() } else { format!("box {i}") });
            n.retired = i == 4;
            n.parent_node = (i == 5).then(|| "n0".to_string());
            db.create_node(&n).unwrap();
            all.push(n);
        }
        for dir in [SortDir::Asc, SortDir::Desc] {
            let q = |marker, limit| NodeQuery {
                sort_key: "owner".into(),
                sort_dir: dir,
                limit,
                marker,
                ..Default::default()
            };
            let whole: Vec<NodeId> = db.list_nodes(&q(None, None)).unwrap().iter().map(|n| n.uuid).collect();
            assert_eq!(whole.len(), all.len());
            let nulls_at = |ids: &[NodeId]| {
                ids.iter().map(|id| all.iter().find(|n| n.uuid == *id).unwrap().owner.is_none()).collect::<Vec<_>>()
            };
            let first_is_null = dir == SortDir::Asc;
            assert_eq!(nulls_at(&whole)[0], first_is_null, "{dir:?}: NULLs sort first ascending, last descending");
            let mut paged = Vec::new();
            let mut marker = None;
            loop {
                let page = db.list_node_summaries(&q(marker, Some(2))).unwrap();
                if page.is_empty() {
                    break;
                }
                marker = page.last().map(|s| s.uuid);
                paged.extend(page.iter().map(|s| s.uuid));
            }
            assert_eq!(paged, whole, "{dir:?}");
        }
        let ids = |f: NodeFilter| db.node_ids(&f).unwrap();
        let f = || NodeFilter::default();
        assert_eq!(ids(NodeFilter { description_contains: Some("big b".into()), ..f() }), vec![all[2].uuid]);
        assert_eq!(ids(NodeFilter { description_contains: Some("%".into()), ..f() }), vec![]);
        assert_eq!(ids(NodeFilter { retired: Some(true), ..f() }), vec![all[4].uuid]);
        assert_eq!(ids(NodeFilter { retired: Some(false), ..f() }).len(), 6);
        let children = NodeFilter { include_children: Some(false), parent_node: Some("n0".into()), ..f() };
        assert_eq!(ids(children), vec![all[5].uuid]);
        assert_eq!(ids(NodeFilter { include_children: Some(false), ..f() }).len(), 6);
        assert_eq!(ids(NodeFilter { shards: Some(vec![]), ..f() }), vec![]);
        assert_eq!(ids(NodeFilter { project: Some("owner-1".into()), ..f() }).len(), 2);
    }
}
