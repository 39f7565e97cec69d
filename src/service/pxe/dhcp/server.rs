//! UDP front-end of the DHCP handler.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::DhcpError;
use super::handler::{DhcpHandler, ReplyDest};

/// Where the DHCP service listens and how replies leave.
#[derive(Debug, Clone)]
pub struct DhcpBind {
    /// `0.0.0.0:67` on a provisioning interface; any address and port for tests.
    pub addr: SocketAddr,
    /// Provisioning interface (SO_BINDTODEVICE) so broadcasts are received and sent only there.
    pub interface: Option<String>,
    /// Port clients listen on (68).
    pub client_port: u16,
    /// Send every reply back to the datagram's source address instead of broadcasting
    /// (loopback tests, where clients have an address and a non-standard port).
    pub reply_to_source: bool,
}

impl DhcpBind {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, interface: None, client_port: 68, reply_to_source: false }
    }
}

/// Wall-clock seconds derived from a start time plus `tokio::time` elapsed, so lease expiry is
/// persistable yet advances with tokio's (possibly paused) clock.
#[derive(Debug, Clone, Copy)]
pub struct LeaseClock {
    base: u64,
    start: tokio::time::Instant,
}

impl LeaseClock {
    pub fn new() -> Self {
        let base = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Self::starting_at(base)
    }
    /// A clock reading `base` now (simulation).
    pub fn starting_at(base: u64) -> Self {
        Self { base, start: tokio::time::Instant::now() }
    }
    pub fn now(&self) -> u64 {
        self.base + self.start.elapsed().as_secs()
    }
}

impl Default for LeaseClock {
    fn default() -> Self {
        Self::new()
    }
}

/// A bound DHCP server.
pub struct DhcpServer {
    socket: UdpSocket,
    bind: DhcpBind,
    handler: Arc<DhcpHandler>,
    clock: LeaseClock,
}

impl DhcpServer {
    pub fn bind(bind: DhcpBind, handler: Arc<DhcpHandler>) -> Result<Self, DhcpError> {
        let err = |source| DhcpError::Bind { addr: bind.addr, source };
        let domain = Domain::for_address(bind.addr);
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        s.set_reuse_address(true).map_err(err)?;
        s.set_broadcast(true).map_err(err)?;
        if let Some(ifname) = &bind.interface {
            s.bind_device(Some(ifname.as_bytes())).map_err(err)?;
        }
        s.set_nonblocking(true).map_err(err)?;
        s.bind(&bind.addr.into()).map_err(err)?;
        let socket = UdpSocket::from_std(s.into()).map_err(err)?;
        Ok(Self { socket, bind, handler, clock: LeaseClock::new() })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, DhcpError> {
        self.socket.local_addr().map_err(DhcpError::Io)
    }

    /// Serves until the future is dropped.
    pub async fn run(self) -> Result<(), DhcpError> {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, src) = match self.socket.recv_from(&mut buf).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "dhcp recv");
                    continue;
                }
            };
            let Some(reply) = self.handler.handle(&buf[..n], self.clock.now()) else {
                continue;
            };
            let dest = if self.bind.reply_to_source {
                src
            } else {
                match reply.dest {
                    ReplyDest::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, self.bind.client_port).into(),
                    ReplyDest::Unicast(ip) => SocketAddrV4::new(ip, self.bind.client_port).into(),
                    ReplyDest::Relay(ip) => SocketAddrV4::new(ip, 67).into(),
                }
            };
            if let Err(e) = self.socket.send_to(&reply.bytes, dest).await {
                tracing::warn!(%dest, error = %e, "dhcp send");
            }
        }
    }
}
