//! The image writer: an image streamed from its URL to a disk, with its checksum checked on the
//! way, converted from qcow2 when needed, laid into a partition table for partition images, and
//! followed by the config drive. The agent runs it on a node's disk (`standby.prepare_image`);
//! the conductor runs the same code over an iSCSI LUN (the `iscsi` deploy), so both flows write
//! images with one implementation.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::blockdev::{BlockDevice, Slice};
use crate::disks::Disk;
use crate::download::{self, DownloadPlan, Expected, HashAlgo, Qcow2Sink, RawSink, Sink};
use crate::partition::{self, CONFIGDRIVE_MB, DiskLabel, LayoutRequest, PartRole};
use ferric_types::agent::{CommandError, ImageInfo};
use ferric_types::http::{HttpClient, HttpRequest, send_with_timeout};

/// Tunables of image download and writing.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Retries of an image download after the first attempt (4xx are not retried).
    pub download_retries: u32,
    /// Pause between download attempts.
    pub download_retry_interval: Duration,
    /// Longest silence on a download connection.
    pub download_read_timeout: Duration,
    /// Deadline for the response head of a download.
    pub download_connect_timeout: Duration,
    /// Size of the buffers hashed and written (bytes). Small enough that a buffer is still in
    /// the CPU cache when it is hashed and copied to the disk (1 GiB raw image on 2 cores: 256 KiB
    /// took ~20% less CPU than 4 MiB).
    pub write_chunk: usize,
    /// Largest config drive accepted (bytes, after decoding).
    pub max_configdrive: usize,
    /// Memory for qcow2 clusters that arrive before their metadata.
    pub qcow2_pending_limit: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            download_retries: 3,
            download_retry_interval: Duration::from_secs(5),
            download_read_timeout: Duration::from_secs(60),
            download_connect_timeout: Duration::from_secs(60),
            write_chunk: 256 << 10,
            max_configdrive: 64 << 20,
            qcow2_pending_limit: 256 << 20,
        }
    }
}

/// What writes images: the HTTP client downloads come over, the settings, and whether the
/// conductor allows MD5 checksums.
pub struct ImageWriter<'a> {
    pub http: &'a dyn HttpClient,
    pub settings: &'a WriterSettings,
    pub md5_allowed: bool,
}

/// A written image: IPA's result message and the partition UUIDs
/// (`standby.get_partition_uuids`).
#[derive(Debug, Clone)]
pub struct Written {
    pub message: String,
    pub partition_uuids: Map<String, Value>,
}

/// Linux name of partition `n` of `disk` (`/dev/sda1`, `/dev/nvme0n1p1`).
pub fn partition_path(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) { format!("{disk}p{n}") } else { format!("{disk}{n}") }
}

/// Checks `image_info` before anything runs (IPA's `_validate_image_info`).
pub fn validate_image_info(info: &ImageInfo, md5_allowed: bool) -> Result<(), CommandError> {
    if info.urls.is_empty() {
        return Err(CommandError::invalid_params("Image 'urls' must be a list with at least one element."));
    }
    let has_os_hash = match (&info.os_hash_algo, &info.os_hash_value) {
        (Some(a), Some(v)) if !a.is_empty() && !v.is_empty() => {
            if HashAlgo::from_name(a).is_none() {
                return Err(CommandError::invalid_params(format!("Unsupported os_hash_algo {a:?}")));
            }
            true
        }
        (None, None) => false,
        _ => {
            return Err(CommandError::invalid_params(
                "Image 'os_hash_algo' and 'os_hash_value' must both be non-empty strings.",
            ));
        }
    };
    let has_checksum = match &info.checksum {
        Some(c) if c.is_empty() => {
            return Err(CommandError::invalid_params("Image 'checksum' must be a non-empty string."));
        }
        Some(c) => c.starts_with("http://") || c.starts_with("https://") || c.len() > 32 || md5_allowed,
        None => false,
    };
    if !has_os_hash && !has_checksum {
        return Err(CommandError::invalid_params(
            "Image checksum is not available, either the 'checksum' field or the 'os_hash_algo' and \
             'os_hash_value' fields pair must be set for image verification.",
        ));
    }
    if info.is_partition_image() && info.root_mb.is_none() && info.root_gb.is_none() {
        return Err(CommandError::invalid_params("Partition images need 'root_mb' (or 'root_gb')."));
    }
    if info.preserve_ephemeral == Some(true) {
        return Err(CommandError::invalid_params("preserve_ephemeral is not supported by ferric-agent."));
    }
    match info.disk_format.as_deref() {
        None | Some("raw") | Some("qcow2") => Ok(()),
        Some(other) => {
            Err(CommandError::invalid_params(format!("disk_format {other:?} is not supported (raw or qcow2)")))
        }
    }
}

