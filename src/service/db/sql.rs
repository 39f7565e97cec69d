//! The SQL layer both backends share: statements are written once, in the SQL both SQLite and
//! PostgreSQL accept (`?N` placeholders, `IS [NOT] DISTINCT FROM`), with the few differences
//! ([`Dialect`]) spelled by helpers. A [`Conn`] runs them on either backend; rows are read by
//! column index.
//!
//! SQLite stays on rusqlite's statement cache and borrows parameters and column text, so its path
//! costs no more than hand-written rusqlite calls.

use super::DbError;
use super::pg::PgSession;
use bytes::BytesMut;
use std::borrow::Cow;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// Which SQL the database speaks where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A JSON value [`Dialect::json_set`] stores under a key.
pub(crate) enum JsonVal<'a> {
    /// An SQL expression whose value is JSON text (a parameter, a literal such as `'null'`).
    Json(&'a str),
    /// The value under `key` of the JSON text in column `col` (NULL when absent).
    Field { col: &'a str, key: &'a str },
}

impl Dialect {
    /// The text (or NULL) under top-level `key` of the JSON text in `col`.
    pub(crate) fn json_text(self, col: &str, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({col}, '$.{key}')"),
            Dialect::Postgres => format!("(CAST({col} AS jsonb)->>'{key}')"),
        }
    }

    /// Whether the JSON boolean under `key` in `col` (false when absent or null) is `value`.
    pub(crate) fn json_flag_is(self, col: &str, key: &str, value: bool) -> String {
        match self {
            Dialect::Sqlite => format!("COALESCE(json_extract({col}, '$.{key}'), 0) = {}", i32::from(value)),
            Dialect::Postgres => format!("COALESCE(CAST(CAST({col} AS jsonb)->>'{key}' AS boolean), false) = {value}"),
        }
    }

    /// The JSON text `target` with top-level keys set (SQLite's `json_set`).
    pub(crate) fn json_set(self, target: &str, sets: &[(&str, JsonVal<'_>)]) -> String {
        let mut out = String::new();
        match self {
            Dialect::Sqlite => {
                out.push_str(&format!("json_set({target}"));
                for (key, v) in sets {
                    match v {
                        JsonVal::Json(e) => out.push_str(&format!(", '$.{key}', json({e})")),
                        JsonVal::Field { col, key: k } => {
                            out.push_str(&format!(", '$.{key}', json_extract({col}, '$.{k}')"))
                        }
                    }
                }
                out.push(')');
            }
            Dialect::Postgres => {
                out.push_str(&format!("CAST(CAST(CAST({target} AS text) AS jsonb) || jsonb_build_object("));
                for (i, (key, v)) in sets.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match v {
                        JsonVal::Json(e) => out.push_str(&format!("'{key}', CAST(CAST({e} AS text) AS jsonb)")),
                        JsonVal::Field { col, key: k } => {
                            out.push_str(&format!("'{key}', CAST({col} AS jsonb)->'{k}'"))
                        }
                    }
                }
                out.push_str(") AS text)");
            }
        }
        out
    }

    /// `LIKE` as SQLite has it: case-insensitive.
    pub(crate) fn like(self) -> &'static str {
        match self {
            Dialect::Sqlite => "LIKE",
            Dialect::Postgres => "ILIKE",
        }
    }

    /// What follows `ORDER BY col ASC|DESC` so NULLs sort as SQLite sorts them (first ascending,
    /// last descending); keyset pagination relies on it.
    pub(crate) fn nulls(self, descending: bool) -> &'static str {
        match (self, descending) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, false) => " NULLS FIRST",
            (Dialect::Postgres, true) => " NULLS LAST",
        }
    }
}

/// One statement text per dialect, built once: for statements that differ by dialect but are
/// otherwise fixed, so SQLite's statement cache still gets the same `&str` every call.
pub(crate) struct PerDialect(std::sync::OnceLock<[String; 2]>);

impl PerDialect {
    pub(crate) const fn new() -> PerDialect {
        PerDialect(std::sync::OnceLock::new())
    }

    pub(crate) fn get(&self, d: Dialect, build: impl Fn(Dialect) -> String) -> &str {
        let both = self.0.get_or_init(|| [build(Dialect::Sqlite), build(Dialect::Postgres)]);
        &both[usize::from(d == Dialect::Postgres)]
    }
}

/// A bound parameter. Integers go in as whatever integer (or boolean) type the statement wants
/// on PostgreSQL, so one value serves `BIGINT` columns and `?N = 0` comparisons alike.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Self {
        Val::Text(Cow::Borrowed(s))
    }
}

impl<'a> From<&'a String> for Val<'a> {
    fn from(s: &'a String) -> Self {
        Val::Text(Cow::Borrowed(s))
    }
}

impl From<String> for Val<'_> {
    fn from(s: String) -> Self {
        Val::Text(Cow::Owned(s))
    }
}

impl From<i64> for Val<'_> {
    fn from(i: i64) -> Self {
        Val::Int(i)
    }
}

impl From<bool> for Val<'_> {
    fn from(b: bool) -> Self {
        Val::Int(i64::from(b))
    }
}

impl<'a, T> From<Option<T>> for Val<'a>
where
    T: Into<Val<'a>>,
{
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

impl<'a> From<&'a Option<String>> for Val<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().into()
    }
}

