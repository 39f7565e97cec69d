//! A private network for VM tests: a network namespace holding a bridge (192.0.2.1/24,
//! 2001:db8::1/64) and one tap per VM, with ways to run processes, threads and tokio runtimes
//! inside it. Everything is removed on drop, also when the test panics.
//!
//! Devices live inside the namespace, so their names (`br0`, `tap0`, ...) never clash with the
//! host's or another test's; only the namespace name is unique (`ferric-<pid>-<n>`). Namespaces
//! left behind by a test process that was killed outright are removed by the next
//! [`NetNs::create`].
//!
//! A socket belongs to the namespace of the thread that created it, for life. So a server can
//! bind its listener in [`NetNs::run`] and then serve it from any runtime; a client that connects
//! to a VM must create its socket inside too ([`NetNs::runtime`] makes every runtime thread do so).

use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// The bridge every tap is attached to.
pub const BRIDGE: &str = "br0";
/// The bridge's addresses: where the test's DHCP/TFTP/HTTP services listen.
pub const BRIDGE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const BRIDGE_V4_PREFIX: u8 = 24;
pub const BRIDGE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const BRIDGE_V6_PREFIX: u8 = 64;
/// At most this many taps per namespace (bounds a runaway test).
pub const MAX_TAPS: usize = 64;

const NAME_PREFIX: &str = "ferric-";
const NETNS_DIR: &str = "/run/netns";

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("cannot run ip: {0}")]
    Spawn(std::io::Error),
    #[error("cannot open namespace {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("setns into {name}: {source}")]
    Setns {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("too many taps (at most {MAX_TAPS})")]
    TooManyTaps,
    #[error("thread inside the namespace: {0}")]
    Thread(String),
}

/// A cheap, cloneable reference to a namespace by name, for code that only needs to enter it
/// (for example a QEMU machine spawning its process there). It does not keep the namespace
/// alive; [`NetNs`] owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsHandle {
    name: String,
}

impl NetnsHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    fn open(&self) -> Result<OwnedFd, NetnsError> {
        let path = self.path();
        std::fs::File::open(&path).map(OwnedFd::from).map_err(|source| NetnsError::Open { path, source })
    }

    /// Moves the calling thread into the namespace (for good: use a dedicated thread).
    pub fn enter_current_thread(&self) -> Result<(), NetnsError> {
        let fd = self.open()?;
        move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(|e| NetnsError::Setns { name: self.name.clone(), source: e.into() })
    }

    /// Makes `cmd` start its process inside the namespace.
    pub fn configure(&self, cmd: &mut Command) -> Result<(), NetnsError> {
        use std::os::unix::process::CommandExt;
        let fd = self.open()?;
        // SAFETY: the closure runs in the forked child before exec and only calls setns(2),
        // which is async-signal-safe; the fd was opened before the fork and outlives the call.
        unsafe {
            cmd.pre_exec(move || {
                move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network)).map_err(std::io::Error::from)
            });
        }
        Ok(())
    }

    /// Like [`NetnsHandle::configure`], for tokio's `Command`.
    pub fn configure_tokio(&self, cmd: &mut tokio::process::Command) -> Result<(), NetnsError> {
        let fd = self.open()?;
        // SAFETY: as in `configure`.
        unsafe {
            cmd.pre_exec(move || {
                move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network)).map_err(std::io::Error::from)
            });
        }
        Ok(())
    }
}

/// A private network namespace with a bridge; removed (with every process still in it) on drop.
#[derive(Debug)]
pub struct NetNs {
    handle: NetnsHandle,
    taps: Mutex<Vec<String>>,
}

