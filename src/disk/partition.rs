//! GPT and MBR partition tables over a [`BlockDevice`]: the layout for partition images (root,
//! swap, ephemeral, config drive, boot partitions as ironic-python-agent makes them) and the
//! `config-2` partition added at the end of a disk holding a whole-disk image.
//!
//! Hand-written (UEFI spec 2.10 §5.2-5.3 and the classic MBR layout) because the tables must be
//! written through an async device trait (file, memory, iSCSI LUN) and the available crates need a
//! synchronous `Read + Write + Seek` device spanning the whole disk.

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::blockdev::{BlockDevice, SECTOR};

const MIB: u64 = 1 << 20;
const ALIGN_LBA: u64 = MIB / SECTOR;
const GPT_ENTRIES: u32 = 128;
const GPT_ENTRY_SIZE: u32 = 128;
const GPT_ENTRIES_SECTORS: u64 = (GPT_ENTRIES as u64 * GPT_ENTRY_SIZE as u64) / SECTOR;

/// GPT partition type GUIDs.
pub mod gpt_type {
    /// Linux filesystem data.
    pub const LINUX: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
    /// Linux swap.
    pub const SWAP: &str = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f";
    /// EFI system partition.
    pub const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
    /// BIOS boot partition (GRUB on GPT disks booted by BIOS).
    pub const BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";
}

/// Errors of the partition code.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The device failed.
    #[error("disk I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The requested layout does not fit on the disk.
    #[error("partition layout does not fit: {0}")]
    NoSpace(String),
    /// The request is invalid (too many MBR partitions, bad label...).
    #[error("invalid partition request: {0}")]
    Invalid(String),
    /// The existing table cannot be used.
    #[error("unusable partition table: {0}")]
    Corrupt(String),
}

/// Partition table kind (`disk_label` in Ironic's instance_info: `gpt` or `msdos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskLabel {
    /// GUID partition table.
    Gpt,
    /// Classic MBR ("msdos" in parted's words).
    Msdos,
}

impl DiskLabel {
    /// Ironic's rule: an explicit `disk_label`, else GPT for UEFI and MBR for BIOS.
    pub fn choose(disk_label: Option<&str>, boot_mode: Option<&str>) -> Result<Self, PartitionError> {
        match disk_label {
            Some("gpt") => Ok(Self::Gpt),
            Some("msdos") | Some("mbr") => Ok(Self::Msdos),
            Some(other) => Err(PartitionError::Invalid(format!("disk_label must be gpt or msdos, not {other:?}"))),
            None if boot_mode == Some("uefi") => Ok(Self::Gpt),
            None => Ok(Self::Msdos),
        }
    }
}

/// What a partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartRole {
    /// EFI system partition (UEFI local boot).
    EfiSystem,
    /// BIOS boot partition (BIOS local boot on GPT).
    BiosBoot,
    /// Ephemeral data partition.
    Ephemeral,
    /// Swap.
    Swap,
    /// Config drive (`config-2`).
    ConfigDrive,
    /// Root filesystem: the image goes here.
    Root,
    /// A partition this code did not create.
    Other,
}

impl PartRole {
    fn gpt_name(self) -> &'static str {
        match self {
            Self::EfiSystem => "efi-system",
            Self::BiosBoot => "bios-boot",
            Self::Ephemeral => "ephemeral",
            Self::Swap => "swap",
            Self::ConfigDrive => "config-2",
            Self::Root => "root",
            Self::Other => "",
        }
    }
    fn gpt_type(self) -> &'static str {
        match self {
            Self::EfiSystem => gpt_type::ESP,
            Self::BiosBoot => gpt_type::BIOS_BOOT,
            Self::Swap => gpt_type::SWAP,
            _ => gpt_type::LINUX,
        }
    }
    fn mbr_type(self) -> u8 {
        match self {
            Self::EfiSystem => 0xef,
            Self::Swap => 0x82,
            _ => 0x83,
        }
    }
}

