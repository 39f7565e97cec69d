//! The deploy ISO of the `redfish-virtual-media` boot interface: the deploy kernel and ramdisk
//! and an isolinux config, as a BMC mounts it as a virtual CD. The layout is fixed (the simulated
//! and QEMU machines read it):
//!
//! ```text
//! /vmlinuz                 the deploy kernel
//! /initrd                  the deploy ramdisk
//! /isolinux/isolinux.cfg   DEFAULT deploy / LABEL deploy / KERNEL /vmlinuz / APPEND initrd=/initrd ...
//! /isolinux/isolinux.bin   El Torito no-emulation boot image (boot info table, load size 4)
//! /isolinux/ldlinux.c32
//! ```
//!
//! isolinux comes from Debian's `isolinux` and `syslinux-common` packages; without them the ISO is
//! built without a boot record (a warning is logged once), which virtual machines that read the
//! config themselves still boot.

use hadris_iso::boot::EmulationType;
use hadris_iso::boot::options::{BootEntryOptions, BootOptions};
use hadris_iso::read::PathSeparator;
use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{File as IsoFile, InputFiles, IsoImageWriter};
use std::io::Cursor;
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where Debian puts isolinux's boot image and its core module.
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";

/// Why an ISO could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot build the ISO image: {0}")]
    Build(String),
}

/// The isolinux config booting the deploy kernel with `params`.
pub fn isolinux_cfg(params: &str) -> String {
    let params = params.trim();
    let append = if params.is_empty() { "initrd=/initrd".to_owned() } else { format!("initrd=/initrd {params}") };
    format!("DEFAULT deploy\nLABEL deploy\n  KERNEL /vmlinuz\n  APPEND {append}\n")
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Builds the deploy ISO from the kernel and ramdisk bytes and the kernel parameters, with the
/// system's isolinux when installed.
pub fn deploy_iso(kernel: Vec<u8>, ramdisk: Vec<u8>, params: &str) -> Result<Vec<u8>, IsoError> {
    deploy_iso_with(kernel, ramdisk, params, Path::new(ISOLINUX_BIN), Path::new(LDLINUX_C32))
}

/// [`deploy_iso`] with isolinux's files taken from elsewhere (tests).
pub fn deploy_iso_with(
    kernel: Vec<u8>,
    ramdisk: Vec<u8>,
    params: &str,
    isolinux_bin: &Path,
    ldlinux: &Path,
) -> Result<Vec<u8>, IsoError> {
    let file = |name: &str, contents: Vec<u8>| IsoFile::File { name: Arc::new(name.into()), contents };
    let mut isolinux = vec![file("isolinux.cfg", isolinux_cfg(params).into_bytes())];
    let bootable = isolinux_bin.is_file();
    if bootable {
        let read =
            |p: &Path| std::fs::read(p).map_err(|source| IsoError::Read { path: p.display().to_string(), source });
        isolinux.push(file("isolinux.bin", read(isolinux_bin)?));
        if ldlinux.is_file() {
            isolinux.push(file("ldlinux.c32", read(ldlinux)?));
        }
    } else if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            path = %isolinux_bin.display(),
            "isolinux is not installed (Debian package isolinux): deploy ISOs are built without a boot record"
        );
    }
    let tree = InputFiles {
        path_separator: PathSeparator::ForwardSlash,
        files: vec![
            file("vmlinuz", kernel),
            file("initrd", ramdisk),
            IsoFile::Directory { name: Arc::new("isolinux".into()), children: isolinux },
        ],
    };
    let el_torito = bootable.then(|| BootOptions {
        write_boot_catalog: true,
        default: BootEntryOptions {
            load_size: NonZeroU16::new(4),
            boot_image_path: "isolinux/isolinux.bin".into(),
            boot_info_table: true,
            grub2_boot_info: false,
            emulation: EmulationType::NoEmulation,
        },
        entries: Vec::new(),
    });
    let options = IsoFormatOptions {
        volume_name: "VMEDIA_BOOT_ISO".into(),
        system_id: None,
        volume_set_id: None,
        publisher_id: Some("ferric".into()),
        preparer_id: None,
        application_id: None,
        sector_size: 2048,
        path_separator: PathSeparator::ForwardSlash,
        features: CreationFeatures {
            filenames: BaseIsoLevel::Level2 { supports_lowercase: true, supports_rrip: true },
            el_torito,
            ..CreationFeatures::extensions()
        },
        strict_charset: false,
    };
    let out =
        IsoImageWriter::create(Cursor::new(Vec::new()), tree, options).map_err(|e| IsoError::Build(e.to_string()))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_layout() {
        assert_eq!(
            isolinux_cfg("ipa-api-url=http://192.0.2.1:6385 boot_method=vmedia"),
            "DEFAULT deploy\nLABEL deploy\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd ipa-api-url=http://192.0.2.1:6385 boot_method=vmedia\n"
        );
    }

    #[test]
    fn iso_holds_the_layout() {
        let iso = deploy_iso(b"KERNEL".to_vec(), b"RAMDISK".to_vec(), "a=b").unwrap();
        assert_eq!(iso.len() % 2048, 0);
        let find = |needle: &[u8]| iso.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"KERNEL") && find(b"RAMDISK") && find(b"APPEND initrd=/initrd a=b"));
        // The primary volume descriptor.
        assert_eq!(&iso[0x8001..0x8006], b"CD001");
        if Path::new(ISOLINUX_BIN).is_file() {
            // An El Torito boot record follows it.
            assert!(find(b"EL TORITO SPECIFICATION"));
        }
    }

    /// genisoimage's `isoinfo` (when installed) reads the files and the El Torito record back.
    #[test]
    fn isoinfo_reads_it_back() {
        if !Path::new("/usr/bin/isoinfo").is_file() {
            eprintln!("SKIP: isoinfo is not installed (Debian package genisoimage)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.iso");
        std::fs::write(&path, deploy_iso(vec![7; 5000], vec![9; 3000], "x=y").unwrap()).unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("/usr/bin/isoinfo").args(args).arg("-i").arg(&path).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let listing = run(&["-R", "-f"]);
        for f in ["/vmlinuz", "/initrd", "/isolinux/isolinux.cfg"] {
            assert!(listing.lines().any(|l| l == f), "{f} missing:\n{listing}");
        }
        assert_eq!(run(&["-R", "-x", "/isolinux/isolinux.cfg"]), isolinux_cfg("x=y"));
        if Path::new(ISOLINUX_BIN).is_file() {
            let d = run(&["-d"]);
            assert!(d.contains("El Torito VD version 1 found"), "{d}");
            assert!(d.contains("No Emulation Boot") && d.contains("Nsect 4"), "{d}");
        }
    }

    #[test]
    fn iso_without_isolinux() {
        let iso =
            deploy_iso_with(b"K".to_vec(), b"R".to_vec(), "", Path::new("/nonexistent"), Path::new("/nonexistent"))
                .unwrap();
        assert!(!iso.windows(23).any(|w| w == b"EL TORITO SPECIFICATION"));
    }
}
