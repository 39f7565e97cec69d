//! The `iscsi` deploy interface: the deploy ramdisk exposes its disk over iSCSI and the conductor
//! writes the image (the user guide's "Example 1: PXE Boot and iSCSI Deploy Process"). Ironic
//! dropped this flow in 2021; ferric keeps it.
//!
//! The conductor writes with the agent's own image writer (raw and qcow2, checksums, partition
//! tables and config drive) over a [`RemoteDisk`]: an iSCSI session seen as a block device.

use super::agent_base::{self, agent_env, agent_target, image_info};
use super::steps::{Plans, StepCtx, StepResult, says};
use super::{DeployInterface, DriverError, Task};
use crate::iscsi::initiator::{Capacity, InitiatorConfig, Session};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use ferric_disk::blockdev::BlockDevice;
use ferric_disk::disks::Disk;
use ferric_disk::writer::{ImageWriter, WriterSettings, Written};
use ferric_types::agent::ImageInfo;
use ferric_types::models::{NodeId, Step};
use ferric_types::trace::{Actor, Says, seed};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to an iSCSI portal.
pub trait IscsiStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> IscsiStream for T {}

/// How the conductor reaches portals: TCP in production, in-memory streams in a simulation.
pub trait IscsiConnector: Send + Sync {
    fn connect(&self, portal: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn IscsiStream>>>;
}

/// Portals over TCP.
pub struct TcpIscsi;

impl IscsiConnector for TcpIscsi {
    fn connect(&self, portal: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn IscsiStream>>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(portal).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as Box<dyn IscsiStream>)
        })
    }
}

/// Settings of iSCSI deploys.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct IscsiDeployConfig {
    /// Portal port the agent is asked to listen on (0: the agent picks one and reports it).
    pub portal_port: u16,
    /// Read everything back after writing and compare (slower; Ironic's `conv=... verify`).
    pub verify: bool,
    /// Initiator name the conductor logs in with.
    pub initiator_iqn: String,
}

impl Default for IscsiDeployConfig {
    fn default() -> Self {
        IscsiDeployConfig { portal_port: 3260, verify: false, initiator_iqn: "iqn.2024-01.org.ferric:conductor".into() }
    }
}

/// An iSCSI LUN as a block device (reads and writes of whole blocks; partial blocks are
/// read, patched and written back).
pub struct RemoteDisk {
    session: tokio::sync::Mutex<Option<Session<Box<dyn IscsiStream>>>>,
    cap: Capacity,
}

/// Largest transfer per SCSI command.
const MAX_IO: u64 = 1 << 20;

impl RemoteDisk {
    pub async fn attach(stream: Box<dyn IscsiStream>, cfg: &InitiatorConfig) -> io::Result<RemoteDisk> {
        let mut s = Session::login(stream, cfg).await.map_err(io::Error::other)?;
        let cap = s.read_capacity().await.map_err(io::Error::other)?;
        Ok(RemoteDisk { session: tokio::sync::Mutex::new(Some(s)), cap })
    }

    /// Flushes and logs out.
    pub async fn detach(&self) -> io::Result<()> {
        let Some(mut s) = self.session.lock().await.take() else { return Ok(()) };
        s.synchronize_cache().await.map_err(io::Error::other)?;
        s.logout().await.map_err(io::Error::other)
    }

    fn bs(&self) -> u64 {
        u64::from(self.cap.block_size.max(1))
    }

    async fn read_blocks(&self, lba: u64, blocks: u64) -> io::Result<Vec<u8>> {
        let mut g = self.session.lock().await;
        let s = g.as_mut().ok_or_else(|| io::Error::other("iSCSI session closed"))?;
        let mut out = Vec::with_capacity((blocks * self.bs()) as usize);
        let per = (MAX_IO / self.bs()).max(1);
        let mut done = 0;
        while done < blocks {
            let n = (blocks - done).min(per);
            out.extend(s.read(self.cap, lba + done, n as u32).await.map_err(io::Error::other)?);
            done += n;
        }
        Ok(out)
    }

    async fn write_blocks(&self, lba: u64, data: Bytes) -> io::Result<()> {
        let mut g = self.session.lock().await;
        let s = g.as_mut().ok_or_else(|| io::Error::other("iSCSI session closed"))?;
        let chunk = (MAX_IO / self.bs()).max(1) * self.bs();
        let mut off = 0usize;
        while off < data.len() {
            let end = (off + chunk as usize).min(data.len());
            s.write(lba + off as u64 / self.bs(), self.cap.block_size, data.slice(off..end))
                .await
                .map_err(io::Error::other)?;
            off = end;
        }
        Ok(())
    }
}