/// The partitions wanted for a partition image (from Ironic's instance_info / image_info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRequest {
    /// Table kind.
    pub label: DiskLabel,
    /// Root size in MiB; 0 takes the rest of the disk.
    pub root_mb: u64,
    /// Swap size in MiB; 0 for none.
    pub swap_mb: u64,
    /// Ephemeral size in MiB; 0 for none.
    pub ephemeral_mb: u64,
    /// Config drive size in MiB; 0 for none.
    pub configdrive_mb: u64,
    /// `uefi` or `bios`.
    pub uefi: bool,
    /// Local boot: adds an EFI system partition (UEFI) or a BIOS boot partition (BIOS on GPT).
    pub local_boot: bool,
}

/// Size of the EFI system partition IPA creates for UEFI local boot.
pub const ESP_MB: u64 = 550;
/// Size of the BIOS boot partition IPA creates for BIOS local boot on GPT.
pub const BIOS_BOOT_MB: u64 = 1;
/// Size of a config drive partition (IPA's maximum config drive size).
pub const CONFIGDRIVE_MB: u64 = 64;

/// One partition in a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// 1-based number, as Linux names it (`sda1`).
    pub number: u32,
    /// What it holds.
    pub role: PartRole,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// PARTUUID as Linux shows it: the GPT unique GUID, or `SSSSSSSS-NN` on MBR.
    pub uuid: String,
    /// GPT partition name (empty on MBR).
    pub name: String,
}

/// A partition table as read or written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionTable {
    /// Kind.
    pub label: DiskLabel,
    /// GPT disk GUID, or the MBR disk signature as `0xSSSSSSSS` (IPA's disk identifier form).
    pub disk_id: String,
    /// Partitions in table order.
    pub partitions: Vec<Partition>,
}

impl PartitionTable {
    /// The partition with this role, if any.
    pub fn find(&self, role: PartRole) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.role == role)
    }
}

