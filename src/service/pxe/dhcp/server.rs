//! UDP front-end of the DHCP handler.

use ferric_types::clock::Clock;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

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

/// A bound DHCP server.
pub struct DhcpServer {
    socket: UdpSocket,
    bind: DhcpBind,
    handler: Arc<DhcpHandler>,
    /// Lease times (Unix seconds): the service's clock, virtual in a simulation.
    clock: Clock,
}

impl DhcpServer {
    /// Binds `bind`; leases are timed by `clock`.
    pub fn bind(bind: DhcpBind, handler: Arc<DhcpHandler>, clock: Clock) -> Result<Self, DhcpError> {
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
        Ok(Self { socket, bind, handler, clock })
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
            let Some(reply) = self.handler.handle(&buf[..n], self.clock.now_unix()) else {
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
