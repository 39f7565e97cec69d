//! SQLite store: schema migrations, one transaction per write, node reservations in the row.
//!
//! Calls are synchronous and short (microseconds: prepared statements on WAL), so async callers use
//! them directly rather than hopping to a blocking pool. One writer connection serialises writes;
//! a small pool of reader connections serves the API's reads in parallel.

mod allocations;
mod chassis;
mod conductors;
mod deploy_templates;
mod dhcp;
mod history;
mod inventory;
mod migrations;
mod nodes;
mod paging;
mod ports;
mod volumes;

pub use allocations::AllocationFilter;
pub use dhcp::LeaseRow;
pub use nodes::{LockUse, NODE_SORT_KEYS, NodeFilter, NodeQuery, NodeSummary, SortDir};
pub use paging::{Page, SORT_KEY_ERROR};
pub use ports::{PORT_SORT_KEYS, PortQuery};

use ferric_types::models::{Node, NodeId};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Store errors. The API maps these to Ironic's error kinds in one place.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{kind} {ident} could not be found.")]
    NotFound { kind: &'static str, ident: String },
    #[error("{0}")]
    Duplicate(String),
    #[error("Node {node} is locked by host {host}, please retry after the current operation is completed.")]
    Locked { node: String, host: String },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open database at {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Decoded node bodies by UUID, each with the row `version` it was read or written at: a
    /// node read checks the version in its row and skips the body (and its JSON decoding) when it
    /// matches. Nodes are read far more often than written (a simulated deploy read each node's
    /// body about 36 times for 15 writes). Any write that changes a body bumps the version, so
    /// a stale entry is never used, whoever wrote the row.
    nodes: Mutex<HashMap<NodeId, (i64, Node)>>,
    /// Most nodes `nodes` keeps (a decoded node is a few KiB).
    node_cache_max: AtomicUsize,
    /// Where a new node's random first row version comes from (seeded in a simulation).
    clock: parking_lot::RwLock<ferric_types::clock::Clock>,
}

/// Default bound of the decoded-node cache: a few MiB, so an idle service with a large fleet
/// stays small; simulations raise it to their fleet's size.
pub const NODE_CACHE_DEFAULT: usize = 1024;

const READERS: usize = 4;

impl Db {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let open = |p: &Path| Connection::open(p).map_err(|source| DbError::Open { path: p.to_path_buf(), source });
        let writer = open(path)?;
        configure(&writer, true)?;
        migrations::migrate(&writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = open(path)?;
            configure(&r, false)?;
            readers.push(Mutex::new(r));
        }
        Ok(Db::from_parts(writer, readers))
    }

    /// A private in-memory database (simulations, tests): one connection serves reads and writes.
    pub fn open_in_memory() -> Result<Db, DbError> {
        let c = Connection::open_in_memory()?;
        configure(&c, true)?;
        migrations::migrate(&c)?;
        Ok(Db::from_parts(c, Vec::new()))
    }

    fn from_parts(writer: Connection, readers: Vec<Mutex<Connection>>) -> Db {
        Db {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                nodes: Mutex::new(HashMap::new()),
                node_cache_max: AtomicUsize::new(NODE_CACHE_DEFAULT),
                clock: parking_lot::RwLock::new(ferric_types::clock::Clock::system()),
            }),
        }
    }

    /// The service's random source, for values the database makes up (a new node's first row
    /// version): seeded in a simulation, so its runs repeat.
    pub fn use_clock(&self, clock: &ferric_types::clock::Clock) {
        *self.inner.clock.write() = clock.clone();
    }

    pub(crate) fn random_i64(&self) -> i64 {
        self.inner.clock.read().random::<i64>()
    }

    /// Bounds the decoded-node cache (see [`NODE_CACHE_DEFAULT`]); 0 turns it off.
    pub fn set_node_cache_capacity(&self, nodes: usize) {
        self.inner.node_cache_max.store(nodes, Ordering::Relaxed);
        evict_down_to(&mut self.inner.nodes.lock(), nodes);
    }

    /// Runs `f` on a reader connection (the writer when there are none).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
        let rs = &self.inner.readers;
        if rs.is_empty() {
            return f(&self.inner.writer.lock());
        }
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..rs.len() {
            if let Some(c) = rs[(start + i) % rs.len()].try_lock() {
                return f(&c);
            }
        }
        f(&rs[start % rs.len()].lock())
    }

    /// Runs `f` inside one write transaction, committed only if `f` succeeds.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
        let c = self.inner.writer.lock();
        // BEGIN and COMMIT as cached statements: rusqlite's `Transaction` parses them again for
        // every transaction, which was about 1% of a large simulation's CPU.
        c.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let open = OpenTransaction(&c);
        let out = f(&c)?;
        c.prepare_cached("COMMIT")?.execute([])?;
        std::mem::forget(open);
        Ok(out)
    }

    /// The body of the row of `table` whose `col` is `val`.
    fn get_body(&self, table: &str, col: &str, val: &str) -> Result<Option<String>, DbError> {
        let sql = format!("SELECT body FROM {table} WHERE {col} = ?1");
        self.read(|c| Ok(c.prepare_cached(&sql)?.query_row([val], |r| r.get::<_, String>(0)).optional()?))
    }

    /// Deletes the row of `table` with `uuid`; NotFound (naming `kind`) when there is none.
    fn delete_row(&self, table: &str, uuid: &str, kind: &'static str) -> Result<(), DbError> {
        let sql = format!("DELETE FROM {table} WHERE uuid = ?1");
        self.write(|tx| {
            if tx.prepare_cached(&sql)?.execute([uuid])? == 0 {
                return Err(DbError::NotFound { kind, ident: uuid.to_string() });
            }
            Ok(())
        })
    }
}

