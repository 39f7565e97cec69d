//! The SQLite backend: one writer connection serialises writes; a small pool of reader
//! connections serves the API's reads in parallel (WAL).
//!
//! Calls are synchronous and short (microseconds: prepared statements on WAL), so async callers
//! use them directly rather than hopping to a blocking pool.

use super::{DbError, SchemaMode, migrations};
use parking_lot::Mutex;
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

const READERS: usize = 4;

pub(super) struct SqliteStore {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl SqliteStore {
    /// Opens (creating if needed, unless checking) the database file; brings its schema up to
    /// date or checks it, per `mode`. Returns the schema versions before and after.
    pub(super) fn open(path: &Path, mode: SchemaMode, target: &str) -> Result<(SqliteStore, (u32, u32)), DbError> {
        if mode == SchemaMode::Check && !path.exists() {
            return Err(migrations::mismatch(0, target));
        }
        let open = |p: &Path| {
            Connection::open(p).map_err(|e| DbError::Open { target: target.to_string(), reason: e.to_string() })
        };
        let writer = open(path)?;
        configure(&writer, true)?;
        let versions = migrations::migrate_sqlite(&writer, mode, target)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = open(path)?;
            configure(&r, false)?;
            readers.push(Mutex::new(r));
        }
        Ok((SqliteStore::from_parts(writer, readers), versions))
    }

    /// A private in-memory database: one connection serves reads and writes.
    pub(super) fn in_memory() -> Result<SqliteStore, DbError> {
        let c = Connection::open_in_memory()?;
        configure(&c, true)?;
        migrations::migrate_sqlite(&c, SchemaMode::Upgrade, "sqlite::memory:")?;
        Ok(SqliteStore::from_parts(c, Vec::new()))
    }

    fn from_parts(writer: Connection, readers: Vec<Mutex<Connection>>) -> SqliteStore {
        SqliteStore { writer: Mutex::new(writer), readers, next_reader: AtomicUsize::new(0) }
    }

    /// Runs `f` on a reader connection (the writer when there are none).
    pub(super) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
        let rs = &self.readers;
        if rs.is_empty() {
            return f(&self.writer.lock());
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..rs.len() {
            if let Some(c) = rs[(start + i) % rs.len()].try_lock() {
                return f(&c);
            }
        }
        f(&rs[start % rs.len()].lock())
    }

    /// Runs `f` inside one write transaction, committed only if `f` succeeds.
    pub(super) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
        let c = self.writer.lock();
        // BEGIN and COMMIT as cached statements: rusqlite's `Transaction` parses them again for
        // every transaction, which was about 1% of a large simulation's CPU.
        c.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let open = OpenTransaction(&c);
        let out = f(&c)?;
        c.prepare_cached("COMMIT")?.execute([])?;
        std::mem::forget(open);
        Ok(out)
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

/// A UNIQUE constraint failure's text ("UNIQUE constraint failed: table.col").
pub(super) fn unique_text(e: &rusqlite::Error) -> Option<&str> {
    match e {
        rusqlite::Error::SqliteFailure(err, Some(text))
            if err.code == rusqlite::ErrorCode::ConstraintViolation && text.contains("UNIQUE") =>
        {
            Some(text)
        }
        _ => None,
    }
}

pub(super) fn is_foreign_key(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(err, Some(text))
        if err.code == rusqlite::ErrorCode::ConstraintViolation && text.contains("FOREIGN KEY"))
}
