//! The HTTP server under ferric's own endpoints (the API, the HTTP boot server, the conductors'
//! RPC): HTTP/1.1 over TCP or TLS, with bounds on what a client may make it hold.
//!
//! Hand-rolled over hyper's connection builder rather than `axum::serve`, which exposes none of
//! hyper's limits: here request heads are bounded in size and header count (431 past either),
//! a client has a bounded time to send a request head (slow clients are cut off), and the TLS
//! handshake is bounded the same way. Shutdown stops accepting, lets requests in flight finish
//! (up to a grace period) and closes idle connections.

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Bounds on what one client may make a server hold (from `[api]` for the API and the RPC
/// endpoint; the defaults for the HTTP boot server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers), in bytes; larger ones get 431.
    /// Eventlet, under Ironic's API, allows 16 KiB per header line; Keystone PKI tokens and
    /// long URLs fit in 32 KiB.
    pub max_header_bytes: usize,
    /// Most headers in one request; more get 431.
    pub max_headers: usize,
    /// Seconds a client has to send a whole request head (and to finish a TLS handshake);
    /// a client that stalls is disconnected.
    pub header_read_timeout: u64,
    /// Seconds requests in flight get to finish at shutdown.
    pub shutdown_grace: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_header_bytes: 32 << 10, max_headers: 100, header_read_timeout: 30, shutdown_grace: 10 }
    }
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` resolves, within
/// `limits`; returns once connections have drained or the grace period ran out.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let mut conns = tokio::task::JoinSet::new();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout.max(1)))
        // hyper refuses a buffer under 8 KiB.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers.max(1));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    let result = loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            r = listener.accept() => match r {
                Ok(s) => s,
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => break Err(e),
            },
        };
        // Reap finished connections so the set holds only open ones.
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        // The peer's address reaches handlers as axum's `ConnectInfo` (the agent lookup's rate
        // limit is per client address).
        let svc = TowerToHyperService::new(router.clone().map_request(
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let builder = builder.clone();
        let stop = stop.clone();
        let acceptor = acceptor.clone();
        let handshake = Duration::from_secs(limits.header_read_timeout.max(1));
        conns.spawn(async move {
            match acceptor {
                None => serve_conn(&builder, TokioIo::new(stream), svc, stop).await,
                Some(a) => match tokio::time::timeout(handshake, a.accept(stream)).await {
                    Ok(Ok(s)) => serve_conn(&builder, TokioIo::new(s), svc, stop).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    };
    stop.cancel();
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(limits.shutdown_grace), drained).await.is_err() {
        tracing::warn!(open = conns.len(), "connections still open after the shutdown grace period: closing them");
        conns.abort_all();
    }
    result
}

async fn serve_conn<I, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    svc: TowerToHyperService<S>,
    stop: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => log_conn_end(r),
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            log_conn_end(conn.await);
        }
    }
}

fn log_conn_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        // Timeouts, resets and malformed requests: the client's doing, not the server's.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}
