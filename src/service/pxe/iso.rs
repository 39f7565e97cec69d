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
//! /efiboot.img             El Torito UEFI boot image: an EFI System Partition (FAT), see below
//! ```
//!
//! isolinux comes from Debian's `isolinux` and `syslinux-common` packages; without them the ISO is
//! built without a BIOS boot record (a warning is logged once), which virtual machines that read
//! the config themselves still boot.
//!
//! UEFI firmware does not run El Torito boot images: it mounts a UEFI entry's image as a FAT EFI
//! System Partition and starts `/EFI/BOOT/BOOTX64.EFI` from it. So the ISO carries a second boot
//! catalog entry (platform UEFI) whose image holds systemd-boot (Debian's `systemd-boot-efi`) and
//! the same kernel, ramdisk and command line:
//!
//! ```text
//! /EFI/BOOT/BOOTX64.EFI        systemd-boot
//! /loader/loader.conf          default deploy.conf / timeout 0
//! /loader/entries/deploy.conf  linux /vmlinuz / initrd /initrd / options ...
//! /vmlinuz, /initrd            again: systemd-boot reads only the partition it was started from
//! ```
//!
//! Without systemd-boot the ISO has no UEFI entry (a warning is logged once).

use hadris_iso::boot::options::{BootEntryOptions, BootOptions, BootSectionOptions};
use hadris_iso::boot::{EmulationType, PlatformId};
use hadris_iso::read::PathSeparator;
use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{File as IsoFile, InputFiles, IsoImageWriter};
use std::io::{Cursor, Write};
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where Debian puts isolinux's boot image and its core module.
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
/// Where Debian's `systemd-boot-efi` puts systemd-boot, the UEFI boot loader of the ISO's EFI
/// System Partition.
pub const SYSTEMD_BOOT_EFI: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// The ESP image's path in the ISO (the UEFI boot catalog entry points at it).
const ESP_IMAGE: &str = "efiboot.img";

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

/// systemd-boot's `/loader/loader.conf`: boot the deploy entry at once, no menu (nobody watches a
/// virtual console during a deploy).
pub const LOADER_CONF: &str = "default deploy.conf\ntimeout 0\n";

/// systemd-boot's `/loader/entries/deploy.conf` booting the deploy kernel with `params`.
pub fn systemd_boot_entry(params: &str) -> String {
    let params = params.trim();
    let mut entry = "title ferric deploy\nlinux /vmlinuz\ninitrd /initrd\n".to_owned();
    if !params.is_empty() {
        entry.push_str(&format!("options {params}\n"));
    }
    entry
}

static WARNED: AtomicBool = AtomicBool::new(false);
static WARNED_EFI: AtomicBool = AtomicBool::new(false);

/// Builds the deploy ISO from the kernel and ramdisk bytes and the kernel parameters, with the
/// system's isolinux and systemd-boot when installed.
pub fn deploy_iso(kernel: Vec<u8>, ramdisk: Vec<u8>, params: &str) -> Result<Vec<u8>, IsoError> {
    deploy_iso_with(
        kernel,
        ramdisk,
        params,
        BootLoaders {
            isolinux_bin: Path::new(ISOLINUX_BIN),
            ldlinux: Path::new(LDLINUX_C32),
            systemd_boot: Path::new(SYSTEMD_BOOT_EFI),
        },
    )
}

/// Where the ISO's boot loaders are read from: the system's by default, elsewhere in tests. A
/// missing one leaves its boot catalog entry out.
#[derive(Debug, Clone, Copy)]
pub struct BootLoaders<'a> {
    pub isolinux_bin: &'a Path,
    pub ldlinux: &'a Path,
    pub systemd_boot: &'a Path,
}

fn read(p: &Path) -> Result<Vec<u8>, IsoError> {
    std::fs::read(p).map_err(|source| IsoError::Read { path: p.display().to_string(), source })
}

