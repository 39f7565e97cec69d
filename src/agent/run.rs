//! The agent's life: look the node up (bounded retries with jittered exponential backoff), then
//! heartbeat every 0.3-0.6 × `heartbeat_timeout` (sooner after a command finishes) until told to
//! stop, while the REST router serves the conductor.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::api_client::{ApiCallError, ApiClient};
use super::commands::{Commands, Extension};
use super::context::{AgentContext, AgentSettings, HostMode, LogRing, StandbyState};
use super::extensions;
use super::server::{self, AgentCore};
use ferric_disk::disks::Disk;
use ferric_types::agent::{AGENT_VERSION, HeartbeatRequest, LookupQuery, LookupResponse};
use ferric_types::http::HttpClient;

/// Agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// ferric (or Ironic) API, e.g. `http://192.0.2.1:6385`.
    pub api_url: String,
    /// MAC addresses sent to lookup.
    pub macs: Vec<String>,
    /// Node UUID, when known.
    pub node_uuid: Option<String>,
    /// Give up looking up after this long.
    pub lookup_timeout: Duration,
    /// First lookup retry interval.
    pub lookup_interval: Duration,
    /// Largest lookup retry interval.
    pub lookup_max_interval: Duration,
    /// Deadline of one API call.
    pub api_timeout: Duration,
    /// Seed of the agent's RNG.
    pub seed: u64,
    /// Unix time the agent started (reported by `/v1/status`).
    pub started_at: f64,
    /// Download and command tunables.
    pub settings: AgentSettings,
}

impl AgentConfig {
    /// Defaults as IPA's (lookup for 10 minutes, starting at 1 s, capped at 60 s).
    pub fn new(api_url: &str, macs: Vec<String>, seed: u64) -> Self {
        Self {
            api_url: api_url.into(),
            macs,
            node_uuid: None,
            lookup_timeout: Duration::from_secs(600),
            lookup_interval: Duration::from_secs(1),
            lookup_max_interval: Duration::from_secs(60),
            api_timeout: Duration::from_secs(60),
            seed,
            started_at: 0.0,
            settings: AgentSettings::default(),
        }
    }
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Lookup kept failing until its deadline.
    #[error("lookup failed for {0:?}: {1}")]
    Lookup(Duration, String),
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// An agent: REST router + API client + state.
pub struct Agent {
    core: Arc<AgentCore>,
    api: ApiClient,
    config: AgentConfig,
    heartbeat_timeout: Mutex<u64>,
}

fn unit(rng: &mut impl Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Agent {
    /// Builds an agent over `disks`, with the built-in extensions plus `extra` (e.g. `iscsi`).
    pub fn new(
        config: AgentConfig,
        http: Arc<dyn HttpClient>,
        disks: Vec<Disk>,
        mode: HostMode,
        extra: Vec<Arc<dyn Extension>>,
        logs: Arc<LogRing>,
    ) -> Result<Self, AgentError> {
        let api = ApiClient::new(http.clone(), &config.api_url, config.api_timeout)
            .map_err(|e| AgentError::Config(e.to_string()))?;
        let ctx = Arc::new(AgentContext {
            http,
            disks,
            mode,
            settings: config.settings.clone(),
            node: Mutex::new(None),
            md5_allowed: Default::default(),
            standby: Mutex::new(StandbyState::default()),
            shutdown: CancellationToken::new(),
            force_heartbeat: Default::default(),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(config.seed)),
            logs,
        });
        let mut exts: Vec<Arc<dyn Extension>> = vec![
            Arc::new(extensions::Standby),
            Arc::new(extensions::Deploy),
            Arc::new(extensions::Clean),
            Arc::new(extensions::Log),
        ];
        exts.extend(extra);
        let core = Arc::new(AgentCore {
            ctx,
            commands: Commands::new(exts, 100),
            token: Default::default(),
            started_at: config.started_at,
            version: AGENT_VERSION.into(),
        });
        Ok(Self { core, api, config, heartbeat_timeout: Mutex::new(300) })
    }

    /// The REST API (serve it, or register it with a [`ferric_lab::http::TowerHttp`]).
    pub fn router(&self) -> Router {
        server::router(self.core.clone())
    }

    /// What [`server::routes`] needs in each request's extensions to serve this agent.
    pub fn core(&self) -> Arc<server::AgentCore> {
        self.core.clone()
    }

    /// Shared state.
    pub fn context(&self) -> Arc<AgentContext> {
        self.core.ctx.clone()
    }

    /// Cancelled when the agent should end (e.g. `power_off` outside a ramdisk).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.core.ctx.shutdown.clone()
    }

