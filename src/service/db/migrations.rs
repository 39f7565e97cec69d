//! Versioned schema, one list for both backends. Each migration runs in its own transaction, so
//! a crash mid-upgrade leaves the previous version intact. SQLite records the version in
//! `PRAGMA user_version`, PostgreSQL in a one-row `schema_version` table; the numbers are the
//! same.
//!
//! The statements are written once ([`Part::Both`]) with two dialect tokens, expanded by
//! [`render`]: `{pk}` (the rowid-like `id` column) and `{json:COL:KEY}` (a JSON field of a text
//! column); PostgreSQL reads `INTEGER` as `BIGINT` (SQLite's integers are 64-bit). Only what
//! cannot be spelled in common (a trigger) is written per dialect.

use super::pg::PgSession;
use super::sql::{Dialect, Val};
use super::{DbError, SchemaMode};
use rusqlite::Connection;

/// A piece of a migration.
enum Part {
    Both(&'static str),
    Sqlite(&'static str),
    Postgres(&'static str),
}

use Part::{Both, Postgres, Sqlite};

const MIGRATIONS: &[&[Part]] = &[
    // 1: the initial schema. Scalar columns serve filters, sorting, uniqueness and locking; `body`
    // holds the whole record as JSON.
    &[Both(
        r#"
    CREATE TABLE nodes (
        {pk},
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
        {pk},
        uuid TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        portgroup_uuid TEXT,
        name TEXT UNIQUE,
        body TEXT NOT NULL
    );
    CREATE INDEX ports_node ON ports(node_uuid);
    CREATE TABLE portgroups (
        {pk},
        uuid TEXT NOT NULL UNIQUE,
        name TEXT UNIQUE,
        address TEXT UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        body TEXT NOT NULL
    );
    CREATE TABLE chassis (
        {pk},
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
    )],
    // 2: volume connectors and targets, allocations, deploy templates, node history, inventory,
    // BIOS settings and firmware components. Rows of a node go with it (ON DELETE CASCADE), as Ironic's destroy_node
    // removes them. Releasing a node's instance (instance_uuid set to NULL by undeploy or a
    // patch) removes its allocation, as Ironic's tear-down and node update do; the trigger keeps
    // that in the same transaction as the node write.
    &[
        Both(
            r#"
    CREATE TABLE volume_connectors (
        {pk},
        uuid TEXT NOT NULL UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        type TEXT NOT NULL,
        connector_id TEXT NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (type, connector_id)
    );
    CREATE INDEX volume_connectors_node ON volume_connectors(node_uuid);
    CREATE TABLE volume_targets (
        {pk},
        uuid TEXT NOT NULL UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
        volume_type TEXT NOT NULL,
        volume_id TEXT NOT NULL,
        boot_index INTEGER NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (node_uuid, boot_index)
    );
    CREATE TABLE allocations (
        {pk},
        uuid TEXT NOT NULL UNIQUE,
        name TEXT UNIQUE,
        node_uuid TEXT UNIQUE REFERENCES nodes(uuid) ON DELETE CASCADE,
        state TEXT NOT NULL,
        resource_class TEXT,
        owner TEXT,
        body TEXT NOT NULL
    );
    CREATE TABLE deploy_templates (
        {pk},
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL
    );
    CREATE TABLE node_history (
        {pk},
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
    "#,
        ),
        Sqlite(
            r#"
    CREATE TRIGGER nodes_instance_released AFTER UPDATE OF instance_uuid ON nodes
        WHEN OLD.instance_uuid IS NOT NULL AND NEW.instance_uuid IS NULL
    BEGIN
        DELETE FROM allocations WHERE node_uuid = NEW.uuid;
    END;
    "#,
        ),
        Postgres(
            r#"
    CREATE FUNCTION nodes_instance_released() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM allocations WHERE node_uuid = NEW.uuid;
        RETURN NULL;
    END;
    $$;
    CREATE TRIGGER nodes_instance_released AFTER UPDATE OF instance_uuid ON nodes
        FOR EACH ROW WHEN (OLD.instance_uuid IS NOT NULL AND NEW.instance_uuid IS NULL)
        EXECUTE FUNCTION nodes_instance_released();
    "#,
        ),
    ],
    // 3: DHCP for the provisioning network. Leases keyed by address (a MAC holds one lease plus any
    // addresses it declined; `ip` is the address as a u32); per-port boot options written by the
    // boot interfaces (Ironic's "update DHCP boot options"), gone with the port or node.
    &[Both(
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
    )],
    // 4: the node's last_error as a column, so recording history on every save need not parse
    // the body to see whether the error changed.
    &[Both(
        r#"
    ALTER TABLE nodes ADD COLUMN last_error TEXT;
    UPDATE nodes SET last_error = {json:body:last_error};
    "#,
    )],
    // 5: a version per node row, bumped by every write of its body (the decoded-node cache in
    // `Db` keys on it).
    &[Both(
        r#"
    ALTER TABLE nodes ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    "#,
    )],
    // 6: API bearer tokens (`ferric token create`): only the SHA-256 of each secret is kept.
    // Times are RFC 3339 text in UTC, compared by the API after reading the row.
    &[Both(
        r#"
    CREATE TABLE api_tokens (
        {pk},
        uuid TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL UNIQUE,
        username TEXT NOT NULL,
        role TEXT NOT NULL,
        project TEXT,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        revoked_at TEXT
    );
    "#,
    )],
];

/// The newest schema version.
pub(super) const VERSION: u32 = MIGRATIONS.len() as u32;

/// Migration `i` (0-based: it takes the schema from version `i` to `i + 1`) in `d`'s SQL.
pub(super) fn render(i: usize, d: Dialect) -> String {
    let mut out = String::new();
    for part in MIGRATIONS[i] {
        let text = match (part, d) {
            (Both(t), _) | (Sqlite(t), Dialect::Sqlite) | (Postgres(t), Dialect::Postgres) => t,
            _ => continue,
        };
        let mut text = match d {
            Dialect::Sqlite => text.replace("{pk}", "id INTEGER PRIMARY KEY"),
            Dialect::Postgres => text
                .replace("{pk}", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                .replace("INTEGER", "BIGINT"),
        };
        while let Some(start) = text.find("{json:") {
            let Some(len) = text[start..].find('}') else { break };
            let token = &text[start + 6..start + len];
            let (col, key) = token.split_once(':').unwrap_or((token, ""));
            let expr = d.json_text(col, key);
            text.replace_range(start..=start + len, &expr);
        }
        out.push_str(&text);
    }
    out
}

/// The error for a database at schema version `database` that this binary will not run on.
pub(super) fn mismatch(database: u32, target: &str) -> DbError {
    DbError::SchemaMismatch { database, binary: VERSION, target: target.to_string() }
}

/// Checks `found` against this binary per `mode`: whether migrations are to run.
fn check(found: u32, mode: SchemaMode, target: &str) -> Result<bool, DbError> {
    match mode {
        _ if found > VERSION => Err(mismatch(found, target)),
        SchemaMode::Check if found != VERSION => Err(mismatch(found, target)),
        SchemaMode::Check => Ok(false),
        SchemaMode::Upgrade => Ok(found < VERSION),
    }
}

/// Upgrades (or checks) an SQLite database's schema: the versions before and after.
pub(super) fn migrate_sqlite(c: &Connection, mode: SchemaMode, target: &str) -> Result<(u32, u32), DbError> {
    let version = |c: &Connection| -> Result<u32, DbError> {
        let v = c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?;
        u32::try_from(v).map_err(|_| DbError::Corrupt(format!("schema version {v}")))
    };
    let found = version(c)?;
    if !check(found, mode, target)? {
        return Ok((found, found));
    }
    // BEGIN IMMEDIATE, then the version read again: another process may have upgraded meanwhile.
    loop {
        c.execute_batch("BEGIN IMMEDIATE")?;
        let now = version(c);
        let step = match now {
            Ok(v) if v >= VERSION => None,
            Ok(v) => Some(v),
            Err(e) => {
                c.execute_batch("ROLLBACK")?;
                return Err(e);
            }
        };
        let Some(v) = step else {
            c.execute_batch("COMMIT")?;
            return Ok((found, VERSION));
        };
        let sql = format!("{}; PRAGMA user_version = {};", render(v as usize, Dialect::Sqlite), v + 1);
        if let Err(e) = c.execute_batch(&sql).and_then(|()| c.execute_batch("COMMIT")) {
            if !c.is_autocommit() {
                c.execute_batch("ROLLBACK")?;
            }
            return Err(e.into());
        }
    }
}

/// Key of the advisory lock that serialises PostgreSQL upgrades ("ferric" in ASCII).
const PG_UPGRADE_LOCK: i64 = 0x6665_7272_6963;

/// The schema version a PostgreSQL database is at (0 without `schema_version`).
fn pg_version(s: &PgSession<'_>) -> Result<u32, DbError> {
    let rows = s.query("SELECT CAST(to_regclass('schema_version') AS text)", &[])?;
    let table: Option<&str> = match rows.first() {
        Some(r) => r.try_get(0)?,
        None => None,
    };
    if table.is_none() {
        return Ok(0);
    }
    let rows = s.query("SELECT MAX(version) FROM schema_version", &[])?;
    let v: Option<i64> = match rows.first() {
        Some(r) => r.try_get(0)?,
        None => None,
    };
    let v = v.unwrap_or(0);
    u32::try_from(v).map_err(|_| DbError::Corrupt(format!("schema version {v}")))
}

/// Upgrades (or checks) a PostgreSQL database's schema: the versions before and after. Several
/// processes may start at once: each migration takes an advisory lock and reads the version
/// again under it.
pub(super) fn migrate_pg(s: &PgSession<'_>, mode: SchemaMode, target: &str) -> Result<(u32, u32), DbError> {
    let found = pg_version(s)?;
    if !check(found, mode, target)? {
        return Ok((found, found));
    }
    loop {
        s.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({PG_UPGRADE_LOCK});
             CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);
             INSERT INTO schema_version (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version);"
        ))?;
        // The session is closed after the migrations, so a failure needs no ROLLBACK here.
        let v = pg_version(s)?;
        if v > VERSION {
            return Err(mismatch(v, target));
        }
        if v == VERSION {
            s.batch("COMMIT")?;
            return Ok((found, VERSION));
        }
        s.batch(&render(v as usize, Dialect::Postgres))?;
        s.execute("UPDATE schema_version SET version = ?1", &[Val::Int(i64::from(v) + 1)])?;
        s.batch("COMMIT")?;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TestStore, on_both_backends};
    use super::*;

    on_both_backends!(last_error_column_is_filled_from_existing_bodies);

    fn last_error_column_is_filled_from_existing_bodies(t: &TestStore) {
        t.set_up_at_version(
            3,
            "INSERT INTO nodes (uuid, driver, provision_state, created_at, body) VALUES
             ('a', 'ipmi', 'deploy failed', '2026-01-01T00:00:00Z', '{\"last_error\":\"boom\"}'),
             ('b', 'ipmi', 'available', '2026-01-01T00:00:00Z', '{\"last_error\":null}')",
        );
        let db = t.open();
        let got =
            db.read(|c| c.query_map("SELECT last_error FROM nodes ORDER BY uuid", &[], |r| r.opt_string(0))).unwrap();
        assert_eq!(got, vec![Some("boom".to_string()), None]);
        assert_eq!(super::super::upgrade(t.url()).unwrap(), (VERSION, VERSION));
    }

    #[test]
    fn postgres_reads_integer_as_bigint_and_both_spell_the_id_column() {
        let pg = render(0, Dialect::Postgres);
        assert!(pg.contains("id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY") && !pg.contains("INTEGER"));
        assert!(render(0, Dialect::Sqlite).contains("id INTEGER PRIMARY KEY"));
        assert!(render(3, Dialect::Postgres).contains("(CAST(body AS jsonb)->>'last_error')"));
        assert!(render(3, Dialect::Sqlite).contains("json_extract(body, '$.last_error')"));
        assert!(render(1, Dialect::Postgres).contains("EXECUTE FUNCTION") && !render(1, Dialect::Sqlite).contains('$'));
    }
}
