//! Allocations, and binding an allocation to its node.

use super::nodes::{LockUse, update_node_tx};
use super::paging::node_cond;
use super::sql::{JsonVal, PerDialect, Val, vals};
use super::{Db, DbError, Page, from_json, to_json, unique_violation};
use ferric_types::models::{Allocation, AllocationId, Node, NodeId};

impl Db {
    pub fn create_allocation(&self, a: &Allocation) -> Result<(), DbError> {
        let body = to_json(a)?;
        let uuid = a.uuid.to_string();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO allocations (uuid, name, node_uuid, state, resource_class, owner, body)
                 VALUES (?1,?2,NULL,?3,?4,?5,?6)",
                &vals![&uuid, &a.name, &a.state, &a.resource_class, &a.owner, &body],
            )
            .map_err(|e| unique_violation(e, |t| allocation_duplicate(a, t)))?;
            Ok(())
        })
    }

    /// Saves an allocation's own fields (name, extra, state, last_error); its node link changes
    /// only through [`Db::allocate_node`] and [`Db::destroy_allocation`].
    pub fn update_allocation(&self, a: &Allocation) -> Result<(), DbError> {
        let body = to_json(a)?;
        let uuid = a.uuid.to_string();
        static SQL: PerDialect = PerDialect::new();
        let sql = SQL.get(self.dialect(), |d| {
            let body = d.json_set("?6", &[("node_uuid", JsonVal::Field { col: "body", key: "node_uuid" })]);
            format!("UPDATE allocations SET name=?2, state=?3, resource_class=?4, owner=?5, body={body} WHERE uuid=?1")
        });
        self.write(|tx| {
            let n = tx
                .execute(sql, &vals![&uuid, &a.name, &a.state, &a.resource_class, &a.owner, &body])
                .map_err(|e| unique_violation(e, |t| allocation_duplicate(a, t)))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Allocation", ident: a.uuid.to_string() });
            }
            Ok(())
        })
    }

    /// Changes only an allocation's name and extra (its PATCH), leaving state and node alone
    /// however the allocation process moves them meanwhile.
    pub fn patch_allocation(
        &self,
        id: AllocationId,
        name: Option<&str>,
        extra: &ferric_types::models::JsonMap,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), DbError> {
        let name_json = to_json(&name)?;
        let extra_json = to_json(extra)?;
        let at_json = to_json(&at)?;
        let uuid = id.to_string();
        static SQL: PerDialect = PerDialect::new();
        let sql = SQL.get(self.dialect(), |d| {
            let body = d.json_set(
                "body",
                &[("name", JsonVal::Json("?3")), ("extra", JsonVal::Json("?4")), ("updated_at", JsonVal::Json("?5"))],
            );
            format!("UPDATE allocations SET name = ?2, body = {body} WHERE uuid = ?1")
        });
        self.write(|tx| {
            let n = tx.execute(sql, &vals![&uuid, name, &name_json, &extra_json, &at_json]).map_err(|e| {
                unique_violation(e, |_| format!("An allocation with name {} already exists.", name.unwrap_or("")))
            })?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Allocation", ident: id.to_string() });
            }
            Ok(())
        })
    }

    /// By UUID, or by name.
    pub fn get_allocation(&self, ident: &str) -> Result<Allocation, DbError> {
        let col = if ident.parse::<AllocationId>().is_ok() { "uuid" } else { "name" };
        match self.get_body("allocations", col, ident)? {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Allocation", ident: ident.to_string() }),
        }
    }

    pub fn list_allocations(&self, f: &AllocationFilter, page: &Page) -> Result<Vec<Allocation>, DbError> {
        let (mut conds, mut args) = node_cond(f.node);
        for (col, v) in [("resource_class", &f.resource_class), ("state", &f.state), ("owner", &f.owner)] {
            if let Some(v) = v {
                args.push(Val::from(v.clone()));
                conds.push(format!("{col} = ?{}", args.len()));
            }
        }
        self.list_bodies(
            "allocations",
            &["id", "uuid", "name", "node_uuid", "state", "resource_class", "owner"],
            conds,
            args,
            page,
        )?
        .iter()
        .map(|b| from_json(b))
        .collect()
    }

    /// Deletes an allocation and, in the same transaction, frees its node's instance.
    pub fn destroy_allocation(&self, id: AllocationId) -> Result<(), DbError> {
        let uuid = id.to_string();
        static SQL: PerDialect = PerDialect::new();
        let free_node = SQL.get(self.dialect(), |d| {
            let body = d.json_set(
                "body",
                &[("instance_uuid", JsonVal::Json("'null'")), ("allocation_uuid", JsonVal::Json("'null'"))],
            );
            format!(
                "UPDATE nodes SET instance_uuid = NULL, version = version + 1, body = {body}
                 WHERE uuid = ?1 AND instance_uuid = ?2"
            )
        });
        self.write(|tx| {
            let node: Option<Option<String>> =
                tx.query_opt("SELECT node_uuid FROM allocations WHERE uuid = ?1", &vals![&uuid], |r| r.opt_string(0))?;
            let Some(node) = node else {
                return Err(DbError::NotFound { kind: "Allocation", ident: uuid.clone() });
            };
            tx.execute("DELETE FROM allocations WHERE uuid = ?1", &vals![&uuid])?;
            if let Some(n) = node {
                tx.execute(free_node, &vals![&n, &uuid])?;
            }
            Ok(())
        })
    }

    /// Binds `a` (already `active`, with `node_uuid` set) to `node` and writes the node (with its
    /// `instance_uuid` set to the allocation's UUID) in one transaction. Fails with
    /// `Duplicate` when the node is associated with another instance or allocation, or the
    /// allocation's UUID is some other node's instance: a node is allocated once.
    pub fn allocate_node(&self, a: &Allocation, node: &Node) -> Result<(), DbError> {
        let abody = to_json(a)?;
        let nbody = to_json(node)?;
        let alloc = a.uuid.to_string();
        let node_id = node.uuid.to_string();
        let version = self.write(|tx| {
            let current: Option<Option<String>> =
                tx.query_opt("SELECT instance_uuid FROM nodes WHERE uuid = ?1", &vals![&node_id], |r| r.opt_string(0))?;
            let Some(current) = current else {
                return Err(DbError::NotFound { kind: "Node", ident: node.uuid.to_string() });
            };
            if let Some(inst) = current.filter(|i| *i != alloc) {
                return Err(DbError::Duplicate(format!("Node {} is associated with instance {inst}.", node.uuid)));
            }
            let n = tx
                .execute(
                    "UPDATE allocations SET node_uuid = ?2, state = ?3, body = ?4 WHERE uuid = ?1",
                    &vals![&alloc, &node_id, &a.state, &abody],
                )
                .map_err(|e| {
                    unique_violation(e, |_| {
                        format!("Node {} is associated with instance {}.", node.uuid, alloc)
                    })
                })?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Allocation", ident: alloc.clone() });
            }
            update_node_tx(tx, node, &nbody, LockUse::Ignore, None).map_err(|e| match e {
                DbError::Duplicate(_) => DbError::Duplicate(format!(
                    "Instance {alloc} is already associated with a node, it cannot be associated with this other node {}",
                    node.uuid
                )),
                other => other,
            })
        })?;
        self.cache_node(version, node);
        Ok(())
    }
}

/// Filters for allocation listings.
#[derive(Debug, Clone, Default)]
pub struct AllocationFilter {
    pub node: Option<NodeId>,
    pub resource_class: Option<String>,
    pub state: Option<String>,
    pub owner: Option<String>,
}

fn allocation_duplicate(a: &Allocation, text: &str) -> String {
    if text.contains("allocations.name") {
        format!("An allocation with name {} already exists.", a.name.as_deref().unwrap_or(""))
    } else {
        format!("An allocation with UUID {} already exists.", a.uuid)
    }
}
