//! What a node's hardware reported: the inspection inventory, the BIOS settings and the firmware
//! components (each replaced as a whole when read again).

use super::sql::vals;
use super::{Db, DbError, fk_or, from_json, to_json};
use ferric_types::models::{BiosSetting, FirmwareComponent, NodeId};

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
        let (uuid, at) = (node.to_string(), at.to_rfc3339());
        self.write(|tx| {
            tx.execute(
                "INSERT INTO node_inventory (node_uuid, inventory, plugin_data, created_at) VALUES (?1,?2,?3,?4)
                 ON CONFLICT(node_uuid) DO UPDATE SET inventory = excluded.inventory,
                 plugin_data = excluded.plugin_data, created_at = excluded.created_at",
                &vals![&uuid, &i, &p, &at],
            )
            .map_err(|e| fk_or(e, &node, |_| String::new()))?;
            Ok(())
        })
    }

    /// (inventory, plugin_data), if an inspection stored them.
    pub fn get_inventory(&self, node: NodeId) -> Result<Option<(serde_json::Value, serde_json::Value)>, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT inventory, plugin_data FROM node_inventory WHERE node_uuid = ?1",
                &vals![node.to_string()],
                |r| Ok((from_json(r.str(0)?)?, from_json(r.str(1)?)?)),
            )
        })
    }

    // ---- BIOS settings ----

    /// Replaces a node's cached BIOS settings.
    pub fn put_bios_settings(&self, node: NodeId, settings: &[BiosSetting]) -> Result<(), DbError> {
        let bodies: Vec<String> = settings.iter().map(to_json).collect::<Result<_, _>>()?;
        let uuid = node.to_string();
        self.write(|tx| {
            tx.execute("DELETE FROM bios_settings WHERE node_uuid = ?1", &vals![&uuid])?;
            for (s, b) in settings.iter().zip(&bodies) {
                tx.execute(
                    "INSERT INTO bios_settings (node_uuid, name, body) VALUES (?1,?2,?3)",
                    &vals![&uuid, &s.name, b],
                )
                .map_err(|e| fk_or(e, &node, |_| String::new()))?;
            }
            Ok(())
        })
    }

    /// A node's BIOS settings, by name.
    pub fn list_bios_settings(&self, node: NodeId) -> Result<Vec<BiosSetting>, DbError> {
        self.read(|c| {
            c.query_map(
                "SELECT body FROM bios_settings WHERE node_uuid = ?1 ORDER BY name",
                &vals![node.to_string()],
                |r| from_json(r.str(0)?),
            )
        })
    }

    pub fn get_bios_setting(&self, node: NodeId, name: &str) -> Result<Option<BiosSetting>, DbError> {
        self.read(|c| {
            c.query_opt(
                "SELECT body FROM bios_settings WHERE node_uuid = ?1 AND name = ?2",
                &vals![node.to_string(), name],
                |r| from_json(r.str(0)?),
            )
        })
    }

    // ---- firmware components ----

    /// Replaces a node's cached firmware components.
    pub fn put_firmware_components(&self, node: NodeId, comps: &[FirmwareComponent]) -> Result<(), DbError> {
        let bodies: Vec<String> = comps.iter().map(to_json).collect::<Result<_, _>>()?;
        let uuid = node.to_string();
        self.write(|tx| {
            tx.execute("DELETE FROM firmware_components WHERE node_uuid = ?1", &vals![&uuid])?;
            for (c, b) in comps.iter().zip(&bodies) {
                tx.execute(
                    "INSERT INTO firmware_components (node_uuid, component, body) VALUES (?1,?2,?3)",
                    &vals![&uuid, &c.component, b],
                )
                .map_err(|e| fk_or(e, &node, |_| String::new()))?;
            }
            Ok(())
        })
    }

    pub fn list_firmware_components(&self, node: NodeId) -> Result<Vec<FirmwareComponent>, DbError> {
        self.read(|c| {
            c.query_map(
                "SELECT body FROM firmware_components WHERE node_uuid = ?1 ORDER BY component",
                &vals![node.to_string()],
                |r| from_json(r.str(0)?),
            )
        })
    }
}
