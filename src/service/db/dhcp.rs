//! DHCP state of the provisioning network: leases by address, per-port boot options, and the
//! lease records a DHCP server keeps as opaque JSON by MAC.
//!
//! The rows are plain data here; `network::dhcp` gives them their meaning (lease states, which
//! ports the DHCP server answers).

use super::{Db, DbError, from_json, to_json};
use ferric_types::models::{MacAddr, NodeId, Port, PortId};
use rusqlite::{OptionalExtension, params};
use std::net::Ipv4Addr;

/// One address held by one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub ip: Ipv4Addr,
    pub mac: String,
    /// `offered`, `bound` or `declined`.
    pub state: String,
    /// Seconds since the Unix epoch.
    pub expires: u64,
}

const DECLINED: &str = "declined";

fn row_to_lease(ip: i64, mac: String, state: String, expires: i64) -> Result<LeaseRow, DbError> {
    let ip = u32::try_from(ip).map_err(|_| DbError::Corrupt(format!("lease address {ip} out of range")))?;
    Ok(LeaseRow { ip: Ipv4Addr::from(ip), mac, state, expires: u64::try_from(expires).unwrap_or(0) })
}

impl Db {
    /// Inserts or replaces the lease on `lease.ip`; a non-declined lease also drops the MAC's other
    /// non-declined lease (one live lease per MAC).
    pub fn put_dhcp_address(&self, lease: &LeaseRow) -> Result<(), DbError> {
        let ip = i64::from(u32::from(lease.ip));
        let expires = i64::try_from(lease.expires).unwrap_or(i64::MAX);
        self.write(|tx| {
            if lease.state != DECLINED {
                tx.prepare_cached("DELETE FROM dhcp_addresses WHERE mac = ?1 AND state <> ?2 AND ip <> ?3")?
                    .execute(params![lease.mac, DECLINED, ip])?;
            }
            tx.prepare_cached(
                "INSERT INTO dhcp_addresses (ip, mac, state, expires) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, state = excluded.state, expires = excluded.expires",
            )?
            .execute(params![ip, lease.mac, lease.state, expires])?;
            Ok(())
        })
    }

