//! Assembles the service (store, drivers, conductor, API) from a configuration and the
//! [`Outside`] it runs against. Used by `ferric serve`, the tests, and the labs, which hand in
//! their own outside (a virtual clock, in-memory links to virtual BMCs, routers called in
//! process) and add their own hardware backends.

use crate::api::{self, ApiState};
use crate::conductor::{Conductor, ConductorError};
use crate::config::{Config, Role};
use crate::db::{Db, DbError};
use crate::drivers::agent_base::AgentEnv;
use crate::drivers::agent_client::{AgentClient, AgentClientConfig};
use crate::drivers::ipmitool;
use crate::drivers::iscsi_deploy::IscsiConnector;
use crate::drivers::iscsi_deploy::{IscsiDeploy, TcpIscsi};
use crate::drivers::pxe_boot::{self, BootEnv, ImageResolver, ImageServiceResolver, UrlResolver};
use crate::drivers::{DriverEnv, Registry};
use crate::images::{ImageService, ImageStore};
use crate::ipmi::{ClientConfig, IpmiPool, UdpConnector};
use crate::network::dhcp::DbDhcp;
use crate::pxe::PxeServices;
use crate::redfish::{RedfishConfig, RedfishPool};
use crate::rpc::RpcCredentials;
use crate::rpc::router::{Router, Transport};
use ferric_disk::http::{ReqwestConnector, ReqwestHttp};
use ferric_types::clock::Clock;
use ferric_types::http::{HttpClient, HttpConnector};
use ferric_types::trace::Recorder;
use std::sync::Arc;

/// Errors while building the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("temp URL key: {0}")]
    Key(String),
    #[error(transparent)]
    Conductor(#[from] ConductorError),
    #[error("image store: {0}")]
    Images(#[from] crate::images::store::StoreError),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("PXE boot services: {0}")]
    Pxe(String),
    #[error("{0}")]
    Role(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("audit log {path}: {source}")]
    Audit { path: std::path::PathBuf, source: std::io::Error },
    #[error("API authentication: {0}")]
    Auth(#[from] crate::api::auth::AuthError),
}

/// A built service: the conductor and the API state that fronts it.
pub struct Service {
    pub config: Config,
    pub db: Db,
    pub conductor: Conductor,
    pub api: ApiState,
    /// Whether [`Service::serve`] binds the boot services' sockets.
    pub boot_packets: BootPackets,
    /// What SIGHUP reloads: certificates and the audit log.
    pub reload: Reload,
}

/// What SIGHUP reloads: the certificates of the servers this process runs (each keeps the one
/// it has if its new files do not load) and the audit log (reopened after logrotate). Clones
/// share one list.
#[derive(Clone, Default)]
pub struct Reload {
    certs: Arc<parking_lot::Mutex<Vec<Arc<crate::tls::ReloadingCert>>>>,
    audit: Option<Arc<crate::audit::AuditLog>>,
}

impl Reload {
    /// Adds a server's certificate to what [`Reload::reload`] reloads.
    pub fn add_cert(&self, cert: Arc<crate::tls::ReloadingCert>) {
        self.certs.lock().push(cert);
    }

    /// Reloads everything now (what SIGHUP does), logging what failed and why.
    pub fn reload(&self) {
        let certs = self.certs.lock().clone();
        for c in certs {
            match c.reload() {
                Ok(()) => tracing::info!(cert = %c.cert_path().display(), "TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded: the previous one stays in use")
                }
            }
        }
        if let Some(a) = &self.audit
            && let Err(e) = a.reopen()
        {
            tracing::error!(path = %a.path().display(), error = %e, "audit log not reopened: writing to the old file");
        }
    }

    /// Reloads on every SIGHUP until the returned task is aborted.
    pub fn on_sighup(&self) -> Option<tokio::task::JoinHandle<()>> {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP: certificates and the audit log will not be reloaded");
                return None;
            }
        };
        let me = self.clone();
        Some(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading certificates and reopening the audit log");
                me.reload();
            }
        }))
    }
}

