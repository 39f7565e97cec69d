//! `ferric vbmc --protocol redfish|both` as a user runs it, driven by curl (and ipmitool, for the
//! machine both BMCs share); the process is killed (by PID) at the end.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Vbmc(Child);
impl Drop for Vbmc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` consecutive ports free on both UDP and TCP.
fn free_port_range(n: u16, salt: u16) -> u16 {
    let mut base = 20_000 + ((std::process::id() as u16).wrapping_mul(7).wrapping_add(salt * 97) % 30_000);
    loop {
        if (0..n).all(|i| {
            std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()
        }) {
            return base;
        }
        base = if base > 60_000 { 20_000 } else { base + n };
    }
}

fn start(args: &[&str]) -> (Vbmc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferric"))
        .arg("vbmc")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Vbmc(child), line)
}

fn curl(args: &[&str]) -> serde_json::Value {
    let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl is installed");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("curl {args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn vbmc_serves_redfish_over_https_next_to_ipmi() {
    let base = free_port_range(2, 1);
    let (_vbmc, line) = start(&["--nodes", "2", "--base-port", &base.to_string(), "--protocol", "both"]);
    assert!(line.contains(&format!("127.0.0.1:{base}-{}", base + 1)) && line.contains("Redfish https://"), "{line}");
    let url = format!("https://127.0.0.1:{}/redfish/v1/Systems/System.1", base + 1);
    let sys = curl(&["-k", "-u", "admin:password", &url]);
    assert_eq!(sys["@odata.type"], "#ComputerSystem.v1_20_0.ComputerSystem");
    assert_eq!(sys["PowerState"], "Off");
    assert_eq!(sys["Name"], "node-1");
    // Unauthenticated: a Redfish error body.
    let err = curl(&["-k", &url]);
    assert!(err["error"]["@Message.ExtendedInfo"][0]["MessageId"].is_string(), "{err}");

    // IPMI on UDP base+1 powers on the machine the Redfish BMC on TCP base+1 reports.
    let ipmi = Command::new("ipmitool")
        .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &(base + 1).to_string()])
        .args(["-U", "admin", "-P", "password", "-R", "1", "-N", "1", "power", "on"])
        .output();
    if let Ok(out) = ipmi {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sys = curl(&["-k", "-u", "admin:password", &url]);
        assert_eq!(sys["PowerState"], "On");
    } else {
        eprintln!("ipmitool missing: the shared-machine check is skipped");
    }
    // And a Redfish reset reaches it.
    let reset = format!("{url}/Actions/ComputerSystem.Reset");
    let out = Command::new("curl")
        .args(["-sS", "-k", "-u", "admin:password", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Content-Type: application/json", "-d", r#"{"ResetType": "ForceOff"}"#, &reset])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");
    assert_eq!(curl(&["-k", "-u", "admin:password", &url])["PowerState"], "Off");
}

#[test]
fn vbmc_serves_plain_http_redfish_with_custom_credentials() {
    let base = free_port_range(1, 2);
    let (_vbmc, line) = start(&[
        "--nodes",
        "1",
        "--base-port",
        &base.to_string(),
        "--protocol",
        "redfish",
        "--http",
        "--username",
        "root",
        "--password",
        "calvin",
    ]);
    assert!(line.contains("Redfish http://"), "{line}");
    let url = format!("http://127.0.0.1:{base}/redfish/v1/Systems/System.1");
    assert_eq!(curl(&["-u", "root:calvin", &url])["Id"], "System.1");
    assert_eq!(curl(&["-u", "admin:password", &url])["error"]["code"], "Base.1.16.GeneralError");
    // Redfish only: nothing answers IPMI on the UDP port.
    assert!(std::net::UdpSocket::bind(("127.0.0.1", base)).is_ok(), "the UDP port stays free");
}

/// A fleet file's `redfish` knobs reach the Redfish BMC it names: BMC 1 answers 503 with
/// `Retry-After`, BMC 0 does not.
#[test]
fn vbmc_fleet_file_sets_redfish_fault_knobs() {
    let base = free_port_range(2, 3);
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(&fleet, "[[bmc]]\nindex = 1\nredfish = { busy_retry_after_secs = 7 }\n").unwrap();
    let fleet = fleet.to_string_lossy().to_string();
    let args = ["--nodes", "2", "--base-port", &base.to_string(), "--protocol", "redfish", "--http", "--fleet", &fleet];
    let (_vbmc, line) = start(&args);
    assert!(line.contains("Redfish http://"), "{line}");
    let status = |port: u16| {
        let url = format!("http://127.0.0.1:{port}/redfish/v1/Systems/System.1");
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-u", "admin:password", "-o", "/dev/null", "-D", "-", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    assert!(status(base).starts_with("http/1.1 200"), "{}", status(base));
    let busy = status(base + 1);
    assert!(busy.starts_with("http/1.1 503") && busy.contains("retry-after: 7"), "{busy}");
}
