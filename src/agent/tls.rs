//! HTTPS for the agent's REST API (`--tls-cert`, `--tls-key`), so a conductor configured with
//! `[agent] verify_ca` checks whom it talks to (Ironic's agent TLS). TLS 1.2 and 1.3 only.
//!
//! The agent serves with `axum::serve`; this gives it a listener whose connections are TLS
//! streams. Handshakes run in their own tasks, bounded in time, so a client that stalls in its
//! handshake holds up no other. (The service's server, `ferric_service::http_server`, is not
//! used: the agent does not depend on the service crate.)

use ferric_types::tls::ReloadingCert;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// Longest a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// A server configuration from a PEM chain (leaf first) and key, TLS 1.2 and 1.3 only, whose
/// certificate is read again on every `SIGHUP` (a renewed certificate without restarting the
/// agent mid-deploy; a file that does not load keeps the old one, and says why in the log).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let reloading = ReloadingCert::load(cert, key)?;
    let config = reloading.server_config()?;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match reloading.reload() {
                    Ok(()) => tracing::info!(cert = %reloading.cert_path().display(), "TLS certificate reloaded"),
                    Err(e) => tracing::warn!(error = %e, "TLS certificate not reloaded; the old one stays"),
                }
            }
        });
    }
    Ok(config)
}

/// Connections of `listener` after their TLS handshake, for `axum::serve`.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended (it does not, short of a panic): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
