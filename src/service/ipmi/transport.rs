//! The client's datagram seam: a [`Transport`] moves whole RMCP datagrams to one BMC and back.
//! Production uses UDP ([`UdpConnector`]); a simulation uses a pair of tokio channels of raw
//! packets ([`ChannelConnector`]), so the same bytes cross with no socket and time can be paused.

use async_trait::async_trait;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};

/// Largest datagram the client reads.
const MAX_DATAGRAM: usize = 1024;

/// A datagram path to one BMC.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, packet: &[u8]) -> io::Result<()>;
    /// Waits for the next datagram from the BMC (the caller bounds the wait).
    async fn recv(&self) -> io::Result<Vec<u8>>;
}

/// Opens transports to BMCs by address and port.
#[async_trait]
pub trait Connector: Send + Sync {
    async fn connect(&self, address: &str, port: u16) -> io::Result<Box<dyn Transport>>;
}

/// A connected UDP socket.
pub struct UdpTransport {
    socket: UdpSocket,
}

impl UdpTransport {
    pub async fn connect(peer: SocketAddr) -> io::Result<Self> {
        let local: IpAddr = match peer {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind((local, 0)).await?;
        socket.connect(peer).await?;
        Ok(Self { socket })
    }
}

#[async_trait]
impl Transport for UdpTransport {
    async fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.socket.send(packet).await.map(|_| ())
    }
    async fn recv(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match self.socket.recv(&mut buf).await {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                // ICMP port unreachable from an earlier send: the BMC is down; keep waiting so
                // the caller's timeout and retries decide, as with a silent BMC.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Real UDP: resolves the address (IP literal or host name) and connects a socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpConnector;

#[async_trait]
impl Connector for UdpConnector {
    async fn connect(&self, address: &str, port: u16) -> io::Result<Box<dyn Transport>> {
        let peer = match address.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host((address, port))
                .await?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?,
        };
        Ok(Box::new(UdpTransport::connect(peer).await?))
    }
}

/// In-memory datagrams: `tx` carries raw packets to the BMC, `rx` brings its raw replies.
pub struct ChannelTransport {
    tx: mpsc::Sender<Vec<u8>>,
    rx: Mutex<mpsc::Receiver<Vec<u8>>>,
}

impl ChannelTransport {
    pub fn new(tx: mpsc::Sender<Vec<u8>>, rx: mpsc::Receiver<Vec<u8>>) -> Self {
        Self { tx, rx: Mutex::new(rx) }
    }
}

#[async_trait]
impl Transport for ChannelTransport {
    async fn send(&self, packet: &[u8]) -> io::Result<()> {
        match self.tx.try_send(packet.to_vec()) {
            Ok(()) => Ok(()),
            // A full link loses the datagram, like a full socket buffer.
            Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(io::Error::new(io::ErrorKind::NotConnected, "in-memory BMC link closed"))
            }
        }
    }
    async fn recv(&self) -> io::Result<Vec<u8>> {
        self.rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "in-memory BMC link closed"))
    }
}

/// Makes a link to the BMC at (address, port): the sender towards the BMC and the receiver of
/// its replies, or `None` if nothing is there.
pub type LinkFn = dyn Fn(&str, u16) -> Option<(mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>)> + Send + Sync;

/// Connects through in-memory links supplied by a simulation (which owns the BMCs).
#[derive(Clone)]
pub struct ChannelConnector {
    link: Arc<LinkFn>,
}

impl fmt::Debug for ChannelConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelConnector")
    }
}

impl ChannelConnector {
    pub fn new(
        link: impl Fn(&str, u16) -> Option<(mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>)> + Send + Sync + 'static,
    ) -> Self {
        Self { link: Arc::new(link) }
    }
}

#[async_trait]
impl Connector for ChannelConnector {
    async fn connect(&self, address: &str, port: u16) -> io::Result<Box<dyn Transport>> {
        let (tx, rx) = (self.link)(address, port).ok_or_else(|| {
            io::Error::new(io::ErrorKind::ConnectionRefused, format!("no simulated BMC at {address}:{port}"))
        })?;
        Ok(Box::new(ChannelTransport::new(tx, rx)))
    }
}