impl ImageWriter<'_> {
    async fn expected_hash(&self, info: &ImageInfo) -> Result<Expected, CommandError> {
        let t = self.settings.download_connect_timeout;
        let url0 = info.urls.first().cloned().unwrap_or_default();
        let (algo, value) = if let (Some(a), Some(v)) = (&info.os_hash_algo, &info.os_hash_value) {
            let algo = HashAlgo::from_name(a)
                .ok_or_else(|| CommandError::image_download(&info.id, format!("unsupported os_hash_algo {a}")))?;
            let v = download::resolve_checksum(self.http, v, &url0, t)
                .await
                .map_err(|e| CommandError::image_download(&info.id, e))?;
            (algo, v)
        } else {
            let c = info.checksum.clone().unwrap_or_default();
            let v = download::resolve_checksum(self.http, &c, &url0, t)
                .await
                .map_err(|e| CommandError::image_download(&info.id, e))?;
            let algo = HashAlgo::from_hex_len(v.len())
                .ok_or_else(|| CommandError::image_download(&info.id, "Unable to identify checksum algorithm"))?;
            (algo, v)
        };
        if algo == HashAlgo::Md5 && !self.md5_allowed {
            return Err(CommandError::image_download(
                &info.id,
                "MD5 checksums are not allowed by the conductor (agent_md5_checksum_enable)",
            ));
        }
        Ok(Expected { algo, value })
    }

    /// Decodes a config drive: a URL to fetch, or base64 of (usually gzipped) bytes.
    pub async fn decode_configdrive(&self, cd: &str) -> Result<Vec<u8>, CommandError> {
        let limit = self.settings.max_configdrive;
        let err = |m: String| {
            CommandError::new("InstanceDeployFailure", 500, "Failed to deploy instance", format!("config drive: {m}"))
        };
        let raw: Vec<u8> = if cd.starts_with("http://") || cd.starts_with("https://") {
            let url = url::Url::parse(cd).map_err(|e| err(e.to_string()))?;
            let resp = send_with_timeout(self.http, HttpRequest::get(url), self.settings.download_connect_timeout)
                .await
                .map_err(|e| err(e.to_string()))?;
            if !resp.status.is_success() {
                return Err(err(format!("HTTP {} from {}", resp.status, download::redact(cd))));
            }
            let b = resp.bytes(limit * 2).await.map_err(|e| err(e.to_string()))?;
            // A URL may serve the gzip+base64 text or the raw image.
            let text: String = String::from_utf8_lossy(&b).split_whitespace().collect();
            base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).unwrap_or_else(|_| b.to_vec())
        } else {
            let text: String = cd.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| err(format!("not valid base64: {e}")))?
        };
        if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            let mut dec = flate2::read::GzDecoder::new(&raw[..]);
            let mut limited = std::io::Read::take(&mut dec, limit as u64 + 1);
            std::io::Read::read_to_end(&mut limited, &mut out).map_err(|e| err(format!("bad gzip: {e}")))?;
            if out.len() > limit {
                return Err(err(format!("larger than {limit} bytes")));
            }
            return Ok(out);
        }
        if raw.len() > limit {
            return Err(err(format!("larger than {limit} bytes")));
        }
        Ok(raw)
    }
}

async fn write_configdrive(
    dev: &dyn BlockDevice,
    offset: u64,
    size: u64,
    data: Vec<u8>,
    name: &str,
) -> Result<(), CommandError> {
    if data.len() as u64 > size {
        return Err(CommandError::new(
            "InstanceDeployFailure",
            500,
            "Failed to deploy instance",
            format!("config drive of {} bytes does not fit its {size}-byte partition", data.len()),
        ));
    }
    dev.write_at(offset, Bytes::from(data)).await.map_err(|e| CommandError::image_write(name, e))?;
    dev.flush().await.map_err(|e| CommandError::image_write(name, e))
}