impl NetNs {
    /// Creates the namespace: loopback up, bridge `br0` up with 192.0.2.1/24 and 2001:db8::1/64.
    pub fn create() -> Result<NetNs, NetnsError> {
        remove_stale();
        let name = format!("{NAME_PREFIX}{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name])?;
        // From here on, drop cleans up whatever part was made.
        let ns = NetNs { handle: NetnsHandle { name }, taps: Mutex::new(Vec::new()) };
        let n = ns.name().to_string();
        let v4 = format!("{BRIDGE_V4}/{BRIDGE_V4_PREFIX}");
        let v6 = format!("{BRIDGE_V6}/{BRIDGE_V6_PREFIX}");
        ip(&["-n", &n, "link", "set", "lo", "up"])?;
        ip(&["-n", &n, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"])?;
        ip(&["-n", &n, "addr", "add", &v4, "dev", BRIDGE])?;
        ip(&["-n", &n, "addr", "add", &v6, "dev", BRIDGE, "nodad"])?;
        ip(&["-n", &n, "link", "set", BRIDGE, "up"])?;
        tracing::debug!(netns = %n, "created network namespace");
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.handle.name
    }

    pub fn handle(&self) -> NetnsHandle {
        self.handle.clone()
    }

    /// Adds a persistent tap (`tap0`, `tap1`, ...) attached to the bridge and returns its name;
    /// a QEMU started inside the namespace opens it with `-netdev tap,ifname=NAME`.
    pub fn add_tap(&self) -> Result<String, NetnsError> {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        if taps.len() >= MAX_TAPS {
            return Err(NetnsError::TooManyTaps);
        }
        let tap = format!("tap{}", taps.len());
        let n = self.name();
        ip(&["-n", n, "tuntap", "add", "dev", &tap, "mode", "tap"])?;
        taps.push(tap.clone());
        ip(&["-n", n, "link", "set", &tap, "master", BRIDGE])?;
        ip(&["-n", n, "link", "set", &tap, "up"])?;
        Ok(tap)
    }

    /// Taps made so far.
    pub fn taps(&self) -> Vec<String> {
        self.taps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A `std::process::Command` whose process runs inside the namespace. Processes still
    /// running when the namespace is dropped are killed.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Result<Command, NetnsError> {
        let mut cmd = Command::new(program);
        self.handle.configure(&mut cmd)?;
        Ok(cmd)
    }

    /// A `tokio::process::Command` whose process runs inside the namespace.
    pub fn tokio_command(&self, program: impl AsRef<OsStr>) -> Result<tokio::process::Command, NetnsError> {
        let mut cmd = tokio::process::Command::new(program);
        self.handle.configure_tokio(&mut cmd)?;
        Ok(cmd)
    }

    /// Runs `f` on a fresh thread inside the namespace and returns its result: bind listeners
    /// here, then serve them from anywhere.
    pub fn run<F, R>(&self, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                self.handle.enter_current_thread()?;
                Ok(f())
            });
            h.join().map_err(|p| NetnsError::Thread(panic_message(&p)))?
        })
    }

    /// Runs a future to completion on a current-thread runtime on a thread inside the namespace
    /// (every socket it makes, and every blocking-pool thread, is inside).
    pub fn block_on<F>(&self, fut: F) -> Result<F::Output, NetnsError>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        self.run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(fut))
                .map_err(|e| NetnsError::Thread(e.to_string()))
        })?
    }

    /// A multi-threaded runtime whose every thread (workers and blocking pool) is inside the
    /// namespace. Spawn the work onto it (`rt.spawn`); a future passed to `rt.block_on` is polled
    /// on the calling thread, which may be outside.
    pub fn runtime(&self) -> Result<tokio::runtime::Runtime, NetnsError> {
        let handle = self.handle.clone();
        // Fail early (and clearly) if the namespace cannot be entered at all.
        drop(handle.open()?);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                if let Err(e) = handle.enter_current_thread() {
                    tracing::error!(error = %e, "runtime thread could not enter the namespace");
                }
            })
            .build()
            .map_err(|e| NetnsError::Thread(e.to_string()))
    }

    /// PIDs of the processes inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        pids_in(self.name())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let name = self.name().to_string();
        kill_all_in(&name);
        if let Err(e) = ip(&["netns", "del", &name]) {
            tracing::warn!(netns = %name, error = %e, "could not remove network namespace");
        } else {
            tracing::debug!(netns = %name, "removed network namespace");
        }
    }
}

/// Whether a namespace of that name exists (tests check cleanup with it).
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let out = Command::new("ip").args(args).stdin(std::process::Stdio::null()).output().map_err(NetnsError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Ip { args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

fn pids_in(name: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills (SIGKILL) every process inside the namespace and waits, bounded, for each to exit: a
/// namespace lives on, with its devices, while any process is in it.
fn kill_all_in(name: &str) {
    let me = std::process::id() as i32;
    for _round in 0..5 {
        let pids: Vec<i32> = pids_in(name).into_iter().filter(|&p| p != me).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // These are processes started in our private namespace; nothing else is in it.
            crate::process::kill_and_wait(pid, Duration::from_secs(2));
        }
    }
    tracing::warn!(netns = %name, pids = ?pids_in(name), "processes survived SIGKILL");
}

/// Removes `ferric-<pid>-<n>` namespaces whose creating process is gone.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        tracing::info!(netns = %name, "removing namespace left by a dead test process");
        kill_all_in(&name);
        let _ = ip(&["netns", "del", &name]);
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".to_string())
}
