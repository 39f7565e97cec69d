//! Chassis (groups of nodes; a chassis holding nodes cannot be deleted).

use super::{Db, DbError, from_json, to_json, unique_violation};
use ferric_types::models::{Chassis, ChassisId};
use rusqlite::{OptionalExtension, params};

impl Db {
    pub fn create_chassis(&self, ch: &Chassis) -> Result<(), DbError> {
        let body = to_json(ch)?;
        let uuid = ch.uuid.map(|u| u.to_string()).unwrap_or_default();
        self.write(|tx| {
            tx.prepare_cached("INSERT INTO chassis (uuid, body) VALUES (?1, ?2)")?
                .execute(params![uuid, body])
                .map_err(|e| unique_violation(e, |_| format!("A chassis with UUID {uuid} already exists.")))?;
            Ok(())
        })
    }

    pub fn update_chassis(&self, ch: &Chassis) -> Result<(), DbError> {
        let body = to_json(ch)?;
        let uuid = ch.uuid.map(|u| u.to_string()).unwrap_or_default();
        self.write(|tx| {
            let n = tx.prepare_cached("UPDATE chassis SET body = ?2 WHERE uuid = ?1")?.execute(params![uuid, body])?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Chassis", ident: uuid.clone() });
            }
            Ok(())
        })
    }

    pub fn get_chassis(&self, id: ChassisId) -> Result<Chassis, DbError> {
        self.read(|c| {
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM chassis WHERE uuid = ?1")?
                .query_row([id.to_string()], |r| r.get(0))
                .optional()?;
            match body {
                Some(b) => from_json(&b),
                None => Err(DbError::NotFound { kind: "Chassis", ident: id.to_string() }),
            }
        })
    }

    pub fn destroy_chassis(&self, id: ChassisId) -> Result<(), DbError> {
        self.write(|tx| {
            let used: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM nodes WHERE chassis_uuid = ?1")?
                .query_row([id.to_string()], |r| r.get(0))?;
            if used > 0 {
                return Err(DbError::Duplicate(format!("Chassis {id} contains nodes.")));
            }
            let n = tx.prepare_cached("DELETE FROM chassis WHERE uuid = ?1")?.execute([id.to_string()])?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Chassis", ident: id.to_string() });
            }
            Ok(())
        })
    }

    pub fn list_chassis(&self) -> Result<Vec<Chassis>, DbError> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT body FROM chassis ORDER BY id")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|b| from_json(&b?)).collect()
        })
    }
}
