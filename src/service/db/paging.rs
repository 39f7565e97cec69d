//! Listings of the tables that keep each row's record as a JSON body: a [`Page`] (order, size,
//! marker) turned into keyset-paginated SQL.

use super::sql::Val;
use super::{Db, DbError, SortDir};
use ferric_types::models::NodeId;

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

impl Db {
    /// `SELECT body FROM table WHERE conds ORDER BY key LIMIT`, keyset-paginated after a marker.
    pub(super) fn list_bodies(
        &self,
        table: &str,
        sortable: &[&str],
        mut conds: Vec<String>,
        mut args: Vec<Val<'static>>,
        page: &Page,
    ) -> Result<Vec<String>, DbError> {
        let key = if page.sort_key.is_empty() { "id" } else { page.sort_key.as_str() };
        if !sortable.contains(&key) && !BODY_SORT_KEYS.contains(&key) {
            return Err(DbError::Corrupt(format!("{SORT_KEY_ERROR} {key}")));
        }
        // Fields without a column sort by their value in the body.
        let d = self.dialect();
        let key_expr = if sortable.contains(&key) { key.to_string() } else { d.json_text("body", key) };
        let key = key_expr.as_str();
        let (cmp, dir) = match page.sort_dir {
            SortDir::Asc => (">", "ASC"),
            SortDir::Desc => ("<", "DESC"),
        };
        if let Some(m) = &page.marker {
            args.push(Val::from(m.clone()));
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
        sql.push_str(&format!(" ORDER BY {key} {dir}{}, id {dir}", d.nulls(page.sort_dir == SortDir::Desc)));
        if let Some(l) = page.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        self.read(|c| c.query_map(&sql, &args, |r| r.string(0)))
    }
}

/// The condition (and its argument) selecting one node's rows, or none for all rows.
pub(super) fn node_cond(node: Option<NodeId>) -> (Vec<String>, Vec<Val<'static>>) {
    match node {
        Some(n) => (vec!["node_uuid = ?1".into()], vec![Val::from(n.to_string())]),
        None => (Vec::new(), Vec::new()),
    }
}
