//! The disks the agent may write, their identity (for root device hints), and hint matching as
//! ironic-python-agent does it.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::blockdev::{BlockDevice, FileDisk};

const GIB: u64 = 1 << 30;

/// A disk the agent sees.
#[derive(Clone, Serialize)]
pub struct Disk {
    /// Device path (`/dev/sda`) or file path.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Model.
    pub model: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// World wide name.
    pub wwn: Option<String>,
    /// WWN with extension.
    pub wwn_with_extension: Option<String>,
    /// WWN vendor extension.
    pub wwn_vendor_extension: Option<String>,
    /// Spinning disk.
    pub rotational: bool,
    /// SCSI address `H:C:T:L`.
    pub hctl: Option<String>,
    /// `/dev/disk/by-path/...` name.
    pub by_path: Option<String>,
    /// Whether this is a regular file standing in for a disk (never a ramdisk's real disk).
    pub is_file: bool,
    /// The device.
    #[serde(skip)]
    pub device: Arc<dyn BlockDevice>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").field("name", &self.name).field("size", &self.size).finish()
    }
}

/// Errors opening disks.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The `--disk` argument is malformed.
    #[error("invalid disk spec {0:?}: {1}")]
    Spec(String, String),
    /// The device cannot be opened.
    #[error("cannot open disk {0}: {1}")]
    Open(String, std::io::Error),
    /// A block device outside a ramdisk without permission.
    #[error(
        "{0} is a block device; ferric-agent writes block devices only in a deploy ramdisk or with --allow-block-devices"
    )]
    BlockDeviceRefused(String),
}

fn sysfs(dev: &str, rel: &str) -> Option<String> {
    let name = Path::new(dev).file_name()?.to_str()?;
    let v = std::fs::read_to_string(format!("/sys/class/block/{name}/{rel}")).ok()?;
    let v = v.trim().to_string();
    (!v.is_empty()).then_some(v)
}

impl Disk {
    /// Opens `PATH[,key=value...]` where keys are `serial`, `wwn`, `model`, `vendor`,
    /// `rotational` (0/1), `hctl`: identity a file disk lacks, for testing root device hints.
    /// Block devices get their identity from sysfs and need `allow_block`.
    pub fn open_spec(spec: &str, allow_block: bool) -> Result<Self, DiskError> {
        let mut parts = spec.split(',');
        let path = parts.next().unwrap_or_default().to_string();
        if path.is_empty() {
            return Err(DiskError::Spec(spec.into(), "empty path".into()));
        }
        let fd = FileDisk::open(Path::new(&path)).map_err(|e| DiskError::Open(path.clone(), e))?;
        if fd.is_block_device() && !allow_block {
            return Err(DiskError::BlockDeviceRefused(path));
        }
        let is_file = !fd.is_block_device();
        let mut disk = Disk {
            size: fd.size(),
            model: if is_file { None } else { sysfs(&path, "device/model") },
            vendor: if is_file { None } else { sysfs(&path, "device/vendor") },
            serial: if is_file { None } else { sysfs(&path, "device/serial") },
            wwn: if is_file { None } else { sysfs(&path, "device/wwid").or_else(|| sysfs(&path, "wwid")) },
            wwn_with_extension: None,
            wwn_vendor_extension: None,
            rotational: if is_file { false } else { sysfs(&path, "queue/rotational").as_deref() == Some("1") },
            hctl: None,
            by_path: None,
            is_file,
            name: path,
            device: Arc::new(fd),
        };
        for kv in parts {
            let (k, v) =
                kv.split_once('=').ok_or_else(|| DiskError::Spec(spec.into(), format!("{kv:?} is not key=value")))?;
            let v = v.to_string();
            match k {
                "serial" => disk.serial = Some(v),
                "wwn" => disk.wwn = Some(v),
                "wwn_with_extension" => disk.wwn_with_extension = Some(v),
                "wwn_vendor_extension" => disk.wwn_vendor_extension = Some(v),
                "model" => disk.model = Some(v),
                "vendor" => disk.vendor = Some(v),
                "hctl" => disk.hctl = Some(v),
                "by_path" => disk.by_path = Some(v),
                "rotational" => disk.rotational = matches!(v.as_str(), "1" | "true"),
                other => {
                    return Err(DiskError::Spec(spec.into(), format!("unknown key {other:?}")));
                }
            }
        }
        Ok(disk)
    }

    /// A disk over any device (simulation: an in-memory disk).
    pub fn from_device(name: &str, device: Arc<dyn BlockDevice>) -> Self {
        Disk {
            name: name.into(),
            size: device.size(),
            model: None,
            vendor: None,
            serial: None,
            wwn: None,
            wwn_with_extension: None,
            wwn_vendor_extension: None,
            rotational: false,
            hctl: None,
            by_path: None,
            is_file: false,
            device,
        }
    }

    /// Whole disks of this machine from sysfs (ramdisk mode only), skipping ramdisks, loops,
    /// CD-ROMs and device-mapper.
    pub fn discover() -> Vec<Disk> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir("/sys/class/block") else {
            return out;
        };
        let mut names: Vec<String> =
            rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect();
        names.sort();
        for n in names {
            if ["ram", "loop", "sr", "dm-", "zram", "md", "fd"].iter().any(|p| n.starts_with(p)) {
                continue;
            }
            if Path::new(&format!("/sys/class/block/{n}/partition")).exists() {
                continue;
            }
            if let Ok(d) = Disk::open_spec(&format!("/dev/{n}"), true) {
                out.push(d);
            }
        }
        out
    }
}

/// Root device hints could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid root device hints: {0}")]
pub struct HintError(pub String);

