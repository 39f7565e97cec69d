//! QEMU virtual machines behind the [`Machine`] trait: real firmware (SeaBIOS, the NIC's iPXE ROM),
//! real PXE, a real disk file, so the virtual BMC can front a VM exactly as it fronts a simulated
//! machine.
//!
//! A powered-off machine has no process, as a real server behind a BMC has no running CPU:
//! power on spawns `qemu-system-x86_64`, power off quits it. While it runs, QMP (a unix socket)
//! answers for power state and carries reset and the ACPI power button; the serial console goes
//! to a log file that spans power cycles ([`SerialLog`]). QEMU runs with `-no-shutdown`, so a
//! guest that powers itself off stays observable (QMP status `shutdown`, event `SHUTDOWN`) until
//! the next power-state query reaps it.
//!
//! Boot order follows the BMC's boot selection: each disk and NIC gets a `bootindex`, PXE first
//! or disk first, applied at power on and, through `qom-set`, at reset (QEMU regenerates the
//! firmware's boot order on every reset). A non-persistent selection is consumed by the boot it
//! applies to, as real firmware clears the IPMI boot-flags valid bit.

pub mod fixtures;
pub mod qmp;
pub mod serial;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};

pub use fixtures::{AgentSource, BuildProgress, DiskFormat, FixtureError, Fixtures, create_disk, create_overlay};
pub use qmp::{Qmp, QmpError, QmpEvent};
pub use serial::{SerialError, SerialLog};

use crate::machine::{BootDevice, BootSelection, Machine, MachineError, PowerState};
use crate::netns::{NetnsError, NetnsHandle};

/// How long QEMU may take to open its QMP socket after being spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a `quit` may take before the process is killed.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// QMP events remembered per machine.
const MAX_EVENTS: usize = 256;
const MAX_NICS: usize = 8;

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// Pure emulation: slow but works everywhere (including where `/dev/kvm` exists but Linux
    /// guests hang under it, as on the project's CI machines).
    #[default]
    Tcg,
    Kvm,
}

impl Accel {
    /// `FERRIC_QEMU_ACCEL=kvm` opts in to KVM; anything else (or unset) is TCG. Use
    /// [`Accel::detect`] to choose by trying.
    pub fn from_env() -> Accel {
        match std::env::var("FERRIC_QEMU_ACCEL").as_deref() {
            Ok("kvm") => Accel::Kvm,
            _ => Accel::Tcg,
        }
    }

    /// KVM if a Linux guest actually boots under it (one probe boot per process, at most
    /// `timeout`), else TCG. `FERRIC_QEMU_ACCEL=tcg|kvm` skips the probe.
    pub async fn detect(fixtures: &Fixtures, timeout: Duration) -> Accel {
        static DETECTED: tokio::sync::OnceCell<Accel> = tokio::sync::OnceCell::const_new();
        match std::env::var("FERRIC_QEMU_ACCEL").as_deref() {
            Ok("kvm") => return Accel::Kvm,
            Ok("tcg") => return Accel::Tcg,
            _ => {}
        }
        *DETECTED
            .get_or_init(|| async {
                if !Path::new("/dev/kvm").exists() {
                    return Accel::Tcg;
                }
                match kvm_boots_linux(fixtures, timeout).await {
                    Ok(true) => Accel::Kvm,
                    Ok(false) => Accel::Tcg,
                    Err(e) => {
                        tracing::info!(error = %e, "KVM probe failed; using TCG");
                        Accel::Tcg
                    }
                }
            })
            .await
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Accel::Tcg => &["-accel", "tcg"],
            // Not `-cpu host`: under nested KVM QEMU aborts setting MSRs the host CPU lists.
            Accel::Kvm => &["-accel", "kvm"],
        }
    }
}

/// Boots the deploy kernel and ramdisk under KVM and reports whether the ramdisk's marker shows
/// within `timeout` (a guest that hangs under a broken KVM never prints it).
pub async fn kvm_boots_linux(fixtures: &Fixtures, timeout: Duration) -> Result<bool, QemuError> {
    let dir = std::env::temp_dir().join(format!("ferric-kvm-probe-{}", std::process::id()));
    let mut config = QemuConfig::new("kvm-probe", &dir);
    config.accel = Accel::Kvm;
    config.kernel_boot = Some(KernelBoot {
        kernel: fixtures.deploy_kernel.clone(),
        initrd: Some(fixtures.deploy_ramdisk.clone()),
        append: "console=ttyS0".into(),
    });
    let vm = QemuMachine::new(config)?;
    vm.start().await?;
    let ok = vm.wait_for_serial("FERRIC-RAMDISK-BOOTED", 0, timeout).await.is_ok();
    vm.stop().await?;
    drop(vm);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ok)
}

