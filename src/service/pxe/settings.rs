//! The `[pxe]` and `[dhcp]` sections of ferric's configuration, and how they become the running
//! services' configuration. Every service is off unless its bind address is given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::BootLayout;
use super::dhcp::{DhcpBind, DhcpConfig, Loader, RaConfig};
use super::service::{PxeServiceConfig, parse_range};
use super::tftp::TftpConfig;

/// Configuration mistakes, reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Range(#[from] super::service::ServiceError),
    #[error("dhcp.range is required when DHCP is enabled (--dhcp-range FIRST,LAST)")]
    NoRange,
    #[error(
        "dhcp.server_id is required when DHCP binds {0} (the server identifier must be this host's address on the provisioning network)"
    )]
    NoServerId(SocketAddr),
    #[error("DHCP serves IPv4 only; {0} is not an IPv4 address")]
    NotIpv4(SocketAddr),
    #[error("dhcp.ra needs dhcp.interface (the provisioning interface to answer router solicitations on)")]
    RaWithoutInterface,
    #[error("invalid dhcp.ra_prefix {0:?}: expected ADDR/LEN, e.g. 2001:db8::/64")]
    RaPrefix(String),
    #[error("pxe.http_url is required when the HTTP boot server binds {0} (the URL nodes use to reach it)")]
    NoHttpUrl(SocketAddr),
}

/// `[pxe]`: TFTP and HTTP boot servers, boot file roots, the image cache and kernel parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PxeSettings {
    /// TFTP listen address (`--tftp-bind`); TFTP is off when unset.
    pub tftp_bind: Option<SocketAddr>,
    /// TFTP root (`--tftp-root`), default `DATA_DIR/tftp`.
    pub tftp_root: Option<PathBuf>,
    /// Concurrent TFTP transfers; more get a "server busy" error.
    pub tftp_max_transfers: usize,
    /// HTTP boot listen address (`--http-bind`); off when unset.
    pub http_bind: Option<SocketAddr>,
    /// HTTP boot root (`--http-root`), default `DATA_DIR/httpboot`.
    pub http_root: Option<PathBuf>,
    /// URL nodes use for the HTTP root; default `http://<http_bind>` (required when binding a
    /// wildcard address).
    pub http_url: Option<String>,
    /// The HTTP boot server serves HTTPS (TLS 1.2/1.3) with this certificate chain and key
    /// (PEM), reloaded on SIGHUP; its default URL is then `https://`. Nodes' firmware or iPXE
    /// must trust the issuer.
    pub http_tls_cert: Option<PathBuf>,
    pub http_tls_key: Option<PathBuf>,
    /// Kept for old configuration files: `ferric serve` now registers the `pxe` and `ipxe` boot
    /// interfaces whether or not TFTP/HTTP run in this process (as Ironic does), and a node whose
    /// boot needs a server nobody configured fails validation instead.
    pub boot_interfaces: bool,
    /// Image cache for deploy and instance kernels/ramdisks, default `DATA_DIR/image-cache`. Must be
    /// on the roots' filesystem for hard links (ferric copies otherwise).
    pub image_cache_dir: Option<PathBuf>,
    /// Size the cache is kept under by evicting unused images.
    pub image_cache_max_bytes: u64,
    /// Largest single kernel/ramdisk accepted.
    pub image_max_bytes: u64,
    /// Accept md5 image checksums (weak; off as in Ironic).
    pub allow_md5: bool,
    /// Kernel parameters added to every deploy ramdisk and netboot (Ironic's
    /// `[pxe]kernel_append_params`), e.g. `console=ttyS0`; a node's
    /// `driver_info.kernel_append_params` replaces it.
    pub kernel_append_params: String,
    /// Copy pxelinux.0, ldlinux.c32, undionly.kpxe, ipxe.efi and snponly.efi from the system's
    /// syslinux/ipxe packages into the TFTP root at start-up when missing.
    pub install_loaders: bool,
}

impl Default for PxeSettings {
    fn default() -> Self {
        PxeSettings {
            tftp_bind: None,
            tftp_root: None,
            tftp_max_transfers: 64,
            http_bind: None,
            http_root: None,
            http_url: None,
            http_tls_cert: None,
            http_tls_key: None,
            boot_interfaces: false,
            image_cache_dir: None,
            image_cache_max_bytes: 20 << 30,
            image_max_bytes: 16 << 30,
            allow_md5: false,
            kernel_append_params: String::new(),
            install_loaders: true,
        }
    }
}

