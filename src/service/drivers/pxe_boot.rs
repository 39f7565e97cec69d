//! The `pxe` (pxelinux over TFTP) and `ipxe` (iPXE script over HTTP) boot interfaces, with
//! Ironic's semantics. The deploy interface (`agent_base`) records the seed's steps and sets the
//! boot device through the management interface; these interfaces do the boot environment work.
//!
//! - `prepare_ramdisk`: "Update DHCP boot options" (the node's PXE-enabled ports get boot
//!   options: the DHCP server answers them), "Prepare PXE environment for deployment" (per-node
//!   pxelinux config or iPXE script, linked per MAC, kernel parameters carrying the API URL,
//!   `BOOTIF` and the node UUID), "Cache deploy and instance kernel and ramdisk" (fetched through
//!   [`ImageCache`], hard-linked into the node's directory of the TFTP root for `pxe`, of the HTTP
//!   root for `ipxe`; the instance kernel/ramdisk too while deploying a partition image).
//! - `prepare_instance`: local boot (`boot_option=local`, the default, and every whole-disk image)
//!   removes the node's DHCP options and configs; netboot of a partition image writes DHCP options
//!   and a config booting the instance kernel/ramdisk with
//!   `root=UUID=<driver_internal_info.root_uuid_or_disk_id>`. [`is_netboot`] tells which.
//! - `clean_up_ramdisk` / `clean_up_instance` remove the DHCP options, configs and image links.
//!   `clean_up_ramdisk` leaves an instance netboot in place (safe to call after
//!   `prepare_instance`), and `clean_up_instance` leaves a prepared ramdisk in place.
//!
//! Image references (`driver_info.deploy_kernel`, `instance_info.kernel`, ...) are resolved to a
//! URL and an optional checksum by an [`ImageResolver`]: [`UrlResolver`] takes http(s)/file URLs
//! itself and hands anything else (an image UUID) to [`ImageServiceResolver`] (ferric's image
//! service), which also supplies a partition image's kernel and ramdisk.

use super::{BootInterface, DriverError, Registry, Task};
use crate::images::ImageService;
use crate::network::dhcp::{BootPurpose, DhcpProvider, PortBootOptions};
use crate::pxe::MacAddr;
use crate::pxe::cache::{CacheConfig, CacheError, Checksum, ImageCache, ImageRef, redact_url};
use crate::pxe::config::{self, BootLayout, ConfigError, DeployBoot, NetBoot, Root};
use crate::pxe::dhcp::Loader;
use crate::pxe::settings::{PxeSettings, SettingsError};
use async_trait::async_trait;
use ferric_types::models::{JsonMap, Node, ProvisionState};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File names in a node's directory of a boot root (Ironic's names).
pub const DEPLOY_KERNEL: &str = "deploy_kernel";
pub const DEPLOY_RAMDISK: &str = "deploy_ramdisk";
pub const INSTANCE_KERNEL: &str = "kernel";
pub const INSTANCE_RAMDISK: &str = "ramdisk";

/// Where an image reference points: a URL the image cache can fetch (http, https, file) and the
/// digest the bytes must have, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub url: String,
    pub checksum: Option<Checksum>,
}

/// Turns an image reference (a URL, or an image service ID) into something the cache fetches.
///
/// The seam for ferric's image service (the Glance role): its implementation looks the image
/// up, mints a temporary URL and returns the image's `os_hash_value` as the checksum, and is
/// passed to [`UrlResolver::with_image_service`].
#[async_trait]
pub trait ImageResolver: Send + Sync {
    /// Cheap, synchronous check for `validate` (form of the reference, image exists): no
    /// download. Errors are `InvalidParameter`.
    fn check(&self, reference: &str) -> Result<(), DriverError>;
    /// Resolves the reference for a download (temporary URLs are minted here, per use).
    async fn resolve(&self, reference: &str) -> Result<ResolvedImage, DriverError>;
    /// The kernel and ramdisk references of a partition image (Glance's `kernel_id` and
    /// `ramdisk_id`); `None` for a whole-disk image or when the resolver cannot tell.
    fn partition_kernel_ramdisk(&self, reference: &str) -> Result<Option<(String, String)>, DriverError> {
        let _ = reference;
        Ok(None)
    }
}

