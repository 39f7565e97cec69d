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
