//! Ports and portgroups.

use super::{Db, DbError, SortDir, from_json, to_json, unique_violation};
use ferric_types::models::{MacAddr, NodeId, Port, PortId, Portgroup, PortgroupId};
use rusqlite::{OptionalExtension, params};

/// A page of a port listing.
#[derive(Debug, Clone, Default)]
pub struct PortQuery {
    pub node: Option<NodeId>,
    pub portgroup: Option<PortgroupId>,
    pub address: Option<MacAddr>,
    pub sort_key: String,
    pub sort_dir: SortDir,
    pub limit: Option<usize>,
    pub marker: Option<PortId>,
    /// Ports of any of these nodes (the API's `shard` filter).
    pub nodes: Option<Vec<NodeId>>,
}

/// Columns a port listing may sort by.
pub const PORT_SORT_KEYS: &[&str] = &["id", "uuid", "address", "node_uuid", "name"];

fn port_duplicate(p: &Port, text: &str) -> String {
    if text.contains("ports.address") {
        format!("A port with MAC address {} already exists.", p.address)
    } else if text.contains("ports.name") {
        format!("A port with name {} already exists.", p.name.as_deref().unwrap_or(""))
    } else {
        format!("A port with UUID {} already exists.", p.uuid)
    }
}

impl Db {
    pub fn create_port(&self, p: &Port) -> Result<(), DbError> {
        let body = to_json(p)?;
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO ports (uuid, address, node_uuid, portgroup_uuid, name, body) VALUES (?1,?2,?3,?4,?5,?6)",
            )?
            .execute(params![
                p.uuid.to_string(),
                p.address.to_string(),
                p.node_uuid.to_string(),
                p.portgroup_uuid.map(|g| g.to_string()),
                p.name,
                body
            ])
            .map_err(|e| unique_violation(e, |t| port_duplicate(p, t)))?;
            Ok(())
        })
    }

    pub fn update_port(&self, p: &Port) -> Result<(), DbError> {
        let body = to_json(p)?;
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE ports SET address=?2, node_uuid=?3, portgroup_uuid=?4, name=?5, body=?6 WHERE uuid=?1",
                )?
                .execute(params![
                    p.uuid.to_string(),
                    p.address.to_string(),
                    p.node_uuid.to_string(),
                    p.portgroup_uuid.map(|g| g.to_string()),
                    p.name,
                    body
                ])
                .map_err(|e| unique_violation(e, |t| port_duplicate(p, t)))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Port", ident: p.uuid.to_string() });
            }
            Ok(())
        })
    }

    /// Writes several ports in one transaction (a node's ports after a network step).
    pub fn update_ports(&self, ports: &[Port]) -> Result<(), DbError> {
        let bodies = port_bodies(ports)?;
        self.write(|tx| update_ports_tx(tx, ports, bodies))
    }

    /// By UUID, or by name.
    pub fn get_port(&self, ident: &str) -> Result<Port, DbError> {
        let (col, val) = match ident.parse::<PortId>() {
            Ok(id) => ("uuid", id.to_string()),
            Err(_) => ("name", ident.to_string()),
        };
        self.read(|c| {
            let body: Option<String> = c
                .prepare_cached(&format!("SELECT body FROM ports WHERE {col} = ?1"))?
                .query_row([&val], |r| r.get(0))
                .optional()?;
            match body {
                Some(b) => from_json(&b),
                None => Err(DbError::NotFound { kind: "Port", ident: ident.to_string() }),
            }
        })
    }

    pub fn get_port_by_address(&self, mac: MacAddr) -> Result<Port, DbError> {
        self.read(|c| {
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM ports WHERE address = ?1")?
                .query_row([mac.to_string()], |r| r.get(0))
                .optional()?;
            match body {
                Some(b) => from_json(&b),
                None => Err(DbError::NotFound { kind: "Port", ident: mac.to_string() }),
            }
        })
    }

    pub fn destroy_port(&self, id: PortId) -> Result<(), DbError> {
        self.write(|tx| {
            let n = tx.prepare_cached("DELETE FROM ports WHERE uuid = ?1")?.execute([id.to_string()])?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Port", ident: id.to_string() });
            }
            Ok(())
        })
    }

    pub fn list_ports(&self, q: &PortQuery) -> Result<Vec<Port>, DbError> {
        use rusqlite::types::Value;
        let key = if q.sort_key.is_empty() { "id" } else { q.sort_key.as_str() };
        if !PORT_SORT_KEYS.contains(&key) {
            return Err(DbError::Corrupt(format!("invalid sort key {key}")));
        }
        let mut conds = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        for (col, v) in [
            ("node_uuid", q.node.map(|n| n.to_string())),
            ("portgroup_uuid", q.portgroup.map(|n| n.to_string())),
            ("address", q.address.map(|a| a.to_string())),
        ] {
            if let Some(v) = v {
                args.push(Value::Text(v));
                conds.push(format!("{col} = ?{}", args.len()));
            }
        }
        if let Some(nodes) = &q.nodes {
            let mut ph = Vec::new();
            for n in nodes {
                args.push(Value::Text(n.to_string()));
                ph.push(format!("?{}", args.len()));
            }
            conds.push(if ph.is_empty() { "0".into() } else { format!("node_uuid IN ({})", ph.join(",")) });
        }
        let (cmp, dir) = match q.sort_dir {
            SortDir::Asc => (">", "ASC"),
            SortDir::Desc => ("<", "DESC"),
        };
        if let Some(m) = q.marker {
            args.push(Value::Text(m.to_string()));
            let p = args.len();
            conds.push(format!(
                "({key}, id) {cmp} ((SELECT {key} FROM ports WHERE uuid = ?{p}), (SELECT id FROM ports WHERE uuid = ?{p}))"
            ));
        }
        let mut sql = "SELECT body FROM ports".to_string();
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY {key} {dir}, id {dir}"));
        if let Some(l) = q.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        self.read(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| r.get::<_, String>(0))?;
            rows.map(|b| from_json(&b?)).collect()
        })
    }

    /// A node's ports in creation order.
    pub fn node_ports(&self, node: NodeId) -> Result<Vec<Port>, DbError> {
        self.list_ports(&PortQuery { node: Some(node), ..Default::default() })
    }

    // ---- portgroups ----

    pub fn create_portgroup(&self, g: &Portgroup) -> Result<(), DbError> {
        let body = to_json(g)?;
        let uuid = g.uuid.map(|u| u.to_string()).unwrap_or_default();
        self.write(|tx| {
            tx.prepare_cached("INSERT INTO portgroups (uuid, name, address, node_uuid, body) VALUES (?1,?2,?3,?4,?5)")?
                .execute(params![uuid, g.name, g.address, g.node_uuid.map(|n| n.to_string()), body])
                .map_err(|e| {
                    unique_violation(e, |t| {
                        if t.contains("portgroups.address") {
                            format!(
                                "A port group with MAC address {} already exists.",
                                g.address.as_deref().unwrap_or("")
                            )
                        } else if t.contains("portgroups.name") {
                            format!("A portgroup with name {} already exists.", g.name.as_deref().unwrap_or(""))
                        } else {
                            format!("A portgroup with UUID {uuid} already exists.")
                        }
                    })
                })?;
            Ok(())
        })
    }

    pub fn update_portgroup(&self, g: &Portgroup) -> Result<(), DbError> {
        let body = to_json(g)?;
        let uuid = g.uuid.map(|u| u.to_string()).unwrap_or_default();
        self.write(|tx| {
            let n = tx
                .prepare_cached("UPDATE portgroups SET name=?2, address=?3, node_uuid=?4, body=?5 WHERE uuid=?1")?
                .execute(params![uuid, g.name, g.address, g.node_uuid.map(|n| n.to_string()), body])
                .map_err(|e| unique_violation(e, |_| "A portgroup with that name or address already exists.".into()))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Portgroup", ident: uuid.clone() });
            }
            Ok(())
        })
    }

    pub fn get_portgroup(&self, ident: &str) -> Result<Portgroup, DbError> {
        let col = if ident.parse::<PortgroupId>().is_ok() { "uuid" } else { "name" };
        self.read(|c| {
            let body: Option<String> = c
                .prepare_cached(&format!("SELECT body FROM portgroups WHERE {col} = ?1"))?
                .query_row([ident], |r| r.get(0))
                .optional()?;
            match body {
                Some(b) => from_json(&b),
                None => Err(DbError::NotFound { kind: "Portgroup", ident: ident.to_string() }),
            }
        })
    }

    pub fn destroy_portgroup(&self, id: PortgroupId) -> Result<(), DbError> {
        self.write(|tx| {
            let n = tx.prepare_cached("DELETE FROM portgroups WHERE uuid = ?1")?.execute([id.to_string()])?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Portgroup", ident: id.to_string() });
            }
            Ok(())
        })
    }

    pub fn list_portgroups(&self, node: Option<NodeId>) -> Result<Vec<Portgroup>, DbError> {
        self.read(|c| {
            let (sql, arg) = match node {
                Some(n) => ("SELECT body FROM portgroups WHERE node_uuid = ?1 ORDER BY id", Some(n.to_string())),
                None => ("SELECT body FROM portgroups ORDER BY id", None),
            };
            let mut st = c.prepare_cached(sql)?;
            let rows = match &arg {
                Some(a) => st.query_map([a], |r| r.get::<_, String>(0))?.collect::<Vec<_>>(),
                None => st.query_map([], |r| r.get::<_, String>(0))?.collect::<Vec<_>>(),
            };
            rows.into_iter().map(|b| from_json(&b?)).collect()
        })
    }
}

pub(crate) fn port_bodies(ports: &[Port]) -> Result<Vec<String>, DbError> {
    ports.iter().map(to_json).collect()
}

/// Writes each port's body; rows whose body is unchanged are left alone (the conductor saves a
/// task's ports with every save of its node).
pub(crate) fn update_ports_tx(tx: &rusqlite::Connection, ports: &[Port], bodies: Vec<String>) -> Result<(), DbError> {
    let mut st = tx.prepare_cached("UPDATE ports SET body=?2 WHERE uuid=?1 AND body IS NOT ?2")?;
    for (p, b) in ports.iter().zip(bodies) {
        st.execute(params![p.uuid.to_string(), b])?;
    }
    Ok(())
}
