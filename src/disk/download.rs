//! Streamed image download: bounded retries (4xx is final), resume with `Range` where the server
//! allows it, the checksum computed while the bytes stream by, and the bytes handed to a
//! [`Sink`] (the disk directly for raw images, the qcow2 converter for qcow2) — hashing and
//! writing run in parallel with the network.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::sync::mpsc;

use crate::blockdev::BlockDevice;
use crate::hex;
use crate::qcow2::Qcow2Converter;
use ferric_types::agent::CommandError;
use ferric_types::http::{HttpClient, HttpError, HttpRequest, send_with_timeout};

/// Checksum algorithms IPA accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    /// Only when the conductor allows it.
    Md5,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512 (Glance's default `os_hash_algo`).
    Sha512,
}

impl HashAlgo {
    /// From `os_hash_algo`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "md5" => Some(Self::Md5),
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }
    /// From the length of a hex digest (legacy `checksum` field).
    pub fn from_hex_len(len: usize) -> Option<Self> {
        match len {
            32 => Some(Self::Md5),
            64 => Some(Self::Sha256),
            96 => Some(Self::Sha384),
            128 => Some(Self::Sha512),
            _ => None,
        }
    }
    fn hasher(self) -> Hasher {
        match self {
            Self::Md5 => Hasher::Md5(Md5::new()),
            Self::Sha256 => Hasher::Sha256(Sha256::new()),
            Self::Sha384 => Hasher::Sha384(Sha384::new()),
            Self::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
}

enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    fn update(&mut self, b: &[u8]) {
        match self {
            Self::Md5(h) => h.update(b),
            Self::Sha256(h) => h.update(b),
            Self::Sha384(h) => h.update(b),
            Self::Sha512(h) => h.update(b),
        }
    }
    fn finish(self) -> String {
        match self {
            Self::Md5(h) => hex(&h.finalize()),
            Self::Sha256(h) => hex(&h.finalize()),
            Self::Sha384(h) => hex(&h.finalize()),
            Self::Sha512(h) => hex(&h.finalize()),
        }
    }
}

/// The digest an image must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Algorithm.
    pub algo: HashAlgo,
    /// Lower-case hex.
    pub value: String,
}

/// Network-sized pieces handed on together (no copy into one buffer).
pub type Batch = Arc<Vec<Bytes>>;

fn batch_len(b: &Batch) -> u64 {
    b.iter().map(|x| x.len() as u64).sum()
}

/// Where downloaded bytes go.
#[async_trait]
pub trait Sink: Send {
    /// Pieces of the image, back to back from `offset` (offsets only grow, except after `reset`).
    async fn write(&mut self, offset: u64, data: Batch) -> Result<(), CommandError>;
    /// The download restarts from byte 0.
    async fn reset(&mut self) -> Result<(), CommandError>;
    /// All bytes were delivered. They need not be durable yet: `standby.sync` does that.
    async fn finish(&mut self) -> Result<(), CommandError>;
}

/// Writes the image as it is (raw) to a device.
pub struct RawSink {
    dev: Arc<dyn BlockDevice>,
    name: String,
}

impl RawSink {
    /// Onto `dev` (named `name` in errors).
    pub fn new(dev: Arc<dyn BlockDevice>, name: &str) -> Self {
        Self { dev, name: name.into() }
    }
}

#[async_trait]
impl Sink for RawSink {
    async fn write(&mut self, offset: u64, data: Batch) -> Result<(), CommandError> {
        if offset + batch_len(&data) > self.dev.size() {
            return Err(CommandError::image_write(
                &self.name,
                format!("the image is larger than the device ({} bytes)", self.dev.size()),
            ));
        }
        self.dev.write_vectored_at(offset, data).await.map_err(|e| CommandError::image_write(&self.name, e))
    }
    async fn reset(&mut self) -> Result<(), CommandError> {
        Ok(())
    }
    async fn finish(&mut self) -> Result<(), CommandError> {
        // No fdatasync here, as in IPA: the kernel writes back in the background, and
        // `standby.sync` / `standby.power_off` make the image durable (ferric's conductor
        // syncs through the agent before it powers the node off).
        Ok(())
    }
}

