//! Versioned schema. `PRAGMA user_version` records how many migrations have run; each migration
//! runs in its own transaction, so a crash mid-upgrade leaves the previous version intact.

use super::DbError;
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: the initial schema. Scalar columns serve filters, sorting, uniqueness and locking; `body`
    // holds the whole record as JSON.
    r#"
    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT UNIQUE,
        driver TEXT NOT NULL,
        provision_state TEXT NOT NULL,
        power_state TEXT,
        instance_uuid TEXT UNIQUE,
        maintenance INTEGER NOT NULL DEFAULT 0,
        fault TEXT,
        resource_class TEXT,
        conductor_group TEXT NOT NULL DEFAULT '',
        chassis_uuid TEXT,
        owner TEXT,
        lessee TEXT,
        shard TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        provision_updated_at TEXT,
        reservation TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX nodes_provision_state ON nodes(provision_state);
    CREATE INDEX nodes_reservation ON nodes(reservation);
    CREATE TABLE ports (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        portgroup_uuid TEXT,
        name TEXT UNIQUE,
        body TEXT NOT NULL
    );
    CREATE INDEX ports_node ON ports(node_uuid);
    CREATE TABLE portgroups (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT UNIQUE,
        address TEXT UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        body TEXT NOT NULL
    );
    CREATE TABLE chassis (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL
    );
    CREATE TABLE conductors (
        hostname TEXT PRIMARY KEY,
        body TEXT NOT NULL
    );
    CREATE TABLE dhcp_leases (
        mac TEXT PRIMARY KEY,
        ip TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL
    );
    "#,
    // 2: DHCP for the provisioning network. Leases keyed by address (a MAC holds one lease plus any
    // addresses it declined; `ip` is the address as a u32); per-port boot options written by the
    // boot interfaces (Ironic's "update DHCP boot options"), gone with the port or node.
    r#"
    CREATE TABLE dhcp_addresses (
        ip INTEGER PRIMARY KEY,
        mac TEXT NOT NULL,
        state TEXT NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE INDEX dhcp_addresses_mac ON dhcp_addresses(mac);
    CREATE TABLE dhcp_hosts (
        port_uuid TEXT PRIMARY KEY REFERENCES ports(uuid) ON DELETE CASCADE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        body TEXT NOT NULL
    );
    CREATE INDEX dhcp_hosts_node ON dhcp_hosts(node_uuid);
    "#,
];

/// Brings the schema to the newest version.
pub fn migrate(c: &Connection) -> Result<(), DbError> {
    let current: usize = c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(DbError::Corrupt(format!(
            "database schema version {current} is newer than this ferric ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        c.execute_batch(&format!("BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1))?;
    }
    Ok(())
}
