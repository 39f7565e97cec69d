//! Conductors registered with the store, by host name.

use super::{Db, DbError, from_json, to_json};
use ferric_types::models::{ConductorRecord, NodeId};
use rusqlite::{OptionalExtension, params};

impl Db {
    /// Registers (or refreshes) a conductor.
    pub fn upsert_conductor(&self, rec: &ConductorRecord) -> Result<(), DbError> {
        let body = to_json(rec)?;
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO conductors (hostname, body) VALUES (?1, ?2)
                 ON CONFLICT(hostname) DO UPDATE SET body = excluded.body",
            )?
            .execute(params![rec.hostname, body])?;
            Ok(())
        })
    }

    pub fn list_conductors(&self) -> Result<Vec<ConductorRecord>, DbError> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT body FROM conductors ORDER BY hostname")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|b| from_json(&b?)).collect()
        })
    }

    pub fn get_conductor(&self, hostname: &str) -> Result<ConductorRecord, DbError> {
        self.read(|c| {
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM conductors WHERE hostname = ?1")?
                .query_row([hostname], |r| r.get(0))
                .optional()?;
            match body {
                Some(b) => from_json(&b),
                None => Err(DbError::NotFound { kind: "Conductor", ident: hostname.to_string() }),
            }
        })
    }

    /// Every node's hash ring key (driver, conductor group) and whether it is locked: what a
    /// conductor reads to find the nodes it owns.
    pub fn node_ring_keys(&self) -> Result<Vec<(NodeId, String, String, bool)>, DbError> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT uuid, driver, conductor_group, reservation IS NOT NULL FROM nodes")?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?))
            })?;
            rows.map(|row| {
                let (u, d, g, r) = row?;
                let id = u.parse().map_err(|_| DbError::Corrupt(format!("node uuid {u}")))?;
                Ok((id, d, g, r))
            })
            .collect()
        })
    }
}