/// Converts a qcow2 stream and writes the guest data to a device.
pub struct Qcow2Sink {
    dev: Arc<dyn BlockDevice>,
    name: String,
    pending_limit: usize,
    conv: Qcow2Converter,
}

impl Qcow2Sink {
    /// Onto `dev`.
    pub fn new(dev: Arc<dyn BlockDevice>, name: &str, pending_limit: usize) -> Self {
        let conv = Qcow2Converter::new(dev.size(), pending_limit);
        Self { dev, name: name.into(), pending_limit, conv }
    }

    /// Writes runs of target-contiguous guest writes with one vectored write each (one trip to
    /// the blocking pool and one pwritev per run).
    async fn apply(&self, writes: Vec<crate::qcow2::GuestWrite>) -> Result<(), CommandError> {
        let mut run: Vec<Bytes> = Vec::new();
        let (mut start, mut end) = (0u64, 0u64);
        for w in writes {
            if w.offset != end {
                self.write_run(start, std::mem::take(&mut run)).await?;
                start = w.offset;
                end = w.offset;
            }
            end += w.data.len() as u64;
            run.push(w.data);
        }
        self.write_run(start, run).await
    }

    async fn write_run(&self, start: u64, run: Vec<Bytes>) -> Result<(), CommandError> {
        if run.is_empty() {
            return Ok(());
        }
        self.dev.write_vectored_at(start, Arc::new(run)).await.map_err(|e| CommandError::image_write(&self.name, e))
    }
}

#[async_trait]
impl Sink for Qcow2Sink {
    async fn write(&mut self, _offset: u64, data: Batch) -> Result<(), CommandError> {
        // The converter merges cluster writes within one buffer: give it one.
        let data = match data.len() {
            1 => data[0].clone(),
            _ => {
                let mut b = BytesMut::with_capacity(batch_len(&data) as usize);
                for p in data.iter() {
                    b.extend_from_slice(p);
                }
                b.freeze()
            }
        };
        let writes = self.conv.feed(data).map_err(|e| CommandError::image_write(&self.name, e))?;
        self.apply(writes).await
    }
    async fn reset(&mut self) -> Result<(), CommandError> {
        self.conv = Qcow2Converter::new(self.dev.size(), self.pending_limit);
        Ok(())
    }
    async fn finish(&mut self) -> Result<(), CommandError> {
        let (writes, zeros) = self.conv.finish().map_err(|e| CommandError::image_write(&self.name, e))?;
        self.apply(writes).await?;
        for (off, len) in zeros {
            self.dev.write_zeroes(off, len).await.map_err(|e| CommandError::image_write(&self.name, e))?;
        }
        // Durable on `standby.sync` / `standby.power_off`, as for raw images.
        Ok(())
    }
}

/// How to download.
#[derive(Debug, Clone)]
pub struct DownloadPlan {
    /// Image id (for messages).
    pub image_id: String,
    /// URLs, tried in turn.
    pub urls: Vec<String>,
    /// Checksum to verify (none: not verified).
    pub expected: Option<Expected>,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Pause between attempts.
    pub retry_interval: Duration,
    /// Deadline for a response head.
    pub connect_timeout: Duration,
    /// Longest silence while reading.
    pub read_timeout: Duration,
    /// Buffer size handed to hashing and writing.
    pub chunk: usize,
}

/// What a finished download did.
#[derive(Debug, Clone)]
pub struct DownloadOutcome {
    /// Bytes of the image.
    pub bytes: u64,
    /// Computed digest (hex), when verified.
    pub digest: Option<String>,
    /// Attempts used.
    pub attempts: u32,
}

