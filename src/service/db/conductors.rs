//! Conductors registered with the store, by host name.

use super::sql::vals;
use super::{Db, DbError, from_json, to_json};
use ferric_types::models::{ConductorRecord, NodeId};

impl Db {
    /// Registers (or refreshes) a conductor.
    pub fn upsert_conductor(&self, rec: &ConductorRecord) -> Result<(), DbError> {
        let body = to_json(rec)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO conductors (hostname, body) VALUES (?1, ?2)
                 ON CONFLICT(hostname) DO UPDATE SET body = excluded.body",
                &vals![&rec.hostname, &body],
            )?;
            Ok(())
        })
    }

    pub fn list_conductors(&self) -> Result<Vec<ConductorRecord>, DbError> {
        self.read(|c| c.query_map("SELECT body FROM conductors ORDER BY hostname", &[], |r| from_json(r.str(0)?)))
    }

    pub fn get_conductor(&self, hostname: &str) -> Result<ConductorRecord, DbError> {
        self.read(|c| {
            c.query_opt("SELECT body FROM conductors WHERE hostname = ?1", &vals![hostname], |r| from_json(r.str(0)?))
        })?
        .ok_or_else(|| DbError::NotFound { kind: "Conductor", ident: hostname.to_string() })
    }

    /// Every node's hash ring key (driver, conductor group) and whether it is locked: what a
    /// conductor reads to find the nodes it owns.
    pub fn node_ring_keys(&self) -> Result<Vec<(NodeId, String, String, bool)>, DbError> {
        self.read(|c| {
            c.query_map("SELECT uuid, driver, conductor_group, reservation IS NOT NULL FROM nodes", &[], |r| {
                let u = r.str(0)?;
                let id = u.parse().map_err(|_| DbError::Corrupt(format!("node uuid {u}")))?;
                Ok((id, r.string(1)?, r.string(2)?, r.bool(3)?))
            })
        })
    }
}
