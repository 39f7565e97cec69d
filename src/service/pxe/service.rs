//! Starting the provisioning-network services together, as `ferric serve` does: each one runs
//! only when configured (its bind given).

use ferric_types::clock::Clock;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::dhcp::{
    DhcpBind, DhcpConfig, DhcpError, DhcpHandler, DhcpObserver, DhcpServer, HostTable, LeaseStore, RaConfig,
    RaResponder,
};
use super::tftp::{TftpConfig, TftpError, TftpServer};

/// Errors starting the services.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Tftp(#[from] TftpError),
    #[error(transparent)]
    Dhcp(#[from] DhcpError),
    #[error("cannot bind HTTP boot server on {addr}: {source}")]
    HttpBind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid DHCP range {0:?}: expected FIRST,LAST with FIRST <= LAST")]
    Range(String),
}

/// Which services to run; `None` leaves a service off.
#[derive(Debug, Clone, Default)]
pub struct PxeServiceConfig {
    pub tftp: Option<TftpConfig>,
    /// HTTP boot server: listen address and HTTP root.
    pub http: Option<(SocketAddr, PathBuf)>,
    /// Serve the HTTP boot server over TLS (see [`crate::tls`]).
    pub http_tls: Option<Arc<rustls::ServerConfig>>,
    pub dhcp: Option<(DhcpBind, DhcpConfig)>,
    /// Router advertisements on the provisioning interface (removes iPXE's IPv6 wait).
    pub ra: Option<RaConfig>,
    /// What DHCP leases are timed by.
    pub clock: Clock,
}

/// Running services and the addresses they bound (useful with port 0).
pub struct PxeServices {
    pub tftp_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub dhcp_addr: Option<SocketAddr>,
    /// One task per service; aborting the set (or dropping it) stops them.
    pub tasks: JoinSet<(&'static str, Result<(), String>)>,
}

/// Parses `--dhcp-range FIRST,LAST`.
pub fn parse_range(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), ServiceError> {
    let bad = || ServiceError::Range(s.to_owned());
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
    let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Binds every configured service and spawns it. Binding happens before returning, so a port
/// conflict is reported here rather than from a background task.
pub async fn start(
    cfg: PxeServiceConfig,
    hosts: Arc<dyn HostTable>,
    leases: Arc<dyn LeaseStore>,
) -> Result<PxeServices, ServiceError> {
    start_observed(cfg, hosts, leases, None).await
}

/// Like [`start`], reporting each DHCP reply to `observer`.
pub async fn start_observed(
    cfg: PxeServiceConfig,
    hosts: Arc<dyn HostTable>,
    leases: Arc<dyn LeaseStore>,
    observer: Option<Arc<dyn DhcpObserver>>,
) -> Result<PxeServices, ServiceError> {
    let mut tasks = JoinSet::new();
    let mut out = PxeServices { tftp_addr: None, http_addr: None, dhcp_addr: None, tasks: JoinSet::new() };
    if let Some(t) = cfg.tftp {
        let server = TftpServer::bind(t).await?;
        out.tftp_addr = Some(server.local_addr()?);
        tasks.spawn(async move { ("tftp", server.run().await.map_err(|e| e.to_string())) });
    }
    if let Some((addr, root)) = cfg.http {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| ServiceError::HttpBind { addr, source })?;
        out.http_addr = listener.local_addr().ok();
        let app = super::http::router(root);
        let tls = cfg.http_tls.clone();
        let limits = crate::http_server::Limits::default();
        let forever = std::future::pending::<()>();
        tasks.spawn(async move {
            ("http", crate::http_server::serve(listener, app, tls, limits, forever).await.map_err(|e| e.to_string()))
        });
    }
    if let Some((bind, dcfg)) = cfg.dhcp {
        let mut handler = DhcpHandler::new(dcfg, hosts, leases);
        if let Some(o) = observer {
            handler = handler.with_observer(o);
        }
        let handler = Arc::new(handler);
        let server = DhcpServer::bind(bind, handler, cfg.clock.clone())?;
        out.dhcp_addr = Some(server.local_addr()?);
        tasks.spawn(async move { ("dhcp", server.run().await.map_err(|e| e.to_string())) });
    }
    if let Some(r) = cfg.ra {
        let ra = RaResponder::bind(&r)?;
        tasks.spawn(async move { ("ra", ra.run().await.map_err(|e| e.to_string())) });
    }
    out.tasks = tasks;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range() {
        assert_eq!(
            parse_range("192.0.2.100, 192.0.2.200").unwrap(),
            (Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 200))
        );
        assert!(parse_range("192.0.2.200,192.0.2.100").is_err());
        assert!(parse_range("192.0.2.1").is_err());
        assert!(parse_range("a,b").is_err());
    }
}