/// `[Val; N]` from anything `Into<Val>`, as rusqlite's `params!`.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { [$($crate::db::sql::Val::from($v)),*] };
}
pub(crate) use vals;

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(*i),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

impl ToSql for Val<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => i.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("cannot bind an integer as {ty}").into()),
            },
            Val::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(format!("cannot bind text as {ty}").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`, which knows whether it holds an integer or text.
        true
    }

    to_sql_checked!();
}

/// A result row; columns are read by index.
pub(crate) enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a tokio_postgres::Row),
}

impl Row<'_> {
    pub(crate) fn opt_i64(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self {
            Row::Sqlite(r) => Ok(r.get(i)?),
            Row::Pg(r) => {
                let col = r.columns().get(i).ok_or_else(|| DbError::Corrupt(format!("no column {i}")))?;
                Ok(match *col.type_() {
                    Type::INT8 => r.try_get::<_, Option<i64>>(i)?,
                    Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(i64::from),
                    Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(i64::from),
                    Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(i64::from),
                    ref t => return Err(DbError::Corrupt(format!("column {i} is {t}, not an integer"))),
                })
            }
        }
    }

    pub(crate) fn i64(&self, i: usize) -> Result<i64, DbError> {
        self.opt_i64(i)?.ok_or_else(|| DbError::Corrupt(format!("column {i} is NULL")))
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool, DbError> {
        Ok(self.i64(i)? != 0)
    }

    /// Column `i`'s text, borrowed (a body decodes without a copy).
    pub(crate) fn opt_str(&self, i: usize) -> Result<Option<&str>, DbError> {
        match self {
            Row::Sqlite(r) => r.get_ref(i)?.as_str_or_null().map_err(|e| DbError::Corrupt(format!("column {i}: {e}"))),
            Row::Pg(r) => Ok(r.try_get::<_, Option<&str>>(i)?),
        }
    }

    pub(crate) fn str(&self, i: usize) -> Result<&str, DbError> {
        self.opt_str(i)?.ok_or_else(|| DbError::Corrupt(format!("column {i} is NULL")))
    }

    pub(crate) fn opt_string(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(self.opt_str(i)?.map(str::to_string))
    }

    pub(crate) fn string(&self, i: usize) -> Result<String, DbError> {
        Ok(self.str(i)?.to_string())
    }
}

/// A connection of either backend, inside a write transaction or not (the store decides).
pub(crate) enum Conn<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(PgSession<'a>),
}

impl Conn<'_> {
    /// Runs a statement; the number of rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: &[Val<'_>]) -> Result<usize, DbError> {
        match self {
            Conn::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?),
            Conn::Pg(s) => s.execute(sql, params),
        }
    }

    /// `f` of each row, in order.
    pub(crate) fn query_map<T>(
        &self,
        sql: &str,
        params: &[Val<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        self.query_filter_map(sql, params, |r| f(r).map(Some))
    }

    /// `f` of each row, in order, keeping the `Some`s: for scans that drop most rows, without
    /// collecting the dropped ones.
    pub(crate) fn query_filter_map<T>(
        &self,
        sql: &str,
        params: &[Val<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<Option<T>, DbError>,
    ) -> Result<Vec<T>, DbError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.extend(f(&Row::Sqlite(r))?);
                }
                Ok(out)
            }
            Conn::Pg(s) => {
                let mut out = Vec::new();
                for r in s.query(sql, params)?.iter() {
                    out.extend(f(&Row::Pg(r))?);
                }
                Ok(out)
            }
        }
    }

    /// `f` of the first row, if there is one.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Val<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(params))?;
                match rows.next()? {
                    Some(r) => Ok(Some(f(&Row::Sqlite(r))?)),
                    None => Ok(None),
                }
            }
            Conn::Pg(s) => match s.query(sql, params)?.first() {
                Some(r) => Ok(Some(f(&Row::Pg(r))?)),
                None => Ok(None),
            },
        }
    }

    /// `f` of the first row of a query that always returns one (`COUNT(*)`).
    pub(crate) fn query_one<T>(
        &self,
        sql: &str,
        params: &[Val<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.query_opt(sql, params, f)?.ok_or_else(|| DbError::Corrupt(format!("no row from {sql}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_helpers_give_the_same_answers_on_sqlite_as_written_for_postgres() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let conn = Conn::Sqlite(&c);
        let body = r#"{"a":"x","retired":true,"n":null}"#;
        let one = |sql: String| conn.query_one(&sql, &vals![body], |r| r.opt_string(0)).unwrap();
        assert_eq!(one(format!("SELECT {}", Dialect::Sqlite.json_text("?1", "a"))), Some("x".into()));
        let set = Dialect::Sqlite
            .json_set("?1", &[("a", JsonVal::Json("'null'")), ("b", JsonVal::Field { col: "?1", key: "a" })]);
        let got: serde_json::Value = serde_json::from_str(&one(format!("SELECT {set}")).unwrap()).unwrap();
        assert_eq!(got, serde_json::json!({"a": null, "retired": true, "n": null, "b": "x"}));
        let flag = |v| {
            conn.query_one(&format!("SELECT {}", Dialect::Sqlite.json_flag_is("?1", "retired", v)), &vals![body], |r| {
                r.bool(0)
            })
            .unwrap()
        };
        assert!(flag(true));
        assert!(!flag(false));
    }
}
