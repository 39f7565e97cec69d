//! ferric's TFTP server against real clients (curl, atftp) on loopback, plus raw-packet checks
//! of the error answers.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ferric_service::pxe::tftp::packet::{self, ErrorCode, Mode, Packet, Request};
use ferric_service::pxe::tftp::{TftpConfig, TftpServer};
use tokio::net::UdpSocket;
use tokio::process::Command;

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    out: std::path::PathBuf,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn fixture(files: &[(&str, Vec<u8>)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("pxelinux.cfg")).unwrap();
    for (name, data) in files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    std::fs::write(dir.path().join("secret"), b"outside the root").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
    let server = TftpServer::bind(TftpConfig::new("127.0.0.1:0".parse().unwrap(), &root)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = server.run().await;
    });
    let out = dir.path().join("out");
    Fixture { _dir: dir, root, out, addr, server }
}

async fn curl(f: &Fixture, name: &str, args: &[&str]) -> std::process::Output {
    let _ = std::fs::remove_file(&f.out);
    Command::new("curl")
        .args(["-s", "-S", "--path-as-is", "--max-time", "120"])
        .args(args)
        .arg("-o")
        .arg(&f.out)
        .arg(format!("tftp://{}/{name}", f.addr))
        .output()
        .await
        .unwrap()
}

async fn atftp(f: &Fixture, name: &str, options: &[&str]) -> std::process::Output {
    let _ = std::fs::remove_file(&f.out);
    let mut c = Command::new("atftp");
    c.args(["--get", "-r", name, "-l"]).arg(&f.out);
    for o in options {
        c.args(["--option", o]);
    }
    c.args([f.addr.ip().to_string(), f.addr.port().to_string()]);
    tokio::time::timeout(Duration::from_secs(120), c.output()).await.unwrap().unwrap()
}

fn same(out: &Path, want: &[u8]) -> bool {
    std::fs::read(out).map(|b| b == want).unwrap_or(false)
}

