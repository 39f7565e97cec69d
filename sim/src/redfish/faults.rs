//! Fault knobs and counters of one virtual Redfish BMC. As with the IPMI BMC's
//! (`crate::vbmc::Faults`), knobs are atomics so a fault scheduler or a test can flip them through
//! a shared handle while the BMC serves traffic.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// `None` of an optional knob, stored in its atomic.
const UNSET: u64 = u64::MAX;

/// Runtime-changeable faults. Shared (`Arc<RedfishFaults>`) between the BMC and whoever injects
/// faults.
#[derive(Debug)]
pub struct RedfishFaults {
    busy_retry_after_secs: AtomicU64,
    rate_limit: AtomicU64,
    latency_ms: AtomicU64,
    unresponsive: AtomicBool,
    task_duration_ms: AtomicU64,
    task_fails: AtomicBool,
    max_sessions: AtomicU64,
    session_timeout_secs: AtomicU64,
    etag_conflict: AtomicBool,
    vmedia_insert_fails: AtomicBool,
}

impl Default for RedfishFaults {
    fn default() -> Self {
        Self::new(RedfishFaultSettings::default())
    }
}

/// Plain-data form of [`RedfishFaults`] (fleet files, snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedfishFaultSettings {
    /// Every request is answered 503 Service Unavailable with this `Retry-After` (seconds).
    pub busy_retry_after_secs: Option<u32>,
    /// Requests allowed per (virtual) second; the rest get 429 Too Many Requests with
    /// `Retry-After`.
    pub rate_limit: Option<u32>,
    /// Delay before each request is handled.
    pub latency_ms: u64,
    /// Connections are accepted and requests read, but never answered.
    pub unresponsive: bool,
    /// How long a firmware update task runs (default 2 s of the BMC's clock).
    pub task_duration_ms: Option<u64>,
    /// Update tasks end in `Exception` instead of `Completed`.
    pub task_fails: bool,
    /// Overrides the configured session limit.
    pub max_sessions: Option<usize>,
    /// Overrides the configured idle timeout of sessions.
    pub session_timeout_secs: Option<u64>,
    /// The first PATCH with `If-Match` to each resource gets 412 Precondition Failed (as BMCs
    /// whose ETags change under the client do); the retry passes.
    pub etag_conflict: bool,
    /// `InsertMedia` (and PATCH of `Image`) fails with 500.
    pub vmedia_insert_fails: bool,
}

fn opt_store(a: &AtomicU64, v: Option<u64>) {
    a.store(v.map_or(UNSET, |v| v.min(UNSET - 1)), Relaxed)
}

fn opt_load(a: &AtomicU64) -> Option<u64> {
    match a.load(Relaxed) {
        UNSET => None,
        v => Some(v),
    }
}

impl RedfishFaults {
    pub fn new(s: RedfishFaultSettings) -> Self {
        let f = Self {
            busy_retry_after_secs: AtomicU64::new(UNSET),
            rate_limit: AtomicU64::new(UNSET),
            latency_ms: AtomicU64::new(0),
            unresponsive: AtomicBool::new(false),
            task_duration_ms: AtomicU64::new(UNSET),
            task_fails: AtomicBool::new(false),
            max_sessions: AtomicU64::new(UNSET),
            session_timeout_secs: AtomicU64::new(UNSET),
            etag_conflict: AtomicBool::new(false),
            vmedia_insert_fails: AtomicBool::new(false),
        };
        f.apply(s);
        f
    }

    /// Sets every knob from `s`.
    pub fn apply(&self, s: RedfishFaultSettings) {
        self.set_busy_retry_after_secs(s.busy_retry_after_secs);
        self.set_rate_limit(s.rate_limit);
        self.set_latency(Duration::from_millis(s.latency_ms));
        self.set_unresponsive(s.unresponsive);
        self.set_task_duration(s.task_duration_ms.map(Duration::from_millis));
        self.set_task_fails(s.task_fails);
        self.set_max_sessions(s.max_sessions);
        self.set_session_timeout(s.session_timeout_secs.map(Duration::from_secs));
        self.set_etag_conflict(s.etag_conflict);
        self.set_vmedia_insert_fails(s.vmedia_insert_fails);
    }

    pub fn settings(&self) -> RedfishFaultSettings {
        RedfishFaultSettings {
            busy_retry_after_secs: self.busy_retry_after_secs(),
            rate_limit: self.rate_limit(),
            latency_ms: self.latency().as_millis().min(u64::MAX as u128) as u64,
            unresponsive: self.unresponsive(),
            task_duration_ms: self.task_duration().map(|d| d.as_millis().min(u64::MAX as u128) as u64),
            task_fails: self.task_fails(),
            max_sessions: self.max_sessions(),
            session_timeout_secs: self.session_timeout().map(|d| d.as_secs()),
            etag_conflict: self.etag_conflict(),
            vmedia_insert_fails: self.vmedia_insert_fails(),
        }
    }