/// Batches up to this size are hashed on the reactor; the first larger one moves the hasher to
/// its own thread for the rest of the download.
const INLINE_HASH_MAX: usize = 256 << 10;

/// Batches queued for the hashing thread.
const HASH_QUEUE: usize = 8;

const HASH_THREAD_STOPPED: &str = "the hashing thread stopped";

/// Where the running digest lives.
enum HashState {
    /// No checksum to verify.
    Off,
    /// Hashed on the reactor (small batches: cheaper than handing them over).
    Inline(Box<Hasher>),
    /// On a dedicated thread for the rest of the download: hashing runs beside the network and
    /// the disk without a blocking-pool round trip per batch (with 256 KiB batches, a
    /// spawn_blocking per batch cost ~30% more CPU in the 1 GiB benchmark). Every wait for the
    /// thread goes through spawn_blocking, which holds a paused clock (simulations) still.
    Thread { tx: mpsc::Sender<Batch>, done: tokio::sync::oneshot::Receiver<Hasher> },
}

impl HashState {
    fn new(algo: Option<HashAlgo>) -> Self {
        match algo {
            Some(a) => Self::Inline(Box::new(a.hasher())),
            None => Self::Off,
        }
    }

    async fn feed(&mut self, b: Batch) -> Result<(), String> {
        if let Self::Inline(h) = self {
            if batch_len(&b) as usize <= INLINE_HASH_MAX {
                for piece in b.iter() {
                    h.update(piece);
                }
                return Ok(());
            }
            let Self::Inline(h) = std::mem::replace(self, Self::Off) else {
                return Ok(());
            };
            let mut h = *h;
            let (tx, mut rx) = mpsc::channel::<Batch>(HASH_QUEUE);
            let (done_tx, done) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("ferric-hash".into())
                .spawn(move || {
                    while let Some(b) = rx.blocking_recv() {
                        for piece in b.iter() {
                            h.update(piece);
                        }
                    }
                    let _ = done_tx.send(h);
                })
                .map_err(|e| format!("cannot start the hashing thread: {e}"))?;
            *self = Self::Thread { tx, done };
        }
        let Self::Thread { tx, .. } = self else {
            return Ok(());
        };
        match tx.try_send(b) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(b)) => {
                let tx = tx.clone();
                tokio::task::spawn_blocking(move || tx.blocking_send(b))
                    .await
                    .map_err(|e| format!("hashing failed: {e}"))?
                    .map_err(|_| HASH_THREAD_STOPPED.to_string())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(HASH_THREAD_STOPPED.to_string()),
        }
    }

    /// The hasher with every fed byte in it.
    async fn take(self) -> Result<Option<Hasher>, String> {
        match self {
            Self::Off => Ok(None),
            Self::Inline(h) => Ok(Some(*h)),
            Self::Thread { tx, done } => {
                drop(tx);
                tokio::task::spawn_blocking(move || done.blocking_recv())
                    .await
                    .map_err(|e| format!("hashing failed: {e}"))?
                    .map(Some)
                    .map_err(|_| HASH_THREAD_STOPPED.to_string())
            }
        }
    }
}

enum Msg {
    Data(u64, Batch),
    Reset,
}

enum AttemptError {
    /// Give up (4xx, sink failure).
    Fatal(CommandError),
    /// Try again from the current offset.
    Retry(String),
}

