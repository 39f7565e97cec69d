//! Waiting for a server that a test started to listen.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Blocks until something accepts TCP connections on `addr`; panics after `timeout`.
///
/// A connection whose local address is its peer's does not count: while nothing listens on a
/// loopback port of the ephemeral range, the kernel may pick that very port as the client's
/// source and connect the socket to itself (TCP simultaneous open; Linux makes it rare by
/// choosing even ports for `connect` and odd ones for `bind` to port 0, but not impossible).
pub fn wait_listening(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = TcpStream::connect(addr) {
            if s.local_addr().ok() != s.peer_addr().ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "nothing listens on {addr} after {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback TCP port free a moment ago (the caller binds or hands it to a child).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `ferric serve` a test started on a free loopback port; killed when dropped.
#[allow(dead_code)]
pub struct Served {
    pub child: std::process::Child,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ferric serve --api-bind 127.0.0.1:PORT --data-dir DATA ARGS...` and waits until it
/// listens. `data`: a data directory the caller keeps, else a temporary one the server owns.
#[allow(dead_code)]
pub fn ferric_serve(data: Option<&std::path::Path>, args: &[&std::ffi::OsStr]) -> Served {
    let (dir, path) = match data {
        Some(p) => (None, p.to_path_buf()),
        None => {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().to_path_buf();
            (Some(d), p)
        }
    };
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ferric"))
        .args(["serve", "--api-bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&path)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start ferric serve");
    let served = Served { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
    wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(30));
    served
}
