//! `ferric serve` as a process with TFTP, HTTP boot and DHCP on loopback high ports. Nodes are
//! enrolled over the API; their boot is prepared through the library (the `flat` network and the
//! `ipxe`/`pxe` boot interfaces on a task over the same database and roots), then: curl fetches
//! the boot programs and per-node files over TFTP and HTTP, a dhcproto client gets an OFFER/ACK
//! for the PXE port of a node being provisioned and silence for an unknown MAC, and clean-up
//! takes it all away again.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dhcproto::v4::{Architecture, DhcpOption, Message, MessageType, OptionCode};
use ferric_service::db::Db;
use ferric_service::drivers::pxe_boot::{self, BootEnv, UrlResolver};
use ferric_service::drivers::{DriverEnv, Registry, RegistryConfig, Task};
use ferric_service::network::dhcp::DbDhcp;
use ferric_service::pxe::MacAddr;
use ferric_service::pxe::dhcp::handler::{client_message, decode};
use ferric_service::pxe::settings::PxeSettings;
use ferric_types::models::NodeId;
use serde_json::{Value, json};
use tokio::net::UdpSocket;

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn free_udp() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

async fn curl(args: &[&str]) -> Vec<u8> {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "30"])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

async fn curl_status(url: &str) -> String {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", url])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn api(client: &reqwest::Client, api: SocketAddr, path: &str, body: Value) -> Value {
    let r = client
        .post(format!("http://{api}{path}"))
        .header("X-OpenStack-Ironic-API-Version", "latest")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// Sends a DISCOVER for an unknown MAC, then one for `mac`, and returns the first reply: the
/// server handles datagrams in order, so a reply to the unknown MAC would come first.
async fn discover_after_unknown(sock: &UdpSocket, server: SocketAddr, mac: MacAddr, opts: Vec<DhcpOption>) -> Message {
    let unknown = MacAddr([0x52, 0x54, 0x00, 0xee, 0xee, 0xee]);
    sock.send_to(&client_message(MessageType::Discover, unknown, 0xdead, opts.clone()), server).await.unwrap();
    sock.send_to(&client_message(MessageType::Discover, mac, 0xbeef, opts), server).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(20), sock.recv_from(&mut buf)).await.unwrap().unwrap();
    let m = decode(&buf[..n]).unwrap();
    assert_eq!(m.xid(), 0xbeef, "only the enrolled, provisioning port is answered");
    m
}

fn boot_file(m: &Message) -> String {
    match m.opts().get(OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(b)) => String::from_utf8_lossy(b).to_string(),
        other => panic!("no boot file: {other:?}"),
    }
}

/// A task over the server's database, with the `pxe`/`ipxe` interfaces writing into the server's
/// roots (as a second conductor process on the same host would).
fn task(db: &Db, registry: &Registry, env: &Arc<DriverEnv>, id: NodeId) -> Task {
    let node = db.get_node_by_uuid(id).unwrap();
    let driver = registry.interfaces_for(&node).unwrap();
    Task { ports: db.node_ports(id).unwrap(), node, driver, env: env.clone() }
}

fn save(db: &Db, t: &Task) {
    db.update_node(&t.node).unwrap();
    db.update_ports(&t.ports).unwrap();
}