/// Downloads `plan` into `sink`, verifying the checksum. The sink has received every byte when
/// this returns; on a checksum mismatch it returns `ImageChecksumError`.
pub async fn download(
    http: &dyn HttpClient,
    plan: &DownloadPlan,
    sink: Box<dyn Sink>,
) -> Result<DownloadOutcome, CommandError> {
    if plan.urls.is_empty() {
        return Err(CommandError::image_download(&plan.image_id, "no URL given"));
    }
    let (hash_tx, mut hash_rx) = mpsc::channel::<Msg>(4);
    let (write_tx, mut write_rx) = mpsc::channel::<Msg>(4);
    let algo = plan.expected.as_ref().map(|e| e.algo);
    let started = tokio::time::Instant::now();
    let hash_task = tokio::spawn(async move {
        let mut state = HashState::new(algo);
        let mut busy = Duration::ZERO;
        while let Some(m) = hash_rx.recv().await {
            match m {
                Msg::Data(_, b) => {
                    let t = tokio::time::Instant::now();
                    state.feed(b).await?;
                    busy += t.elapsed();
                }
                // The old digest covers bytes that will come again: drop it (a hashing thread
                // ends by itself once its queue is closed).
                Msg::Reset => state = HashState::new(algo),
            }
        }
        let t = tokio::time::Instant::now();
        let h = state.take().await?;
        busy += t.elapsed();
        Ok::<_, String>((h.map(|h| h.finish()), busy))
    });
    let write_task = tokio::spawn(async move {
        let mut sink = sink;
        let mut busy = Duration::ZERO;
        while let Some(m) = write_rx.recv().await {
            let t = tokio::time::Instant::now();
            match m {
                Msg::Data(off, b) => sink.write(off, b).await?,
                Msg::Reset => sink.reset().await?,
            }
            busy += t.elapsed();
        }
        let t = tokio::time::Instant::now();
        sink.finish().await?;
        Ok::<_, CommandError>((busy, t.elapsed()))
    });

    let mut offset = 0u64;
    let mut attempt = 0u32;
    let mut result: Result<(), CommandError> = Ok(());
    loop {
        let url = &plan.urls[attempt as usize % plan.urls.len()];
        attempt += 1;
        match fetch_once(http, plan, url, &mut offset, &hash_tx, &write_tx).await {
            Ok(()) => break,
            Err(AttemptError::Fatal(e)) => {
                result = Err(e);
                break;
            }
            Err(AttemptError::Retry(msg)) => {
                if attempt > plan.retries {
                    result = Err(CommandError::image_download(
                        &plan.image_id,
                        format!("{msg} (gave up after {attempt} attempts)"),
                    ));
                    break;
                }
                tracing::warn!(image = %plan.image_id, attempt, offset, error = %msg, "image download failed, retrying");
                tokio::time::sleep(plan.retry_interval).await;
            }
        }
    }
    drop(hash_tx);
    drop(write_tx);
    let written = match write_task.await {
        Ok(r) => r,
        Err(e) => Err(CommandError::execution(format!("writer failed: {e}"))),
    };
    let (digest, hash_busy) = match hash_task.await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Err(CommandError::execution(e)),
        Err(e) => return Err(CommandError::execution(format!("hashing failed: {e}"))),
    };
    // A writer error explains a broken channel better than the producer's view.
    let (write_busy, flush) = written?;
    result?;
    let total = started.elapsed();
    tracing::info!(
        image = %plan.image_id,
        bytes = offset,
        total_ms = total.as_millis() as u64,
        hash_ms = hash_busy.as_millis() as u64,
        write_ms = write_busy.as_millis() as u64,
        flush_ms = flush.as_millis() as u64,
        "image streamed"
    );
    if let (Some(exp), Some(got)) = (&plan.expected, &digest) {
        if !exp.value.eq_ignore_ascii_case(got) {
            return Err(CommandError::image_checksum(&plan.image_id, &redact(&plan.urls[0]), &exp.value, got));
        }
    }
    Ok(DownloadOutcome { bytes: offset, digest, attempts: attempt })
}

async fn send_both(
    hash_tx: &mpsc::Sender<Msg>,
    write_tx: &mpsc::Sender<Msg>,
    off: u64,
    b: Vec<Bytes>,
) -> Result<(), AttemptError> {
    let b = Arc::new(b);
    let dead = || AttemptError::Fatal(CommandError::execution("image writer stopped"));
    write_tx.send(Msg::Data(off, b.clone())).await.map_err(|_| dead())?;
    hash_tx.send(Msg::Data(off, b)).await.map_err(|_| dead())
}