/// `[dhcp]`: the provisioning network's DHCP server (and IPv6 router advertisements).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DhcpSettings {
    /// Listen address (`--dhcp-bind`, `0.0.0.0:67` in production); DHCP is off when unset.
    pub bind: Option<SocketAddr>,
    /// Dynamic range `FIRST,LAST` (`--dhcp-range`).
    pub range: Option<String>,
    /// Provisioning interface: DHCP binds to it (SO_BINDTODEVICE), RA answers on it.
    pub interface: Option<String>,
    /// Server identifier (this host on the provisioning network); defaults to the bind address
    /// unless that is a wildcard.
    pub server_id: Option<Ipv4Addr>,
    pub netmask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds.
    pub lease_time: u64,
    /// TFTP server given as next-server; default the TFTP bind address, else the server id.
    pub next_server: Option<Ipv4Addr>,
    /// Loader for served ports whose boot interface set none.
    pub default_loader: Loader,
    /// Answer MACs that are not enrolled PXE ports (inspection/discovery).
    pub discovery: bool,
    /// Reply to the request's source address instead of broadcasting; default on for a loopback
    /// bind (tests), off otherwise.
    pub reply_to_source: Option<bool>,
    /// Answer IPv6 router solicitations on `interface` (spares iPXE its IPv6 wait).
    pub ra: bool,
    /// On-link prefix to advertise, e.g. `2001:db8::/64`.
    pub ra_prefix: Option<String>,
}

impl Default for DhcpSettings {
    fn default() -> Self {
        DhcpSettings {
            bind: None,
            range: None,
            interface: None,
            server_id: None,
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            router: None,
            dns: Vec::new(),
            lease_time: 3600,
            next_server: None,
            default_loader: Loader::Ipxe,
            discovery: false,
            reply_to_source: None,
            ra: false,
            ra_prefix: None,
        }
    }
}

impl PxeSettings {
    pub fn tftp_root(&self, data_dir: &Path) -> PathBuf {
        self.tftp_root.clone().unwrap_or_else(|| data_dir.join("tftp"))
    }

    pub fn http_root(&self, data_dir: &Path) -> PathBuf {
        self.http_root.clone().unwrap_or_else(|| data_dir.join("httpboot"))
    }

    pub fn image_cache_dir(&self, data_dir: &Path) -> PathBuf {
        self.image_cache_dir.clone().unwrap_or_else(|| data_dir.join("image-cache"))
    }

    /// Whether the boot interfaces are offered by this conductor.
    pub fn boot_enabled(&self) -> bool {
        self.boot_interfaces || self.tftp_bind.is_some() || self.http_bind.is_some()
    }

    /// The HTTP root's URL, if one is known (empty when neither given nor derivable).
    pub fn http_url(&self) -> Result<String, SettingsError> {
        if let Some(u) = &self.http_url {
            return Ok(u.trim_end_matches('/').to_owned());
        }
        match self.http_bind {
            Some(a) if a.ip().is_unspecified() => Err(SettingsError::NoHttpUrl(a)),
            Some(a) => {
                let scheme = if self.http_tls_cert.is_some() { "https" } else { "http" };
                Ok(format!("{scheme}://{a}"))
            }
            None => Ok(String::new()),
        }
    }

    /// Where per-node boot files go and how nodes reach the HTTP root.
    pub fn layout(&self, data_dir: &Path) -> Result<BootLayout, SettingsError> {
        Ok(BootLayout {
            tftp_root: self.tftp_root(data_dir),
            http_root: self.http_root(data_dir),
            http_url: self.http_url()?,
        })
    }

    /// The services to run, from the `[pxe]` and `[dhcp]` sections.
    pub fn service_config(&self, dhcp: &DhcpSettings, data_dir: &Path) -> Result<PxeServiceConfig, SettingsError> {
        let layout = self.layout(data_dir)?;
        let tftp = self.tftp_bind.map(|b| {
            let mut t = TftpConfig::new(b, layout.tftp_root.clone());
            t.max_transfers = self.tftp_max_transfers.max(1);
            t
        });
        let http = self.http_bind.map(|b| (b, layout.http_root.clone()));
        let dhcp_cfg = match dhcp.bind {
            None => None,
            Some(bind) => {
                let ip = match bind.ip() {
                    IpAddr::V4(ip) => ip,
                    IpAddr::V6(_) => return Err(SettingsError::NotIpv4(bind)),
                };
                let range = parse_range(dhcp.range.as_deref().ok_or(SettingsError::NoRange)?)?;
                let server_id = match dhcp.server_id {
                    Some(s) => s,
                    None if ip.is_unspecified() => return Err(SettingsError::NoServerId(bind)),
                    None => ip,
                };
                let tftp_ip = match self.tftp_bind.map(|a| a.ip()) {
                    Some(IpAddr::V4(t)) if !t.is_unspecified() => Some(t),
                    _ => None,
                };
                let mut c = DhcpConfig::new(server_id, range, layout.ipxe_script_url_template());
                c.netmask = dhcp.netmask;
                c.lease_time = Duration::from_secs(dhcp.lease_time.max(60));
                c.router = dhcp.router;
                c.dns = dhcp.dns.clone();
                c.next_server = dhcp.next_server.or(tftp_ip).unwrap_or(server_id);
                c.loader = dhcp.default_loader;
                c.discovery = dhcp.discovery;
                let mut b = DhcpBind::new(bind);
                b.interface = dhcp.interface.clone();
                b.reply_to_source = dhcp.reply_to_source.unwrap_or(ip.is_loopback());
                Some((b, c))
            }
        };
        let ra = if dhcp.ra {
            let ifname = dhcp.interface.clone().ok_or(SettingsError::RaWithoutInterface)?;
            let mut r = RaConfig::new(ifname);
            r.prefix = dhcp.ra_prefix.as_deref().map(parse_prefix).transpose()?;
            Some(r)
        } else {
            None
        };
        Ok(PxeServiceConfig {
            tftp,
            http,
            http_tls: None,
            dhcp: dhcp_cfg,
            ra,
            clock: ferric_types::clock::Clock::system(),
        })
    }
}

