//! Wall-clock seconds for temp URL expiry, behind a trait so a simulation on tokio's paused clock
//! sees expiry move with simulated time.

/// Unix time in seconds.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// The host's clock (production).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// A clock that starts at `base_unix` and advances with `tokio::time` (paused in simulation).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_unix: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts now (in tokio time) at `base_unix`.
    pub fn new(base_unix: u64) -> Self {
        Self { base_unix, start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now_unix(&self) -> u64 {
        self.base_unix + self.start.elapsed().as_secs()
    }
}
