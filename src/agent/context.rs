//! State shared by the agent's REST layer, its extensions and its heartbeat loop.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use ferric_disk::disks::Disk;
use ferric_disk::writer::{ImageWriter, WriterSettings};
use ferric_types::http::HttpClient;

/// Where the agent runs, which decides what `power_off` and `reboot` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// Inside a deploy ramdisk (PID 1 or the ramdisk marker file, and only block devices as
    /// disks): power off and reboot act on the machine.
    Ramdisk,
    /// Anywhere else (a developer machine, CI): power off and reboot only end the agent, with a
    /// warning that the machine was left as it was.
    Process,
    /// A simulated machine (the lab): as `Process`, without the warning, since there ending the
    /// agent is what powering off the ramdisk means.
    Simulated,
}

/// File a deploy ramdisk's build creates to say "this is a ramdisk".
pub const RAMDISK_MARKER: &str = "/etc/ferric-deploy-ramdisk";

impl HostMode {
    /// Ramdisk only when running as init or with the marker file, and every disk is a real
    /// block device.
    pub fn detect(disks: &[Disk]) -> Self {
        let in_ramdisk = std::process::id() == 1 || std::path::Path::new(RAMDISK_MARKER).exists();
        if in_ramdisk && !disks.is_empty() && disks.iter().all(|d| !d.is_file) { Self::Ramdisk } else { Self::Process }
    }
}

/// Tunables of image writing and command handling.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Image download and writing.
    pub writer: WriterSettings,
    /// Smallest disk chosen when no root device hints are given.
    pub min_disk_size: u64,
    /// Longest a `?wait=true` request blocks.
    pub max_wait: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self { writer: WriterSettings::default(), min_disk_size: 0, max_wait: Duration::from_secs(3600) }
    }
}

/// Bounded in-memory copy of the agent's log, returned by `log.collect_system_logs`.
#[derive(Default)]
pub struct LogRing {
    lines: Mutex<VecDeque<String>>,
}

impl LogRing {
    /// Most lines kept.
    pub const CAPACITY: usize = 5000;

    /// Appends a line, dropping the oldest beyond capacity.
    pub fn push(&self, line: String) {
        let mut l = self.lines.lock();
        if l.len() >= Self::CAPACITY {
            l.pop_front();
        }
        l.push_back(line);
    }

    /// All lines, oldest first.
    pub fn text(&self) -> String {
        let l = self.lines.lock();
        let mut s = String::new();
        for line in l.iter() {
            s.push_str(line);
            if !line.ends_with('\n') {
                s.push('\n');
            }
        }
        s
    }
}

/// A `std::io::Write` into a [`LogRing`], for a tracing-subscriber fmt layer
/// (`.with_writer(move || RingWriter(ring.clone()))`).
pub struct RingWriter(pub Arc<LogRing>);

impl std::io::Write for RingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Results of the last image deploy (`standby.get_partition_uuids`).
#[derive(Debug, Default)]
pub struct StandbyState {
    /// `None` until an image was written successfully.
    pub partition_uuids: Option<Map<String, Value>>,
    /// Image last written.
    pub cached_image_id: Option<String>,
}

/// Everything an extension may use.
pub struct AgentContext {
    /// HTTP to the API and image stores.
    pub http: Arc<dyn HttpClient>,
    /// Disks the agent may write.
    pub disks: Vec<Disk>,
    /// Ramdisk or plain process.
    pub mode: HostMode,
    /// Tunables.
    pub settings: AgentSettings,
    /// Node from lookup (or the last step call), for root device hints.
    pub node: Mutex<Option<Value>>,
    /// MD5 checksums accepted (from lookup config).
    pub md5_allowed: AtomicBool,
    /// Deploy results.
    pub standby: Mutex<StandbyState>,
    /// Cancelled to end the agent (power off outside a ramdisk).
    pub shutdown: CancellationToken,
    /// Wakes the heartbeat loop early (after an asynchronous command ends).
    pub force_heartbeat: Notify,
    /// Seeded randomness (command ids, partition GUIDs, heartbeat jitter).
    pub rng: Mutex<StdRng>,
    /// Recent log lines.
    pub logs: Arc<LogRing>,
}

impl AgentContext {
    /// A UUID from the agent's seeded RNG.
    pub fn new_uuid(&self) -> String {
        let mut b = [0u8; 16];
        self.rng.lock().fill_bytes(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }

    /// Whether MD5 checksums are allowed.
    pub fn md5_allowed(&self) -> bool {
        self.md5_allowed.load(Ordering::Relaxed)
    }

    /// Root device hints of the cached node (`properties.root_device`).
    pub fn root_device_hints(&self) -> Option<Map<String, Value>> {
        self.node
            .lock()
            .as_ref()
            .and_then(|n| n.get("properties"))
            .and_then(|p| p.get("root_device"))
            .and_then(|r| r.as_object())
            .cloned()
    }

    /// The disk to install on.
    pub fn install_disk(&self) -> Result<Disk, ferric_types::agent::CommandError> {
        let hints = self.root_device_hints();
        ferric_disk::disks::select_disk(&self.disks, hints.as_ref(), self.settings.min_disk_size)
            .cloned()
            .map_err(ferric_types::agent::CommandError::device_not_found)
    }
}

impl AgentContext {
    /// The image writer over this agent's HTTP client and settings.
    pub fn image_writer(&self) -> ImageWriter<'_> {
        ImageWriter { http: self.http.as_ref(), settings: &self.settings.writer, md5_allowed: self.md5_allowed() }
    }

    /// Partition UUIDs of the last image written, as `standby.get_partition_uuids` reports them.
    pub fn partition_uuids(&self) -> Map<String, Value> {
        self.standby.lock().partition_uuids.clone().unwrap_or_default()
    }
}
