//! Several `ferric serve` processes on one database: `--role conductor` ones and an `--role api`
//! one, started and killed by the test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const RPC_PASSWORD: &str = "rpc-secret";

pub use super::listening::free_port;

/// One `ferric serve` process.
pub struct Proc {
    pub child: Child,
    pub port: u16,
}

impl Proc {
    pub fn kill9(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Fleet {
    pub db_url: String,
    pub dir: tempfile::TempDir,
    pub conductors: Vec<Proc>,
    pub api: Option<Proc>,
    pub heartbeat_timeout: u64,
}

impl Fleet {
    pub fn new(db_url: &str, heartbeat_timeout: u64) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ferric"))
            .args(["db", "upgrade", "--database", db_url])
            .env("XDG_DATA_HOME", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "db upgrade: {}", String::from_utf8_lossy(&out.stderr));
        Fleet { db_url: db_url.into(), dir, conductors: Vec::new(), api: None, heartbeat_timeout }
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn spawn(&self, name: &str, args: &[String], env: &[(&str, &str)]) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferric"));
        cmd.arg("serve").args(args).arg("--data-dir").arg(self.data_dir(name));
        cmd.args(["--database", &self.db_url]);
        cmd.env("FERRIC_RPC__PASSWORD", RPC_PASSWORD).env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::from(log)).spawn().expect("start ferric serve")
    }

    /// Starts conductor `name`; `env` adds FERRIC_* settings (fake delays).
    pub fn conductor(&mut self, name: &str, env: &[(&str, &str)]) {
        let port = free_port();
        let args: Vec<String> = [
            "--role",
            "conductor",
            "--rpc-bind",
            &format!("127.0.0.1:{port}"),
            "--conductor-host",
            name,
            "--heartbeat-timeout",
            &self.heartbeat_timeout.to_string(),
            "--heartbeat-interval",
            &(self.heartbeat_timeout / 3).max(1).to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let child = self.spawn(name, &args, env);
        super::listening::wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(60));
        self.conductors.push(Proc { child, port });
    }

    pub fn api(&mut self) -> String {
        let port = free_port();
        let timeout = self.heartbeat_timeout.to_string();
        let args: Vec<String> =
            ["--role", "api", "--api-bind", &format!("127.0.0.1:{port}"), "--heartbeat-timeout", &timeout]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let child = self.spawn("api", &args, &[]);
        super::listening::wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(60));
        self.api = Some(Proc { child, port });
        self.url()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api.as_ref().unwrap().port)
    }
}
