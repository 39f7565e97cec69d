//! The audit log (`--audit-log FILE`, `[audit] file`): one JSON object per line for every write
//! to the API (refused ones included) and every provision-state change a conductor applies.
//!
//! A record carries who, what and the outcome, never a secret: no request bodies, no headers,
//! no query strings (temporary URLs carry their signature there). Lines are appended with one
//! `write` each on an unbuffered file, so every line is on disk (in the page cache) when the
//! request is answered; `SIGHUP` reopens the file for logrotate.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Audit settings (`[audit]`).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// Where audit records are appended; none are written when unset.
    pub file: Option<PathBuf>,
}

/// One audit record. Fields that do not apply are left out of the line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, from the service's clock.
    pub time: String,
    /// `api` (a write request) or `provision` (a provision-state change).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The `x-openstack-request-id` the API answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The request path, without its query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The node's UUID, when the record is about one and it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The state machine event (`deploy`, `fail`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The conductor that applied a provision-state change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conductor: Option<String>,
    /// The HTTP status answered (API), or `ok` / `error` (provision changes).
    pub result: serde_json::Value,
}

/// An open audit log, shared by the API and the conductor of a process.
pub struct AuditLog {
    path: PathBuf,
    file: parking_lot::Mutex<File>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("path", &self.path).finish()
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Who did what to which node is for operators only.
    OpenOptions::new().append(true).create(true).mode(0o600).open(path)
}

impl AuditLog {
    /// Opens (creating, mode 0600) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Arc<AuditLog>> {
        let file = open_append(path)?;
        Ok(Arc::new(AuditLog { path: path.to_owned(), file: parking_lot::Mutex::new(file) }))
    }

    /// Appends `rec` as one line. A failed write is logged, not returned: auditing never fails
    /// the request it records.
    pub fn write(&self, rec: &AuditRecord) {
        let mut line = match serde_json::to_vec(rec) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "audit record not serialisable");
                return;
            }
        };
        line.push(b'\n');
        if let Err(e) = self.file.lock().write_all(&line) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }

    /// Reopens the file at its path (after logrotate moved it away); on failure the old file
    /// stays in use.
    pub fn reopen(&self) -> std::io::Result<()> {
        let f = open_append(&self.path)?;
        *self.file.lock() = f;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// RFC 3339 (seconds and milliseconds, `Z`) for a record's time.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        let log = AuditLog::open(&p).unwrap();
        let rec = AuditRecord { time: "t".into(), kind: "api", result: 201.into(), ..Default::default() };
        log.write(&rec);
        std::fs::rename(&p, dir.path().join("audit.log.1")).unwrap();
        log.write(&rec);
        log.reopen().unwrap();
        log.write(&rec);
        let old = std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap();
        let new = std::fs::read_to_string(&p).unwrap();
        assert_eq!(old.lines().count(), 2);
        assert_eq!(new.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(new.trim()).unwrap();
        assert_eq!(v, serde_json::json!({"time": "t", "kind": "api", "result": 201}));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