#[tokio::test]
async fn serve_runs_tftp_http_and_dhcp() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (api_addr, http_addr) = (free_tcp(), free_tcp());
    let (tftp_addr, dhcp_addr) = (free_udp(), free_udp());
    let _server = Server {
        child: Command::new(env!("CARGO_BIN_EXE_ferric"))
            .arg("serve")
            .args(["--api-bind", &api_addr.to_string(), "--data-dir"])
            .arg(&data)
            .args(["--tftp-bind", &tftp_addr.to_string()])
            .args(["--http-bind", &http_addr.to_string()])
            .args(["--dhcp-bind", &dhcp_addr.to_string()])
            .args(["--dhcp-range", "192.0.2.100,192.0.2.199"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ferric serve"),
    };
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..600 {
        if client.get(format!("http://{api_addr}/")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "ferric serve did not start");

    // Boot programs were installed into the TFTP root at start-up, and TFTP serves them.
    let nbp = curl(&[&format!("tftp://{tftp_addr}/undionly.kpxe")]).await;
    assert_eq!(nbp, std::fs::read("/usr/lib/ipxe/undionly.kpxe").unwrap());
    let pxelinux = curl(&["--tftp-blksize", "1468", &format!("tftp://{tftp_addr}/pxelinux.0")]).await;
    assert_eq!(pxelinux, std::fs::read("/usr/lib/PXELINUX/pxelinux.0").unwrap());

    // Enroll an ipxe node and a pxe node over the API, each with one PXE-enabled port.
    let images = tempfile::tempdir().unwrap();
    let kernel: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(images.path().join("vmlinuz"), &kernel).unwrap();
    std::fs::write(images.path().join("initrd"), b"ramdisk").unwrap();
    let file = |p: &Path, n: &str| format!("file://{}", p.join(n).display());
    let mut ids = Vec::new();
    for (boot, mac) in [("ipxe", "52:54:00:00:00:01"), ("pxe", "52:54:00:00:00:02")] {
        let n = api(
            &client,
            api_addr,
            "/v1/nodes",
            json!({
                "driver": "fake-hardware",
                "boot_interface": boot,
                "network_interface": "flat",
                "driver_info": {
                    "deploy_kernel": file(images.path(), "vmlinuz"),
                    "deploy_ramdisk": file(images.path(), "initrd"),
                },
                "instance_info": {"image_source": "http://192.0.2.9/disk.img"},
            }),
        )
        .await;
        let id: NodeId = n["uuid"].as_str().unwrap().parse().unwrap();
        api(&client, api_addr, "/v1/ports", json!({"address": mac, "node_uuid": id.to_string(), "pxe_enabled": true}))
            .await;
        ids.push((id, mac.parse::<MacAddr>().unwrap()));
    }
    let (ipxe_node, ipxe_mac) = ids[0];
    let (pxe_node, pxe_mac) = ids[1];

    // DHCP is silent for every MAC while no node is being provisioned.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&client_message(MessageType::Discover, ipxe_mac, 1, vec![]), dhcp_addr).await.unwrap();

    // The library path: the flat network and the boot interfaces, on the server's database.
    let db = Db::open(&data.join("ferric.sqlite")).unwrap();
    let settings = PxeSettings {
        http_bind: Some(http_addr),
        image_cache_dir: Some(dir.path().join("test-cache")),
        install_loaders: false,
        ..Default::default()
    };
    let boot_env = BootEnv::open(
        &settings,
        &data,
        format!("http://{api_addr}"),
        Arc::new(DbDhcp::new(db.clone())),
        Arc::new(UrlResolver::new()),
    )
    .unwrap();
    let mut registry = Registry::new(RegistryConfig::default());
    pxe_boot::register(&mut registry);
    let env = Arc::new(DriverEnv { boot: Some(Arc::new(boot_env)), ..Default::default() });
    for (id, _) in &ids {
        let mut t = task(&db, &registry, &env, *id);
        t.driver.boot.validate(&t).unwrap();
        let (net, boot) = (t.driver.network.clone(), t.driver.boot.clone());
        net.add_provisioning_network(&mut t).await.unwrap();
        boot.prepare_ramdisk(&mut t).await.unwrap();
        save(&db, &t);
    }

    // iPXE node: its script and deploy kernel over HTTP (with a range), DHCP offers the script
    // to iPXE and undionly.kpxe to BIOS firmware, then acknowledges the request.
    let script_url = format!("http://{http_addr}/pxelinux.cfg/{}", ipxe_mac.hexhyp());
    let script = String::from_utf8(curl(&[&script_url]).await).unwrap();
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(script.contains(&format!("ipa-api-url=http://{api_addr} ferric-api-url=http://{api_addr}")));
    assert!(script.contains(&format!("ferric-node={ipxe_node}")));
    assert!(script.contains(&format!("BOOTIF={}", ipxe_mac.pxelinux_name())));
    let kernel_url = format!("http://{http_addr}/{ipxe_node}/deploy_kernel");
    assert!(script.contains(&kernel_url), "{script}");
    assert_eq!(curl(&[&kernel_url]).await, kernel);
    assert_eq!(curl(&["-r", "1000-1999", &kernel_url]).await, &kernel[1000..2000]);

    let ipxe_opts = vec![DhcpOption::UserClass(b"iPXE".to_vec())];
    let offer = discover_after_unknown(&sock, dhcp_addr, ipxe_mac, ipxe_opts.clone()).await;
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(boot_file(&offer), script_url);
    let ip = offer.yiaddr();
    assert!((Ipv4Addr::new(192, 0, 2, 100)..=Ipv4Addr::new(192, 0, 2, 199)).contains(&ip), "{ip}");
    assert!(offer.opts().get(OptionCode::Unknown(175)).is_some(), "iPXE gets option 175");
    let mut req = ipxe_opts;
    req.push(DhcpOption::ServerIdentifier(Ipv4Addr::LOCALHOST));
    req.push(DhcpOption::RequestedIpAddress(ip));
    sock.send_to(&client_message(MessageType::Request, ipxe_mac, 0xbeef, req), dhcp_addr).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(20), sock.recv_from(&mut buf)).await.unwrap().unwrap();
    let ack = decode(&buf[..n]).unwrap();
    assert_eq!((ack.opts().msg_type(), ack.yiaddr()), (Some(MessageType::Ack), ip));
    let leases = db.list_dhcp_addresses().unwrap();
    assert!(leases.iter().any(|l| l.ip == ip && l.mac == ipxe_mac.to_string() && l.state == "bound"), "{leases:?}");

    let bios = vec![
        DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
        DhcpOption::ClientSystemArchitecture(Architecture::X86_Bios),
    ];
    let offer = discover_after_unknown(&sock, dhcp_addr, ipxe_mac, bios.clone()).await;
    assert_eq!(boot_file(&offer), "undionly.kpxe");
    assert_eq!(offer.siaddr(), Ipv4Addr::LOCALHOST, "next-server is the TFTP server");

    // pxe node: pxelinux.0 from DHCP, its pxelinux config and deploy kernel over TFTP.
    let offer = discover_after_unknown(&sock, dhcp_addr, pxe_mac, bios.clone()).await;
    assert_eq!(boot_file(&offer), "pxelinux.0");
    let cfg = String::from_utf8(curl(&[&format!("tftp://{tftp_addr}/pxelinux.cfg/{}", pxe_mac.pxelinux_name())]).await)
        .unwrap();
    assert!(cfg.contains(&format!("kernel {pxe_node}/deploy_kernel\n")), "{cfg}");
    assert!(cfg.contains(&format!("ipa-api-url=http://{api_addr}")), "{cfg}");
    assert_eq!(
        curl(&["--tftp-blksize", "1468", &format!("tftp://{tftp_addr}/{pxe_node}/deploy_kernel")]).await,
        kernel
    );

    // Clean-up (as after a deploy or a failure): configs, links and DHCP entries are gone.
    for (id, _) in &ids {
        let mut t = task(&db, &registry, &env, *id);
        let (net, boot) = (t.driver.network.clone(), t.driver.boot.clone());
        boot.clean_up_ramdisk(&mut t).await.unwrap();
        net.remove_provisioning_network(&mut t).await.unwrap();
        save(&db, &t);
    }
    assert_eq!(curl_status(&script_url).await, "404");
    assert_eq!(curl_status(&kernel_url).await, "404");
    // Both MACs are now unknown to DHCP: after two silent DISCOVERs, a provisioning port of a
    // third node answers first.
    let n = api(&client, api_addr, "/v1/nodes", json!({"driver": "fake-hardware", "network_interface": "flat"})).await;
    let third: NodeId = n["uuid"].as_str().unwrap().parse().unwrap();
    let third_mac: MacAddr = "52:54:00:00:00:03".parse().unwrap();
    api(&client, api_addr, "/v1/ports", json!({"address": third_mac.to_string(), "node_uuid": third.to_string()}))
        .await;
    let mut t = task(&db, &registry, &env, third);
    let net = t.driver.network.clone();
    net.add_provisioning_network(&mut t).await.unwrap();
    save(&db, &t);
    for m in [ipxe_mac, pxe_mac] {
        sock.send_to(&client_message(MessageType::Discover, m, 0x5150, bios.clone()), dhcp_addr).await.unwrap();
    }
    let offer = discover_after_unknown(&sock, dhcp_addr, third_mac, bios).await;
    assert_eq!(boot_file(&offer), "undionly.kpxe", "default loader for a port without boot options");
}
