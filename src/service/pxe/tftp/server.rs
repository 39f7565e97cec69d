//! UDP front-end of the TFTP server.
//!
//! Our own server rather than async-tftp: measured here, async-tftp 0.4.2 was 15-35% slower
//! than tftpd-hpa, and the project requires matching the fastest of tftpd-hpa and atftpd at every
//! block and window size. The data path below keeps one reusable packet buffer per transfer,
//! reads the file in large chunks, and answers on a connected socket (the kernel then filters
//! foreign transfer IDs); see [`serve_read`] for why transfers block on their own threads.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use super::TftpError;
use super::packet::{self, ErrorCode, Mode, Packet};
use super::path::{PathError, resolve};
use super::transfer::{Limits, ReadTransfer, Step, negotiate};

/// Configuration of the TFTP service.
#[derive(Debug, Clone)]
pub struct TftpConfig {
    /// Where to listen (port 69 in production; any port for tests).
    pub bind: SocketAddr,
    /// Directory served read-only.
    pub root: PathBuf,
    /// Transfers served at once; further requests get a "server busy" error.
    pub max_transfers: usize,
    /// Option limits, timeouts and retries.
    pub limits: Limits,
    /// Bytes read from the file per disk read.
    pub read_chunk: usize,
}

impl TftpConfig {
    pub fn new(bind: SocketAddr, root: impl Into<PathBuf>) -> Self {
        Self { bind, root: root.into(), max_transfers: 64, limits: Limits::default(), read_chunk: 64 << 10 }
    }
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A bound TFTP server; `run` serves until the future is dropped or aborted.
pub struct TftpServer {
    socket: UdpSocket,
    config: Arc<TftpConfig>,
}

impl TftpServer {
    pub async fn bind(config: TftpConfig) -> Result<Self, TftpError> {
        let socket =
            UdpSocket::bind(config.bind).await.map_err(|source| TftpError::Bind { addr: config.bind, source })?;
        Ok(Self { socket, config: Arc::new(config) })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, TftpError> {
        self.socket.local_addr().map_err(TftpError::Io)
    }

    /// Serves requests. Dropping the future stops the listener and every transfer.
    pub async fn run(self) -> Result<(), TftpError> {
        let slots = Arc::new(Semaphore::new(self.config.max_transfers));
        // Transfers run on their own threads; this guard tells them to stop when `run` ends.
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let mut buf = vec![0u8; packet::MAX_REQUEST + 1];
        let local_ip = self.socket.local_addr().map_err(TftpError::Io)?.ip();
        loop {
            let (n, peer) = match self.socket.recv_from(&mut buf).await {
                Ok(v) => v,
                Err(e) => {
                    // ICMP-induced errors (port unreachable from an earlier reply) are not fatal.
                    tracing::debug!(error = %e, "tftp recv");
                    continue;
                }
            };
            let req = match Packet::decode(&buf[..n]) {
                Ok(Packet::Request(r)) => r,
                Ok(_) => continue, // stray DATA/ACK to the listening port: not a transfer
                Err(packet::PacketError::Mode) => {
                    self.reply_error(peer, ErrorCode::IllegalOperation, "unsupported mode").await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "malformed tftp request");
                    self.reply_error(peer, ErrorCode::IllegalOperation, "malformed request").await;
                    continue;
                }
            };
            if req.write {
                self.reply_error(peer, ErrorCode::IllegalOperation, "read-only server").await;
                continue;
            }
            if req.mode == Mode::Netascii {
                self.reply_error(peer, ErrorCode::IllegalOperation, "only octet mode is served").await;
                continue;
            }
            let path = match resolve(&self.config.root, &req.filename) {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!(%peer, file = %req.filename, error = %e, "tftp refused");
                    let code = match e {
                        PathError::NotFound => ErrorCode::FileNotFound,
                        PathError::AccessViolation => ErrorCode::AccessViolation,
                    };
                    self.reply_error(peer, code, &e.to_string()).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                self.reply_error(peer, ErrorCode::NotDefined, "server busy").await;
                continue;
            };
            let config = self.config.clone();
            let cancel = stop.0.clone();
            tracing::debug!(%peer, file = %req.filename, "tftp read");
            let spawned = std::thread::Builder::new().name("tftp-transfer".into()).spawn(move || {
                let _permit = permit;
                if let Err(e) = serve_read(&config, local_ip, peer, &path, &req, &cancel) {
                    tracing::info!(%peer, error = %e, "tftp transfer failed");
                }
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "tftp: cannot start transfer thread");
                self.reply_error(peer, ErrorCode::NotDefined, "server busy").await;
            }
        }
    }

