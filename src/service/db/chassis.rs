//! Chassis (groups of nodes; a chassis holding nodes cannot be deleted).

use super::sql::vals;
use super::{Db, DbError, from_json, to_json, unique_violation};
use ferric_types::models::{Chassis, ChassisId};

impl Db {
    pub fn create_chassis(&self, ch: &Chassis) -> Result<(), DbError> {
        let body = to_json(ch)?;
        let uuid = ch.uuid.map(|u| u.to_string()).unwrap_or_default();
        self.write(|tx| {
            tx.execute("INSERT INTO chassis (uuid, body) VALUES (?1, ?2)", &vals![&uuid, &body])
                .map_err(|e| unique_violation(e, |_| format!("A chassis with UUID {uuid} already exists.")))?;
            Ok(())
        })
    }

    pub fn update_chassis(&self, ch: &Chassis) -> Result<(), DbError> {
        let body = to_json(ch)?;
        let uuid = ch.uuid.map(|u| u.to_string()).unwrap_or_default();
        self.write(|tx| {
            let n = tx.execute("UPDATE chassis SET body = ?2 WHERE uuid = ?1", &vals![&uuid, &body])?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Chassis", ident: uuid.clone() });
            }
            Ok(())
        })
    }

    pub fn get_chassis(&self, id: ChassisId) -> Result<Chassis, DbError> {
        self.read(|c| {
            c.query_opt("SELECT body FROM chassis WHERE uuid = ?1", &vals![id.to_string()], |r| from_json(r.str(0)?))
        })?
        .ok_or_else(|| DbError::NotFound { kind: "Chassis", ident: id.to_string() })
    }

    pub fn destroy_chassis(&self, id: ChassisId) -> Result<(), DbError> {
        let uuid = id.to_string();
        self.write(|tx| {
            let used =
                tx.query_one("SELECT COUNT(*) FROM nodes WHERE chassis_uuid = ?1", &vals![&uuid], |r| r.i64(0))?;
            if used > 0 {
                return Err(DbError::Duplicate(format!("Chassis {id} contains nodes.")));
            }
            let n = tx.execute("DELETE FROM chassis WHERE uuid = ?1", &vals![&uuid])?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Chassis", ident: id.to_string() });
            }
            Ok(())
        })
    }

    pub fn list_chassis(&self) -> Result<Vec<Chassis>, DbError> {
        self.read(|c| c.query_map("SELECT body FROM chassis ORDER BY id", &[], |r| from_json(r.str(0)?)))
    }
}