/// True for references written as URLs (`scheme://...`), as opposed to image IDs. Only http,
/// https and file URLs are then accepted.
pub fn is_url(reference: &str) -> bool {
    reference.trim_start().split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// Plain http(s)/file URLs (no checksum: such images are keyed by URL in the cache); anything
/// else goes to the image service resolver, or is refused when there is none.
#[derive(Clone, Default)]
pub struct UrlResolver {
    image_service: Option<Arc<dyn ImageResolver>>,
}

impl UrlResolver {
    pub fn new() -> UrlResolver {
        UrlResolver { image_service: None }
    }

    /// URLs here, other references (image UUIDs) through `image_service`.
    pub fn with_image_service(image_service: Arc<dyn ImageResolver>) -> UrlResolver {
        UrlResolver { image_service: Some(image_service) }
    }

    fn check_url(reference: &str) -> Result<(), DriverError> {
        let bad = |why: &str| {
            DriverError::InvalidParameter(format!(
                "Image reference {:?} is not a usable URL: {why}",
                redact_url(reference)
            ))
        };
        let url = reqwest::Url::parse(reference.trim()).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "http" | "https" if url.host().is_some() => Ok(()),
            "http" | "https" => Err(bad("no host")),
            "file" => url.to_file_path().map(|_| ()).map_err(|_| bad("not an absolute local path")),
            s => Err(bad(&format!("unsupported scheme {s}"))),
        }
    }
}

#[async_trait]
impl ImageResolver for UrlResolver {
    fn check(&self, reference: &str) -> Result<(), DriverError> {
        if is_url(reference) {
            return Self::check_url(reference);
        }
        match &self.image_service {
            Some(s) => s.check(reference),
            None => Err(DriverError::InvalidParameter(format!(
                "Image reference {reference:?} is not an http(s) or file URL, and no image service is configured to resolve it."
            ))),
        }
    }

    async fn resolve(&self, reference: &str) -> Result<ResolvedImage, DriverError> {
        if is_url(reference) {
            Self::check_url(reference)?;
            return Ok(ResolvedImage { url: reference.trim().to_owned(), checksum: None });
        }
        match &self.image_service {
            Some(s) => s.resolve(reference).await,
            None => Err(DriverError::InvalidParameter(format!(
                "Image reference {reference:?} is not an http(s) or file URL, and no image service is configured to resolve it."
            ))),
        }
    }

    fn partition_kernel_ramdisk(&self, reference: &str) -> Result<Option<(String, String)>, DriverError> {
        match &self.image_service {
            Some(s) if !is_url(reference) => s.partition_kernel_ramdisk(reference),
            _ => Ok(None),
        }
    }
}

/// Image IDs of ferric's image service (the Glance role). The conductor shares the host with the
/// store, so an image resolves to its data file (`file://`, read by the cache while hashing)
/// rather than to a temporary URL through the API; the checksum is the image's `os_hash_value`
/// (sha256/sha512), else its md5 `checksum`.
pub struct ImageServiceResolver {
    images: Arc<ImageService>,
}

impl ImageServiceResolver {
    pub fn new(images: Arc<ImageService>) -> ImageServiceResolver {
        ImageServiceResolver { images }
    }

    fn image(&self, id: &str) -> Result<crate::images::Image, DriverError> {
        self.images.store.get(id).map_err(|e| match e {
            crate::images::StoreError::NotFound(_) => {
                DriverError::InvalidParameter(format!("Image {id} could not be found."))
            }
            e => DriverError::InvalidParameter(format!("Image {id}: {e}")),
        })
    }
}

#[async_trait]
impl ImageResolver for ImageServiceResolver {
    fn check(&self, reference: &str) -> Result<(), DriverError> {
        let img = self.image(reference)?;
        if img.status != crate::images::ImageStatus::Active {
            return Err(DriverError::InvalidParameter(format!("Image {reference} has no data yet (not active).")));
        }
        Ok(())
    }

