//! Command execution as ironic-python-agent does it: `extension.command` names dispatched to
//! extensions, synchronous commands answered at once, asynchronous ones run in the background
//! while the conductor polls, one command at a time (a second one while the last is running is
//! refused with 409 "Agent is busy"), results kept in order for `GET /v1/commands/`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::context::AgentContext;
use ferric_types::agent::{CommandError, CommandResult, CommandStatus};

/// How a command runs once its parameters are accepted.
pub enum Prepared {
    /// Finished already (synchronous command).
    Done(Result<Value, CommandError>),
    /// Synchronous command that needs I/O: awaited before the request is answered.
    Inline(BoxFuture<'static, Result<Value, CommandError>>),
    /// Runs in the background; the conductor polls for the result.
    Background(BoxFuture<'static, Result<Value, CommandError>>),
}

/// A group of commands (`standby`, `deploy`, `clean`, `log`, and later `iscsi`). This is the
/// extension point other parts of ferric plug into the agent.
pub trait Extension: Send + Sync {
    /// The part before the dot.
    fn name(&self) -> &'static str;
    /// Validates `params` and starts `command`. An error with code 400 refuses the request (HTTP
    /// 400, nothing recorded); any other error is recorded as a FAILED command, as IPA does.
    fn prepare(
        &self,
        ctx: &Arc<AgentContext>,
        command: &str,
        params: Map<String, Value>,
    ) -> Result<Prepared, CommandError>;
}

/// A refusal of the REST layer: HTTP status and IPA's `faultstring`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Message.
    pub faultstring: String,
}

/// One recorded command.
pub struct Entry {
    result: Mutex<CommandResult>,
    done: watch::Sender<bool>,
}

impl Entry {
    /// A snapshot of the result.
    pub fn snapshot(&self) -> CommandResult {
        self.result.lock().clone()
    }

    /// Waits until the command finishes or `max` passes, then returns its state.
    pub async fn wait(&self, max: Duration) -> CommandResult {
        let mut rx = self.done.subscribe();
        let _ = tokio::time::timeout(max, rx.wait_for(|d| *d)).await;
        self.snapshot()
    }

    fn finish(&self, outcome: Result<Value, CommandError>, async_name: Option<&str>) {
        {
            let mut r = self.result.lock();
            match outcome {
                Ok(v) => {
                    r.command_status = CommandStatus::Succeeded;
                    r.command_result = Some(wrap_string(v, async_name));
                }
                Err(e) => {
                    r.command_status = CommandStatus::Failed;
                    r.command_error = Some(e);
                }
            }
        }
        self.done.send_replace(true);
    }
}

/// IPA wraps string results: `{"result": s}` for synchronous commands and
/// `{"result": "name: s"}` for asynchronous ones.
fn wrap_string(v: Value, async_name: Option<&str>) -> Value {
    match (v, async_name) {
        (Value::String(s), Some(name)) => json!({"result": format!("{name}: {s}")}),
        (Value::String(s), None) => json!({"result": s}),
        (v, _) => v,
    }
}

/// The command table of one agent.
pub struct Commands {
    extensions: HashMap<&'static str, Arc<dyn Extension>>,
    entries: Mutex<VecDeque<Arc<Entry>>>,
    max_entries: usize,
}

impl Commands {
    /// A table over `extensions`, keeping the last `max_entries` results.
    pub fn new(extensions: Vec<Arc<dyn Extension>>, max_entries: usize) -> Self {
        Self {
            extensions: extensions.into_iter().map(|e| (e.name(), e)).collect(),
            entries: Mutex::new(VecDeque::new()),
            max_entries: max_entries.max(1),
        }
    }

    /// All results, oldest first.
    pub fn list(&self) -> Vec<CommandResult> {
        self.entries.lock().iter().map(|e| e.snapshot()).collect()
    }

    /// One result by id.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries.lock().iter().find(|e| e.result.lock().id == id).cloned()
    }