/// Limits how many VMs tests in one process run at once (`FERRIC_QEMU_PARALLEL`, default 1):
/// TCG guests on a 2-core machine slow each other down past every timeout. Hold the permit for
/// as long as the VM runs.
pub async fn vm_slot() -> SemaphorePermit<'static> {
    static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
        let n = std::env::var("FERRIC_QEMU_PARALLEL")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| (1..=16).contains(&n))
            .unwrap_or(1);
        Semaphore::new(n)
    });
    match SLOTS.acquire().await {
        Ok(permit) => permit,
        // The semaphore is never closed.
        Err(_) => unreachable!("VM slot semaphore closed"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("invalid machine configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QEMU exited ({status}): {stderr}")]
    Exited { status: String, stderr: String },
    #[error("QEMU did not open its QMP socket within {0:?}")]
    Startup(Duration),
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Serial(#[from] SerialError),
    #[error("machine is powered off")]
    PoweredOff,
    #[error("no QMP event {0} within {1:?}")]
    EventTimeout(String, Duration),
}

impl From<QemuError> for MachineError {
    fn from(e: QemuError) -> MachineError {
        match e {
            QemuError::Qmp(QmpError::Timeout(_) | QmpError::Closed) => MachineError::Unresponsive,
            other => MachineError::Failed(other.to_string()),
        }
    }
}

/// Emulated NIC models; both carry an iPXE option ROM (from ipxe-qemu), so both PXE-boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NicModel {
    #[default]
    VirtioNet,
    E1000,
}

impl NicModel {
    fn device(self) -> &'static str {
        match self {
            NicModel::VirtioNet => "virtio-net-pci",
            NicModel::E1000 => "e1000",
        }
    }
}

/// One NIC: its MAC (the one enrolled as the node's port) and the tap it is plugged into (a tap
/// in the machine's network namespace; `None` leaves the cable unplugged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub mac: [u8; 6],
    pub model: NicModel,
    pub tap: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskBus {
    #[default]
    Virtio,
    Ide,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub format: DiskFormat,
    pub bus: DiskBus,
}

/// Direct kernel boot (`-kernel/-initrd/-append`), bypassing firmware boot order: for tests of
/// a kernel and ramdisk that need no PXE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub append: String,
}

/// Everything that defines a QEMU machine.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// Stable name: `-name`, logs, traces. Letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Where the serial log (`serial.log`), QMP socket (`qmp.sock`) and QEMU's stderr
    /// (`qemu.stderr`) live. Keep the path short: a unix socket path has 107 bytes at most.
    pub state_dir: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    pub disk: Option<Disk>,
    pub nics: Vec<Nic>,
    pub kernel_boot: Option<KernelBoot>,
    /// Boot order with no BMC override: [`BootDevice::Pxe`] for network first, anything else
    /// for disk first (the other device follows either way, as firmware falls through).
    pub default_boot: BootDevice,
    /// An IDE CD drive for virtual media (a Redfish BMC's `InsertMedia` loads it through QMP).
    pub cdrom: bool,
    /// Run QEMU inside this network namespace (where its taps are).
    pub netns: Option<NetnsHandle>,
    pub qemu_binary: PathBuf,
    /// Appended to the command line as is.
    pub extra_args: Vec<String>,
}

impl QemuConfig {
    /// 512 MiB, 1 CPU, accelerator from the environment, disk first, no devices.
    pub fn new(name: impl Into<String>, state_dir: impl Into<PathBuf>) -> QemuConfig {
        QemuConfig {
            name: name.into(),
            state_dir: state_dir.into(),
            memory_mib: 512,
            cpus: 1,
            accel: Accel::from_env(),
            disk: None,
            nics: Vec::new(),
            kernel_boot: None,
            default_boot: BootDevice::Disk,
            cdrom: false,
            netns: None,
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            extra_args: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), QemuError> {
        let bad = |m: String| Err(QemuError::Config(m));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return bad(format!("bad name {:?}", self.name));
        }
        if !(64..=16384).contains(&self.memory_mib) {
            return bad(format!("memory {} MiB out of 64..=16384", self.memory_mib));
        }
        if !(1..=8).contains(&self.cpus) {
            return bad(format!("{} CPUs out of 1..=8", self.cpus));
        }
        if self.nics.len() > MAX_NICS {
            return bad(format!("{} NICs, at most {MAX_NICS}", self.nics.len()));
        }
        for nic in &self.nics {
            if nic.mac[0] & 1 != 0 {
                return bad(format!("{} is a multicast MAC", format_mac(nic.mac)));
            }
        }
        let sock = self.state_dir.join("qmp.sock");
        if sock.as_os_str().len() > 107 {
            return bad(format!("state dir too long for a unix socket: {}", sock.display()));
        }
        Ok(())
    }
}