fn content_range_start(h: &http::HeaderMap) -> Option<u64> {
    let v = h.get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

async fn fetch_once(
    http: &dyn HttpClient,
    plan: &DownloadPlan,
    url: &str,
    offset: &mut u64,
    hash_tx: &mpsc::Sender<Msg>,
    write_tx: &mpsc::Sender<Msg>,
) -> Result<(), AttemptError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| AttemptError::Fatal(CommandError::image_download(&plan.image_id, format!("invalid URL: {e}"))))?;
    let mut req = HttpRequest::get(parsed);
    if *offset > 0 {
        req = req.header(http::header::RANGE, &format!("bytes={}-", *offset));
    }
    let resp = match send_with_timeout(http, req, plan.connect_timeout).await {
        Ok(r) => r,
        Err(HttpError::Request(e)) => {
            return Err(AttemptError::Fatal(CommandError::image_download(&plan.image_id, e)));
        }
        Err(e) => return Err(AttemptError::Retry(e.to_string())),
    };
    let status = resp.status;
    match status.as_u16() {
        200 => {
            if *offset > 0 {
                tracing::info!(image = %plan.image_id, "server ignored Range; restarting from byte 0");
                let dead = || AttemptError::Fatal(CommandError::execution("image writer stopped"));
                write_tx.send(Msg::Reset).await.map_err(|_| dead())?;
                hash_tx.send(Msg::Reset).await.map_err(|_| dead())?;
                *offset = 0;
            }
        }
        206 if *offset > 0 => {
            if content_range_start(&resp.headers) != Some(*offset) {
                return Err(AttemptError::Fatal(CommandError::image_download(
                    &plan.image_id,
                    "server answered a resumed download with the wrong range",
                )));
            }
        }
        s if (400..500).contains(&s) => {
            let body = resp.bytes(4096).await.unwrap_or_default();
            return Err(AttemptError::Fatal(CommandError::image_download(
                &plan.image_id,
                format!("HTTP {status} from {}: {}", redact(url), String::from_utf8_lossy(&body).trim()),
            )));
        }
        _ => {
            return Err(AttemptError::Retry(format!("HTTP {status} from {}", redact(url))));
        }
    }
    let mut body = resp.body;
    let mut buf: Vec<Bytes> = Vec::new();
    let mut buffered = 0usize;
    let mut buf_start = *offset;
    // One timer for the whole body: a chunk only notes when it came, and the timer, when it
    // fires, moves itself to one read timeout after the last chunk (no timer update per chunk).
    let mut last_data = tokio::time::Instant::now();
    let deadline = tokio::time::sleep_until(last_data + plan.read_timeout);
    tokio::pin!(deadline);
    loop {
        let next = tokio::select! {
            biased;
            n = body.next() => n,
            () = &mut deadline => {
                let due = last_data + plan.read_timeout;
                if due > tokio::time::Instant::now() {
                    deadline.as_mut().reset(due);
                    continue;
                }
                Some(Err(HttpError::Timeout(plan.read_timeout)))
            }
        };
        if next.is_some() {
            last_data = tokio::time::Instant::now();
        }
        match next {
            Some(Ok(chunk)) => {
                *offset += chunk.len() as u64;
                buffered += chunk.len();
                buf.push(chunk);
                // Strictly more than a chunk: with chunks of at least INLINE_HASH_MAX, full
                // batches are hashed off the reactor.
                if buffered > plan.chunk {
                    send_both(hash_tx, write_tx, buf_start, std::mem::take(&mut buf)).await?;
                    buffered = 0;
                    buf_start = *offset;
                }
            }
            Some(Err(e)) => {
                if !buf.is_empty() {
                    send_both(hash_tx, write_tx, buf_start, std::mem::take(&mut buf)).await?;
                }
                return Err(AttemptError::Retry(format!("download interrupted at byte {}: {e}", *offset)));
            }
            None => {
                if !buf.is_empty() {
                    send_both(hash_tx, write_tx, buf_start, std::mem::take(&mut buf)).await?;
                }
                return Ok(());
            }
        }
    }
}