#[tokio::test]
async fn curl_and_atftp_fetch_byte_identical() {
    let small = pattern(100_000, 1);
    let exact = pattern(1468 * 3, 2); // a multiple of blksize ends with an empty DATA block
    let f = fixture(&[("pxelinux.0", small.clone()), ("pxelinux.cfg/01-aa-bb", exact.clone())]).await;

    let o = curl(&f, "pxelinux.0", &[]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(same(&f.out, &small));
    let o = curl(&f, "pxelinux.0", &["--tftp-blksize", "1468"]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(same(&f.out, &small));
    let o = curl(&f, "/pxelinux.cfg/01-aa-bb", &["--tftp-blksize", "1468"]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(same(&f.out, &exact));
    let o = curl(&f, "pxelinux.0", &["--tftp-no-options"]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(same(&f.out, &small));

    let o = atftp(&f, "pxelinux.0", &["blksize 1468"]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(same(&f.out, &small));
    let o = atftp(&f, "pxelinux.0", &["blksize 1468", "windowsize 64"]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(same(&f.out, &small));
    let o = atftp(&f, "pxelinux.cfg/01-aa-bb", &["blksize 1468", "windowsize 4", "tsize 0"]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(same(&f.out, &exact));
}

#[tokio::test]
async fn block_number_rolls_over_at_blksize_512() {
    // 33 MiB at 512-byte blocks is 67585 blocks: the 16-bit block number wraps once.
    let big = pattern(33 << 20, 3);
    let f = fixture(&[("big.bin", big.clone())]).await;
    let o = curl(&f, "big.bin", &["--tftp-blksize", "512"]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(same(&f.out, &big), "curl: bytes differ after rollover");
    let o = atftp(&f, "big.bin", &["blksize 512", "windowsize 16"]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(same(&f.out, &big), "atftp: bytes differ after rollover");
}

/// Sends a request and returns the first packet's error code, if it is an ERROR.
async fn raw_request(addr: SocketAddr, req: &Request) -> Option<(ErrorCode, String)> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&packet::request(req), addr).await.unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf)).await.ok()?.ok()?;
    match Packet::decode(&buf[..n]) {
        Ok(Packet::Error { code, message }) => Some((code, message)),
        _ => None,
    }
}

fn rrq(name: &str) -> Request {
    Request { write: false, filename: name.into(), mode: Mode::Octet, options: vec![] }
}

#[tokio::test]
async fn traversal_and_bad_requests_get_error_packets() {
    let f = fixture(&[("pxelinux.0", pattern(1000, 4))]).await;
    assert!(f.root.join("escape").exists());
    for name in ["../secret", "pxelinux.cfg/../../secret", "..\\secret", "escape"] {
        let (code, _) = raw_request(f.addr, &rrq(name)).await.expect(name);
        assert_eq!(code, ErrorCode::AccessViolation, "{name}");
    }
    // Absolute names are taken relative to the root, so a host path is simply absent.
    let outside = f.root.parent().unwrap().join("secret");
    let (code, _) = raw_request(f.addr, &rrq(outside.to_str().unwrap())).await.unwrap();
    assert_eq!(code, ErrorCode::FileNotFound);
    let (code, _) = raw_request(f.addr, &rrq("missing")).await.unwrap();
    assert_eq!(code, ErrorCode::FileNotFound);
    let wrq = Request { write: true, ..rrq("pxelinux.0") };
    let (code, _) = raw_request(f.addr, &wrq).await.unwrap();
    assert_eq!(code, ErrorCode::IllegalOperation);

    // Malformed datagrams: an error answer, and the server keeps serving.
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(b"\x00\x01no-terminator", f.addr).await.unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf)).await.unwrap().unwrap();
    assert!(matches!(Packet::decode(&buf[..n]), Ok(Packet::Error { code: ErrorCode::IllegalOperation, .. })));

    // Real clients see the refusal as a TFTP error, not data.
    let o = curl(&f, "../secret", &[]).await;
    assert!(!o.status.success());
    assert!(!same(&f.out, b"outside the root"));
    let o = atftp(&f, "escape", &[]).await;
    assert!(!same(&f.out, b"outside the root"), "{o:?}");
    let o = curl(&f, "pxelinux.0", &[]).await;
    assert!(o.status.success(), "server still serves after bad requests: {o:?}");
}

#[tokio::test]
async fn retransmits_on_timeout_and_bounds_transfers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), pattern(5000, 5)).unwrap();
    let mut cfg = TftpConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
    cfg.max_transfers = 1;
    cfg.limits.max_retries = 2;
    let server = TftpServer::bind(cfg).await.unwrap();
    let addr = server.local_addr().unwrap();
    let task = tokio::spawn(server.run());

    // First client asks for timeout 1 and never ACKs: DATA 1 comes again from the same TID.
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = Request { options: vec![("timeout".into(), "1".into())], ..rrq("f") };
    a.send_to(&packet::request(&req), addr).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, tid) = a.recv_from(&mut buf).await.unwrap();
    assert_eq!(Packet::decode(&buf[..n]), Ok(Packet::Oack(vec![("timeout".into(), "1".into())])));
    a.send_to(&packet::ack(0), tid).await.unwrap();
    let (n1, t1) = a.recv_from(&mut buf).await.unwrap();
    let first = buf[..n1].to_vec();
    assert!(matches!(Packet::decode(&first), Ok(Packet::Data { block: 1, .. })));

    // While it is stalled the only slot is taken: a second client is told the server is busy.
    let (code, msg) = raw_request(addr, &rrq("f")).await.unwrap();
    assert_eq!((code, msg.as_str()), (ErrorCode::NotDefined, "server busy"));

    let (n2, t2) = tokio::time::timeout(Duration::from_secs(5), a.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!((t2, &buf[..n2]), (t1, &first[..]), "retransmitted DATA 1");
    // After the retries run out the slot frees up again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    b.send_to(&packet::request(&rrq("f")), addr).await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), b.recv_from(&mut buf)).await.unwrap().unwrap();
    assert!(matches!(Packet::decode(&buf[..n]), Ok(Packet::Data { block: 1, .. })));
    task.abort();
}
