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
    // 2: volume connectors and targets, allocations, deploy templates, node history, inventory,
    // BIOS settings and firmware components. Rows of a node go with it (ON DELETE CASCADE), as Ironic's destroy_node
    // removes them. Releasing a node's instance (instance_uuid set to NULL by undeploy or a
    // patch) removes its allocation, as Ironic's tear-down and node update do; the trigger keeps
    // that in the same transaction as the node write.
    r#"
    CREATE TABLE volume_connectors (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        type TEXT NOT NULL,
        connector_id TEXT NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (type, connector_id)
    );
    CREATE INDEX volume_connectors_node ON volume_connectors(node_uuid);
    CREATE TABLE volume_targets (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        volume_type TEXT NOT NULL,
        volume_id TEXT NOT NULL,
        boot_index INTEGER NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (node_uuid, boot_index)
    );
    CREATE TABLE allocations (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT UNIQUE,
        node_uuid TEXT UNIQUE REFERENCES nodes(uuid) ON DELETE CASCADE,
        state TEXT NOT NULL,
        resource_class TEXT,
        owner TEXT,
        body TEXT NOT NULL
    );
    CREATE TABLE deploy_templates (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL
    );
    CREATE TABLE node_history (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX node_history_node ON node_history(node_uuid, id);
    CREATE TABLE node_inventory (
        node_uuid TEXT PRIMARY KEY REFERENCES nodes(uuid) ON DELETE CASCADE,
        inventory TEXT NOT NULL,
        plugin_data TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE bios_settings (
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        name TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (node_uuid, name)
    );
    CREATE TABLE firmware_components (
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        component TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (node_uuid, component)
    );
    CREATE TRIGGER nodes_instance_released AFTER UPDATE OF instance_uuid ON nodes
        WHEN OLD.instance_uuid IS NOT NULL AND NEW.instance_uuid IS NULL
    BEGIN
        DELETE FROM allocations WHERE node_uuid = NEW.uuid;
    END;
    "#,
    // 3: DHCP for the provisioning network. Leases keyed by address (a MAC holds one lease plus any
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
    // 4: the node's last_error as a column, so recording history on every save need not parse
    // the body to see whether the error changed.
    r#"
    ALTER TABLE nodes ADD COLUMN last_error TEXT;
    UPDATE nodes SET last_error = json_extract(body, '$.last_error');
    "#,
    // 5: a version per node row, bumped by every write of its body (the decoded-node cache in
    // `Db` keys on it).
    r#"
    ALTER TABLE nodes ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_column_is_filled_from_existing_bodies() {
        let c = Connection::open_in_memory().unwrap();
        for (i, sql) in MIGRATIONS.iter().enumerate().take(3) {
            c.execute_batch(&format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1)).unwrap();
        }
        c.execute(
            "INSERT INTO nodes (uuid, driver, provision_state, created_at, body) VALUES
             ('a', 'ipmi', 'deploy failed', '2026-01-01T00:00:00Z', '{\"last_error\":\"boom\"}'),
             ('b', 'ipmi', 'available', '2026-01-01T00:00:00Z', '{\"last_error\":null}')",
            [],
        )
        .unwrap();
        migrate(&c).unwrap();
        let got: Vec<Option<String>> = c
            .prepare("SELECT last_error FROM nodes ORDER BY uuid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, vec![Some("boom".to_string()), None]);
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }
}
