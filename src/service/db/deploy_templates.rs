//! Deploy templates (named deploy steps matched against an instance's traits).

use super::sql::vals;
use super::{Db, DbError, Page, from_json, to_json, unique_violation};
use ferric_types::models::{DeployTemplate, DeployTemplateId};

impl Db {
    pub fn create_deploy_template(&self, t: &DeployTemplate) -> Result<(), DbError> {
        let body = to_json(t)?;
        let uuid = t.uuid.to_string();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO deploy_templates (uuid, name, body) VALUES (?1,?2,?3)",
                &vals![&uuid, &t.name, &body],
            )
            .map_err(|e| unique_violation(e, |txt| template_duplicate(t, txt)))?;
            Ok(())
        })
    }

    pub fn update_deploy_template(&self, t: &DeployTemplate) -> Result<(), DbError> {
        let body = to_json(t)?;
        let uuid = t.uuid.to_string();
        self.write(|tx| {
            let n = tx
                .execute("UPDATE deploy_templates SET name=?2, body=?3 WHERE uuid=?1", &vals![&uuid, &t.name, &body])
                .map_err(|e| unique_violation(e, |txt| template_duplicate(t, txt)))?;
            if n == 0 {
                return Err(DbError::NotFound { kind: "Deploy template", ident: t.uuid.to_string() });
            }
            Ok(())
        })
    }

    /// By UUID, or by name.
    pub fn get_deploy_template(&self, ident: &str) -> Result<DeployTemplate, DbError> {
        let col = if ident.parse::<DeployTemplateId>().is_ok() { "uuid" } else { "name" };
        match self.get_body("deploy_templates", col, ident)? {
            Some(b) => from_json(&b),
            None => Err(DbError::NotFound { kind: "Deploy template", ident: ident.to_string() }),
        }
    }

    pub fn destroy_deploy_template(&self, id: DeployTemplateId) -> Result<(), DbError> {
        self.delete_row("deploy_templates", &id.to_string(), "Deploy template")
    }

    pub fn list_deploy_templates(&self, page: &Page) -> Result<Vec<DeployTemplate>, DbError> {
        self.list_bodies("deploy_templates", &["id", "uuid", "name"], Vec::new(), Vec::new(), page)?
            .iter()
            .map(|b| from_json(b))
            .collect()
    }
}

fn template_duplicate(t: &DeployTemplate, text: &str) -> String {
    if text.contains("deploy_templates.name") {
        format!("A deploy template with name {} already exists.", t.name)
    } else {
        format!("A deploy template with UUID {} already exists.", t.uuid)
    }
}
