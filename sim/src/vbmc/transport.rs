//! The datagram seam. A BMC only ever sees `(peer, bytes)` and answers with bytes
//! ([`Bmc::on_datagram`]); these loops carry those bytes over a real UDP socket or over an
//! in-memory link made of two bounded tokio channels of raw packets. Nothing here knows the
//! client: a simulation hands the client its ends of the link (`Sender<Vec<u8>>` towards the BMC,
//! `Receiver<Vec<u8>>` from it), and the same RMCP+ bytes cross as on the wire.

use super::bmc::{Bmc, Peer, Reply};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
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
/// For a thread that serves a single BMC (e.g. `ferric vbmc --nodes 1`): a blocking receive and
/// a send are two system calls and one wakeup per request, where a readiness loop needs four (a
/// `recvfrom` that fails with EAGAIN and an `epoll_wait` besides), and on loopback those dominate
/// the BMC's cost per request. Under load from several clients one `recvmmsg` takes every
/// datagram waiting and one `sendmmsg` returns their replies. Many BMCs per thread use
/// [`serve_udp`].
pub fn serve_udp_blocking(bmc: Bmc, socket: std::net::UdpSocket, runtime: &tokio::runtime::Handle) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    let socket = Arc::new(socket);
    let mut inbox = batch::Inbox::new();
    let mut outbox = batch::Outbox::new();
    loop {
        let n = match inbox.recv(&socket) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted) => continue,
            Err(e) => return Err(e),
        };
        for i in 0..n {
            let Some((from, packet)) = inbox.get(i) else { continue };
            // A handler that has to wait first sends the replies already made, so they are not
            // held up behind it.
            let Some(reply) = answer(&bmc, from, packet, runtime, || outbox.send(&socket, bmc.name())) else {
                continue;
            };
            if reply.delay.is_zero() {
                outbox.push(reply.bytes, from);
            } else {
                let socket = socket.clone();
                runtime.spawn(async move {
                    tokio::time::sleep(reply.delay).await;
                    // A UDP send does not wait for the peer; at worst it waits for socket buffer.
                    let _ = socket.send_to(&reply.bytes, from);
                });
            }
        }
        outbox.send(&socket, bmc.name());
    }
}

/// The BMC's reply to one datagram. Handlers almost always finish without waiting, so the
/// first poll happens here (inside `runtime`'s context, for its clock); only a handler that
/// waits (a machine taking its time) is driven by `runtime.block_on`, after `before_wait`.
fn answer(
    bmc: &Bmc,
    from: SocketAddr,
    packet: &[u8],
    runtime: &tokio::runtime::Handle,
    before_wait: impl FnOnce(),
) -> Option<Reply> {
    let mut fut = std::pin::pin!(bmc.on_datagram(Peer::Udp(from), packet));
    let first = {
        let _ctx = runtime.enter();
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    };
    match first {
        Poll::Ready(r) => r,
        Poll::Pending => {
            before_wait();
            runtime.block_on(fut)
        }
    }
}

/// `recvmmsg`/`sendmmsg` for the blocking loop: std has no batched datagram calls, and tokio's
/// sockets none either.
mod batch {
    use super::MAX_DATAGRAM;
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    /// Most datagrams one call moves.
    pub const BATCH: usize = 32;

    const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

    /// Receive buffers and the headers that point into them, built once: the buffers live on the
    /// heap and never move, so the headers stay valid for the inbox's life.
    pub struct Inbox {
        bufs: Vec<u8>,
        addrs: Vec<libc::sockaddr_storage>,
        iov: Vec<libc::iovec>,
        hdrs: Vec<libc::mmsghdr>,
    }

