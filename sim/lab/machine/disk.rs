//! Simulated disks: sparse and in memory, with a simulated bandwidth, injectable write errors and
//! a write hook (the lab uses it for the "nothing written to a disk that was not being deployed"
//! invariant and for agent crashes at the first write).
//!
//! A fleet of thousands of machines all holding the same image would hold thousands of copies of
//! it; a [`ContentPool`] keeps one copy of each written piece instead (compared byte for byte, so
//! every disk still holds exactly what was written to it).

use async_trait::async_trait;
use bytes::Bytes;
use ferric_disk::blockdev::{BlockDevice, check_range};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Largest number of distinct pieces a pool keeps (beyond it, new content is stored per disk).
const POOL_CAPACITY: usize = 4096;
/// Pieces larger than this are never pooled (they are rare: writes come in network-sized pieces).
const POOL_MAX_PIECE: usize = 8 << 20;

/// Shared copies of written content, keyed by length and a hash, confirmed by comparison.
#[derive(Default)]
pub struct ContentPool {
    map: Mutex<HashMap<(usize, u64), Vec<Bytes>>>,
    entries: AtomicU64,
}

/// FNV-1a over 8-byte words: fast enough to run over every written byte.
fn hash(b: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x0100_0000_01b3);
    }
    for &x in chunks.remainder() {
        h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl ContentPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// A compact copy of `b`, shared with every earlier piece of identical content.
    pub fn intern(&self, b: &[u8]) -> Bytes {
        if b.len() > POOL_MAX_PIECE {
            return Bytes::copy_from_slice(b);
        }
        let key = (b.len(), hash(b));
        let mut m = self.map.lock();
        if let Some(found) = m.get(&key).and_then(|v| v.iter().find(|x| x.as_ref() == b)) {
            return found.clone();
        }
        let copy = Bytes::copy_from_slice(b);
        if (self.entries.load(Relaxed) as usize) < POOL_CAPACITY {
            m.entry(key).or_default().push(copy.clone());
            self.entries.fetch_add(1, Relaxed);
        }
        copy
    }

    /// Distinct pieces held.
    pub fn len(&self) -> usize {
        self.entries.load(Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters of one disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskStats {
    pub writes: u64,
    pub bytes_written: u64,
    pub reads: u64,
    pub write_errors: u64,
}

/// Called before every write (offset, length); `Err` fails the write with that message.
pub type WriteHook = Arc<dyn Fn(u64, u64) -> Result<(), String> + Send + Sync>;

/// A sparse in-memory disk.
pub struct SimDisk {
    size: u64,
    extents: Mutex<BTreeMap<u64, Bytes>>,
    pool: Arc<ContentPool>,
    /// Virtual bytes per second; 0 = instantaneous.
    bandwidth: u64,
    /// Virtual bytes each real byte stands for (images are scaled down to keep fleets small).
    scale: u64,
    busy_until: Mutex<Option<tokio::time::Instant>>,
    /// Writes fail once this many bytes were written (u64::MAX: never).
    fail_after: AtomicU64,
    hook: OnceLock<WriteHook>,
    writes: AtomicU64,
    bytes_written: AtomicU64,
    reads: AtomicU64,
    write_errors: AtomicU64,
}

impl SimDisk {
    /// A blank disk of `size` bytes, writing at `bandwidth` virtual bytes per second, where each
    /// real byte stands for `scale` virtual ones.
    pub fn new(size: u64, bandwidth: u64, scale: u64, pool: Arc<ContentPool>) -> Self {
        Self {
            size,
            extents: Mutex::new(BTreeMap::new()),
            pool,
            bandwidth,
            scale: scale.max(1),
            busy_until: Mutex::new(None),
            fail_after: AtomicU64::new(u64::MAX),
            hook: OnceLock::new(),
            writes: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        }
    }

    /// Installs the write hook (once).
    pub fn set_hook(&self, hook: WriteHook) {
        let _ = self.hook.set(hook);
    }

    /// Writes fail with an I/O error once `bytes` more bytes were written (0: the next write).
    pub fn fail_writes_after(&self, bytes: u64) {
        let done = self.bytes_written.load(Relaxed);
        self.fail_after.store(done.saturating_add(bytes), Relaxed);
    }

    /// Writes succeed again.
    pub fn heal(&self) {
        self.fail_after.store(u64::MAX, Relaxed);
    }

    pub fn stats(&self) -> DiskStats {
        DiskStats {
            writes: self.writes.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            reads: self.reads.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
        }
    }

    /// Whether nothing but zeros was ever left on the disk.
    pub fn is_blank(&self) -> bool {
        self.extents.lock().is_empty()
    }

    /// Whether the disk holds exactly `expected` at `offset` (no copy of the disk is made).
    pub fn holds(&self, offset: u64, expected: &[u8]) -> bool {
        let Some(end) = offset.checked_add(expected.len() as u64) else { return false };
        if end > self.size {
            return false;
        }
        let ext = self.extents.lock();
        let mut pos = offset;
        // Walk the extents overlapping [offset, end), checking gaps are zeros in `expected`.
        let first = ext.range(..=offset).next_back().map(|(s, _)| *s).unwrap_or(offset);
        for (&start, data) in ext.range(first..end) {
            let e_end = start + data.len() as u64;
            if e_end <= pos {
                continue;
            }
            if start > pos {
                let gap = &expected[(pos - offset) as usize..(start - offset) as usize];
                if !all_zero(gap) {
                    return false;
                }
                pos = start;
            }
            let take_end = e_end.min(end);
            let have = &data[(pos - start) as usize..(take_end - start) as usize];
            if have != &expected[(pos - offset) as usize..(take_end - offset) as usize] {
                return false;
            }
            pos = take_end;
        }
        all_zero(&expected[(pos - offset) as usize..])
    }

    /// Removes [offset, end) from the extent map, keeping the parts of extents outside it.
    fn punch(ext: &mut BTreeMap<u64, Bytes>, offset: u64, end: u64) {
        if let Some((&start, data)) = ext.range(..offset).next_back() {
            let e_end = start + data.len() as u64;
            if e_end > offset {
                let data = data.clone();
                ext.insert(start, data.slice(..(offset - start) as usize));
                if e_end > end {
                    ext.insert(end, data.slice((end - start) as usize..));
                }
            }
        }
        let inside: Vec<u64> = ext.range(offset..end).map(|(s, _)| *s).collect();
        for s in inside {
            if let Some(data) = ext.remove(&s) {
                let e_end = s + data.len() as u64;
                if e_end > end {
                    ext.insert(end, data.slice((end - s) as usize..));
                }
            }
        }
    }

    /// Waits for `len` real bytes to cross the disk (`scaled`: each stands for `scale` virtual
    /// ones; zero fills such as metadata wipes have absolute sizes and are not scaled).
    async fn transfer_delay(&self, len: u64, scaled: bool) {
        if self.bandwidth == 0 || len == 0 {
            return;
        }
        let virt = if scaled { len.saturating_mul(self.scale) } else { len };
        let d = Duration::from_secs_f64(virt as f64 / self.bandwidth as f64);
        let until = {
            let mut b = self.busy_until.lock();
            let now = tokio::time::Instant::now();
            let start = b.map_or(now, |t| t.max(now));
            let until = start + d;
            *b = Some(until);
            until
        };
        tokio::time::sleep_until(until).await;
    }

    fn admit(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.size, offset, len)?;
        if let Some(h) = self.hook.get() {
            h(offset, len).map_err(|m| {
                self.write_errors.fetch_add(1, Relaxed);
                io::Error::other(m)
            })?;
        }
        let done = self.bytes_written.load(Relaxed);
        if done.saturating_add(len) > self.fail_after.load(Relaxed) {
            self.write_errors.fetch_add(1, Relaxed);
            return Err(io::Error::other("simulated disk write error: Input/output error (EIO)"));
        }
        self.writes.fetch_add(1, Relaxed);
        self.bytes_written.fetch_add(len, Relaxed);
        Ok(())
    }
}

#[async_trait]
impl BlockDevice for SimDisk {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        check_range(self.size, offset, len as u64)?;
        self.reads.fetch_add(1, Relaxed);
        let end = offset + len as u64;
        let ext = self.extents.lock();
        let mut out = vec![0u8; len];
        let first = ext.range(..=offset).next_back().map(|(s, _)| *s).unwrap_or(offset);
        for (&start, data) in ext.range(first..end) {
            let e_end = start + data.len() as u64;
            if e_end <= offset {
                continue;
            }
            let from = start.max(offset);
            let to = e_end.min(end);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
        }
        Ok(Bytes::from(out))
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        let len = data.len() as u64;
        self.admit(offset, len)?;
        // Image data is scaled down by the lab; a block of zeros written as data (by a device
        // without a `write_zeroes` of its own) is not, so it costs its own length and stays
        // sparse. Metadata wipes come through `write_zeroes`.
        let zeros = all_zero(&data);
        self.transfer_delay(len, !zeros).await;
        if len == 0 {
            return Ok(());
        }
        if zeros {
            Self::punch(&mut self.extents.lock(), offset, offset + len);
            return Ok(());
        }
        let piece = self.pool.intern(&data);
        let mut ext = self.extents.lock();
        Self::punch(&mut ext, offset, offset + len);
        ext.insert(offset, piece);
        Ok(())
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.admit(offset, len)?;
        let mut ext = self.extents.lock();
        Self::punch(&mut ext, offset, offset + len);
        Ok(())
    }

    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether `b` is all zero bytes. OR-folding fixed blocks lets the compiler vectorise the check
/// (a byte-wise `all` with its early exit does not): every data write is checked, and the
/// byte-wise loop was 5% of a fleet simulation's CPU when wipes still wrote megabytes of zeros.
fn all_zero(b: &[u8]) -> bool {
    b.chunks(4096).all(|c| c.iter().fold(0u8, |acc, x| acc | x) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_finds_any_set_byte() {
        assert!(all_zero(&[]));
        assert!(all_zero(&vec![0u8; 10_000]));
        for at in [0usize, 1, 4095, 4096, 9_999] {
            let mut v = vec![0u8; 10_000];
            v[at] = 0x80;
            assert!(!all_zero(&v), "byte {at}");
        }
    }

    fn disk() -> SimDisk {
        SimDisk::new(1 << 20, 0, 1, Arc::new(ContentPool::new()))
    }

    #[tokio::test]
    async fn sparse_writes_overlap_and_read_back() {
        let d = disk();
        d.write_at(100, Bytes::from(vec![1u8; 50])).await.unwrap();
        d.write_at(120, Bytes::from(vec![2u8; 10])).await.unwrap();
        d.write_at(90, Bytes::from(vec![3u8; 15])).await.unwrap();
        let r = d.read_at(80, 80).await.unwrap();
        let mut want = vec![0u8; 80];
        want[10..25].fill(3);
        want[25..40].fill(1);
        want[40..50].fill(2);
        want[50..70].fill(1);
        assert_eq!(&r[..], &want[..]);
        assert!(d.holds(80, &want));
        want[0] = 9;
        assert!(!d.holds(80, &want));
        d.write_zeroes(0, 1 << 20).await.unwrap();
        assert!(d.is_blank());
        assert!(d.write_at((1 << 20) - 1, Bytes::from_static(b"xy")).await.is_err());
    }

    #[tokio::test]
    async fn pool_shares_identical_pieces_and_faults_fail_writes() {
        let pool = Arc::new(ContentPool::new());
        let a = SimDisk::new(1 << 20, 0, 1, pool.clone());
        let b = SimDisk::new(1 << 20, 0, 1, pool.clone());
        let img = Bytes::from((0..4096u32).map(|i| i as u8).collect::<Vec<_>>());
        a.write_at(0, img.clone()).await.unwrap();
        b.write_at(0, img.clone()).await.unwrap();
        assert_eq!(pool.len(), 1);
        assert!(a.holds(0, &img) && b.holds(0, &img));
        b.fail_writes_after(10);
        assert!(b.write_at(0, img.clone()).await.is_err());
        assert_eq!(b.stats().write_errors, 1);
        b.heal();
        b.write_at(0, img).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_is_virtual_time() {
        let d = SimDisk::new(1 << 30, 100 << 20, 1024, Arc::new(ContentPool::new()));
        let t = tokio::time::Instant::now();
        // 100 KiB real = 100 MiB virtual at 100 MiB/s: one virtual second.
        d.write_at(0, Bytes::from(vec![7u8; 100 << 10])).await.unwrap();
        assert_eq!(t.elapsed(), Duration::from_secs(1));
    }
}
