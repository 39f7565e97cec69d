//! The real client: python-ironicclient 6.3.0's `baremetal` CLI against `ferric serve`.
//! `.ci/install-deps` installs it into a venv (`FERRIC_VENV`, default /opt/ferric-venv).

#[path = "common/listening.rs"]
mod listening;

use serde_json::Value;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use listening::Served as Server;

fn start() -> Server {
    listening::ferric_serve(None, &[])
}

fn baremetal_bin() -> PathBuf {
    let venv = std::env::var("FERRIC_VENV").unwrap_or_else(|_| "/opt/ferric-venv".into());
    let bin = PathBuf::from(venv).join("bin/baremetal");
    assert!(bin.exists(), "{} missing: run .ci/install-deps (installs python-ironicclient 6.3.0)", bin.display());
    bin
}

/// Runs `baremetal ARGS` and returns stdout; panics with stderr on failure.
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
fn baremetal_cli_drives_the_lifecycle() {
    let s = start();
    let n =
        bm_json(&s, &["node", "create", "--driver", "fake-hardware", "--name", "cli-node", "--resource-class", "cli"]);
    assert_eq!(n["provision_state"], "enroll");
    let uuid = n["uuid"].as_str().unwrap().to_string();
    let p = bm_json(&s, &["port", "create", "52:54:00:12:34:56", "--node", &uuid]);
    assert_eq!(p["address"], "52:54:00:12:34:56");
    let v = bm_json(&s, &["node", "validate", "cli-node"]);
    assert!(v.as_array().unwrap().iter().all(|i| i["Result"] == Value::Bool(true)), "{v}");

    for (verb, state) in [("manage", "manageable"), ("provide", "available"), ("deploy", "active")] {
        bm(&s, &["node", verb, "cli-node", "--wait", "60"]);
        assert_eq!(bm_json(&s, &["node", "show", "cli-node"])["provision_state"], state);
    }
    bm(&s, &["node", "power", "off", "cli-node"]);
    assert_eq!(bm_json(&s, &["node", "show", "cli-node"])["power_state"], "power off");
    bm(&s, &["node", "power", "on", "cli-node"]);
    assert_eq!(bm_json(&s, &["node", "show", "cli-node"])["power_state"], "power on");
    bm(&s, &["node", "undeploy", "cli-node", "--wait", "60"]);
    assert_eq!(bm_json(&s, &["node", "show", "cli-node"])["provision_state"], "available");

    bm(&s, &["node", "maintenance", "set", "cli-node", "--reason", "testing"]);
    let l = bm_json(&s, &["node", "list", "--maintenance"]);
    assert_eq!(l.as_array().unwrap().len(), 1);
    bm(&s, &["node", "maintenance", "unset", "cli-node"]);
    assert_eq!(bm_json(&s, &["node", "list", "--maintenance"]).as_array().unwrap().len(), 0);

    bm_json(&s, &["node", "create", "--driver", "fake-hardware", "--name", "other"]);
    assert_eq!(bm_json(&s, &["node", "list", "--provision-state", "available"]).as_array().unwrap().len(), 1);
    assert_eq!(bm_json(&s, &["node", "list", "--driver", "fake-hardware"]).as_array().unwrap().len(), 2);
    assert_eq!(bm_json(&s, &["node", "list", "--resource-class", "cli"]).as_array().unwrap().len(), 1);
    assert_eq!(bm_json(&s, &["node", "list", "--long"]).as_array().unwrap().len(), 2);

    let d = bm_json(&s, &["driver", "list"]);
    assert!(d.as_array().unwrap().iter().any(|x| x["name"] == "fake-hardware"), "{d}");

    bm(&s, &["port", "delete", p["uuid"].as_str().unwrap()]);
    bm(&s, &["node", "delete", "cli-node", "other"]);
    assert_eq!(bm_json(&s, &["node", "list"]).as_array().unwrap().len(), 0);
}

/// The `redfish` hardware type through the real client on a default `ferric serve` (Ironic's
/// driver_info names); its password never shown.
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
    assert_eq!(d["enabled_boot_interfaces"], "ipxe, pxe, redfish-virtual-media, redfish-https", "{d}");
    assert_eq!(d["default_power_interface"], "redfish");
    let props = bm(&s, &["driver", "property", "list", "redfish"]);
    for k in ["redfish_address", "redfish_system_id", "redfish_verify_ca", "redfish_auth_type"] {
        assert!(props.contains(k), "{k} missing: {props}");
    }
    // The default `ferric serve` (no boot services) takes ipmi nodes too.
    let n = bm_json(&s, &["node", "create", "--driver", "ipmi", "--driver-info", "ipmi_address=192.0.2.21"]);
    assert_eq!(n["boot_interface"], "ipxe");
}

