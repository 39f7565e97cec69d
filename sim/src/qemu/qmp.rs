//! A minimal QMP (QEMU Machine Protocol) client over a unix socket.
//!
//! Hand-written: the protocol is newline-delimited JSON with four message shapes (greeting,
//! return, error, event), and the QMP crate on crates.io pulls in a generated schema of the whole
//! QEMU API, which is a heavy compile for the handful of commands a BMC needs.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Longest QMP message accepted (query results are small; this bounds a confused peer).
const MAX_MESSAGE: usize = 1024 * 1024;
/// Events kept until someone takes them.
const MAX_EVENTS: usize = 256;
/// How long one command may take before the connection is considered wedged.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP protocol: {0}")]
    Protocol(String),
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command { command: String, class: String, desc: String },
    #[error("QMP peer did not answer within {0:?}")]
    Timeout(Duration),
    #[error("QMP connection closed")]
    Closed,
}

/// An asynchronous event QEMU emitted (`SHUTDOWN`, `POWERDOWN`, `RESET`, `STOP`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QmpEvent {
    pub event: String,
    #[serde(default)]
    pub data: Value,
}

/// One QMP session in command mode.
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    events: VecDeque<QmpEvent>,
    next_id: u64,
    /// Set when a read or write was cut off half way: the stream can no longer be trusted.
    broken: bool,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").field("pending_events", &self.events.len()).field("broken", &self.broken).finish()
    }
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    pub async fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path).await?;
        let (r, w) = stream.into_split();
        let mut qmp = Qmp { reader: BufReader::new(r), writer: w, events: VecDeque::new(), next_id: 1, broken: false };
        let greeting = qmp.read_message(COMMAND_TIMEOUT).await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("unexpected greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        if self.broken {
            return Err(QmpError::Closed);
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = serde_json::to_vec(&msg).map_err(|e| QmpError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let write = async {
            self.writer.write_all(&line).await?;
            self.writer.flush().await
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.broken = true;
                return Err(e.into());
            }
            Err(_) => {
                self.broken = true;
                return Err(QmpError::Timeout(COMMAND_TIMEOUT));
            }
        }
        let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let reply = self.read_message(left).await?;
            if reply.get("event").is_some() {
                self.push_event(reply);
                continue;
            }
            if reply.get("id").and_then(Value::as_u64) != Some(id) {
                // A reply to a command whose caller gave up: not ours.
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(QmpError::Protocol(format!("unexpected reply: {reply}")));
        }
    }

    /// Events received so far (oldest first), removing them from the session.
    pub fn take_events(&mut self) -> Vec<QmpEvent> {
        self.events.drain(..).collect()
    }

    /// Waits up to `timeout` for the next event (returns a queued one at once).
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<QmpEvent>, QmpError> {
        if let Some(ev) = self.events.pop_front() {
            return Ok(Some(ev));
        }
        if self.broken {
            return Err(QmpError::Closed);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.read_message(left).await {
                Ok(msg) if msg.get("event").is_some() => {
                    self.push_event(msg);
                    return Ok(self.events.pop_front());
                }
                Ok(_) => continue,
                Err(QmpError::Timeout(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn push_event(&mut self, msg: Value) {
        if let Ok(ev) = serde_json::from_value::<QmpEvent>(msg) {
            if self.events.len() == MAX_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(ev);
        }
    }

    /// Reads one message. A timeout before any byte arrived leaves the stream usable; one in the
    /// middle of a message marks it broken.
    async fn read_message(&mut self, timeout: Duration) -> Result<Value, QmpError> {
        if self.broken {
            return Err(QmpError::Closed);
        }
        let mut line = Vec::new();
        let result = tokio::time::timeout(timeout, read_line_bounded(&mut self.reader, &mut line)).await;
        match result {
            Err(_) => {
                if !line.is_empty() {
                    self.broken = true;
                }
                Err(QmpError::Timeout(timeout))
            }
            Ok(Err(e)) => {
                self.broken = true;
                Err(e)
            }
            Ok(Ok(())) => {
                serde_json::from_slice(&line).map_err(|e| QmpError::Protocol(format!("bad JSON from QEMU: {e}")))
            }
        }
    }
}

/// Reads up to and excluding the next `\n`, refusing messages over [`MAX_MESSAGE`].
/// Bytes read so far stay in `line`, so a caller that times out can tell a partial read.
async fn read_line_bounded(reader: &mut BufReader<OwnedReadHalf>, line: &mut Vec<u8>) -> Result<(), QmpError> {
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Err(QmpError::Closed);
        }
        let (used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&buf[..i]);
                (i + 1, true)
            }
            None => {
                line.extend_from_slice(buf);
                (buf.len(), false)
            }
        };
        reader.consume(used);
        if line.len() > MAX_MESSAGE {
            return Err(QmpError::Protocol("message too long".into()));
        }
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A scripted QMP server: checks each command name and answers as QEMU would.
    async fn fake_qemu(listener: UnixListener) {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n").await.unwrap();
        while let Some(line) = lines.next_line().await.unwrap() {
            let cmd: Value = serde_json::from_str(&line).unwrap();
            let id = cmd["id"].clone();
            let reply = match cmd["execute"].as_str().unwrap() {
                "qmp_capabilities" => json!({"return": {}, "id": id}),
                "query-status" => {
                    let ev = json!({"event": "POWERDOWN", "timestamp": {"seconds": 1, "microseconds": 2}});
                    w.write_all(format!("{ev}\r\n").as_bytes()).await.unwrap();
                    json!({"return": {"status": "running", "running": true}, "id": id})
                }
                other => {
                    json!({"error": {"class": "CommandNotFound", "desc": format!("The command {other} has not been found")}, "id": id})
                }
            };
            w.write_all(format!("{reply}\r\n").as_bytes()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn commands_errors_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = tokio::spawn(fake_qemu(UnixListener::bind(&path).unwrap()));
        let mut qmp = Qmp::connect(&path).await.unwrap();
        let status = qmp.execute("query-status", None).await.unwrap();
        assert_eq!(status["status"], "running");
        let err = qmp.execute("bogus", None).await.unwrap_err();
        assert!(matches!(err, QmpError::Command { ref class, .. } if class == "CommandNotFound"));
        let ev = qmp.next_event(Duration::from_millis(10)).await.unwrap().unwrap();
        assert_eq!(ev.event, "POWERDOWN");
        assert!(qmp.next_event(Duration::from_millis(50)).await.unwrap().is_none());
        // The stream is still usable after a quiet timeout.
        assert!(qmp.execute("query-status", None).await.is_ok());
        drop(qmp);
        server.await.unwrap();
    }
}
