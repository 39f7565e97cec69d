//! python-ironicclient's `baremetal` CLI enrolls a `redfish` node against a default `ferric serve`
//! (Ironic's driver_info names), and never shows its password.

#[path = "common/listening.rs"]
mod listening;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_ferric"))
        .args(["serve", "--api-bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ferric serve");
    listening::wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(30));
    Server { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
}

fn baremetal_bin() -> PathBuf {
    let venv = std::env::var("FERRIC_VENV").unwrap_or_else(|_| "/opt/ferric-venv".into());
    let bin = PathBuf::from(venv).join("bin/baremetal");
    assert!(bin.exists(), "{} missing: run .ci/install-deps (installs python-ironicclient)", bin.display());
    bin
}

fn bm(s: &Server, args: &[&str]) -> String {
    let out = Command::new(baremetal_bin())
        .args(["--os-endpoint", &s.url, "--os-auth-type", "none"])
        .args(args)
        .output()
        .expect("run baremetal");
    assert!(out.status.success(), "baremetal {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn bm_json(s: &Server, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-f", "json"]);
    serde_json::from_str(&bm(s, &a)).expect("json output")
}

#[test]
fn baremetal_enrolls_redfish_nodes_with_masked_passwords() {
    let s = start();
    let n = bm_json(
        &s,
        &[
            "node",
            "create",
            "--driver",
            "redfish",
            "--name",
            "rf-cli",
            "--driver-info",
            "redfish_address=https://192.0.2.20:8443",
            "--driver-info",
            "redfish_system_id=/redfish/v1/Systems/1",
            "--driver-info",
            "redfish_username=admin",
            "--driver-info",
            "redfish_password=Sup3r-s3cret",
            "--driver-info",
            "redfish_verify_ca=False",
        ],
    );
    assert_eq!(n["driver"], "redfish");
    assert_eq!(n["power_interface"], "redfish");
    assert_eq!(n["management_interface"], "redfish");
    assert_eq!(n["driver_info"]["redfish_password"], "******");
    assert_eq!(n["driver_info"]["redfish_address"], "https://192.0.2.20:8443");
    let shown = bm(&s, &["node", "show", "rf-cli", "-f", "json"]);
    assert!(!shown.contains("Sup3r-s3cret"), "{shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["driver_info"]["redfish_password"], "******");
    // The hardware type and its interfaces are listed as Ironic lists them.
    let d = bm_json(&s, &["driver", "show", "redfish"]);
    assert_eq!(d["enabled_boot_interfaces"], "ipxe, pxe, redfish-virtual-media", "{d}");
    assert_eq!(d["default_power_interface"], "redfish");
    let props = bm(&s, &["driver", "property", "list", "redfish"]);
    for k in ["redfish_address", "redfish_system_id", "redfish_verify_ca", "redfish_auth_type"] {
        assert!(props.contains(k), "{k} missing: {props}");
    }
    // The default `ferric serve` (no boot services) takes ipmi nodes too.
    let n = bm_json(&s, &["node", "create", "--driver", "ipmi", "--driver-info", "ipmi_address=192.0.2.21"]);
    assert_eq!(n["boot_interface"], "ipxe");
}
