//! The PostgreSQL backend: tokio-postgres connections in a deadpool pool, driven by a small
//! runtime of the backend's own, behind the store's synchronous calls.
//!
//! A call waits for its statements on the caller's thread: inside a multi-thread tokio runtime
//! the wait is wrapped in `block_in_place` (once per store call), so the caller's other tasks
//! move to another worker; on a current-thread runtime, which cannot block in place, each
//! statement is waited for from a scoped helper thread instead (slower, but correct); outside
//! any runtime the caller simply blocks.
//!
//! Writes run in SERIALIZABLE transactions, retried from the start when PostgreSQL reports a
//! serialization failure or a deadlock: every write keeps the invariants it had on SQLite, where
//! one writer at a time made each transaction serial.

use super::sql::{Conn, Val};
use super::{DbError, migrations};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// How long a call waits for a pooled connection (or a new one) before answering
/// [`DbError::Unavailable`].
const POOL_WAIT: Duration = Duration::from_secs(5);
/// Bound on any one statement: ours take milliseconds, so a longer one is a dead server or a
/// black-holed network, which the caller hears of as [`DbError::Unavailable`].
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections per store (per process).
const POOL_SIZE: usize = 8;
/// Tries of one write transaction before a serialization failure is returned.
const WRITE_TRIES: u32 = 20;
/// Statement texts remembered (translated, and prepared per connection): the listings' SQL
/// depends on their filters and limits, so the set is open-ended.
const STATEMENT_CACHE_MAX: usize = 512;

pub(super) struct PgStore {
    pool: Pool,
    /// Runs the connections' tasks; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    /// `?N` statement texts translated to PostgreSQL's `$N`.
    translated: RwLock<HashMap<String, Arc<str>>>,
}

/// How this thread may wait for the backend's runtime.
#[derive(Clone, Copy)]
enum Wait {
    /// `Runtime::block_on` here (no runtime, or inside `block_in_place`).
    Here,
    /// From a scoped thread (a current-thread runtime's thread may not block on another runtime).
    Thread,
}

/// A connection of the pool, for the length of one store call.
#[derive(Clone, Copy)]
pub(crate) struct PgSession<'a> {
    store: &'a PgStore,
    client: &'a Object,
    wait: Wait,
}

impl PgStore {
    /// Parses `url` (a `postgres://` or `postgresql://` URL, as tokio-postgres reads it:
    /// `?host=/dir` is a unix socket directory) and builds the pool; connects lazily.
    pub(super) fn new(url: &str) -> Result<PgStore, DbError> {
        let open = |reason: String| DbError::Open { target: super::redact(url), reason };
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| open(format!("{e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_WAIT);
        }
        if config.get_application_name().is_none() {
            config.application_name("ferric");
        }
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferric-pg")
            .enable_all()
            .build()
            .map_err(|e| open(format!("cannot start its runtime: {e}")))?;
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| open(format!("{e}")))?;
        Ok(PgStore { pool, rt: Some(rt), translated: RwLock::new(HashMap::new()) })
    }