/// Which device the firmware tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootTarget {
    Disk,
    Network,
    /// The virtual media CD drive (when the machine has one).
    Cdrom,
}

impl BootTarget {
    fn resolve(device: BootDevice, default: BootDevice, cdrom: bool) -> BootTarget {
        match device {
            BootDevice::Pxe => BootTarget::Network,
            BootDevice::Disk => BootTarget::Disk,
            BootDevice::Cdrom if cdrom => BootTarget::Cdrom,
            BootDevice::None | BootDevice::Cdrom | BootDevice::Bios => match default {
                BootDevice::Pxe => BootTarget::Network,
                _ => BootTarget::Disk,
            },
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

struct Running {
    child: std::process::Child,
    qmp: Qmp,
    first: BootTarget,
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            crate::process::kill_and_wait(self.child.id() as i32, Duration::from_secs(2));
        }
    }
}

/// A QEMU VM driven like a server behind a BMC.
pub struct QemuMachine {
    config: QemuConfig,
    serial: SerialLog,
    qmp_path: PathBuf,
    stderr_path: PathBuf,
    boot: std::sync::Mutex<BootSelection>,
    /// The image in the virtual CD drive (downloaded to the state directory).
    media: std::sync::Mutex<Option<PathBuf>>,
    running: Mutex<Option<Running>>,
    events: std::sync::Mutex<VecDeque<(u64, QmpEvent)>>,
    next_event_seq: AtomicU64,
    power_ons: AtomicU64,
}

impl std::fmt::Debug for QemuMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuMachine")
            .field("name", &self.config.name)
            .field("state_dir", &self.config.state_dir)
            .finish()
    }
}