    async fn resolve(&self, reference: &str) -> Result<ResolvedImage, DriverError> {
        self.check(reference)?;
        let img = self.image(reference)?;
        let path = self
            .images
            .store
            .data_path(reference)
            .map_err(|e| DriverError::InvalidParameter(format!("Image {reference} cannot be read: {e}")))?;
        let url = reqwest::Url::from_file_path(&path).map_err(|_| {
            DriverError::Failed(format!("Image {reference}: data path {} is not absolute", path.display()))
        })?;
        let checksum = match (img.os_hash_algo.as_deref(), img.os_hash_value, img.checksum) {
            (Some(algo), Some(v), _) => Some(format!("{algo}:{v}")),
            (_, _, Some(md5)) => Some(format!("md5:{md5}")),
            _ => None,
        }
        .map(|c| c.parse::<Checksum>())
        .transpose()
        .map_err(|e| DriverError::InvalidParameter(format!("Image {reference}: {e}")))?;
        Ok(ResolvedImage { url: url.to_string(), checksum })
    }

    fn partition_kernel_ramdisk(&self, reference: &str) -> Result<Option<(String, String)>, DriverError> {
        let img = self.image(reference)?;
        Ok(match (img.kernel_id, img.ramdisk_id) {
            (Some(k), Some(r)) => Some((k, r)),
            _ => None,
        })
    }
}

/// What the boot interfaces need from the conductor's host: where boot files go, the image
/// cache, image resolution, the DHCP provider, and what the ramdisk must be told.
pub struct BootEnv {
    pub layout: BootLayout,
    pub cache: Arc<ImageCache>,
    pub resolver: Arc<dyn ImageResolver>,
    pub dhcp: Arc<dyn DhcpProvider>,
    /// ferric's API as the agent reaches it (`ipa-api-url=` / `ferric-api-url=`).
    pub api_url: String,
    /// Default extra kernel parameters (a node's `kernel_append_params` replaces them).
    pub kernel_append_params: String,
}

/// Errors setting up the boot environment.
#[derive(Debug, thiserror::Error)]
pub enum BootSetupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("boot root {path}: {source}")]
    Root { path: PathBuf, source: std::io::Error },
}

impl BootEnv {
    /// Builds the boot environment from the `[pxe]` settings: creates the roots and the cache,
    /// and installs the network boot programs into the TFTP root when asked to.
    pub fn open(
        settings: &PxeSettings,
        data_dir: &Path,
        api_url: String,
        dhcp: Arc<dyn DhcpProvider>,
        resolver: Arc<dyn ImageResolver>,
    ) -> Result<BootEnv, BootSetupError> {
        let layout = settings.layout(data_dir)?;
        for root in [&layout.tftp_root, &layout.http_root] {
            std::fs::create_dir_all(root).map_err(|source| BootSetupError::Root { path: root.clone(), source })?;
        }
        if settings.install_loaders {
            let root = &layout.tftp_root;
            let installed =
                install_boot_loaders(root).map_err(|source| BootSetupError::Root { path: root.clone(), source })?;
            if !installed.is_empty() {
                tracing::info!(root = %root.display(), ?installed, "installed network boot programs");
            }
        }
        let mut cc = CacheConfig::new(settings.image_cache_dir(data_dir));
        cc.max_bytes = settings.image_cache_max_bytes;
        cc.max_image_bytes = settings.image_max_bytes;
        cc.allow_md5 = settings.allow_md5;
        let cache = Arc::new(ImageCache::open(cc)?);
        Ok(BootEnv {
            layout,
            cache,
            resolver,
            dhcp,
            api_url,
            kernel_append_params: settings.kernel_append_params.clone(),
        })
    }
}

/// Network boot programs and where Debian's syslinux/pxelinux/ipxe packages put them.
const LOADERS: &[(&str, &[&str])] = &[
    ("pxelinux.0", &["/usr/lib/PXELINUX/pxelinux.0"]),
    ("ldlinux.c32", &["/usr/lib/syslinux/modules/bios/ldlinux.c32"]),
    ("syslinux.efi", &["/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"]),
    ("ldlinux.e64", &["/usr/lib/syslinux/modules/efi64/ldlinux.e64"]),
    ("undionly.kpxe", &["/usr/lib/ipxe/undionly.kpxe"]),
    ("ipxe.efi", &["/usr/lib/ipxe/ipxe.efi", "/boot/ipxe.efi"]),
    ("snponly.efi", &["/usr/lib/ipxe/snponly.efi"]),
];

