//! The DHCP server over real UDP on loopback, driven by a dhcproto-built client.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dhcproto::v4::{Architecture, DhcpOption, Message, MessageType, OptionCode};
use ferric_service::pxe::MacAddr;
use ferric_service::pxe::dhcp::handler::{client_message, decode};
use ferric_service::pxe::dhcp::{
    DhcpBind, DhcpConfig, DhcpHandler, DhcpServer, HostEntry, Loader, MemoryHostTable, MemoryLeaseStore,
};
use tokio::net::UdpSocket;

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

struct Lab {
    hosts: Arc<MemoryHostTable>,
    client: UdpSocket,
    server: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn lab() -> Lab {
    let hosts = Arc::new(MemoryHostTable::new());
    let leases = Arc::new(MemoryLeaseStore::new());
    let mut cfg = DhcpConfig::new(
        SERVER,
        (Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 110)),
        "http://192.0.2.1:8080/pxelinux.cfg/{mac}".into(),
    );
    cfg.router = Some(SERVER);
    cfg.dns = vec![SERVER];
    let handler = Arc::new(DhcpHandler::new(cfg, hosts.clone(), leases));
    let mut bind = DhcpBind::new("127.0.0.1:0".parse().unwrap());
    bind.reply_to_source = true;
    let server = DhcpServer::bind(bind, handler, ferric_types::clock::Clock::system()).unwrap();
    let addr = server.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = server.run().await;
    });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    Lab { hosts, client, server: addr, task }
}

impl Lab {
    async fn send(&self, bytes: &[u8]) {
        self.client.send_to(bytes, self.server).await.unwrap();
    }
    async fn recv(&self) -> Option<Message> {
        let mut buf = [0u8; 1500];
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), self.client.recv_from(&mut buf)).await.ok()?.ok()?;
        decode(&buf[..n])
    }
    /// DISCOVER then REQUEST; returns (OFFER, ACK).
    async fn dora(&self, mac: MacAddr, xid: u32, extra: Vec<DhcpOption>) -> (Message, Message) {
        self.send(&client_message(MessageType::Discover, mac, xid, extra.clone())).await;
        let offer = self.recv().await.expect("offer");
        assert_eq!(offer.xid(), xid);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        let mut req = extra;
        req.push(DhcpOption::ServerIdentifier(SERVER));
        req.push(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        self.send(&client_message(MessageType::Request, mac, xid, req)).await;
        let ack = self.recv().await.expect("ack");
        assert_eq!(ack.xid(), xid);
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), offer.yiaddr());
        (offer, ack)
    }
}

fn known(loader: Option<Loader>) -> HostEntry {
    HostEntry { node: Some("node-1".into()), pxe_enabled: true, loader, ..Default::default() }
}

fn bootfile(m: &Message) -> String {
    match m.opts().get(OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(b)) => String::from_utf8(b.clone()).unwrap(),
        _ => panic!("no option 67"),
    }
}

fn ipxe_encap(m: &Message) -> Option<Vec<u8>> {
    match m.opts().get(OptionCode::Unknown(175)) {
        Some(DhcpOption::Unknown(u)) => Some(u.data().to_vec()),
        _ => None,
    }
}

