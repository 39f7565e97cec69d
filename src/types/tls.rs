//! Server certificates for ferric's own TLS servers (the API, the HTTP boot server, the
//! conductors' RPC endpoint, the agent's API): a chain and key from PEM files, TLS 1.2 and 1.3
//! only, on the same rustls (aws-lc-rs) the HTTP clients use.
//!
//! The certificate is picked per handshake by a [`ReloadingCert`], so `SIGHUP` can swap in a
//! renewed one without a restart: connections already open keep the session they negotiated,
//! new ones get the new certificate. A new file that does not load leaves the old one in place.
//! It lives here, beside the other seams, because the service and the agent both serve TLS.

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a certificate/key pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("no certificate in {0}")]
    NoCert(PathBuf),
    #[error("cannot read the key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the key {key} does not fit the certificate {cert}: {reason}")]
    Mismatch { cert: PathBuf, key: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("{what}: a certificate and a key go together")]
    Half { what: &'static str },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loads a chain (leaf first) and its key, checking they belong together.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert { path: cert.to_owned(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.to_owned()));
    }
    let der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key { path: key.to_owned(), reason: e.to_string() })?;
    CertifiedKey::from_der(certs, der, provider).map_err(|e| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// A server certificate read from files and swappable at run time (see the module docs).
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert").field("cert", &self.cert).field("key", &self.key).finish()
    }
}

impl ReloadingCert {
    /// Loads `cert` (a PEM chain, leaf first) and `key` (PEM); fails if either is unusable.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ReloadingCert>, TlsError> {
        let provider = provider();
        let ck = load(cert, key, &provider)?;
        Ok(Arc::new(ReloadingCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(ck)),
        }))
    }

    /// Reads the files again and uses them for new handshakes; on failure the certificate in
    /// use stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = load(&self.cert, &self.key, &self.provider)?;
        *self.current.write() = Arc::new(ck);
        Ok(())
    }

    /// The certificate file this serves.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// A server configuration that asks this for its certificate on every handshake: TLS 1.3
    /// and 1.2 only, HTTP/1.1 offered by ALPN.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn reload_swaps_and_a_bad_file_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a", "first");
        let r = ReloadingCert::load(&c, &k).unwrap();
        let first = r.current.read().cert[0].clone();
        let (c2, k2) = write_pair(dir.path(), "b", "second");
        std::fs::copy(&c2, &c).unwrap();
        std::fs::copy(&k2, &k).unwrap();
        r.reload().unwrap();
        let second = r.current.read().cert[0].clone();
        assert_ne!(first, second);
        // A key that is not the certificate's: refused, the second pair stays.
        let (_, k3) = write_pair(dir.path(), "c", "third");
        std::fs::copy(&k3, &k).unwrap();
        assert!(matches!(r.reload(), Err(TlsError::Mismatch { .. })));
        std::fs::write(&c, "not a certificate").unwrap();
        assert!(r.reload().is_err());
        assert_eq!(r.current.read().cert[0], second);
    }
}