#[async_trait]
impl BlockDevice for RemoteDisk {
    fn size(&self) -> u64 {
        self.cap.bytes()
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let end = offset
            .checked_add(len as u64)
            .filter(|e| *e <= self.size())
            .ok_or_else(|| io::Error::other("read beyond the disk"))?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        let bs = self.bs();
        let first = offset / bs;
        let last = end.div_ceil(bs);
        let data = self.read_blocks(first, last - first).await?;
        let skip = (offset - first * bs) as usize;
        Ok(Bytes::copy_from_slice(&data[skip..skip + len]))
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= self.size())
            .ok_or_else(|| io::Error::other("write beyond the disk"))?;
        if data.is_empty() {
            return Ok(());
        }
        let bs = self.bs();
        if offset % bs == 0 && data.len() as u64 % bs == 0 {
            return self.write_blocks(offset / bs, data).await;
        }
        let first = offset / bs;
        let last = end.div_ceil(bs);
        let mut buf = BytesMut::from(&self.read_blocks(first, last - first).await?[..]);
        let skip = (offset - first * bs) as usize;
        buf[skip..skip + data.len()].copy_from_slice(&data);
        self.write_blocks(first, buf.freeze()).await
    }

    async fn flush(&self) -> io::Result<()> {
        let mut g = self.session.lock().await;
        match g.as_mut() {
            Some(s) => s.synchronize_cache().await.map_err(io::Error::other),
            None => Ok(()),
        }
    }
}

/// The iSCSI deploy interface.
pub struct IscsiDeploy {
    pub connector: Arc<dyn IscsiConnector>,
    pub config: IscsiDeployConfig,
    /// What each node's write steps pass on to the next (the portal, the session, the write's
    /// result). Its steps run back to back under the node's lock, so one entry per node.
    runs: Mutex<HashMap<NodeId, Run>>,
}

/// One node's iSCSI write, between its steps.
#[derive(Default)]
struct Run {
    info: Option<ImageInfo>,
    configdrive: Option<String>,
    iqn: String,
    portal: Option<SocketAddr>,
    disk: Option<Arc<RemoteDisk>>,
    written: Option<Result<Written, String>>,
}

/// The iSCSI deploy: at the agent's first heartbeat the conductor takes over and writes the
/// image itself.
static PLANS: LazyLock<Plans> = LazyLock::new(|| {
    let c = |label| Says::new(Actor::Conductor, Actor::Node, label);
    agent_base::plans(
        seed::CACHE_ISCSI,
        vec![
            says(Step::ExposeDisk, c(seed::EXPOSE_ISCSI)),
            says(Step::AttachDisk, c(seed::ISCSI_ATTACH)),
            says(Step::CopyImage, c(seed::COPY_IMAGE)),
            says(Step::DetachDisk, c(seed::ISCSI_DETACH)),
            says(Step::DeleteCachedImage, Says::new(Actor::Conductor, Actor::Conductor, seed::DELETE_CACHED_IMAGE)),
        ],
        seed::PREPARE_PXE_INSTANCE,
    )
});

impl IscsiDeploy {
    pub fn new(connector: Arc<dyn IscsiConnector>, config: IscsiDeployConfig) -> IscsiDeploy {
        IscsiDeploy { connector, config, runs: Mutex::new(HashMap::new()) }
    }

    fn run_of<T>(&self, node: NodeId, f: impl FnOnce(&mut Run) -> T) -> T {
        f(self.runs.lock().entry(node).or_default())
    }

    /// The user guide's "Send IPA a command to expose disks via iSCSI".
    async fn expose_disk(&self, task: &mut Task) -> Result<StepResult, DriverError> {
        let env = agent_env(task)?;
        let target = agent_target(task)?;
        let info = image_info(task, &env)?;
        let configdrive = match task.node.instance_info.get("configdrive") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let iqn = format!("iqn.2008-10.org.openstack:{}", task.node.uuid);
        let r = env.client.start_iscsi_target(&target, &iqn, self.config.portal_port, true).await.map_err(|e| {
            DriverError::failed(format!(
                "The agent of node {} could not expose its disk over iSCSI: {e}",
                task.node.uuid
            ))
        })?;
        let result = r.command_result.unwrap_or(Value::Null);
        let iqn = result.get("iscsi_target_iqn").and_then(|v| v.as_str()).unwrap_or(&iqn).to_string();
        let port = result
            .get("portal_port")
            .and_then(|v| v.as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(self.config.portal_port);
        let host = url::Url::parse(&target.url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string()))
            .ok_or_else(|| DriverError::failed(format!("Agent URL {} has no host", target.url)))?;
        let ip: std::net::IpAddr =
            host.parse().map_err(|_| DriverError::failed(format!("Agent host {host} is not an IP address")))?;
        let portal = SocketAddr::new(ip, port);
        self.runs
            .lock()
            .insert(task.node.uuid, Run { info: Some(info), configdrive, iqn, portal: Some(portal), ..Run::default() });
        Ok(StepResult::next())
    }

