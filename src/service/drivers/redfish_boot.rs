//! The `redfish-virtual-media` boot interface (Ironic's name): the deploy ramdisk boots from an
//! ISO the BMC mounts as a virtual CD, so no DHCP or TFTP is needed on the provisioning network.
//!
//! - `prepare_ramdisk` builds the deploy ISO (`crate::pxe::iso`: deploy kernel and ramdisk, and
//!   kernel parameters naming ferric's API, the boot MAC, `boot_method=vmedia` and, when the
//!   node's `network_data` gives one, a static address), or takes `driver_info.redfish_deploy_iso`;
//!   serves it from ferric's HTTP boot root (`<http_url>/redfish/boot-<node>.iso`); inserts it in
//!   a VirtualMedia slot of the System (else of its managers) that takes CDs (then DVDs, then USB
//!   sticks), ejecting what was there; and sets the next boot to the CD.
//! - `clean_up_ramdisk` ejects it and removes the ISO.
//! - `prepare_instance` / `clean_up_instance`: the instance boots from its disk.
//!
//! Also the `redfish-https` boot interface ([`RedfishHttpsBoot`]): the same ISO, booted by the
//! machine's UEFI HTTP boot from the System's `HttpBootUri`.

use super::pxe_boot::{BootEnv, deploy_images, link_cached, str_field};
use super::redfish::{NodeBmc, redfish_err};
use super::{BootInterface, DriverError, Task};
use crate::pxe::cache::ImageRef;
use crate::redfish::RedfishPool;
use crate::redfish::model::{ComputerSystem, Manager, VirtualMedia};
use async_trait::async_trait;
use ferric_types::models::{BootDevice, JsonMap};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The folder of the HTTP boot root holding the ISOs.
pub const ISO_DIR: &str = "redfish";

const VMEDIA: &str = "redfish-virtual-media";
const FROM_VMEDIA: &str = "from virtual media";

/// The virtual media boot interface.
pub struct RedfishVirtualMedia {
    pool: Arc<RedfishPool>,
}

impl RedfishVirtualMedia {
    pub fn new(pool: Arc<RedfishPool>) -> RedfishVirtualMedia {
        RedfishVirtualMedia { pool }
    }
}

/// What the deploy boots: an ISO given as is, or one built from a kernel and ramdisk.
enum DeployMedia {
    Iso(String),
    KernelRamdisk(String, String),
}

/// `how` ends the message for a node with neither: "from virtual media", say.
fn deploy_media(task: &Task, how: &str) -> Result<DeployMedia, DriverError> {
    if let Some(iso) = str_field(&task.node.driver_info, "redfish_deploy_iso", "driver_info")? {
        return Ok(DeployMedia::Iso(iso.to_owned()));
    }
    match deploy_images(&task.node) {
        Ok((k, r)) => Ok(DeployMedia::KernelRamdisk(k, r)),
        Err(_) => Err(DriverError::MissingParameter(format!(
            "Node {} needs driver_info/deploy_kernel and driver_info/deploy_ramdisk, or driver_info/redfish_deploy_iso, to boot the deploy ramdisk {how}.",
            task.node.uuid
        ))),
    }
}

/// The boot environment, with an HTTP boot server the BMC (or the machine) can fetch the ISO
/// from; `iface` names the boot interface in the message.
fn http_env(task: &Task, iface: &str) -> Result<Arc<BootEnv>, DriverError> {
    let env = task.env.boot.clone().filter(|e| !e.layout.http_url.is_empty());
    env.ok_or_else(|| {
        DriverError::InvalidParameter(format!(
            "boot interface {iface} needs an HTTP boot server: set [pxe] http_bind or http_url"
        ))
    })
}

/// What both interfaces validate: the BMC's driver_info, an HTTP boot server, and deploy media
/// the image service knows.
fn validate_media(task: &Task, iface: &str, how: &str) -> Result<(), DriverError> {
    super::redfish::parse_driver_info(task)?;
    let env = http_env(task, iface)?;
    match deploy_media(task, how)? {
        DeployMedia::Iso(iso) => env.resolver.check(&iso),
        DeployMedia::KernelRamdisk(k, r) => {
            env.resolver.check(&k)?;
            env.resolver.check(&r)
        }
    }
}

/// Removes the node's ISO from the HTTP boot root (gone already is fine).
fn remove_iso(task: &Task) -> Result<(), DriverError> {
    if let Some(env) = task.env.boot.clone() {
        match std::fs::remove_file(iso_path(&env, task)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DriverError::Failed(format!("Cannot remove the deploy ISO: {e}"))),
        }
    }
    Ok(())
}