fn parse_prefix(s: &str) -> Result<(Ipv6Addr, u8), SettingsError> {
    let bad = || SettingsError::RaPrefix(s.to_owned());
    let (a, l) = s.split_once('/').ok_or_else(bad)?;
    let a: Ipv6Addr = a.trim().parse().map_err(|_| bad())?;
    let l: u8 = l.trim().parse().map_err(|_| bad())?;
    if l > 128 {
        return Err(bad());
    }
    Ok((a, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_off_by_default() {
        let p = PxeSettings::default();
        let c = p.service_config(&DhcpSettings::default(), Path::new("/d")).unwrap();
        assert!(c.tftp.is_none() && c.http.is_none() && c.dhcp.is_none() && c.ra.is_none());
        assert!(!p.boot_enabled());
    }

    #[test]
    fn derived_values() {
        let p = PxeSettings {
            tftp_bind: Some("127.0.0.1:6969".parse().unwrap()),
            http_bind: Some("127.0.0.1:8080".parse().unwrap()),
            ..Default::default()
        };
        let d = DhcpSettings {
            bind: Some("127.0.0.1:6767".parse().unwrap()),
            range: Some("192.0.2.100,192.0.2.199".into()),
            ..Default::default()
        };
        let c = p.service_config(&d, Path::new("/d")).unwrap();
        assert_eq!(c.tftp.unwrap().root, PathBuf::from("/d/tftp"));
        assert_eq!(c.http.unwrap().1, PathBuf::from("/d/httpboot"));
        let (b, dc) = c.dhcp.unwrap();
        assert!(b.reply_to_source);
        assert_eq!(dc.server_id, Ipv4Addr::LOCALHOST);
        assert_eq!(dc.next_server, Ipv4Addr::LOCALHOST);
        assert_eq!(dc.ipxe_script_url, "http://127.0.0.1:8080/pxelinux.cfg/{mac}");
    }

    #[test]
    fn mistakes_are_reported() {
        let p = PxeSettings { http_bind: Some("0.0.0.0:8080".parse().unwrap()), ..Default::default() };
        assert!(matches!(p.http_url(), Err(SettingsError::NoHttpUrl(_))));
        let p = PxeSettings::default();
        let mut d = DhcpSettings { bind: Some("0.0.0.0:67".parse().unwrap()), ..Default::default() };
        assert!(matches!(p.service_config(&d, Path::new("/d")), Err(SettingsError::NoRange)));
        d.range = Some("192.0.2.10,192.0.2.20".into());
        assert!(matches!(p.service_config(&d, Path::new("/d")), Err(SettingsError::NoServerId(_))));
        d.server_id = Some(Ipv4Addr::new(192, 0, 2, 1));
        d.ra = true;
        assert!(matches!(p.service_config(&d, Path::new("/d")), Err(SettingsError::RaWithoutInterface)));
        d.interface = Some("eth1".into());
        d.ra_prefix = Some("2001:db8::/129".into());
        assert!(matches!(p.service_config(&d, Path::new("/d")), Err(SettingsError::RaPrefix(_))));
        d.ra_prefix = Some("2001:db8::/64".into());
        let c = p.service_config(&d, Path::new("/d")).unwrap();
        assert_eq!(c.ra.unwrap().prefix, Some(("2001:db8::".parse().unwrap(), 64)));
        d.range = Some("192.0.2.30,192.0.2.20".into());
        assert!(matches!(p.service_config(&d, Path::new("/d")), Err(SettingsError::Range(_))));
    }
}
