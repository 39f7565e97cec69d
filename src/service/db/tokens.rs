//! API bearer tokens (the `token` auth strategy): who a token stands for, when it expires or was
//! revoked, and the SHA-256 of its secret. The secret itself is never stored.

use super::sql::{Row, vals};
use super::{Db, DbError, unique_violation};
use chrono::{DateTime, Utc};

/// One issued token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// What `ferric token list` shows and `ferric token revoke` takes.
    pub id: String,
    pub user: String,
    /// `admin`, `member` or `reader` (checked by the API when the token is used).
    pub role: String,
    pub project: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "uuid, username, role, project, created_at, expires_at, revoked_at";

fn time(s: &str) -> Result<DateTime<Utc>, DbError> {
    DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).map_err(|_| DbError::Corrupt(format!("time {s}")))
}

fn token_row(r: &Row<'_>) -> Result<ApiToken, DbError> {
    Ok(ApiToken {
        id: r.string(0)?,
        user: r.string(1)?,
        role: r.string(2)?,
        project: r.opt_string(3)?,
        created_at: time(r.str(4)?)?,
        expires_at: r.opt_str(5)?.map(time).transpose()?,
        revoked_at: r.opt_str(6)?.map(time).transpose()?,
    })
}

impl Db {
    /// Stores a new token under the hash of its secret.
    pub fn insert_api_token(&self, t: &ApiToken, hash: &str) -> Result<(), DbError> {
        let (created, expires) = (t.created_at.to_rfc3339(), t.expires_at.map(|e| e.to_rfc3339()));
        self.write(|tx| {
            tx.execute(
                "INSERT INTO api_tokens (uuid, token_hash, username, role, project, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &vals![&t.id, hash, &t.user, &t.role, &t.project, &created, &expires],
            )
            .map_err(|e| unique_violation(e, |_| format!("Token {} already exists.", t.id)))?;
            Ok(())
        })
    }

    /// The token whose secret hashes to `hash`, expired and revoked ones included.
    pub fn find_api_token(&self, hash: &str) -> Result<Option<ApiToken>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = ?1");
        self.read(|c| c.query_opt(&sql, &vals![hash], token_row))
    }

    /// Every token, oldest first.
    pub fn list_api_tokens(&self) -> Result<Vec<ApiToken>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY id");
        self.read(|c| c.query_map(&sql, &[], token_row))
    }

    /// Marks the token `id` revoked at `at` (kept for the record; an already revoked token keeps
    /// its first revocation time).
    pub fn revoke_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), DbError> {
        let at = at.to_rfc3339();
        self.write(|tx| {
            if tx.query_opt("SELECT 1 FROM api_tokens WHERE uuid = ?1", &vals![id], |_| Ok(()))?.is_none() {
                return Err(DbError::NotFound { kind: "Token", ident: id.to_string() });
            }
            tx.execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE uuid = ?1 AND revoked_at IS NULL",
                &vals![id, &at],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TestStore, on_both_backends};
    use super::*;

    on_both_backends!(tokens_are_stored_found_by_hash_listed_and_revoked);

    fn tokens_are_stored_found_by_hash_listed_and_revoked(t: &TestStore) {
        let db = t.open();
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let tok = ApiToken {
            id: "t1".into(),
            user: "alice".into(),
            role: "admin".into(),
            project: Some("p".into()),
            created_at: now,
            expires_at: Some(now + chrono::Duration::hours(8)),
            revoked_at: None,
        };
        db.insert_api_token(&tok, "abc").unwrap();
        let other = ApiToken { id: "t2".into(), project: None, expires_at: None, ..tok.clone() };
        db.insert_api_token(&other, "def").unwrap();
        assert!(matches!(db.insert_api_token(&other, "ghi"), Err(DbError::Duplicate(_))));
        assert_eq!(db.find_api_token("abc").unwrap(), Some(tok.clone()));
        assert_eq!(db.find_api_token("nope").unwrap(), None);
        assert_eq!(db.list_api_tokens().unwrap(), vec![tok.clone(), other.clone()]);
        db.revoke_api_token("t1", now).unwrap();
        db.revoke_api_token("t1", now + chrono::Duration::hours(1)).unwrap();
        assert_eq!(db.find_api_token("abc").unwrap().unwrap().revoked_at, Some(now));
        assert!(matches!(db.revoke_api_token("t9", now), Err(DbError::NotFound { .. })));
    }
}