/// The EFI System Partition image: systemd-boot as the removable-media loader, its config, the
/// kernel and the ramdisk, in a FAT file system sized to fit them.
pub fn esp_image(loader: &[u8], kernel: &[u8], ramdisk: &[u8], params: &str) -> Result<Vec<u8>, IsoError> {
    let entry = systemd_boot_entry(params);
    let files: [(&[&str], &str, &[u8]); 5] = [
        (&["EFI", "BOOT"], "BOOTX64.EFI", loader),
        (&["loader"], "loader.conf", LOADER_CONF.as_bytes()),
        (&["loader", "entries"], "deploy.conf", entry.as_bytes()),
        (&[], "vmlinuz", kernel),
        (&[], "initrd", ramdisk),
    ];
    // fatfs picks the FAT type and a cluster of at most 32 KiB from the volume's size: room for
    // each file rounded up to that, the directories, and the two FATs (under 2% of the volume at
    // fatfs' smallest clusters), with a MiB to spare. 512-byte sectors, as UEFI expects.
    const CLUSTER: u64 = 32 * 1024;
    let data: u64 =
        files.iter().map(|(_, _, c)| (c.len() as u64).div_ceil(CLUSTER) * CLUSTER).sum::<u64>() + 4 * CLUSTER;
    let size = (data + data / 50 + (1 << 20)).div_ceil(512) * 512;
    let fail = |e: std::io::Error| IsoError::Build(format!("EFI System Partition image: {e}"));
    let mut image = Cursor::new(vec![0u8; size as usize]);
    fatfs::format_volume(&mut image, fatfs::FormatVolumeOptions::new().volume_label(*b"FERRIC_ESP ")).map_err(fail)?;
    {
        let fs = fatfs::FileSystem::new(&mut image, fatfs::FsOptions::new()).map_err(fail)?;
        for (dirs, name, contents) in files {
            let mut dir = fs.root_dir();
            for d in dirs {
                dir = match dir.open_dir(d) {
                    Ok(existing) => existing,
                    Err(_) => dir.create_dir(d).map_err(fail)?,
                };
            }
            let mut f = dir.create_file(name).map_err(fail)?;
            f.truncate().map_err(fail)?;
            f.write_all(contents).map_err(fail)?;
            f.flush().map_err(fail)?;
        }
        fs.unmount().map_err(fail)?;
    }
    Ok(image.into_inner())
}

