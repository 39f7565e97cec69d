//! What a node's hardware reported: the inspection inventory, the BIOS settings and the firmware
//! components (each replaced as a whole when read again).

use super::{Db, DbError, fk_or, from_json, to_json};
use ferric_types::models::{BiosSetting, FirmwareComponent, NodeId};
use rusqlite::{OptionalExtension, params};

impl Db {
    /// Stores (replacing) the inventory and plugin data an inspection produced.
    pub fn put_inventory(
        &self,
        node: NodeId,
        inventory: &serde_json::Value,
        plugin_data: &serde_json::Value,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), DbError> {
        let (i, p) = (to_json(inventory)?, to_json(plugin_data)?);
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO node_inventory (node_uuid, inventory, plugin_data, created_at) VALUES (?1,?2,?3,?4)
                 ON CONFLICT(node_uuid) DO UPDATE SET inventory = excluded.inventory,
                 plugin_data = excluded.plugin_data, created_at = excluded.created_at",
            )?
            .execute(params![node.to_string(), i, p, at.to_rfc3339()])
            .map_err(|e| fk_or(e, &node, |_| String::new()))?;
            Ok(())
        })
    }

    /// (inventory, plugin_data), if an inspection stored them.
    pub fn get_inventory(&self, node: NodeId) -> Result<Option<(serde_json::Value, serde_json::Value)>, DbError> {
        let row: Option<(String, String)> = self.read(|c| {
            Ok(c.prepare_cached("SELECT inventory, plugin_data FROM node_inventory WHERE node_uuid = ?1")?
                .query_row([node.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })?;
        row.map(|(i, p)| Ok((from_json(&i)?, from_json(&p)?))).transpose()
    }

    // ---- BIOS settings ----

    /// Replaces a node's cached BIOS settings.
    pub fn put_bios_settings(&self, node: NodeId, settings: &[BiosSetting]) -> Result<(), DbError> {
        let bodies: Vec<String> = settings.iter().map(to_json).collect::<Result<_, _>>()?;
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM bios_settings WHERE node_uuid = ?1")?.execute([node.to_string()])?;
            let mut st = tx.prepare_cached("INSERT INTO bios_settings (node_uuid, name, body) VALUES (?1,?2,?3)")?;
            for (s, b) in settings.iter().zip(bodies) {
                st.execute(params![node.to_string(), s.name, b]).map_err(|e| fk_or(e, &node, |_| String::new()))?;
            }
            Ok(())
        })
    }

    /// A node's BIOS settings, by name.
    pub fn list_bios_settings(&self, node: NodeId) -> Result<Vec<BiosSetting>, DbError> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT body FROM bios_settings WHERE node_uuid = ?1 ORDER BY name")?;
            let rows = st.query_map([node.to_string()], |r| r.get::<_, String>(0))?;
            rows.map(|b| from_json(&b?)).collect()
        })
    }

    pub fn get_bios_setting(&self, node: NodeId, name: &str) -> Result<Option<BiosSetting>, DbError> {
        let body: Option<String> = self.read(|c| {
            Ok(c.prepare_cached("SELECT body FROM bios_settings WHERE node_uuid = ?1 AND name = ?2")?
                .query_row([node.to_string(), name.to_string()], |r| r.get(0))
                .optional()?)
        })?;
        body.map(|b| from_json(&b)).transpose()
    }

    // ---- firmware components ----

    /// Replaces a node's cached firmware components.
    pub fn put_firmware_components(&self, node: NodeId, comps: &[FirmwareComponent]) -> Result<(), DbError> {
        let bodies: Vec<String> = comps.iter().map(to_json).collect::<Result<_, _>>()?;
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM firmware_components WHERE node_uuid = ?1")?.execute([node.to_string()])?;
            let mut st =
                tx.prepare_cached("INSERT INTO firmware_components (node_uuid, component, body) VALUES (?1,?2,?3)")?;
            for (c, b) in comps.iter().zip(bodies) {
                st.execute(params![node.to_string(), c.component, b])
                    .map_err(|e| fk_or(e, &node, |_| String::new()))?;
            }
            Ok(())
        })
    }

    pub fn list_firmware_components(&self, node: NodeId) -> Result<Vec<FirmwareComponent>, DbError> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT body FROM firmware_components WHERE node_uuid = ?1 ORDER BY component")?;
            let rows = st.query_map([node.to_string()], |r| r.get::<_, String>(0))?;
            rows.map(|b| from_json(&b?)).collect()
        })
    }
}
