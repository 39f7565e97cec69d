//! Boot configuration rendering (pxelinux and iPXE) and per-node file placement in the TFTP and
//! HTTP roots, following Ironic's layout: `<root>/<node>/config` plus a per-MAC link
//! (`pxelinux.cfg/01-<mac>` for pxelinux, `pxelinux.cfg/<mac>` for iPXE) pointing at it.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::MacAddr;

/// Errors while rendering or placing boot files.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value would break the config's line structure or escape the root.
    #[error("invalid {what}: {value:?}")]
    Invalid { what: &'static str, value: String },
    #[error("boot file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Firmware of the node, which decides how "boot from local disk" is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    Bios,
    Uefi,
}

/// The deploy ramdisk boot: the agent's kernel and ramdisk plus what the agent must know.
#[derive(Debug, Clone)]
pub struct DeployBoot {
    pub node: String,
    /// MAC the node PXE-boots from (`BOOTIF=01-..`, so the agent picks that NIC).
    pub boot_mac: MacAddr,
    /// ferric's API for the agent's lookup and heartbeats.
    pub api_url: String,
    /// Kernel and ramdisk: TFTP paths for pxelinux, URLs for iPXE.
    pub kernel: String,
    pub ramdisk: String,
    /// Extra kernel arguments (Ironic's `pxe_append_params`, e.g. `console=ttyS0`).
    pub kernel_args: String,
}

/// A netbooted instance: kernel + ramdisk from the network, root filesystem on disk.
#[derive(Debug, Clone)]
pub struct NetBoot {
    pub node: String,
    pub kernel: String,
    pub ramdisk: String,
    /// Filesystem UUID of the instance's root partition.
    pub root_uuid: String,
    pub kernel_args: String,
}

fn check(what: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.chars().any(|c| c.is_control()) {
        return Err(ConfigError::Invalid { what, value: value.into() });
    }
    Ok(())
}

fn check_token(what: &'static str, value: &str) -> Result<(), ConfigError> {
    check(what, value)?;
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(ConfigError::Invalid { what, value: value.into() });
    }
    Ok(())
}

fn deploy_args(d: &DeployBoot) -> Result<String, ConfigError> {
    check_token("api_url", &d.api_url)?;
    check("kernel_args", &d.kernel_args)?;
    let mut a = String::new();
    if !d.kernel_args.trim().is_empty() {
        a.push_str(d.kernel_args.trim());
        a.push(' ');
    }
    // ipa-api-url for ironic-python-agent compatibility; ferric-api-url for ferric-agent.
    write!(
        a,
        "ipa-api-url={api} ferric-api-url={api} ferric-node={node} BOOTIF={bootif}",
        api = d.api_url,
        node = d.node,
        bootif = d.boot_mac.pxelinux_name()
    )
    .ok();
    Ok(a)
}

fn netboot_args(n: &NetBoot) -> Result<String, ConfigError> {
    check_token("root_uuid", &n.root_uuid)?;
    check("kernel_args", &n.kernel_args)?;
    let mut a = format!("root=UUID={} ro", n.root_uuid);
    if !n.kernel_args.trim().is_empty() {
        a.push(' ');
        a.push_str(n.kernel_args.trim());
    }
    Ok(a)
}

/// pxelinux config that boots the deploy ramdisk.
pub fn pxelinux_deploy(d: &DeployBoot) -> Result<String, ConfigError> {
    check_token("node", &d.node)?;
    check_token("kernel", &d.kernel)?;
    check_token("ramdisk", &d.ramdisk)?;
    Ok(format!(
        "default deploy\n\nlabel deploy\nkernel {}\nappend initrd={} {}\n",
        d.kernel,
        d.ramdisk,
        deploy_args(d)?
    ))
}

/// pxelinux config that netboots an instance.
pub fn pxelinux_netboot(n: &NetBoot) -> Result<String, ConfigError> {
    check_token("kernel", &n.kernel)?;
    check_token("ramdisk", &n.ramdisk)?;
    Ok(format!("default boot\n\nlabel boot\nkernel {}\nappend initrd={} {}\n", n.kernel, n.ramdisk, netboot_args(n)?))
}

