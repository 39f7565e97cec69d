//! The agent's `iscsi` extension: `iscsi.start_iscsi_target` (ironic-python-agent's command and
//! parameters) exposes the install disk as LUN 0 of a userspace iSCSI target, for the conductor's
//! `iscsi` deploy to write the image into.

use super::commands::{Extension, Prepared};
use super::context::AgentContext;
use crate::iscsi_target::{StartIscsiTargetParams, TargetHandle, start_iscsi_target};
use ferric_disk::blockdev::BlockDevice;
use ferric_types::agent::CommandError;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Where targets listen: a real TCP portal, or whatever a simulation plugs in.
pub trait Exposer: Send + Sync {
    /// Starts a target for `disk`; returns its IQN and the portal it answers on.
    fn expose(
        &self,
        disk: Arc<dyn BlockDevice>,
        params: StartIscsiTargetParams,
    ) -> BoxFuture<'static, Result<(String, SocketAddr), String>>;
    /// Stops every target started (the ramdisk is going away).
    fn stop_all(&self) -> BoxFuture<'static, ()>;
}

/// Targets on TCP portals of the agent's own address.
#[derive(Default)]
pub struct TcpExposer {
    running: Arc<Mutex<Vec<TargetHandle>>>,
}

impl Exposer for TcpExposer {
    fn expose(
        &self,
        disk: Arc<dyn BlockDevice>,
        params: StartIscsiTargetParams,
    ) -> BoxFuture<'static, Result<(String, SocketAddr), String>> {
        let running = self.running.clone();
        Box::pin(async move {
            // One target at a time: a repeated command replaces the previous one.
            let old: Vec<TargetHandle> = std::mem::take(&mut *running.lock());
            for h in old {
                h.stop().await;
            }
            let h = start_iscsi_target(disk, params).await.map_err(|e| e.to_string())?;
            let out = (h.iqn().to_string(), h.local_addr());
            running.lock().push(h);
            Ok(out)
        })
    }

    fn stop_all(&self) -> BoxFuture<'static, ()> {
        let running = self.running.clone();
        Box::pin(async move {
            let old: Vec<TargetHandle> = std::mem::take(&mut *running.lock());
            for h in old {
                h.stop().await;
            }
        })
    }
}

/// The `iscsi` extension.
pub struct IscsiExtension {
    exposer: Arc<dyn Exposer>,
    listen_ip: IpAddr,
}

impl IscsiExtension {
    /// Targets listen on `listen_ip` (the agent's provisioning address).
    pub fn new(exposer: Arc<dyn Exposer>, listen_ip: IpAddr) -> IscsiExtension {
        IscsiExtension { exposer, listen_ip }
    }
}

impl Extension for IscsiExtension {
    fn name(&self) -> &'static str {
        "iscsi"
    }

    fn prepare(
        &self,
        ctx: &Arc<AgentContext>,
        command: &str,
        params: Map<String, Value>,
    ) -> Result<Prepared, CommandError> {
        if command != "start_iscsi_target" {
            return Err(CommandError::new(
                "InvalidCommandError",
                404,
                "Invalid command",
                format!("Unknown command: iscsi.{command}"),
            ));
        }
        let iqn = match params.get("iqn") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 223 => Some(s.clone()),
            Some(other) => {
                return Err(CommandError::invalid_params(format!(
                    "iqn must be a non-empty string of at most 223 bytes, got {other}"
                )));
            }
        };
        let portal_port = match params.get("portal_port") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| CommandError::invalid_params(format!("invalid portal_port {v}")))?,
            ),
        };
        let wipe = params.get("wipe_disk_metadata").and_then(|v| v.as_bool()).unwrap_or(false);
        let disk = ctx.install_disk()?;
        let exposer = self.exposer.clone();
        let listen_ip = self.listen_ip;
        Ok(Prepared::Inline(Box::pin(async move {
            let dev: Arc<dyn BlockDevice> = disk.device.clone();
            let p = StartIscsiTargetParams { iqn, portal_port, wipe_disk_metadata: wipe, listen_ip, chap: None };
            let (iqn, addr) = exposer
                .expose(dev, p)
                .await
                .map_err(|e| CommandError::new("ISCSIError", 500, "Error starting iSCSI target", e))?;
            tracing::info!(%iqn, portal = %addr, device = %disk.name, "iSCSI target exposing the install disk");
            Ok(json!({"iscsi_target_iqn": iqn, "portal_port": addr.port()}))
        })))
    }
}
