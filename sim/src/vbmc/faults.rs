//! Fault knobs and counters of one virtual BMC. Knobs are atomics so a fault scheduler (or a
//! test) can flip them at runtime through a shared handle while the BMC serves traffic.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Runtime-changeable faults. Shared (`Arc<Faults>`) between the BMC and whoever injects faults.
#[derive(Debug, Default)]
pub struct Faults {
    unresponsive: AtomicBool,
    /// Drop probability per datagram (in and out), in parts per million.
    drop_ppm: AtomicU32,
    latency_us: AtomicU64,
    ignore_power: AtomicBool,
    busy: AtomicBool,
}

/// Plain-data form of [`Faults`] (fleet files, snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// The BMC receives packets but never answers.
    pub unresponsive: bool,
    /// Probability (0..=1) that a datagram is lost, each direction, from the BMC's seeded RNG.
    pub drop_rate: f64,
    /// Delay before each reply leaves the BMC.
    pub latency_ms: u64,
    /// Chassis Control succeeds on the wire but the machine is not touched.
    pub ignore_power: bool,
    /// Every in-session command except Close Session answers 0xC0 (node busy).
    pub busy: bool,
}

impl Faults {
    pub fn new(s: FaultSettings) -> Self {
        let f = Self::default();
        f.apply(s);
        f
    }
    pub fn apply(&self, s: FaultSettings) {
        self.set_unresponsive(s.unresponsive);
        self.set_drop_rate(s.drop_rate);
        self.set_latency(Duration::from_millis(s.latency_ms));
        self.set_ignore_power(s.ignore_power);
        self.set_busy(s.busy);
    }
    pub fn settings(&self) -> FaultSettings {
        FaultSettings {
            unresponsive: self.unresponsive(),
            drop_rate: self.drop_rate(),
            latency_ms: self.latency().as_millis() as u64,
            ignore_power: self.ignore_power(),
            busy: self.busy(),
        }
    }
    pub fn unresponsive(&self) -> bool {
        self.unresponsive.load(Relaxed)
    }
    pub fn set_unresponsive(&self, v: bool) {
        self.unresponsive.store(v, Relaxed)
    }
    pub fn drop_rate(&self) -> f64 {
        self.drop_ppm.load(Relaxed) as f64 / 1e6
    }
    /// Clamped to 0..=1; NaN counts as 0.
    pub fn set_drop_rate(&self, p: f64) {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.drop_ppm.store((p * 1e6).round() as u32, Relaxed)
    }
    pub(crate) fn drop_ppm(&self) -> u32 {
        self.drop_ppm.load(Relaxed)
    }
    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Relaxed))
    }
    pub fn set_latency(&self, d: Duration) {
        self.latency_us.store(d.as_micros().min(u64::MAX as u128) as u64, Relaxed)
    }
    pub fn ignore_power(&self) -> bool {
        self.ignore_power.load(Relaxed)
    }
    pub fn set_ignore_power(&self, v: bool) {
        self.ignore_power.store(v, Relaxed)
    }
    pub fn busy(&self) -> bool {
        self.busy.load(Relaxed)
    }
    pub fn set_busy(&self, v: bool) {
        self.busy.store(v, Relaxed)
    }
}

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        /// What one BMC saw and did, for invariant checks (e.g. "no power command was sent to a
        /// node in maintenance") and for benchmarks.
        #[derive(Debug, Default)]
        pub struct Counters { $($(#[$m])* pub(crate) $name: AtomicU64,)* }

        /// Snapshot of [`Counters`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct BmcStats { $($(#[$m])* pub $name: u64,)* }

        impl Counters {
            pub fn snapshot(&self) -> BmcStats {
                BmcStats { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Datagrams that reached the BMC (before drop faults).
    packets_in,
    /// Datagrams lost to the drop-rate knob (either direction).
    packets_dropped,
    /// Datagrams ignored because the BMC was unresponsive.
    packets_ignored,
    /// Datagrams that did not parse or failed integrity/sequence checks.
    packets_rejected,
    /// Replies sent.
    packets_out,
    /// Sessions that completed RAKP.
    sessions_opened,
    /// Sessions closed by Close Session.
    sessions_closed,
    /// Sessions removed by the idle timeout.
    sessions_expired,
    /// Open Session refused for lack of session slots.
    sessions_refused,
    /// RAKP failures (unknown user, wrong password, bad role).
    auth_failures,
    /// IPMI commands answered inside a session.
    commands,
    /// Requests answered from the duplicate-request cache instead of being executed again.
    duplicates,
    /// Commands answered 0xC0 by the busy knob.
    busy_replies,
    /// Commands answered 0xC1.
    unknown_commands,
    get_chassis_status,
    get_device_id,
    power_on,
    power_off,
    power_cycle,
    hard_reset,
    soft_off,
    /// Chassis Control accepted but not applied (ignore-power knob).
    power_ignored,
    set_boot,
    get_boot,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}
