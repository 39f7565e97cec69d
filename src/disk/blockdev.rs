//! Block devices as one trait, so image writing, partitioning and the iSCSI target run unchanged
//! on a real disk, a file, an in-memory disk (simulation) or a remote LUN (the iSCSI initiator's).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

/// Sector size the partition code assumes (logical block size of every device ferric writes).
pub const SECTOR: u64 = 512;

/// Zeros to write from without allocating (a zero static costs no space in the binary). Metadata
/// wipes zero a MiB at each end of a disk; a fresh zeroed MiB per wipe was 6% of a simulated
/// fleet's instructions.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Zeroes `len` bytes from `offset` with `write` (a device's `write_at`), from [`ZEROS`]: the
/// default `write_zeroes`.
pub(crate) async fn write_zeroes_with<F, Fut>(offset: u64, len: u64, mut write: F) -> io::Result<()>
where
    F: FnMut(u64, Bytes) -> Fut,
    Fut: std::future::Future<Output = io::Result<()>>,
{
    let zeros = Bytes::from_static(&ZEROS);
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        write(offset + done, zeros.slice(..n)).await?;
        done += n as u64;
    }
    Ok(())
}

/// A random-access device. Async so an in-memory disk never touches the blocking pool (which
/// keeps a paused-clock simulation deterministic) while file I/O runs off the reactor.
#[async_trait]
pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Logical block size in bytes (512 or 4096): what the iSCSI target reports for the LUN.
    fn block_size(&self) -> u32 {
        SECTOR as u32
    }
    /// Number of logical blocks.
    fn num_blocks(&self) -> u64 {
        self.size() / u64::from(self.block_size().max(1))
    }
    /// Reads exactly `len` bytes at `offset`.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;
    /// Writes all of `data` at `offset`.
    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()>;
    /// Writes `bufs` back to back from `offset` (one round trip for many network-sized pieces).
    async fn write_vectored_at(&self, offset: u64, bufs: Arc<Vec<Bytes>>) -> io::Result<()> {
        let mut off = offset;
        for b in bufs.iter() {
            self.write_at(off, b.clone()).await?;
            off += b.len() as u64;
        }
        Ok(())
    }
    /// Makes `len` bytes at `offset` read as zeros (cheaply where the device allows).
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.size(), offset, len)?;
        write_zeroes_with(offset, len, |o, b| self.write_at(o, b)).await
    }
    /// Flushes written data to stable storage.
    async fn flush(&self) -> io::Result<()>;
}

/// Refuses a range that goes past the end of a `size`-byte device (the error every device returns).
pub fn check_range(size: u64, offset: u64, len: u64) -> io::Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range {offset}+{len} is beyond the end of the device ({size} bytes)"),
        )),
    }
}

/// A regular file or a block device, written with pread/pwrite.
pub struct FileDisk {
    file: Arc<File>,
    path: PathBuf,
    size: u64,
    block_device: bool,
    block_size: u32,
    /// Set by [`FileDisk::with_early_writeback`]: bytes written since writeback last started.
    unflushed: Option<Arc<AtomicU64>>,
}

