//! Ports and portgroups.

use super::sql::{Conn, Val, vals};
use super::{Db, DbError, SortDir, from_json, to_json, unique_violation};
use ferric_types::models::{MacAddr, NodeId, Port, PortId, Portgroup, PortgroupId};

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
    /// Ports of nodes this project owns or leases (a project-scoped caller's listing).
    pub project: Option<String>,
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
        let cols = port_cols(p);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO ports (uuid, address, node_uuid, portgroup_uuid, name, body) VALUES (?1,?2,?3,?4,?5,?6)",
                &vals![&cols[0], &cols[1], &cols[2], &cols[3], &p.name, &body],
            )
            .map_err(|e| unique_violation(e, |t| port_duplicate(p, t)))?;
            Ok(())
        })
    }

    pub fn update_port(&self, p: &Port) -> Result<(), DbError> {
        let body = to_json(p)?;
        let cols = port_cols(p);
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE ports SET address=?2, node_uuid=?3, portgroup_uuid=?4, name=?5, body=?6 WHERE uuid=?1",
                    &vals![&cols[0], &cols[1], &cols[2], &cols[3], &p.name, &body],
                )
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
        self.write(|tx| update_ports_tx(tx, ports, &bodies))
    }

    /// By UUID, or by name.
    pub fn get_port(&self, ident: &str) -> Result<Port, DbError> {
        let (col, val) = match ident.parse::<PortId>() {
            Ok(id) => ("uuid", id.to_string()),
            Err(_) => ("name", ident.to_string()),
        };
        let sql = match col {
            "uuid" => "SELECT body FROM ports WHERE uuid = ?1",
            _ => "SELECT body FROM ports WHERE name = ?1",
        };
        self.read(|c| c.query_opt(sql, &vals![&val], |r| from_json(r.str(0)?)))?
            .ok_or_else(|| DbError::NotFound { kind: "Port", ident: ident.to_string() })
    }

    pub fn get_port_by_address(&self, mac: MacAddr) -> Result<Port, DbError> {
        self.read(|c| {
            c.query_opt("SELECT body FROM ports WHERE address = ?1", &vals![mac.to_string()], |r| from_json(r.str(0)?))
        })?
        .ok_or_else(|| DbError::NotFound { kind: "Port", ident: mac.to_string() })
    }

    pub fn destroy_port(&self, id: PortId) -> Result<(), DbError> {
        self.delete_row("ports", &id.to_string(), "Port")
    }

    pub fn list_ports(&self, q: &PortQuery) -> Result<Vec<Port>, DbError> {
        let key = if q.sort_key.is_empty() { "id" } else { q.sort_key.as_str() };
        if !PORT_SORT_KEYS.contains(&key) {
            return Err(DbError::Corrupt(format!("invalid sort key {key}")));
        }
        let mut conds = Vec::new();
        let mut args: Vec<Val<'static>> = Vec::new();
        for (col, v) in [
            ("node_uuid", q.node.map(|n| n.to_string())),
            ("portgroup_uuid", q.portgroup.map(|n| n.to_string())),
            ("address", q.address.map(|a| a.to_string())),
        ] {
            if let Some(v) = v {
                args.push(Val::from(v));
                conds.push(format!("{col} = ?{}", args.len()));
            }
        }
        if let Some(nodes) = &q.nodes {
            let mut ph = Vec::new();
            for n in nodes {
                args.push(Val::from(n.to_string()));
                ph.push(format!("?{}", args.len()));
            }
            conds.push(if ph.is_empty() { "1 = 0".into() } else { format!("node_uuid IN ({})", ph.join(",")) });
        }
        if let Some(p) = &q.project {
            args.push(Val::from(p.clone()));
            conds
                .push(format!("node_uuid IN (SELECT uuid FROM nodes WHERE owner = ?{0} OR lessee = ?{0})", args.len()));
        }
        let (cmp, dir) = match q.sort_dir {
            SortDir::Asc => (">", "ASC"),
            SortDir::Desc => ("<", "DESC"),
        };
        if let Some(m) = q.marker {
            args.push(Val::from(m.to_string()));
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
        let nulls = self.dialect().nulls(q.sort_dir == SortDir::Desc);
        sql.push_str(&format!(" ORDER BY {key} {dir}{nulls}, id {dir}"));
        if let Some(l) = q.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        self.read(|c| c.query_map(&sql, &args, |r| from_json(r.str(0)?)))
    }

    /// A node's ports in creation order.
    pub fn node_ports(&self, node: NodeId) -> Result<Vec<Port>, DbError> {
        self.list_ports(&PortQuery { node: Some(node), ..Default::default() })
    }

    // ---- portgroups ----

    pub fn create_portgroup(&self, g: &Portgroup) -> Result<(), DbError> {
        let body = to_json(g)?;
        let uuid = g.uuid.map(|u| u.to_string()).unwrap_or_default();
        let node = g.node_uuid.map(|n| n.to_string());
        self.write(|tx| {
            tx.execute(
                "INSERT INTO portgroups (uuid, name, address, node_uuid, body) VALUES (?1,?2,?3,?4,?5)",
                &vals![&uuid, &g.name, &g.address, &node, &body],
            )
            .map_err(|e| {
                unique_violation(e, |t| {
                    if t.contains("portgroups.address") {
                        format!("A port group with MAC address {} already exists.", g.address.as_deref().unwrap_or(""))
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
        let node = g.node_uuid.map(|n| n.to_string());
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE portgroups SET name=?2, address=?3, node_uuid=?4, body=?5 WHERE uuid=?1",
                    &vals![&uuid, &g.name, &g.address, &node, &body],
                )
                .map_err(|e| unique_violation(e, |_| "A portgroup with that name or address already exists.".into()))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Portgroup", ident: uuid.clone() });
            }
            Ok(())
        })
    }

    pub fn get_portgroup(&self, ident: &str) -> Result<Portgroup, DbError> {
        let col = if ident.parse::<PortgroupId>().is_ok() { "uuid" } else { "name" };
        match self.get_body("portgroups", col, ident)? {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Portgroup", ident: ident.to_string() }),
        }
    }

    pub fn destroy_portgroup(&self, id: PortgroupId) -> Result<(), DbError> {
        self.delete_row("portgroups", &id.to_string(), "Portgroup")
    }

    pub fn list_portgroups(&self, node: Option<NodeId>) -> Result<Vec<Portgroup>, DbError> {
        self.read(|c| match node {
            Some(n) => c.query_map(
                "SELECT body FROM portgroups WHERE node_uuid = ?1 ORDER BY id",
                &vals![n.to_string()],
                |r| from_json(r.str(0)?),
            ),
            None => c.query_map("SELECT body FROM portgroups ORDER BY id", &[], |r| from_json(r.str(0)?)),
        })
    }
}

pub(crate) fn port_bodies(ports: &[Port]) -> Result<Vec<String>, DbError> {
    ports.iter().map(to_json).collect()
}

/// Writes each port's body; rows whose body is unchanged are left alone (the conductor saves a
/// task's ports with every save of its node).
pub(crate) fn update_ports_tx(tx: &Conn<'_>, ports: &[Port], bodies: &[String]) -> Result<(), DbError> {
    for (p, b) in ports.iter().zip(bodies) {
        tx.execute(
            "UPDATE ports SET body=?2 WHERE uuid=?1 AND body IS DISTINCT FROM ?2",
            &vals![p.uuid.to_string(), b],
        )?;
    }
    Ok(())
}

/// A port's uuid, address, node and portgroup as their columns hold them.
fn port_cols(p: &Port) -> [Option<String>; 4] {
    [
        Some(p.uuid.to_string()),
        Some(p.address.to_string()),
        Some(p.node_uuid.to_string()),
        p.portgroup_uuid.map(|g| g.to_string()),
    ]
}
