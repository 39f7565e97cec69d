//! The disk a target serves: a block-device trait with a file-backed implementation (regular
//! file or block device, positioned reads/writes) and an in-memory one for simulation.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// A disk addressed in bytes; callers keep I/O inside `size()` and aligned to `block_size()`.
#[async_trait]
pub trait BlockDevice: Send + Sync + 'static {
    /// Logical block size in bytes (512 or 4096).
    fn block_size(&self) -> u32;
    /// Capacity in bytes (a multiple of `block_size()`).
    fn size(&self) -> u64;
    /// Reads `len` bytes at `offset`.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Writes `data` at `offset`.
    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()>;
    /// Makes `len` bytes at `offset` read as zeros. The default writes from a shared zero
    /// buffer; devices that can zero cheaply (the agent's disks) override it.
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        use crate::images::blockdev::{check_range, write_zeroes_with};
        check_range(self.size(), offset, len)?;
        write_zeroes_with(offset, len, |o, b| self.write_at(o, b)).await
    }
    /// Makes completed writes durable.
    async fn flush(&self) -> io::Result<()>;
    /// Number of logical blocks.
    fn num_blocks(&self) -> u64 {
        self.size() / u64::from(self.block_size().max(1))
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "I/O beyond the end of the disk")
}

fn check(off: u64, len: usize, size: u64) -> io::Result<()> {
    match off.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(out_of_range()),
    }
}

/// A regular file or a block device, read and written with pread/pwrite on tokio's blocking pool.
pub struct FileDisk {
    file: Arc<File>,
    size: u64,
    block_size: u32,
    /// Bytes written since writeback was last started.
    unflushed: Arc<std::sync::atomic::AtomicU64>,
}

/// Start writeback every this many bytes, so the final flush has little left to do: with much
/// RAM the kernel would otherwise keep a whole image dirty until SYNCHRONIZE CACHE.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Asks the kernel to start writing back dirty pages of `f` without waiting for them.
fn start_writeback(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its scalar arguments; the fd is valid while `f` lives.
    // Errors (e.g. on filesystems without support) only lose the optimisation.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

impl FileDisk {
    /// Opens `path` read-write; the capacity is the file (or device) size rounded down to
    /// `block_size`.
    pub fn open(path: &Path, block_size: u32) -> io::Result<Self> {
        use std::io::{Seek, SeekFrom};
        if !matches!(block_size, 512 | 4096) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "block size must be 512 or 4096"));
        }
        let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        // Seeking to the end gives the size of regular files and block devices alike.
        let len = file.seek(SeekFrom::End(0))?;
        let size = len - len % u64::from(block_size);
        Ok(Self { file: Arc::new(file), size, block_size, unflushed: Arc::new(std::sync::atomic::AtomicU64::new(0)) })
    }
}

impl FileDisk {
    /// Opens `path` with the device's logical block size (from sysfs) for block devices, 512
    /// for regular files.
    pub fn open_detect(path: &Path) -> io::Result<Self> {
        Self::open(path, detect_block_size(path))
    }
}

/// Logical block size of a block device from `/sys/dev/block/MAJ:MIN` (a partition inherits
/// its disk's); 512 for anything else or when sysfs does not say.
pub fn detect_block_size(path: &Path) -> u32 {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(md) = std::fs::metadata(path) else {
        return 512;
    };
    if !md.file_type().is_block_device() {
        return 512;
    }
    let dev = md.rdev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let base = format!("/sys/dev/block/{major}:{minor}");
    for q in ["queue/logical_block_size", "../queue/logical_block_size"] {
        if let Ok(v) = std::fs::read_to_string(format!("{base}/{q}"))
            && let Ok(n @ (512 | 4096)) = v.trim().parse::<u32>()
        {
            return n;
        }
    }
    512
}

