//! The built-in extensions: `standby` (image writing, power), `deploy` and `clean` (steps),
//! `log` (system logs). `iscsi` plugs in through the same [`Extension`] trait.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::commands::{Extension, Prepared};
use super::context::{AgentContext, HostMode};
use super::disks::Disk;
use super::download::{self, DownloadPlan, Expected, HashAlgo, Qcow2Sink, RawSink, Sink};
use super::http::HttpRequest;
use super::wire::{CommandError, ImageInfo, Step};
use crate::images::blockdev::{BlockDevice, Slice};
use crate::images::partition::{self, CONFIGDRIVE_MB, DiskLabel, LayoutRequest, PartRole};

fn param<T: serde::de::DeserializeOwned>(params: &Map<String, Value>, key: &str) -> Result<T, CommandError> {
    let v = params.get(key).cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| CommandError::invalid_params(format!("parameter {key:?}: {e}")))
}

fn opt_param<T: serde::de::DeserializeOwned>(
    params: &Map<String, Value>,
    key: &str,
) -> Result<Option<T>, CommandError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| CommandError::invalid_params(format!("parameter {key:?}: {e}"))),
    }
}

fn unknown(ext: &str, command: &str) -> CommandError {
    CommandError::invalid_command(format!("Unknown command: {ext}.{command}"))
}

/// Linux name of partition `n` of `disk` (`/dev/sda1`, `/dev/nvme0n1p1`).
pub fn partition_path(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) { format!("{disk}p{n}") } else { format!("{disk}{n}") }
}

/// `standby`: prepare_image, power_off, run_image, sync, get_partition_uuids.
pub struct Standby;

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

async fn expected_hash(ctx: &AgentContext, info: &ImageInfo) -> Result<Expected, CommandError> {
    let t = ctx.settings.download_connect_timeout;
    let url0 = info.urls.first().cloned().unwrap_or_default();
    let (algo, value) = if let (Some(a), Some(v)) = (&info.os_hash_algo, &info.os_hash_value) {
        let algo = HashAlgo::from_name(a)
            .ok_or_else(|| CommandError::image_download(&info.id, format!("unsupported os_hash_algo {a}")))?;
        let v = download::resolve_checksum(ctx.http.as_ref(), v, &url0, t)
            .await
            .map_err(|e| CommandError::image_download(&info.id, e))?;
        (algo, v)
    } else {
        let c = info.checksum.clone().unwrap_or_default();
        let v = download::resolve_checksum(ctx.http.as_ref(), &c, &url0, t)
            .await
            .map_err(|e| CommandError::image_download(&info.id, e))?;
        let algo = HashAlgo::from_hex_len(v.len())
            .ok_or_else(|| CommandError::image_download(&info.id, "Unable to identify checksum algorithm"))?;
        (algo, v)
    };
    if algo == HashAlgo::Md5 && !ctx.md5_allowed() {
        return Err(CommandError::image_download(
            &info.id,
            "MD5 checksums are not allowed by the conductor (agent_md5_checksum_enable)",
        ));
    }
    Ok(Expected { algo, value })
}

