//! Configuration: defaults, then a TOML file, then `FERRIC_*` environment variables, then flags.

pub use crate::api::auth::{AuthConfig, AuthStrategy};
use crate::conductor::ConductorConfig;
use crate::drivers::agent_base::AgentDeployConfig;
use crate::drivers::{FakeDelays, RegistryConfig};
use crate::pxe::settings::{DhcpSettings, PxeSettings};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `ferric serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the database (and, by default, the TFTP/HTTP roots and image store) live.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub conductor: ConductorConfig,
    pub drivers: RegistryConfig,
    pub fake: FakeDelays,
    pub agent: AgentDeployConfig,
    pub iscsi: crate::drivers::iscsi_deploy::IscsiDeployConfig,
    pub images: ImagesConfig,
    pub log: LogConfig,
    /// TFTP/HTTP boot servers, boot roots, image cache (`[pxe]`).
    pub pxe: PxeSettings,
    /// The provisioning network's DHCP server (`[dhcp]`).
    pub dhcp: DhcpSettings,
    /// What this process runs: everything, the API only, or a conductor only.
    pub role: Role,
    pub database: DatabaseConfig,
    /// JSON-RPC between API and conductor processes (`[rpc]`).
    pub rpc: RpcConfig,
    /// The audit log (`[audit]`).
    pub audit: crate::audit::AuditConfig,
    /// Who may call the API (`[auth]`).
    pub auth: AuthConfig,
}

/// What one `ferric serve` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// API and conductor in one process, alone on its database (the embedded default).
    #[default]
    All,
    /// The REST API (agent lookup and heartbeat included); work goes to conductors over RPC.
    Api,
    /// A conductor among others on one database: drivers, boot services, an RPC endpoint.
    Conductor,
}

/// Where the store lives (`[database]`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...`; default: `ferric.sqlite` in the data directory.
    pub url: Option<String>,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A PostgreSQL URL may carry a password.
        f.debug_struct("DatabaseConfig").field("url", &self.url.as_deref().map(crate::pxe::cache::redact_url)).finish()
    }
}

/// JSON-RPC between processes: where a conductor listens, and the credentials every process
/// shares (`FERRIC_RPC__PASSWORD` keeps the password out of files and command lines).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcConfig {
    /// Where a conductor's RPC endpoint listens.
    pub bind: Option<SocketAddr>,
    /// The URL API processes use to reach it (default `http://BIND`).
    pub public_url: Option<String>,
    pub username: String,
    pub password: String,
    /// Bound on one call, in seconds.
    pub timeout: u64,
    /// A conductor serves its endpoint over TLS (1.2 and 1.3) with this certificate chain and
    /// key (PEM); its registered URL is then `https://`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) callers check conductors' certificates against, beside the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            bind: None,
            public_url: None,
            username: "ferric".into(),
            password: String::new(),
            timeout: 60,
            tls_cert: None,
            tls_key: None,
            ca_file: None,
        }
    }
}

impl std::fmt::Debug for RpcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcConfig")
            .field("bind", &self.bind)
            .field("public_url", &self.public_url)
            .field("username", &self.username)
            .field("password", &"******")
            .field("timeout", &self.timeout)
            .field("tls_cert", &self.tls_cert)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl RpcConfig {
    pub fn url(&self) -> Option<String> {
        let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
        self.public_url.clone().or_else(|| self.bind.map(|b| format!("{scheme}://{b}")))
    }
}

/// The image service (the Glance role) and its HTTP store (the Swift role).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagesConfig {
    /// Where images are stored (default `DATA_DIR/images`).
    pub dir: Option<PathBuf>,
    /// Secret for temporary URLs; generated and kept in the data directory when unset.
    pub temp_url_key: Option<String>,
    /// Largest image accepted, in bytes.
    pub max_image_size: u64,
    /// The URL nodes reach the image store under (default: the API's public URL, which
    /// serves it).
    pub public_url: Option<String>,
}