fn iso_name(task: &Task) -> String {
    format!("boot-{}.iso", task.node.uuid)
}

fn iso_path(env: &BootEnv, task: &Task) -> PathBuf {
    env.layout.http_root.join(ISO_DIR).join(iso_name(task))
}

fn iso_url(env: &BootEnv, task: &Task) -> String {
    format!("{}/{ISO_DIR}/{}", env.layout.http_url.trim_end_matches('/'), iso_name(task))
}

/// `ip=<addr>::<gateway>:<netmask>::<iface>:off` from the node's first static IPv4 network of
/// its `network_data` (Ironic's network_data JSON: links, networks, services).
pub fn static_ip_param(network_data: &JsonMap) -> Option<String> {
    let networks = network_data.get("networks")?.as_array()?;
    let net = networks.iter().find(|n| {
        n.get("type").and_then(Value::as_str) == Some("ipv4") && n.get("ip_address").and_then(Value::as_str).is_some()
    })?;
    let addr = net.get("ip_address")?.as_str()?;
    let netmask = net.get("netmask").and_then(Value::as_str).unwrap_or("");
    let routes = net.get("routes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let default = routes.iter().find(|r| r.get("network").and_then(Value::as_str) == Some("0.0.0.0"));
    let gateway =
        default.or_else(|| routes.first()).and_then(|r| r.get("gateway")).and_then(Value::as_str).unwrap_or("");
    let link = net.get("link").and_then(Value::as_str);
    let iface = network_data
        .get("links")
        .and_then(Value::as_array)
        .and_then(|ls| ls.iter().find(|l| l.get("id").and_then(Value::as_str) == link))
        .and_then(|l| l.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(format!("ip={addr}::{gateway}:{netmask}::{iface}:off"))
}

/// The deploy kernel's parameters.
pub fn kernel_params(task: &Task, env: &BootEnv) -> Result<String, DriverError> {
    let Some(port) = task.ports.iter().find(|p| p.pxe_enabled).or_else(|| task.ports.first()) else {
        return Err(DriverError::MissingParameter(format!(
            "Node {} does not have any port associated with it.",
            task.node.uuid
        )));
    };
    let mac = port.address.to_string().replace(':', "-").to_ascii_lowercase();
    let mut p = vec![format!("ipa-api-url={}", env.api_url), format!("BOOTIF=01-{mac}"), "boot_method=vmedia".into()];
    if let Some(ip) = static_ip_param(&task.node.network_data) {
        p.push(ip);
    }
    if !env.kernel_append_params.trim().is_empty() {
        p.push(env.kernel_append_params.trim().to_owned());
    }
    if let Some(extra) = str_field(&task.node.driver_info, "kernel_append_params", "driver_info")? {
        p.push(extra.trim().to_owned());
    }
    Ok(p.join(" "))
}

/// Runs blocking file work: in place on a multi-threaded runtime (other tasks move to other
/// workers), inline on a current-thread one. Not `spawn_blocking`: a simulation's single thread
/// would interleave other nodes' work with a thread pool's wall-clock timing, and one seed would
/// no longer give one trace.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Builds the ISO from the cached kernel and ramdisk and writes it to `dest` (via a temporary
/// file and a rename, so the BMC never fetches half an image).
fn write_iso(kernel: &Path, ramdisk: &Path, params: &str, dest: &Path) -> Result<(), DriverError> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| DriverError::Failed(format!("Cannot read {}: {e}", p.display())));
    let iso = crate::pxe::iso::deploy_iso(read(kernel)?, read(ramdisk)?, params)
        .map_err(|e| DriverError::Failed(format!("Cannot build the deploy ISO: {e}")))?;
    let tmp = dest.with_extension("part");
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| DriverError::Failed(format!("Cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(&tmp, iso)
        .and_then(|_| std::fs::rename(&tmp, dest))
        .map_err(|e| DriverError::Failed(format!("Cannot write {}: {e}", dest.display())))
}

/// The ISO's URL for the BMC: built and written into the HTTP root, or `redfish_deploy_iso` (an
/// http(s) URL as is; an image ID cached and linked into the HTTP root). `how` as for
/// [`deploy_media`].
async fn publish_iso(task: &Task, env: &BootEnv, how: &str) -> Result<String, DriverError> {
    let dest = iso_path(env, task);
    let fetch = |reference: String| async move {
        let img = env.resolver.resolve(&reference).await?;
        let img = ImageRef { url: img.url, checksum: img.checksum };
        env.cache.get(&img).await.map_err(|e| {
            DriverError::Failed(format!("Failed to fetch {}: {e}", crate::pxe::cache::redact_url(&reference)))
        })
    };
    match deploy_media(task, how)? {
        DeployMedia::Iso(iso) if iso.starts_with("http://") || iso.starts_with("https://") => Ok(iso),
        DeployMedia::Iso(iso) => {
            let img = env.resolver.resolve(&iso).await?;
            let img = ImageRef { url: img.url, checksum: img.checksum };
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DriverError::Failed(format!("Cannot create {}: {e}", dir.display())))?;
            }
            link_cached(&env.cache, &img, &dest)
                .await
                .map_err(|e| DriverError::Failed(format!("Failed to cache the deploy ISO: {e}")))?;
            Ok(iso_url(env, task))
        }
        DeployMedia::KernelRamdisk(k, r) => {
            let params = kernel_params(task, env)?;
            let (kernel, ramdisk) = (fetch(k).await?, fetch(r).await?);
            blocking(|| write_iso(&kernel, &ramdisk, &params, &dest))?;
            Ok(iso_url(env, task))
        }
    }
}

