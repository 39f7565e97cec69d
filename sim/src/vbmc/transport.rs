//! The datagram seam. A BMC only ever sees `(peer, bytes)` and answers with bytes
//! ([`Bmc::on_datagram`]); these loops carry those bytes over a real UDP socket or over an
//! in-memory link made of two bounded tokio channels of raw packets. Nothing here knows the
//! client: a simulation hands the client its ends of the link (`Sender<Vec<u8>>` towards the BMC,
//! `Receiver<Vec<u8>>` from it), and the same RMCP+ bytes cross as on the wire.

use super::bmc::{Bmc, Peer};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Largest datagram accepted (IPMI LAN packets are far smaller).
pub const MAX_DATAGRAM: usize = 1024;
/// Capacity of each direction of an in-memory link; a full link drops, as a full socket does.
pub const LINK_CAPACITY: usize = 64;

/// Serves `bmc` on `socket` until the socket fails. Replies with latency are sent from their own
/// task so one slow reply does not hold the others up.
pub async fn serve_udp(bmc: Bmc, socket: UdpSocket) -> io::Result<()> {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP port unreachable from an earlier reply surfaces here on Linux; not fatal.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
            Err(e) => return Err(e),
        };
        let Some(reply) = bmc.on_datagram(Peer::Udp(from), &buf[..n]).await else {
            continue;
        };
        if reply.delay.is_zero() {
            if let Err(e) = socket.send_to(&reply.bytes, from).await {
                tracing::debug!(bmc = bmc.name(), error = %e, "send failed");
            }
        } else {
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(reply.delay).await;
                let _ = socket.send_to(&reply.bytes, from).await;
            });
        }
    }
}

/// Serves `bmc` on a blocking `socket` from the calling OS thread until the socket fails, with
/// `runtime` running the async parts (the BMC's handlers complete at once unless a machine
/// waits; latency-delayed replies are sent from tasks on `runtime`).
///
/// For a thread that serves a single BMC (e.g. `ferric vbmc --nodes 1`): a blocking
/// `recvfrom`/`sendto` pair is two system calls and one wakeup per request, where a readiness
/// loop needs four (a `recvfrom` that fails with EAGAIN and an `epoll_wait` besides), and on
/// loopback those dominate the BMC's cost per request. Many BMCs per thread use [`serve_udp`].
pub fn serve_udp_blocking(bmc: Bmc, socket: std::net::UdpSocket, runtime: &tokio::runtime::Handle) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted) => continue,
            Err(e) => return Err(e),
        };
        let Some(reply) = runtime.block_on(bmc.on_datagram(Peer::Udp(from), &buf[..n])) else {
            continue;
        };
        if reply.delay.is_zero() {
            if let Err(e) = socket.send_to(&reply.bytes, from) {
                tracing::debug!(bmc = bmc.name(), error = %e, "send failed");
            }
        } else {
            let socket = socket.clone();
            runtime.spawn(async move {
                tokio::time::sleep(reply.delay).await;
                // A UDP send does not wait for the peer; at worst it waits for socket buffer.
                let _ = socket.send_to(&reply.bytes, from);
            });
        }
    }
}

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

impl Bmc {
    /// Opens an in-memory datagram link to this BMC and serves it on a spawned task (which ends
    /// when the returned sender is dropped). Returns the client's ends: send raw RMCP packets on
    /// the sender, receive the BMC's raw replies on the receiver. Must be called inside a tokio
    /// runtime (a paused-clock current-thread one works).
    pub fn link(&self) -> (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>) {
        let (to_bmc, from_client) = mpsc::channel(LINK_CAPACITY);
        let (to_client, from_bmc) = mpsc::channel(LINK_CAPACITY);
        let id = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve_link(self.clone(), id, from_client, to_client));
        (to_bmc, from_bmc)
    }
}

/// Serves one in-memory link until the client side is dropped.
pub async fn serve_link(bmc: Bmc, link_id: u64, mut rx: mpsc::Receiver<Vec<u8>>, tx: mpsc::Sender<Vec<u8>>) {
    while let Some(pkt) = rx.recv().await {
        if pkt.len() > MAX_DATAGRAM {
            continue;
        }
        let Some(reply) = bmc.on_datagram(Peer::Link(link_id), &pkt).await else {
            continue;
        };
        if reply.delay.is_zero() {
            let _ = tx.try_send(reply.bytes);
        } else {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(reply.delay).await;
                let _ = tx.try_send(reply.bytes);
            });
        }
    }
}