fn int_matches(expr: &str, actual: u64) -> Result<bool, HintError> {
    let expr = expr.trim();
    let ops = ["==", "!=", ">=", "<=", ">", "<"];
    let (op, rest) = ops.iter().find_map(|op| expr.strip_prefix(op).map(|r| (*op, r.trim()))).unwrap_or(("==", expr));
    let want: u64 = rest.parse().map_err(|_| HintError(format!("{expr:?} is not an integer expression")))?;
    Ok(match op {
        "==" => actual == want,
        "!=" => actual != want,
        ">=" => actual >= want,
        "<=" => actual <= want,
        ">" => actual > want,
        _ => actual < want,
    })
}

fn str_matches(expr: &str, actual: Option<&str>) -> bool {
    let Some(actual) = actual else { return false };
    let actual = actual.trim().to_lowercase();
    let expr = expr.trim();
    if let Some(rest) = expr.strip_prefix("<in>") {
        return actual.contains(&rest.trim().to_lowercase());
    }
    if expr.starts_with("<or>") {
        return expr.split("<or>").map(|s| s.trim().to_lowercase()).any(|s| !s.is_empty() && s == actual);
    }
    for (op, neg) in [("s==", false), ("s!=", true)] {
        if let Some(rest) = expr.strip_prefix(op) {
            return (rest.trim().to_lowercase() == actual) != neg;
        }
    }
    expr.to_lowercase() == actual
}

fn normalize_name(n: &str) -> String {
    let n = n.trim();
    if n.starts_with('/') { n.to_string() } else { format!("/dev/{n}") }
}

/// Whether `disk` satisfies every hint (`size` in GiB with `==, !=, >=, <=, >, <`; strings
/// exact, `s==`, `s!=`, `<in>`, `<or>`; `name` with or without `/dev/`; `rotational` bool).
pub fn matches_hints(disk: &Disk, hints: &Map<String, Value>) -> Result<bool, HintError> {
    for (k, v) in hints {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => return Err(HintError(format!("{k}: unsupported value {other}"))),
        };
        let ok = match k.as_str() {
            "size" => int_matches(&s, disk.size / GIB)?,
            "name" => {
                if let Some(rest) = s.strip_prefix("s==") {
                    normalize_name(rest) == disk.name
                } else {
                    normalize_name(&s) == disk.name || s == disk.name
                }
            }
            "rotational" => {
                let want = matches!(s.to_lowercase().as_str(), "true" | "1" | "yes" | "on");
                want == disk.rotational
            }
            "serial" => str_matches(&s, disk.serial.as_deref()),
            "wwn" => str_matches(&s, disk.wwn.as_deref()),
            "wwn_with_extension" => str_matches(&s, disk.wwn_with_extension.as_deref()),
            "wwn_vendor_extension" => str_matches(&s, disk.wwn_vendor_extension.as_deref()),
            "model" => str_matches(&s, disk.model.as_deref()),
            "vendor" => str_matches(&s, disk.vendor.as_deref()),
            "hctl" => str_matches(&s, disk.hctl.as_deref()),
            "by_path" => str_matches(&s, disk.by_path.as_deref()),
            other => return Err(HintError(format!("unknown hint {other:?}"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Chooses the install disk: the first disk matching the hints, or without hints the smallest
/// disk of at least `min_size` bytes (IPA's default rule).
pub fn select_disk<'a>(
    disks: &'a [Disk],
    hints: Option<&Map<String, Value>>,
    min_size: u64,
) -> Result<&'a Disk, String> {
    match hints.filter(|h| !h.is_empty()) {
        Some(h) => {
            for d in disks {
                if matches_hints(d, h).map_err(|e| e.to_string())? {
                    return Ok(d);
                }
            }
            Err(format!("No suitable device was found for deployment using these hints {}", Value::Object(h.clone())))
        }
        None => disks.iter().filter(|d| d.size >= min_size).min_by_key(|d| d.size).ok_or_else(|| {
            format!("No suitable device was found for deployment - no disk of at least {min_size} bytes")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDisk;
    use serde_json::json;

    fn disk(name: &str, gib: u64, serial: &str) -> Disk {
        let mut d = Disk::from_device(name, Arc::new(MemDisk::new(0)));
        d.size = gib * GIB;
        d.serial = Some(serial.into());
        d.wwn = Some(format!("0x5000{serial}"));
        d
    }

    #[test]
    fn hints_select_disks() {
        let disks = vec![disk("/dev/sda", 100, "AAA"), disk("/dev/sdb", 20, "BBB"), disk("/dev/sdc", 2, "CCC")];
        let h = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(select_disk(&disks, None, 4 * GIB).unwrap().name, "/dev/sdb");
        assert_eq!(select_disk(&disks, Some(&h(json!({"serial": "aaa"}))), 0).unwrap().name, "/dev/sda");
        assert_eq!(select_disk(&disks, Some(&h(json!({"size": ">= 50"}))), 0).unwrap().name, "/dev/sda");
        assert_eq!(select_disk(&disks, Some(&h(json!({"size": 2}))), 0).unwrap().name, "/dev/sdc");
        assert_eq!(select_disk(&disks, Some(&h(json!({"name": "sdb"}))), 0).unwrap().name, "/dev/sdb");
        assert_eq!(select_disk(&disks, Some(&h(json!({"wwn": "<in> CCC"}))), 0).unwrap().name, "/dev/sdc");
        assert_eq!(select_disk(&disks, Some(&h(json!({"serial": "<or> ZZZ <or> BBB"}))), 0).unwrap().name, "/dev/sdb");
        assert!(select_disk(&disks, Some(&h(json!({"serial": "nope"}))), 0).is_err());
        assert!(select_disk(&disks, Some(&h(json!({"colour": "red"}))), 0).is_err());
        assert!(select_disk(&disks, Some(&h(json!({"size": "big"}))), 0).is_err());
    }
}
