//! Conductor-side image cache for deploy kernels/ramdisks and instance images.
//!
//! Images are fetched once (http, https or file URLs), checksum-verified while streaming, stored
//! under a content key, and hard-linked into the TFTP/HTTP roots. A link count above one means an
//! entry is in use; unused entries are evicted least-recently-used first when the cache exceeds
//! its size bound. Concurrent requests for the same image wait for one download.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use md5::Md5;
use parking_lot::Mutex;
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Errors of the image cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("unsupported image URL {0:?}")]
    Url(String),
    #[error("invalid checksum {0:?}")]
    ChecksumFormat(String),
    #[error("md5 checksums are not allowed")]
    Md5NotAllowed,
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch { url: String, expected: String, actual: String },
    #[error("image {url} is larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("cache file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// An expected image digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Sha256(String),
    Sha512(String),
    Md5(String),
}

impl FromStr for Checksum {
    type Err = CacheError;
    /// Accepts `sha256:<hex>`, `sha512:<hex>`, `md5:<hex>`, or bare hex recognised by length
    /// (Ironic's `image_checksum`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CacheError::ChecksumFormat(s.to_owned());
        let (algo, hex) = match s.split_once(':') {
            Some((a, h)) => (a.to_ascii_lowercase(), h),
            None => (
                match s.len() {
                    64 => "sha256".into(),
                    128 => "sha512".into(),
                    32 => "md5".into(),
                    _ => return Err(bad()),
                },
                s,
            ),
        };
        let hex = hex.to_ascii_lowercase();
        let want = match algo.as_str() {
            "sha256" => 64,
            "sha512" => 128,
            "md5" => 32,
            _ => return Err(bad()),
        };
        if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(match algo.as_str() {
            "sha256" => Checksum::Sha256(hex),
            "sha512" => Checksum::Sha512(hex),
            _ => Checksum::Md5(hex),
        })
    }
}

impl Checksum {
    fn key(&self) -> String {
        match self {
            Checksum::Sha256(h) => format!("sha256-{h}"),
            Checksum::Sha512(h) => format!("sha512-{h}"),
            Checksum::Md5(h) => format!("md5-{h}"),
        }
    }
    fn hex(&self) -> &str {
        match self {
            Checksum::Sha256(h) | Checksum::Sha512(h) | Checksum::Md5(h) => h,
        }
    }
}

/// An image to cache: where it comes from and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub url: String,
    pub checksum: Option<Checksum>,
}

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// Total bytes the cache aims to stay under (in-use entries are never evicted).
    pub max_bytes: u64,
    /// Largest single image accepted.
    pub max_image_bytes: u64,
    /// Accept `md5` checksums (weak; off unless an operator opts in, as in Ironic).
    pub allow_md5: bool,
    /// Whole-request timeout for one fetch.
    pub fetch_timeout: Duration,
}

impl CacheConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 20 << 30,
            max_image_bytes: 16 << 30,
            allow_md5: false,
            fetch_timeout: Duration::from_secs(1800),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    last_used: u64,
}

/// The image cache. Cheap to share behind an `Arc`.
pub struct ImageCache {
    cfg: CacheConfig,
    http: reqwest::Client,
    index: Mutex<HashMap<String, Entry>>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tick: AtomicU64,
    downloads: AtomicU64,
    tmp_seq: AtomicU64,
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
    Md5(Md5),
    None,
}

impl Hasher {
    fn new(c: Option<&Checksum>) -> Self {
        match c {
            Some(Checksum::Sha256(_)) => Hasher::Sha256(Sha256::new()),
            Some(Checksum::Sha512(_)) => Hasher::Sha512(Sha512::new()),
            Some(Checksum::Md5(_)) => Hasher::Md5(Md5::new()),
            None => Hasher::None,
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
            Hasher::Md5(h) => h.update(b),
            Hasher::None => {}
        }
    }
    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
            Hasher::Md5(h) => hex(&h.finalize()),
            Hasher::None => String::new(),
        }
    }
}

/// A URL as it may be shown in logs and errors: without query and fragment, where temporary
/// URLs carry their signatures, and without user info.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(mut u) => {
            let hidden = u.query().is_some() || !u.username().is_empty() || u.password().is_some();
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let mut s = u.to_string();
            if hidden {
                s.push_str("?...");
            }
            s
        }
        // Unparsable: keep only what precedes a query.
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().to_owned(),
    }
}