/// A URL without its query (temp URL signatures stay out of logs and errors).
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?..."),
        None => url.to_string(),
    }
}

/// Resolves a checksum that may be a URL of a checksums file (`sha256sum` output, CentOS
/// `SHA256 (file) = hash` lines, or a bare digest), as IPA does.
pub async fn resolve_checksum(
    http: &dyn HttpClient,
    value: &str,
    image_url: &str,
    timeout: Duration,
) -> Result<String, String> {
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Ok(value.trim().to_lowercase());
    }
    let url = url::Url::parse(value).map_err(|e| format!("invalid checksum URL: {e}"))?;
    let resp = send_with_timeout(http, HttpRequest::get(url), timeout).await.map_err(|e| e.to_string())?;
    if !resp.status.is_success() {
        return Err(format!("checksum file: HTTP {}", resp.status));
    }
    let text = resp.bytes(1 << 20).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&text);
    let is_hex = |s: &str| matches!(s.len(), 32 | 64 | 96 | 128) && s.chars().all(|c| c.is_ascii_hexdigit());
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    if lines.len() == 1 && is_hex(lines[0]) {
        return Ok(lines[0].to_lowercase());
    }
    let fname = url::Url::parse(image_url)
        .ok()
        .and_then(|u| u.path_segments().and_then(|mut s| s.next_back().map(str::to_string)))
        .unwrap_or_default();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let names_file = words.iter().any(|w| {
            let w = w.trim_start_matches('*');
            w == fname || *w == format!("({fname})")
        });
        if !names_file {
            continue;
        }
        if let Some(h) = words.iter().find(|w| is_hex(w)) {
            return Ok(h.to_lowercase());
        }
    }
    Err(format!("checksum file does not contain name {fname}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDisk;
    use ferric_types::http::HttpResponse;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Breaks the first response after `cut` bytes, then answers a resumed request with the whole
    /// image and status 200 (a server that ignores Range).
    struct NoRangeServer {
        data: Bytes,
        cut: usize,
        calls: AtomicU32,
    }

    #[async_trait]
    impl HttpClient for NoRangeServer {
        async fn send(&self, _req: HttpRequest) -> Result<HttpResponse, HttpError> {
            let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
            let end = if first { self.cut } else { self.data.len() };
            let mut pieces: Vec<Result<Bytes, HttpError>> =
                (0..end).step_by(64 << 10).map(|o| Ok(self.data.slice(o..(o + (64 << 10)).min(end)))).collect();
            if first {
                pieces.push(Err(HttpError::Body("connection reset".into())));
            }
            Ok(HttpResponse {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: Box::pin(futures::stream::iter(pieces)),
            })
        }
    }

    #[tokio::test]
    async fn a_restart_from_byte_zero_hashes_the_image_once() {
        let data: Bytes = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut h = HashAlgo::Sha256.hasher();
        h.update(&data);
        let server = NoRangeServer { data: data.clone(), cut: 1 << 20, calls: AtomicU32::new(0) };
        let plan = DownloadPlan {
            image_id: "img".into(),
            urls: vec!["http://192.0.2.1/img".into()],
            expected: Some(Expected { algo: HashAlgo::Sha256, value: h.finish() }),
            retries: 2,
            retry_interval: Duration::from_millis(1),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            chunk: 256 << 10,
        };
        let disk = Arc::new(MemDisk::new(4 << 20));
        let out = download(&server, &plan, Box::new(RawSink::new(disk.clone(), "img"))).await.unwrap();
        assert_eq!(out.attempts, 2);
        assert_eq!(out.bytes, data.len() as u64);
        assert_eq!(&disk.contents()[..data.len()], &data[..]);
    }
}