/// pxelinux config that boots the first local disk.
pub fn pxelinux_localboot() -> String {
    "default local\n\nlabel local\nlocalboot 0\n".to_owned()
}

/// The retry tail shared by iPXE scripts: up to five attempts a couple of seconds apart
/// (counted by growing a string, which works on every iPXE build), then power off so the
/// conductor's timeout sees a dead node rather than a looping one.
fn ipxe_retry(target: &str) -> String {
    format!(
        ":retry\nset tries ${{tries}}x\niseq ${{tries}} xxxxx && goto fail ||\nsleep 2\ngoto {target}\n\n\
         :fail\necho ferric: boot failed after 5 attempts, powering off\nsleep 10\npoweroff\n"
    )
}

/// iPXE script that boots the deploy ramdisk over HTTP.
pub fn ipxe_deploy(d: &DeployBoot) -> Result<String, ConfigError> {
    check_token("node", &d.node)?;
    check_token("kernel", &d.kernel)?;
    check_token("ramdisk", &d.ramdisk)?;
    Ok(format!(
        "#!ipxe\n# ferric: deploy ramdisk for node {node}\n\nset tries\n\n:deploy\nimgfree\n\
         kernel --name kernel {kernel} initrd=ramdisk {args} || goto retry\n\
         initrd --name ramdisk {ramdisk} || goto retry\nboot || goto retry\n\n{retry}",
        node = d.node,
        kernel = d.kernel,
        ramdisk = d.ramdisk,
        args = deploy_args(d)?,
        retry = ipxe_retry("deploy"),
    ))
}

/// iPXE script that netboots an instance.
pub fn ipxe_netboot(n: &NetBoot) -> Result<String, ConfigError> {
    check_token("node", &n.node)?;
    check_token("kernel", &n.kernel)?;
    check_token("ramdisk", &n.ramdisk)?;
    Ok(format!(
        "#!ipxe\n# ferric: instance netboot for node {node}\n\nset tries\n\n:boot\nimgfree\n\
         kernel --name kernel {kernel} initrd=ramdisk {args} || goto retry\n\
         initrd --name ramdisk {ramdisk} || goto retry\nboot || goto retry\n\n{retry}",
        node = n.node,
        kernel = n.kernel,
        ramdisk = n.ramdisk,
        args = netboot_args(n)?,
        retry = ipxe_retry("boot"),
    ))
}

/// iPXE script that boots the local disk: BIOS hands the first hard disk to the BIOS; UEFI
/// exits back to the firmware's boot order.
pub fn ipxe_localboot(mode: BootMode) -> String {
    match mode {
        BootMode::Bios => {
            "#!ipxe\n# ferric: boot from local disk\n\nsanboot --no-describe --drive 0x80 || exit\n".to_owned()
        }
        BootMode::Uefi => "#!ipxe\n# ferric: boot from local disk\n\nexit\n".to_owned(),
    }
}

/// Where per-node boot files live and how the HTTP root is reached.
#[derive(Debug, Clone)]
pub struct BootLayout {
    pub tftp_root: PathBuf,
    pub http_root: PathBuf,
    /// URL under which `http_root` is served, e.g. `http://192.0.2.1:8080`.
    pub http_url: String,
}

/// Which root a per-node file goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Tftp,
    Http,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io { path: path.to_owned(), source }
}

/// Writes via a temporary file and rename so a booting client never reads half a config.
fn write_atomic(path: &Path, text: &str) -> Result<(), ConfigError> {
    let dir = path.parent().ok_or_else(|| ConfigError::Invalid { what: "path", value: path.display().to_string() })?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn relink(link: &Path, target: &Path) -> Result<(), ConfigError> {
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    match std::fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(link)(e)),
    }
    std::os::unix::fs::symlink(target, link).map_err(io_err(link))
}