/// The VirtualMedia slots of the System, else of the managers that manage it.
async fn media_slots(bmc: &NodeBmc) -> Result<Vec<VirtualMedia>, DriverError> {
    let sys: ComputerSystem = bmc.system().await?;
    let mut collections = Vec::new();
    if let Some(v) = sys.virtual_media {
        collections.push(v.odata_id);
    } else {
        for m in &sys.links.managed_by {
            let mgr: Manager = bmc.client.get_as(&m.odata_id).await.map_err(redfish_err)?;
            if let Some(v) = mgr.virtual_media {
                collections.push(v.odata_id);
            }
        }
    }
    let mut slots = Vec::new();
    for c in collections {
        for m in bmc.client.members(&c).await.map_err(redfish_err)? {
            let mut vm: VirtualMedia = bmc.client.get_as(&m).await.map_err(redfish_err)?;
            if vm.odata_id.is_empty() {
                vm.odata_id = m;
            }
            slots.push(vm);
        }
    }
    Ok(slots)
}

/// A slot taking CDs, else DVDs, else USB sticks.
fn pick_slot(slots: &[VirtualMedia]) -> Option<&VirtualMedia> {
    ["CD", "DVD", "USBStick"]
        .iter()
        .find_map(|t| slots.iter().find(|s| s.media_types.iter().any(|m| m.eq_ignore_ascii_case(t))))
}

async fn eject(bmc: &NodeBmc, slot: &VirtualMedia) -> Result<(), DriverError> {
    match slot.actions.eject.as_ref().filter(|a| !a.target.is_empty()) {
        Some(a) => bmc.client.post(&a.target, &json!({})).await.map(|_| ()),
        None => bmc.client.patch(&slot.odata_id, &json!({ "Image": null, "Inserted": false })).await,
    }
    .map_err(redfish_err)
}

async fn insert(bmc: &NodeBmc, slot: &VirtualMedia, url: &str) -> Result<(), DriverError> {
    let body = json!({ "Image": url, "Inserted": true, "WriteProtected": true });
    match slot.actions.insert.as_ref().filter(|a| !a.target.is_empty()) {
        Some(a) => bmc.client.post(&a.target, &body).await.map(|_| ()),
        None => bmc.client.patch(&slot.odata_id, &body).await,
    }
    .map_err(redfish_err)
}

fn inserted(slot: &VirtualMedia) -> bool {
    slot.inserted.unwrap_or(false) || slot.image.as_deref().is_some_and(|i| !i.is_empty())
}

impl RedfishVirtualMedia {
    /// Ejects whatever is in the node's CD/DVD/USB slots (the deploy ISO, after a deploy).
    async fn eject_all(&self, task: &Task) -> Result<(), DriverError> {
        let bmc = NodeBmc::open(&self.pool, task).await?;
        for slot in media_slots(&bmc).await?.iter().filter(|s| inserted(s)) {
            eject(&bmc, slot).await?;
        }
        Ok(())
    }
}

/// What a virtual media deploy's sequence diagram says in place of the guide's PXE messages.
pub const PREPARE_VMEDIA_DEPLOY: &str = "Build deploy ISO, insert it as virtual media";
pub const SET_VMEDIA_BOOT: &str = "Set boot device to virtual CD (once) through the BMC";
pub const PREPARE_VMEDIA_INSTANCE: &str = "Prepare local boot for instance image";

