//! The VM fixtures built by `vm-fixtures/build.sh` (deploy kernel/ramdisk, instance images), and
//! disk files made from them with `qemu-img`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The build script, located from this crate at compile time (the fixtures are test material
/// of this workspace, not something a deployed binary ships).
const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../vm-fixtures/build.sh");

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed { program: String, status: String, stderr: String },
    #[error("fixture manifest lacks {0}")]
    Missing(&'static str),
}

/// Which ferric-agent goes into the deploy ramdisk.
#[derive(Debug, Clone, Default)]
pub enum AgentSource {
    /// None: the ramdisk's init idles after DHCP (prints `FERRIC-RAMDISK-READY`).
    #[default]
    None,
    /// A statically linked binary already built.
    Path(PathBuf),
    /// Build it from this workspace (static, release) first.
    Build,
}

/// What a fixture build shows while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuildProgress {
    /// Nothing; the script's messages go into the error if it fails (tests: their output stays
    /// readable).
    #[default]
    Quiet,
    /// The script's messages on this process's stderr as they come: what it builds and that it
    /// is cached, and cargo's `Compiling` lines while it builds the agent, which on a fresh
    /// machine takes minutes (the lab CLI).
    Stderr,
}

/// Paths of one fixture build (see vm-fixtures/README.md for what each is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixtures {
    pub dir: PathBuf,
    pub kernel_release: String,
    /// bzImage, for PXE, disk and `-kernel` boots.
    pub deploy_kernel: PathBuf,
    /// The same kernel as ELF: QEMU boots it (PVH) without in-guest decompression.
    pub kernel_elf: PathBuf,
    pub deploy_ramdisk: PathBuf,
    /// The agent baked into the deploy ramdisk, if any.
    pub agent: Option<PathBuf>,
    pub instance_kernel: PathBuf,
    pub instance_ramdisk: PathBuf,
    pub partition_image: PathBuf,
    pub partition_root_uuid: String,
    pub whole_disk_raw: PathBuf,
    pub whole_disk_qcow2: PathBuf,
}

impl Fixtures {
    /// Builds the fixtures, or finds them already built for the same inputs (a fraction of a
    /// second then). Concurrent callers are serialized by the script's lock. Quiet.
    pub async fn build(agent: AgentSource) -> Result<Fixtures, FixtureError> {
        Fixtures::build_with(agent, BuildProgress::Quiet).await
    }

    /// [`Fixtures::build`], showing the script's progress as `progress` says.
    pub async fn build_with(agent: AgentSource, progress: BuildProgress) -> Result<Fixtures, FixtureError> {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(BUILD_SCRIPT);
        match &agent {
            AgentSource::None => {}
            AgentSource::Path(p) => {
                cmd.arg("--agent").arg(p);
            }
            AgentSource::Build => {
                cmd.arg("--build-agent");
            }
        }
        let text = match progress {
            BuildProgress::Quiet => run(&mut cmd, "vm-fixtures/build.sh").await?,
            BuildProgress::Stderr => run_forwarding_stderr(&mut cmd, "vm-fixtures/build.sh").await?,
        };
        Fixtures::from_manifest(&text)
    }

    /// Parses the script's `KEY=PATH` output (or a saved `manifest.env`).
    pub fn from_manifest(text: &str) -> Result<Fixtures, FixtureError> {
        let map: HashMap<&str, &str> =
            text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim(), v.trim())).collect();
        let get = |k: &'static str| map.get(k).copied().ok_or(FixtureError::Missing(k));
        let path = |k: &'static str| get(k).map(PathBuf::from);
        Ok(Fixtures {
            dir: path("FIXTURES_DIR")?,
            kernel_release: get("KERNEL_RELEASE")?.to_string(),
            deploy_kernel: path("DEPLOY_KERNEL")?,
            kernel_elf: path("KERNEL_ELF")?,
            deploy_ramdisk: path("DEPLOY_RAMDISK")?,
            agent: match get("DEPLOY_AGENT")? {
                "none" | "" => None,
                p => Some(PathBuf::from(p)),
            },
            instance_kernel: path("INSTANCE_KERNEL")?,
            instance_ramdisk: path("INSTANCE_RAMDISK")?,
            partition_image: path("PARTITION_IMAGE")?,
            partition_root_uuid: get("PARTITION_ROOT_UUID")?.to_string(),
            whole_disk_raw: path("WHOLE_DISK_RAW")?,
            whole_disk_qcow2: path("WHOLE_DISK_QCOW2")?,
        })
    }
}

