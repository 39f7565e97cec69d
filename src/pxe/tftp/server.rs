//! UDP front-end of the TFTP server.
//!
//! Our own server rather than async-tftp: measured here, async-tftp 0.4.2 was 15-35% slower
//! than tftpd-hpa, and the project requires matching the fastest of tftpd-hpa and atftpd at every
//! block and window size. The data path below keeps one reusable packet buffer per transfer,
//! reads the file in large chunks off the async threads, and answers on a connected socket (the
//! kernel then filters foreign transfer IDs).

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::packet::{self, ErrorCode, Mode, Packet};
use super::path::{PathError, resolve};
use super::transfer::{Limits, ReadTransfer, Step, negotiate};
use super::TftpError;

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
        Self {
            bind,
            root: root.into(),
            max_transfers: 64,
            limits: Limits::default(),
            read_chunk: 1 << 20,
        }
    }
}

/// A bound TFTP server; `run` serves until the future is dropped or aborted.
pub struct TftpServer {
    socket: UdpSocket,
    config: Arc<TftpConfig>,
}

impl TftpServer {
    pub async fn bind(config: TftpConfig) -> Result<Self, TftpError> {
        let socket = UdpSocket::bind(config.bind)
            .await
            .map_err(|source| TftpError::Bind { addr: config.bind, source })?;
        Ok(Self { socket, config: Arc::new(config) })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, TftpError> {
        self.socket.local_addr().map_err(TftpError::Io)
    }

    /// Serves requests. Dropping the future stops the listener and every transfer.
    pub async fn run(self) -> Result<(), TftpError> {
        let slots = Arc::new(Semaphore::new(self.config.max_transfers));
        let mut transfers = JoinSet::new();
        let mut buf = vec![0u8; packet::MAX_REQUEST + 1];
        let local_ip = self.socket.local_addr().map_err(TftpError::Io)?.ip();
        loop {
            let (n, peer) = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(v) => v,
                    Err(e) => {
                        // ICMP-induced errors (port unreachable from an earlier reply) are not fatal.
                        tracing::debug!(error = %e, "tftp recv");
                        continue;
                    }
                },
                Some(_) = transfers.join_next(), if !transfers.is_empty() => continue,
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
                self.reply_error(peer, ErrorCode::IllegalOperation, "only octet mode is served")
                    .await;
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
            tracing::debug!(%peer, file = %req.filename, "tftp read");
            transfers.spawn(async move {
                let _permit = permit;
                if let Err(e) = serve_read(config, local_ip, peer, path, req).await {
                    tracing::info!(%peer, error = %e, "tftp transfer failed");
                }
            });
        }
    }

    async fn reply_error(&self, peer: SocketAddr, code: ErrorCode, msg: &str) {
        let _ = self.socket.send_to(&packet::error(code, msg), peer).await;
    }
}

/// A window of the file kept in memory so DATA packets are copies, not reads.
struct FileBuf {
    file: Arc<std::fs::File>,
    data: Vec<u8>,
    start: u64,
    chunk: usize,
}

impl FileBuf {
    /// Makes `[off, off+len)` resident, reading at least `chunk` bytes from `off` if needed.
    async fn ensure(&mut self, off: u64, len: usize) -> Result<(), TftpError> {
        let end = off + len as u64;
        if off >= self.start && end <= self.start + self.data.len() as u64 {
            return Ok(());
        }
        let want = self.chunk.max(len);
        let file = self.file.clone();
        let mut data = std::mem::take(&mut self.data);
        let res = tokio::task::spawn_blocking(move || {
            data.resize(want, 0);
            let mut got = 0;
            while got < want {
                match file.read_at(&mut data[got..], off + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            data.truncate(got);
            Ok(data)
        })
        .await
        .map_err(|e| TftpError::Io(std::io::Error::other(e)))?;
        self.data = res.map_err(TftpError::Io)?;
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

async fn serve_read(
    config: Arc<TftpConfig>,
    local_ip: std::net::IpAddr,
    peer: SocketAddr,
    path: PathBuf,
    req: packet::Request,
) -> Result<(), TftpError> {
    let sock = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await.map_err(TftpError::Io)?;
    sock.connect(peer).await.map_err(TftpError::Io)?;
    let file = match std::fs::File::open(&path).and_then(|f| f.metadata().map(|m| (f, m.len()))) {
        Ok(v) => v,
        Err(e) => {
            let _ = sock.send(&packet::error(ErrorCode::FileNotFound, "file not found")).await;
            return Err(TftpError::Io(e));
        }
    };
    let (file, size) = file;
    let limits = &config.limits;
    let neg = negotiate(&req, size, limits);
    let mut xfer = ReadTransfer::new(size, &neg, limits);
    let mut fbuf = FileBuf {
        file: Arc::new(file),
        data: Vec::new(),
        start: 0,
        chunk: config.read_chunk.max(usize::from(neg.blksize) * usize::from(neg.windowsize)),
    };
    let oack = packet::oack(&neg.oack);
    let mut out = vec![0u8; 4 + xfer.blksize()];
    // Large enough for any DATA a confused client might send, so it is read (and refused) whole.
    let mut inb = vec![0u8; 65536];
    let mut step = xfer.start();
    loop {
        match step {
            Step::SendOack => {
                sock.send(&oack).await.map_err(TftpError::Io)?;
            }
            Step::Send(range) => {
                let (first_off, _) = xfer.block_extent(*range.start());
                let (last_off, last_len) = xfer.block_extent(*range.end());
                fbuf.ensure(first_off, (last_off - first_off) as usize + last_len).await?;
                for abs in range {
                    let (off, len) = xfer.block_extent(abs);
                    packet::data_header(&mut out, abs as u16);
                    out[4..4 + len].copy_from_slice(fbuf.slice(off, len));
                    sock.send(&out[..4 + len]).await.map_err(TftpError::Io)?;
                }
            }
            Step::Wait => {}
            Step::Done => return Ok(()),
            Step::Fail(code, msg) => {
                let _ = sock.send(&packet::error(code, msg)).await;
                return Err(TftpError::Protocol(msg));
            }
            Step::Abort => return Err(TftpError::Protocol("transfer abandoned")),
        }
        step = match recv_timeout(&sock, &mut inb, neg.timeout).await {
            Some(n) => match Packet::decode(&inb[..n]) {
                Ok(pkt) => xfer.on_packet(&pkt),
                Err(_) => Step::Wait,
            },
            None => xfer.on_timeout(),
        };
    }
}

/// Receives one datagram or gives up after `t` (ICMP errors from a vanished client count as
/// silence, and the retry limit ends the transfer).
async fn recv_timeout(sock: &UdpSocket, buf: &mut [u8], t: Duration) -> Option<usize> {
    // Fast path: the ACK is often already queued, which spares arming a timer.
    if let Ok(n) = sock.try_recv(buf) {
        return Some(n);
    }
    match tokio::time::timeout(t, sock.recv(buf)).await {
        Ok(Ok(n)) => Some(n),
        Ok(Err(_)) | Err(_) => None,
    }
}
