//! The conductor's client of the agent's REST API (Ironic's `agent_client`): typed calls for
//! every command, the agent token on each request, deadlines, and polling of long commands.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use ferric_types::agent::{
    AgentStatus, CommandList, CommandRequest, CommandResult, CommandStatus, Fault, ImageInfo, Step,
};
use ferric_types::http::{HttpClient, HttpError, HttpRequest, send_with_timeout};

/// Where an agent is and how to authenticate to it (the node's agent session: the URL of its
/// heartbeats and the token issued at lookup).
#[derive(Clone, PartialEq, Eq)]
pub struct AgentTarget {
    /// `callback_url` of the heartbeat, e.g. `http://192.0.2.10:9999`.
    pub url: String,
    /// Token issued at lookup.
    pub token: Option<String>,
}

/// The token never reaches a log through `{:?}`.
impl std::fmt::Debug for AgentTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTarget")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "******"))
            .finish()
    }
}

/// Errors of agent calls.
#[derive(Debug, thiserror::Error)]
pub enum AgentClientError {
    /// Could not reach the agent.
    #[error("agent connection failed: {0}")]
    Connection(#[from] HttpError),
    /// 409: another command is running.
    #[error("agent is busy: {0}")]
    Busy(String),
    /// Any other refusal (401 token, 400 params, 404 unknown extension...).
    #[error("agent API error {status}: {faultstring}")]
    Api {
        /// HTTP status.
        status: u16,
        /// IPA's message.
        faultstring: String,
    },
    /// The answer is not what the agent API returns.
    #[error("invalid agent response: {0}")]
    Invalid(String),
    /// Polling gave up.
    #[error("command {command} did not finish in {waited:?}")]
    Timeout {
        /// Command name.
        command: String,
        /// How long it was polled.
        waited: Duration,
    },
    /// The command ran and failed.
    #[error("agent command {command} failed: {error}")]
    Failed {
        /// Command name.
        command: String,
        /// Its `command_error` (message: details).
        error: String,
    },
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct AgentClientConfig {
    /// Deadline of one HTTP call (`?wait=true` calls included).
    pub command_timeout: Duration,
    /// Pause between status polls.
    pub poll_interval: Duration,
    /// Total time a command is polled before [`AgentClientError::Timeout`].
    pub poll_timeout: Duration,
}

impl Default for AgentClientConfig {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            poll_timeout: Duration::from_secs(1800),
        }
    }
}

/// The client.
#[derive(Clone)]
pub struct AgentClient {
    http: Arc<dyn HttpClient>,
    config: AgentClientConfig,
}

impl AgentClient {
    /// Over `http` (reqwest or in-process).
    pub fn new(http: Arc<dyn HttpClient>, config: AgentClientConfig) -> Self {
        Self { http, config }
    }