    /// Looks the node up, retrying with jittered exponential backoff until `lookup_timeout`.
    pub async fn lookup(&self) -> Result<LookupResponse, AgentError> {
        let q = LookupQuery {
            addresses: (!self.config.macs.is_empty()).then(|| self.config.macs.join(",")),
            node_uuid: self.config.node_uuid.clone(),
        };
        let deadline = tokio::time::Instant::now() + self.config.lookup_timeout;
        let mut attempt = 0u32;
        let mut conflict_pause = 0u64;
        loop {
            let err = match self.api.lookup(&q).await {
                Ok(r) => {
                    self.accept_lookup(&r);
                    return Ok(r);
                }
                Err(e) => e,
            };
            let wait = match &err {
                ApiCallError::Conflict(_) => {
                    conflict_pause = match conflict_pause {
                        0 => 5,
                        5 => 10,
                        _ => 30,
                    };
                    Duration::from_secs(conflict_pause)
                }
                _ => {
                    let cap = self.config.lookup_max_interval.as_secs_f64();
                    let base = (self.config.lookup_interval.as_secs_f64() * 2f64.powi(attempt.min(16) as i32)).min(cap);
                    let j = unit(&mut *self.core.ctx.rng.lock());
                    Duration::from_secs_f64(self.config.lookup_interval.as_secs_f64().max(base * j))
                }
            };
            attempt += 1;
            tracing::warn!(attempt, error = %err, retry_in = ?wait, "lookup failed");
            if tokio::time::Instant::now() + wait > deadline {
                return Err(AgentError::Lookup(self.config.lookup_timeout, err.to_string()));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.core.ctx.shutdown.cancelled() => return Err(AgentError::Lookup(self.config.lookup_timeout, "shut down".into())),
            }
        }
    }

    fn accept_lookup(&self, r: &LookupResponse) {
        tracing::info!(node = %r.node.uuid, heartbeat_timeout = r.config.heartbeat_timeout, "lookup succeeded");
        *self.core.token.write() = r.config.agent_token.clone();
        if r.config.agent_token.is_none() {
            tracing::warn!("lookup returned no agent token: every command will be refused");
        }
        self.core.ctx.md5_allowed.store(r.config.agent_md5_checksum_enable, Ordering::Relaxed);
        *self.core.ctx.node.lock() = serde_json::to_value(&r.node).ok();
        *self.heartbeat_timeout.lock() = r.config.heartbeat_timeout.max(1);
    }

    /// Heartbeats for `node` announcing `callback_url` until shutdown.
    pub async fn heartbeat_loop(&self, node: &str, callback_url: &str) {
        const MIN_INTERVAL: f64 = 5.0;
        let ctx = &self.core.ctx;
        let mut last = tokio::time::Instant::now();
        // Consecutive failures: retries back off (as IPA's heartbeater did) so a busy conductor
        // (503, no free worker) is not met by every agent every few seconds.
        let mut failures: i32 = 0;
        loop {
            let hb = HeartbeatRequest {
                callback_url: callback_url.to_string(),
                agent_version: Some(AGENT_VERSION.into()),
                agent_token: self.core.token.read().clone(),
                ..Default::default()
            };
            let res = self.api.heartbeat(node, &hb).await;
            last = tokio::time::Instant::now().max(last);
            let interval = {
                let mut rng = ctx.rng.lock();
                match &res {
                    Ok(()) => {
                        tracing::debug!(node, "heartbeat accepted");
                        failures = 0;
                        *self.heartbeat_timeout.lock() as f64 * (0.3 + 0.3 * unit(&mut *rng))
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        if failures == 1 {
                            tracing::warn!(node, error = %e, "heartbeat failed");
                        } else {
                            tracing::debug!(node, error = %e, attempt = failures, "heartbeat failed again");
                        }
                        // 5-10 s, then x2.7 per failure, never longer than a regular interval.
                        let cap = *self.heartbeat_timeout.lock() as f64 * 0.3;
                        let backoff = MIN_INTERVAL * 2.7f64.powi((failures - 1).min(8));
                        backoff.min(cap.max(MIN_INTERVAL)) * (1.0 + unit(&mut *rng))
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(interval)) => {}
                _ = ctx.force_heartbeat.notified() => {
                    // At most one heartbeat per MIN_INTERVAL even when forced.
                    let earliest = last + Duration::from_secs_f64(MIN_INTERVAL);
                    tokio::select! {
                        _ = tokio::time::sleep_until(earliest) => {}
                        _ = ctx.shutdown.cancelled() => return,
                    }
                }
                _ = ctx.shutdown.cancelled() => return,
            }
        }
    }

    /// Lookup, then heartbeat until shutdown. The router must already be reachable at
    /// `callback_url`.
    pub async fn run(&self, callback_url: &str) -> Result<(), AgentError> {
        let r = self.lookup().await?;
        self.heartbeat_loop(&r.node.uuid, callback_url).await;
        Ok(())
    }
}