    /// Runs `f` with a pooled connection (autocommit: each statement its own transaction).
    pub(super) fn read<T>(&self, f: impl FnOnce(&Conn<'_>) -> Result<T, DbError>) -> Result<T, DbError> {
        self.enter(|wait| {
            let mut guard = Detach(Some(self.get(wait)?));
            let out = f(&Conn::Pg(PgSession { store: self, client: guard.client(), wait }));
            // A connection that timed out may still be busy with the statement: not pooled again.
            if !matches!(out, Err(DbError::Unavailable(_))) {
                guard.pool();
            }
            out
        })
    }

    /// Runs `f` in a SERIALIZABLE transaction, committed if `f` succeeds; runs it again (up to
    /// [`WRITE_TRIES`] times) when PostgreSQL could not serialize it.
    pub(super) fn write<T>(&self, mut f: impl FnMut(&Conn<'_>) -> Result<T, DbError>) -> Result<T, DbError> {
        self.enter(|wait| {
            let mut tries = 0;
            loop {
                tries += 1;
                match self.write_once(wait, &mut f) {
                    Err(Retry::Serialization(e)) if tries < WRITE_TRIES => {
                        // A short random pause, so the transactions that collided spread out.
                        let pause = 1 + rand::random::<u64>() % (2 << tries.min(6));
                        std::thread::sleep(Duration::from_millis(pause));
                        tracing::debug!(error = %e, tries, "write transaction retried");
                    }
                    Err(Retry::Serialization(e) | Retry::No(e)) => return Err(e),
                    Ok(out) => return Ok(out),
                }
            }
        })
    }

    fn write_once<T>(&self, wait: Wait, f: &mut impl FnMut(&Conn<'_>) -> Result<T, DbError>) -> Result<T, Retry> {
        let client = self.get(wait).map_err(Retry::No)?;
        // Until COMMIT or ROLLBACK succeeds the connection may hold an open transaction: if
        // anything fails (or panics) before then, it is closed rather than pooled again.
        let mut guard = Detach(Some(client));
        let session = PgSession { store: self, client: guard.client(), wait };
        session.batch("BEGIN ISOLATION LEVEL SERIALIZABLE").map_err(Retry::No)?;
        let conn = Conn::Pg(session);
        match f(&conn).and_then(|out| session.batch("COMMIT").map(|_| out)) {
            Ok(out) => {
                guard.pool();
                Ok(out)
            }
            Err(e) => {
                if session.batch("ROLLBACK").is_ok() {
                    guard.pool();
                }
                Err(if e.is_serialization_failure() { Retry::Serialization(e) } else { Retry::No(e) })
            }
        }
    }

    /// A pooled connection, or [`DbError::Unavailable`] within [`POOL_WAIT`].
    fn get(&self, wait: Wait) -> Result<Object, DbError> {
        self.block_on(wait, self.pool.get()).map_err(|e| match e {
            PoolError::Backend(e) => DbError::from(e),
            PoolError::Timeout(_) => DbError::Unavailable("timed out waiting for a database connection".into()),
            other => DbError::Unavailable(other.to_string()),
        })
    }

    /// Enters a state where this thread may wait for the backend: see the module's doc.
    fn enter<T>(&self, f: impl FnOnce(Wait) -> T) -> T {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Err(_) => f(Wait::Here),
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| f(Wait::Here)),
            Ok(_) => f(Wait::Thread),
        }
    }

    fn block_on<F>(&self, wait: Wait, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(rt) = &self.rt else { unreachable!("the runtime lives as long as the store") };
        match wait {
            Wait::Here => rt.block_on(fut),
            Wait::Thread => std::thread::scope(|s| {
                s.spawn(|| rt.block_on(fut)).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }),
        }
    }

    /// `sql` with `?N` placeholders as `$N`, translated once per text.
    fn translate(&self, sql: &str) -> Arc<str> {
        if let Some(t) = self.translated.read().get(sql) {
            return t.clone();
        }
        let t: Arc<str> = translate_placeholders(sql).into();
        let mut map = self.translated.write();
        if map.len() >= STATEMENT_CACHE_MAX {
            map.clear();
        }
        map.insert(sql.to_string(), t.clone());
        t
    }

    /// Runs `f` with a connection of its own, closed afterwards rather than pooled: for the
    /// migrations, which run their own transactions.
    pub(super) fn session<T>(&self, f: impl FnOnce(&PgSession<'_>) -> Result<T, DbError>) -> Result<T, DbError> {
        self.enter(|wait| {
            let guard = Detach(Some(self.get(wait)?));
            f(&PgSession { store: self, client: guard.client(), wait })
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The pool's connections first (their tasks end), then the runtime without waiting:
        // the last handle is often dropped in async code, where a blocking shutdown panics.
        self.pool.close();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Why one try of a write failed.
enum Retry {
    Serialization(DbError),
    No(DbError),
}

/// Closes a pooled connection on drop unless handed back with [`Detach::pool`]: one that may
/// still be in a transaction, or busy, must not serve another call.
struct Detach(Option<Object>);

impl Detach {
    fn client(&self) -> &Object {
        self.0.as_ref().expect("a Detach holds its connection until pooled or dropped")
    }

    /// Returns the connection to the pool.
    fn pool(&mut self) {
        self.0 = None;
    }
}

impl Drop for Detach {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            drop(Object::take(obj));
        }
    }
}

impl PgSession<'_> {
    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement, DbError> {
        let text = self.store.translate(sql);
        if self.client.statement_cache.size() >= STATEMENT_CACHE_MAX {
            self.client.statement_cache.clear();
        }
        self.run(self.client.prepare_cached(&text))
    }

    /// Waits for `fut` (bounded by [`STATEMENT_TIMEOUT`]).
    fn run<T: Send>(&self, fut: impl Future<Output = Result<T, tokio_postgres::Error>> + Send) -> Result<T, DbError> {
        self.store.block_on(self.wait, async {
            match tokio::time::timeout(STATEMENT_TIMEOUT, fut).await {
                Ok(r) => r.map_err(DbError::from),
                Err(_) => Err(DbError::Unavailable("the database did not answer in time".into())),
            }
        })
    }

    pub(crate) fn execute(&self, sql: &str, params: &[Val<'_>]) -> Result<usize, DbError> {
        let st = self.statement(sql)?;
        let params = dyn_params(params);
        let n = self.run(self.client.execute(&st, &params))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(crate) fn query(&self, sql: &str, params: &[Val<'_>]) -> Result<Vec<tokio_postgres::Row>, DbError> {
        let st = self.statement(sql)?;
        let params = dyn_params(params);
        self.run(self.client.query(&st, &params))
    }

    /// Runs parameterless statements in one round trip, unprepared (transaction control,
    /// migrations).
    pub(super) fn batch(&self, sql: &str) -> Result<(), DbError> {
        self.run(self.client.batch_execute(sql))
    }
}

fn dyn_params<'a>(params: &'a [Val<'_>]) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect()
}

/// `?N` as `$N`, outside quoted text.
fn translate_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    for ch in sql.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => {}
            None if ch == '\'' || ch == '"' => quote = Some(ch),
            None if ch == '?' => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(ch);
    }
    out
}

impl From<tokio_postgres::Error> for DbError {
    /// Connection failures (refused, lost, timed out, server shutting down) are
    /// [`DbError::Unavailable`]; the rest are the backend's errors.
    fn from(e: tokio_postgres::Error) -> Self {
        if is_unavailable(&e) {
            return DbError::Unavailable(e.to_string());
        }
        DbError::Backend(super::BackendError::Postgres(e))
    }
}

fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code);
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    e.to_string().starts_with("timeout")
}

/// The server's error (severity, message, detail) when there is one, else the client's.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string(),
        None => e.to_string(),
    }
}

/// A UNIQUE violation worded as SQLite words it ("UNIQUE constraint failed: table.col, ..."), so
/// the callers' messages pick the column the same way on both backends.
pub(super) fn unique_text(e: &tokio_postgres::Error) -> Option<String> {
    let db = e.as_db_error()?;
    if *db.code() != SqlState::UNIQUE_VIOLATION {
        return None;
    }
    let table = db.table().unwrap_or("");
    let cols = db
        .detail()
        .and_then(|d| d.strip_prefix("Key ("))
        .and_then(|d| d.split_once(")="))
        .map(|(cols, _)| cols.split(", ").map(|c| format!("{table}.{c}")).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| db.constraint().unwrap_or("").to_string());
    Some(format!("UNIQUE constraint failed: {cols}"))
}

/// Runs the migrations (see `migrations`) on one connection.
pub(super) fn migrate(store: &PgStore, mode: super::SchemaMode, url: &str) -> Result<(u32, u32), DbError> {
    store.session(|s| migrations::migrate_pg(s, mode, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_translate_outside_quotes() {
        assert_eq!(
            translate_placeholders("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b IN (?2,?10)"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b IN ($2,$10)"
        );
    }
}
