//! Deploy traces: every message a deploy sends, as (actor → actor, label) events with the seed's
//! actors, so a run can be drawn as the user guide's sequence diagrams and compared with them.

use ferric_types::models::NodeId;
pub use ferric_types::trace::{Actor, Says, seed};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// One message of a deploy.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TraceEvent {
    /// Milliseconds since the recorder started (tokio time, so virtual in simulations).
    pub at_ms: u64,
    pub node: NodeId,
    pub from: Actor,
    pub to: Actor,
    pub label: String,
}

/// Collects trace events. Cheap to clone; bounded: beyond `capacity` events only the running
/// hash and count advance, so fleet-scale runs keep constant memory.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderInner>>,
    start: tokio::time::Instant,
}

struct RecorderInner {
    events: Vec<TraceEvent>,
    capacity: usize,
    /// Nodes whose events are kept (all when `None`).
    keep: Option<BTreeSet<NodeId>>,
    hash: u64,
    count: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new(100_000)
    }
}

impl Recorder {
    pub fn new(capacity: usize) -> Recorder {
        Recorder {
            inner: Arc::new(Mutex::new(RecorderInner {
                events: Vec::new(),
                capacity,
                keep: None,
                hash: 0xcbf2_9ce4_8422_2325,
                count: 0,
            })),
            start: tokio::time::Instant::now(),
        }
    }

    /// Keep the full events only for these nodes (the hash still covers every node).
    pub fn keep_only(&self, nodes: impl IntoIterator<Item = NodeId>) {
        self.inner.lock().keep = Some(nodes.into_iter().collect());
    }

    pub fn record(&self, node: NodeId, from: Actor, to: Actor, label: impl Into<String>) {
        let label = label.into();
        let at_ms = self.start.elapsed().as_millis() as u64;
        tracing::debug!(node = %node, from = from.as_str(), to = to.as_str(), label = %label, "trace");
        let mut g = self.inner.lock();
        // FNV-1a over the event's text: stable across runs and platforms.
        let text = format!("{at_ms}|{node}|{}|{}|{label}\n", from.as_str(), to.as_str());
        for b in text.bytes() {
            g.hash ^= b as u64;
            g.hash = g.hash.wrapping_mul(0x0100_0000_01b3);
        }
        g.count += 1;
        let keep = g.keep.as_ref().is_none_or(|k| k.contains(&node));
        if keep && g.events.len() < g.capacity {
            g.events.push(TraceEvent { at_ms, node, from, to, label });
        }
    }

    /// Events kept so far.
    pub fn events(&self) -> Vec<TraceEvent> {
        self.inner.lock().events.clone()
    }

    /// A node's events, in order.
    pub fn node_events(&self, node: NodeId) -> Vec<TraceEvent> {
        self.inner.lock().events.iter().filter(|e| e.node == node).cloned().collect()
    }

    /// Hash of every event recorded (kept or not), and how many.
    pub fn digest(&self) -> (u64, u64) {
        let g = self.inner.lock();
        (g.hash, g.count)
    }
}

/// A Mermaid sequence diagram of `events` (the seed's participants, in its order).
pub fn mermaid(events: &[TraceEvent]) -> String {
    let mut out = String::from("sequenceDiagram\n");
    for a in
        [Actor::Nova, Actor::Api, Actor::Conductor, Actor::Neutron, Actor::HttpStore, Actor::TftpHttpd, Actor::Node]
    {
        let id = a.as_str().replace('/', "_");
        out.push_str(&format!("    participant {id} as {}\n", a.as_str()));
    }
    for e in events {
        let label = e.label.replace([';', '#'], " ");
        out.push_str(&format!(
            "    {}->>{}: {label}\n",
            e.from.as_str().replace('/', "_"),
            e.to.as_str().replace('/', "_")
        ));
    }
    out
}
