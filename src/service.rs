//! Assembles the service (store, drivers, conductor, API) from a configuration. Used by
//! `ferric serve`, the tests, and the labs, which add their own hardware backends.

use crate::api::{self, ApiState};
use crate::clock::Clock;
use crate::conductor::{Conductor, ConductorError};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::drivers::ipmitool::{self, PowerTiming};
use crate::drivers::pxe_boot::{self, BootEnv, ImageResolver, UrlResolver};
use crate::drivers::{DriverEnv, Registry};
use crate::ipmi::{ClientConfig, IpmiPool, UdpConnector};
use crate::network::dhcp::DbDhcp;
use crate::pxe::PxeServices;
use crate::trace::Recorder;
use std::sync::Arc;

/// Errors while building the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Conductor(#[from] ConductorError),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("PXE boot services: {0}")]
    Pxe(String),
}

/// A built service: the conductor and the API state that fronts it.
pub struct Service {
    pub config: Config,
    pub db: Db,
    pub conductor: Conductor,
    pub api: ApiState,
}

/// Hooks for whoever assembles a service to add hardware support before the conductor starts.
pub struct Parts {
    pub registry: Registry,
    pub env: DriverEnv,
}

impl Service {
    /// Opens the database in the data directory and builds everything with defaults.
    pub fn open(config: Config) -> Result<Service, ServiceError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| ServiceError::DataDir { path: config.data_dir.clone(), source })?;
        let db = Db::open(&config.database_path())?;
        let timing = PowerTiming {
            change_timeout: std::time::Duration::from_secs(config.conductor.power_state_change_timeout),
            ..Default::default()
        };
        let boot = boot_env(&config, &db)?;
        Service::build(config, db, Clock::system(), Recorder::default(), |p| {
            let pool = Arc::new(IpmiPool::new(Arc::new(UdpConnector), ClientConfig::default(), 4096));
            ipmitool::register(&mut p.registry, pool, timing);
            if let Some(b) = boot {
                pxe_boot::register(&mut p.registry);
                p.env.boot = Some(b);
            }
        })
    }

    /// Builds the service on an existing store; `customize` registers extra interfaces.
    pub fn build(
        config: Config,
        db: Db,
        clock: Clock,
        trace: Recorder,
        customize: impl FnOnce(&mut Parts),
    ) -> Result<Service, ServiceError> {
        let mut parts = Parts {
            registry: Registry::new(config.drivers.clone()),
            env: DriverEnv { clock, trace: trace.clone(), fake: config.fake.clone(), boot: None },
        };
        customize(&mut parts);
        let conductor = Conductor::new(config.conductor.clone(), db.clone(), parts.registry, parts.env)?;
        let api = ApiState {
            db: db.clone(),
            rpc: Arc::new(conductor.clone()),
            public_url: config.api.public_url.clone(),
            trace,
        };
        Ok(Service { config, db, conductor, api })
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
        let addr = self.config.api.bind;
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
        let pxe = self.start_pxe().await?.map(watch_pxe);
        let periodic = self.conductor.start();
        let addr = listener.local_addr().ok();
        tracing::info!(?addr, "ferric API listening");
        let router = self.router();
        let res = axum::serve(listener, router).with_graceful_shutdown(shutdown).await;
        periodic.abort();
        if let Some(p) = pxe {
            p.abort();
        }
        self.conductor.wait_idle().await;
        self.conductor.unregister();
        res.map_err(|source| ServiceError::Bind { addr: addr.unwrap_or(self.config.api.bind), source })
    }
}

impl Service {
    /// Binds and starts the configured provisioning-network services (TFTP, HTTP boot, DHCP, RA)
    /// with the database as DHCP host table and lease store. `None` when none is configured.
    pub async fn start_pxe(&self) -> Result<Option<PxeServices>, ServiceError> {
        let c = &self.config;
        let cfg = c.pxe.service_config(&c.dhcp, &c.data_dir).map_err(|e| ServiceError::Pxe(e.to_string()))?;
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
        let dhcp = Arc::new(DbDhcp::new(self.db.clone()));
        let svc = crate::pxe::start(cfg, dhcp.clone(), dhcp).await.map_err(|e| ServiceError::Pxe(e.to_string()))?;
        tracing::info!(tftp = ?svc.tftp_addr, http = ?svc.http_addr, dhcp = ?svc.dhcp_addr, "PXE services listening");
        Ok(Some(svc))
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

/// How image references (`deploy_kernel`, `instance_info.kernel`, ...) resolve to URLs: plain
/// URLs here. The image service (Glance role) plugs in with `UrlResolver::with_image_service`.
fn image_resolver(_config: &Config, _db: &Db) -> Arc<dyn ImageResolver> {
    Arc::new(UrlResolver::new())
}

/// The boot environment of the `pxe`/`ipxe` interfaces, when the configuration enables them.
fn boot_env(config: &Config, db: &Db) -> Result<Option<Arc<BootEnv>>, ServiceError> {
    if !config.pxe.boot_enabled() {
        return Ok(None);
    }
    let env = BootEnv::open(
        &config.pxe,
        &config.data_dir,
        config.public_url(),
        Arc::new(DbDhcp::new(db.clone())),
        image_resolver(config, db),
    )
    .map_err(|e| ServiceError::Pxe(e.to_string()))?;
    Ok(Some(Arc::new(env)))
}
