//! ferric's own `pxe` and `ipxe` boot interfaces in a lab: the real [`PxeBoot`] writes DHCP
//! options into the database (which the lab's DHCP segments answer from, through
//! [`DbDhcp`]), per-node configs into the lab's TFTP and HTTP roots, and links the deploy kernel
//! and ramdisk (`file://` URLs in the lab's work directory) through the real image cache.
//!
//! Those steps touch files through tokio's blocking pool, whose threads finish in wall-clock
//! time; called straight from a paused-clock simulation their completions would interleave with
//! other nodes' work differently on every run. [`Bridged`] therefore runs each boot-interface call
//! to completion, blocking the simulation's thread, with a helper runtime's blocking pool (as
//! [`super::bridge`] does for routers): virtual time stands still and the trace is the same on
//! every run. The code that runs is ferric's, unchanged.

use super::bridge::HelperRuntime;
use async_trait::async_trait;
use ferric_service::assemble::Parts;
use ferric_service::drivers::pxe_boot::{BootEnv, PxeBoot, UrlResolver};
use ferric_service::drivers::{BootInterface, DriverError, Task};
use ferric_service::network::dhcp::DbDhcp;
use ferric_service::pxe::cache::{CacheConfig, ImageCache};
use ferric_service::pxe::config::BootLayout;
use std::path::Path;
use std::sync::Arc;

/// The deploy kernel and ramdisk every simulated node boots (contents are placeholders: the
/// simulated firmware only checks that they are served).
pub const DEPLOY_KERNEL_FILE: &str = "ferric-deploy.kernel";
pub const DEPLOY_RAMDISK_FILE: &str = "ferric-deploy.initramfs";

/// `file://` URLs of the deploy kernel and ramdisk written in `dir` by [`boot_env`].
pub fn deploy_image_urls(dir: &Path) -> (String, String) {
    let url = |f: &str| format!("file://{}", dir.join(f).display());
    (url(DEPLOY_KERNEL_FILE), url(DEPLOY_RAMDISK_FILE))
}

/// The boot environment of a lab: roots, image cache and DHCP provider, as `ferric serve` builds
/// them from its `[pxe]` settings; writes the deploy kernel and ramdisk into `workdir`.
pub fn boot_env(
    workdir: &Path,
    tftp_root: &Path,
    http_root: &Path,
    http_url: String,
    api_url: String,
    dhcp: Arc<DbDhcp>,
) -> std::io::Result<Arc<BootEnv>> {
    std::fs::write(workdir.join(DEPLOY_KERNEL_FILE), b"simulated deploy kernel\n")?;
    std::fs::write(workdir.join(DEPLOY_RAMDISK_FILE), b"simulated deploy ramdisk\n")?;
    let cache = ImageCache::open(CacheConfig::new(workdir.join("image-cache"))).map_err(std::io::Error::other)?;
    Ok(Arc::new(BootEnv {
        layout: BootLayout { tftp_root: tftp_root.to_path_buf(), http_root: http_root.to_path_buf(), http_url },
        cache: Arc::new(cache),
        resolver: Arc::new(UrlResolver::new()),
        dhcp,
        api_url,
        kernel_append_params: String::new(),
    }))
}

/// Registers ferric's `pxe` and `ipxe` boot interfaces (bridged) with `env`.
pub fn register(p: &mut Parts, env: Arc<BootEnv>) {
    // One helper runtime for both interfaces, kept for the lab's lifetime: building a runtime
    // (and its blocking pool) per call cost more than the calls themselves on large fleets.
    let rt = Arc::new(HelperRuntime::new("sim-boot"));
    p.registry.register_boot("pxe", Arc::new(Bridged { inner: Arc::new(PxeBoot::pxe()), rt: rt.clone() }));
    p.registry.register_boot("ipxe", Arc::new(Bridged { inner: Arc::new(PxeBoot::ipxe()), rt }));
    p.env.boot = Some(env);
}

/// A boot interface whose calls run to completion while the simulation waits (see the module docs).
pub struct Bridged {
    inner: Arc<dyn BootInterface>,
    rt: Arc<std::io::Result<HelperRuntime>>,
}

/// The boot-interface call a bridged call makes.
#[derive(Clone, Copy)]
enum Call {
    PrepareRamdisk,
    CleanUpRamdisk,
    PrepareInstance,
    CleanUpInstance,
}

impl Bridged {
    /// Runs `call` to completion on this thread inside the helper runtime's context (see
    /// [`HelperRuntime::block_here`]).
    fn run_here(&self, task: &mut Task, call: Call) -> Result<(), DriverError> {
        let rt = match self.rt.as_ref() {
            Ok(rt) => rt,
            Err(e) => return Err(DriverError::Failed(format!("boot interface runtime: {e}"))),
        };
        let inner = &self.inner;
        rt.block_here(async {
            match call {
                Call::PrepareRamdisk => inner.prepare_ramdisk(task).await,
                Call::CleanUpRamdisk => inner.clean_up_ramdisk(task).await,
                Call::PrepareInstance => inner.prepare_instance(task).await,
                Call::CleanUpInstance => inner.clean_up_instance(task).await,
            }
        })
    }
}

#[async_trait]
impl BootInterface for Bridged {
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        self.inner.validate(task)
    }
    async fn prepare_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        self.run_here(task, Call::PrepareRamdisk)
    }
    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        self.run_here(task, Call::CleanUpRamdisk)
    }
    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        self.run_here(task, Call::PrepareInstance)
    }
    async fn clean_up_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        self.run_here(task, Call::CleanUpInstance)
    }
}
