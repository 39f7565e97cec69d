//! DHCP state of the provisioning network: leases by address, per-port boot options, and the
//! lease records a DHCP server keeps as opaque JSON by MAC.
//!
//! The rows are plain data here; `network::dhcp` gives them their meaning (lease states, which
//! ports the DHCP server answers).

use super::sql::{Row, vals};
use super::{Db, DbError, from_json, to_json};
use ferric_types::models::{MacAddr, NodeId, Port, PortId};
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

/// A lease from `SELECT ip, mac, state, expires`.
fn row_to_lease(r: &Row<'_>) -> Result<LeaseRow, DbError> {
    let ip = r.i64(0)?;
    let ip = u32::try_from(ip).map_err(|_| DbError::Corrupt(format!("lease address {ip} out of range")))?;
    let expires = u64::try_from(r.i64(3)?).unwrap_or(0);
    Ok(LeaseRow { ip: Ipv4Addr::from(ip), mac: r.string(1)?, state: r.string(2)?, expires })
}

impl Db {
    /// Inserts or replaces the lease on `lease.ip`; a non-declined lease also drops the MAC's other
    /// non-declined lease (one live lease per MAC).
    pub fn put_dhcp_address(&self, lease: &LeaseRow) -> Result<(), DbError> {
        let ip = i64::from(u32::from(lease.ip));
        let expires = i64::try_from(lease.expires).unwrap_or(i64::MAX);
        self.write(|tx| {
            if lease.state != DECLINED {
                tx.execute(
                    "DELETE FROM dhcp_addresses WHERE mac = ?1 AND state <> ?2 AND ip <> ?3",
                    &vals![&lease.mac, DECLINED, ip],
                )?;
            }
            tx.execute(
                "INSERT INTO dhcp_addresses (ip, mac, state, expires) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, state = excluded.state, expires = excluded.expires",
                &vals![ip, &lease.mac, &lease.state, expires],
            )?;
            Ok(())
        })
    }

    /// The MAC's non-declined lease, expired or not.
    pub fn dhcp_address_by_mac(&self, mac: &str) -> Result<Option<LeaseRow>, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT ip, mac, state, expires FROM dhcp_addresses WHERE mac = ?1 AND state <> ?2 LIMIT 1",
                &vals![mac, DECLINED],
                row_to_lease,
            )
        })
    }

    /// Every lease (expired and declined ones too), by address.
    pub fn list_dhcp_addresses(&self) -> Result<Vec<LeaseRow>, DbError> {
        self.read(|c| c.query_map("SELECT ip, mac, state, expires FROM dhcp_addresses ORDER BY ip", &[], row_to_lease))
    }

    pub fn delete_dhcp_address(&self, ip: Ipv4Addr) -> Result<(), DbError> {
        self.write(|tx| {
            tx.execute("DELETE FROM dhcp_addresses WHERE ip = ?1", &vals![i64::from(u32::from(ip))])?;
            Ok(())
        })
    }

    /// Replaces all of a node's per-port DHCP boot options in one transaction.
    pub fn set_dhcp_hosts(&self, node: NodeId, hosts: &[(PortId, serde_json::Value)]) -> Result<(), DbError> {
        let bodies =
            hosts.iter().map(|(p, b)| Ok((p.to_string(), to_json(b)?))).collect::<Result<Vec<_>, DbError>>()?;
        let node = node.to_string();
        self.write(|tx| {
            tx.execute("DELETE FROM dhcp_hosts WHERE node_uuid = ?1", &vals![&node])?;
            for (port, body) in &bodies {
                tx.execute(
                    "INSERT INTO dhcp_hosts (port_uuid, node_uuid, body) VALUES (?1, ?2, ?3)",
                    &vals![port, &node, body],
                )?;
            }
            Ok(())
        })
    }

    /// Drops a node's DHCP boot options.
    pub fn delete_dhcp_hosts(&self, node: NodeId) -> Result<(), DbError> {
        let node = node.to_string();
        self.write(|tx| {
            tx.execute("DELETE FROM dhcp_hosts WHERE node_uuid = ?1", &vals![&node])?;
            Ok(())
        })
    }

    /// A node's DHCP boot options, per port.
    pub fn node_dhcp_hosts(&self, node: NodeId) -> Result<Vec<(PortId, serde_json::Value)>, DbError> {
        self.read(|c| {
            c.query_map(
                "SELECT port_uuid, body FROM dhcp_hosts WHERE node_uuid = ?1 ORDER BY port_uuid",
                &vals![node.to_string()],
                |r| {
                    let p = r.str(0)?;
                    let port = p.parse().map_err(|_| DbError::Corrupt(format!("dhcp_hosts port uuid {p:?}")))?;
                    Ok((port, from_json(r.str(1)?)?))
                },
            )
        })
    }

    /// The port with this MAC and its DHCP boot options, if any: what the DHCP server needs per
    /// request, in one read.
    pub fn dhcp_host_by_address(&self, mac: MacAddr) -> Result<Option<(Port, Option<serde_json::Value>)>, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT p.body, h.body FROM ports p LEFT JOIN dhcp_hosts h ON h.port_uuid = p.uuid
                 WHERE p.address = ?1",
                &vals![mac.to_string()],
                |r| Ok((from_json(r.str(0)?)?, r.opt_str(1)?.map(from_json).transpose()?)),
            )
        })
    }

    // ---- DHCP leases (opaque JSON owned by the DHCP server) ----

    pub fn put_lease(&self, mac: &str, ip: &str, body: &serde_json::Value) -> Result<(), DbError> {
        let b = to_json(body)?;
        self.write(|tx| {
            tx.execute("DELETE FROM dhcp_leases WHERE ip = ?1 AND mac <> ?2", &vals![ip, mac])?;
            tx.execute(
                "INSERT INTO dhcp_leases (mac, ip, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT(mac) DO UPDATE SET ip = excluded.ip, body = excluded.body",
                &vals![mac, ip, &b],
            )?;
            Ok(())
        })
    }

    pub fn delete_lease(&self, mac: &str) -> Result<(), DbError> {
        self.write(|tx| {
            tx.execute("DELETE FROM dhcp_leases WHERE mac = ?1", &vals![mac])?;
            Ok(())
        })
    }

    pub fn list_leases(&self) -> Result<Vec<(String, String, serde_json::Value)>, DbError> {
        self.read(|c| {
            c.query_map("SELECT mac, ip, body FROM dhcp_leases ORDER BY mac", &[], |r| {
                Ok((r.string(0)?, r.string(1)?, from_json(r.str(2)?)?))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TestStore, on_both_backends};
    use super::*;

    on_both_backends!(one_live_lease_per_mac_and_one_per_address);

    fn lease(ip: [u8; 4], mac: &str, state: &str) -> LeaseRow {
        LeaseRow { ip: Ipv4Addr::from(ip), mac: mac.into(), state: state.into(), expires: 100 }
    }

    fn one_live_lease_per_mac_and_one_per_address(t: &TestStore) {
        let db = t.open();
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