    /// Starts `name` (`extension.command`).
    pub async fn execute(
        &self,
        ctx: &Arc<AgentContext>,
        name: &str,
        params: Map<String, Value>,
    ) -> Result<Arc<Entry>, Refusal> {
        let (entry, inline) = {
            let mut entries = self.entries.lock();
            let Some((ext_name, command)) = name.split_once('.') else {
                return Err(Refusal {
                    status: 400,
                    faultstring: "Invalid command: Command name must be of the form <extension>.<name>".into(),
                });
            };
            if let Some(last) = entries.back() {
                let last = last.result.lock();
                if !last.is_done() {
                    tracing::error!(command = %name, running = %last.command_name, "agent is busy");
                    return Err(Refusal {
                        status: 409,
                        faultstring: format!("Agent is busy: executing command {}", last.command_name),
                    });
                }
            }
            let Some(ext) = self.extensions.get(ext_name).cloned() else {
                return Err(Refusal {
                    status: 404,
                    faultstring: format!("Not found: Extension with id {ext_name} not found."),
                });
            };
            let (done, _) = watch::channel(false);
            let entry = Arc::new(Entry {
                result: Mutex::new(CommandResult {
                    id: ctx.new_uuid(),
                    command_name: command.to_string(),
                    command_status: CommandStatus::Running,
                    command_error: None,
                    command_result: None,
                }),
                done,
            });
            tracing::info!(command = %name, id = %entry.snapshot().id, "executing command");
            let mut inline = false;
            match ext.prepare(ctx, command, params) {
                Err(e) if e.code == 400 => {
                    tracing::warn!(command = %name, error = %e, "command refused");
                    return Err(Refusal { status: 400, faultstring: e.to_string() });
                }
                Err(e) => {
                    tracing::error!(command = %name, error = %e, "command failed");
                    entry.finish(Err(e), None);
                }
                Ok(Prepared::Done(outcome)) => {
                    if let Err(e) = &outcome {
                        tracing::error!(command = %name, error = %e, "command failed");
                    }
                    entry.finish(outcome, None);
                }
                Ok(Prepared::Inline(fut)) => {
                    // Runs as a task so a client that hangs up cannot leave it RUNNING forever;
                    // the request waits for it below.
                    spawn_command(ctx, &entry, name, fut, None);
                    inline = true;
                }
                Ok(Prepared::Background(fut)) => spawn_command(ctx, &entry, name, fut, Some(command)),
            }
            entries.push_back(entry.clone());
            while entries.len() > self.max_entries {
                // Only finished commands are dropped: the newest is the only one that can run.
                entries.pop_front();
            }
            (entry, inline)
        };
        if inline {
            entry.wait(ctx.settings.max_wait).await;
        }
        Ok(entry)
    }
}

/// Runs a command's future as a task and records its outcome; `async_name` is set for
/// asynchronous commands (their string results are prefixed with it, and a heartbeat follows).
fn spawn_command(
    ctx: &Arc<AgentContext>,
    entry: &Arc<Entry>,
    full: &str,
    fut: BoxFuture<'static, Result<Value, CommandError>>,
    async_name: Option<&str>,
) {
    let e2 = entry.clone();
    let ctx2 = ctx.clone();
    let async_name = async_name.map(str::to_string);
    let full = full.to_string();
    tokio::spawn(async move {
        let outcome = match tokio::spawn(fut).await {
            Ok(o) => o,
            Err(join) => Err(CommandError::execution(format!("internal error: {join}"))),
        };
        match &outcome {
            Ok(_) => tracing::info!(command = %full, "command completed"),
            Err(e) => tracing::error!(command = %full, error = %e, "command failed"),
        }
        e2.finish(outcome, async_name.as_deref());
        if async_name.is_some() {
            ctx2.force_heartbeat.notify_one();
        }
    });
}