fn random_uuid<R: Rng + ?Sized>(rng: &mut R) -> Uuid {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

fn parse_guid(s: &str) -> [u8; 16] {
    Uuid::parse_str(s).map(|u| u.to_bytes_le()).unwrap_or([0; 16])
}

/// Creates a fresh table with the requested partitions in IPA's order (boot partition, ephemeral,
/// swap, config drive, root last), 1 MiB aligned. Wipes any previous table, GPT backup included.
pub async fn create_layout<R: Rng + ?Sized>(
    dev: &dyn BlockDevice,
    req: &LayoutRequest,
    rng: &mut R,
) -> Result<PartitionTable, PartitionError> {
    let mut wanted: Vec<(PartRole, u64)> = Vec::new();
    if req.local_boot && req.uefi {
        wanted.push((PartRole::EfiSystem, ESP_MB));
    }
    if req.local_boot && !req.uefi && req.label == DiskLabel::Gpt {
        wanted.push((PartRole::BiosBoot, BIOS_BOOT_MB));
    }
    for (role, mb) in [
        (PartRole::Ephemeral, req.ephemeral_mb),
        (PartRole::Swap, req.swap_mb),
        (PartRole::ConfigDrive, req.configdrive_mb),
    ] {
        if mb > 0 {
            wanted.push((role, mb));
        }
    }
    wanted.push((PartRole::Root, req.root_mb));
    if req.label == DiskLabel::Msdos && wanted.len() > 4 {
        return Err(PartitionError::Invalid(format!(
            "an msdos label holds 4 primary partitions, {} were requested",
            wanted.len()
        )));
    }
    let total = dev.size() / SECTOR;
    let (first, last) = match req.label {
        DiskLabel::Gpt => (ALIGN_LBA, total.saturating_sub(2 + GPT_ENTRIES_SECTORS)),
        DiskLabel::Msdos => (ALIGN_LBA, total.min(u32::MAX as u64).saturating_sub(1)),
    };
    let mut next = first;
    let mut spans = Vec::new();
    for (i, (role, mb)) in wanted.iter().enumerate() {
        let size = if *mb == 0 {
            if i + 1 != wanted.len() {
                return Err(PartitionError::Invalid("only root may take the rest of the disk".into()));
            }
            (last + 1).saturating_sub(next) / ALIGN_LBA * ALIGN_LBA
        } else {
            mb.checked_mul(ALIGN_LBA).ok_or_else(|| PartitionError::Invalid("size overflows".into()))?
        };
        if size == 0 || next + size > last + 1 {
            return Err(PartitionError::NoSpace(format!(
                "{role:?} partition of {} MiB does not fit on a disk of {} MiB",
                size / ALIGN_LBA,
                dev.size() / MIB
            )));
        }
        spans.push((*role, next, size));
        next += size;
    }
    // Clear the first MiB (old MBR/GPT, boot code) and the end (old backup GPT).
    dev.write_zeroes(0, (ALIGN_LBA * SECTOR).min(dev.size())).await?;
    let tail = (ALIGN_LBA * SECTOR).min(dev.size());
    dev.write_zeroes(dev.size() - tail, tail).await?;
    match req.label {
        DiskLabel::Gpt => {
            let disk_guid = random_uuid(rng);
            let mut parts = Vec::new();
            for (i, (role, start, size)) in spans.into_iter().enumerate() {
                parts.push(GptEntry {
                    type_guid: parse_guid(role.gpt_type()),
                    unique: random_uuid(rng),
                    first: start,
                    last: start + size - 1,
                    attrs: 0,
                    name: role.gpt_name().to_string(),
                    role,
                    index: i,
                });
            }
            let layout = GptLayout::fresh(total, GPT_ENTRIES, GPT_ENTRY_SIZE, disk_guid);
            write_gpt(dev, &layout, &parts).await?;
            Ok(gpt_table(disk_guid, &parts))
        }
        DiskLabel::Msdos => {
            let sig = loop {
                let s = rng.next_u32();
                if s != 0 {
                    break s;
                }
            };
            let mut mbr = [0u8; 512];
            mbr[440..444].copy_from_slice(&sig.to_le_bytes());
            let mut parts = Vec::new();
            for (i, (role, start, size)) in spans.into_iter().enumerate() {
                let boot = role == PartRole::Root && req.local_boot && !req.uefi;
                write_mbr_entry(&mut mbr, i, boot, role.mbr_type(), start, size);
                parts.push(Partition {
                    number: i as u32 + 1,
                    role,
                    offset: start * SECTOR,
                    size: size * SECTOR,
                    uuid: format!("{sig:08x}-{:02x}", i + 1),
                    name: String::new(),
                });
            }
            mbr[510] = 0x55;
            mbr[511] = 0xaa;
            dev.write_at(0, Bytes::copy_from_slice(&mbr)).await?;
            dev.flush().await?;
            Ok(PartitionTable { label: DiskLabel::Msdos, disk_id: format!("0x{sig:08x}"), partitions: parts })
        }
    }
}

fn chs(lba: u64) -> [u8; 3] {
    let (heads, spt) = (255u64, 63u64);
    let c = lba / (heads * spt);
    if c > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let h = (lba / spt) % heads;
    let s = lba % spt + 1;
    [h as u8, (s as u8) | (((c >> 8) as u8) << 6), c as u8]
}

fn write_mbr_entry(mbr: &mut [u8; 512], slot: usize, boot: bool, ptype: u8, start: u64, size: u64) {
    let e = &mut mbr[446 + slot * 16..446 + (slot + 1) * 16];
    e[0] = if boot { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&chs(start));
    e[4] = ptype;
    e[5..8].copy_from_slice(&chs(start + size - 1));
    e[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(size as u32).to_le_bytes());
}

#[derive(Debug, Clone)]
struct GptEntry {
    type_guid: [u8; 16],
    unique: Uuid,
    first: u64,
    last: u64,
    attrs: u64,
    name: String,
    role: PartRole,
    /// Slot in the entries array.
    index: usize,
}

#[derive(Debug, Clone)]
struct GptLayout {
    total: u64,
    entries: u32,
    entry_size: u32,
    disk_guid: Uuid,
}

impl GptLayout {
    fn fresh(total: u64, entries: u32, entry_size: u32, disk_guid: Uuid) -> Self {
        Self { total, entries, entry_size, disk_guid }
    }
    fn entries_sectors(&self) -> u64 {
        (self.entries as u64 * self.entry_size as u64).div_ceil(SECTOR)
    }
    fn first_usable(&self) -> u64 {
        2 + self.entries_sectors()
    }
    fn last_usable(&self) -> u64 {
        self.total - 2 - self.entries_sectors()
    }
}

fn gpt_table(disk_guid: Uuid, parts: &[GptEntry]) -> PartitionTable {
    let mut partitions: Vec<Partition> = parts
        .iter()
        .map(|p| Partition {
            number: p.index as u32 + 1,
            role: p.role,
            offset: p.first * SECTOR,
            size: (p.last - p.first + 1) * SECTOR,
            uuid: p.unique.to_string(),
            name: p.name.clone(),
        })
        .collect();
    partitions.sort_by_key(|p| p.number);
    PartitionTable { label: DiskLabel::Gpt, disk_id: disk_guid.to_string(), partitions }
}

/// Writes protective MBR, both headers and both entry arrays.
async fn write_gpt(dev: &dyn BlockDevice, l: &GptLayout, parts: &[GptEntry]) -> Result<(), PartitionError> {
    if l.total < 2 * (2 + l.entries_sectors()) + ALIGN_LBA {
        return Err(PartitionError::NoSpace("disk too small for a GPT".into()));
    }
    let mut entries = vec![0u8; (l.entries_sectors() * SECTOR) as usize];
    for p in parts {
        let o = p.index * l.entry_size as usize;
        let e = &mut entries[o..o + 128];
        e[0..16].copy_from_slice(&p.type_guid);
        e[16..32].copy_from_slice(&p.unique.to_bytes_le());
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        e[48..56].copy_from_slice(&p.attrs.to_le_bytes());
        for (i, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
    }
    let array_len = l.entries as usize * l.entry_size as usize;
    let entries_crc = crc32fast::hash(&entries[..array_len]);
    let backup_entries = l.total - 1 - l.entries_sectors();
    let header = |my: u64, alt: u64, entries_lba: u64| {
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&l.first_usable().to_le_bytes());
        h[48..56].copy_from_slice(&l.last_usable().to_le_bytes());
        h[56..72].copy_from_slice(&l.disk_guid.to_bytes_le());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&l.entries.to_le_bytes());
        h[84..88].copy_from_slice(&l.entry_size.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut pmbr = [0u8; 512];
    {
        let e = &mut pmbr[446..462];
        e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
        e[4] = 0xee;
        e[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
        e[8..12].copy_from_slice(&1u32.to_le_bytes());
        e[12..16].copy_from_slice(&((l.total - 1).min(u32::MAX as u64) as u32).to_le_bytes());
    }
    pmbr[510] = 0x55;
    pmbr[511] = 0xaa;
    let entries = Bytes::from(entries);
    dev.write_at(0, Bytes::copy_from_slice(&pmbr)).await?;
    dev.write_at(SECTOR, Bytes::copy_from_slice(&header(1, l.total - 1, 2))).await?;
    dev.write_at(2 * SECTOR, entries.clone()).await?;
    dev.write_at(backup_entries * SECTOR, entries).await?;
    dev.write_at((l.total - 1) * SECTOR, Bytes::copy_from_slice(&header(l.total - 1, 1, backup_entries))).await?;
    dev.flush().await?;
    Ok(())
}

struct ReadGpt {
    layout: GptLayout,
    parts: Vec<GptEntry>,
    /// Where the backup header was (an image smaller than the disk leaves it mid-disk).
    alternate: u64,
}

async fn read_gpt(dev: &dyn BlockDevice) -> Result<ReadGpt, PartitionError> {
    let total = dev.size() / SECTOR;
    let h = dev.read_at(SECTOR, SECTOR as usize).await?;
    if &h[0..8] != b"EFI PART" {
        return Err(PartitionError::Corrupt("protective MBR without a GPT header".into()));
    }
    let le32 = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let le64 = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let hsize = le32(12) as usize;
    if !(92..=512).contains(&hsize) {
        return Err(PartitionError::Corrupt(format!("GPT header size {hsize}")));
    }
    let mut copy = h[..hsize].to_vec();
    copy[16..20].fill(0);
    if crc32fast::hash(&copy) != le32(16) {
        return Err(PartitionError::Corrupt("GPT header CRC mismatch".into()));
    }
    let entries = le32(80);
    let entry_size = le32(84);
    if entries == 0 || entries > 1024 || !(128..=1024).contains(&entry_size) || entry_size % 8 != 0 {
        return Err(PartitionError::Corrupt(format!("GPT with {entries} entries of {entry_size} bytes")));
    }
    let entries_lba = le64(72);
    let array_len = entries as usize * entry_size as usize;
    if entries_lba < 2 || entries_lba.saturating_add(array_len as u64 / SECTOR) >= total {
        return Err(PartitionError::Corrupt("GPT entries outside the disk".into()));
    }
    let array = dev.read_at(entries_lba * SECTOR, array_len).await?;
    if crc32fast::hash(&array) != le32(88) {
        return Err(PartitionError::Corrupt("GPT entries CRC mismatch".into()));
    }
    let disk_guid = Uuid::from_bytes_le(h[56..72].try_into().unwrap_or([0; 16]));
    let mut parts = Vec::new();
    for i in 0..entries as usize {
        let e = &array[i * entry_size as usize..i * entry_size as usize + 128];
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let mut type_guid = [0u8; 16];
        type_guid.copy_from_slice(&e[0..16]);
        let unique = Uuid::from_bytes_le(e[16..32].try_into().unwrap_or([0; 16]));
        let rd = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&e[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let units: Vec<u16> =
            e[56..128].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
        let name = String::from_utf16_lossy(&units);
        let (first, last) = (rd(32), rd(40));
        if last < first || last >= total {
            return Err(PartitionError::Corrupt(format!("GPT partition {} outside the disk", i + 1)));
        }
        let role = if name == "config-2" { PartRole::ConfigDrive } else { PartRole::Other };
        parts.push(GptEntry { type_guid, unique, first, last, attrs: rd(48), name, role, index: i });
    }
    Ok(ReadGpt { layout: GptLayout { total, entries, entry_size, disk_guid }, parts, alternate: le64(32) })
}

/// Reads the table on a disk: `None` if it has none.
pub async fn read_table(dev: &dyn BlockDevice) -> Result<Option<PartitionTable>, PartitionError> {
    if dev.size() < 2 * SECTOR {
        return Ok(None);
    }
    let mbr = dev.read_at(0, SECTOR as usize).await?;
    if mbr[510] != 0x55 || mbr[511] != 0xaa {
        return Ok(None);
    }
    if (0..4).any(|i| mbr[446 + i * 16 + 4] == 0xee) {
        let g = read_gpt(dev).await?;
        return Ok(Some(gpt_table(g.layout.disk_guid, &g.parts)));
    }
    let sig = u32::from_le_bytes([mbr[440], mbr[441], mbr[442], mbr[443]]);
    let mut partitions = Vec::new();
    for i in 0..4 {
        let e = &mbr[446 + i * 16..446 + (i + 1) * 16];
        let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as u64;
        let size = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as u64;
        if e[4] == 0 || size == 0 {
            continue;
        }
        partitions.push(Partition {
            number: i as u32 + 1,
            role: PartRole::Other,
            offset: start * SECTOR,
            size: size * SECTOR,
            uuid: format!("{sig:08x}-{:02x}", i + 1),
            name: String::new(),
        });
    }
    Ok(Some(PartitionTable { label: DiskLabel::Msdos, disk_id: format!("0x{sig:08x}"), partitions }))
}

/// Adds (or reuses) a `config-2` partition of `size_mb` at the end of a disk that holds a
/// whole-disk image, moving a GPT's backup structures to the real end of the disk first, as IPA
/// does. Returns the partition to write the config drive into.
pub async fn add_configdrive_partition<R: Rng + ?Sized>(
    dev: &dyn BlockDevice,
    size_mb: u64,
    rng: &mut R,
) -> Result<Partition, PartitionError> {
    let Some(table) = read_table(dev).await? else {
        return Err(PartitionError::Invalid(
            "the image has no partition table to add a config drive partition to".into(),
        ));
    };
    let size = size_mb * ALIGN_LBA;
    match table.label {
        DiskLabel::Gpt => {
            let mut g = read_gpt(dev).await?;
            if let Some(p) = g.parts.iter().find(|p| p.name == "config-2") {
                return Ok(gpt_table(g.layout.disk_guid, std::slice::from_ref(p)).partitions.remove(0));
            }
            let used_end = g.parts.iter().map(|p| p.last + 1).max().unwrap_or(g.layout.first_usable());
            let last = g.layout.last_usable();
            let start = (last + 1).saturating_sub(size) / ALIGN_LBA * ALIGN_LBA;
            if start < used_end || start < g.layout.first_usable() {
                return Err(PartitionError::NoSpace(format!(
                    "no room for a {size_mb} MiB config drive partition after the image"
                )));
            }
            let used: Vec<usize> = g.parts.iter().map(|p| p.index).collect();
            let index = (0..g.layout.entries as usize)
                .find(|i| !used.contains(i))
                .ok_or_else(|| PartitionError::NoSpace("GPT has no free entry".into()))?;
            let entry = GptEntry {
                type_guid: parse_guid(gpt_type::LINUX),
                unique: random_uuid(rng),
                first: start,
                last: start + size - 1,
                attrs: 0,
                name: "config-2".into(),
                role: PartRole::ConfigDrive,
                index,
            };
            g.parts.push(entry.clone());
            if g.alternate != g.layout.total - 1 && g.alternate < g.layout.total && g.alternate >= used_end {
                // The old backup header sits inside free space now; clear it.
                dev.write_zeroes(g.alternate * SECTOR, SECTOR).await?;
            }
            write_gpt(dev, &g.layout, &g.parts).await?;
            Ok(gpt_table(g.layout.disk_guid, &[entry]).partitions.remove(0))
        }
        DiskLabel::Msdos => {
            let mut mbr_bytes = [0u8; 512];
            mbr_bytes.copy_from_slice(&dev.read_at(0, SECTOR as usize).await?);
            let used_slots: Vec<u32> = table.partitions.iter().map(|p| p.number).collect();
            let slot = (1..=4u32)
                .find(|n| !used_slots.contains(n))
                .ok_or_else(|| PartitionError::NoSpace("all 4 primary MBR partitions are in use".into()))?;
            let total = (dev.size() / SECTOR).min(u32::MAX as u64);
            let used_end = table.partitions.iter().map(|p| (p.offset + p.size) / SECTOR).max().unwrap_or(1);
            let start = total.saturating_sub(size) / ALIGN_LBA * ALIGN_LBA;
            if start < used_end || start == 0 {
                return Err(PartitionError::NoSpace(format!(
                    "no room for a {size_mb} MiB config drive partition after the image"
                )));
            }
            write_mbr_entry(&mut mbr_bytes, slot as usize - 1, false, 0x83, start, size);
            dev.write_at(0, Bytes::copy_from_slice(&mbr_bytes)).await?;
            dev.flush().await?;
            let sig = u32::from_le_bytes([mbr_bytes[440], mbr_bytes[441], mbr_bytes[442], mbr_bytes[443]]);
            Ok(Partition {
                number: slot,
                role: PartRole::ConfigDrive,
                offset: start * SECTOR,
                size: size * SECTOR,
                uuid: format!("{sig:08x}-{slot:02x}"),
                name: String::new(),
            })
        }
    }
}

/// The disk identifier IPA reports as a whole-disk image's `root uuid`: the 32-bit MBR disk
/// signature at byte 440, as `0xSSSSSSSS`.
pub async fn disk_identifier(dev: &dyn BlockDevice) -> Result<String, PartitionError> {
    let b = dev.read_at(440, 4).await?;
    Ok(format!("0x{:08x}", u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

/// A filesystem UUID (ext2/3/4 or XFS) at the start of a partition, if one is recognised.
pub async fn filesystem_uuid(part: &dyn BlockDevice) -> Option<String> {
    if part.size() >= 2048 {
        if let Ok(sb) = part.read_at(1024, 1024).await {
            if sb[0x38] == 0x53 && sb[0x39] == 0xef {
                return Uuid::from_slice(&sb[0x68..0x78]).ok().map(|u| u.to_string());
            }
        }
    }
    if let Ok(sb) = part.read_at(0, 64).await {
        if &sb[0..4] == b"XFSB" {
            return Uuid::from_slice(&sb[32..48]).ok().map(|u| u.to_string());
        }
    }
    None
}

/// A partition of `dev` as a device of its own.
pub fn partition_device(dev: Arc<dyn BlockDevice>, part: &Partition) -> Result<super::blockdev::Slice, PartitionError> {
    Ok(super::blockdev::Slice::new(dev, part.offset, part.size)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDisk;
    use rand::SeedableRng;

    fn req(label: DiskLabel) -> LayoutRequest {
        LayoutRequest {
            label,
            root_mb: 16,
            swap_mb: 4,
            ephemeral_mb: 2,
            configdrive_mb: 1,
            uefi: false,
            local_boot: false,
        }
    }

    #[tokio::test]
    async fn gpt_round_trip() {
        let d = MemDisk::new(64 << 20);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let t = create_layout(&d, &req(DiskLabel::Gpt), &mut rng).await.unwrap();
        assert_eq!(t.partitions.len(), 4);
        assert_eq!(t.find(PartRole::Root).unwrap().size, 16 << 20);
        let r = read_table(&d).await.unwrap().unwrap();
        assert_eq!(r.disk_id, t.disk_id);
        assert_eq!(r.partitions.len(), 4);
        assert_eq!(r.partitions[3].uuid, t.find(PartRole::Root).unwrap().uuid);
        assert_eq!(r.partitions[2].role, PartRole::ConfigDrive);
    }

    #[tokio::test]
    async fn mbr_round_trip_and_limits() {
        let d = MemDisk::new(64 << 20);
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let t = create_layout(&d, &req(DiskLabel::Msdos), &mut rng).await.unwrap();
        let r = read_table(&d).await.unwrap().unwrap();
        assert_eq!(r.disk_id, t.disk_id);
        assert_eq!(r.partitions.len(), 4);
        let mut big = req(DiskLabel::Msdos);
        big.root_mb = 1000;
        assert!(matches!(create_layout(&d, &big, &mut rng).await, Err(PartitionError::NoSpace(_))));
        let mut five = req(DiskLabel::Msdos);
        five.local_boot = true;
        five.uefi = true;
        assert!(matches!(create_layout(&d, &five, &mut rng).await, Err(PartitionError::Invalid(_))));
    }

    #[tokio::test]
    async fn configdrive_added_after_small_gpt_image() {
        // A 16 MiB "image" with its own GPT, written to a 64 MiB disk.
        let img = MemDisk::new(16 << 20);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut r = req(DiskLabel::Gpt);
        r.swap_mb = 0;
        r.ephemeral_mb = 0;
        r.configdrive_mb = 0;
        r.root_mb = 0;
        create_layout(&img, &r, &mut rng).await.unwrap();
        let d = MemDisk::new(64 << 20);
        d.write_at(0, Bytes::from(img.contents())).await.unwrap();
        let p = add_configdrive_partition(&d, 8, &mut rng).await.unwrap();
        assert_eq!(p.offset + p.size, 63u64 << 20);
        let t = read_table(&d).await.unwrap().unwrap();
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(t.find(PartRole::ConfigDrive).unwrap().name, "config-2");
        // Reused, not duplicated.
        let again = add_configdrive_partition(&d, 8, &mut rng).await.unwrap();
        assert_eq!(again.uuid, p.uuid);
    }
}