/// Every boundary where the service touches the outside world, handed to it when it is built:
/// production's clock and sockets, or a simulation's (DESIGN.md, "the one rule"). The same code
/// runs against either; only what crosses these seams differs, and its bytes do not.
#[derive(Clone)]
pub struct Outside {
    /// Time, identifiers and randomness (seeded in a simulation: one scenario and seed give the
    /// same API answers, UUIDs and timestamps included).
    pub clock: Clock,
    /// BMCs: IPMI sessions over UDP, or over in-memory links to virtual BMCs.
    pub ipmi: Arc<IpmiPool>,
    /// HTTP to agents and image stores: the network, or routers called in process.
    pub http: Arc<dyn HttpClient>,
    /// HTTP(S) to Redfish BMCs, one client per TLS policy (each node says how its BMC's
    /// certificate is checked): reqwest, or a simulation's routers called in process.
    pub bmc_http: Arc<dyn HttpConnector>,
    /// Agents' iSCSI portals: TCP, or in-memory stream pairs. (Block devices are the agent's;
    /// the conductor reaches a node's disk only through this.)
    pub iscsi: Arc<dyn IscsiConnector>,
    /// Where DHCP, TFTP and HTTP-boot packets come from.
    pub boot_packets: BootPackets,
}

/// Where the provisioning network's packets come from. The handlers are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootPackets {
    /// Sockets the service binds as configured (`[pxe]`, `[dhcp]`).
    Sockets,
    /// The embedder feeds the service's handlers itself (a simulated provisioning network); the
    /// service binds no boot sockets.
    Fed,
}

impl Outside {
    /// The real world on `clock` (the system clock in production): IPMI over UDP, HTTP over
    /// reqwest, iSCSI over TCP, boot services on the configured sockets.
    pub fn real(clock: Clock) -> Result<Outside, ServiceError> {
        let http =
            ReqwestHttp::new(std::time::Duration::from_secs(10)).map_err(|e| ServiceError::Http(e.to_string()))?;
        Ok(Outside {
            clock,
            ipmi: Arc::new(IpmiPool::new(Arc::new(UdpConnector), ClientConfig::default(), 4096)),
            http: Arc::new(http),
            bmc_http: Arc::new(ReqwestConnector::new(std::time::Duration::from_secs(10))),
            iscsi: Arc::new(TcpIscsi),
            boot_packets: BootPackets::Sockets,
        })
    }
}

/// Hooks for whoever assembles a service to add hardware support before the conductor starts.
pub struct Parts {
    pub registry: Registry,
    pub env: DriverEnv,
    /// The image service: agent-based deploys hand agents its temporary URLs.
    pub images: Option<Arc<ImageService>>,
    /// Whether the API also serves it (`/v2/images`, temporary URLs), as `ferric serve` does; a
    /// lab may serve it on a host of its own.
    pub api_serves_images: bool,
}

