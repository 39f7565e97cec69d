//! Serving a [`RedfishBmc`] on a TCP listener, HTTP/1.1 in the clear or over TLS, and the
//! self-signed certificate a lab uses for it.

use super::RedfishBmc;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Why [`self_signed_tls`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A TLS 1.2 + 1.3 server configuration with a fresh self-signed certificate for `hosts` (DNS
/// names or IP addresses), and the certificate as PEM for clients that want to verify it. A
/// real BMC ships such a certificate, so clients (sushy, the protocol validator) are tested
/// against what they meet in a data centre.
pub fn self_signed_tls(hosts: &[String]) -> Result<(Arc<rustls::ServerConfig>, String), TlsError> {
    let hosts = if hosts.is_empty() { vec!["localhost".to_string()] } else { hosts.to_vec() };
    let certified = rcgen::generate_simple_self_signed(hosts)?;
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), pem))
}

/// Serves `bmc` on `listener` until the task is dropped: each connection on its own task, TLS
/// when `tls` is given. Returns only if accepting fails persistently.
pub async fn serve(
    listener: TcpListener,
    bmc: RedfishBmc,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let router = bmc.router();
    let mut failures = 0u32;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                failures = 0;
                stream
            }
            Err(e) => {
                // Out of descriptors or an aborted handshake: back off, keep serving.
                failures += 1;
                if failures > 1000 {
                    return Err(e);
                }
                tracing::debug!(error = %e, "redfish accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let result = match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => builder.serve_connection(TokioIo::new(tls), service).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "redfish TLS handshake failed");
                        return;
                    }
                },
                None => builder.serve_connection(TokioIo::new(stream), service).await,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "redfish connection ended");
            }
        });
    }
}