impl ImageWriter<'_> {
    /// Writes an image to `disk`: the body of `standby.prepare_image`, of the `write_image` deploy
    /// step and of the conductor's `iscsi` deploy. `rng_seed` seeds the partition and disk GUIDs.
    pub async fn write(
        &self,
        disk: &Disk,
        info: &ImageInfo,
        configdrive: Option<String>,
        rng_seed: u64,
    ) -> Result<Written, CommandError> {
        let expected = self.expected_hash(info).await?;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(rng_seed);

        // Where the image goes.
        let (target, layout): (Arc<dyn BlockDevice>, Option<partition::PartitionTable>) = if info.is_partition_image() {
            let label = DiskLabel::choose(info.disk_label.as_deref(), info.deploy_boot_mode.as_deref())
                .map_err(|e| CommandError::image_write(&disk.name, e))?;
            let req = LayoutRequest {
                label,
                root_mb: info.root_mb.or(info.root_gb.map(|g| g * 1024)).unwrap_or(0),
                swap_mb: info.swap_mb.unwrap_or(0),
                ephemeral_mb: info.ephemeral_mb.unwrap_or(0),
                configdrive_mb: if configdrive.is_some() { CONFIGDRIVE_MB } else { 0 },
                uefi: info.deploy_boot_mode.as_deref() == Some("uefi"),
                local_boot: info.boot_option.as_deref() != Some("netboot"),
            };
            let table = partition::create_layout(disk.device.as_ref(), &req, &mut rng)
                .await
                .map_err(|e| CommandError::image_write(&disk.name, e))?;
            let root = table
                .find(PartRole::Root)
                .ok_or_else(|| CommandError::image_write(&disk.name, "no root partition created"))?;
            let slice = Slice::new(disk.device.clone(), root.offset, root.size)
                .map_err(|e| CommandError::image_write(&disk.name, e))?;
            (Arc::new(slice), Some(table))
        } else {
            (disk.device.clone(), None)
        };
        let sink: Box<dyn Sink> = match info.disk_format.as_deref() {
            Some("qcow2") => Box::new(Qcow2Sink::new(target.clone(), &disk.name, self.settings.qcow2_pending_limit)),
            _ => Box::new(RawSink::new(target.clone(), &disk.name)),
        };
        let plan = DownloadPlan {
            image_id: info.id.clone(),
            urls: info.urls.clone(),
            expected: Some(expected),
            retries: self.settings.download_retries,
            retry_interval: self.settings.download_retry_interval,
            connect_timeout: self.settings.download_connect_timeout,
            read_timeout: self.settings.download_read_timeout,
            chunk: self.settings.write_chunk,
        };
        let outcome = match download::download(self.http, &plan, sink).await {
            Ok(o) => o,
            Err(e) => {
                // Leave nothing bootable behind a failed or corrupt image.
                let wipe = target.size().min(1 << 20);
                if let Err(we) = target.write_zeroes(0, wipe).await {
                    tracing::warn!(error = %we, "could not wipe the start of the failed image");
                }
                let _ = target.flush().await;
                return Err(e);
            }
        };
        tracing::info!(image = %info.id, bytes = outcome.bytes, attempts = outcome.attempts, "image written and verified");

        let mut uuids = Map::new();
        match &layout {
            Some(table) => {
                let mut parts = Map::new();
                for p in &table.partitions {
                    let key = match p.role {
                        PartRole::Root => "root",
                        PartRole::Swap => "swap",
                        PartRole::Ephemeral => "ephemeral",
                        PartRole::ConfigDrive => "configdrive",
                        PartRole::EfiSystem => "efi system partition",
                        PartRole::BiosBoot => "BIOS Boot partition",
                        PartRole::Other => continue,
                    };
                    parts.insert(key.into(), json!(partition_path(&disk.name, p.number)));
                }
                if let Some(root) = table.find(PartRole::Root) {
                    uuids.insert("root uuid".into(), json!(root.uuid));
                    if let Some(fs) = partition::filesystem_uuid(target.as_ref()).await {
                        uuids.insert("root filesystem uuid".into(), json!(fs));
                    }
                }
                if let Some(esp) = table.find(PartRole::EfiSystem) {
                    uuids.insert("efi system partition uuid".into(), json!(esp.uuid));
                }
                uuids.insert("disk identifier".into(), json!(table.disk_id));
                uuids.insert("partitions".into(), Value::Object(parts));
                if let (Some(cd), Some(p)) = (&configdrive, table.find(PartRole::ConfigDrive)) {
                    let data = self.decode_configdrive(cd).await?;
                    write_configdrive(disk.device.as_ref(), p.offset, p.size, data, &disk.name).await?;
                }
            }
            None => {
                if let Some(cd) = &configdrive {
                    let data = self.decode_configdrive(cd).await?;
                    let p = partition::add_configdrive_partition(disk.device.as_ref(), CONFIGDRIVE_MB, &mut rng)
                        .await
                        .map_err(|e| {
                            CommandError::new(
                                "InstanceDeployFailure",
                                500,
                                "Failed to deploy instance",
                                format!("config drive: {e}"),
                            )
                        })?;
                    write_configdrive(disk.device.as_ref(), p.offset, p.size, data, &disk.name).await?;
                    uuids.insert("configdrive partition uuid".into(), json!(p.uuid));
                }
                let id = partition::disk_identifier(disk.device.as_ref())
                    .await
                    .map_err(|e| CommandError::image_write(&disk.name, e))?;
                uuids.insert("root uuid".into(), json!(id));
            }
        }
        let root = uuids.get("root uuid").and_then(|v| v.as_str()).unwrap_or("None").to_string();
        let message = format!("image ({}) written to device {} root_uuid={root}", info.id, disk.name);
        Ok(Written { message, partition_uuids: uuids })
    }
}
