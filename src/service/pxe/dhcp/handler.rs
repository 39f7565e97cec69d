//! DHCP message handling without sockets: bytes in, an optional reply (bytes + destination)
//! out. The UDP front-end and the simulation both call [`DhcpHandler::handle`].

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use dhcproto::v4::{self, Architecture, DhcpOption, Flags, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use crate::pxe::MacAddr;
use ferric_types::dhcp::{HostEntry, HostTable, Lease, LeaseState, LeaseStore, Loader};

/// iPXE's encapsulated options (RFC-less, documented by iPXE) and the "no ProxyDHCP" flag that
/// stops iPXE waiting for a ProxyDHCP offer.
const OPT_IPXE_ENCAP: u8 = 175;
const IPXE_NO_PXEDHCP: u8 = 176;
/// How long an OFFER holds an address for the client.
const OFFER_HOLD: u64 = 60;

/// Configuration of the DHCP service (one provisioning subnet).
#[derive(Debug, Clone)]
pub struct DhcpConfig {
    /// Our address on the provisioning network: server identifier (option 54).
    pub server_id: Ipv4Addr,
    /// Dynamic range, inclusive.
    pub range: (Ipv4Addr, Ipv4Addr),
    pub netmask: Ipv4Addr,
    pub lease_time: Duration,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// TFTP server given as siaddr (next-server).
    pub next_server: Ipv4Addr,
    /// Loader for hosts whose entry does not choose one.
    pub loader: Loader,
    /// iPXE script URL for iPXE clients; `{mac}` becomes the MAC in `52-54-00-..` form.
    pub ipxe_script_url: String,
    /// Answer MACs missing from the host table (inspection/discovery); unknown MACs are ignored
    /// otherwise.
    pub discovery: bool,
    /// Boot files per firmware.
    pub ipxe_bios: String,
    pub ipxe_uefi: String,
    pub pxelinux_bios: String,
    pub pxelinux_uefi: String,
}

impl DhcpConfig {
    /// Defaults for a subnet where ferric itself is the TFTP/HTTP server.
    pub fn new(server_id: Ipv4Addr, range: (Ipv4Addr, Ipv4Addr), ipxe_script_url: String) -> Self {
        Self {
            server_id,
            range,
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            lease_time: Duration::from_secs(3600),
            router: None,
            dns: Vec::new(),
            next_server: server_id,
            loader: Loader::Ipxe,
            ipxe_script_url,
            discovery: false,
            ipxe_bios: "undionly.kpxe".into(),
            ipxe_uefi: "ipxe.efi".into(),
            pxelinux_bios: "pxelinux.0".into(),
            pxelinux_uefi: "syslinux.efi".into(),
        }
    }
}

/// Where a reply goes (RFC 2131 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyDest {
    /// 255.255.255.255, client port: the client has no address yet.
    Broadcast,
    /// The client's address (`ciaddr`), client port.
    Unicast(Ipv4Addr),
    /// The relay agent (`giaddr`), server port.
    Relay(Ipv4Addr),
}

/// An encoded reply and its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpReply {
    pub bytes: Vec<u8>,
    pub dest: ReplyDest,
    pub kind: MessageType,
}

/// Firmware class of a client, from options 93, 77 and 175.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Bios,
    Uefi,
    /// Already running iPXE: give it the script, not another iPXE binary.
    Ipxe,
}

/// Classifies a request's client.
pub fn client_kind(msg: &Message) -> ClientKind {
    let opts = msg.opts();
    let user_class_ipxe = match opts.get(OptionCode::UserClass) {
        // iPXE sends the bare string; RFC 3004 clients prefix each class with its length.
        Some(DhcpOption::UserClass(v)) => v.as_slice() == b"iPXE" || v.get(1..).is_some_and(|s| s.starts_with(b"iPXE")),
        _ => false,
    };
    if user_class_ipxe || opts.get(OptionCode::Unknown(OPT_IPXE_ENCAP)).is_some() {
        return ClientKind::Ipxe;
    }
    match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a))
            if [Architecture::X64, Architecture::BC, Architecture::X86, Architecture::X64_Http].contains(a) =>
        {
            ClientKind::Uefi
        }
        _ => ClientKind::Bios,
    }
}

