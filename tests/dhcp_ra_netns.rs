//! The router-advertisement responder in a pair of network namespaces joined by a veth pair:
//! the Linux kernel in the client namespace sends a router solicitation when its link comes up,
//! and configures a 2001:db8::/64 address from ferric's answer. Needs root (CI runs as root);
//! everything the test creates is removed by a guard.

use std::process::{Command, Stdio};
use std::time::Duration;

use ferric_service::pxe::dhcp::{RaConfig, RaResponder};
use tokio::io::{AsyncBufReadExt, BufReader};

const CHILD_ENV: &str = "FERRIC_RA_CHILD_IFACE";

/// Child mode: serve router advertisements on the given interface inside the current namespace.
#[tokio::test]
async fn ra_child() {
    let Ok(iface) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut cfg = RaConfig::new(iface);
    cfg.prefix = Some(("2001:db8::".parse().unwrap(), 64));
    let ra = RaResponder::bind(&cfg).expect("bind RA responder");
    println!("FERRIC-RA-READY");
    let _ = tokio::time::timeout(Duration::from_secs(30), ra.run()).await;
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().expect(args[0]);
    assert!(st.success(), "{args:?}");
}

struct Netns {
    names: Vec<String>,
    child: Option<tokio::process::Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

#[tokio::test]
async fn router_solicitation_is_answered_in_a_namespace() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let id = std::process::id() % 100_000;
    let (srv, cli) = (format!("fra-s{id}"), format!("fra-c{id}"));
    let (vs, vc) = (format!("fras{id}"), format!("frac{id}"));
    let mut guard = Netns { names: vec![srv.clone(), cli.clone()], child: None };
    sh(&["ip", "netns", "add", &srv]);
    sh(&["ip", "netns", "add", &cli]);
    sh(&["ip", "link", "add", &vs, "netns", &srv, "type", "veth", "peer", "name", &vc, "netns", &cli]);
    for (ns, dev) in [(&srv, &vs), (&cli, &vc)] {
        sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", &format!("net.ipv6.conf.{dev}.accept_dad=0")]);
    }
    sh(&["ip", "netns", "exec", &cli, "sysctl", "-qw", &format!("net.ipv6.conf.{vc}.accept_ra=1")]);
    sh(&["ip", "netns", "exec", &cli, "sysctl", "-qw", &format!("net.ipv6.conf.{vc}.router_solicitation_delay=0")]);
    sh(&["ip", "-n", &srv, "link", "set", &vs, "up"]);

    // The responder runs inside the server namespace: this test binary, re-run in child mode.
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", &srv])
        .arg(exe)
        .args(["--exact", "ra_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &vs)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    guard.child = Some(child);
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("FERRIC-RA-READY") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "RA responder did not start");
    // Give the start-up announcement time to pass while the client link is still down, so the
    // address below can only come from answering the client's solicitation.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sh(&["ip", "-n", &cli, "link", "set", &vc, "up"]);

    let mut configured = String::new();
    for _ in 0..100 {
        let out = Command::new("ip").args(["-n", &cli, "-6", "addr", "show", "dev", &vc]).output().unwrap();
        configured = String::from_utf8_lossy(&out.stdout).into_owned();
        if configured.contains("inet6 2001:db8:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(configured.contains("inet6 2001:db8:"), "no SLAAC address from ferric's RA:\n{configured}");
    drop(lines);
    drop(guard);
    let left = Command::new("ip").args(["netns", "list"]).stdout(Stdio::piped()).output().unwrap();
    assert!(!String::from_utf8_lossy(&left.stdout).contains(&srv));
}
