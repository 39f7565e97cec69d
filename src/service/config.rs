//! Configuration: defaults, then a TOML file, then `FERRIC_*` environment variables, then flags.

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
}

/// The image service (the Glance role) and its HTTP store (the Swift role).
#[derive(Debug, Clone, Serialize, Deserialize)]
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

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig { dir: None, temp_url_key: None, max_image_size: 64 << 30, public_url: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiConfig {
    pub bind: SocketAddr,
    /// Base URL clients and agents use to reach the API (links, agent kernel parameters).
    pub public_url: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { bind: SocketAddr::from(([127, 0, 0, 1], 6385)), public_url: None }
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

    /// The URL agents and clients use for the API.
    pub fn public_url(&self) -> String {
        self.api.public_url.clone().unwrap_or_else(|| format!("http://{}", self.api.bind))
    }

    /// The URL nodes download images from.
    pub fn images_public_url(&self) -> String {
        self.images.public_url.clone().unwrap_or_else(|| self.public_url())
    }
}