    async fn reply_error(&self, peer: SocketAddr, code: ErrorCode, msg: &str) {
        let _ = self.socket.send_to(&packet::error(code, msg), peer).await;
    }
}

/// A window of the file kept in memory so DATA packets are copies, not reads.
struct FileBuf {
    file: std::fs::File,
    data: Vec<u8>,
    start: u64,
    chunk: usize,
}

impl FileBuf {
    /// Makes `[off, off+len)` resident, reading at least `chunk` bytes from `off` if needed.
    fn ensure(&mut self, off: u64, len: usize) -> Result<(), TftpError> {
        let end = off + len as u64;
        if off >= self.start && end <= self.start + self.data.len() as u64 {
            return Ok(());
        }
        let want = self.chunk.max(len);
        self.data.resize(want, 0);
        let mut got = 0;
        while got < want {
            match self.file.read_at(&mut self.data[got..], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TftpError::Io(e)),
            }
        }
        self.data.truncate(got);
        self.start = off;
        if end > self.start + self.data.len() as u64 {
            return Err(TftpError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank during transfer",
            )));
        }
        Ok(())
    }

    fn slice(&self, off: u64, len: usize) -> &[u8] {
        let s = (off - self.start) as usize;
        &self.data[s..s + len]
    }
}

/// Serves one read transfer on its own thread with a blocking socket.
///
/// Why a thread and not a tokio task: a lock-step transfer is one round trip per block, so its
/// speed is the latency between an ACK's arrival and the next DATA. A blocked `recv` is woken
/// by the kernel directly, where a task waits for the reactor and the scheduler first; measured
/// here that gap decided whether ferric matched tftpd-hpa and atftpd (which also block per
/// transfer). The retransmission timer is the socket's receive timeout (a kernel timer, not a
/// wall-clock read), and the protocol decisions stay in [`ReadTransfer`], which the simulation
/// drives on tokio's clock without sockets. Threads are bounded by `max_transfers`, and every
/// transfer ends by completion, retry exhaustion or `cancel`.
fn serve_read(
    config: &TftpConfig,
    local_ip: std::net::IpAddr,
    peer: SocketAddr,
    path: &Path,
    req: &packet::Request,
    cancel: &AtomicBool,
) -> Result<(), TftpError> {
    let sock = std::net::UdpSocket::bind(SocketAddr::new(local_ip, 0)).map_err(TftpError::Io)?;
    sock.connect(peer).map_err(TftpError::Io)?;
    // DATA goes out as two iovecs (header, file slice) so blocks are never copied in user space.
    let vsock = socket2::SockRef::from(&sock);
    let (file, size) = match std::fs::File::open(path).and_then(|f| f.metadata().map(|m| (f, m.len()))) {
        Ok(v) => v,
        Err(e) => {
            let _ = sock.send(&packet::error(ErrorCode::FileNotFound, "file not found"));
            return Err(TftpError::Io(e));
        }
    };
    let limits = &config.limits;
    let neg = negotiate(req, size, limits);
    sock.set_read_timeout(Some(neg.timeout)).map_err(TftpError::Io)?;
    let mut xfer = ReadTransfer::new(size, &neg, limits);
    let mut fbuf = FileBuf {
        file,
        data: Vec::new(),
        start: 0,
        chunk: config.read_chunk.max(usize::from(neg.blksize) * usize::from(neg.windowsize)),
    };
    let oack = packet::oack(&neg.oack);
    let mut hdr = [0u8; 4];
    // Large enough for any datagram a confused client might send, so it is read (and refused) whole.
    let mut inb = vec![0u8; 65536];
    let mut step = xfer.start();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TftpError::Protocol("server stopped"));
        }
        match step {
            Step::SendOack => {
                sock.send(&oack).map_err(TftpError::Io)?;
            }
            Step::Send(range) => {
                let (first_off, _) = xfer.block_extent(*range.start());
                let last = *range.end();
                let (last_off, last_len) = xfer.block_extent(last);
                fbuf.ensure(first_off, (last_off - first_off) as usize + last_len)?;
                for abs in range {
                    let (off, len) = xfer.block_extent(abs);
                    packet::data_header(&mut hdr, abs as u16);
                    let iov = [IoSlice::new(&hdr), IoSlice::new(fbuf.slice(off, len))];
                    vsock.send_vectored(&iov).map_err(TftpError::Io)?;
                }
                // Read ahead while the client works on what was just sent, so the next window
                // is resident when its ACK arrives and no disk read sits between ACK and DATA.
                if last < xfer.total_blocks() {
                    let next_last = (last + xfer.window()).min(xfer.total_blocks());
                    let (noff, _) = xfer.block_extent(last + 1);
                    let (loff, llen) = xfer.block_extent(next_last);
                    fbuf.ensure(noff, (loff - noff) as usize + llen)?;
                }
            }
            Step::Wait => {}
            Step::Done => return Ok(()),
            Step::Fail(code, msg) => {
                let _ = sock.send(&packet::error(code, msg));
                return Err(TftpError::Protocol(msg));
            }
            Step::Abort => return Err(TftpError::Protocol("transfer abandoned")),
        }
        step = match sock.recv(&mut inb) {
            Ok(n) => match Packet::decode(&inb[..n]) {
                Ok(pkt) => xfer.on_packet(&pkt),
                Err(_) => Step::Wait,
            },
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                xfer.on_timeout()
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Step::Wait,
            // ICMP port unreachable from a vanished client: count it as silence.
            Err(_) => xfer.on_timeout(),
        };
    }
}
