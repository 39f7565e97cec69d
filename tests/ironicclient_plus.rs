//! The real client against the API features of 1.12 - 1.87: python-ironicclient 6.3.0's
//! `baremetal` CLI (installed by `.ci/install-deps`) drives allocations, volume connectors and
//! targets, deploy templates, RAID, console, boot mode, BIOS, history, shards, vendor passthru,
//! children and a JSON config drive against `ferric serve`.

#[path = "common/listening.rs"]
mod listening;

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use listening::Served as Server;

fn start() -> Server {
    listening::ferric_serve(None, &[])
}

fn run(s: &Server, args: &[&str]) -> Output {
    let venv = std::env::var("FERRIC_VENV").unwrap_or_else(|_| "/opt/ferric-venv".into());
    let bin = PathBuf::from(venv).join("bin/baremetal");
    assert!(bin.exists(), "{} missing: run .ci/install-deps (installs python-ironicclient 6.3.0)", bin.display());
    Command::new(bin)
        .args(["--os-endpoint", &s.url, "--os-auth-type", "none"])
        .args(args)
        .output()
        .expect("run baremetal")
}

fn bm(s: &Server, args: &[&str]) -> String {
    let out = run(s, args);
    assert!(out.status.success(), "baremetal {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn bm_json(s: &Server, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-f", "json"]);
    serde_json::from_str(&bm(s, &a)).expect("json output")
}