/// Copies the network boot programs found on this system into `tftp_root` when missing (copies,
/// not symlinks: the TFTP server refuses links out of its root). Returns what was installed.
pub fn install_boot_loaders(tftp_root: &Path) -> std::io::Result<Vec<&'static str>> {
    std::fs::create_dir_all(tftp_root)?;
    let mut installed = Vec::new();
    for (name, sources) in LOADERS {
        let dest = tftp_root.join(name);
        if dest.exists() {
            continue;
        }
        let Some(src) = sources.iter().map(Path::new).find(|p| p.is_file()) else { continue };
        let tmp = tftp_root.join(format!(".{name}.tmp"));
        std::fs::copy(src, &tmp)?;
        std::fs::rename(&tmp, &dest)?;
        installed.push(*name);
    }
    Ok(installed)
}

/// Registers `pxe` and `ipxe`. They work once the service's [`super::DriverEnv::boot`] is set.
pub fn register(registry: &mut Registry) {
    registry.register_boot("pxe", Arc::new(PxeBoot::pxe()));
    registry.register_boot("ipxe", Arc::new(PxeBoot::ipxe()));
}

/// `boot_option` of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootOption {
    Local,
    Netboot,
}

/// The `pxe` or `ipxe` boot interface.
pub struct PxeBoot {
    loader: Loader,
}

impl PxeBoot {
    /// pxelinux: configs and images in the TFTP root.
    pub fn pxe() -> PxeBoot {
        PxeBoot { loader: Loader::Pxelinux }
    }

    /// iPXE: scripts and images in the HTTP root.
    pub fn ipxe() -> PxeBoot {
        PxeBoot { loader: Loader::Ipxe }
    }

    fn root(&self) -> Root {
        match self.loader {
            Loader::Pxelinux => Root::Tftp,
            Loader::Ipxe => Root::Http,
        }
    }

    /// How the node's config names one of its files: a TFTP path or an HTTP URL.
    fn file_ref(&self, layout: &BootLayout, node: &str, file: &str) -> String {
        match self.loader {
            Loader::Pxelinux => layout.tftp_path(node, file),
            Loader::Ipxe => layout.http_file_url(node, file),
        }
    }

    fn write_config(&self, layout: &BootLayout, node: &str, macs: &[MacAddr], text: &str) -> Result<(), DriverError> {
        match self.loader {
            Loader::Pxelinux => layout.write_pxelinux(node, macs, text),
            Loader::Ipxe => layout.write_ipxe(node, macs, text),
        }
        .map_err(config_err)
    }

    fn port_options(task: &Task, loader: Loader, purpose: BootPurpose) -> Vec<PortBootOptions> {
        task.ports
            .iter()
            .filter(|p| p.pxe_enabled)
            .map(|p| PortBootOptions { port: p.uuid, mac: MacAddr(p.address.0), loader, purpose })
            .collect()
    }

    /// Caches `reference` and links it as `file` in the node's directory of this interface's root.
    async fn cache(&self, env: &BootEnv, node: &str, reference: &str, file: &str) -> Result<(), DriverError> {
        let img = env.resolver.resolve(reference).await?;
        let dest = env.layout.node_dir(self.root(), node).map_err(config_err)?.join(file);
        let img = ImageRef { url: img.url, checksum: img.checksum };
        link_cached(&env.cache, &img, &dest)
            .await
            .map_err(|e| DriverError::Failed(format!("Failed to cache {file} for node {node}: {e}")))
    }
}

/// Links a cached image at `dest`, copying when the cache is on another filesystem.
pub(super) async fn link_cached(cache: &ImageCache, img: &ImageRef, dest: &Path) -> Result<(), CacheError> {
    match cache.link(img, dest).await {
        Err(CacheError::Io { source, .. }) if source.raw_os_error() == Some(libc::EXDEV) => {
            let src = cache.get(img).await?;
            let tmp = dest.with_extension("part");
            let io = |source| CacheError::Io { path: dest.to_owned(), source };
            tokio::fs::copy(&src, &tmp).await.map_err(io)?;
            tokio::fs::rename(&tmp, dest).await.map_err(io)
        }
        r => r,
    }
}

fn config_err(e: ConfigError) -> DriverError {
    match e {
        ConfigError::Invalid { .. } => DriverError::InvalidParameter(e.to_string()),
        ConfigError::Io { .. } => DriverError::Failed(e.to_string()),
    }
}

