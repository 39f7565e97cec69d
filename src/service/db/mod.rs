//! The store: schema migrations, one transaction per write, node reservations in the row.
//!
//! Two backends behind one synchronous API: SQLite (`sqlite://PATH`, one process, the embedded
//! default) and PostgreSQL (`postgres://...`, several processes on one database). Statements are
//! written once for both (`sql`); each backend runs them its way (`sqlite`, `pg`).

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
mod pg;
mod ports;
mod sql;
mod sqlite;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod tokens;
mod volumes;

pub use allocations::AllocationFilter;
pub use dhcp::LeaseRow;
pub use nodes::{FleetRow, LockUse, NODE_SORT_KEYS, NodeFilter, NodeQuery, NodeSummary, SortDir};
pub use paging::{Page, SORT_KEY_ERROR};
pub use ports::{PORT_SORT_KEYS, PortQuery};
pub use tokens::ApiToken;

use ferric_types::models::{Node, NodeId};
use parking_lot::Mutex;
use sql::{Conn, Dialect, Val};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The schema version this binary writes and expects (the number of migrations; the same on
/// both backends).
pub const SCHEMA_VERSION: u32 = migrations::VERSION;

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
    Backend(#[from] BackendError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open database {target}: {reason}")]
    Open { target: String, reason: String },
    /// The database cannot be reached (refused, lost, timed out): worth retrying later (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database's schema is not this binary's ([`SchemaMode::Check`]), or is newer.
    #[error("{}", mismatch_text(*database, *binary, target))]
    SchemaMismatch { database: u32, binary: u32, target: String },
}

/// An error the database itself reported (constraint, syntax, I/O on SQLite's file, ...).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Shown as the server's message (tokio-postgres's own says only "db error").
    #[error("{}", pg::describe(.0))]
    Postgres(tokio_postgres::Error),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Backend(BackendError::Sqlite(e))
    }
}

fn mismatch_text(database: u32, binary: u32, target: &str) -> String {
    if database > binary {
        format!(
            "database schema version {database} is newer than this ferric's schema version {binary}: run a ferric \
             that knows schema version {database} (or newer), after `ferric db upgrade --database {target}` with it"
        )
    } else {
        format!(
            "database schema version {database} is older than this ferric's schema version {binary}: \
             run `ferric db upgrade --database {target}`"
        )
    }
}

impl DbError {
    /// A UNIQUE violation's text, worded as SQLite words it on both backends
    /// ("UNIQUE constraint failed: table.col").
    fn unique_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            DbError::Backend(BackendError::Sqlite(e)) => sqlite::unique_text(e).map(Into::into),
            DbError::Backend(BackendError::Postgres(e)) => pg::unique_text(e).map(Into::into),
            _ => None,
        }
    }

    fn is_foreign_key(&self) -> bool {
        match self {
            DbError::Backend(BackendError::Sqlite(e)) => sqlite::is_foreign_key(e),
            DbError::Backend(BackendError::Postgres(e)) => {
                e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
            }
            _ => false,
        }
    }

    /// PostgreSQL could not serialize the transaction (or broke a deadlock): run it again.
    fn is_serialization_failure(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self, DbError::Backend(BackendError::Postgres(e))
            if e.code().is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED))
    }
}

/// What [`Db::connect`] does about the database's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode {
    /// Runs the migrations the database lacks (one process at a time: PostgreSQL's are
    /// serialised by an advisory lock).
    Upgrade,
    /// Refuses a schema older or newer than this binary's ([`DbError::SchemaMismatch`]): for
    /// processes that share a database whose upgrades are run on purpose (`ferric db upgrade`).
    Check,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
    /// The connections this handle's calls go through: while one is down, every call fails
    /// (see [`Outage`]). Empty for a handle that nothing cuts off.
    links: Arc<[Outage]>,
}

