//! Who a request comes from: set by the authentication layer as a request extension, read by
//! policy checks, the audit log and metrics. Shared so those parts agree on one shape.

use serde::{Deserialize, Serialize};

/// The roles of ferric's policy (Ironic's admin, member and reader personas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthRole {
    /// Everything.
    Admin,
    /// Power, provisioning, maintenance and reading its own project's nodes; no deletions;
    /// secrets masked.
    Member,
    /// GET only.
    Reader,
}

impl AuthRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthRole::Admin => "admin",
            AuthRole::Member => "member",
            AuthRole::Reader => "reader",
        }
    }
}

impl std::str::FromStr for AuthRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(AuthRole::Admin),
            "member" => Ok(AuthRole::Member),
            "reader" => Ok(AuthRole::Reader),
            other => Err(format!("unknown role {other:?} (admin, member or reader)")),
        }
    }
}

/// The caller of one API request. Under `noauth` every request is an anonymous admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub role: AuthRole,
    /// The project owner/lessee scoping compares against (members; readers when set).
    pub project: Option<String>,
}

impl Identity {
    /// The caller under `noauth`.
    pub fn anonymous_admin() -> Identity {
        Identity { user: "anonymous".into(), role: AuthRole::Admin, project: None }
    }
}
