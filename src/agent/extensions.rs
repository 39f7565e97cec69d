//! The built-in extensions: `standby` (image writing, power), `deploy` and `clean` (steps),
//! `log` (system logs). `iscsi` plugs in through the same [`Extension`] trait.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::commands::{Extension, Prepared};
use super::context::{AgentContext, HostMode};
use ferric_disk::disks::Disk;
use ferric_disk::partition;
use ferric_disk::writer::validate_image_info;
use ferric_types::agent::{CommandError, ImageInfo, Step};

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

/// `standby`: prepare_image, power_off, run_image, sync, get_partition_uuids.
pub struct Standby;

/// `standby.prepare_image` (and the `write_image` deploy step): the image writer on the install
/// disk, its partition UUIDs kept for `standby.get_partition_uuids`. Returns IPA's result message.
pub async fn prepare_image(
    ctx: Arc<AgentContext>,
    info: ImageInfo,
    configdrive: Option<String>,
) -> Result<String, CommandError> {
    let configdrive = configdrive.or_else(|| info.configdrive.clone());
    let disk = ctx.install_disk()?;
    tracing::info!(image = %info.id, device = %disk.name, "preparing image");
    ctx.standby.lock().partition_uuids = None;
    let rng_seed: u64 = rand::Rng::next_u64(&mut *ctx.rng.lock());
    let written = ctx.image_writer().write(&disk, &info, configdrive, rng_seed).await?;
    let mut st = ctx.standby.lock();
    st.partition_uuids = Some(written.partition_uuids);
    st.cached_image_id = Some(info.id.clone());
    Ok(written.message)
}

/// How long a power off or reboot waits for the command's HTTP answer to leave the machine.
/// Without it the background command can win the race with the answer (seen under QEMU TCG):
/// the conductor then waits out its HTTP timeout before it powers the node off through the BMC.
const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Ends the agent, or (in a ramdisk) powers off or reboots the machine, once the command's
/// answer is out.
async fn shutdown(ctx: &Arc<AgentContext>, reboot: bool) -> Result<Value, CommandError> {
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
            tokio::time::sleep(ANSWER_GRACE).await;
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
                Ok(Prepared::Background(Box::pin(async move { shutdown(&ctx, reboot).await })))
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
