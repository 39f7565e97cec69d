//! DMTF's Redfish Protocol Validator (`rf_protocol_validator`) against ferric's virtual Redfish
//! BMC over HTTPS: its report must hold no FAIL (WARN and NOT TESTED are allowed). Skipped,
//! saying so, when /opt/ferric-venv lacks the validator (`.ci/install-deps` installs it).

use ferric_lab::machine::{SimMachine, SimMachineConfig};
use ferric_sim::redfish::{RedfishBmc, RedfishConfig, self_signed_tls, serve};
use std::path::Path;
use std::sync::Arc;

const VALIDATOR: &str = "/opt/ferric-venv/bin/rf_protocol_validator";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_validator_reports_no_failure() {
    if !Path::new(VALIDATOR).exists() {
        eprintln!("SKIPPED: {VALIDATOR} is not installed (run .ci/install-deps)");
        return;
    }
    let machine = Arc::new(SimMachine::new("node-0", SimMachineConfig { soft_off_delay_ms: 0, ..Default::default() }));
    let bmc = RedfishBmc::new(RedfishConfig::default(), machine);
    let (tls, pem) = self_signed_tls(&["127.0.0.1".into()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(listener, bmc.clone(), Some(tls)));
    // Debugging aid: FERRIC_REDFISH_HOLD_SECS=N keeps the BMC up for N s to point tools at it.
    if let Some(secs) = std::env::var("FERRIC_REDFISH_HOLD_SECS").ok().and_then(|s| s.parse().ok()) {
        eprintln!("redfish BMC on https://127.0.0.1:{port}");
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    // The validator verifies the certificate against this bundle (its TLS checks need that).
    let ca = dir.path().join("bmc.pem");
    std::fs::write(&ca, pem).unwrap();
    let out = tokio::process::Command::new(VALIDATOR)
        .args(["--rhost", &format!("https://127.0.0.1:{port}"), "--user", "admin", "--password", "password"])
        .arg("--ca-bundle")
        .arg(&ca)
        .args(["--avoid-http-redirect", "--report-type", "tsv", "--report-dir"])
        .arg(dir.path())
        // requests prefers these to a session's own CA bundle.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tsv"))
        .unwrap_or_else(|| panic!("no TSV report\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    let text = std::fs::read_to_string(&report).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    let count = |r: &str| rows.iter().filter(|c| c.get(4) == Some(&r)).count();
    let (pass, warn, fail) = (count("PASS"), count("WARN"), count("FAIL"));
    eprintln!("rf_protocol_validator: {pass} PASS, {warn} WARN, {fail} FAIL, {} NOT_TESTED", count("NOT_TESTED"));
    for c in rows.iter().filter(|c| c.get(4) == Some(&"WARN")) {
        eprintln!("WARN {} {} {} {}: {}", c[0], c[1], c[2], c[3], c.get(5).unwrap_or(&""));
    }
    let failures: Vec<String> = rows
        .iter()
        .filter(|c| c.get(4) == Some(&"FAIL"))
        .map(|c| format!("FAIL {} {} {} {}: {}", c[0], c[1], c[2], c[3], c.get(5).unwrap_or(&"")))
        .collect();
    assert!(failures.is_empty(), "{}\n{stdout}", failures.join("\n"));
    assert!(pass >= 300, "the validator tested little ({pass} PASS): {stdout}\n{stderr}");
}