impl Service {
    /// Opens the database in the data directory and builds everything with defaults, against
    /// the real world.
    pub fn open(config: Config) -> Result<Service, ServiceError> {
        if config.role != Role::Conductor {
            config.auth.check_bind(config.api.bind)?;
        }
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| ServiceError::DataDir { path: config.data_dir.clone(), source })?;
        let db = open_db(&config)?;
        let outside = Outside::real(Clock::system())?;
        let key = temp_url_key(&config, &outside.clock)?;
        let store =
            Arc::new(ImageStore::open(&config.images_dir(), outside.clock.clone(), config.images.max_image_size)?);
        let images = Arc::new(ImageService::new(store, key, outside.clock.clone()));
        let boot = boot_env(&config, &db, &images)?;
        Service::build(config, db, outside, Recorder::new(10_000), |p| {
            p.images = Some(images);
            // As in Ironic, `pxe` and `ipxe` are there whether or not this process serves TFTP
            // and HTTP (another server may serve the roots): a node whose boot needs a server
            // nobody configured fails validation, saying which.
            pxe_boot::register(&mut p.registry);
            p.env.boot = Some(boot);
        })
    }

    /// Builds the service on an existing store against `outside`: `ipmitool` over its BMC
    /// sessions, the `iscsi` deploy over its connector, the agent-based deploys over its HTTP
    /// (when `customize` gives an image service); `customize` registers extra interfaces.
    pub fn build(
        config: Config,
        db: Db,
        outside: Outside,
        trace: Recorder,
        customize: impl FnOnce(&mut Parts),
    ) -> Result<Service, ServiceError> {
        db.use_clock(&outside.clock);
        let mut parts = Parts {
            registry: Registry::new(config.drivers.clone()),
            env: DriverEnv {
                clock: outside.clock.clone(),
                trace: trace.clone(),
                fake: config.fake.clone(),
                agent: None,
                boot: None,
            },
            images: None,
            api_serves_images: true,
        };
        ipmitool::register(&mut parts.registry, outside.ipmi.clone());
        let redfish = Arc::new(RedfishPool::new(outside.bmc_http.clone(), RedfishConfig::default()));
        crate::drivers::redfish::register(&mut parts.registry, redfish.clone());
        crate::drivers::redfish_boot::register(&mut parts.registry, redfish.clone());
        crate::drivers::redfish_inspect::register(&mut parts.registry, redfish.clone());
        crate::drivers::redfish_bios::register(&mut parts.registry, redfish);
        parts
            .registry
            .register_deploy("iscsi", Arc::new(IscsiDeploy::new(outside.iscsi.clone(), config.iscsi.clone())));
        customize(&mut parts);
        let images = parts.images.take();
        if parts.env.agent.is_none()
            && let Some(images) = &images
        {
            // Agents are called through a client that trusts only `[agent] verify_ca` when set
            // (Ironic's `agent_verify_ca`); image downloads keep the general one.
            let agent_http = match &config.agent.verify_ca {
                Some(ca) => outside
                    .bmc_http
                    .client(&ferric_types::http::TlsVerify::CaFile(ca.clone()))
                    .map_err(|e| ServiceError::Http(format!("[agent] verify_ca: {e}")))?,
                None => outside.http.clone(),
            };
            parts.env.agent = Some(Arc::new(AgentEnv {
                client: AgentClient::new(agent_http, AgentClientConfig::default()),
                http: outside.http.clone(),
                images: Some(images.clone()),
                image_url_base: config.images_public_url(),
                config: config.agent.clone(),
            }));
        }
        let mut cc = config.conductor.clone();
        match config.role {
            Role::All => {}
            Role::Api => cc.passive = true,
            Role::Conductor => {
                cc.cluster = true;
                cc.rpc_url = config.rpc.url();
            }
        }
        if config.role != Role::All && config.rpc.password.is_empty() {
            return Err(ServiceError::Role(
                "--role api and --role conductor need the shared RPC credentials: set --rpc-password, [rpc] password or FERRIC_RPC__PASSWORD".into(),
            ));
        }
        if config.role == Role::Conductor && config.rpc.bind.is_none() {
            return Err(ServiceError::Role("--role conductor needs --rpc-bind ADDR:PORT ([rpc] bind)".into()));
        }
        if config.rpc.tls_cert.is_some() != config.rpc.tls_key.is_some() {
            return Err(ServiceError::Role("[rpc] tls_cert and tls_key go together".into()));
        }
        let ca_pem = match &config.rpc.ca_file {
            Some(p) => {
                Some(std::fs::read(p).map_err(|e| ServiceError::Role(format!("[rpc] ca_file {}: {e}", p.display())))?)
            }
            None => None,
        };
        let conductor_alive_timeout = (config.role != Role::All).then_some(cc.heartbeat_timeout);
        let auth = Arc::new(crate::api::auth::Auth::from_config(&config.auth)?);
        let conductor = Conductor::new(cc, db.clone(), parts.registry, parts.env)?;
        let audit = match &config.audit.file {
            Some(path) => Some(
                crate::audit::AuditLog::open(path)
                    .map_err(|source| ServiceError::Audit { path: path.clone(), source })?,
            ),
            None => None,
        };
        if let Some(a) = &audit {
            conductor.set_audit(a.clone());
        }
        let rpc: Arc<dyn ferric_types::rpc::ConductorApi> = match config.role {
            Role::All => Arc::new(conductor.clone()),
            Role::Api | Role::Conductor => Arc::new(Router::new(
                db.clone(),
                conductor.clone(),
                Transport::Http {
                    credentials: rpc_credentials(&config),
                    timeout: std::time::Duration::from_secs(config.rpc.timeout.max(1)),
                    ca_pem,
                },
                outside.clock.clone(),
            )),
        };
        let image_store = images.as_ref().map(|i| i.store.clone());
        let mut api = ApiState {
            db: db.clone(),
            rpc,
            conductor_alive_timeout,
            clock: outside.clock.clone(),
            public_url: config.api.public_url.clone(),
            trace,
            beside: images.filter(|_| parts.api_serves_images).map(|i| i.router()),
            console: None,
            agent_heartbeat_timeout: config.conductor.agent_heartbeat_timeout,
            https: config.api.tls_cert.is_some(),
            audit: audit.clone(),
            auth,
        };
        if config.api.console {
            api.console = Some(crate::console::router(api.clone(), image_store));
        }
        let reload = Reload { certs: Default::default(), audit };
        Ok(Service { config, db, conductor, api, boot_packets: outside.boot_packets, reload })
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.api.clone())
    }

    /// Binds the API and serves it until `shutdown` resolves; runs the conductor's periodic
    /// tasks meanwhile.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let addr = match self.config.role {
            Role::Conductor => self.config.rpc.bind.unwrap_or(self.config.api.bind),
            Role::All | Role::Api => {
                self.config.auth.check_bind(self.config.api.bind)?;
                self.config.api.bind
            }
        };
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| ServiceError::Bind { addr, source })?;
        self.serve_on(listener, shutdown).await
    }

    /// Like [`Service::serve`] on an already bound listener.
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let role = self.config.role;
        // Certificates first: a bad one stops the start before anything else runs.
        let c = &self.config;
        let cert = match role {
            Role::Conductor => crate::tls::from_settings("[rpc]", c.rpc.tls_cert.as_deref(), c.rpc.tls_key.as_deref())?,
            Role::All | Role::Api => {
                crate::tls::from_settings("[api]", c.api.tls_cert.as_deref(), c.api.tls_key.as_deref())?
            }
        };
        let tls = match cert {
            Some(cert) => {
                self.reload.add_cert(cert.clone());
                Some(cert.server_config()?)
            }
            None => None,
        };
        let pxe = match (self.boot_packets, role) {
            (BootPackets::Sockets, Role::All | Role::Conductor) => self.start_pxe().await?.map(watch_pxe),
            _ => None,
        };
        let periodic = (role != Role::Api).then(|| self.conductor.start());
        let addr = listener.local_addr().ok();
        let router = match role {
            Role::Conductor => {
                tracing::info!(?addr, host = self.conductor.host(), "ferric conductor RPC listening");
                crate::rpc::serve_rpc(Arc::new(self.conductor.clone()), rpc_credentials(&self.config))
            }
            Role::All | Role::Api => {
                tracing::info!(?addr, ?role, auth = self.api.auth.strategy().as_str(), "ferric API listening");
                self.router()
            }
        };
        let hup = self.reload.on_sighup();
        let res = crate::http_server::serve(listener, router, tls, self.config.api.limits(), shutdown).await;
        if let Some(h) = hup {
            h.abort();
        }
        if let Some(p) = periodic {
            p.abort();
        }
        if let Some(p) = pxe {
            p.abort();
        }
        if role != Role::Api {
            self.conductor.wait_idle().await;
            self.conductor.unregister();
        }
        res.map_err(|source| ServiceError::Bind { addr: addr.unwrap_or(self.config.api.bind), source })
    }
}

