//! Wall-clock timestamps and fresh UUIDs, both replaceable so a simulation is reproducible: on a
//! virtual clock, timestamps follow tokio's (paused) time from a fixed epoch, and UUIDs come from
//! a seeded generator.

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::sync::Arc;
use uuid::Uuid;

/// Source of timestamps and identifiers.
#[derive(Clone)]
pub struct Clock {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    System,
    Virtual { epoch: DateTime<Utc>, start: tokio::time::Instant, rng: Arc<Mutex<StdRng>> },
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    pub fn system() -> Clock {
        Clock { kind: Kind::System }
    }

    /// Time starts at `epoch` now and advances with tokio's clock; UUIDs derive from `seed`.
    pub fn virtual_from(epoch: DateTime<Utc>, seed: u64) -> Clock {
        Clock {
            kind: Kind::Virtual {
                epoch,
                start: tokio::time::Instant::now(),
                rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            },
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.kind {
            Kind::System => Utc::now(),
            Kind::Virtual { epoch, start, .. } => {
                *epoch + chrono::Duration::from_std(start.elapsed()).unwrap_or_default()
            }
        }
    }

    pub fn new_uuid(&self) -> Uuid {
        match &self.kind {
            Kind::System => Uuid::new_v4(),
            Kind::Virtual { rng, .. } => {
                let bytes: [u8; 16] = rng.lock().random();
                uuid::Builder::from_random_bytes(bytes).into_uuid()
            }
        }
    }

    /// A random token (agent tokens): 32 bytes, URL-safe.
    pub fn new_token(&self) -> String {
        let bytes: [u8; 32] = match &self.kind {
            Kind::System => rand::random(),
            Kind::Virtual { rng, .. } => rng.lock().random(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
