//! A VM's serial console as QEMU writes it to a file, and waiting for marker lines in it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a wait re-reads the log. Polling a file is crude, but QEMU owns the writer and a
/// console line is worth milliseconds, not microseconds.
const POLL: Duration = Duration::from_millis(50);
/// Longest line kept while scanning; longer lines are cut (a console can print anything).
const MAX_LINE: usize = 64 * 1024;
/// How much of the log's end a timeout error quotes.
const TAIL: u64 = 2048;

/// Why a wait on the serial log ended without the marker.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("serial log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no line containing {needle:?} within {timeout:?}; log ends with:\n{tail}")]
    Timeout { needle: String, timeout: Duration, tail: String },
    #[error("{0}; log ends with:\n{1}")]
    Aborted(String, String),
}

/// The serial console log of one machine. QEMU appends to it on every power on, so it spans the
/// machine's whole life; positions let a caller wait only for what comes after an action.
#[derive(Debug, Clone)]
pub struct SerialLog {
    path: PathBuf,
}

impl SerialLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SerialLog { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current end of the log: pass it to [`SerialLog::wait_for`] to match only later lines.
    pub fn position(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Everything logged so far (lossy UTF-8).
    pub fn contents(&self) -> String {
        std::fs::read(&self.path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The last `max` bytes of the log (lossy UTF-8), for error messages.
    pub fn tail(&self, max: u64) -> String {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(max);
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_ok() {
            let _ = f.take(max).read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Appends a line of our own (e.g. "=== power on ==="), so a person reading the log sees
    /// where each boot starts.
    pub fn note(&self, text: &str) -> Result<(), SerialError> {
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(|source| self.io(source))?;
        writeln!(f, "\n=== ferric: {text} ===").map_err(|source| self.io(source))
    }

    /// Waits for a complete line containing `needle` written at or after byte `from`, and
    /// returns it (without line ending).
    pub async fn wait_for(&self, needle: &str, from: u64, timeout: Duration) -> Result<String, SerialError> {
        self.wait_for_while(needle, from, timeout, || None).await
    }

    /// Like [`SerialLog::wait_for`], but gives up early when `abort` returns a reason (say, the
    /// VM process exited), after a last look at the log.
    pub async fn wait_for_while(
        &self,
        needle: &str,
        from: u64,
        timeout: Duration,
        mut abort: impl FnMut() -> Option<String>,
    ) -> Result<String, SerialError> {
        let mut scanner = Scanner::new(from);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reason = abort();
            if let Some(line) = scanner.scan(&self.path, needle).map_err(|e| self.io(e))? {
                return Ok(line);
            }
            if let Some(reason) = reason {
                return Err(SerialError::Aborted(reason, self.tail(TAIL)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SerialError::Timeout { needle: needle.to_string(), timeout, tail: self.tail(TAIL) });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn io(&self, source: std::io::Error) -> SerialError {
        SerialError::Io { path: self.path.clone(), source }
    }
}

/// Incremental line reader over a growing file.
struct Scanner {
    offset: u64,
    partial: Vec<u8>,
}

impl Scanner {
    fn new(offset: u64) -> Self {
        Scanner { offset, partial: Vec::new() }
    }

    /// Reads what was appended since the last call; returns the first complete line holding
    /// `needle`.
    fn scan(&mut self, path: &Path, needle: &str) -> std::io::Result<Option<String>> {
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if len < self.offset {
            // Truncated under us (a new machine reusing the path): start over.
            self.offset = 0;
            self.partial.clear();
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut chunk = Vec::new();
        f.take(len - self.offset).read_to_end(&mut chunk)?;
        self.offset += chunk.len() as u64;
        let needle = needle.as_bytes();
        for &b in &chunk {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                if contains(&line, needle) {
                    let text = String::from_utf8_lossy(&line);
                    return Ok(Some(text.trim_end_matches('\r').to_string()));
                }
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
        Ok(None)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finds_lines_written_later_and_skips_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path().join("serial.log"));
        std::fs::write(log.path(), b"MARK old\r\n").unwrap();
        let from = log.position();
        let path = log.path().to_path_buf();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(120)).await;
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            f.write_all(b"noise\nMA").unwrap();
            f.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(120)).await;
            f.write_all(b"RK new one\r\n").unwrap();
        });
        let line = log.wait_for("MARK", from, Duration::from_secs(5)).await.unwrap();
        assert_eq!(line, "MARK new one");
        writer.await.unwrap();
        let all = log.wait_for("MARK", 0, Duration::from_secs(1)).await.unwrap();
        assert_eq!(all, "MARK old");
    }

    #[tokio::test]
    async fn times_out_with_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path().join("serial.log"));
        log.note("power on").unwrap();
        let err = log.wait_for("NEVER", 0, Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, SerialError::Timeout { ref tail, .. } if tail.contains("power on")));
        let err = log
            .wait_for_while("NEVER", 0, Duration::from_secs(10), || Some("process exited".into()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("process exited"));
    }
}
