//! Conductors registered with the store, by host name.

use super::sql::vals;
use super::{Db, DbError, from_json, to_json};
use ferric_types::models::ConductorRecord;

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
}