#[tokio::test]
async fn boot_file_per_architecture_and_ipxe() {
    let lab = lab().await;
    let bios: MacAddr = "52:54:00:00:00:01".parse().unwrap();
    let uefi: MacAddr = "52:54:00:00:00:02".parse().unwrap();
    let lnx: MacAddr = "52:54:00:00:00:03".parse().unwrap();
    let ipxe: MacAddr = "52:54:00:00:00:04".parse().unwrap();
    for m in [bios, uefi, ipxe] {
        lab.hosts.upsert(m, known(None));
    }
    lab.hosts.upsert(lnx, known(Some(Loader::Pxelinux)));
    let pxe = |arch| {
        vec![
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
            DhcpOption::ClientSystemArchitecture(arch),
        ]
    };

    let (offer, ack) = lab.dora(bios, 1, pxe(Architecture::X86_Bios)).await;
    assert_eq!(bootfile(&offer), "undionly.kpxe");
    assert_eq!(ack.fname_str().unwrap().unwrap().trim_end_matches(char::from(0)), "undionly.kpxe");
    assert_eq!(ack.siaddr(), SERVER);
    assert_eq!(ack.opts().get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER)));
    assert_eq!(ack.opts().get(OptionCode::Router), Some(&DhcpOption::Router(vec![SERVER])));
    assert_eq!(ack.opts().get(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(3600)));
    // A PXE ROM is told to boot the named file without boot-server discovery.
    assert_eq!(ack.opts().get(OptionCode::VendorExtensions), Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255])));
    assert!(ipxe_encap(&ack).is_none());
    let first = ack.yiaddr();
    assert!(first >= Ipv4Addr::new(192, 0, 2, 100) && first <= Ipv4Addr::new(192, 0, 2, 110));

    let (_, ack) = lab.dora(uefi, 2, pxe(Architecture::X64)).await;
    assert_eq!(bootfile(&ack), "ipxe.efi");
    assert_ne!(ack.yiaddr(), first);

    let (_, ack) = lab.dora(lnx, 3, pxe(Architecture::X86_Bios)).await;
    assert_eq!(bootfile(&ack), "pxelinux.0");

    // Already iPXE (user class): the script URL, and 175 carrying 176=1 (no ProxyDHCP wait).
    let ipxe_opts =
        vec![DhcpOption::UserClass(b"iPXE".to_vec()), DhcpOption::ClientSystemArchitecture(Architecture::X86_Bios)];
    let (offer, ack) = lab.dora(ipxe, 4, ipxe_opts).await;
    assert_eq!(bootfile(&offer), "http://192.0.2.1:8080/pxelinux.cfg/52-54-00-00-00-04");
    assert_eq!(bootfile(&ack), "http://192.0.2.1:8080/pxelinux.cfg/52-54-00-00-00-04");
    assert_eq!(ipxe_encap(&ack), Some(vec![176, 1, 1]));
    // Recognised by option 175 alone too (iPXE always sends it).
    let (_, ack) = lab
        .dora(
            ipxe,
            5,
            vec![DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
                OptionCode::Unknown(175),
                vec![177, 5, 1, 0x80, 0x86, 0x10, 0x0e],
            ))],
        )
        .await;
    assert!(bootfile(&ack).starts_with("http://"));

    // Renewal keeps the address.
    let (_, again) = lab.dora(bios, 6, pxe(Architecture::X86_Bios)).await;
    assert_eq!(again.yiaddr(), first);
}

#[tokio::test]
async fn unknown_mac_and_garbage_are_ignored() {
    let lab = lab().await;
    let knownmac: MacAddr = "52:54:00:00:00:10".parse().unwrap();
    let disabled: MacAddr = "52:54:00:00:00:11".parse().unwrap();
    let stranger: MacAddr = "52:54:00:00:00:12".parse().unwrap();
    lab.hosts.upsert(knownmac, known(None));
    lab.hosts.upsert(disabled, HostEntry { pxe_enabled: false, ..known(None) });

    // Silence is shown by order: the only answer is the one to the valid, known client sent last.
    lab.send(&client_message(MessageType::Discover, stranger, 100, vec![])).await;
    lab.send(&client_message(MessageType::Discover, disabled, 101, vec![])).await;
    lab.send(b"\x01\x01\x06\x00garbage").await;
    lab.send(&[0u8; 300]).await;
    let mut truncated = client_message(MessageType::Discover, knownmac, 102, vec![]);
    truncated.truncate(200);
    lab.send(&truncated).await;
    lab.send(&client_message(MessageType::Discover, knownmac, 103, vec![])).await;
    let reply = lab.recv().await.expect("reply to the known client");
    assert_eq!(reply.xid(), 103);
    assert_eq!(reply.opts().msg_type(), Some(MessageType::Offer));
    // And nothing else arrives.
    let mut buf = [0u8; 1500];
    assert!(tokio::time::timeout(Duration::from_millis(300), lab.client.recv_from(&mut buf)).await.is_err());
}