    /// The MAC's non-declined lease, expired or not.
    pub fn dhcp_address_by_mac(&self, mac: &str) -> Result<Option<LeaseRow>, DbError> {
        self.read(|c| {
            let row = c
                .prepare_cached(
                    "SELECT ip, mac, state, expires FROM dhcp_addresses WHERE mac = ?1 AND state <> ?2 LIMIT 1",
                )?
                .query_row(params![mac, DECLINED], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            row.map(|(ip, mac, state, exp)| row_to_lease(ip, mac, state, exp)).transpose()
        })
    }

    /// Every lease (expired and declined ones too), by address.
    pub fn list_dhcp_addresses(&self) -> Result<Vec<LeaseRow>, DbError> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT ip, mac, state, expires FROM dhcp_addresses ORDER BY ip")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.map(|row| {
                let (ip, mac, state, exp) = row?;
                row_to_lease(ip, mac, state, exp)
            })
            .collect()
        })
    }

    pub fn delete_dhcp_address(&self, ip: Ipv4Addr) -> Result<(), DbError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM dhcp_addresses WHERE ip = ?1")?.execute([i64::from(u32::from(ip))])?;
            Ok(())
        })
    }

    /// Replaces all of a node's per-port DHCP boot options in one transaction.
    pub fn set_dhcp_hosts(&self, node: NodeId, hosts: &[(PortId, serde_json::Value)]) -> Result<(), DbError> {
        let bodies =
            hosts.iter().map(|(p, b)| Ok((p.to_string(), to_json(b)?))).collect::<Result<Vec<_>, DbError>>()?;
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM dhcp_hosts WHERE node_uuid = ?1")?.execute([node.to_string()])?;
            let mut ins =
                tx.prepare_cached("INSERT INTO dhcp_hosts (port_uuid, node_uuid, body) VALUES (?1, ?2, ?3)")?;
            for (port, body) in &bodies {
                ins.execute(params![port, node.to_string(), body])?;
            }
            Ok(())
        })
    }

    /// Drops a node's DHCP boot options.
    pub fn delete_dhcp_hosts(&self, node: NodeId) -> Result<(), DbError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM dhcp_hosts WHERE node_uuid = ?1")?.execute([node.to_string()])?;
            Ok(())
        })
    }

    /// A node's DHCP boot options, per port.
    pub fn node_dhcp_hosts(&self, node: NodeId) -> Result<Vec<(PortId, serde_json::Value)>, DbError> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT port_uuid, body FROM dhcp_hosts WHERE node_uuid = ?1 ORDER BY port_uuid")?;
            let rows = st.query_map([node.to_string()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.map(|row| {
                let (p, b) = row?;
                let port = p.parse().map_err(|_| DbError::Corrupt(format!("dhcp_hosts port uuid {p:?}")))?;
                Ok((port, from_json(&b)?))
            })
            .collect()
        })
    }

    /// The port with this MAC and its DHCP boot options, if any: what the DHCP server needs per
    /// request, in one read.
    pub fn dhcp_host_by_address(&self, mac: MacAddr) -> Result<Option<(Port, Option<serde_json::Value>)>, DbError> {
        self.read(|c| {
            let row: Option<(String, Option<String>)> = c
                .prepare_cached(
                    "SELECT p.body, h.body FROM ports p LEFT JOIN dhcp_hosts h ON h.port_uuid = p.uuid
                     WHERE p.address = ?1",
                )?
                .query_row([mac.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match row {
                None => Ok(None),
                Some((port, opts)) => Ok(Some((from_json(&port)?, opts.map(|o| from_json(&o)).transpose()?))),
            }
        })
    }

    // ---- DHCP leases (opaque JSON owned by the DHCP server) ----

    pub fn put_lease(&self, mac: &str, ip: &str, body: &serde_json::Value) -> Result<(), DbError> {
        let b = to_json(body)?;
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM dhcp_leases WHERE ip = ?1 AND mac <> ?2")?.execute(params![ip, mac])?;
            tx.prepare_cached(
                "INSERT INTO dhcp_leases (mac, ip, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT(mac) DO UPDATE SET ip = excluded.ip, body = excluded.body",
            )?
            .execute(params![mac, ip, b])?;
            Ok(())
        })
    }

    pub fn delete_lease(&self, mac: &str) -> Result<(), DbError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM dhcp_leases WHERE mac = ?1")?.execute([mac])?;
            Ok(())
        })
    }

    pub fn list_leases(&self) -> Result<Vec<(String, String, serde_json::Value)>, DbError> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT mac, ip, body FROM dhcp_leases ORDER BY mac")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
            rows.map(|row| {
                let (m, i, b) = row?;
                Ok((m, i, from_json(&b)?))
            })
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: [u8; 4], mac: &str, state: &str) -> LeaseRow {
        LeaseRow { ip: Ipv4Addr::from(ip), mac: mac.into(), state: state.into(), expires: 100 }
    }

    #[test]
    fn one_live_lease_per_mac_and_one_per_address() {
        let db = Db::open_in_memory().unwrap();
        db.put_dhcp_address(&lease([192, 0, 2, 10], "a", "offered")).unwrap();
        db.put_dhcp_address(&lease([192, 0, 2, 11], "a", "declined")).unwrap();
        db.put_dhcp_address(&lease([192, 0, 2, 12], "a", "bound")).unwrap();
        let all = db.list_dhcp_addresses().unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(db.dhcp_address_by_mac("a").unwrap().unwrap().ip, Ipv4Addr::new(192, 0, 2, 12));
        db.put_dhcp_address(&lease([192, 0, 2, 12], "b", "bound")).unwrap();
        assert_eq!(db.dhcp_address_by_mac("a").unwrap(), None);
        db.delete_dhcp_address(Ipv4Addr::new(192, 0, 2, 12)).unwrap();
        assert_eq!(db.list_dhcp_addresses().unwrap().len(), 1);
        let mut big = lease([255, 255, 255, 254], "c", "bound");
        big.expires = u64::MAX;
        db.put_dhcp_address(&big).unwrap();
        assert_eq!(db.dhcp_address_by_mac("c").unwrap().unwrap().expires, i64::MAX as u64);
    }
}