/// With early writeback, start it every this many bytes, so the final flush has little left to
/// do: with much RAM the kernel would otherwise keep a whole image dirty until SYNCHRONIZE CACHE.
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
    /// Opens an existing file or block device read-write; its current length is the disk size.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        let meta = file.metadata()?;
        let block_device = meta.file_type().is_block_device();
        let size = if block_device {
            use std::io::Seek;
            let mut f = &file;
            f.seek(io::SeekFrom::End(0))?
        } else if meta.is_file() {
            meta.len()
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is neither a regular file nor a block device", path.display()),
            ));
        };
        let block_size = if block_device { detect_block_size(path) } else { SECTOR as u32 };
        Ok(Self { file: Arc::new(file), path: path.to_owned(), size, block_device, block_size, unflushed: None })
    }

    /// The same disk seen with `block_size`-byte logical blocks (512 or 4096; an iSCSI LUN): its
    /// size is rounded down to whole blocks.
    pub fn with_block_size(mut self, block_size: u32) -> io::Result<Self> {
        if !matches!(block_size, 512 | 4096) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "block size must be 512 or 4096"));
        }
        self.block_size = block_size;
        self.size -= self.size % u64::from(block_size);
        Ok(self)
    }

    /// Starts the kernel's writeback every 32 MiB of writes (the iSCSI target: an initiator's
    /// SYNCHRONIZE CACHE then finds little left to write). The agent's own image writes do not
    /// use it: there the writeback's page locking ran on the writer's critical path.
    pub fn with_early_writeback(mut self) -> Self {
        self.unflushed = Some(Arc::new(AtomicU64::new(0)));
        self
    }

    /// Whether this is a block device (as opposed to a regular file).
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl BlockDevice for FileDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        check_range(self.size, offset, len as u64)?;
        let file = self.file.clone();
        ferric_types::blocking::io(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        check_range(self.size, offset, data.len() as u64)?;
        let file = self.file.clone();
        let kick = self.unflushed.as_ref().is_some_and(|u| {
            let n = data.len() as u64;
            let due = u.fetch_add(n, Ordering::Relaxed) + n >= WRITEBACK_EVERY;
            if due {
                u.store(0, Ordering::Relaxed);
            }
            due
        });
        ferric_types::blocking::io(move || {
            file.write_all_at(&data, offset)?;
            if kick {
                start_writeback(&file);
            }
            Ok(())
        })
        .await
    }

    async fn write_vectored_at(&self, offset: u64, bufs: Arc<Vec<Bytes>>) -> io::Result<()> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        check_range(self.size, offset, total)?;
        let file = self.file.clone();
        // Plain buffered writes, as dd's: the kernel writes back in the background and
        // `flush` (standby.sync) makes them durable. Starting writeback behind the write cursor
        // (sync_file_range) was tried: it made image writing slower (the writeback's page locking
        // and block allocation ran on the writer's critical path), and prepare + sync was no faster.
        ferric_types::blocking::io(move || pwritev_all(&file, &bufs, offset)).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.size, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let file = self.file.clone();
        let block_device = self.block_device;
        ferric_types::blocking::io(move || zero_range(&file, block_device, offset, len)).await
    }

    async fn flush(&self) -> io::Result<()> {
        let file = self.file.clone();
        if let Some(u) = &self.unflushed {
            u.store(0, Ordering::Relaxed);
        }
        ferric_types::blocking::io(move || file.sync_data()).await
    }
}

/// Writes `bufs` back to back from `offset` with as few pwritev(2) calls as the kernel allows
/// (network-sized pieces, one system call per batch instead of one per piece). std has no
/// positional vectored write on stable, hence libc.
fn pwritev_all(file: &File, bufs: &[Bytes], offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const IOV_MAX: usize = 1024;
    let mut idx = 0usize; // first piece not fully written
    let mut skip = 0usize; // bytes of bufs[idx] already written
    let mut off = offset;
    loop {
        // Empty pieces count as written.
        while idx < bufs.len() && bufs[idx].len() == skip {
            idx += 1;
            skip = 0;
        }
        if idx == bufs.len() {
            return Ok(());
        }
        let iov: Vec<libc::iovec> = bufs[idx..]
            .iter()
            .take(IOV_MAX)
            .enumerate()
            .map(|(i, b)| {
                let s = if i == 0 { &b[skip..] } else { &b[..] };
                libc::iovec { iov_base: s.as_ptr() as *mut libc::c_void, iov_len: s.len() }
            })
            .collect();
        // SAFETY: every iovec points into a live `Bytes` borrowed for the duration of the call,
        // and pwritev only reads from them.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, off as libc::off_t) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "pwritev wrote nothing"));
        }
        let mut n = n as usize;
        off += n as u64;
        while n > 0 && idx < bufs.len() {
            let left = bufs[idx].len() - skip;
            if n >= left {
                n -= left;
                idx += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
    }
}

/// Zeroes a range: punches a hole in a regular file, BLKZEROOUT on a block device, and falls back
/// to writing zeros where neither is supported.
fn zero_range(file: &File, block_device: bool, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let ok = if block_device {
        // BLKZEROOUT = _IO(0x12, 127); needs 512-byte alignment.
        const BLKZEROOUT: libc::c_ulong = 0x127f;
        if offset % SECTOR == 0 && len % SECTOR == 0 {
            let range: [u64; 2] = [offset, len];
            // SAFETY: fd is a valid open descriptor and `range` outlives the call.
            unsafe { libc::ioctl(fd, BLKZEROOUT, range.as_ptr()) == 0 }
        } else {
            false
        }
    } else {
        // SAFETY: fd is valid; fallocate only reads its scalar arguments.
        unsafe {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            ) == 0
        }
    };
    if ok {
        return Ok(());
    }
    let zeros = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
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

/// An in-memory disk for simulation and tests.
pub struct MemDisk {
    data: Mutex<Vec<u8>>,
    block_size: u32,
}

impl MemDisk {
    /// A zero-filled disk of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self { data: Mutex::new(vec![0u8; size]), block_size: SECTOR as u32 }
    }

    /// A zero-filled disk of `size` bytes (rounded down to whole blocks) with `block_size`-byte
    /// logical blocks.
    pub fn with_block_size(size: u64, block_size: u32) -> Self {
        let bs = u64::from(block_size.max(1));
        Self { data: Mutex::new(vec![0u8; (size - size % bs) as usize]), block_size: block_size.max(1) }
    }

    /// A copy of the whole content (tests compare it with the image).
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().clone()
    }
}