#[async_trait]
impl BlockDevice for FileDisk {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn size(&self) -> u64 {
        self.size
    }
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        check(offset, len, self.size)?;
        let f = self.file.clone();
        crate::blocking::io(move || {
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, offset)?;
            Ok(buf)
        })
        .await
    }
    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        check(offset, data.len(), self.size)?;
        let f = self.file.clone();
        let n = data.len() as u64;
        let kick = self.unflushed.fetch_add(n, Ordering::Relaxed) + n >= WRITEBACK_EVERY;
        if kick {
            self.unflushed.store(0, Ordering::Relaxed);
        }
        crate::blocking::io(move || {
            f.write_all_at(&data, offset)?;
            if kick {
                start_writeback(&f);
            }
            Ok(())
        })
        .await
    }
    async fn flush(&self) -> io::Result<()> {
        let f = self.file.clone();
        self.unflushed.store(0, std::sync::atomic::Ordering::Relaxed);
        crate::blocking::io(move || f.sync_data()).await
    }
}

/// A disk in memory (simulation, tests).
pub struct MemDisk {
    data: parking_lot::Mutex<Vec<u8>>,
    block_size: u32,
}

impl MemDisk {
    /// A zero-filled disk of `size` bytes (rounded down to `block_size`).
    pub fn new(size: u64, block_size: u32) -> Self {
        let bs = u64::from(block_size.max(1));
        let size = (size - size % bs) as usize;
        Self { data: parking_lot::Mutex::new(vec![0; size]), block_size: block_size.max(1) }
    }
    /// A copy of the disk's contents.
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().clone()
    }
}

#[async_trait]
impl BlockDevice for MemDisk {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn size(&self) -> u64 {
        self.data.lock().len() as u64
    }
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let d = self.data.lock();
        check(offset, len, d.len() as u64)?;
        let o = offset as usize;
        Ok(d[o..o + len].to_vec())
    }
    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        let mut d = self.data.lock();
        check(offset, data.len(), d.len() as u64)?;
        let o = offset as usize;
        d[o..o + data.len()].copy_from_slice(&data);
        Ok(())
    }
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Destroys partition tables and filesystem signatures the way IPA's `wipe_disk_metadata` does
/// in effect: zeroes the first and last MiB (MBR, primary and backup GPT, most superblocks).
pub async fn wipe_metadata(disk: &dyn BlockDevice) -> io::Result<()> {
    const SPAN: u64 = 1 << 20;
    let size = disk.size();
    let head = SPAN.min(size);
    disk.write_zeroes(0, head).await?;
    let tail_start = size.saturating_sub(SPAN).max(head);
    if tail_start < size {
        disk.write_zeroes(tail_start, size - tail_start).await?;
    }
    disk.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_detection() {
        assert_eq!(detect_block_size(Path::new("/nonexistent")), 512);
        assert_eq!(detect_block_size(Path::new("/etc/hostname")), 512);
        if Path::new("/dev/vda").exists() {
            assert!(matches!(detect_block_size(Path::new("/dev/vda")), 512 | 4096));
        }
    }

    #[tokio::test]
    async fn mem_and_file_disks_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        std::fs::write(&p, vec![7u8; 8192 + 100]).unwrap();
        let f = FileDisk::open(&p, 512).unwrap();
        assert_eq!(f.size(), 8192);
        let m = MemDisk::new(8192, 512);
        for d in [&f as &dyn BlockDevice, &m] {
            d.write_at(512, Bytes::from_static(&[1u8; 512])).await.unwrap();
            assert_eq!(d.read_at(512, 512).await.unwrap(), vec![1u8; 512]);
            assert!(d.read_at(8000, 512).await.is_err());
            assert!(d.write_at(u64::MAX - 1, Bytes::from_static(&[0u8; 4])).await.is_err());
            wipe_metadata(d).await.unwrap();
            assert_eq!(d.read_at(0, 8192).await.unwrap(), vec![0u8; 8192]);
        }
    }

    #[tokio::test]
    async fn a_wipe_zeroes_a_mib_at_each_end_and_nothing_between() {
        const MIB: usize = 1 << 20;
        let d = MemDisk::new(3 * MIB as u64 + 4096, 512);
        d.write_at(0, Bytes::from(vec![0xab; d.size() as usize])).await.unwrap();
        wipe_metadata(&d).await.unwrap();
        let c = d.contents();
        let tail = c.len() - MIB;
        assert!(c[..MIB].iter().all(|&b| b == 0));
        assert!(c[MIB..tail].iter().all(|&b| b == 0xab));
        assert!(c[tail..].iter().all(|&b| b == 0));
        assert!(d.write_zeroes(d.size() - 512, 1024).await.is_err(), "zeroing past the end is refused");
    }
}