#[async_trait]
impl BootInterface for RedfishVirtualMedia {
    fn says(&self, label: &'static str) -> Option<&'static str> {
        use ferric_types::trace::seed;
        match label {
            // No DHCP boot options: the ramdisk comes from the CD and its address from the ISO.
            seed::UPDATE_DHCP => None,
            seed::PREPARE_PXE_DEPLOY => Some(PREPARE_VMEDIA_DEPLOY),
            seed::SET_PXE_BOOT => Some(SET_VMEDIA_BOOT),
            seed::PREPARE_PXE_INSTANCE | seed::PREPARE_PXE_INSTANCE_IF_NEEDED => Some(PREPARE_VMEDIA_INSTANCE),
            other => Some(other),
        }
    }

    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        validate_media(task, VMEDIA, FROM_VMEDIA)
    }

    fn ramdisk_boot_device(&self) -> BootDevice {
        BootDevice::Cdrom
    }

    async fn prepare_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        let env = http_env(task, VMEDIA)?;
        let url = publish_iso(task, &env, FROM_VMEDIA).await?;
        let bmc = NodeBmc::open(&self.pool, task).await?;
        let slots = media_slots(&bmc).await?;
        let Some(slot) = pick_slot(&slots) else {
            return Err(DriverError::Failed(format!(
                "Redfish System {} has no virtual media slot for a CD, DVD or USB stick.",
                bmc.system
            )));
        };
        if inserted(slot) {
            eject(&bmc, slot).await?;
        }
        insert(&bmc, slot, &url).await?;
        bmc.set_boot("Cd", false, None).await?;
        tracing::info!(node = %task.node.uuid, slot = %slot.odata_id, "deploy ISO inserted as virtual media");
        Ok(())
    }

    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        self.eject_all(task).await?;
        remove_iso(task)
    }

    /// The instance boots from its disk (the conductor sets the boot device).
    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        let _ = task;
        Ok(())
    }

    async fn clean_up_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        let _ = task;
        Ok(())
    }
}

const HTTPS: &str = "redfish-https";
const BY_HTTP_BOOT: &str = "by UEFI HTTP boot";

/// What a UEFI HTTP boot deploy's sequence diagram says in place of the guide's PXE messages
/// (the instance's is [`PREPARE_VMEDIA_INSTANCE`]).
pub const PREPARE_HTTPS_DEPLOY: &str = "Build deploy ISO, serve it for UEFI HTTP boot";
pub const SET_HTTPS_BOOT: &str = "Set boot device to UEFI HTTP boot of the deploy ISO (once) through the BMC";

/// The `redfish-https` boot interface (Ironic's name): the machine's UEFI firmware fetches the
/// deploy ISO itself, over HTTP, from the URL the BMC holds in the System's `Boot/HttpBootUri`;
/// no virtual media slot, no DHCP boot options, no TFTP. Only where the BMC offers it: `UefiHttp`
/// among the System's allowed override targets, and an `HttpBootUri` property.
///
/// - `prepare_ramdisk` checks that, builds and serves the same deploy ISO as
///   `redfish-virtual-media` (same code, same URL), and PATCHes the System's `Boot`: target
///   `UefiHttp`, mode `UEFI`, `Once`, `HttpBootUri` the ISO's URL.
/// - The conductor's "boot ramdisk once" step then asks the management interface for
///   [`BootDevice::UefiHttp`], which the `redfish` management maps to `UefiHttp` without naming
///   `HttpBootUri`: the BMC keeps the URI. (A boot device of its own rather than "already set,
///   skip the step": the step, its message and the BMC's view of the override stay those of
///   every boot interface, and `GET .../management/boot_device` reads back `uefihttp`.)
/// - `clean_up_ramdisk` clears `HttpBootUri`, disables the override if it is still the UEFI
///   HTTP boot (not the instance's disk boot, set before it), and removes the ISO.
///
/// The ISO holds only an isolinux (BIOS, El Torito) boot record: the simulated machine boots it
/// as isolinux would, but a real UEFI machine needs an EFI boot image in it (an El Torito EFI
/// entry with `\EFI\BOOT\BOOTX64.EFI`, or a UKI served as is), which ferric does not build yet.
pub struct RedfishHttpsBoot {
    pool: Arc<RedfishPool>,
}