/// `ferric serve --auth-strategy http_basic` with `[auth] roles` in its configuration.
fn start_http_basic(dir: &tempfile::TempDir) -> Server {
    let htpasswd = dir.path().join("htpasswd");
    let hash = |p: &str| bcrypt::hash(p, 4).unwrap().replacen("$2b$", "$2y$", 1);
    std::fs::write(&htpasswd, format!("alice:{}\nbob:{}\n", hash("alice-pw"), hash("bob-pw"))).unwrap();
    let config = dir.path().join("ferric.toml");
    std::fs::write(&config, "[auth]\nroles = { alice = \"admin\", bob = \"reader\" }\n").unwrap();
    let args = [OsStr::new("--auth-strategy"), OsStr::new("http_basic"), OsStr::new("--htpasswd")];
    listening::ferric_serve(
        None,
        &[&args[..], &[htpasswd.as_os_str(), OsStr::new("--config"), config.as_os_str()]].concat(),
    )
}

/// `baremetal --os-auth-type http_basic` as `user`.
fn bm_basic(s: &Server, user: &str, password: &str, args: &[&str]) -> std::process::Output {
    Command::new(baremetal_bin())
        .args(["--os-auth-type", "http_basic", "--os-username", user, "--os-password", password])
        .args(["--os-endpoint", &s.url])
        .args(args)
        .output()
        .expect("run baremetal")
}

#[test]
fn baremetal_cli_with_http_basic_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_http_basic(&dir);
    let ok = |user: &str, pw: &str, args: &[&str]| -> Value {
        let mut a = args.to_vec();
        a.extend(["-f", "json"]);
        let out = bm_basic(&s, user, pw, &a);
        assert!(out.status.success(), "{user} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json output")
    };
    let n = ok("alice", "alice-pw", &["node", "create", "--driver", "fake-hardware", "--name", "basic-node"]);
    assert_eq!(n["provision_state"], "enroll");
    let out = bm_basic(&s, "alice", "alice-pw", &["node", "power", "on", "basic-node"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ok("bob", "bob-pw", &["node", "show", "basic-node"])["power_state"], "power on");
    assert_eq!(ok("bob", "bob-pw", &["node", "list"]).as_array().unwrap().len(), 1);
    // A reader is refused a write, and it changes nothing.
    let out = bm_basic(&s, "bob", "bob-pw", &["node", "power", "off", "basic-node"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403") || err.contains("disallowed by policy"), "{err}");
    let out = bm_basic(&s, "bob", "bob-pw", &["node", "create", "--driver", "fake-hardware", "--name", "nope"]);
    assert!(!out.status.success());
    assert_eq!(ok("alice", "alice-pw", &["node", "show", "basic-node"])["power_state"], "power on");
    assert_eq!(ok("alice", "alice-pw", &["node", "list"]).as_array().unwrap().len(), 1);
    // A wrong password is refused.
    let out = bm_basic(&s, "alice", "wrong", &["node", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") || err.to_lowercase().contains("unauthorized"), "{err}");
}

/// `baremetal --os-auth-type admin_token --os-token T` (python-ironicclient sends `X-Auth-Token`)
/// with tokens from the real `ferric token create`, against `ferric serve --auth-strategy token`.
#[test]
fn baremetal_cli_with_ferric_tokens() {
    let data = tempfile::tempdir().unwrap();
    let token = |user: &str, role: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_ferric"))
            .args(["token", "create", "--user", user, "--role", role, "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (admin, reader) = (token("alice", "admin"), token("bob", "reader"));
    let s = listening::ferric_serve(Some(data.path()), &[OsStr::new("--auth-strategy"), OsStr::new("token")]);
    let run = |t: &str, args: &[&str]| {
        Command::new(baremetal_bin())
            .args(["--os-auth-type", "admin_token", "--os-token", t, "--os-endpoint", &s.url])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&admin, &["node", "create", "--driver", "fake-hardware", "--name", "tok-node"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&reader, &["node", "list", "-f", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().len(), 1);
    let out = run(&reader, &["node", "delete", "tok-node"]);
    assert!(!out.status.success() || String::from_utf8_lossy(&out.stderr).contains("disallowed"));
    let out = run("ferric_wrong", &["node", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&admin, &["node", "show", "tok-node", "-f", "json"]);
    assert!(out.status.success(), "the reader's delete changed nothing");
}