fn dhcp_err(e: crate::network::dhcp::DhcpProviderError) -> DriverError {
    DriverError::Failed(format!("Failed to update DHCP boot options: {e}"))
}

fn boot_env(task: &Task) -> Result<Arc<BootEnv>, DriverError> {
    task.env.boot.clone().ok_or_else(|| {
        DriverError::Unsupported(
            "PXE boot services are not configured on this conductor (set [pxe] tftp_bind, http_bind or boot_interfaces)."
                .into(),
        )
    })
}

/// A string field of a JSON map; absent, null or empty count as missing.
pub(super) fn str_field<'a>(map: &'a JsonMap, key: &str, section: &str) -> Result<Option<&'a str>, DriverError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(DriverError::InvalidParameter(format!("{section}/{key} must be a string."))),
    }
}

/// `driver_info` deploy kernel and ramdisk references.
pub(super) fn deploy_images(node: &Node) -> Result<(String, String), DriverError> {
    let k = str_field(&node.driver_info, "deploy_kernel", "driver_info")?;
    let r = str_field(&node.driver_info, "deploy_ramdisk", "driver_info")?;
    match (k, r) {
        (Some(k), Some(r)) => Ok((k.to_owned(), r.to_owned())),
        (k, r) => {
            let missing: Vec<String> = [("deploy_kernel", k), ("deploy_ramdisk", r)]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| format!("'{n}'"))
                .collect();
            Err(DriverError::MissingParameter(format!(
                "Cannot validate PXE bootloader. Some parameters were missing in node's driver_info. Missing are: [{}]",
                missing.join(", ")
            )))
        }
    }
}

/// `boot_option` from `instance_info.boot_option`, `instance_info.capabilities.boot_option` (an
/// object or its JSON text, as Nova sets it) or `properties.capabilities` (`boot_option:netboot`);
/// `local` when unset, as in Ironic.
pub fn boot_option(node: &Node) -> Result<BootOption, DriverError> {
    let ii = &node.instance_info;
    let mut v = str_field(ii, "boot_option", "instance_info")?.map(str::to_owned);
    if v.is_none() {
        let caps = match ii.get("capabilities") {
            Some(Value::Object(m)) => Some(m.clone()),
            Some(Value::String(s)) => serde_json::from_str::<JsonMap>(s).ok(),
            _ => None,
        };
        v = caps.and_then(|c| c.get("boot_option").and_then(Value::as_str).map(str::to_owned));
    }
    if v.is_none() {
        let caps = node.properties.get("capabilities").and_then(Value::as_str).unwrap_or("");
        v = caps.split(',').find_map(|c| c.trim().strip_prefix("boot_option:").map(str::to_owned));
    }
    match v.as_deref() {
        None | Some("local") => Ok(BootOption::Local),
        Some("netboot") => Ok(BootOption::Netboot),
        Some(other) => Err(DriverError::InvalidParameter(format!(
            "Invalid boot_option {other:?} for node {}: supported are 'local' and 'netboot'.",
            node.uuid
        ))),
    }
}

/// A partition image (kernel + ramdisk + root filesystem) rather than a whole-disk image: what the
/// deploy recorded in `driver_internal_info.is_whole_disk_image`, else whether `instance_info`
/// names a kernel or ramdisk (Ironic's rule for images given by URL).
pub fn is_partition_image(node: &Node) -> bool {
    if let Some(w) = node.driver_internal_info.get("is_whole_disk_image").and_then(Value::as_bool) {
        return !w;
    }
    ["kernel", "ramdisk"]
        .iter()
        .any(|k| matches!(node.instance_info.get(*k), Some(Value::String(s)) if !s.trim().is_empty()))
}

/// Whether the deployed instance boots over the network: a partition image with
/// `boot_option=netboot`. The deploy interface sets the boot device (PXE or disk) by this, and
/// `prepare_instance` writes the matching boot environment.
pub fn is_netboot(node: &Node) -> bool {
    matches!(boot_option(node), Ok(BootOption::Netboot)) && is_partition_image(node)
}

fn kernel_args(map: &JsonMap, env: &BootEnv) -> String {
    match map.get("kernel_append_params") {
        Some(Value::String(s)) => s.clone(),
        _ => env.kernel_append_params.clone(),
    }
}

