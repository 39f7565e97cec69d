//! `ferric vbmc --nodes N --base-port P --fleet FILE` as a user runs it, driven by ipmitool and
//! by ferric's client; the process is killed (by PID) at the end.

use ferric_service::ipmi::{ClientConfig, IpmiClient, IpmiError, PowerState, Target, UdpConnector};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

struct Vbmc(Child);
impl Drop for Vbmc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port_range(n: u16) -> u16 {
    let mut base = 30_000 + (std::process::id() % 20_000) as u16;
    loop {
        if (0..n).all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
        base = if base > 60_000 { 30_000 } else { base + n };
    }
}

fn ipmitool(port: u16, password: &str, args: &str) -> (bool, String) {
    let out = Command::new("ipmitool")
        .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "admin", "-P", password, "-R", "1", "-N", "1"])
        .args(args.split_whitespace())
        .output()
        .expect("ipmitool is installed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn vbmc_subcommand_serves_a_fleet_with_knobs() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(
        &fleet,
        r#"
[defaults.machine]
soft_off_delay_ms = 0

[[bmc]]
index = 1
faults = { unresponsive = true }

[[bmc]]
index = 2
password = "node2secret"
machine = { initially_on = true }
"#,
    )
    .unwrap();
    let base = free_port_range(3);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferric"))
        .args(["vbmc", "--nodes", "3", "--base-port", &base.to_string()])
        .args(["--username", "admin", "--password", "password", "--fleet"])
        .arg(&fleet)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _vbmc = Vbmc(child);
    assert!(line.contains(&format!("127.0.0.1:{base}-{}", base + 2)), "{line}");

    let (ok, t) = ipmitool(base, "password", "power on");
    assert!(ok, "{t}");
    let (ok, t) = ipmitool(base, "password", "power status");
    assert!(ok && t.contains("is on"), "{t}");
    let (ok, t) = ipmitool(base, "password", "power soft");
    assert!(ok, "{t}");
    let (ok, t) = ipmitool(base, "password", "power status");
    assert!(ok && t.contains("is off"), "soft_off_delay_ms = 0: {t}");

    let (ok, _) = ipmitool(base + 1, "password", "power status");
    assert!(!ok, "BMC 1 is unresponsive by the fleet file");

    let (ok, t) = ipmitool(base + 2, "node2secret", "power status");
    assert!(ok && t.contains("is on"), "{t}");

    let config = ClientConfig {
        attempt_timeout: Duration::from_millis(200),
        retries: 1,
        min_interval: Duration::ZERO,
        ..Default::default()
    };
    let c = IpmiClient::new(
        Target::new("127.0.0.1", "admin", "password").with_port(base + 2),
        Arc::new(UdpConnector),
        config.clone(),
    );
    let e = c.power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::AuthFailed { .. }), "{e}");
    let c = IpmiClient::new(
        Target::new("127.0.0.1", "admin", "password").with_port(base + 1),
        Arc::new(UdpConnector),
        config.clone(),
    );
    let e = c.power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::Timeout { .. }), "{e}");
    let c = IpmiClient::new(
        Target::new("127.0.0.1", "admin", "password").with_port(base).with_cipher_suite(17),
        Arc::new(UdpConnector),
        config,
    );
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);
}