/// Drops whichever cached nodes the map yields first until at most `len` remain.
fn evict_down_to(nodes: &mut HashMap<NodeId, (i64, Node)>, len: usize) {
    while nodes.len() > len {
        let Some(k) = nodes.keys().next().copied() else { break };
        nodes.remove(&k);
    }
}

/// Rolls back the writer's open transaction when dropped (an error or a panic in a write).
struct OpenTransaction<'a>(&'a Connection);

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            if let Err(e) = self.0.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "cannot roll back a failed write");
            }
        }
    }
}

fn configure(c: &Connection, writer: bool) -> Result<(), DbError> {
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    if writer {
        // WAL lets readers run beside the writer; NORMAL sync is durable across process crashes
        // (the conductor's failure model) and fsyncs only at checkpoints.
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
    }
    c.pragma_update(None, "foreign_keys", "ON")?;
    // Bounded page cache per connection (KiB when negative): RSS stays small with many nodes.
    c.pragma_update(None, "cache_size", -2048)?;
    // Filters build their SQL per shape (state lists, sort keys): with a small cache a large fleet
    // kept re-preparing statements (a tenth of a simulation's CPU went to SQLite's parser).
    c.set_prepared_statement_cache_capacity(512);
    // Query-planner stability: without it SQLite re-prepares a cached statement whenever a bound
    // value the plan looked at changes (STAT4 is compiled in), which was most calls of the
    // per-node queries; the schema's plans do not depend on the values.
    c.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Maps a UNIQUE constraint failure to `Duplicate(msg)`.
pub(crate) fn unique_violation(e: rusqlite::Error, msg: impl FnOnce(&str) -> String) -> DbError {
    if let rusqlite::Error::SqliteFailure(err, Some(text)) = &e {
        if err.code == rusqlite::ErrorCode::ConstraintViolation && text.contains("UNIQUE") {
            return DbError::Duplicate(msg(text));
        }
    }
    DbError::Sqlite(e)
}

/// Maps a foreign-key failure (the node vanished meanwhile) to the node's NotFound.
fn fk_or(e: rusqlite::Error, node: &NodeId, dup: impl FnOnce(&str) -> String) -> DbError {
    if let rusqlite::Error::SqliteFailure(err, Some(text)) = &e {
        if err.code == rusqlite::ErrorCode::ConstraintViolation && text.contains("FOREIGN KEY") {
            return DbError::NotFound { kind: "Node", ident: node.to_string() };
        }
    }
    unique_violation(e, dup)
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, DbError> {
    serde_json::to_string(v).map_err(|e| DbError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, DbError> {
    serde_json::from_str(s).map_err(|e| DbError::Corrupt(e.to_string()))
}

/// Brings the schema at `url` up to date; (version before, version after).
pub fn upgrade(url: &str) -> Result<(u32, u32), DbError> {
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    let c = Connection::open(path).map_err(|source| DbError::Open { path: path.into(), source })?;
    let from: u32 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    migrations::migrate(&c)?;
    let to: u32 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok((from, to))
}