/// Lower-case hex (hand-written: four lines do not justify a dependency).
pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(D[usize::from(x >> 4)] as char);
        s.push(D[usize::from(x & 15)] as char);
    }
    s
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_owned(), source }
}

impl ImageCache {
    /// Opens (creating) the cache directory and indexes what it holds; leftovers of interrupted
    /// downloads are removed.
    pub fn open(cfg: CacheConfig) -> Result<Self, CacheError> {
        std::fs::create_dir_all(&cfg.dir).map_err(io_err(&cfg.dir))?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(&cfg.dir).map_err(io_err(&cfg.dir))? {
            let e = e.map_err(io_err(&cfg.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with(".tmp-") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if let Ok(m) = e.metadata()
                && m.is_file()
            {
                found.push((m.mtime(), name, m.len()));
            }
        }
        // Oldest first, so restored recency follows modification order.
        found.sort();
        let index: HashMap<String, Entry> = found
            .into_iter()
            .enumerate()
            .map(|(i, (_, name, size))| (name, Entry { size, last_used: i as u64 }))
            .collect();
        let tick = AtomicU64::new(index.len() as u64);
        let http = reqwest::Client::builder()
            .timeout(cfg.fetch_timeout)
            .build()
            .map_err(|e| CacheError::Fetch { url: String::new(), message: e.to_string() })?;
        Ok(Self {
            cfg,
            http,
            index: Mutex::new(index),
            inflight: Mutex::new(HashMap::new()),
            tick,
            downloads: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
        })
    }

    /// Number of fetches performed (cache misses), for metrics and tests.
    pub fn downloads(&self) -> u64 {
        self.downloads.load(Ordering::Relaxed)
    }

    /// Bytes held by the cache.
    pub fn usage(&self) -> u64 {
        self.index.lock().values().map(|e| e.size).sum()
    }

    fn key(img: &ImageRef) -> String {
        match &img.checksum {
            Some(c) => c.key(),
            None => format!("url-{}", hex(&Sha256::digest(img.url.as_bytes()))),
        }
    }

    /// Ensures the image is cached and returns its path in the cache.
    pub async fn get(&self, img: &ImageRef) -> Result<PathBuf, CacheError> {
        if matches!(img.checksum, Some(Checksum::Md5(_))) && !self.cfg.allow_md5 {
            return Err(CacheError::Md5NotAllowed);
        }
        let key = Self::key(img);
        let path = self.cfg.dir.join(&key);
        let lock = self.inflight.lock().entry(key.clone()).or_default().clone();
        let result = {
            let _guard = lock.lock().await;
            if self.index.lock().contains_key(&key) && path.is_file() {
                self.touch(&key);
                Ok(path.clone())
            } else {
                self.fetch(img, &key, &path).await.map(|()| path.clone())
            }
        };
        {
            let mut m = self.inflight.lock();
            // Drop the per-key lock once nobody else holds it (2 = map + our clone).
            if Arc::strong_count(&lock) <= 2 {
                m.remove(&key);
            }
        }
        if result.is_ok() {
            self.evict();
        }
        result
    }

    /// Ensures the image is cached and hard-links it at `dest` (replacing what was there).
    pub async fn link(&self, img: &ImageRef, dest: &Path) -> Result<(), CacheError> {
        let src = self.get(img).await?;
        // Three metadata calls on the local cache's file system, made here as the boot
        // configs are written (`pxe::config`): a blocking-pool round trip each cost more than
        // the calls themselves.
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        match std::fs::remove_file(dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(dest)(e)),
        }
        std::fs::hard_link(&src, dest).map_err(io_err(dest))
    }

    fn touch(&self, key: &str) {
        let t = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(e) = self.index.lock().get_mut(key) {
            e.last_used = t;
        }
    }

    async fn fetch(&self, img: &ImageRef, key: &str, path: &Path) -> Result<(), CacheError> {
        self.downloads.fetch_add(1, Ordering::Relaxed);
        let tmp = self.cfg.dir.join(format!(".tmp-{key}-{}", self.tmp_seq.fetch_add(1, Ordering::Relaxed)));
        let res = self.download(img, &tmp).await;
        let size = match res {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        tokio::fs::rename(&tmp, path).await.map_err(io_err(path))?;
        let t = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        self.index.lock().insert(key.to_owned(), Entry { size, last_used: t });
        tracing::info!(url = %redact_url(&img.url), key, size, "image cached");
        Ok(())
    }

    async fn download(&self, img: &ImageRef, tmp: &Path) -> Result<u64, CacheError> {
        // Errors and logs show the URL without its query: temporary URLs carry signatures there.
        let shown = redact_url(&img.url);
        let url = reqwest::Url::parse(&img.url).map_err(|_| CacheError::Url(shown.clone()))?;
        let mut out = tokio::fs::File::create(tmp).await.map_err(io_err(tmp))?;
        let mut hasher = Hasher::new(img.checksum.as_ref());
        let limit = self.cfg.max_image_bytes;
        let too_large = || CacheError::TooLarge { url: shown.clone(), limit };
        let fetch_err = |m: String| CacheError::Fetch { url: shown.clone(), message: m };
        let mut size = 0u64;
        match url.scheme() {
            "file" => {
                let p = url.to_file_path().map_err(|_| CacheError::Url(shown.clone()))?;
                let mut f = tokio::fs::File::open(&p).await.map_err(io_err(&p))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).await.map_err(io_err(&p))?;
                    if n == 0 {
                        break;
                    }
                    size += n as u64;
                    if size > limit {
                        return Err(too_large());
                    }
                    hasher.update(&buf[..n]);
                    out.write_all(&buf[..n]).await.map_err(io_err(tmp))?;
                }
            }
            "http" | "https" => {
                let mut resp = self.http.get(url).send().await.map_err(|e| fetch_err(e.without_url().to_string()))?;
                if !resp.status().is_success() {
                    return Err(fetch_err(format!("HTTP {}", resp.status())));
                }
                if resp.content_length().is_some_and(|l| l > limit) {
                    return Err(too_large());
                }
                let mut pending: Vec<u8> = Vec::with_capacity(1 << 20);
                while let Some(chunk) = resp.chunk().await.map_err(|e| fetch_err(e.without_url().to_string()))? {
                    size += chunk.len() as u64;
                    if size > limit {
                        return Err(too_large());
                    }
                    hasher.update(&chunk);
                    pending.extend_from_slice(&chunk);
                    if pending.len() >= 1 << 20 {
                        out.write_all(&pending).await.map_err(io_err(tmp))?;
                        pending.clear();
                    }
                }
                out.write_all(&pending).await.map_err(io_err(tmp))?;
            }
            _ => return Err(CacheError::Url(shown.clone())),
        }
        out.sync_all().await.map_err(io_err(tmp))?;
        if let Some(expected) = &img.checksum {
            let actual = hasher.finish();
            if actual != expected.hex() {
                return Err(CacheError::ChecksumMismatch {
                    url: shown.clone(),
                    expected: expected.hex().to_owned(),
                    actual,
                });
            }
        }
        Ok(size)
    }

