//! Test support (feature `test-support`, and the crate's own tests): a real PostgreSQL cluster of
//! a test's own, in a temporary directory, listening only on a unix socket there.
//!
//! PostgreSQL refuses to run as root, so when the test runs as root the cluster's programs run
//! as `nobody` (through `runuser`), owning the directory. The binaries are Debian's PostgreSQL
//! 15 (`/usr/lib/postgresql/15/bin`, or the directory in `FERRIC_PG_BIN`); without them the
//! cluster panics with a message saying what to install: PostgreSQL tests fail rather than skip.
//!
//! ```no_run
//! use ferric_service::db::{Db, SchemaMode, testing::PgCluster};
//! let pg = PgCluster::start();
//! let url = pg.create_database("t1");
//! let db = Db::connect(&url, SchemaMode::Upgrade).unwrap();
//! // pg.stop(); ... pg.start_again();  (same socket, same data)
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where Debian installs PostgreSQL 15's server programs.
pub const PG_BIN_DEFAULT: &str = "/usr/lib/postgresql/15/bin";

/// The superuser `initdb` creates (trusted on the socket: no password).
pub const PG_USER: &str = "ferric";

/// A running PostgreSQL cluster in a temporary directory; stopped (immediately) and removed on
/// drop.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// The OS user the server runs as when the test runs as root.
    run_as: Option<String>,
}

impl PgCluster {
    /// Creates, configures and starts a cluster (about a second). Panics, naming what is
    /// missing, if PostgreSQL's programs are not installed or the cluster does not start.
    pub fn start() -> PgCluster {
        let bin = std::env::var_os("FERRIC_PG_BIN").map_or_else(|| PathBuf::from(PG_BIN_DEFAULT), PathBuf::from);
        PgCluster::start_with_binaries(&bin)
    }

    /// [`PgCluster::start`] with PostgreSQL's programs from `bin`.
    pub fn start_with_binaries(bin: &Path) -> PgCluster {
        let bin = bin.to_path_buf();
        for prog in ["initdb", "pg_ctl", "postgres", "createdb"] {
            assert!(
                bin.join(prog).is_file(),
                "PostgreSQL tests need {} (Debian's `postgresql` 15: `apt-get install postgresql`, as \
                 .ci/install-deps does; or FERRIC_PG_BIN=<dir of initdb, pg_ctl, postgres>)",
                bin.join(prog).display()
            );
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "ferric-pg-{}-{}-{nanos:x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = root.then(|| "nobody".to_string());
        let cluster = PgCluster { dir, bin, run_as };
        if let Some(user) = &cluster.run_as {
            let out = Command::new("chown").arg(format!("{user}:")).arg(&cluster.dir).output();
            check(out, "chown the cluster's directory");
        }
        let data = cluster.data();
        cluster.pg(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                PG_USER.as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
            ],
        );
        // Only the socket in the directory: no TCP port to collide with other tests. No fsync:
        // a committed write still reaches the WAL (the kernel's cache) before COMMIT returns, so
        // it survives `stop` (a crash of the server, not of the machine).
        let conf = format!(
            "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\n\
             full_page_writes = off\nmax_connections = 40\nshared_buffers = 16MB\n",
            cluster.dir.display()
        );
        let mut existing = std::fs::read_to_string(data.join("postgresql.conf")).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), existing)
            .unwrap_or_else(|e| panic!("cannot configure the cluster: {e}"));
        cluster.start_again();
        cluster
    }

    /// The temporary directory: the unix socket's directory (and the data and log under it).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// A `postgres://` URL for database `name` on this cluster, over its unix socket.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{PG_USER}@/{name}?host={}", self.dir.display())
    }

    /// Creates database `name` and returns its URL ([`PgCluster::url`]).
    pub fn create_database(&self, name: &str) -> String {
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h".as_ref(), self.dir.as_os_str(), "-U".as_ref(), PG_USER.as_ref(), name.as_ref()])
            .output();
        check(out, &format!("createdb {name}"));
        self.url(name)
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: connections are cut, as in a crash).
    pub fn stop(&self) {
        let data = self.data();
        self.pg("pg_ctl", &["-D".as_ref(), data.as_os_str(), "-m".as_ref(), "immediate".as_ref(), "stop".as_ref()]);
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let data = self.data();
        let log = self.dir.join("postgres.log");
        self.pg(
            "pg_ctl",
            &["-D".as_ref(), data.as_os_str(), "-l".as_ref(), log.as_os_str(), "-w".as_ref(), "start".as_ref()],
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of PostgreSQL's programs as the cluster's user; panics with its output on failure.
    fn pg(&self, prog: &str, args: &[&std::ffi::OsStr]) -> Output {
        let path = self.bin.join(prog);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        // The programs' working directory must be readable by the cluster's user.
        cmd.args(args).current_dir(&self.dir);
        check(cmd.output(), prog)
    }
}

fn check(out: std::io::Result<Output>, what: &str) -> Output {
    match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "{what} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {what}: {e}"),
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        if data.join("postmaster.pid").exists() {
            let path = self.bin.join("pg_ctl");
            let mut cmd = match &self.run_as {
                Some(user) => {
                    let mut c = Command::new("runuser");
                    c.args(["-u", user, "--"]).arg(&path);
                    c
                }
                None => Command::new(&path),
            };
            let out = cmd.arg("-D").arg(&data).args(["-m", "immediate", "stop"]).current_dir(&self.dir).output();
            if let Ok(o) = &out
                && !o.status.success()
            {
                eprintln!("pg_ctl stop: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}