    fn url(&self, t: &AgentTarget, path: &str, wait: Option<bool>) -> Result<url::Url, AgentClientError> {
        let mut u = url::Url::parse(&format!("{}/v1/{path}", t.url.trim_end_matches('/')))
            .map_err(|e| AgentClientError::Invalid(format!("agent URL {:?}: {e}", t.url)))?;
        {
            let mut q = u.query_pairs_mut();
            if let Some(w) = wait {
                q.append_pair("wait", if w { "true" } else { "false" });
            }
            if let Some(tok) = &t.token {
                q.append_pair("agent_token", tok);
            }
        }
        Ok(u)
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, req: HttpRequest) -> Result<T, AgentClientError> {
        let resp = send_with_timeout(self.http.as_ref(), req, self.config.command_timeout).await?;
        let status = resp.status;
        let body = tokio::time::timeout(self.config.command_timeout, resp.bytes(128 << 20))
            .await
            .map_err(|_| HttpError::Timeout(self.config.command_timeout))??;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| AgentClientError::Invalid(e.to_string()));
        }
        let faultstring = serde_json::from_slice::<Fault>(&body)
            .map(|f| f.faultstring)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        if status.as_u16() == 409 || faultstring.to_lowercase().contains("agent is busy") {
            return Err(AgentClientError::Busy(faultstring));
        }
        Err(AgentClientError::Api { status: status.as_u16(), faultstring })
    }

    /// `GET /v1/status` (no token needed).
    pub async fn status(&self, t: &AgentTarget) -> Result<AgentStatus, AgentClientError> {
        let u = url::Url::parse(&format!("{}/v1/status", t.url.trim_end_matches('/')))
            .map_err(|e| AgentClientError::Invalid(e.to_string()))?;
        self.call(HttpRequest::get(u)).await
    }

    /// `POST /v1/commands/?wait=...`: starts a command; with `wait` the agent answers when it ends.
    pub async fn execute(
        &self,
        t: &AgentTarget,
        name: &str,
        params: Map<String, Value>,
        wait: bool,
    ) -> Result<CommandResult, AgentClientError> {
        let u = self.url(t, "commands/", Some(wait))?;
        let req = HttpRequest::post_json(u, &CommandRequest { name: name.into(), params })?;
        self.call(req).await
    }

    /// `GET /v1/commands/`.
    pub async fn list_commands(&self, t: &AgentTarget) -> Result<Vec<CommandResult>, AgentClientError> {
        let l: CommandList = self.call(HttpRequest::get(self.url(t, "commands/", None)?)).await?;
        Ok(l.commands)
    }

    /// `GET /v1/commands/{id}?wait=...`.
    pub async fn get_command(&self, t: &AgentTarget, id: &str, wait: bool) -> Result<CommandResult, AgentClientError> {
        self.call(HttpRequest::get(self.url(t, &format!("commands/{id}"), Some(wait))?)).await
    }

    /// The latest result of a command named `name` (with or without the extension prefix),
    /// as Ironic's `get_last_command_status`.
    pub async fn last_command(&self, t: &AgentTarget, name: &str) -> Result<Option<CommandResult>, AgentClientError> {
        let short = name.split_once('.').map(|(_, c)| c).unwrap_or(name);
        Ok(self.list_commands(t).await?.into_iter().rev().find(|c| c.command_name == short))
    }

    /// Polls `id` (by status, every `poll_interval`) until it ends or `poll_timeout` passes.
    pub async fn wait_for(&self, t: &AgentTarget, r: CommandResult) -> Result<CommandResult, AgentClientError> {
        let start = tokio::time::Instant::now();
        let mut r = r;
        while !r.is_done() {
            if start.elapsed() >= self.config.poll_timeout {
                return Err(AgentClientError::Timeout { command: r.command_name, waited: start.elapsed() });
            }
            tokio::time::sleep(self.config.poll_interval).await;
            r = match self.get_command(t, &r.id, false).await {
                Ok(n) => n,
                Err(AgentClientError::Connection(e)) => {
                    tracing::warn!(error = %e, "polling the agent failed; retrying");
                    continue;
                }
                Err(e) => return Err(e),
            };
        }
        Ok(r)
    }

    /// Turns a FAILED result into [`AgentClientError::Failed`].
    pub fn check(r: CommandResult) -> Result<CommandResult, AgentClientError> {
        match (r.command_status, &r.command_error) {
            (CommandStatus::Succeeded, _) | (CommandStatus::Running, _) => Ok(r),
            (_, Some(e)) => Err(AgentClientError::Failed { command: r.command_name.clone(), error: e.to_string() }),
            (_, None) => {
                Err(AgentClientError::Failed { command: r.command_name.clone(), error: "no error given".into() })
            }
        }
    }

    /// Runs a command and polls it to the end; fails if it failed.
    pub async fn run_to_completion(
        &self,
        t: &AgentTarget,
        name: &str,
        params: Map<String, Value>,
    ) -> Result<CommandResult, AgentClientError> {
        let r = self.execute(t, name, params, false).await?;
        Self::check(self.wait_for(t, r).await?)
    }

    /// `standby.prepare_image` (asynchronous: poll it with [`Self::wait_for`] or on heartbeats).
    pub async fn prepare_image(
        &self,
        t: &AgentTarget,
        image_info: &ImageInfo,
        configdrive: Option<&str>,
    ) -> Result<CommandResult, AgentClientError> {
        let mut p = Map::new();
        p.insert(
            "image_info".into(),
            serde_json::to_value(image_info).map_err(|e| AgentClientError::Invalid(e.to_string()))?,
        );
        if let Some(cd) = configdrive {
            p.insert("configdrive".into(), json!(cd));
        }
        self.execute(t, "standby.prepare_image", p, false).await
    }

    /// `standby.get_partition_uuids` (synchronous): `root uuid` and, for partition images,
    /// `partitions` and the EFI partition UUID.
    pub async fn get_partition_uuids(&self, t: &AgentTarget) -> Result<Map<String, Value>, AgentClientError> {
        let r = Self::check(self.execute(t, "standby.get_partition_uuids", Map::new(), true).await?)?;
        Ok(r.command_result.and_then(|v| v.as_object().cloned()).unwrap_or_default())
    }

    /// `standby.power_off` (the agent answers, then the machine, or outside a ramdisk the agent,
    /// goes away).
    pub async fn power_off(&self, t: &AgentTarget) -> Result<CommandResult, AgentClientError> {
        self.execute(t, "standby.power_off", Map::new(), false).await
    }

    /// `standby.run_image`: reboot into the written image.
    pub async fn reboot(&self, t: &AgentTarget) -> Result<CommandResult, AgentClientError> {
        self.execute(t, "standby.run_image", Map::new(), false).await
    }

    /// `standby.sync`.
    pub async fn sync(&self, t: &AgentTarget) -> Result<CommandResult, AgentClientError> {
        Self::check(self.execute(t, "standby.sync", Map::new(), true).await?)
    }

    /// `log.collect_system_logs`: returns the base64 gzipped tarball.
    pub async fn collect_system_logs(&self, t: &AgentTarget) -> Result<String, AgentClientError> {
        let r = Self::check(self.execute(t, "log.collect_system_logs", Map::new(), true).await?)?;
        r.command_result
            .and_then(|v| v.get("system_logs").and_then(|s| s.as_str()).map(str::to_string))
            .ok_or_else(|| AgentClientError::Invalid("no system_logs in result".into()))
    }

    fn step_params(
        step: &Step,
        node: &Value,
        ports: &[Value],
        version_key: &str,
        version: Option<&Value>,
    ) -> Map<String, Value> {
        let mut p = Map::new();
        p.insert("step".into(), serde_json::to_value(step).unwrap_or(Value::Null));
        p.insert("node".into(), node.clone());
        p.insert("ports".into(), Value::Array(ports.to_vec()));
        p.insert(version_key.into(), version.cloned().unwrap_or(Value::Null));
        p
    }

    /// `deploy.get_deploy_steps` (synchronous).
    pub async fn get_deploy_steps(
        &self,
        t: &AgentTarget,
        node: &Value,
        ports: &[Value],
    ) -> Result<CommandResult, AgentClientError> {
        let p =
            Map::from_iter([("node".to_string(), node.clone()), ("ports".to_string(), Value::Array(ports.to_vec()))]);
        Self::check(self.execute(t, "deploy.get_deploy_steps", p, true).await?)
    }

    /// `deploy.execute_deploy_step` (asynchronous; `write_image` takes
    /// `args: {image_info, configdrive}`).
    pub async fn execute_deploy_step(
        &self,
        t: &AgentTarget,
        step: &Step,
        node: &Value,
        ports: &[Value],
        deploy_version: Option<&Value>,
    ) -> Result<CommandResult, AgentClientError> {
        let p = Self::step_params(step, node, ports, "deploy_version", deploy_version);
        self.execute(t, "deploy.execute_deploy_step", p, false).await
    }

    /// `clean.get_clean_steps` (synchronous).
    pub async fn get_clean_steps(
        &self,
        t: &AgentTarget,
        node: &Value,
        ports: &[Value],
    ) -> Result<CommandResult, AgentClientError> {
        let p =
            Map::from_iter([("node".to_string(), node.clone()), ("ports".to_string(), Value::Array(ports.to_vec()))]);
        Self::check(self.execute(t, "clean.get_clean_steps", p, true).await?)
    }

    /// `clean.execute_clean_step` (asynchronous).
    pub async fn execute_clean_step(
        &self,
        t: &AgentTarget,
        step: &Step,
        node: &Value,
        ports: &[Value],
        clean_version: Option<&Value>,
    ) -> Result<CommandResult, AgentClientError> {
        let p = Self::step_params(step, node, ports, "clean_version", clean_version);
        self.execute(t, "clean.execute_clean_step", p, false).await
    }

    /// `iscsi.start_iscsi_target` with IPA's parameters (served once the iSCSI extension is
    /// plugged into the agent).
    pub async fn start_iscsi_target(
        &self,
        t: &AgentTarget,
        iqn: &str,
        portal_port: u16,
        wipe_disk_metadata: bool,
    ) -> Result<CommandResult, AgentClientError> {
        let p = Map::from_iter([
            ("iqn".to_string(), json!(iqn)),
            ("portal_port".to_string(), json!(portal_port)),
            ("wipe_disk_metadata".to_string(), json!(wipe_disk_metadata)),
        ]);
        Self::check(self.execute(t, "iscsi.start_iscsi_target", p, true).await?)
    }
}