impl RedfishHttpsBoot {
    pub fn new(pool: Arc<RedfishPool>) -> RedfishHttpsBoot {
        RedfishHttpsBoot { pool }
    }
}

/// Whether the System at `path` offers UEFI HTTP boot: `UefiHttp` among its
/// `BootSourceOverrideTarget@Redfish.AllowableValues` (a BMC that lists no allowed values is
/// taken at its `HttpBootUri` property, as sushy does), and an `HttpBootUri` property.
pub fn check_http_boot(sys: &ComputerSystem, path: &str) -> Result<(), DriverError> {
    let boot = &sys.boot;
    if let Some(allowed) = &boot.allowed_targets
        && !allowed.iter().any(|t| t == "UefiHttp")
    {
        return Err(DriverError::InvalidParameter(format!(
            "Redfish System {path} does not offer UEFI HTTP boot: UefiHttp is not among its BootSourceOverrideTarget@Redfish.AllowableValues ({}). Use the redfish-virtual-media or ipxe boot interface.",
            allowed.join(", ")
        )));
    }
    if boot.http_boot_uri.is_none() {
        return Err(DriverError::InvalidParameter(format!(
            "Redfish System {path} does not offer UEFI HTTP boot: it has no Boot/HttpBootUri property. Use the redfish-virtual-media or ipxe boot interface."
        )));
    }
    Ok(())
}

/// The System `Boot` PATCH that boots `url` once by UEFI HTTP boot.
pub fn http_boot_patch(url: &str) -> Value {
    json!({
        "BootSourceOverrideTarget": "UefiHttp",
        "BootSourceOverrideMode": "UEFI",
        "BootSourceOverrideEnabled": "Once",
        "HttpBootUri": url,
    })
}

/// The System `Boot` PATCH that undoes [`http_boot_patch`] (`None`: nothing to undo): the URI
/// cleared, the override disabled if it is still the UEFI HTTP boot.
pub fn http_boot_clear_patch(boot: &crate::redfish::model::Boot) -> Option<Value> {
    let mut patch = serde_json::Map::new();
    let enabled = boot.boot_source_override_enabled.as_deref().unwrap_or("Disabled");
    if boot.boot_source_override_target.as_deref() == Some("UefiHttp") && enabled != "Disabled" {
        patch.insert("BootSourceOverrideEnabled".into(), json!("Disabled"));
    }
    if matches!(&boot.http_boot_uri, Some(Some(u)) if !u.is_empty()) {
        patch.insert("HttpBootUri".into(), Value::Null);
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

#[async_trait]
impl BootInterface for RedfishHttpsBoot {
    fn says(&self, label: &'static str) -> Option<&'static str> {
        use ferric_types::trace::seed;
        match label {
            // No DHCP boot options: the firmware gets the ISO's URL from the BMC.
            seed::UPDATE_DHCP => None,
            seed::PREPARE_PXE_DEPLOY => Some(PREPARE_HTTPS_DEPLOY),
            seed::SET_PXE_BOOT => Some(SET_HTTPS_BOOT),
            seed::PREPARE_PXE_INSTANCE | seed::PREPARE_PXE_INSTANCE_IF_NEEDED => Some(PREPARE_VMEDIA_INSTANCE),
            other => Some(other),
        }
    }

    /// What can be checked without asking the BMC; whether it offers UEFI HTTP boot is checked
    /// by `prepare_ramdisk`, before anything is built.
    fn validate(&self, task: &Task) -> Result<(), DriverError> {
        validate_media(task, HTTPS, BY_HTTP_BOOT)
    }

    fn ramdisk_boot_device(&self) -> BootDevice {
        BootDevice::UefiHttp
    }

    async fn prepare_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        let env = http_env(task, HTTPS)?;
        let bmc = NodeBmc::open(&self.pool, task).await?;
        check_http_boot(&bmc.system().await?, &bmc.system)?;
        let url = publish_iso(task, &env, BY_HTTP_BOOT).await?;
        bmc.patch_boot(http_boot_patch(&url)).await?;
        tracing::info!(node = %task.node.uuid, url = %url, "deploy ISO set as the UEFI HTTP boot URI");
        Ok(())
    }

    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        let bmc = NodeBmc::open(&self.pool, task).await?;
        if let Some(patch) = http_boot_clear_patch(&bmc.system().await?.boot) {
            bmc.patch_boot(patch).await?;
        }
        remove_iso(task)
    }

    /// The instance boots from its disk (the conductor sets the boot device).
    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        let _ = task;
        Ok(())
    }

    async fn clean_up_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        let _ = task;
        Ok(())
    }
}