#[async_trait]
impl BlockDevice for MemDisk {
    fn size(&self) -> u64 {
        self.data.lock().len() as u64
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let data = self.data.lock();
        check_range(data.len() as u64, offset, len as u64)?;
        let o = offset as usize;
        Ok(Bytes::copy_from_slice(&data[o..o + len]))
    }

    async fn write_at(&self, offset: u64, buf: Bytes) -> io::Result<()> {
        let mut data = self.data.lock();
        check_range(data.len() as u64, offset, buf.len() as u64)?;
        let o = offset as usize;
        data[o..o + buf.len()].copy_from_slice(&buf);
        Ok(())
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut data = self.data.lock();
        check_range(data.len() as u64, offset, len)?;
        let o = offset as usize;
        data[o..o + len as usize].fill(0);
        Ok(())
    }

    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A window of a device (a partition), so an image can be streamed into it as into a disk.
pub struct Slice {
    inner: Arc<dyn BlockDevice>,
    offset: u64,
    len: u64,
}

impl Slice {
    /// `len` bytes of `inner` starting at `offset`.
    pub fn new(inner: Arc<dyn BlockDevice>, offset: u64, len: u64) -> io::Result<Self> {
        check_range(inner.size(), offset, len)?;
        Ok(Self { inner, offset, len })
    }
}

#[async_trait]
impl BlockDevice for Slice {
    fn size(&self) -> u64 {
        self.len
    }

    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        check_range(self.len, offset, len as u64)?;
        self.inner.read_at(self.offset + offset, len).await
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        check_range(self.len, offset, data.len() as u64)?;
        self.inner.write_at(self.offset + offset, data).await
    }

    async fn write_vectored_at(&self, offset: u64, bufs: Arc<Vec<Bytes>>) -> io::Result<()> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        check_range(self.len, offset, total)?;
        self.inner.write_vectored_at(self.offset + offset, bufs).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len, offset, len)?;
        self.inner.write_zeroes(self.offset + offset, len).await
    }

    async fn flush(&self) -> io::Result<()> {
        self.inner.flush().await
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

    #[tokio::test]
    async fn mem_and_slice_bounds() {
        let disk: Arc<dyn BlockDevice> = Arc::new(MemDisk::new(4096));
        let part = Slice::new(disk.clone(), 1024, 1024).unwrap();
        part.write_at(0, Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(&disk.read_at(1024, 3).await.unwrap()[..], b"abc");
        assert!(part.write_at(1023, Bytes::from_static(b"ab")).await.is_err());
        assert!(Slice::new(disk.clone(), 4000, 200).is_err());
        part.write_zeroes(0, 3).await.unwrap();
        assert_eq!(&disk.read_at(1024, 3).await.unwrap()[..], &[0, 0, 0]);
    }

    #[tokio::test]
    async fn file_disk_punches_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        std::fs::write(&p, vec![7u8; 1 << 20]).unwrap();
        let d = FileDisk::open(&p).unwrap();
        assert_eq!(d.size(), 1 << 20);
        d.write_zeroes(4096, 8192).await.unwrap();
        let b = d.read_at(4000, 12400).await.unwrap();
        assert!(b[..96].iter().all(|&x| x == 7));
        assert!(b[96..96 + 8192].iter().all(|&x| x == 0));
        assert!(b[96 + 8192..].iter().all(|&x| x == 7));
    }

    #[tokio::test]
    async fn file_disk_vectored_write_of_many_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        std::fs::write(&p, vec![0u8; 4 << 20]).unwrap();
        let d = FileDisk::open(&p).unwrap();
        // More pieces than IOV_MAX, some empty, odd sizes.
        let mut pieces = Vec::new();
        let mut want = Vec::new();
        for i in 0..2500usize {
            let len = if i % 7 == 0 { 0 } else { (i * 37) % 1500 + 1 };
            let piece: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            want.extend_from_slice(&piece);
            pieces.push(Bytes::from(piece));
        }
        d.write_vectored_at(4097, Arc::new(pieces)).await.unwrap();
        d.write_vectored_at(0, Arc::new(vec![Bytes::new()])).await.unwrap();
        let got = d.read_at(4097, want.len()).await.unwrap();
        assert!(got[..] == want[..]);
        assert!(d.read_at(0, 4097).await.unwrap().iter().all(|&x| x == 0));
    }

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
        let f = FileDisk::open(&p).unwrap().with_block_size(512).unwrap();
        assert_eq!(f.size(), 8192);
        let m = MemDisk::with_block_size(8192, 512);
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
        let d = MemDisk::with_block_size(3 * MIB as u64 + 4096, 512);
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