fn remove_if_exists(path: &Path) -> Result<(), ConfigError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

impl BootLayout {
    fn root(&self, r: Root) -> &Path {
        match r {
            Root::Tftp => &self.tftp_root,
            Root::Http => &self.http_root,
        }
    }

    /// A node's directory in a root; the node id must be a single safe path component.
    pub fn node_dir(&self, r: Root, node: &str) -> Result<PathBuf, ConfigError> {
        let ok = !node.is_empty()
            && node != "."
            && node != ".."
            && node != "pxelinux.cfg"
            && node.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(ConfigError::Invalid { what: "node", value: node.into() });
        }
        Ok(self.root(r).join(node))
    }

    /// Path of a node's file relative to the TFTP root (what pxelinux's `kernel` line names).
    pub fn tftp_path(&self, node: &str, file: &str) -> String {
        format!("{node}/{file}")
    }

    /// URL of a node's file in the HTTP root (what an iPXE script fetches).
    pub fn http_file_url(&self, node: &str, file: &str) -> String {
        format!("{}/{node}/{file}", self.http_url.trim_end_matches('/'))
    }

    /// URL of the iPXE script the DHCP server hands to an iPXE client with this MAC.
    pub fn ipxe_script_url(&self, mac: &MacAddr) -> String {
        format!("{}/pxelinux.cfg/{}", self.http_url.trim_end_matches('/'), mac.hexhyp())
    }

    /// The DHCP `ipxe_script_url` template matching [`Self::ipxe_script_url`].
    pub fn ipxe_script_url_template(&self) -> String {
        format!("{}/pxelinux.cfg/{{mac}}", self.http_url.trim_end_matches('/'))
    }

    /// Installs a pxelinux config for a node and links `pxelinux.cfg/01-<mac>` to it per MAC.
    pub fn write_pxelinux(&self, node: &str, macs: &[MacAddr], config: &str) -> Result<(), ConfigError> {
        let dir = self.node_dir(Root::Tftp, node)?;
        write_atomic(&dir.join("config"), config)?;
        for mac in macs {
            let link = self.tftp_root.join("pxelinux.cfg").join(mac.pxelinux_name());
            relink(&link, &Path::new("..").join(node).join("config"))?;
        }
        Ok(())
    }

    /// Installs an iPXE script for a node and links `pxelinux.cfg/<mac>` to it per MAC.
    pub fn write_ipxe(&self, node: &str, macs: &[MacAddr], script: &str) -> Result<(), ConfigError> {
        let dir = self.node_dir(Root::Http, node)?;
        write_atomic(&dir.join("config"), script)?;
        for mac in macs {
            let link = self.http_root.join("pxelinux.cfg").join(mac.hexhyp());
            relink(&link, &Path::new("..").join(node).join("config"))?;
        }
        Ok(())
    }

    /// Removes a node's configs and MAC links from both roots (Ironic's clean_up_ramdisk /
    /// clean_up_instance), leaving its cached images.
    pub fn remove_configs(&self, node: &str, macs: &[MacAddr]) -> Result<(), ConfigError> {
        for r in [Root::Tftp, Root::Http] {
            remove_if_exists(&self.node_dir(r, node)?.join("config"))?;
        }
        for mac in macs {
            remove_if_exists(&self.tftp_root.join("pxelinux.cfg").join(mac.pxelinux_name()))?;
            remove_if_exists(&self.http_root.join("pxelinux.cfg").join(mac.hexhyp()))?;
        }
        Ok(())
    }

    /// Removes everything of a node: configs, MAC links and its directory with the image links
    /// in both roots (which releases those cache entries for eviction).
    pub fn remove_node(&self, node: &str, macs: &[MacAddr]) -> Result<(), ConfigError> {
        self.remove_configs(node, macs)?;
        for r in [Root::Tftp, Root::Http] {
            let dir = self.node_dir(r, node)?;
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
        Ok(())
    }
}