    /// The user guide's "iSCSI attach": login to the agent's target.
    async fn attach_disk(&self, task: &mut Task) -> Result<StepResult, DriverError> {
        let (iqn, portal) = self.run_of(task.node.uuid, |r| (r.iqn.clone(), r.portal));
        let portal = portal.ok_or_else(|| DriverError::failed("no iSCSI portal: the disk was not exposed"))?;
        let mut cfg = InitiatorConfig::new(self.config.initiator_iqn.clone(), iqn.clone());
        cfg.isid = Some(crate::iscsi::initiator::random_isid(task.env.clock.random()));
        let stream = self
            .connector
            .connect(portal)
            .await
            .map_err(|e| DriverError::failed(format!("iSCSI connection to {portal} failed: {e}")))?;
        let disk = Arc::new(
            RemoteDisk::attach(stream, &cfg)
                .await
                .map_err(|e| DriverError::failed(format!("iSCSI login to {iqn} at {portal} failed: {e}")))?,
        );
        self.run_of(task.node.uuid, |r| r.disk = Some(disk));
        Ok(StepResult::next())
    }

    /// The user guide's "Copies user image and configdrive, if present": the agent's own image
    /// writer over the remote disk. Its result waits for the detach (which happens either way).
    async fn copy_image(&self, task: &mut Task) -> Result<StepResult, DriverError> {
        let env = agent_env(task)?;
        let (disk, info, configdrive, iqn, portal) = self.run_of(task.node.uuid, |r| {
            (r.disk.clone(), r.info.clone(), r.configdrive.clone(), r.iqn.clone(), r.portal)
        });
        let (Some(disk), Some(info), Some(portal)) = (disk, info, portal) else {
            return Err(DriverError::failed("no iSCSI session: the disk was not attached"));
        };
        // The partition and disk GUIDs derive from the node, so a simulated run is reproducible.
        let seed = rand::Rng::next_u64(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
            task.node.uuid.as_uuid().as_u64_pair().0,
        ));
        let settings = WriterSettings::default();
        let writer = ImageWriter { http: env.http.as_ref(), settings: &settings, md5_allowed: false };
        let target = Disk::from_device(&format!("iscsi:{portal}/{iqn}"), disk.clone());
        let configdrive = configdrive.or_else(|| info.configdrive.clone());
        let written = writer.write(&target, &info, configdrive, seed).await;
        if self.config.verify && written.is_ok() {
            disk.flush().await.map_err(|e| DriverError::failed(format!("iSCSI flush failed: {e}")))?;
        }
        self.run_of(task.node.uuid, |r| r.written = Some(written.map_err(|e| e.to_string())));
        Ok(StepResult::next())
    }

    /// The user guide's "iSCSI detach": logout, then the write's result.
    async fn detach_disk(&self, task: &mut Task) -> Result<StepResult, DriverError> {
        let run = self.runs.lock().remove(&task.node.uuid).unwrap_or_default();
        let detached = match &run.disk {
            Some(d) => d.detach().await,
            None => Ok(()),
        };
        let written = run.written.unwrap_or_else(|| Err("the image was not written".into())).map_err(|e| {
            DriverError::failed(format!("Writing the image to node {} over iSCSI failed: {e}", task.node.uuid))
        })?;
        detached.map_err(|e| DriverError::failed(format!("iSCSI detach failed: {e}")))?;
        if let Some(root) = written.partition_uuids.get("root uuid").and_then(|v| v.as_str()) {
            task.node.driver_internal_info.insert("root_uuid_or_disk_id".into(), Value::String(root.to_string()));
        }
        Ok(StepResult::next())
    }
}

#[async_trait]
impl DeployInterface for IscsiDeploy {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        agent_base::validate(task)
    }

    fn plans(&self) -> &Plans {
        &PLANS
    }

    async fn run_step(&self, step: Step, task: &mut Task, _ctx: StepCtx<'_>) -> Result<StepResult, DriverError> {
        match step {
            Step::ExposeDisk => self.expose_disk(task).await,
            Step::AttachDisk => self.attach_disk(task).await,
            Step::CopyImage => self.copy_image(task).await,
            Step::DetachDisk => self.detach_disk(task).await,
            other => match agent_base::run_common_step(other, task).await {
                Some(r) => r,
                None => Err(DriverError::Unsupported(format!("the iscsi deploy has no step {other:?}"))),
            },
        }
    }

    /// Also logs out of a session a failed write left open.
    async fn abort(&self, task: &mut Task) -> Result<(), DriverError> {
        let run = self.runs.lock().remove(&task.node.uuid);
        if let Some(disk) = run.and_then(|r| r.disk)
            && let Err(e) = disk.detach().await
        {
            tracing::warn!(node = %task.node.uuid, error = %e, "iSCSI logout after a failure");
        }
        agent_base::abort(task).await
    }
}
