//! The `ferric-agent` binary, for this package's tests and benchmarks. It belongs to the agent
//! crate, so Cargo gives this package no `CARGO_BIN_EXE_ferric-agent`: it is built here with the
//! profile of the running test (a no-op when it is up to date) and found next to the test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Path of a `ferric-agent` built from the current sources.
pub fn path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let target_dir = profile_dir.parent().expect("target directory");
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--locked", "-p", "ferric-agent", "--bin", "ferric-agent"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p ferric-agent");
        assert!(status.success(), "cargo build -p ferric-agent failed");
        let bin = profile_dir.join("ferric-agent");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}