impl Service {
    /// Binds and starts the configured provisioning-network services (TFTP, HTTP boot, DHCP, RA)
    /// with the database as DHCP host table and lease store. `None` when none is configured.
    pub async fn start_pxe(&self) -> Result<Option<PxeServices>, ServiceError> {
        let c = &self.config;
        let mut cfg = c.pxe.service_config(&c.dhcp, &c.data_dir).map_err(|e| ServiceError::Pxe(e.to_string()))?;
        cfg.clock = self.api.clock.clone();
        let cert =
            crate::tls::from_settings("[pxe] http", c.pxe.http_tls_cert.as_deref(), c.pxe.http_tls_key.as_deref())?;
        if let (Some(cert), Some(_)) = (cert, &cfg.http) {
            self.reload.add_cert(cert.clone());
            cfg.http_tls = Some(cert.server_config()?);
        }
        if cfg.tftp.is_none() && cfg.http.is_none() && cfg.dhcp.is_none() && cfg.ra.is_none() {
            return Ok(None);
        }
        for root in [c.pxe.tftp_root(&c.data_dir), c.pxe.http_root(&c.data_dir)] {
            std::fs::create_dir_all(&root).map_err(|source| ServiceError::DataDir { path: root, source })?;
        }
        if cfg.dhcp.is_some() && c.pxe.http_url().unwrap_or_default().is_empty() {
            tracing::warn!(
                "DHCP runs without an HTTP boot URL ([pxe] http_bind or http_url): iPXE clients get no script"
            );
        }
        let dhcp = Arc::new(if self.conductor.is_clustered() {
            let c = self.conductor.clone();
            DbDhcp::owned(self.db.clone(), Arc::new(move |id| c.owns_id(id)))
        } else {
            DbDhcp::new(self.db.clone())
        });
        let observer = Arc::new(TraceDhcp(self.api.trace.clone()));
        let svc = crate::pxe::start_observed(cfg, dhcp.clone(), dhcp, Some(observer))
            .await
            .map_err(|e| ServiceError::Pxe(e.to_string()))?;
        tracing::info!(tftp = ?svc.tftp_addr, http = ?svc.http_addr, dhcp = ?svc.dhcp_addr, "PXE services listening");
        Ok(Some(svc))
    }
}

