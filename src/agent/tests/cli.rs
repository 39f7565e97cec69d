//! The `ferric-agent` command line: what a ramdisk's init runs.

use std::process::Command;

#[test]
fn help_names_both_modes_and_bad_flags_are_refused() {
    let bin = env!("CARGO_BIN_EXE_ferric-agent");
    let help = Command::new(bin).arg("--help").output().expect("run ferric-agent --help");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--api-url") && text.contains("iscsi-target"), "{text}");
    let bad = Command::new(bin).arg("--no-such-flag").output().expect("run ferric-agent");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--no-such-flag"));
}
