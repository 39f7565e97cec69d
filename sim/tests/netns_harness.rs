//! The network-namespace harness: bridge and taps inside, sockets and processes inside, and
//! everything gone afterwards, also after a panic or a killed test process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

use ferric_sim::netns::{self, BRIDGE, BRIDGE_V4, BRIDGE_V6, NetNs};

fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false)
}

#[test]
fn bridge_taps_sockets_and_processes_live_inside_and_go_away() {
    let ns = NetNs::create().unwrap();
    let name = ns.name().to_string();
    assert!(netns::exists(&name));

    let addrs = ip_output(&["-n", &name, "addr", "show", "dev", BRIDGE]);
    assert!(addrs.contains(&format!("{BRIDGE_V4}/24")), "{addrs}");
    assert!(addrs.contains(&format!("{BRIDGE_V6}/64")), "{addrs}");
    assert_eq!(ns.add_tap().unwrap(), "tap0");
    assert_eq!(ns.add_tap().unwrap(), "tap1");
    let links = ip_output(&["-n", &name, "link", "show", "master", BRIDGE]);
    assert!(links.contains("tap0") && links.contains("tap1"), "{links}");
    // A listener bound inside, served from an ordinary thread, reached by a client inside.
    let listener = ns.run(|| TcpListener::bind(SocketAddr::from((BRIDGE_V4, 0)))).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let echoed = ns
        .run(|| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).unwrap();
            buf
        })
        .unwrap();
    assert_eq!(&echoed, b"ping");
    server.join().unwrap();

    // The same through a tokio runtime whose threads are all inside.
    let rt = ns.runtime().unwrap();
    let got = rt
        .block_on(rt.spawn(async move {
            let l = tokio::net::TcpListener::bind((BRIDGE_V4, 0)).await.unwrap();
            let a = l.local_addr().unwrap();
            let accept = tokio::spawn(async move { l.accept().await.map(|_| ()) });
            tokio::net::TcpStream::connect(a).await.unwrap();
            accept.await.unwrap().is_ok()
        }))
        .unwrap();
    assert!(got);
    drop(rt);
    let got = ns.block_on(async { tokio::net::UdpSocket::bind((BRIDGE_V6, 0)).await.is_ok() }).unwrap();
    assert!(got);

    // A process inside sees the bridge; a long-running one is killed on drop.
    let out = ns.command("ip").unwrap().args(["-br", "addr", "show", "dev", BRIDGE]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("192.0.2.1/24"));
    let mut sleeper = ns.command("sleep").unwrap().arg("600").spawn().unwrap();
    let pid = sleeper.id();
    assert!(ns.pids().contains(&(pid as i32)));

    drop(ns);
    assert!(!netns::exists(&name));
    assert!(!alive(pid), "process {pid} survived the namespace");
    // Already reaped by the namespace's drop; this only tells std::process so.
    let _ = sleeper.wait();
}

#[test]
fn cleanup_happens_when_the_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let ns = NetNs::create().unwrap();
        ns.add_tap().unwrap();
        // Killed and reaped by the namespace's drop during the unwind.
        #[allow(clippy::zombie_processes)]
        let child = ns.command("sleep").unwrap().arg("600").spawn().unwrap();
        tx.send((ns.name().to_string(), child.id())).unwrap();
        panic!("test failure with a namespace, a tap and a process alive");
    })
    .join();
    assert!(result.is_err());
    let (name, pid) = rx.recv().unwrap();
    assert!(!netns::exists(&name), "namespace {name} left behind");
    assert!(!alive(pid), "process {pid} left behind");
}

#[test]
fn namespaces_of_dead_test_processes_are_removed() {
    // A process that has exited: its PID names a namespace nobody owns any more.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("ferric-{dead}-0");
    let status = Command::new("ip").args(["netns", "add", &stale]).status().unwrap();
    assert!(status.success());
    assert!(Path::new("/run/netns").join(&stale).exists());
    let ns = NetNs::create().unwrap();
    assert!(!netns::exists(&stale), "stale namespace {stale} still there");
    drop(ns);
}