/// Decodes a config drive: a URL to fetch, or base64 of (usually gzipped) bytes.
pub async fn decode_configdrive(ctx: &AgentContext, cd: &str) -> Result<Vec<u8>, CommandError> {
    let limit = ctx.settings.max_configdrive;
    let err = |m: String| {
        CommandError::new("InstanceDeployFailure", 500, "Failed to deploy instance", format!("config drive: {m}"))
    };
    let raw: Vec<u8> = if cd.starts_with("http://") || cd.starts_with("https://") {
        let url = url::Url::parse(cd).map_err(|e| err(e.to_string()))?;
        let resp = super::http::send_with_timeout(
            ctx.http.as_ref(),
            HttpRequest::get(url),
            ctx.settings.download_connect_timeout,
        )
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

/// Writes an image to the install disk: the body of `standby.prepare_image` and of the
/// `write_image` deploy step. Returns IPA's result message.
pub async fn prepare_image(
    ctx: Arc<AgentContext>,
    info: ImageInfo,
    configdrive: Option<String>,
) -> Result<String, CommandError> {
    let configdrive = configdrive.or_else(|| info.configdrive.clone());
    let disk = ctx.install_disk()?;
    tracing::info!(image = %info.id, device = %disk.name, "preparing image");
    ctx.standby.lock().partition_uuids = None;
    let expected = expected_hash(&ctx, &info).await?;
    let rng_seed: u64 = rand::Rng::next_u64(&mut *ctx.rng.lock());
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
        Some("qcow2") => Box::new(Qcow2Sink::new(target.clone(), &disk.name, ctx.settings.qcow2_pending_limit)),
        _ => Box::new(RawSink::new(target.clone(), &disk.name)),
    };
    let plan = DownloadPlan {
        image_id: info.id.clone(),
        urls: info.urls.clone(),
        expected: Some(expected),
        retries: ctx.settings.download_retries,
        retry_interval: ctx.settings.download_retry_interval,
        connect_timeout: ctx.settings.download_connect_timeout,
        read_timeout: ctx.settings.download_read_timeout,
        chunk: ctx.settings.write_chunk,
    };
    let outcome = match download::download(ctx.http.as_ref(), &plan, sink).await {
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
                let data = decode_configdrive(&ctx, cd).await?;
                write_configdrive(disk.device.as_ref(), p.offset, p.size, data, &disk.name).await?;
            }
        }
        None => {
            if let Some(cd) = &configdrive {
                let data = decode_configdrive(&ctx, cd).await?;
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
    let mut st = ctx.standby.lock();
    st.partition_uuids = Some(uuids);
    st.cached_image_id = Some(info.id.clone());
    Ok(format!("image ({}) written to device {} root_uuid={root}", info.id, disk.name))
}

/// Ends the agent, or (in a ramdisk) powers off or reboots the machine.
fn shutdown(ctx: &Arc<AgentContext>, reboot: bool) -> Result<Value, CommandError> {
    match ctx.mode {
        HostMode::Process | HostMode::Simulated => {
            if ctx.mode == HostMode::Process {
                tracing::warn!(reboot, "not in a deploy ramdisk: ending the agent instead of touching the machine");
            }
            let token = ctx.shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                token.cancel();
            });
            Ok(json!(if reboot {
                "agent stopped (not in a ramdisk: no reboot)"
            } else {
                "agent stopped (not in a ramdisk: no power off)"
            }))
        }
        HostMode::Ramdisk => {
            // SAFETY: sync(2) and reboot(2) take no pointers.
            unsafe { libc::sync() };
            let cmd = if reboot { libc::LINUX_REBOOT_CMD_RESTART } else { libc::LINUX_REBOOT_CMD_POWER_OFF };
            let rc = unsafe { libc::reboot(cmd) };
            Err(CommandError::new(
                "SystemRebootError",
                500,
                "Failed to reboot or power off the system",
                format!("reboot(2) returned {rc}: {}", std::io::Error::last_os_error()),
            ))
        }
    }
}

async fn sync_disks(ctx: &AgentContext) -> Result<(), CommandError> {
    if ctx.mode == HostMode::Ramdisk {
        // SAFETY: sync(2) takes no arguments.
        unsafe { libc::sync() };
    }
    for d in &ctx.disks {
        d.device.flush().await.map_err(|e| CommandError::execution(format!("flushing {}: {e}", d.name)))?;
    }
    Ok(())
}

