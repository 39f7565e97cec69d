//! `pxe::start` brings up TFTP, HTTP and DHCP together on loopback; curl fetches over TFTP and
//! HTTP, a dhcproto client gets an offer.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use dhcproto::v4::MessageType;
use ferric_service::pxe::MacAddr;
use ferric_service::pxe::dhcp::handler::{client_message, decode};
use ferric_service::pxe::dhcp::{DhcpBind, DhcpConfig, HostEntry, MemoryHostTable, MemoryLeaseStore};
use ferric_service::pxe::service::parse_range;
use ferric_service::pxe::tftp::TftpConfig;
use ferric_service::pxe::{PxeServiceConfig, start};

#[tokio::test]
async fn all_services_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (tftp_root, http_root) = (dir.path().join("tftp"), dir.path().join("http"));
    std::fs::create_dir_all(&tftp_root).unwrap();
    std::fs::create_dir_all(&http_root).unwrap();
    std::fs::write(tftp_root.join("undionly.kpxe"), b"nbp").unwrap();
    std::fs::write(http_root.join("boot.ipxe"), b"#!ipxe\n").unwrap();

    let mut bind = DhcpBind::new("127.0.0.1:0".parse().unwrap());
    bind.reply_to_source = true;
    let dcfg = DhcpConfig::new(
        Ipv4Addr::new(192, 0, 2, 1),
        parse_range("192.0.2.100,192.0.2.199").unwrap(),
        "http://192.0.2.1:8080/pxelinux.cfg/{mac}".into(),
    );
    let cfg = PxeServiceConfig {
        tftp: Some(TftpConfig::new("127.0.0.1:0".parse().unwrap(), &tftp_root)),
        http: Some(("127.0.0.1:0".parse().unwrap(), http_root.clone())),
        http_tls: None,
        dhcp: Some((bind, dcfg)),
        ra: None,
        clock: ferric_types::clock::Clock::system(),
    };
    let hosts = Arc::new(MemoryHostTable::new());
    let mac: MacAddr = "52:54:00:aa:bb:cc".parse().unwrap();
    hosts.upsert(mac, HostEntry { pxe_enabled: true, ..Default::default() });
    let mut svc = start(cfg, hosts, Arc::new(MemoryLeaseStore::new())).await.unwrap();

    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .arg(format!("tftp://{}/undionly.kpxe", svc.tftp_addr.unwrap()))
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"nbp");
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .arg(format!("http://{}/boot.ipxe", svc.http_addr.unwrap()))
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"#!ipxe\n");

    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(&client_message(MessageType::Discover, mac, 42, vec![]), svc.dhcp_addr.unwrap()).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf)).await.unwrap().unwrap();
    let offer = decode(&buf[..n]).unwrap();
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(192, 0, 2, 100));
    svc.tasks.abort_all();
}