    /// Evicts unused entries, least recently used first, until the cache fits its bound.
    /// Returns the bytes freed. Entries with other hard links (linked into a boot root) and
    /// entries being fetched are kept.
    pub fn evict(&self) -> u64 {
        let mut index = self.index.lock();
        let mut total: u64 = index.values().map(|e| e.size).sum();
        if total <= self.cfg.max_bytes {
            return 0;
        }
        let busy: Vec<String> = self.inflight.lock().keys().cloned().collect();
        let mut order: Vec<(u64, String)> = index.iter().map(|(k, e)| (e.last_used, k.clone())).collect();
        order.sort();
        let mut freed = 0;
        for (_, key) in order {
            if total <= self.cfg.max_bytes {
                break;
            }
            if busy.contains(&key) {
                continue;
            }
            let path = self.cfg.dir.join(&key);
            let in_use = std::fs::metadata(&path).map(|m| m.nlink() > 1).unwrap_or(false);
            if in_use {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() || !path.exists() {
                if let Some(e) = index.remove(&key) {
                    total -= e.size;
                    freed += e.size;
                    tracing::info!(key, size = e.size, "image evicted");
                }
            }
        }
        if total > self.cfg.max_bytes {
            tracing::warn!(total, max = self.cfg.max_bytes, "image cache over its bound: all entries in use");
        }
        freed
    }
}