impl std::fmt::Debug for ImagesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagesConfig")
            .field("dir", &self.dir)
            .field("temp_url_key", &self.temp_url_key.as_ref().map(|_| "******"))
            .field("max_image_size", &self.max_image_size)
            .field("public_url", &self.public_url)
            .finish()
    }
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig { dir: None, temp_url_key: None, max_image_size: 64 << 30, public_url: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiConfig {
    pub bind: SocketAddr,
    /// Base URL clients and agents use to reach the API (links, agent kernel parameters);
    /// default `http://BIND`, or `https://BIND` with TLS.
    pub public_url: Option<String>,
    /// Serve the web console (`/` for browsers, `/nodes/{ident}`, `/console/...`) beside the
    /// API, behind the same authentication.
    pub console: bool,
    /// Serve HTTPS (TLS 1.2 and 1.3) with this certificate chain (PEM, leaf first) and key
    /// (`--tls-cert`, `--tls-key`); both are read again on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// Most headers in one request; more get 431.
    pub max_headers: usize,
    /// Seconds a client has to send a request head (and to finish a TLS handshake).
    pub header_read_timeout: u64,
    /// Seconds requests in flight get to finish at shutdown.
    pub shutdown_grace: u64,
}

impl ApiConfig {
    /// The server limits these settings give (the API's and the RPC endpoint's).
    pub fn limits(&self) -> crate::http_server::Limits {
        crate::http_server::Limits {
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            header_read_timeout: self.header_read_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        let limits = crate::http_server::Limits::default();
        ApiConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 6385)),
            public_url: None,
            console: true,
            tls_cert: None,
            tls_key: None,
            max_header_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
            header_read_timeout: limits.header_read_timeout,
            shutdown_grace: limits.shutdown_grace,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: String,
    /// A tracing filter (`info`, `ferric=debug`, ...); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "human".into(), level: "info".into() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            api: ApiConfig::default(),
            conductor: ConductorConfig::default(),
            drivers: RegistryConfig::default(),
            fake: FakeDelays::default(),
            agent: AgentDeployConfig::default(),
            iscsi: Default::default(),
            images: ImagesConfig::default(),
            log: LogConfig::default(),
            pxe: PxeSettings::default(),
            dhcp: DhcpSettings::default(),
            role: Role::All,
            database: DatabaseConfig::default(),
            rpc: RpcConfig::default(),
            audit: Default::default(),
            auth: AuthConfig::default(),
        }
    }
}

/// `$XDG_DATA_HOME/ferric`, else `~/.local/share/ferric`, else `./ferric-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("ferric");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/ferric");
    }
    PathBuf::from("ferric-data")
}

/// Configuration loading failures.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Defaults, merged with `file` (if any) and `FERRIC_*` variables (`FERRIC_API__BIND=...`).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if let Some(p) = file {
            if !p.exists() {
                return Err(ConfigError(format!("config file {} does not exist", p.display())));
            }
            f = f.merge(Toml::file(p));
        }
        f = f.merge(Env::prefixed("FERRIC_").split("__"));
        f.extract().map_err(|e| ConfigError(e.to_string()))
    }

    pub fn images_dir(&self) -> PathBuf {
        self.images.dir.clone().unwrap_or_else(|| self.data_dir.join("images"))
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("ferric.sqlite")
    }

    /// The store's URL: configured, or the embedded SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| format!("sqlite://{}", self.database_path().display()))
    }

    /// The URL agents and clients use for the API.
    pub fn public_url(&self) -> String {
        let scheme = if self.api.tls_cert.is_some() { "https" } else { "http" };
        self.api.public_url.clone().unwrap_or_else(|| format!("{scheme}://{}", self.api.bind))
    }

    /// The URL nodes download images from.
    pub fn images_public_url(&self) -> String {
        self.images.public_url.clone().unwrap_or_else(|| self.public_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_every_secret() {
        let mut c = Config::default();
        c.rpc.password = "rpc-pass-1".into();
        c.images.temp_url_key = Some("temp-key-2".into());
        c.database.url = Some("postgres://ferric:db-pass-3@db/ferric".into());
        let shown = format!("{c:?}");
        for secret in ["rpc-pass-1", "temp-key-2", "db-pass-3"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://db/ferric"), "{shown}");
    }

    #[test]
    fn noauth_is_refused_beyond_loopback_unless_insecure() {
        let mut a = AuthConfig::default();
        assert!(a.check_bind("127.0.0.1:6385".parse().unwrap()).is_ok());
        assert!(a.check_bind("[::1]:6385".parse().unwrap()).is_ok());
        let e = a.check_bind("0.0.0.0:6385".parse().unwrap()).unwrap_err().to_string();
        assert!(e.contains("--insecure-noauth"), "{e}");
        a.insecure_noauth = true;
        assert!(a.check_bind("0.0.0.0:6385".parse().unwrap()).is_ok());
        let a = AuthConfig { strategy: AuthStrategy::Token, ..Default::default() };
        assert!(a.check_bind("192.0.2.1:6385".parse().unwrap()).is_ok());
    }

    #[test]
    fn the_auth_section_reads_from_toml() {
        let dir = std::env::temp_dir().join(format!("ferric-auth-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ferric.toml");
        std::fs::write(
            &f,
            "[auth]\nstrategy = \"http_basic\"\nhtpasswd = \"/etc/h\"\nroles = { alice = \"admin\", bob = \"reader\" }\nprojects = { bob = \"p\" }\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.auth.strategy, AuthStrategy::HttpBasic);
        assert_eq!(c.auth.roles["bob"], crate::api::identity::AuthRole::Reader);
        assert_eq!(c.auth.projects["bob"], "p");
        assert_eq!(c.auth.lookup_burst, 50);
    }
}
