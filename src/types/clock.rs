//! Time, identifiers and randomness: the one source every part of ferric reads them from, handed
//! in when a service is built, so that a simulation is reproducible. On the system clock,
//! timestamps are the host's and UUIDs random; on a virtual clock, timestamps follow tokio's
//! (paused) time from a fixed epoch, and UUIDs, tokens and seeds come from one seeded generator,
//! so one scenario and seed give the same API answers, UUIDs and timestamps included.
//!
//! Durations and deadlines are `tokio::time` everywhere; this clock is for wall-clock readings.

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::ThreadId;
use uuid::Uuid;

/// Source of timestamps, identifiers and random numbers. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Clock {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    System,
    Virtual(Arc<Virtual>),
}

/// A virtual clock. Calls that a simulation makes synchronously in another runtime's context (its
/// bridge) see that runtime's tokio time, not the simulation's: for them the simulation publishes
/// its time first ([`Clock::publish`]).
struct Virtual {
    epoch: DateTime<Utc>,
    start: tokio::time::Instant,
    rng: Mutex<StdRng>,
    /// The simulation's thread, where tokio's clock is the simulation's.
    home: ThreadId,
    /// Nanoseconds since `start`, as last published.
    published_ns: AtomicU64,
    /// A published call is running on the home thread.
    bridged: AtomicBool,
}

impl Virtual {
    fn elapsed(&self) -> std::time::Duration {
        if std::thread::current().id() == self.home && !self.bridged.load(Relaxed) {
            self.start.elapsed()
        } else {
            std::time::Duration::from_nanos(self.published_ns.load(Relaxed))
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::System => f.write_str("Clock::System"),
            Kind::Virtual(v) => write!(f, "Clock::Virtual(epoch {})", v.epoch),
        }
    }
}

impl Clock {
    /// The host's clock and random numbers (production).
    pub fn system() -> Clock {
        Clock { kind: Kind::System }
    }

    /// Time starts at `epoch` now and advances with tokio's clock; identifiers derive from
    /// `seed`. Create it on the simulation's thread, inside its runtime.
    pub fn virtual_from(epoch: DateTime<Utc>, seed: u64) -> Clock {
        Clock {
            kind: Kind::Virtual(Arc::new(Virtual {
                epoch,
                start: tokio::time::Instant::now(),
                rng: Mutex::new(StdRng::seed_from_u64(seed)),
                home: std::thread::current().id(),
                published_ns: AtomicU64::new(0),
                bridged: AtomicBool::new(false),
            })),
        }
    }

    /// Whether this is a virtual (simulation) clock.
    pub fn is_virtual(&self) -> bool {
        matches!(self.kind, Kind::Virtual(_))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.kind {
            Kind::System => Utc::now(),
            Kind::Virtual(v) => v.epoch + chrono::Duration::from_std(v.elapsed()).unwrap_or_default(),
        }
    }

    /// Seconds since the Unix epoch (temp URL expiry, image timestamps, DHCP leases).
    pub fn now_unix(&self) -> u64 {
        u64::try_from(self.now().timestamp()).unwrap_or(0)
    }

    pub fn new_uuid(&self) -> Uuid {
        uuid::Builder::from_random_bytes(self.random()).into_uuid()
    }

    /// A random token (agent tokens): 32 bytes, hex.
    pub fn new_token(&self) -> String {
        let bytes: [u8; 32] = self.random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Random bytes, numbers or seeds: the host's randomness, or the simulation's seeded stream.
    pub fn random<T>(&self) -> T
    where
        rand::distr::StandardUniform: rand::distr::Distribution<T>,
    {
        match &self.kind {
            Kind::System => rand::random(),
            Kind::Virtual(v) => v.rng.lock().random(),
        }
    }

    /// Publishes the simulation's time for a call it is about to make synchronously in another
    /// runtime's context (see [`Virtual`]), until the guard drops. A no-op elsewhere.
    pub fn publish(&self) -> Published<'_> {
        if let Kind::Virtual(v) = &self.kind
            && std::thread::current().id() == v.home
            && !v.bridged.load(Relaxed)
        {
            let ns = u64::try_from(v.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            v.published_ns.store(ns, Relaxed);
            v.bridged.store(true, Relaxed);
            return Published(Some(v));
        }
        Published(None)
    }
}

/// A published call in progress (see [`Clock::publish`]).
pub struct Published<'a>(Option<&'a Virtual>);

impl Drop for Published<'_> {
    fn drop(&mut self) {
        if let Some(v) = self.0 {
            v.bridged.store(false, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_virtual_clock_follows_tokio_time_and_its_seed() {
        let epoch = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let (a, b) = (Clock::virtual_from(epoch, 7), Clock::virtual_from(epoch, 7));
        assert_eq!(a.now_unix(), 1_704_067_200);
        tokio::time::sleep(std::time::Duration::from_secs(90)).await;
        assert_eq!(a.now(), epoch + chrono::Duration::seconds(90));
        assert_eq!(a.new_uuid(), b.new_uuid());
        assert_eq!(a.new_token(), b.new_token());
        assert_ne!(a.new_uuid(), a.new_uuid());
    }

    #[tokio::test(start_paused = true)]
    async fn a_published_time_holds_while_the_call_runs() {
        let c = Clock::virtual_from(DateTime::<Utc>::UNIX_EPOCH, 1);
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let guard = c.publish();
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        assert_eq!(c.now_unix(), 5, "a bridged call sees the published time");
        drop(guard);
        assert_eq!(c.now_unix(), 10);
    }
}
