//! Image records in Glance v2's JSON shape, so Glance-speaking tools read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Image file formats the store accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// Raw disk or partition bytes.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// A kernel (for partition images).
    Aki,
    /// A ramdisk (for partition images).
    Ari,
}

impl DiskFormat {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
            Self::Aki => "aki",
            Self::Ari => "ari",
        }
    }
}

/// Glance image statuses (the subset a single-store service reaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    /// Created, no data yet.
    Queued,
    /// Data upload in progress.
    Saving,
    /// Data stored and checksummed.
    Active,
}

/// Container formats Glance knows.
pub const CONTAINER_FORMATS: &[&str] = &["bare", "ami", "aki", "ari", "ova", "ovf", "docker", "compressed"];

/// An image as stored and as returned by `GET /v2/images/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// UUID.
    pub id: String,
    /// Free-form name.
    pub name: Option<String>,
    /// Lifecycle status.
    pub status: ImageStatus,
    /// File format.
    pub disk_format: Option<DiskFormat>,
    /// Container format (`bare` for plain images).
    pub container_format: Option<String>,
    /// Bytes stored.
    pub size: Option<u64>,
    /// Disk size the image expands to (qcow2 virtual size; the size for raw).
    pub virtual_size: Option<u64>,
    /// MD5 of the data (Glance's legacy checksum).
    pub checksum: Option<String>,
    /// Algorithm of `os_hash_value` (sha256; Glance's default is sha512).
    pub os_hash_algo: Option<String>,
    /// Hex digest of the data.
    pub os_hash_value: Option<String>,
    /// Always `public`: ferric has no tenants.
    pub visibility: String,
    /// Whether deletion is refused.
    pub protected: bool,
    /// Minimum disk (GiB).
    pub min_disk: u64,
    /// Minimum RAM (MiB).
    pub min_ram: u64,
    /// Tags.
    pub tags: Vec<String>,
    /// Kernel image of a partition image.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kernel_id: Option<String>,
    /// Ramdisk image of a partition image.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ramdisk_id: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Link to itself.
    #[serde(rename = "self")]
    pub self_link: String,
    /// Link to the data.
    pub file: String,
    /// Schema link.
    pub schema: String,
    /// Extra string properties.
    #[serde(flatten)]
    pub properties: BTreeMap<String, serde_json::Value>,
}

impl Image {
    /// Whether this is a partition image (it names a kernel and a ramdisk), which the deploy
    /// writes into a root partition rather than over the whole disk.
    pub fn is_partition_image(&self) -> bool {
        self.kernel_id.is_some() || self.ramdisk_id.is_some()
    }
}

/// Body of `POST /v2/images`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateImage {
    /// Optional caller-chosen UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// File format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<DiskFormat>,
    /// Container format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_format: Option<String>,
    /// Kernel image (partition images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_id: Option<String>,
    /// Ramdisk image (partition images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramdisk_id: Option<String>,
    /// Minimum disk (GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_disk: Option<u64>,
    /// Minimum RAM (MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ram: Option<u64>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Refuse deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// Accepted for compatibility; always public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// Extra properties (string values only, as Glance).
    #[serde(flatten)]
    pub properties: BTreeMap<String, serde_json::Value>,
}