/// The instance's kernel and ramdisk: `instance_info.kernel`/`ramdisk`, else those of the image
/// service's partition image named by `image_source` (Ironic copies Glance's `kernel_id` and
/// `ramdisk_id` the same way).
fn instance_images(node: &Node, resolver: &dyn ImageResolver) -> Result<Option<(String, String)>, DriverError> {
    let k = str_field(&node.instance_info, "kernel", "instance_info")?;
    let r = str_field(&node.instance_info, "ramdisk", "instance_info")?;
    match (k, r) {
        (Some(k), Some(r)) => Ok(Some((k.to_owned(), r.to_owned()))),
        (None, None) => match str_field(&node.instance_info, "image_source", "instance_info")? {
            Some(src) if !is_url(src) => resolver.partition_kernel_ramdisk(src),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

fn missing_instance_images(node: &Node) -> DriverError {
    let src = node.instance_info.get("image_source").and_then(Value::as_str).unwrap_or("");
    DriverError::MissingParameter(format!(
        "Image {src} is missing the following properties: kernel, ramdisk (needed to netboot node {} from a partition image).",
        node.uuid
    ))
}

/// Removes `files` from the node's directories in both roots, then the directories if empty.
fn remove_node_files(layout: &BootLayout, node: &str, files: &[&str]) -> Result<(), DriverError> {
    for r in [Root::Tftp, Root::Http] {
        let dir = layout.node_dir(r, node).map_err(config_err)?;
        for f in files {
            let p = dir.join(f);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DriverError::Failed(format!("Cannot remove {}: {e}", p.display()))),
            }
        }
        // Fails (and is ignored) while the directory still holds something.
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(())
}

fn all_macs(task: &Task) -> Vec<MacAddr> {
    task.ports.iter().map(|p| MacAddr(p.address.0)).collect()
}

/// Drops a node's deploy-ramdisk DHCP options (an instance netboot's stay). Called by the
/// network interface when the node leaves the provisioning or cleaning network, so no ramdisk
/// DHCP entry outlives a deploy or cleaning even if `clean_up_ramdisk` was not called.
pub fn forget_ramdisk_dhcp(task: &Task) -> Result<(), DriverError> {
    let Some(env) = &task.env.boot else { return Ok(()) };
    let uuid = task.node.uuid;
    let current = env.dhcp.node_dhcp(uuid).map_err(dhcp_err)?;
    if current.iter().any(|o| o.purpose == BootPurpose::Ramdisk) {
        let keep: Vec<PortBootOptions> = current.into_iter().filter(|o| o.purpose != BootPurpose::Ramdisk).collect();
        env.dhcp.update_dhcp(uuid, &keep).map_err(dhcp_err)?;
    }
    Ok(())
}

#[async_trait]
impl BootInterface for PxeBoot {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        let env = boot_env(task)?;
        let node = &task.node;
        if self.loader == Loader::Ipxe && env.layout.http_url.is_empty() {
            return Err(DriverError::InvalidParameter(
                "iPXE boot is enabled but no HTTP URL or HTTP root was specified: boot interface ipxe needs an HTTP boot server (set [pxe] http_bind or http_url).".into(),
            ));
        }
        if !task.ports.iter().any(|p| p.pxe_enabled) {
            return Err(DriverError::MissingParameter(format!(
                "Node {} does not have any port associated with it.",
                node.uuid
            )));
        }
        let (k, r) = deploy_images(node)?;
        env.resolver.check(&k)?;
        env.resolver.check(&r)?;
        let Some(src) = str_field(&node.instance_info, "image_source", "instance_info")? else {
            return Err(DriverError::MissingParameter(format!(
                "Cannot validate image information for node {} because one or more parameters are missing from its instance_info and insufficent information is present to boot from a remote volume. Missing are: ['image_source']",
                node.uuid
            )));
        };
        if boot_option(node)? == BootOption::Netboot {
            let parts = instance_images(node, env.resolver.as_ref())?;
            let partition = is_partition_image(node) || parts.is_some();
            if partition {
                let (k, r) = parts.ok_or_else(|| missing_instance_images(node))?;
                env.resolver.check(&k)?;
                env.resolver.check(&r)?;
            } else if !is_url(src) {
                env.resolver.check(src)?;
            }
        }
        Ok(())
    }

    async fn prepare_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        let env = boot_env(task)?;
        let (deploy_kernel, deploy_ramdisk) = deploy_images(&task.node)?;
        let opts = Self::port_options(task, self.loader, BootPurpose::Ramdisk);
        let Some(boot_mac) = opts.first().map(|o| o.mac) else {
            return Err(DriverError::MissingParameter(format!(
                "Node {} does not have any port associated with it.",
                task.node.uuid
            )));
        };
        let uuid = task.node.uuid;
        let node = uuid.to_string();
        // Update DHCP boot options.
        env.dhcp.update_dhcp(uuid, &opts).map_err(dhcp_err)?;
        // Prepare PXE environment for deployment.
        let d = DeployBoot {
            node: node.clone(),
            boot_mac,
            api_url: env.api_url.clone(),
            kernel: self.file_ref(&env.layout, &node, DEPLOY_KERNEL),
            ramdisk: self.file_ref(&env.layout, &node, DEPLOY_RAMDISK),
            kernel_args: kernel_args(&task.node.driver_info, &env),
        };
        let text = match self.loader {
            Loader::Pxelinux => config::pxelinux_deploy(&d),
            Loader::Ipxe => config::ipxe_deploy(&d),
        }
        .map_err(config_err)?;
        let macs: Vec<MacAddr> = opts.iter().map(|o| o.mac).collect();
        self.write_config(&env.layout, &node, &macs, &text)?;
        // Cache deploy (and, while deploying a partition image, instance) kernel and ramdisk.
        self.cache(&env, &node, &deploy_kernel, DEPLOY_KERNEL).await?;
        self.cache(&env, &node, &deploy_ramdisk, DEPLOY_RAMDISK).await?;
        if task.node.provision_state == ProvisionState::Deploying
            && is_partition_image(&task.node)
            && let Some((k, r)) = instance_images(&task.node, env.resolver.as_ref())?
        {
            self.cache(&env, &node, &k, INSTANCE_KERNEL).await?;
            self.cache(&env, &node, &r, INSTANCE_RAMDISK).await?;
        }
        tracing::info!(node = %node, "deploy ramdisk boot prepared");
        Ok(())
    }

    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        // Without boot services nothing was prepared.
        let Some(env) = task.env.boot.clone() else { return Ok(()) };
        let uuid = task.node.uuid;
        let node = uuid.to_string();
        let current = env.dhcp.node_dhcp(uuid).map_err(dhcp_err)?;
        if !current.iter().any(|o| o.purpose == BootPurpose::Instance) {
            env.dhcp.clean_dhcp(uuid).map_err(dhcp_err)?;
            env.layout.remove_configs(&node, &all_macs(task)).map_err(config_err)?;
        }
        remove_node_files(&env.layout, &node, &[DEPLOY_KERNEL, DEPLOY_RAMDISK])?;
        env.cache.evict();
        tracing::info!(node = %node, "deploy ramdisk boot cleaned up");
        Ok(())
    }

    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        let env = boot_env(task)?;
        let uuid = task.node.uuid;
        let node = uuid.to_string();
        if is_netboot(&task.node) {
            let root_uuid =
                str_field(&task.node.driver_internal_info, "root_uuid_or_disk_id", "driver_internal_info")?
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        DriverError::Failed(format!(
                            "Cannot netboot node {node}: the root partition's UUID (driver_internal_info/root_uuid_or_disk_id) is unknown."
                        ))
                    })?;
            let (k, r) = instance_images(&task.node, env.resolver.as_ref())?
                .ok_or_else(|| missing_instance_images(&task.node))?;
            let opts = Self::port_options(task, self.loader, BootPurpose::Instance);
            if opts.is_empty() {
                return Err(DriverError::MissingParameter(format!(
                    "Node {node} does not have any port associated with it."
                )));
            }
            env.dhcp.update_dhcp(uuid, &opts).map_err(dhcp_err)?;
            self.cache(&env, &node, &k, INSTANCE_KERNEL).await?;
            self.cache(&env, &node, &r, INSTANCE_RAMDISK).await?;
            let n = NetBoot {
                node: node.clone(),
                kernel: self.file_ref(&env.layout, &node, INSTANCE_KERNEL),
                ramdisk: self.file_ref(&env.layout, &node, INSTANCE_RAMDISK),
                root_uuid,
                kernel_args: kernel_args(&task.node.instance_info, &env),
            };
            let text = match self.loader {
                Loader::Pxelinux => config::pxelinux_netboot(&n),
                Loader::Ipxe => config::ipxe_netboot(&n),
            }
            .map_err(config_err)?;
            let macs: Vec<MacAddr> = opts.iter().map(|o| o.mac).collect();
            self.write_config(&env.layout, &node, &macs, &text)?;
            tracing::info!(node = %node, "instance netboot prepared");
        } else {
            // Local boot: no PXE options and no configs (Ironic's clean_up_pxe_config).
            env.dhcp.clean_dhcp(uuid).map_err(dhcp_err)?;
            env.layout.remove_configs(&node, &all_macs(task)).map_err(config_err)?;
            remove_node_files(&env.layout, &node, &[INSTANCE_KERNEL, INSTANCE_RAMDISK])?;
            tracing::info!(node = %node, "instance boots from its disk");
        }
        Ok(())
    }

    async fn clean_up_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        let Some(env) = task.env.boot.clone() else { return Ok(()) };
        let uuid = task.node.uuid;
        let node = uuid.to_string();
        let current = env.dhcp.node_dhcp(uuid).map_err(dhcp_err)?;
        if !current.iter().any(|o| o.purpose == BootPurpose::Ramdisk) {
            env.dhcp.clean_dhcp(uuid).map_err(dhcp_err)?;
            env.layout.remove_configs(&node, &all_macs(task)).map_err(config_err)?;
        }
        remove_node_files(&env.layout, &node, &[INSTANCE_KERNEL, INSTANCE_RAMDISK])?;
        env.cache.evict();
        tracing::info!(node = %node, "instance boot cleaned up");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_resolver_checks() {
        let r = UrlResolver::new();
        assert!(r.check("http://192.0.2.1/k").is_ok());
        assert!(r.check("https://192.0.2.1:8443/k?temp_url_sig=x").is_ok());
        assert!(r.check("file:///srv/k").is_ok());
        assert!(matches!(r.check("ftp://192.0.2.1/k"), Err(DriverError::InvalidParameter(_))));
        assert!(matches!(r.check("file://relative"), Err(DriverError::InvalidParameter(_))));
        let e = r.check("3f1b2c4e-0b1a-4b8e-9b6a-5f8e2d9c1a77").unwrap_err();
        assert!(e.to_string().contains("no image service"), "{e}");
        // A signature never appears in an error.
        let e = r.check("http://[bad/k?temp_url_sig=secret").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn boot_options() {
        let mut n = Node::default();
        assert_eq!(boot_option(&n).unwrap(), BootOption::Local);
        n.instance_info.insert("capabilities".into(), Value::String(r#"{"boot_option": "netboot"}"#.into()));
        assert_eq!(boot_option(&n).unwrap(), BootOption::Netboot);
        n.instance_info.insert("boot_option".into(), "local".into());
        assert_eq!(boot_option(&n).unwrap(), BootOption::Local);
        n.instance_info.insert("boot_option".into(), "ramdisk".into());
        assert!(matches!(boot_option(&n), Err(DriverError::InvalidParameter(_))));
        n.instance_info.insert("boot_option".into(), Value::Bool(true));
        assert!(matches!(boot_option(&n), Err(DriverError::InvalidParameter(_))));
    }

    #[test]
    fn partition_images() {
        let mut n = Node::default();
        assert!(!is_partition_image(&n));
        n.instance_info.insert("kernel".into(), "http://192.0.2.1/vmlinuz".into());
        assert!(is_partition_image(&n));
        n.driver_internal_info.insert("is_whole_disk_image".into(), true.into());
        assert!(!is_partition_image(&n));
    }

    #[test]
    fn loaders_install_once() {
        let d = tempfile::tempdir().unwrap();
        let first = install_boot_loaders(d.path()).unwrap();
        let second = install_boot_loaders(d.path()).unwrap();
        assert!(second.is_empty());
        for name in first {
            assert!(d.path().join(name).is_file());
        }
    }
}