/// [`deploy_iso`] with the boot loaders taken from elsewhere (tests).
pub fn deploy_iso_with(
    kernel: Vec<u8>,
    ramdisk: Vec<u8>,
    params: &str,
    loaders: BootLoaders<'_>,
) -> Result<Vec<u8>, IsoError> {
    let BootLoaders { isolinux_bin, ldlinux, systemd_boot } = loaders;
    let file = |name: &str, contents: Vec<u8>| IsoFile::File { name: Arc::new(name.into()), contents };
    let mut isolinux = vec![file("isolinux.cfg", isolinux_cfg(params).into_bytes())];
    let bootable = isolinux_bin.is_file();
    if bootable {
        isolinux.push(file("isolinux.bin", read(isolinux_bin)?));
        if ldlinux.is_file() {
            isolinux.push(file("ldlinux.c32", read(ldlinux)?));
        }
    } else if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            path = %isolinux_bin.display(),
            "isolinux is not installed (Debian package isolinux): deploy ISOs are built without a BIOS boot record"
        );
    }
    let esp = if systemd_boot.is_file() {
        Some(esp_image(&read(systemd_boot)?, &kernel, &ramdisk, params)?)
    } else {
        if !WARNED_EFI.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %systemd_boot.display(),
                "systemd-boot is not installed (Debian package systemd-boot-efi): deploy ISOs do not boot UEFI machines"
            );
        }
        None
    };
    // The El Torito sector count is 16 bits of 512-byte sectors (32 MiB); UEFI reads 0 or 1 as
    // "from the image to the end of the CD", and the FAT file system knows its own size.
    let esp_entry = esp.as_ref().map(|esp| {
        let sectors = u16::try_from(esp.len().div_ceil(512)).ok().and_then(NonZeroU16::new);
        (
            BootSectionOptions { platform: PlatformId::UEFI },
            BootEntryOptions {
                load_size: sectors.or(NonZeroU16::new(1)),
                boot_image_path: ESP_IMAGE.into(),
                boot_info_table: false,
                grub2_boot_info: false,
                emulation: EmulationType::NoEmulation,
            },
        )
    });
    let mut files = vec![
        file("vmlinuz", kernel),
        file("initrd", ramdisk),
        IsoFile::Directory { name: Arc::new("isolinux".into()), children: isolinux },
    ];
    if let Some(esp) = esp {
        files.push(file(ESP_IMAGE, esp));
    }
    let tree = InputFiles { path_separator: PathSeparator::ForwardSlash, files };
    let isolinux_entry = || BootEntryOptions {
        load_size: NonZeroU16::new(4),
        boot_image_path: "isolinux/isolinux.bin".into(),
        boot_info_table: true,
        grub2_boot_info: false,
        emulation: EmulationType::NoEmulation,
    };
    // BIOS firmware reads the default entry only; UEFI firmware looks for a UEFI section. With no
    // isolinux the ESP is the default entry (UEFI firmware also takes a default entry's image).
    let el_torito = match (bootable, esp_entry) {
        (false, None) => None,
        (true, esp) => Some(BootOptions {
            write_boot_catalog: true,
            default: isolinux_entry(),
            entries: esp.into_iter().collect(),
        }),
        (false, Some(esp)) => {
            Some(BootOptions { write_boot_catalog: true, default: esp.1.clone(), entries: vec![esp] })
        }
    };
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

    const NONE: &str = "/nonexistent";

    #[test]
    fn iso_without_boot_loaders() {
        let loaders =
            BootLoaders { isolinux_bin: Path::new(NONE), ldlinux: Path::new(NONE), systemd_boot: Path::new(NONE) };
        let iso = deploy_iso_with(b"K".to_vec(), b"R".to_vec(), "", loaders).unwrap();
        assert!(!iso.windows(23).any(|w| w == b"EL TORITO SPECIFICATION"));
    }

    #[test]
    fn systemd_boot_entry_layout() {
        assert_eq!(
            systemd_boot_entry(" console=ttyS0 a=b "),
            "title ferric deploy\nlinux /vmlinuz\ninitrd /initrd\noptions console=ttyS0 a=b\n"
        );
        assert!(!systemd_boot_entry("").contains("options"));
    }

    fn fat_read(fs: &fatfs::FileSystem<Cursor<Vec<u8>>>, path: &str) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        fs.root_dir().open_file(path).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    /// Reads the El Torito boot catalog back: (platform id, sector count, image LBA) of the
    /// default entry (platform of the validation entry), then of each section's entries.
    fn boot_catalog(iso: &[u8]) -> Vec<(u8, u16, u32)> {
        // The boot record volume descriptor follows the primary one (sector 17).
        let brvd = &iso[17 * 2048..18 * 2048];
        assert_eq!(&brvd[1..6], b"CD001");
        assert_eq!(&brvd[7..30], b"EL TORITO SPECIFICATION");
        let lba = u32::from_le_bytes(brvd[0x47..0x4b].try_into().unwrap()) as usize;
        let cat = &iso[lba * 2048..lba * 2048 + 2048];
        let entry = |e: &[u8]| (u16::from_le_bytes([e[6], e[7]]), u32::from_le_bytes(e[8..12].try_into().unwrap()));
        assert_eq!((cat[0], cat[30], cat[31]), (1, 0x55, 0xaa), "validation entry");
        let (count, image) = entry(&cat[32..64]);
        assert_eq!(cat[32], 0x88, "default entry bootable");
        let mut out = vec![(cat[1], count, image)];
        let mut at = 64;
        while matches!(cat[at], 0x90 | 0x91) {
            let (platform, n, last) = (cat[at + 1], u16::from_le_bytes([cat[at + 2], cat[at + 3]]), cat[at] == 0x91);
            for i in 0..n as usize {
                let e = &cat[at + 32 * (i + 1)..at + 32 * (i + 2)];
                assert_eq!(e[0], 0x88, "section entry bootable");
                let (count, image) = entry(e);
                out.push((platform, count, image));
            }
            at += 32 * (n as usize + 1);
            if last {
                break;
            }
        }
        out
    }

    /// With both loaders the catalog has the BIOS default entry (isolinux) and a UEFI section
    /// whose image is a FAT ESP holding systemd-boot, its config with the params, the kernel and
    /// the ramdisk.
    #[test]
    fn iso_boots_bios_and_uefi() {
        if !Path::new(ISOLINUX_BIN).is_file() || !Path::new(SYSTEMD_BOOT_EFI).is_file() {
            eprintln!("SKIP: isolinux or systemd-boot is not installed (Debian packages isolinux, systemd-boot-efi)");
            return;
        }
        let kernel: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let ramdisk: Vec<u8> = (0..5_000_000u32).map(|i| (i % 241) as u8).collect();
        let iso = deploy_iso(kernel.clone(), ramdisk.clone(), "console=ttyS0 x=y").unwrap();
        let catalog = boot_catalog(&iso);
        assert_eq!(catalog.len(), 2, "{catalog:?}");
        assert_eq!((catalog[0].0, catalog[0].1), (0, 4), "BIOS default entry: {catalog:?}");
        let (platform, sectors, lba) = catalog[1];
        assert_eq!(platform, 0xef, "UEFI section: {catalog:?}");
        let start = lba as usize * 2048;
        let esp = &iso[start..start + sectors as usize * 512];
        // A FAT boot sector.
        assert_eq!(&esp[510..512], &[0x55, 0xaa]);
        let fs = fatfs::FileSystem::new(Cursor::new(esp.to_vec()), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fat_read(&fs, "EFI/BOOT/BOOTX64.EFI"), std::fs::read(SYSTEMD_BOOT_EFI).unwrap());
        assert_eq!(fat_read(&fs, "loader/loader.conf"), LOADER_CONF.as_bytes());
        let entry = String::from_utf8(fat_read(&fs, "loader/entries/deploy.conf")).unwrap();
        assert!(entry.contains("linux /vmlinuz\n") && entry.contains("initrd /initrd\n"), "{entry}");
        assert!(entry.contains("options console=ttyS0 x=y\n"), "{entry}");
        assert!(fat_read(&fs, "vmlinuz") == kernel);
        assert!(fat_read(&fs, "initrd") == ramdisk);
        // The ISO 9660 side is unchanged: the simulated machine reads isolinux.cfg.
        assert!(iso.windows(30).any(|w| w == b"APPEND initrd=/initrd console="));
    }

    /// An ESP over El Torito's 32 MiB sector count says 1: "to the end of the CD" for UEFI.
    #[test]
    fn large_esp_entry_counts_one_sector() {
        if !Path::new(SYSTEMD_BOOT_EFI).is_file() {
            eprintln!("SKIP: systemd-boot is not installed (Debian package systemd-boot-efi)");
            return;
        }
        let loaders = BootLoaders {
            isolinux_bin: Path::new(NONE),
            ldlinux: Path::new(NONE),
            systemd_boot: Path::new(SYSTEMD_BOOT_EFI),
        };
        let iso = deploy_iso_with(vec![1; 20 << 20], vec![2; 20 << 20], "", loaders).unwrap();
        let catalog = boot_catalog(&iso);
        // No isolinux: the ESP is the default entry and the UEFI section's.
        assert_eq!(catalog.len(), 2, "{catalog:?}");
        assert_eq!((catalog[1].0, catalog[1].1), (0xef, 1), "{catalog:?}");
        assert_eq!(catalog[0].2, catalog[1].2);
        let esp = &iso[catalog[1].2 as usize * 2048..];
        let fs = fatfs::FileSystem::new(Cursor::new(esp.to_vec()), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fat_read(&fs, "initrd").len(), 20 << 20);
    }
}