/// A command that must fail; returns what the client printed (it shows Ironic's faultstring).
fn bm_err(s: &Server, args: &[&str]) -> String {
    let out = run(s, args);
    assert!(!out.status.success(), "baremetal {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn len(v: &Value) -> usize {
    v.as_array().map(|a| a.len()).unwrap_or(0)
}

#[test]
fn baremetal_cli_drives_later_microversions() {
    let s = start();
    for name in ["gold-1", "gold-2"] {
        bm_json(&s, &["node", "create", "--driver", "fake-hardware", "--name", name, "--resource-class", "gold"]);
        bm(&s, &["node", "manage", name, "--wait", "60"]);
        bm(&s, &["node", "provide", name, "--wait", "60"]);
    }
    bm(&s, &["node", "add", "trait", "gold-2", "CUSTOM_FAST"]);

    // Allocations (1.52+).
    let a = bm_json(
        &s,
        &[
            "allocation",
            "create",
            "--resource-class",
            "gold",
            "--trait",
            "CUSTOM_FAST",
            "--name",
            "alloc-1",
            "--wait",
            "60",
        ],
    );
    assert_eq!(a["state"], "active", "{a}");
    let gold2 = bm_json(&s, &["node", "show", "gold-2"]);
    assert_eq!(a["node_uuid"], gold2["uuid"]);
    assert_eq!(gold2["instance_uuid"], a["uuid"]);
    bm(&s, &["allocation", "set", "alloc-1", "--extra", "team=ops"]);
    assert_eq!(bm_json(&s, &["allocation", "show", "alloc-1"])["extra"], json!({"team": "ops"}));
    assert_eq!(len(&bm_json(&s, &["allocation", "list"])), 1);
    let err =
        bm_err(&s, &["allocation", "create", "--resource-class", "gold", "--trait", "CUSTOM_SLOW", "--wait", "60"]);
    assert!(err.contains("no suitable nodes have the requested traits CUSTOM_SLOW"), "{err}");
    bm(&s, &["allocation", "delete", "alloc-1"]);
    assert_eq!(bm_json(&s, &["node", "show", "gold-2"])["instance_uuid"], Value::Null);

    // Volume connectors and targets (1.32): nodes by UUID, as Ironic requires.
    let gold1 = bm_json(&s, &["node", "show", "gold-1"])["uuid"].as_str().unwrap().to_string();
    let c = bm_json(
        &s,
        &[
            "volume",
            "connector",
            "create",
            "--node",
            &gold1,
            "--type",
            "iqn",
            "--connector-id",
            "iqn.2026-01.org:gold-1",
        ],
    );
    let err = bm_err(
        &s,
        &[
            "volume",
            "connector",
            "create",
            "--node",
            &gold1,
            "--type",
            "iqn",
            "--connector-id",
            "iqn.2026-01.org:gold-1",
        ],
    );
    assert!(err.contains("already exists"), "{err}");
    let t = bm_json(
        &s,
        &[
            "volume",
            "target",
            "create",
            "--node",
            &gold1,
            "--type",
            "iscsi",
            "--boot-index",
            "0",
            "--volume-id",
            "vol-1",
        ],
    );
    assert_eq!(len(&bm_json(&s, &["volume", "connector", "list", "--node", &gold1])), 1);
    assert_eq!(len(&bm_json(&s, &["volume", "target", "list", "--node", &gold1])), 1);
    bm(&s, &["volume", "connector", "delete", c["uuid"].as_str().unwrap()]);
    bm(&s, &["volume", "target", "delete", t["uuid"].as_str().unwrap()]);

    // Deploy templates (1.55).
    let steps = r#"[{"interface": "bios", "step": "apply_configuration", "args": {}, "priority": 150}]"#;
    bm_json(&s, &["deploy", "template", "create", "CUSTOM_HT_ON", "--steps", steps]);
    assert_eq!(bm_json(&s, &["deploy", "template", "show", "CUSTOM_HT_ON"])["steps"][0]["priority"], 150);
    bm(&s, &["deploy", "template", "delete", "CUSTOM_HT_ON"]);

    // Management and states.
    bm(
        &s,
        &[
            "node",
            "set",
            "gold-1",
            "--target-raid-config",
            r#"{"logical_disks": [{"raid_level": "1", "size_gb": 10}]}"#,
        ],
    );
    assert_eq!(bm_json(&s, &["node", "show", "gold-1"])["target_raid_config"]["logical_disks"][0]["raid_level"], "1");
    bm(&s, &["node", "inject", "nmi", "gold-1"]);
    bm(&s, &["node", "boot", "mode", "set", "gold-1", "uefi"]);
    std::thread::sleep(Duration::from_millis(300));
    bm(&s, &["node", "secure", "boot", "on", "gold-1"]);
    std::thread::sleep(Duration::from_millis(300));
    let n = bm_json(&s, &["node", "show", "gold-1"]);
    assert_eq!((n["boot_mode"].clone(), n["secure_boot"].clone()), (json!("uefi"), json!(true)));
    bm(&s, &["node", "console", "enable", "gold-1"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bm_json(&s, &["node", "console", "show", "gold-1"])["console_enabled"], true);
    assert_eq!(len(&bm_json(&s, &["node", "bios", "setting", "list", "gold-1"])), 0);
    assert!(bm(&s, &["node", "passthru", "list", "gold-1"]).contains("third_method_sync"));
    assert_eq!(len(&bm_json(&s, &["shard", "list"])), 1);
    let err = bm_err(&s, &["node", "inventory", "save", "gold-1"]);
    assert!(err.contains("Node inventory record for node"), "{err}");
    assert_eq!(len(&bm_json(&s, &["node", "history", "list", "gold-1"])), 0);

    // Children (1.83).
    bm_json(&s, &["node", "create", "--driver", "fake-hardware", "--name", "kid"]);
    bm(&s, &["node", "set", "kid", "--parent-node", "gold-1"]);
    assert!(
        bm(&s, &["node", "children", "list", "gold-1"])
            .contains(bm_json(&s, &["node", "show", "kid"])["uuid"].as_str().unwrap())
    );

    // A config drive given as JSON (1.56) is built by ferric.
    let cd = r##"{"meta_data": {"hostname": "gold-1"}, "user_data": "#!/bin/sh\necho hi\n"}"##;
    bm(&s, &["node", "deploy", "gold-1", "--config-drive", cd, "--wait", "60"]);
    assert_eq!(bm_json(&s, &["node", "show", "gold-1"])["provision_state"], "active");
}
