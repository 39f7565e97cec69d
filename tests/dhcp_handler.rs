//! The DHCP handler without sockets: lease life cycle (RELEASE, DECLINE, INFORM, NAK, pool
//! exhaustion, discovery mode) and robustness against arbitrary bytes.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
use ferric_service::pxe::MacAddr;
use ferric_service::pxe::dhcp::handler::{client_message, decode};
use ferric_service::pxe::dhcp::{
    DhcpConfig, DhcpHandler, HostEntry, LeaseState, LeaseStore, MemoryHostTable, MemoryLeaseStore, ReplyDest,
};
use proptest::prelude::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NOW: u64 = 1_700_000_000;

fn setup(range_len: u8) -> (DhcpHandler, Arc<MemoryHostTable>, Arc<MemoryLeaseStore>) {
    let hosts = Arc::new(MemoryHostTable::new());
    let leases = Arc::new(MemoryLeaseStore::new());
    let cfg = DhcpConfig::new(
        SERVER,
        (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 10 + range_len - 1)),
        "http://192.0.2.1/pxelinux.cfg/{mac}".into(),
    );
    (DhcpHandler::new(cfg, hosts.clone(), leases.clone()), hosts, leases)
}

fn mac(n: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 1, n])
}

fn enable(hosts: &MemoryHostTable, m: MacAddr) {
    hosts.upsert(m, HostEntry { pxe_enabled: true, ..Default::default() });
}

fn bind(h: &DhcpHandler, m: MacAddr, xid: u32) -> Ipv4Addr {
    let offer = h.handle(&client_message(MessageType::Discover, m, xid, vec![]), NOW).unwrap();
    let ip = decode(&offer.bytes).unwrap().yiaddr();
    let req = vec![DhcpOption::ServerIdentifier(SERVER), DhcpOption::RequestedIpAddress(ip)];
    let ack = h.handle(&client_message(MessageType::Request, m, xid, req), NOW).unwrap();
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(ack.dest, ReplyDest::Broadcast);
    ip
}

fn with_ciaddr(mut bytes: Vec<u8>, ip: Ipv4Addr) -> Vec<u8> {
    bytes[12..16].copy_from_slice(&ip.octets());
    bytes
}

#[test]
fn lease_life_cycle() {
    let (h, hosts, leases) = setup(2);
    let (a, b, c) = (mac(1), mac(2), mac(3));
    for m in [a, b, c] {
        enable(&hosts, m);
    }
    let ip_a = bind(&h, a, 1);
    let ip_b = bind(&h, b, 2);
    assert_ne!(ip_a, ip_b);
    assert_eq!(leases.by_mac(&a).unwrap().unwrap().state, LeaseState::Bound);
    // Pool of two is exhausted: the third client gets no offer.
    assert!(h.handle(&client_message(MessageType::Discover, c, 3, vec![]), NOW).is_none());

    // RENEWING: unicast to ciaddr.
    let renew = with_ciaddr(client_message(MessageType::Request, a, 4, vec![]), ip_a);
    let ack = h.handle(&renew, NOW + 100).unwrap();
    assert_eq!((ack.kind, ack.dest), (MessageType::Ack, ReplyDest::Unicast(ip_a)));

    // INIT-REBOOT asking for someone else's address: NAK.
    let steal = client_message(MessageType::Request, a, 5, vec![DhcpOption::RequestedIpAddress(ip_b)]);
    assert_eq!(h.handle(&steal, NOW).unwrap().kind, MessageType::Nak);
    // Off-subnet address: NAK.
    let off = client_message(
        MessageType::Request,
        a,
        6,
        vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(198, 51, 100, 7))],
    );
    assert_eq!(h.handle(&off, NOW).unwrap().kind, MessageType::Nak);

    // RELEASE frees the address for the third client.
    let rel = with_ciaddr(client_message(MessageType::Release, b, 7, vec![]), ip_b);
    assert!(h.handle(&rel, NOW).is_none());
    assert!(leases.by_mac(&b).unwrap().is_none());
    assert_eq!(bind(&h, c, 8), ip_b);

    // DECLINE takes the address out of the pool; the client gets the other one later.
    let dec = client_message(MessageType::Decline, c, 9, vec![DhcpOption::RequestedIpAddress(ip_b)]);
    assert!(h.handle(&dec, NOW).is_none());
    assert!(leases.all().unwrap().iter().any(|l| l.ip == ip_b && l.state == LeaseState::Declined));
    assert!(h.handle(&client_message(MessageType::Discover, c, 10, vec![]), NOW).is_none());
    // After a's lease expires, c gets a's address.
    let later = NOW + 3601 + 200;
    let offer = h.handle(&client_message(MessageType::Discover, c, 11, vec![]), later).unwrap();
    assert_eq!(decode(&offer.bytes).unwrap().yiaddr(), ip_a);

    // A REQUEST for another server's offer drops what we held and is not answered.
    let other = vec![DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 254)), DhcpOption::RequestedIpAddress(ip_a)];
    assert!(h.handle(&client_message(MessageType::Request, c, 11, other), later).is_none());
    assert!(leases.by_mac(&c).unwrap().is_none());

    // INFORM: options, no address, no lease time.
    let inf = with_ciaddr(client_message(MessageType::Inform, a, 12, vec![]), ip_a);
    let r = h.handle(&inf, NOW).unwrap();
    let m = decode(&r.bytes).unwrap();
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert_eq!(r.dest, ReplyDest::Unicast(ip_a));
}