impl QemuMachine {
    /// Checks the configuration and prepares the state directory (an empty serial log). Nothing
    /// runs until power on.
    pub fn new(config: QemuConfig) -> Result<QemuMachine, QemuError> {
        config.validate()?;
        let io = |context: String| move |source| QemuError::Io { context, source };
        std::fs::create_dir_all(&config.state_dir).map_err(io(format!("create {}", config.state_dir.display())))?;
        let serial_path = config.state_dir.join("serial.log");
        std::fs::write(&serial_path, b"").map_err(io(format!("create {}", serial_path.display())))?;
        Ok(QemuMachine {
            serial: SerialLog::new(serial_path),
            qmp_path: config.state_dir.join("qmp.sock"),
            stderr_path: config.state_dir.join("qemu.stderr"),
            config,
            boot: std::sync::Mutex::new(BootSelection::default()),
            media: std::sync::Mutex::new(None),
            running: Mutex::new(None),
            events: std::sync::Mutex::new(VecDeque::new()),
            next_event_seq: AtomicU64::new(0),
            power_ons: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    pub fn serial(&self) -> &SerialLog {
        &self.serial
    }

    /// How many times a QEMU process was started (power on, or off-then-on).
    pub fn power_on_count(&self) -> u64 {
        self.power_ons.load(Ordering::Relaxed)
    }

    /// PID of the QEMU process, if powered on.
    pub async fn pid(&self) -> Option<u32> {
        self.running.lock().await.as_ref().map(|r| r.child.id())
    }

    /// Which device the running machine's firmware tries first.
    pub async fn boot_target(&self) -> Option<BootTarget> {
        self.running.lock().await.as_ref().map(|r| r.first)
    }

    /// Powers on with the current boot selection (an error if already on).
    pub async fn start(&self) -> Result<(), QemuError> {
        let mut guard = self.running.lock().await;
        if guard.is_some() {
            return Err(QemuError::Config("already running".into()));
        }
        let target = self.take_boot();
        *guard = Some(self.spawn(target).await?);
        Ok(())
    }

    /// Hard power off (QMP `quit`, SIGKILL if that does not end the process).
    pub async fn stop(&self) -> Result<(), QemuError> {
        let running = self.running.lock().await.take();
        if let Some(r) = running {
            self.shut(r).await;
        }
        Ok(())
    }

    /// Runs a QMP command on the running machine.
    pub async fn qmp(&self, command: &str, arguments: Option<Value>) -> Result<Value, QemuError> {
        let mut guard = self.running.lock().await;
        let r = guard.as_mut().ok_or(QemuError::PoweredOff)?;
        let out = r.qmp.execute(command, arguments).await;
        self.absorb_events(&mut r.qmp);
        Ok(out?)
    }

    /// QMP events seen so far, with their sequence numbers (oldest first, at most 256).
    pub fn events(&self) -> Vec<(u64, QmpEvent)> {
        self.lock_events().iter().cloned().collect()
    }

    /// Sequence number the next event will get: pass to [`QemuMachine::wait_for_event`] to wait
    /// only for events after now.
    pub fn event_seq(&self) -> u64 {
        self.next_event_seq.load(Ordering::Relaxed)
    }

    /// Waits for a QMP event named `name` with sequence number `since` or later.
    pub async fn wait_for_event(&self, name: &str, since: u64, timeout: Duration) -> Result<QmpEvent, QemuError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(ev) = self.lock_events().iter().find(|(seq, ev)| *seq >= since && ev.event == name) {
                return Ok(ev.1.clone());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(QemuError::EventTimeout(name.to_string(), timeout));
            }
            let mut guard = self.running.lock().await;
            let Some(r) = guard.as_mut() else {
                return Err(QemuError::PoweredOff);
            };
            let next = r.qmp.next_event(left.min(Duration::from_millis(250))).await;
            if let Ok(Some(ev)) = next {
                self.record_event(ev);
            }
            self.absorb_events(&mut r.qmp);
            drop(guard);
        }
    }

    /// Waits for a serial console line containing `needle`, written at or after byte `from`
    /// (see [`SerialLog::position`]); gives up early if the QEMU process exits.
    pub async fn wait_for_serial(&self, needle: &str, from: u64, timeout: Duration) -> Result<String, QemuError> {
        let line = self
            .serial
            .wait_for_while(needle, from, timeout, || {
                let mut guard = self.running.try_lock().ok()?;
                let r = guard.as_mut()?;
                match r.child.try_wait() {
                    Ok(Some(status)) => Some(format!("QEMU exited ({status})")),
                    _ => None,
                }
            })
            .await?;
        Ok(line)
    }

    /// The QEMU command line for a boot with `target` first (for logs and tests).
    pub fn command_line(&self, target: BootTarget) -> Vec<OsString> {
        let c = &self.config;
        let mut a: Vec<OsString> = Vec::new();
        let name = format!("guest={},debug-threads=on", c.name);
        let (mem, cpus) = (c.memory_mib.to_string(), c.cpus.to_string());
        let fixed = ["-name", &name, "-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc"];
        a.extend(fixed.iter().map(OsString::from));
        a.extend(c.accel.args().iter().map(OsString::from));
        // virtio-rng: the host's entropy, or the guest's getrandom() blocks for minutes under TCG
        // (no RDRAND on the default CPU model, jitter entropy starves) and TLS/agent start stalls.
        let more =
            ["-m", &mem, "-smp", &cpus, "-no-shutdown", "-rtc", "base=utc", "-device", "virtio-rng-pci", "-chardev"];
        a.extend(more.iter().map(OsString::from));
        a.push(opt_path("file,id=serial0,append=on,path=", self.serial.path()));
        a.extend(["-serial", "chardev:serial0", "-qmp"].map(OsString::from));
        a.push(opt_path("unix:", &self.qmp_path).tap_push(",server=on,wait=off"));

        let (disk_index, nic_indexes, cd_index) = boot_indexes(target, c.disk.is_some(), c.nics.len(), c.cdrom);
        if let Some(index) = cd_index {
            a.push("-drive".into());
            let media = self.media.lock().unwrap_or_else(|p| p.into_inner()).clone();
            a.push(match media {
                Some(path) => opt_path("if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=", &path),
                None => "if=none,id=cd0,media=cdrom,readonly=on".into(),
            });
            a.push("-device".into());
            a.push(format!("ide-cd,drive=cd0,bus=ide.1,id=cd0dev,bootindex={index}").into());
        }
        if let (Some(disk), Some(index)) = (&c.disk, disk_index) {
            a.push("-drive".into());
            a.push(
                opt_path("if=none,id=drive0,file=", &disk.path).tap_push(&format!(",format={}", disk.format.as_str())),
            );
            a.push("-device".into());
            a.push(
                match disk.bus {
                    DiskBus::Virtio => {
                        format!("virtio-blk-pci,drive=drive0,id=disk0,bootindex={index}")
                    }
                    DiskBus::Ide => {
                        format!("ide-hd,drive=drive0,bus=ide.0,id=disk0,bootindex={index}")
                    }
                }
                .into(),
            );
        }
        for (i, (nic, index)) in c.nics.iter().zip(nic_indexes).enumerate() {
            let mut device = format!("{},id=nic{i},mac={},bootindex={index}", nic.model.device(), format_mac(nic.mac));
            if let Some(tap) = &nic.tap {
                a.push("-netdev".into());
                a.push(format!("tap,id=net{i},ifname={tap},script=no,downscript=no").into());
                device.push_str(&format!(",netdev=net{i}"));
            }
            a.push("-device".into());
            a.push(device.into());
        }
        if let Some(k) = &c.kernel_boot {
            a.push("-kernel".into());
            a.push(k.kernel.clone().into());
            if let Some(initrd) = &k.initrd {
                a.push("-initrd".into());
                a.push(initrd.clone().into());
            }
            a.push("-append".into());
            a.push(k.append.clone().into());
        }
        a.extend(c.extra_args.iter().map(OsString::from));
        a
    }

    /// Resolves the boot selection for a boot now, consuming it unless persistent.
    fn take_boot(&self) -> BootTarget {
        let mut sel = self.boot.lock().unwrap_or_else(|p| p.into_inner());
        let target = BootTarget::resolve(sel.device, self.config.default_boot, self.config.cdrom);
        if !sel.persistent {
            *sel = BootSelection::default();
        }
        target
    }

    async fn spawn(&self, target: BootTarget) -> Result<Running, QemuError> {
        let c = &self.config;
        let io = |context: String| move |source| QemuError::Io { context, source };
        match std::fs::remove_file(&self.qmp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("remove {}", self.qmp_path.display()))(e)),
        }
        self.serial.note(&format!(
            "power on, {} first",
            match target {
                BootTarget::Disk => "disk",
                BootTarget::Network => "network",
                BootTarget::Cdrom => "cdrom",
            }
        ))?;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .map_err(io(format!("open {}", self.stderr_path.display())))?;
        let stderr_start = stderr.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = std::process::Command::new(&c.qemu_binary);
        cmd.args(self.command_line(target)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        if let Some(ns) = &c.netns {
            ns.configure(&mut cmd)?;
        }
        let mut child = cmd.spawn().map_err(io(format!("spawn {}", c.qemu_binary.display())))?;
        self.power_ons.fetch_add(1, Ordering::Relaxed);
        tracing::info!(machine = %c.name, pid = child.id(), ?target, "QEMU started");

        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        let qmp = loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(QemuError::Exited { status: status.to_string(), stderr: self.stderr_since(stderr_start) });
            }
            if self.qmp_path.exists() {
                match Qmp::connect(&self.qmp_path).await {
                    Ok(q) => break q,
                    Err(e) => tracing::debug!(error = %e, "QMP not ready yet"),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                crate::process::kill_and_wait(child.id() as i32, Duration::from_secs(2));
                return Err(QemuError::Startup(STARTUP_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Running { child, qmp, first: target })
    }

    /// Ends a running QEMU: `quit`, then SIGKILL if it lingers.
    async fn shut(&self, mut r: Running) {
        if matches!(r.child.try_wait(), Ok(None)) {
            // `quit` may lose its reply to the exit itself; either way, watch the process.
            let _ = r.qmp.execute("quit", None).await;
            let deadline = tokio::time::Instant::now() + QUIT_TIMEOUT;
            while matches!(r.child.try_wait(), Ok(None)) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.absorb_events(&mut r.qmp);
        tracing::info!(machine = %self.config.name, "QEMU stopped");
        // Drop kills it if `quit` did not.
        drop(r);
        let _ = std::fs::remove_file(&self.qmp_path);
    }

    /// Whether `r` is still a powered-on machine: its process runs and its guest has not
    /// powered itself off.
    async fn is_on(&self, r: &mut Running) -> Result<bool, QemuError> {
        if !matches!(r.child.try_wait(), Ok(None)) {
            return Ok(false);
        }
        let status = r.qmp.execute("query-status", None).await;
        self.absorb_events(&mut r.qmp);
        match status {
            Ok(v) => Ok(v.get("status").and_then(Value::as_str) != Some("shutdown")),
            Err(e) => {
                if !matches!(r.child.try_wait(), Ok(None)) {
                    Ok(false)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Moves the boot order of a running machine (takes effect at the next reset).
    async fn set_boot_order(&self, r: &mut Running, target: BootTarget) -> Result<(), QemuError> {
        let c = &self.config;
        let (disk_index, nic_indexes, cd_index) = boot_indexes(target, c.disk.is_some(), c.nics.len(), c.cdrom);
        let mut set = Vec::new();
        if let Some(i) = cd_index {
            set.push(("cd0dev".to_string(), i));
        }
        if let Some(i) = disk_index {
            set.push(("disk0".to_string(), i));
        }
        for (n, i) in nic_indexes.into_iter().enumerate() {
            set.push((format!("nic{n}"), i));
        }
        // Indexes must stay unique at every step: clear them all, then assign.
        for (id, _) in &set {
            r.qmp
                .execute(
                    "qom-set",
                    Some(json!({"path": format!("/machine/peripheral/{id}"), "property": "bootindex", "value": -1})),
                )
                .await?;
        }
        for (id, i) in &set {
            r.qmp
                .execute(
                    "qom-set",
                    Some(json!({"path": format!("/machine/peripheral/{id}"), "property": "bootindex", "value": i})),
                )
                .await?;
        }
        r.first = target;
        Ok(())
    }

    fn stderr_since(&self, start: u64) -> String {
        let all = std::fs::read(&self.stderr_path).unwrap_or_default();
        let from = (start as usize).min(all.len());
        String::from_utf8_lossy(&all[from..]).trim().to_string()
    }

    fn lock_events(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, QmpEvent)>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_event(&self, ev: QmpEvent) {
        tracing::debug!(machine = %self.config.name, event = %ev.event, "QMP event");
        let seq = self.next_event_seq.fetch_add(1, Ordering::Relaxed);
        let mut events = self.lock_events();
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back((seq, ev));
    }

    fn absorb_events(&self, qmp: &mut Qmp) {
        for ev in qmp.take_events() {
            self.record_event(ev);
        }
    }
}

impl Drop for QemuMachine {
    fn drop(&mut self) {
        // Running's own Drop kills the process.
        drop(self.running.get_mut().take());
        let _ = std::fs::remove_file(&self.qmp_path);
    }
}

#[async_trait]
impl Machine for QemuMachine {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn macs(&self) -> Vec<[u8; 6]> {
        self.config.nics.iter().map(|n| n.mac).collect()
    }

    async fn power_state(&self) -> Result<PowerState, MachineError> {
        let mut guard = self.running.lock().await;
        let Some(r) = guard.as_mut() else {
            return Ok(PowerState::Off);
        };
        if self.is_on(r).await? {
            return Ok(PowerState::On);
        }
        // The guest powered off (or QEMU died): reap it, so off means no process.
        if let Some(r) = guard.take() {
            self.shut(r).await;
        }
        Ok(PowerState::Off)
    }

    async fn power_on(&self) -> Result<(), MachineError> {
        let mut guard = self.running.lock().await;
        if let Some(r) = guard.as_mut() {
            if self.is_on(r).await? {
                return Ok(());
            }
            if let Some(r) = guard.take() {
                self.shut(r).await;
            }
        }
        let target = self.take_boot();
        *guard = Some(self.spawn(target).await?);
        Ok(())
    }

    async fn power_off(&self) -> Result<(), MachineError> {
        Ok(self.stop().await?)
    }

    async fn soft_off(&self) -> Result<(), MachineError> {
        let mut guard = self.running.lock().await;
        let Some(r) = guard.as_mut() else {
            return Ok(());
        };
        let out = r.qmp.execute("system_powerdown", None).await;
        self.absorb_events(&mut r.qmp);
        out.map(drop).map_err(|e| QemuError::from(e).into())
    }

    async fn reset(&self) -> Result<(), MachineError> {
        let mut guard = self.running.lock().await;
        let Some(r) = guard.as_mut() else {
            return Err(QemuError::PoweredOff.into());
        };
        // A guest that powered itself off is off: reset does not bring it back.
        if !self.is_on(r).await? {
            if let Some(r) = guard.take() {
                self.shut(r).await;
            }
            return Err(QemuError::PoweredOff.into());
        }
        let Some(r) = guard.as_mut() else {
            return Err(QemuError::PoweredOff.into());
        };
        let target = self.take_boot();
        if r.first != target {
            self.set_boot_order(r, target).await?;
        }
        self.serial.note("reset").map_err(QemuError::from)?;
        let out = r.qmp.execute("system_reset", None).await;
        self.absorb_events(&mut r.qmp);
        out.map(drop).map_err(|e| QemuError::from(e).into())
    }

    async fn set_boot(&self, selection: BootSelection) -> Result<(), MachineError> {
        *self.boot.lock().unwrap_or_else(|p| p.into_inner()) = selection;
        Ok(())
    }

    async fn boot(&self) -> Result<BootSelection, MachineError> {
        Ok(*self.boot.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn inventory(&self) -> crate::machine::Inventory {
        let disks = self
            .config
            .disk
            .as_ref()
            .and_then(|d| std::fs::metadata(&d.path).ok())
            .map(|m| vec![m.len()])
            .unwrap_or_default();
        crate::machine::Inventory {
            cpus: self.config.cpus,
            memory_mib: u64::from(self.config.memory_mib),
            disks,
            ..Default::default()
        }
    }

    /// Fetches the image now, as a BMC does, into the state directory, then loads it into the
    /// CD drive through QMP when the machine runs (else at the next power on).
    async fn insert_media(&self, url: &str) -> Result<(), MachineError> {
        if !self.config.cdrom {
            return Err(MachineError::Unsupported("virtual media (no CD drive)"));
        }
        let path = self.config.state_dir.join("vmedia.iso");
        download(url, &path).await.map_err(MachineError::Failed)?;
        *self.media.lock().unwrap_or_else(|p| p.into_inner()) = Some(path.clone());
        let mut guard = self.running.lock().await;
        if let Some(r) = guard.as_mut() {
            let out = r
                .qmp
                .execute(
                    "blockdev-change-medium",
                    Some(json!({"id": "cd0dev", "filename": path.to_string_lossy(), "format": "raw",
                                "read-only-mode": "read-only"})),
                )
                .await;
            self.absorb_events(&mut r.qmp);
            out.map_err(|e| MachineError::from(QemuError::from(e)))?;
        }
        Ok(())
    }

    async fn eject_media(&self) -> Result<(), MachineError> {
        let had = self.media.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut guard = self.running.lock().await;
        if let (Some(r), true) = (guard.as_mut(), self.config.cdrom) {
            let out = r.qmp.execute("eject", Some(json!({"id": "cd0dev", "force": true}))).await;
            self.absorb_events(&mut r.qmp);
            out.map_err(|e| MachineError::from(QemuError::from(e)))?;
        }
        if let Some(path) = had {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

/// GET `url` into `path` (a BMC fetching virtual media); any failure as text for the BMC's
/// error message.
async fn download(url: &str, path: &Path) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| e.to_string())?;
    let mut resp = client.get(url).send().await.map_err(|e| format!("fetching {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("fetching {url}: HTTP {}", resp.status()));
    }
    let tmp = path.with_extension("part");
    let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| format!("{}: {e}", tmp.display()))?;
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("fetching {url}: {e}"))? {
        file.write_all(&chunk).await.map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    drop(file);
    tokio::fs::rename(&tmp, path).await.map_err(|e| format!("{}: {e}", path.display()))
}

/// Boot indexes for the disk, each NIC and the CD drive (if any) with `target` first; the CD
/// drive comes last unless it is the target.
fn boot_indexes(target: BootTarget, has_disk: bool, nics: usize, cdrom: bool) -> (Option<i32>, Vec<i32>, Option<i32>) {
    let n = nics as i32;
    let last = 2 + n;
    match target {
        BootTarget::Disk => (has_disk.then_some(1), (0..n).map(|i| 2 + i).collect(), cdrom.then_some(last)),
        BootTarget::Network => (has_disk.then_some(1 + n), (0..n).map(|i| 1 + i).collect(), cdrom.then_some(last)),
        BootTarget::Cdrom => (has_disk.then_some(2), (0..n).map(|i| 3 + i).collect(), cdrom.then_some(1)),
    }
}

/// `prefix` + a path, with commas doubled as QEMU's option syntax requires.
fn opt_path(prefix: &str, path: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut bytes = prefix.as_bytes().to_vec();
    for &b in path.as_os_str().as_bytes() {
        bytes.push(b);
        if b == b',' {
            bytes.push(b',');
        }
    }
    OsString::from_vec(bytes)
}

trait TapPush {
    fn tap_push(self, s: &str) -> Self;
}

impl TapPush for OsString {
    fn tap_push(mut self, s: &str) -> Self {
        self.push(s);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(dir: &Path) -> QemuMachine {
        let mut c = QemuConfig::new("vm-1", dir);
        c.accel = Accel::Tcg;
        c.disk = Some(Disk { path: dir.join("a,b.qcow2"), format: DiskFormat::Qcow2, bus: DiskBus::Virtio });
        c.nics = vec![
            Nic { mac: [0x52, 0x54, 0, 0, 0, 1], model: NicModel::VirtioNet, tap: Some("tap0".into()) },
            Nic { mac: [0x52, 0x54, 0, 0, 0, 2], model: NicModel::E1000, tap: None },
        ];
        QemuMachine::new(c).unwrap()
    }

    fn joined(args: Vec<OsString>) -> String {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn command_line_orders_boot_devices() {
        let dir = tempfile::tempdir().unwrap();
        let vm = machine(dir.path());
        let disk_first = joined(vm.command_line(BootTarget::Disk));
        assert!(disk_first.contains("-accel tcg"));
        assert!(disk_first.contains("file=") && disk_first.contains("a,,b.qcow2,format=qcow2"));
        assert!(disk_first.contains("virtio-blk-pci,drive=drive0,id=disk0,bootindex=1"));
        assert!(disk_first.contains("virtio-net-pci,id=nic0,mac=52:54:00:00:00:01,bootindex=2,netdev=net0"));
        assert!(disk_first.contains("tap,id=net0,ifname=tap0,script=no,downscript=no"));
        assert!(disk_first.contains("e1000,id=nic1,mac=52:54:00:00:00:02,bootindex=3"));
        assert!(!disk_first.contains("netdev=net1"));
        let net_first = joined(vm.command_line(BootTarget::Network));
        assert!(net_first.contains("bootindex=1,netdev=net0"));
        assert!(net_first.contains("id=disk0,bootindex=3"));
    }

    #[tokio::test]
    async fn non_persistent_boot_selection_is_consumed_by_one_boot() {
        let dir = tempfile::tempdir().unwrap();
        let vm = machine(dir.path());
        let pxe_once = BootSelection { device: BootDevice::Pxe, persistent: false, efi: false };
        vm.set_boot(pxe_once).await.unwrap();
        assert_eq!(vm.boot().await.unwrap(), pxe_once);
        assert_eq!(vm.take_boot(), BootTarget::Network);
        assert_eq!(vm.boot().await.unwrap().device, BootDevice::None);
        assert_eq!(vm.take_boot(), BootTarget::Disk);
        let pxe_always = BootSelection { persistent: true, ..pxe_once };
        vm.set_boot(pxe_always).await.unwrap();
        assert_eq!(vm.take_boot(), BootTarget::Network);
        assert_eq!(vm.take_boot(), BootTarget::Network);
        assert_eq!(vm.boot().await.unwrap(), pxe_always);
    }

    #[test]
    fn bad_configs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = QemuConfig::new("bad name", dir.path());
        assert!(QemuMachine::new(c.clone()).is_err());
        c.name = "ok".into();
        c.nics.push(Nic { mac: [1, 0, 0, 0, 0, 0], model: NicModel::E1000, tap: None });
        assert!(matches!(QemuMachine::new(c), Err(QemuError::Config(m)) if m.contains("multicast")));
    }

    #[tokio::test]
    async fn an_off_machine_has_no_process() {
        let dir = tempfile::tempdir().unwrap();
        let vm = machine(dir.path());
        assert_eq!(vm.power_state().await.unwrap(), PowerState::Off);
        vm.power_off().await.unwrap();
        vm.soft_off().await.unwrap();
        assert!(vm.reset().await.is_err());
        assert_eq!(vm.pid().await, None);
    }
}
