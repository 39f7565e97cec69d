//! What a simulated machine's firmware and network boot program make of the boot files ferric
//! serves: an iPXE script or a pxelinux config is read the way iPXE and pxelinux read them (only
//! the commands ferric's boot configs use), giving what the machine boots next.

/// What a boot config tells the machine to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootPlan {
    /// A kernel and initrd from the network; `args` is the kernel command line.
    Kernel { kernel: String, initrd: Option<String>, args: String },
    /// Boot the local disk (`sanboot`, `exit`, `localboot`).
    LocalDisk,
    /// Nothing bootable in the config.
    Nothing,
}

impl BootPlan {
    /// The deploy ramdisk's API URL, when the kernel line carries one (ferric's and IPA's
    /// spelling).
    pub fn api_url(&self) -> Option<&str> {
        match self {
            BootPlan::Kernel { args, .. } => arg(args, "ferric-api-url").or_else(|| arg(args, "ipa-api-url")),
            _ => None,
        }
    }
}

/// `key=value` from a kernel command line.
pub fn arg<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_whitespace().find_map(|a| a.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Reads an iPXE script: the first `kernel`/`initrd` pair, or `sanboot`/`exit` (local disk).
pub fn parse_ipxe(script: &str) -> BootPlan {
    if !script.trim_start().starts_with("#!ipxe") {
        return BootPlan::Nothing;
    }
    let mut kernel: Option<(String, String)> = None;
    let mut initrd = None;
    for line in script.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("kernel" | "chain") if kernel.is_none() => {
                let rest: Vec<&str> = words.collect();
                let mut it = rest.iter().copied().peekable();
                // Skip options (`--name kernel`, `-n kernel`).
                let mut url = None;
                while let Some(w) = it.next() {
                    if w.starts_with('-') {
                        if !w.contains('=') {
                            it.next();
                        }
                        continue;
                    }
                    url = Some(w.to_string());
                    break;
                }
                let Some(url) = url else { continue };
                let args: Vec<&str> = it.take_while(|w| *w != "||").collect();
                kernel = Some((url, args.join(" ")));
            }
            Some("initrd") if initrd.is_none() => {
                let mut it = words.peekable();
                while let Some(w) = it.next() {
                    if w.starts_with('-') {
                        if !w.contains('=') {
                            it.next();
                        }
                        continue;
                    }
                    initrd = Some(w.to_string());
                    break;
                }
            }
            Some("sanboot" | "exit") if kernel.is_none() => return BootPlan::LocalDisk,
            Some("boot") => break,
            _ => {}
        }
    }
    match kernel {
        Some((kernel, args)) => BootPlan::Kernel { kernel, initrd, args },
        None => BootPlan::Nothing,
    }
}

/// Reads a pxelinux config: the `default` label's `kernel` and `append`, or `localboot`.
pub fn parse_pxelinux(cfg: &str) -> BootPlan {
    let mut default = None;
    let mut labels: Vec<(String, Vec<String>)> = Vec::new();
    for line in cfg.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match word.to_ascii_lowercase().as_str() {
            "default" => default = Some(rest.trim().to_string()),
            "label" => labels.push((rest.trim().to_string(), Vec::new())),
            _ => {
                if let Some((_, body)) = labels.last_mut() {
                    body.push(line.to_string());
                }
            }
        }
    }
    let chosen = match &default {
        Some(d) => labels.iter().find(|(n, _)| n == d),
        None => labels.first(),
    };
    let Some((_, body)) = chosen else { return BootPlan::Nothing };
    let mut kernel = None;
    let mut append = String::new();
    for line in body {
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match word.to_ascii_lowercase().as_str() {
            "kernel" | "linux" => kernel = Some(rest.trim().to_string()),
            "append" => append = rest.trim().to_string(),
            "localboot" => return BootPlan::LocalDisk,
            _ => {}
        }
    }
    let Some(kernel) = kernel else { return BootPlan::Nothing };
    let initrd = arg(&append, "initrd").map(str::to_string);
    BootPlan::Kernel { kernel, initrd, args: append }
}

/// A file of an ISO 9660 image (a virtual CD), by path; any case, with or without the `;1`
/// version suffix of plain ISO 9660 names.
pub fn iso_file(iso: &[u8], path: &str) -> Option<Vec<u8>> {
    let image = hadris_iso::read::IsoImage::open(std::io::Cursor::new(iso)).ok()?;
    let upper = path.to_ascii_uppercase();
    let candidates = [path.to_string(), upper.clone(), format!("{upper};1")];
    candidates.iter().find_map(|p| {
        let entry = image.find_path(p).ok()??;
        image.read_file(&entry).ok()
    })
}

