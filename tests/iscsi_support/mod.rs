//! Shared helpers for the iSCSI tests and benchmark: real peers (tgtd, ferric-agent) started on
//! loopback with free ports, torn down by PID on drop.
#![allow(dead_code)]

#[path = "../common/agent_bin.rs"]
pub mod agent_bin;

#[path = "../common/listening.rs"]
mod listening;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Kills and reaps a child on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// tgtd (Debian package tgt) in the foreground on a private control port and portal.
pub struct Tgtd {
    child: Reaped,
    control: u16,
    pub portal: SocketAddr,
    pub iqn: String,
}

impl Tgtd {
    fn adm(control: u16, args: &[&str]) {
        let out = Command::new("tgtadm")
            .args(["-C", &control.to_string(), "--lld", "iscsi"])
            .args(args)
            .output()
            .expect("run tgtadm");
        assert!(out.status.success(), "tgtadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts tgtd serving `backing` as LUN 1 of `iqn`; with `chap`, initiators must log in with it.
    pub fn start(backing: &Path, iqn: &str, chap: Option<(&str, &str)>) -> Self {
        let mut last = String::new();
        for _attempt in 0..5 {
            match Self::spawn() {
                Ok((child, control, portal)) => {
                    let t = Self { child, control, portal, iqn: iqn.to_string() };
                    t.configure(backing, iqn, chap);
                    return t;
                }
                Err(e) => last = e,
            }
        }
        panic!("tgtd did not come up: {last}");
    }

    /// Starts tgtd on a fresh control socket and portal; Err if it did not come up.
    fn spawn() -> Result<(Reaped, u16, SocketAddr), String> {
        use std::sync::atomic::{AtomicU16, Ordering};
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let port = free_port();
        // The control "port" N selects /var/run/tgtd/socket.N: private per process and call.
        let mut control;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            // tgtd accepts -C values up to 32767.
            control = 1000 + ((u64::from(std::process::id()) * 13 + u64::from(n)) % 31000) as u16;
            if !Path::new(&format!("/var/run/tgtd/socket.{control}")).exists() {
                break;
            }
        }
        let portal: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let log = std::env::temp_dir().join(format!("ferric-tgtd-{control}.log"));
        let stderr = std::fs::File::create(&log).map(Stdio::from).unwrap_or_else(|_| Stdio::null());
        let child = Command::new("tgtd")
            .args(["-f", "-C", &control.to_string(), "--iscsi", &format!("portal={portal}")])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn tgtd (package tgt)");
        let mut child = Reaped(child);
        let start = Instant::now();
        loop {
            let ok = Command::new("tgtadm")
                .args(["-C", &control.to_string(), "--lld", "iscsi", "--op", "show", "--mode", "sys"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            let exited = child.0.try_wait().ok().flatten();
            if exited.is_some() || start.elapsed() > Duration::from_secs(20) {
                let msg = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = std::fs::remove_file(&log);
                return Err(format!("exit {exited:?}: {msg}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(&log);
        Ok((child, control, portal))
    }

    fn configure(&self, backing: &Path, iqn: &str, chap: Option<(&str, &str)>) {
        let control = self.control;
        Self::adm(control, &["--op", "new", "--mode", "target", "--tid", "1", "-T", iqn]);
        let b = backing.to_str().expect("utf8 path");
        Self::adm(control, &["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", b]);
        Self::adm(control, &["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"]);
        if let Some((u, p)) = chap {
            Self::adm(control, &["--op", "new", "--mode", "account", "--user", u, "--password", p]);
            Self::adm(control, &["--op", "bind", "--mode", "account", "--tid", "1", "--user", u]);
        }
        listening::wait_listening(self.portal, Duration::from_secs(10));
    }

    /// Sets a target parameter (e.g. MaxRecvDataSegmentLength) with tgtadm.
    pub fn set_param(&self, name: &str, value: &str) {
        Self::adm(self.control, &["--op", "update", "--mode", "target", "--tid", "1", "-n", name, "-v", value]);
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd ignores SIGTERM while it has targets; the child is killed by `Reaped`. Its control
        // socket files are left behind by a kill, so remove them once it is gone.
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        for suffix in ["", ".lock"] {
            let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.control));
        }
    }
}

/// `ferric-agent iscsi-target` as a real process.
pub struct AgentTarget {
    _child: Reaped,
    pub portal: SocketAddr,
    pub iqn: String,
}

impl AgentTarget {
    pub fn start(agent_bin: &Path, disk: &Path, iqn: &str, chap: Option<(&str, &str)>) -> Self {
        let port = free_port();
        let mut cmd = Command::new(agent_bin);
        cmd.args([
            "iscsi-target",
            "--disk",
            disk.to_str().expect("utf8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--iqn",
            iqn,
        ]);
        if let Some((u, p)) = chap {
            cmd.args(["--chap-user", u]).env("FERRIC_CHAP_SECRET", p);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn ferric-agent");
        let stdout = child.stdout.take().expect("stdout");
        let child = Reaped(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read listening line");
        let portal: SocketAddr =
            line.trim().strip_prefix("listening on ").expect("listening line").parse().expect("addr");
        Self { _child: child, portal, iqn: iqn.to_string() }
    }

    pub fn url(&self, auth: Option<(&str, &str)>) -> String {
        match auth {
            Some((u, p)) => format!("iscsi://{u}%{p}@{}/{}/0", self.portal, self.iqn),
            None => format!("iscsi://{}/{}/0", self.portal, self.iqn),
        }
    }
}

/// A scratch directory under the crate's target/ (removed on drop).
pub fn scratch() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("iscsi-tmp");
    std::fs::create_dir_all(&base).expect("mkdir");
    tempfile::tempdir_in(base).expect("tempdir")
}

/// Deterministic pseudo-random bytes (xorshift), so images are never all zeroes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs a command, asserting success; returns stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