/// Registers `redfish-virtual-media` and `redfish-https`.
pub fn register(registry: &mut super::Registry, pool: Arc<RedfishPool>) {
    registry.register_boot(VMEDIA, Arc::new(RedfishVirtualMedia::new(pool.clone())));
    registry.register_boot(HTTPS, Arc::new(RedfishHttpsBoot::new(pool)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_address_from_network_data() {
        let nd: JsonMap = serde_json::from_value(json!({
            "links": [{"id": "port0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56", "name": "eth0"}],
            "networks": [
                {"id": "n0", "type": "ipv4_dhcp", "link": "port0"},
                {"id": "n1", "type": "ipv4", "link": "port0", "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
                 "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}]}
            ],
            "services": []
        }))
        .unwrap();
        assert_eq!(static_ip_param(&nd).as_deref(), Some("ip=192.0.2.10::192.0.2.1:255.255.255.0::eth0:off"));
        assert_eq!(static_ip_param(&JsonMap::new()), None);
    }

    fn system(v: Value) -> ComputerSystem {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn uefi_http_boot_patch() {
        let url = "http://192.0.2.1:8080/redfish/boot-1.iso";
        assert_eq!(
            http_boot_patch(url),
            json!({
                "BootSourceOverrideTarget": "UefiHttp",
                "BootSourceOverrideMode": "UEFI",
                "BootSourceOverrideEnabled": "Once",
                "HttpBootUri": url,
            })
        );
        // Clean-up: the URI cleared; the override disabled only while it is still UEFI HTTP
        // (the instance's disk boot, set before the clean-up, stays).
        let boot = |b: Value| system(json!({ "Boot": b })).boot;
        let pending = boot(
            json!({"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideEnabled": "Once", "HttpBootUri": url}),
        );
        assert_eq!(
            http_boot_clear_patch(&pending),
            Some(json!({"BootSourceOverrideEnabled": "Disabled", "HttpBootUri": null}))
        );
        let disk = boot(
            json!({"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous", "HttpBootUri": url}),
        );
        assert_eq!(http_boot_clear_patch(&disk), Some(json!({"HttpBootUri": null})));
        let clear = boot(
            json!({"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled", "HttpBootUri": null}),
        );
        assert_eq!(http_boot_clear_patch(&clear), None);
    }

    #[test]
    fn uefi_http_boot_only_where_the_bmc_offers_it() {
        let path = "/redfish/v1/Systems/1";
        let offered = system(json!({ "Boot": {
            "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd", "Cd", "UefiHttp"],
            "HttpBootUri": null,
        }}));
        assert_eq!(offered.boot.http_boot_uri, Some(None));
        check_http_boot(&offered, path).unwrap();
        // No allowed values listed: the HttpBootUri property says it.
        check_http_boot(&system(json!({ "Boot": { "HttpBootUri": null } })), path).unwrap();

        let without = system(json!({ "Boot": {
            "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd", "Cd"],
            "HttpBootUri": null,
        }}));
        assert_eq!(
            check_http_boot(&without, path).unwrap_err().to_string(),
            format!(
                "Redfish System {path} does not offer UEFI HTTP boot: UefiHttp is not among its BootSourceOverrideTarget@Redfish.AllowableValues (None, Pxe, Hdd, Cd). Use the redfish-virtual-media or ipxe boot interface."
            )
        );
        let no_uri = system(json!({ "Boot": {
            "BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", "UefiHttp"],
        }}));
        assert_eq!(no_uri.boot.http_boot_uri, None);
        let e = check_http_boot(&no_uri, path).unwrap_err();
        assert!(matches!(e, DriverError::InvalidParameter(_)), "{e:?}");
        assert!(e.to_string().contains("has no Boot/HttpBootUri property"), "{e}");
    }

    #[test]
    fn slot_preference() {
        let slot = |id: &str, types: &[&str]| VirtualMedia {
            odata_id: id.into(),
            media_types: types.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        let slots = vec![slot("usb", &["USBStick"]), slot("dvd", &["DVD"]), slot("cd", &["CD", "DVD"])];
        assert_eq!(pick_slot(&slots).unwrap().odata_id, "cd");
        assert_eq!(pick_slot(&slots[..2]).unwrap().odata_id, "dvd");
        assert_eq!(pick_slot(&slots[..1]).unwrap().odata_id, "usb");
        assert!(pick_slot(&[slot("fd", &["Floppy"])]).is_none());
    }
}