/// The name pxelinux asks for first: `pxelinux.cfg/01-aa-bb-cc-dd-ee-ff`.
pub fn pxelinux_config_name(mac: &ferric_service::pxe::MacAddr) -> String {
    format!("pxelinux.cfg/{}", mac.pxelinux_name())
}

/// Network boot programs the firmware knows how to "run".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nbp {
    /// iPXE: does DHCP again as an iPXE client and runs the script it is given.
    Ipxe,
    /// pxelinux/syslinux: reads its config over TFTP.
    Pxelinux,
}

/// Which program a boot file name is.
pub fn nbp_of(file: &str) -> Option<Nbp> {
    let base = file.rsplit('/').next().unwrap_or(file).to_ascii_lowercase();
    if base.contains("ipxe") || base.ends_with(".kpxe") || base.starts_with("snponly") {
        Some(Nbp::Ipxe)
    } else if base.starts_with("pxelinux") || base.starts_with("syslinux") || base.starts_with("lpxelinux") {
        Some(Nbp::Pxelinux)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferric_service::pxe::MacAddr;
    use ferric_service::pxe::config::{self, DeployBoot, NetBoot};

    fn deploy() -> DeployBoot {
        DeployBoot {
            node: "n1".into(),
            boot_mac: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
            api_url: "http://192.0.2.1:6385".into(),
            kernel: "http://192.0.2.1:8080/n1/deploy_kernel".into(),
            ramdisk: "http://192.0.2.1:8080/n1/deploy_ramdisk".into(),
            kernel_args: "console=ttyS0".into(),
        }
    }

    #[test]
    fn reads_ferric_ipxe_scripts() {
        let p = parse_ipxe(&config::ipxe_deploy(&deploy()).unwrap());
        assert_eq!(p.api_url(), Some("http://192.0.2.1:6385"));
        let BootPlan::Kernel { kernel, initrd, .. } = p else { panic!() };
        assert_eq!(kernel, "http://192.0.2.1:8080/n1/deploy_kernel");
        assert_eq!(initrd.as_deref(), Some("http://192.0.2.1:8080/n1/deploy_ramdisk"));
        assert_eq!(parse_ipxe(&config::ipxe_localboot(config::BootMode::Bios)), BootPlan::LocalDisk);
        assert_eq!(parse_ipxe(&config::ipxe_localboot(config::BootMode::Uefi)), BootPlan::LocalDisk);
        let nb = NetBoot {
            node: "n1".into(),
            kernel: "http://x/k".into(),
            ramdisk: "http://x/r".into(),
            root_uuid: "abcd".into(),
            kernel_args: String::new(),
        };
        let p = parse_ipxe(&config::ipxe_netboot(&nb).unwrap());
        assert_eq!(p.api_url(), None);
        assert!(matches!(p, BootPlan::Kernel { ref args, .. } if arg(args, "root") == Some("UUID=abcd")));
        assert_eq!(parse_ipxe("garbage"), BootPlan::Nothing);
    }

    #[test]
    fn reads_ferric_pxelinux_configs() {
        let mut d = deploy();
        d.kernel = "n1/deploy_kernel".into();
        d.ramdisk = "n1/deploy_ramdisk".into();
        let p = parse_pxelinux(&config::pxelinux_deploy(&d).unwrap());
        assert_eq!(p.api_url(), Some("http://192.0.2.1:6385"));
        assert!(
            matches!(&p, BootPlan::Kernel { kernel, initrd: Some(i), .. } if kernel == "n1/deploy_kernel" && i == "n1/deploy_ramdisk")
        );
        assert_eq!(parse_pxelinux(&config::pxelinux_localboot()), BootPlan::LocalDisk);
        assert_eq!(parse_pxelinux(""), BootPlan::Nothing);
        assert_eq!(nbp_of("undionly.kpxe"), Some(Nbp::Ipxe));
        assert_eq!(nbp_of("ipxe.efi"), Some(Nbp::Ipxe));
        assert_eq!(nbp_of("pxelinux.0"), Some(Nbp::Pxelinux));
        assert_eq!(nbp_of("grub.efi"), None);
    }
}