/// A switch on the way to the database: while it is down, every call through a handle linked to
/// it ([`Db::linked`]) fails with [`DbError::Unavailable`], as a lost connection's calls do.
/// Simulations cut one conductor off, or restart the whole database, with it: the failure is
/// injected at the connection boundary, and everything above it is ferric's own code.
#[derive(Clone, Debug, Default)]
pub struct Outage(Arc<std::sync::atomic::AtomicBool>);

impl Outage {
    pub fn new() -> Outage {
        Outage::default()
    }

    /// Cuts the connection (`true`) or restores it.
    pub fn set_down(&self, down: bool) {
        self.0.store(down, Ordering::SeqCst);
    }

    pub fn is_down(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct Inner {
    backend: Backend,
    /// Decoded node bodies by UUID, each with the row `version` it was read or written at: a
    /// node read checks the version in its row and skips the body (and its JSON decoding) when it
    /// matches. Nodes are read far more often than written (a simulated deploy read each node's
    /// body about 36 times for 15 writes). Any write that changes a body bumps the version, so
    /// a stale entry is never used, whoever wrote the row (this process or another).
    nodes: Mutex<HashMap<NodeId, (i64, Node)>>,
    /// Most nodes `nodes` keeps (a decoded node is a few KiB).
    node_cache_max: AtomicUsize,
    /// Where a new node's random first row version comes from (seeded in a simulation).
    clock: parking_lot::RwLock<ferric_types::clock::Clock>,
}

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Pg(pg::PgStore),
}

/// Default bound of the decoded-node cache: a few MiB, so an idle service with a large fleet
/// stays small; simulations raise it to their fleet's size.
pub const NODE_CACHE_DEFAULT: usize = 1024;

/// Brings the schema of the database at `url` up to date: the versions before and after (for
/// `ferric db upgrade`). An empty database gets the whole schema.
pub fn upgrade(url: &str) -> Result<(u32, u32), DbError> {
    Db::connect_with_versions(url, SchemaMode::Upgrade).map(|(_, versions)| versions)
}

impl Db {
    /// Opens the database at `url`: `sqlite://PATH` (created if missing, unless checking) or
    /// `postgres://...` / `postgresql://...` (as tokio-postgres reads it; a unix socket is
    /// `postgres://user@/dbname?host=/socket/dir`). `schema` says whether to upgrade its schema
    /// or to refuse one that is not this binary's.
    pub fn connect(url: &str, schema: SchemaMode) -> Result<Db, DbError> {
        Db::connect_with_versions(url, schema).map(|(db, _)| db)
    }

    fn connect_with_versions(url: &str, schema: SchemaMode) -> Result<(Db, (u32, u32)), DbError> {
        let target = redact(url);
        if let Some(path) = url.strip_prefix("sqlite://") {
            let (store, versions) = sqlite::SqliteStore::open(Path::new(path), schema, &target)?;
            return Ok((Db::with_backend(Backend::Sqlite(store)), versions));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = pg::PgStore::new(url)?;
            let versions = pg::migrate(&store, schema, &target)?;
            return Ok((Db::with_backend(Backend::Pg(store)), versions));
        }
        Err(DbError::Open {
            target,
            reason: "unsupported database URL: expected sqlite://PATH or postgres://...".into(),
        })
    }

    /// Opens (creating if needed) an SQLite database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let target = format!("sqlite://{}", path.display());
        let (store, _) = sqlite::SqliteStore::open(path, SchemaMode::Upgrade, &target)?;
        Ok(Db::with_backend(Backend::Sqlite(store)))
    }

    /// A private in-memory database (simulations, tests): one connection serves reads and writes.
    pub fn open_in_memory() -> Result<Db, DbError> {
        Ok(Db::with_backend(Backend::Sqlite(sqlite::SqliteStore::in_memory()?)))
    }

    /// A handle on the same store (and cache) whose calls also fail while any of `links` is
    /// down: a simulated process's own connection to the database.
    pub fn linked(&self, links: &[Outage]) -> Db {
        let links: Vec<Outage> = self.links.iter().chain(links).cloned().collect();
        Db { inner: self.inner.clone(), links: links.into() }
    }