impl Extension for Standby {
    fn name(&self) -> &'static str {
        "standby"
    }

    fn prepare(
        &self,
        ctx: &Arc<AgentContext>,
        command: &str,
        params: Map<String, Value>,
    ) -> Result<Prepared, CommandError> {
        let ctx = ctx.clone();
        match command {
            "prepare_image" => {
                let info: ImageInfo = param(&params, "image_info")?;
                let configdrive: Option<String> = opt_param(&params, "configdrive")?;
                validate_image_info(&info, ctx.md5_allowed())?;
                Ok(Prepared::Background(Box::pin(async move {
                    prepare_image(ctx, info, configdrive).await.map(Value::String)
                })))
            }
            "power_off" | "run_image" => {
                let reboot = command == "run_image";
                Ok(Prepared::Background(Box::pin(async move { shutdown(&ctx, reboot) })))
            }
            "sync" => Ok(Prepared::Inline(Box::pin(async move { sync_disks(&ctx).await.map(|_| Value::Null) }))),
            "get_partition_uuids" => {
                let st = ctx.standby.lock();
                if st.partition_uuids.is_none() {
                    tracing::warn!("no partition UUIDs recorded yet; prepare_image has to succeed first");
                }
                Ok(Prepared::Done(Ok(Value::Object(st.partition_uuids.clone().unwrap_or_default()))))
            }
            other => Err(unknown("standby", other)),
        }
    }
}

fn steps_result(kind: &str, steps: Vec<Step>) -> Value {
    json!({
        format!("{kind}_steps"): {"FerricHardwareManager": steps},
        "hardware_manager_version": {"FerricHardwareManager": "1.0"},
    })
}

fn step(name: &str, priority: i64, abortable: Option<bool>) -> Step {
    Step { step: name.into(), priority, interface: "deploy".into(), reboot_requested: false, abortable, args: None }
}

/// Zeroes partition tables and filesystem signatures on every disk the agent manages
/// (IPA's `erase_devices_metadata`): first and last MiB of the disk, first 64 KiB of each
/// partition.
pub async fn erase_devices_metadata(disks: &[Disk]) -> Result<(), CommandError> {
    for d in disks {
        let dev = d.device.as_ref();
        let fail = |e: std::io::Error| {
            CommandError::new("BlockDeviceEraseError", 500, "Failed to erase block device", format!("{}: {e}", d.name))
        };
        if let Ok(Some(table)) = partition::read_table(dev).await {
            for p in table.partitions {
                dev.write_zeroes(p.offset, p.size.min(64 << 10)).await.map_err(fail)?;
            }
        }
        let n = dev.size().min(1 << 20);
        dev.write_zeroes(0, n).await.map_err(fail)?;
        dev.write_zeroes(dev.size() - n, n).await.map_err(fail)?;
        dev.flush().await.map_err(fail)?;
        tracing::info!(device = %d.name, "erased disk metadata");
    }
    Ok(())
}

fn remember_node(ctx: &AgentContext, params: &Map<String, Value>) {
    if let Some(n @ Value::Object(_)) = params.get("node") {
        *ctx.node.lock() = Some(n.clone());
    }
}

/// `deploy`: get_deploy_steps, execute_deploy_step (write_image, erase_devices_metadata).
pub struct Deploy;

