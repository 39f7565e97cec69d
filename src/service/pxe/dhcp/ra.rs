//! A minimal IPv6 router-advertisement responder for the provisioning interface.
//!
//! iPXE configures IPv6 alongside DHCPv4 and waits for a router advertisement before it gives up
//! (part of a ~16 s stall measured here); answering its router solicitation ends that wait.
//! Hand-written on a raw ICMPv6 socket because the job is one packet type each way; the kernel
//! fills in the ICMPv6 checksum for raw ICMPv6 sockets.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::DhcpError;

const ICMPV6_RS: u8 = 133;
const ICMPV6_RA: u8 = 134;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// What to advertise.
#[derive(Debug, Clone)]
pub struct RaConfig {
    /// Provisioning interface name.
    pub interface: String,
    /// On-link prefix for SLAAC (e.g. 2001:db8::/64), or none.
    pub prefix: Option<(Ipv6Addr, u8)>,
    /// Router lifetime in seconds; 0 says "not a default router", which is all a PXE client needs.
    pub router_lifetime: u16,
    /// Managed (M) flag: send clients to DHCPv6. Off, so iPXE does not wait for DHCPv6.
    pub managed: bool,
    /// Other-config (O) flag.
    pub other: bool,
}

impl RaConfig {
    pub fn new(interface: impl Into<String>) -> Self {
        Self { interface: interface.into(), prefix: None, router_lifetime: 0, managed: false, other: false }
    }
}

/// Builds the router advertisement (ICMPv6 body, checksum left to the kernel).
pub fn build_ra(cfg: &RaConfig, mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut p = vec![ICMPV6_RA, 0, 0, 0, 64];
    p.push(u8::from(cfg.managed) << 7 | u8::from(cfg.other) << 6);
    p.extend_from_slice(&cfg.router_lifetime.to_be_bytes());
    p.extend_from_slice(&[0; 8]); // reachable time, retrans timer: unspecified
    if let Some(mac) = mac {
        p.extend_from_slice(&[1, 1]); // source link-layer address, 8 bytes
        p.extend_from_slice(&mac);
    }
    if let Some((prefix, len)) = cfg.prefix {
        p.extend_from_slice(&[3, 4, len, 0xc0]); // prefix information, on-link + autonomous
        p.extend_from_slice(&86400u32.to_be_bytes());
        p.extend_from_slice(&14400u32.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&prefix.octets());
    }
    p
}

/// True when `pkt` (an ICMPv6 message as a raw socket delivers it) is a router solicitation.
pub fn is_router_solicitation(pkt: &[u8]) -> bool {
    pkt.len() >= 8 && pkt[0] == ICMPV6_RS && pkt[1] == 0
}

fn check_name(ifname: &str) -> Result<std::ffi::CString, DhcpError> {
    let bad = || {
        DhcpError::Interface(ifname.into(), std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad interface name"))
    };
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('/') {
        return Err(bad());
    }
    std::ffi::CString::new(ifname).map_err(|_| bad())
}

/// The interface's index in this process's network namespace (not sysfs, which shows the
/// namespace it was mounted in: a process that entered a namespace with setns(2) sees the
/// wrong interfaces there).
fn ifindex(ifname: &str) -> Result<u32, DhcpError> {
    let name = check_name(ifname)?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if i == 0 {
        return Err(DhcpError::Interface(ifname.into(), std::io::Error::last_os_error()));
    }
    Ok(i)
}

/// The interface's Ethernet address (SIOCGIFHWADDR), for the RA's source link-layer option.
fn hwaddr(ifname: &str) -> Option<[u8; 6]> {
    use std::os::fd::AsRawFd;
    let name = check_name(ifname).ok()?;
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, None).ok()?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads `ifr_name` (NUL-terminated: shorter than IFNAMSIZ, rest zero)
    // and writes `ifr_ifru.ifru_hwaddr` inside `req`, which lives across the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if r != 0 {
        return None;
    }
    // SAFETY: a successful SIOCGIFHWADDR filled the `ifru_hwaddr` variant.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    (mac != [0; 6]).then_some(mac)
}

/// A router-advertisement responder bound to one interface.
pub struct RaResponder {
    socket: UdpSocket,
    ifindex: u32,
    ra: Vec<u8>,
}

impl RaResponder {
    /// Opens a raw ICMPv6 socket on the interface (needs CAP_NET_RAW).
    pub fn bind(cfg: &RaConfig) -> Result<Self, DhcpError> {
        let ifname = cfg.interface.as_str();
        let ifindex = ifindex(ifname)?;
        let mac = hwaddr(ifname);
        let ioerr = |e| DhcpError::Interface(ifname.into(), e);
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map_err(ioerr)?;
        s.bind_device(Some(ifname.as_bytes())).map_err(ioerr)?;
        s.set_multicast_hops_v6(255).map_err(ioerr)?;
        s.set_unicast_hops_v6(255).map_err(ioerr)?;
        s.set_multicast_if_v6(ifindex).map_err(ioerr)?;
        s.join_multicast_v6(&ALL_ROUTERS, ifindex).map_err(ioerr)?;
        s.set_nonblocking(true).map_err(ioerr)?;
        // tokio's UdpSocket is a thin datagram wrapper; recv_from/send_to work unchanged on a
        // raw ICMPv6 descriptor, which spares a hand-made AsyncFd loop.
        let socket = UdpSocket::from_std(s.into()).map_err(ioerr)?;
        Ok(Self { socket, ifindex, ra: build_ra(cfg, mac) })
    }

    /// Sends one unsolicited advertisement (at start-up, so a client already waiting hears it).
    pub async fn announce(&self) -> Result<(), DhcpError> {
        let dst = SocketAddr::V6(SocketAddrV6::new(ALL_NODES, 0, 0, self.ifindex));
        self.socket.send_to(&self.ra, dst).await.map_err(DhcpError::Io)?;
        Ok(())
    }

    /// Answers router solicitations until the future is dropped.
    pub async fn run(self) -> Result<(), DhcpError> {
        let _ = self.announce().await;
        let mut buf = [0u8; 1500];
        loop {
            let (n, src) = match self.socket.recv_from(&mut buf).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "ra recv");
                    continue;
                }
            };
            if !is_router_solicitation(&buf[..n]) {
                continue;
            }
            tracing::debug!(%src, "router solicitation answered");
            if let Err(e) = self.announce().await {
                tracing::warn!(error = %e, "ra send");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_lookup() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert_eq!(hwaddr("lo"), None, "loopback has an all-zero address");
        assert!(ifindex("no-such-if0").is_err());
        assert!(ifindex("../etc").is_err());
        assert!(ifindex("").is_err());
        assert!(ifindex("a-name-far-too-long-for-linux").is_err());
    }

    #[test]
    fn ra_layout() {
        let mut cfg = RaConfig::new("eth0");
        cfg.prefix = Some(("2001:db8::".parse().unwrap(), 64));
        let p = build_ra(&cfg, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(p.len(), 16 + 8 + 32);
        assert_eq!(&p[..8], &[134, 0, 0, 0, 64, 0, 0, 0]);
        assert_eq!(&p[16..24], &[1, 1, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&p[24..28], &[3, 4, 64, 0xc0]);
        assert_eq!(&p[40..42], &[0x20, 0x01]);
        assert!(is_router_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_router_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0]));
    }
}