    pub fn busy_retry_after_secs(&self) -> Option<u32> {
        opt_load(&self.busy_retry_after_secs).map(|v| v.min(u32::MAX as u64) as u32)
    }
    pub fn set_busy_retry_after_secs(&self, v: Option<u32>) {
        opt_store(&self.busy_retry_after_secs, v.map(u64::from))
    }
    pub fn rate_limit(&self) -> Option<u32> {
        opt_load(&self.rate_limit).map(|v| v.min(u32::MAX as u64) as u32)
    }
    pub fn set_rate_limit(&self, v: Option<u32>) {
        opt_store(&self.rate_limit, v.map(u64::from))
    }
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Relaxed))
    }
    pub fn set_latency(&self, d: Duration) {
        self.latency_ms.store(d.as_millis().min(u64::MAX as u128) as u64, Relaxed)
    }
    pub fn unresponsive(&self) -> bool {
        self.unresponsive.load(Relaxed)
    }
    pub fn set_unresponsive(&self, v: bool) {
        self.unresponsive.store(v, Relaxed)
    }
    pub fn task_duration(&self) -> Option<Duration> {
        opt_load(&self.task_duration_ms).map(Duration::from_millis)
    }
    pub fn set_task_duration(&self, d: Option<Duration>) {
        opt_store(&self.task_duration_ms, d.map(|d| d.as_millis().min(u64::MAX as u128) as u64))
    }
    pub fn task_fails(&self) -> bool {
        self.task_fails.load(Relaxed)
    }
    pub fn set_task_fails(&self, v: bool) {
        self.task_fails.store(v, Relaxed)
    }
    pub fn max_sessions(&self) -> Option<usize> {
        opt_load(&self.max_sessions).map(|v| usize::try_from(v).unwrap_or(usize::MAX))
    }
    pub fn set_max_sessions(&self, v: Option<usize>) {
        opt_store(&self.max_sessions, v.map(|v| v as u64))
    }
    pub fn session_timeout(&self) -> Option<Duration> {
        opt_load(&self.session_timeout_secs).map(Duration::from_secs)
    }
    pub fn set_session_timeout(&self, d: Option<Duration>) {
        opt_store(&self.session_timeout_secs, d.map(|d| d.as_secs()))
    }
    pub fn etag_conflict(&self) -> bool {
        self.etag_conflict.load(Relaxed)
    }
    pub fn set_etag_conflict(&self, v: bool) {
        self.etag_conflict.store(v, Relaxed)
    }
    pub fn vmedia_insert_fails(&self) -> bool {
        self.vmedia_insert_fails.load(Relaxed)
    }
    pub fn set_vmedia_insert_fails(&self, v: bool) {
        self.vmedia_insert_fails.store(v, Relaxed)
    }
}

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        /// What one Redfish BMC saw and did, for invariant checks and benchmarks.
        #[derive(Debug, Default)]
        pub(crate) struct Counters { $($(#[$m])* pub(crate) $name: AtomicU64,)* }

        /// Snapshot of a Redfish BMC's counters ([`RedfishBmc::stats`](super::RedfishBmc::stats)).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct RedfishStats { $($(#[$m])* pub $name: u64,)* }

        impl Counters {
            pub(crate) fn snapshot(&self) -> RedfishStats {
                RedfishStats { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Requests that reached the BMC (before faults).
    requests,
    get,
    head,
    patch,
    post,
    delete,
    /// Requests with any other method.
    other_methods,
    /// Answers with a 4xx or 5xx status.
    errors,
    /// 401 answers (missing or wrong credentials, unknown or expired token).
    auth_failures,
    /// Requests never answered (unresponsive knob).
    unanswered,
    /// Requests delayed by the latency knob.
    delayed,
    /// 503 answers from the busy knob.
    busy_replies,
    /// 429 answers from the rate limit.
    rate_limited,
    /// 412 answers from a stale `If-Match`.
    etag_mismatches,
    /// 412 answers injected by the etag-conflict knob.
    etag_conflicts,
    sessions_created,
    sessions_deleted,
    sessions_expired,
    /// Session logins refused for lack of session slots.
    sessions_refused,
    power_on,
    power_off,
    soft_off,
    reset,
    power_cycle,
    nmi,
    /// PATCHes of the System's `Boot` that reached the machine.
    boot_patches,
    /// Pending BIOS settings applied at a reset or power on.
    bios_applied,
    vmedia_inserts,
    vmedia_ejects,
    /// Inserts failed by the vmedia-insert-fails knob.
    vmedia_insert_failures,
    tasks_started,
    tasks_completed,
    /// Tasks ended in `Exception` (task-fails knob).
    tasks_failed,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_reject_unknown_fields() {
        let s: RedfishFaultSettings =
            toml::from_str("busy_retry_after_secs = 3\nrate_limit = 5\ntask_fails = true\nmax_sessions = 2").unwrap();
        let f = RedfishFaults::new(s);
        assert_eq!(f.settings(), s);
        assert_eq!(f.busy_retry_after_secs(), Some(3));
        assert!(toml::from_str::<RedfishFaultSettings>("bogus = 1").is_err());
        assert_eq!(RedfishFaults::default().settings(), RedfishFaultSettings::default());
    }
}