    impl Inbox {
        pub fn new() -> Inbox {
            let mut bufs = vec![0u8; BATCH * MAX_DATAGRAM];
            // SAFETY: all zeros is a valid (unspecified-family) sockaddr_storage.
            let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
            let mut iov: Vec<libc::iovec> = bufs
                .chunks_mut(MAX_DATAGRAM)
                .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() })
                .collect();
            let hdrs = iov
                .iter_mut()
                .zip(addrs.iter_mut())
                .map(|(v, a)| {
                    // SAFETY: all zeros is a valid mmsghdr (null pointers, zero lengths).
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_name = (a as *mut libc::sockaddr_storage).cast();
                    h.msg_hdr.msg_namelen = ADDR_LEN;
                    h.msg_hdr.msg_iov = v;
                    h.msg_hdr.msg_iovlen = 1;
                    h
                })
                .collect();
            Inbox { bufs, addrs, iov, hdrs }
        }

        /// Blocks until at least one datagram is waiting, then takes up to [`BATCH`]; returns
        /// how many.
        pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            for h in &mut self.hdrs {
                // The kernel overwrites it with each sender's address length.
                h.msg_hdr.msg_namelen = ADDR_LEN;
            }
            debug_assert_eq!(self.iov.len(), self.hdrs.len());
            // SAFETY: every header points at one of `bufs`' chunks (through `iov`) and at one of
            // `addrs`, with their lengths; all are owned by `self` and never reallocated.
            let rc = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    self.hdrs.len() as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(rc as usize)
        }

        /// Datagram `i` of the last [`Inbox::recv`] and its sender (`None` if not an IP
        /// address, which a UDP socket does not produce).
        pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
            let h = self.hdrs.get(i)?;
            let mut storage = socket2::SockAddrStorage::zeroed();
            // SAFETY: sockaddr_storage is one of this platform's sockaddr types.
            unsafe { *storage.view_as::<libc::sockaddr_storage>() = *self.addrs.get(i)? };
            // SAFETY: the kernel wrote a sockaddr of `msg_namelen` bytes into that storage.
            let from = unsafe { socket2::SockAddr::new(storage, h.msg_hdr.msg_namelen) }.as_socket()?;
            let start = i * MAX_DATAGRAM;
            Some((from, self.bufs.get(start..start + (h.msg_len as usize).min(MAX_DATAGRAM))?))
        }
    }

    /// Replies waiting to be sent together (the header vectors keep their capacity between
    /// sends).
    pub struct Outbox {
        msgs: Vec<(Vec<u8>, socket2::SockAddr)>,
        iov: Vec<libc::iovec>,
        hdrs: Vec<libc::mmsghdr>,
    }

    impl Outbox {
        pub fn new() -> Outbox {
            Outbox { msgs: Vec::with_capacity(BATCH), iov: Vec::with_capacity(BATCH), hdrs: Vec::with_capacity(BATCH) }
        }

        pub fn push(&mut self, bytes: Vec<u8>, to: SocketAddr) {
            self.msgs.push((bytes, to.into()));
        }

        /// Sends every queued reply and empties the queue. A reply the kernel refuses (e.g. to
        /// an unreachable peer) is dropped, as a lost datagram would be, and logged for `bmc`.
        pub fn send(&mut self, socket: &UdpSocket, bmc: &str) {
            self.iov.clear();
            self.iov.extend(
                self.msgs.iter_mut().map(|(b, _)| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }),
            );
            self.hdrs.clear();
            self.hdrs.extend(self.iov.iter_mut().zip(&self.msgs).map(|(v, (_, to))| {
                // SAFETY: all zeros is a valid mmsghdr.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = to.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = to.len();
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            }));
            let mut sent = 0;
            while sent < self.hdrs.len() {
                let rest = &mut self.hdrs[sent..];
                // SAFETY: every header points at a live reply buffer and a live address of the
                // stated lengths (in `msgs`, untouched until the queue is emptied below); the
                // kernel only reads them.
                let rc =
                    unsafe { libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
                if rc > 0 {
                    sent += rc as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::debug!(bmc, error = %e, "send failed");
                    sent += 1;
                }
            }
            self.hdrs.clear();
            self.iov.clear();
            self.msgs.clear();
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
