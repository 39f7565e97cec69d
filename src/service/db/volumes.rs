//! Volume connectors and targets (a node's links to remote storage).

use super::paging::node_cond;
use super::sql::vals;
use super::{Db, DbError, Page, fk_or, from_json, to_json};
use ferric_types::models::{NodeId, VolumeConnector, VolumeConnectorId, VolumeTarget, VolumeTargetId};

impl Db {
    pub fn create_volume_connector(&self, v: &VolumeConnector) -> Result<(), DbError> {
        let body = to_json(v)?;
        let (uuid, node) = (v.uuid.to_string(), v.node_uuid.to_string());
        self.write(|tx| {
            tx.execute(
                "INSERT INTO volume_connectors (uuid, node_uuid, type, connector_id, body) VALUES (?1,?2,?3,?4,?5)",
                &vals![&uuid, &node, &v.connector_type, &v.connector_id, &body],
            )
            .map_err(|e| fk_or(e, &v.node_uuid, |t| connector_duplicate(v, t)))?;
            Ok(())
        })
    }

    pub fn update_volume_connector(&self, v: &VolumeConnector) -> Result<(), DbError> {
        let body = to_json(v)?;
        let (uuid, node) = (v.uuid.to_string(), v.node_uuid.to_string());
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE volume_connectors SET node_uuid=?2, type=?3, connector_id=?4, body=?5 WHERE uuid=?1",
                    &vals![&uuid, &node, &v.connector_type, &v.connector_id, &body],
                )
                .map_err(|e| fk_or(e, &v.node_uuid, |t| connector_duplicate(v, t)))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Volume connector", ident: v.uuid.to_string() });
            }
            Ok(())
        })
    }

    pub fn get_volume_connector(&self, id: VolumeConnectorId) -> Result<VolumeConnector, DbError> {
        match self.get_body("volume_connectors", "uuid", &id.to_string())? {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Volume connector", ident: id.to_string() }),
        }
    }

    pub fn destroy_volume_connector(&self, id: VolumeConnectorId) -> Result<(), DbError> {
        self.delete_row("volume_connectors", &id.to_string(), "Volume connector")
    }

    pub fn list_volume_connectors(&self, node: Option<NodeId>, page: &Page) -> Result<Vec<VolumeConnector>, DbError> {
        let (conds, args) = node_cond(node);
        self.list_bodies("volume_connectors", &["id", "uuid", "node_uuid", "type", "connector_id"], conds, args, page)?
            .iter()
            .map(|b| from_json(b))
            .collect()
    }

    // ---- volume targets ----

    pub fn create_volume_target(&self, v: &VolumeTarget) -> Result<(), DbError> {
        let body = to_json(v)?;
        let (uuid, node) = (v.uuid.to_string(), v.node_uuid.to_string());
        self.write(|tx| {
            tx.execute(
                "INSERT INTO volume_targets (uuid, node_uuid, volume_type, volume_id, boot_index, body)
                 VALUES (?1,?2,?3,?4,?5,?6)",
                &vals![&uuid, &node, &v.volume_type, &v.volume_id, v.boot_index, &body],
            )
            .map_err(|e| fk_or(e, &v.node_uuid, |t| target_duplicate(v, t)))?;
            Ok(())
        })
    }

    pub fn update_volume_target(&self, v: &VolumeTarget) -> Result<(), DbError> {
        let body = to_json(v)?;
        let (uuid, node) = (v.uuid.to_string(), v.node_uuid.to_string());
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE volume_targets SET node_uuid=?2, volume_type=?3, volume_id=?4, boot_index=?5, body=?6
                     WHERE uuid=?1",
                    &vals![&uuid, &node, &v.volume_type, &v.volume_id, v.boot_index, &body],
                )
                .map_err(|e| fk_or(e, &v.node_uuid, |t| target_duplicate(v, t)))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Volume target", ident: v.uuid.to_string() });
            }
            Ok(())
        })
    }

    pub fn get_volume_target(&self, id: VolumeTargetId) -> Result<VolumeTarget, DbError> {
        match self.get_body("volume_targets", "uuid", &id.to_string())? {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Volume target", ident: id.to_string() }),
        }
    }

    pub fn destroy_volume_target(&self, id: VolumeTargetId) -> Result<(), DbError> {
        self.delete_row("volume_targets", &id.to_string(), "Volume target")
    }

    pub fn list_volume_targets(&self, node: Option<NodeId>, page: &Page) -> Result<Vec<VolumeTarget>, DbError> {
        let (conds, args) = node_cond(node);
        self.list_bodies(
            "volume_targets",
            &["id", "uuid", "node_uuid", "volume_type", "volume_id", "boot_index"],
            conds,
            args,
            page,
        )?
        .iter()
        .map(|b| from_json(b))
        .collect()
    }
}

fn connector_duplicate(v: &VolumeConnector, text: &str) -> String {
    if text.contains("volume_connectors.type") || text.contains("connector_id") {
        format!("A volume connector with type {} and connector ID {} already exists.", v.connector_type, v.connector_id)
    } else {
        format!("A volume connector with UUID {} already exists.", v.uuid)
    }
}

fn target_duplicate(v: &VolumeTarget, text: &str) -> String {
    if text.contains("boot_index") {
        format!("A volume target with boot index '{}' for the same node already exists.", v.boot_index)
    } else {
        format!("A volume target with UUID {} already exists.", v.uuid)
    }
}