    /// Fails as a lost connection does while one of this handle's links is down.
    fn reachable(&self) -> Result<(), DbError> {
        if self.links.iter().any(Outage::is_down) {
            return Err(DbError::Unavailable("the connection to the database is lost".into()));
        }
        Ok(())
    }

    fn with_backend(backend: Backend) -> Db {
        Db {
            links: Arc::new([]),
            inner: Arc::new(Inner {
                backend,
                nodes: Mutex::new(HashMap::new()),
                node_cache_max: AtomicUsize::new(NODE_CACHE_DEFAULT),
                clock: parking_lot::RwLock::new(ferric_types::clock::Clock::system()),
            }),
        }
    }

    /// Which SQL the store speaks (statements that differ build per dialect).
    pub(crate) fn dialect(&self) -> Dialect {
        match self.inner.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Pg(_) => Dialect::Postgres,
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

    /// Runs `f` on a connection for reads (each statement sees what was committed when it ran).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Conn<'_>) -> Result<T, DbError>) -> Result<T, DbError> {
        self.reachable()?;
        let started = std::time::Instant::now();
        let r = match &self.inner.backend {
            Backend::Sqlite(s) => s.read(|c| f(&Conn::Sqlite(c))),
            Backend::Pg(p) => p.read(f),
        };
        crate::metrics::METRICS.db(false, started.elapsed());
        r
    }

    /// Runs `f` inside one write transaction, committed only if `f` succeeds. `f` may run more
    /// than once (PostgreSQL retries a transaction it could not serialize), so it must have no
    /// effects outside the transaction; nothing outside the store runs while it is open.
    pub(crate) fn write<T>(&self, mut f: impl FnMut(&Conn<'_>) -> Result<T, DbError>) -> Result<T, DbError> {
        self.reachable()?;
        let started = std::time::Instant::now();
        let r = match &self.inner.backend {
            Backend::Sqlite(s) => s.write(|c| f(&Conn::Sqlite(c))),
            Backend::Pg(p) => p.write(f),
        };
        crate::metrics::METRICS.db(true, started.elapsed());
        r
    }

    /// The body of the row of `table` whose `col` is `val`.
    fn get_body(&self, table: &str, col: &str, val: &str) -> Result<Option<String>, DbError> {
        let sql = format!("SELECT body FROM {table} WHERE {col} = ?1");
        self.read(|c| c.query_opt(&sql, &[Val::from(val)], |r| r.string(0)))
    }

    /// Deletes the row of `table` with `uuid`; NotFound (naming `kind`) when there is none.
    fn delete_row(&self, table: &str, uuid: &str, kind: &'static str) -> Result<(), DbError> {
        let sql = format!("DELETE FROM {table} WHERE uuid = ?1");
        self.write(|tx| {
            if tx.execute(&sql, &[Val::from(uuid)])? == 0 {
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

/// Maps a UNIQUE constraint failure to `Duplicate(msg(text))`, `text` worded as SQLite's.
pub(crate) fn unique_violation(e: DbError, msg: impl FnOnce(&str) -> String) -> DbError {
    match e.unique_text() {
        Some(text) => DbError::Duplicate(msg(&text)),
        None => e,
    }
}

/// Maps a foreign-key failure (the node vanished meanwhile) to the node's NotFound.
fn fk_or(e: DbError, node: &NodeId, dup: impl FnOnce(&str) -> String) -> DbError {
    if e.is_foreign_key() {
        return DbError::NotFound { kind: "Node", ident: node.to_string() };
    }
    unique_violation(e, dup)
}

/// `url` with any password hidden, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| if kv.starts_with("password=") { "password=***".to_string() } else { kv.to_string() })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, DbError> {
    serde_json::to_string(v).map_err(|e| DbError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, DbError> {
    serde_json::from_str(s).map_err(|e| DbError::Corrupt(e.to_string()))
}