/// Disk formats QEMU is given explicitly (never probed: a raw image could pose as qcow2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// Creates an empty disk of `size` bytes (a deploy target).
pub async fn create_disk(path: &Path, format: DiskFormat, size: u64) -> Result<(), FixtureError> {
    let mut cmd = tokio::process::Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", format.as_str()]).arg(path).arg(size.to_string());
    run(&mut cmd, "qemu-img create").await.map(drop)
}

/// Creates a qcow2 overlay over `base`, so a VM can write without touching the fixture.
/// `size` grows the virtual disk beyond the base's (None keeps it).
pub async fn create_overlay(
    base: &Path,
    base_format: DiskFormat,
    path: &Path,
    size: Option<u64>,
) -> Result<(), FixtureError> {
    let mut cmd = tokio::process::Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2", "-F", base_format.as_str(), "-b"]).arg(base).arg(path);
    if let Some(size) = size {
        cmd.arg(size.to_string());
    }
    run(&mut cmd, "qemu-img create").await.map(drop)
}

async fn run(cmd: &mut tokio::process::Command, program: &str) -> Result<String, FixtureError> {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = cmd.output().await.map_err(|source| FixtureError::Spawn { program: program.to_string(), source })?;
    if !out.status.success() {
        return Err(FixtureError::Failed {
            program: program.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lines of a forwarded stderr kept for the error: the user has seen all of it already, and
/// cargo's progress before a failure would bury the cause.
const STDERR_TAIL_LINES: usize = 20;

/// [`run`], but copies the program's stderr to ours line by line as it comes (stdout, the
/// result, is still captured); a failure's error carries the last lines.
async fn run_forwarding_stderr(cmd: &mut tokio::process::Command, program: &str) -> Result<String, FixtureError> {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let spawn_error = |source| FixtureError::Spawn { program: program.to_string(), source };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(spawn_error(std::io::Error::other("no stdout/stderr pipe")));
    };
    let read_stdout = async {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).await.map(|_| out)
    };
    let forward_stderr = async {
        let mut reader = tokio::io::BufReader::new(stderr);
        let mut tail = std::collections::VecDeque::with_capacity(STDERR_TAIL_LINES);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).await.is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            eprintln!("{text}");
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text);
            line.clear();
        }
        tail
    };
    let (out, tail) = tokio::join!(read_stdout, forward_stderr);
    let out = out.map_err(spawn_error)?;
    let status = child.wait().await.map_err(spawn_error)?;
    if !status.success() {
        return Err(FixtureError::Failed {
            program: program.to_string(),
            status: status.to_string(),
            stderr: Vec::from(tail).join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_reports_missing_keys() {
        let text = "FIXTURES_KEY=abc\nFIXTURES_DIR=/f\nKERNEL_RELEASE=6.1.0-1-amd64\n\
            DEPLOY_KERNEL=/f/k\nKERNEL_ELF=/f/vmlinux\nDEPLOY_RAMDISK=/f/r\nDEPLOY_AGENT=none\n\
            INSTANCE_KERNEL=/f/ik\nINSTANCE_RAMDISK=/f/ir\nPARTITION_IMAGE=/f/p\n\
            PARTITION_ROOT_UUID=u\nWHOLE_DISK_RAW=/f/w.raw\nWHOLE_DISK_QCOW2=/f/w.qcow2\n";
        let f = Fixtures::from_manifest(text).unwrap();
        assert_eq!(f.agent, None);
        assert_eq!(f.whole_disk_qcow2, PathBuf::from("/f/w.qcow2"));
        let err = Fixtures::from_manifest("FIXTURES_DIR=/f\n").unwrap_err();
        assert!(matches!(err, FixtureError::Missing("KERNEL_RELEASE")));
    }

    #[tokio::test]
    async fn forwarding_keeps_stdout_and_the_tail_of_stderr_for_errors() {
        let mut ok = tokio::process::Command::new("sh");
        ok.args(["-c", "echo progress >&2; echo KEY=V"]);
        assert_eq!(run_forwarding_stderr(&mut ok, "ok").await.unwrap(), "KEY=V\n");
        let mut bad = tokio::process::Command::new("sh");
        bad.args(["-c", "for i in $(seq 1 30); do echo line $i >&2; done; exit 3"]);
        let FixtureError::Failed { stderr, status, .. } = run_forwarding_stderr(&mut bad, "bad").await.unwrap_err()
        else {
            panic!("not a failure");
        };
        assert!(status.contains('3'), "{status}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), STDERR_TAIL_LINES);
        assert_eq!(lines.last(), Some(&"line 30"));
    }
}