/// Serves one provisioning subnet from a host table and a lease store.
pub struct DhcpHandler {
    config: DhcpConfig,
    hosts: Arc<dyn HostTable>,
    leases: Arc<dyn LeaseStore>,
    observer: Option<Arc<dyn DhcpObserver>>,
}

/// Told of every reply the handler produces, with the host entry it answered for: the service
/// records the seed's "DHCP request" / "next-server = Conductor" messages of a node's PXE boot.
pub trait DhcpObserver: Send + Sync {
    fn replied(&self, mac: &MacAddr, host: &HostEntry, kind: MessageType);
}

fn in_range(ip: Ipv4Addr, (first, last): (Ipv4Addr, Ipv4Addr)) -> bool {
    ip >= first && ip <= last
}

impl DhcpHandler {
    pub fn new(config: DhcpConfig, hosts: Arc<dyn HostTable>, leases: Arc<dyn LeaseStore>) -> Self {
        Self { config, hosts, leases, observer: None }
    }

    /// Reports each reply to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn DhcpObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    /// Handles one datagram received at time `now` (seconds since the Unix epoch, supplied by
    /// the caller so a simulation can run on its own clock). Malformed input, unknown MACs and
    /// messages that need no answer give `None`; nothing here panics on input.
    pub fn handle(&self, datagram: &[u8], now: u64) -> Option<DhcpReply> {
        let msg = decode(datagram)?;
        if msg.opcode() != Opcode::BootRequest || msg.hlen() != 6 || msg.chaddr().len() < 6 {
            return None;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&msg.chaddr()[..6]);
        let mac = MacAddr(mac);
        let kind = msg.opts().msg_type()?;
        let host = match self.hosts.lookup(&mac) {
            Some(h) if h.pxe_enabled => h,
            Some(_) => {
                tracing::debug!(%mac, "dhcp: port not pxe_enabled, ignored");
                return None;
            }
            None if self.config.discovery => HostEntry { pxe_enabled: true, ..Default::default() },
            None => {
                tracing::debug!(%mac, "dhcp: unknown MAC ignored");
                return None;
            }
        };
        let result = match kind {
            MessageType::Discover => self.discover(&msg, mac, &host, now),
            MessageType::Request => self.request(&msg, mac, &host, now),
            MessageType::Release => self.release(&msg, mac).map(|_| None),
            MessageType::Decline => self.decline(&msg, mac, now).map(|_| None),
            MessageType::Inform => Ok(self.reply(&msg, MessageType::Ack, None, &host)),
            _ => Ok(None),
        };
        match result {
            Ok(r) => {
                if let (Some(o), Some(reply)) = (&self.observer, &r) {
                    o.replied(&mac, &host, reply.kind);
                }
                r
            }
            Err(e) => {
                tracing::warn!(%mac, error = %e, "dhcp: lease store failed, no reply");
                None
            }
        }
    }

    fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let m = u32::from(self.config.netmask);
        u32::from(ip) & m == u32::from(self.config.server_id) & m
    }

    /// Picks an address for `mac`: its reservation, its current lease, the one it asks for,
    /// or the lowest free one in the range.
    fn choose(
        &self,
        mac: MacAddr,
        host: &HostEntry,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Result<Option<Ipv4Addr>, ferric_types::dhcp::StoreError> {
        if let Some(ip) = host.fixed_address {
            return Ok(Some(ip));
        }
        let all = self.leases.all()?;
        let taken = |ip: Ipv4Addr| {
            all.iter().any(|l| l.ip == ip && (l.mac != mac || l.state == LeaseState::Declined) && l.expires > now)
        };
        if let Some(l) = all.iter().find(|l| l.mac == mac && l.state != LeaseState::Declined)
            && in_range(l.ip, self.config.range)
            && !taken(l.ip)
        {
            return Ok(Some(l.ip));
        }
        if let Some(ip) = requested
            && in_range(ip, self.config.range)
            && !taken(ip)
        {
            return Ok(Some(ip));
        }
        let (first, last) = (u32::from(self.config.range.0), u32::from(self.config.range.1));
        Ok((first..=last).map(Ipv4Addr::from).find(|ip| !taken(*ip)))
    }

    fn discover(
        &self,
        msg: &Message,
        mac: MacAddr,
        host: &HostEntry,
        now: u64,
    ) -> Result<Option<DhcpReply>, ferric_types::dhcp::StoreError> {
        let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        };
        let Some(ip) = self.choose(mac, host, requested, now)? else {
            tracing::warn!(%mac, "dhcp: address pool exhausted");
            return Ok(None);
        };
        // A bound lease stays bound (and keeps its expiry) across a re-DISCOVER.
        let existing = self.leases.by_mac(&mac)?;
        if !matches!(&existing, Some(l) if l.ip == ip && l.state == LeaseState::Bound && l.expires > now) {
            self.leases.put(Lease { mac, ip, state: LeaseState::Offered, expires: now.saturating_add(OFFER_HOLD) })?;
        }
        tracing::info!(%mac, %ip, node = host.node.as_deref().unwrap_or("-"), "dhcp: offer");
        Ok(self.reply(msg, MessageType::Offer, Some(ip), host))
    }

    fn request(
        &self,
        msg: &Message,
        mac: MacAddr,
        host: &HostEntry,
        now: u64,
    ) -> Result<Option<DhcpReply>, ferric_types::dhcp::StoreError> {
        let opts = msg.opts();
        let server_id = match opts.get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
            _ => None,
        };
        let requested = match opts.get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        };
        let lease = self.leases.by_mac(&mac)?;
        if let Some(sid) = server_id {
            // SELECTING: the client picked an offer; if not ours, release what we held.
            if sid != self.config.server_id {
                if let Some(l) = lease
                    && l.state == LeaseState::Offered
                {
                    self.leases.remove(l.ip)?;
                }
                return Ok(None);
            }
            let ok = match (&lease, requested) {
                (Some(l), Some(r)) => l.ip == r,
                _ => false,
            };
            return if ok { self.bind(msg, mac, host, requested, now) } else { Ok(self.nak(msg)) };
        }
        // INIT-REBOOT (option 50) or RENEWING/REBINDING (ciaddr).
        let ip = match (requested, msg.ciaddr()) {
            (Some(r), _) => r,
            (None, c) if !c.is_unspecified() => c,
            _ => return Ok(None),
        };
        if !self.in_subnet(ip) {
            return Ok(self.nak(msg));
        }
        let ours = match &lease {
            Some(l) => l.ip == ip,
            None => false,
        };
        let allowed = ours
            || host.fixed_address == Some(ip)
            || (host.fixed_address.is_none() && self.choose(mac, host, Some(ip), now)? == Some(ip));
        if allowed { self.bind(msg, mac, host, Some(ip), now) } else { Ok(self.nak(msg)) }
    }

    fn bind(
        &self,
        msg: &Message,
        mac: MacAddr,
        host: &HostEntry,
        ip: Option<Ipv4Addr>,
        now: u64,
    ) -> Result<Option<DhcpReply>, ferric_types::dhcp::StoreError> {
        let Some(ip) = ip else {
            return Ok(self.nak(msg));
        };
        let expires = now.saturating_add(self.config.lease_time.as_secs());
        self.leases.put(Lease { mac, ip, state: LeaseState::Bound, expires })?;
        tracing::info!(%mac, %ip, node = host.node.as_deref().unwrap_or("-"), "dhcp: ack");
        Ok(self.reply(msg, MessageType::Ack, Some(ip), host))
    }

    fn release(&self, msg: &Message, mac: MacAddr) -> Result<(), ferric_types::dhcp::StoreError> {
        if let Some(l) = self.leases.by_mac(&mac)?
            && l.ip == msg.ciaddr()
        {
            tracing::info!(%mac, ip = %l.ip, "dhcp: release");
            self.leases.remove(l.ip)?;
        }
        Ok(())
    }

    fn decline(&self, msg: &Message, mac: MacAddr, now: u64) -> Result<(), ferric_types::dhcp::StoreError> {
        let Some(DhcpOption::RequestedIpAddress(ip)) = msg.opts().get(OptionCode::RequestedIpAddress) else {
            return Ok(());
        };
        if let Some(l) = self.leases.by_mac(&mac)?
            && l.ip == *ip
        {
            tracing::warn!(%mac, %ip, "dhcp: address declined (in use elsewhere)");
            let expires = now.saturating_add(self.config.lease_time.as_secs());
            self.leases.put(Lease { mac, ip: *ip, state: LeaseState::Declined, expires })?;
        }
        Ok(())
    }

    fn nak(&self, req: &Message) -> Option<DhcpReply> {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_xid(req.xid())
            .set_flags(req.flags())
            .set_giaddr(req.giaddr())
            .set_chaddr(req.chaddr());
        m.opts_mut().insert(DhcpOption::MessageType(MessageType::Nak));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(self.config.server_id));
        let dest = if req.giaddr().is_unspecified() { ReplyDest::Broadcast } else { ReplyDest::Relay(req.giaddr()) };
        encode(&m).map(|bytes| DhcpReply { bytes, dest, kind: MessageType::Nak })
    }

    /// Builds an OFFER or ACK (`yiaddr` `None` for an INFORM answer) with the boot options the
    /// client's firmware needs.
    fn reply(&self, req: &Message, kind: MessageType, yiaddr: Option<Ipv4Addr>, host: &HostEntry) -> Option<DhcpReply> {
        let c = &self.config;
        let client = client_kind(req);
        let loader = host.loader.unwrap_or(c.loader);
        let boot_file = match (loader, client) {
            (Loader::Ipxe, ClientKind::Ipxe) => host
                .ipxe_script_url
                .clone()
                .unwrap_or_else(|| c.ipxe_script_url.replace("{mac}", &mac_of(req).hexhyp())),
            _ if host.boot_file.is_some() => host.boot_file.clone().unwrap_or_default(),
            (Loader::Ipxe, ClientKind::Bios) => c.ipxe_bios.clone(),
            (Loader::Ipxe, ClientKind::Uefi) => c.ipxe_uefi.clone(),
            (Loader::Pxelinux, ClientKind::Uefi) => c.pxelinux_uefi.clone(),
            (Loader::Pxelinux, _) => c.pxelinux_bios.clone(),
        };
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_xid(req.xid())
            .set_flags(req.flags())
            .set_giaddr(req.giaddr())
            .set_ciaddr(req.ciaddr())
            .set_yiaddr(yiaddr.unwrap_or(Ipv4Addr::UNSPECIFIED))
            .set_siaddr(host.next_server.unwrap_or(c.next_server))
            .set_chaddr(req.chaddr());
        if boot_file.len() < 128 {
            m.set_fname_str(&boot_file);
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(c.server_id));
        if yiaddr.is_some() {
            let secs = u32::try_from(c.lease_time.as_secs()).unwrap_or(u32::MAX);
            o.insert(DhcpOption::AddressLeaseTime(secs));
            o.insert(DhcpOption::Renewal(secs / 2));
            o.insert(DhcpOption::Rebinding(secs / 8 * 7));
        }
        o.insert(DhcpOption::SubnetMask(c.netmask));
        if let Some(r) = c.router {
            o.insert(DhcpOption::Router(vec![r]));
        }
        if !c.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServer(c.dns.clone()));
        }
        o.insert(DhcpOption::BootfileName(boot_file.into_bytes()));
        match client {
            ClientKind::Ipxe => {
                o.insert(DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::Unknown(OPT_IPXE_ENCAP),
                    vec![IPXE_NO_PXEDHCP, 1, 1],
                )));
            }
            ClientKind::Bios | ClientKind::Uefi => {
                if let Some(DhcpOption::ClassIdentifier(ci)) = req.opts().get(OptionCode::ClassIdentifier)
                    && ci.starts_with(b"PXEClient")
                {
                    // PXE discovery control = 8: boot the file named here, no boot-server
                    // discovery and no wait for a ProxyDHCP offer.
                    o.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
                    o.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
                }
            }
        }
        if let Some(relay) = req.opts().get(OptionCode::RelayAgentInformation) {
            o.insert(relay.clone());
        }
        let dest = if !req.giaddr().is_unspecified() {
            ReplyDest::Relay(req.giaddr())
        } else if !req.ciaddr().is_unspecified() {
            ReplyDest::Unicast(req.ciaddr())
        } else {
            ReplyDest::Broadcast
        };
        encode(&m).map(|bytes| DhcpReply { bytes, dest, kind })
    }
}