#[test]
fn reservations_discovery_and_overrides() {
    let (h, hosts, _) = setup(4);
    let fixed = Ipv4Addr::new(192, 0, 2, 50);
    hosts.upsert(
        mac(1),
        HostEntry {
            pxe_enabled: true,
            fixed_address: Some(fixed),
            boot_file: Some("custom.kpxe".into()),
            next_server: Some(Ipv4Addr::new(192, 0, 2, 2)),
            ..Default::default()
        },
    );
    let offer = h.handle(&client_message(MessageType::Discover, mac(1), 1, vec![]), NOW).unwrap();
    let m = decode(&offer.bytes).unwrap();
    assert_eq!(m.yiaddr(), fixed);
    assert_eq!(m.siaddr(), Ipv4Addr::new(192, 0, 2, 2));
    assert_eq!(m.opts().get(OptionCode::BootfileName), Some(&DhcpOption::BootfileName(b"custom.kpxe".to_vec())));
    // Unknown MACs only with discovery on.
    assert!(h.handle(&client_message(MessageType::Discover, mac(9), 2, vec![]), NOW).is_none());
    let (h2, _, _) = setup(4);
    let mut cfg = h2.config().clone();
    cfg.discovery = true;
    let h2 = DhcpHandler::new(cfg, Arc::new(MemoryHostTable::new()), Arc::new(MemoryLeaseStore::new()));
    assert!(h2.handle(&client_message(MessageType::Discover, mac(9), 2, vec![]), NOW).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let (h, hosts, _) = setup(4);
        enable(&hosts, mac(1));
        let _ = h.handle(&bytes, NOW);
    }

    #[test]
    fn mutated_requests_never_panic(
        kind in 1u8..9,
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..12),
        cut in 0usize..400,
    ) {
        let (h, hosts, _) = setup(4);
        enable(&hosts, mac(1));
        let mt = MessageType::from(kind);
        let mut b = client_message(mt, mac(1), 7, vec![
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(192, 0, 2, 11)),
            DhcpOption::UserClass(b"iPXE".to_vec()),
        ]);
        for (i, v) in flips {
            if let Some(x) = b.get_mut(i) { *x = v; }
        }
        b.truncate(cut.max(1));
        let _ = h.handle(&b, NOW);
    }
}