impl Extension for Deploy {
    fn name(&self) -> &'static str {
        "deploy"
    }

    fn prepare(
        &self,
        ctx: &Arc<AgentContext>,
        command: &str,
        params: Map<String, Value>,
    ) -> Result<Prepared, CommandError> {
        let ctx = ctx.clone();
        match command {
            "get_deploy_steps" => {
                remember_node(&ctx, &params);
                Ok(Prepared::Done(Ok(steps_result(
                    "deploy",
                    vec![step("erase_devices_metadata", 0, None), step("write_image", 0, None)],
                ))))
            }
            "execute_deploy_step" => {
                let s: Step = param(&params, "step")?;
                remember_node(&ctx, &params);
                let step_value = params.get("step").cloned().unwrap_or(Value::Null);
                let mut args = s.args.clone().unwrap_or_default();
                for (k, v) in &params {
                    if !["step", "node", "ports", "deploy_version"].contains(&k.as_str()) {
                        args.insert(k.clone(), v.clone());
                    }
                }
                let result_key = "deploy_result";
                Ok(Prepared::Background(Box::pin(async move {
                    let r = match s.step.as_str() {
                        "write_image" => {
                            let info: ImageInfo = param(&args, "image_info")?;
                            validate_image_info(&info, ctx.md5_allowed())?;
                            let cd: Option<String> = opt_param(&args, "configdrive")?;
                            let msg = prepare_image(ctx.clone(), info, cd).await?;
                            json!({"result": format!("prepare_image: {msg}")})
                        }
                        "erase_devices_metadata" => {
                            erase_devices_metadata(&ctx.disks).await?;
                            Value::Null
                        }
                        other => {
                            return Err(CommandError::new(
                                "HardwareManagerMethodNotFound",
                                500,
                                "No HardwareManager found to handle method",
                                format!("Could not find method: {other}"),
                            ));
                        }
                    };
                    Ok(json!({result_key: r, "deploy_step": step_value}))
                })))
            }
            other => Err(unknown("deploy", other)),
        }
    }
}

/// `clean`: get_clean_steps, execute_clean_step (erase_devices_metadata).
pub struct Clean;

impl Extension for Clean {
    fn name(&self) -> &'static str {
        "clean"
    }

    fn prepare(
        &self,
        ctx: &Arc<AgentContext>,
        command: &str,
        params: Map<String, Value>,
    ) -> Result<Prepared, CommandError> {
        let ctx = ctx.clone();
        match command {
            "get_clean_steps" => {
                remember_node(&ctx, &params);
                Ok(Prepared::Done(Ok(steps_result("clean", vec![step("erase_devices_metadata", 99, Some(true))]))))
            }
            "execute_clean_step" => {
                let s: Step = param(&params, "step")?;
                remember_node(&ctx, &params);
                let step_value = params.get("step").cloned().unwrap_or(Value::Null);
                Ok(Prepared::Background(Box::pin(async move {
                    match s.step.as_str() {
                        "erase_devices_metadata" => erase_devices_metadata(&ctx.disks).await?,
                        other => {
                            return Err(CommandError::new(
                                "HardwareManagerMethodNotFound",
                                500,
                                "No HardwareManager found to handle method",
                                format!("Could not find method: {other}"),
                            ));
                        }
                    }
                    Ok(json!({"clean_result": null, "clean_step": step_value}))
                })))
            }
            other => Err(unknown("clean", other)),
        }
    }
}

/// `log`: collect_system_logs (a gzipped tarball, base64, as IPA returns it).
pub struct Log;

fn tarball(files: Vec<(&str, Vec<u8>)>) -> Result<Vec<u8>, std::io::Error> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, &data[..])?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

impl Extension for Log {
    fn name(&self) -> &'static str {
        "log"
    }

    fn prepare(
        &self,
        ctx: &Arc<AgentContext>,
        command: &str,
        _params: Map<String, Value>,
    ) -> Result<Prepared, CommandError> {
        if command != "collect_system_logs" {
            return Err(unknown("log", command));
        }
        let mut files = vec![
            ("ferric-agent.log", ctx.logs.text().into_bytes()),
            ("disks.json", serde_json::to_vec_pretty(&ctx.disks).unwrap_or_default()),
        ];
        if ctx.mode == HostMode::Ramdisk {
            for p in ["/proc/cmdline", "/proc/mounts", "/proc/partitions"] {
                if let Ok(b) = std::fs::read(p) {
                    files.push((p.trim_start_matches('/'), b));
                }
            }
        }
        let outcome = tarball(files)
            .map(|b| json!({"system_logs": base64::engine::general_purpose::STANDARD.encode(b)}))
            .map_err(|e| CommandError::execution(format!("collecting logs: {e}")));
        Ok(Prepared::Done(outcome))
    }
}