/// Records the seed's "DHCP request" / "next-server = Conductor" exchange when ferric's DHCP
/// server offers a node's port its boot file.
struct TraceDhcp(Recorder);

impl crate::pxe::dhcp::DhcpObserver for TraceDhcp {
    fn replied(&self, _mac: &crate::pxe::MacAddr, host: &crate::pxe::dhcp::HostEntry, kind: dhcproto::v4::MessageType) {
        use ferric_types::trace::{Actor, seed};
        if kind != dhcproto::v4::MessageType::Offer {
            return;
        }
        if let Some(node) = host.node.as_deref().and_then(|n| n.parse::<ferric_types::models::NodeId>().ok()) {
            self.0.record(node, Actor::Node, Actor::Neutron, seed::DHCP_REQUEST);
            self.0.record(node, Actor::Neutron, Actor::Node, seed::NEXT_SERVER);
        }
    }
}

/// Logs a PXE service that stops; aborting the returned task stops them all.
fn watch_pxe(svc: PxeServices) -> tokio::task::JoinHandle<()> {
    let mut tasks = svc.tasks;
    tokio::spawn(async move {
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok((name, Ok(()))) => tracing::warn!(service = name, "PXE service stopped"),
                Ok((name, Err(e))) => tracing::error!(service = name, error = %e, "PXE service failed"),
                Err(e) if e.is_cancelled() => {}
                Err(e) => tracing::error!(error = %e, "PXE service panicked"),
            }
        }
    })
}

/// How image references (`deploy_kernel`, `instance_info.kernel`, ...) resolve: URLs directly,
/// image IDs through ferric's image service.
fn image_resolver(images: &Arc<ImageService>) -> Arc<dyn ImageResolver> {
    Arc::new(UrlResolver::with_image_service(Arc::new(ImageServiceResolver::new(images.clone()))))
}

/// The boot environment of the `pxe`, `ipxe` and `redfish-virtual-media` interfaces: roots in the
/// data directory unless configured, served by this process only when `[pxe]` binds them.
fn boot_env(config: &Config, db: &Db, images: &Arc<ImageService>) -> Result<Arc<BootEnv>, ServiceError> {
    let env = BootEnv::open(
        &config.pxe,
        &config.data_dir,
        config.public_url(),
        Arc::new(DbDhcp::new(db.clone())),
        image_resolver(images),
    )
    .map_err(|e| ServiceError::Pxe(e.to_string()))?;
    Ok(Arc::new(env))
}

/// The temp-URL secret: configured, or generated once and kept (mode 0600) in the data directory
/// so URLs stay valid across restarts.
fn temp_url_key(config: &Config, clock: &Clock) -> Result<Vec<u8>, ServiceError> {
    if let Some(k) = &config.images.temp_url_key {
        return Ok(k.as_bytes().to_vec());
    }
    let path = config.data_dir.join("temp_url_key");
    if let Ok(k) = std::fs::read(&path) {
        if k.len() >= 16 {
            return Ok(k);
        }
    }
    let key: [u8; 32] = clock.random();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| ServiceError::Key(format!("{}: {e}", path.display())))?;
    f.write_all(hex.as_bytes()).map_err(|e| ServiceError::Key(e.to_string()))?;
    Ok(hex.into_bytes())
}

/// The RPC credentials every process of a deployment shares.
fn rpc_credentials(config: &Config) -> RpcCredentials {
    RpcCredentials { username: config.rpc.username.clone(), password: config.rpc.password.clone() }
}

/// Opens the configured store: the embedded SQLite file (brought up to date, as it is this
/// process's own), or the database at `[database] url`, whose schema must be this binary's.
pub fn open_db(config: &Config) -> Result<Db, ServiceError> {
    match config.database.url.as_deref() {
        None => Ok(Db::open(&config.database_path())?),
        // A shared database is upgraded by `ferric db upgrade`, never by a process starting on it.
        Some(url) => Ok(Db::connect(url, crate::db::SchemaMode::Check)?),
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: what every long-running `ferric` command stops on.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