fn mac_of(m: &Message) -> MacAddr {
    let mut a = [0u8; 6];
    if let Some(s) = m.chaddr().get(..6) {
        a.copy_from_slice(s);
    }
    MacAddr(a)
}

fn encode(m: &Message) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(576);
    m.encode(&mut Encoder::new(&mut buf)).ok()?;
    Some(buf)
}

/// Builds a client message (tests and the simulated machines use it as their DHCP client).
pub fn client_message(kind: MessageType, mac: MacAddr, xid: u32, opts: Vec<DhcpOption>) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest).set_xid(xid).set_flags(Flags::default().set_broadcast()).set_chaddr(&mac.0);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    encode(&m).unwrap_or_default()
}

/// Decodes a DHCP message, refusing what dhcproto 0.15 would panic on.
///
/// dhcproto asserts (in debug builds) or underflows on some option lengths (80 must be empty,
/// 94 three bytes, 151 at least one, 81 at least three, 152-155 four) and concatenates repeated
/// options first (RFC 3396), so the options are walked here and such packets dropped before
/// dhcproto sees them. Packets without the DHCP magic cookie (plain BOOTP) are dropped too.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    const COOKIE: [u8; 4] = [99, 130, 83, 99];
    if bytes.len() < 240 || bytes[236..240] != COOKIE || usize::from(bytes[2]) > 16 {
        return None;
    }
    let mut total = [0usize; 256];
    let mut present = [false; 256];
    // The shortest single instance of each code: dhcproto checks some one by one, not only
    // concatenated (a fuzzer found option 81 empty, then repeated long enough).
    let mut shortest = [usize::MAX; 256];
    // Adds up the lengths of the options in `region` (each code's total, as dhcproto
    // concatenates repeats); `None` when an option runs past the region's end.
    let mut walk = |region: &[u8]| -> Option<()> {
        let mut i = 0;
        while i < region.len() {
            let code = usize::from(region[i]);
            match code {
                0 => i += 1,
                255 => break,
                _ => {
                    let len = usize::from(*region.get(i + 1)?);
                    if i + 2 + len > region.len() {
                        return None;
                    }
                    total[code] += len;
                    shortest[code] = shortest[code].min(len);
                    present[code] = true;
                    i += 2 + len;
                }
            }
        }
        Some(())
    };
    walk(&bytes[240..])?;
    // Option 52 (overload, RFC 2132 9.3) makes dhcproto read options from the `file` (1) and/or
    // `sname` (2) fields too: those are walked as well (a fuzzer found a panic hidden there).
    let overload = overload_value(&bytes[240..]);
    if overload & 1 != 0 {
        walk(&bytes[108..236])?;
    }
    if overload & 2 != 0 {
        walk(&bytes[44..108])?;
    }
    let bad = |code: usize, ok: fn(usize) -> bool| present[code] && !(ok(total[code]) && ok(shortest[code]));
    if bad(80, |l| l == 0)
        || bad(94, |l| l == 3)
        || bad(81, |l| l >= 3)
        || bad(151, |l| l >= 1)
        || (152..=155).any(|c| bad(c, |l| l == 4))
    {
        return None;
    }
    Message::decode(&mut Decoder::new(bytes)).ok()
}

/// The value of option 52 (overload) among `options`, 0 when absent or malformed.
fn overload_value(options: &[u8]) -> u8 {
    let mut i = 0;
    while i + 1 < options.len() {
        match options[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(options[i + 1]);
                if code == 52 && len == 1 {
                    return options.get(i + 2).copied().unwrap_or(0);
                }
                i += 2 + len;
            }
        }
    }
    0
}

pub use v4::MessageType as DhcpMessageType;
