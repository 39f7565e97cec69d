//! Deploy traces: every message a deploy sends, as (actor → actor, label) events with the user
//! guide's actors, so a run can be drawn as its sequence diagrams and compared with them. The
//! deploy plans name the messages, the conductor and the API record them, `GET /ferric/trace/{node}`
//! and the scenario runner read them.

use crate::models::NodeId;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The participants of the seed's sequence diagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Actor {
    /// Nova, or whichever client drives the API.
    Nova,
    Api,
    Conductor,
    /// The network service (Neutron's role: ports, DHCP options).
    Neutron,
    HttpStore,
    TftpHttpd,
    Node,
}

impl Actor {
    /// The name used in the seed's diagrams.
    pub fn as_str(&self) -> &'static str {
        match self {
            Actor::Nova => "Nova",
            Actor::Api => "API",
            Actor::Conductor => "Conductor",
            Actor::Neutron => "Neutron",
            Actor::HttpStore => "HTTPStore",
            Actor::TftpHttpd => "TFTP/HTTPd",
            Actor::Node => "Node",
        }
    }
}

/// One message: who says what to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Says {
    pub from: Actor,
    pub to: Actor,
    pub label: &'static str,
}

impl Says {
    pub const fn new(from: Actor, to: Actor, label: &'static str) -> Says {
        Says { from, to, label }
    }
}

/// One message of a deploy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TraceEvent {
    /// Milliseconds since the recorder started (tokio time, so virtual in simulations).
    pub at_ms: u64,
    pub node: NodeId,
    pub from: Actor,
    pub to: Actor,
    pub label: String,
}

/// One node's messages as one process's recorder kept them, for another process (the API's web
/// console asks the node's conductor): which recorder, when it started, and the events.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeTrace {
    /// Identifies the recorder, so a process does not merge its own events twice.
    pub recorder: u64,
    /// Wall-clock start of the recorder (Unix milliseconds): events' `at_ms` count from here.
    pub start_unix_ms: u64,
    pub events: Vec<TraceEvent>,
}

/// Collects trace events. Cheap to clone; bounded: beyond `capacity` events only the running
/// hash and count advance, so fleet-scale runs keep constant memory.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderInner>>,
    start: tokio::time::Instant,
    start_unix_ms: u64,
    id: u64,
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
            start_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            id: rand::random(),
        }
    }

    /// Identifies this recorder (see [`NodeTrace::recorder`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A node's events with what another process needs to place them on its own timeline; none
    /// when `asker` is this recorder (it has them already: the console polls this every 2 s).
    pub fn node_trace(&self, node: NodeId, asker: u64) -> NodeTrace {
        let events = if asker == self.id { Vec::new() } else { self.node_events(node) };
        NodeTrace { recorder: self.id, start_unix_ms: self.start_unix_ms, events }
    }

    /// A node's events, with those `other` (another process's recorder) kept merged in by time;
    /// `other` from this very recorder adds nothing.
    pub fn node_events_with(&self, node: NodeId, other: Option<NodeTrace>) -> Vec<TraceEvent> {
        let mut events = self.node_events(node);
        let Some(other) = other.filter(|o| o.recorder != self.id) else { return events };
        for mut e in other.events.into_iter().filter(|e| e.node == node) {
            e.at_ms = (other.start_unix_ms + e.at_ms).saturating_sub(self.start_unix_ms);
            events.push(e);
        }
        // Stable: at equal times this process's events (the API's request) come first.
        events.sort_by_key(|e| e.at_ms);
        events
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

/// Cleaning's messages. The user guide draws no cleaning, so these follow Ironic's cleaning
/// (`do_node_clean`, the cleaning network, the agent's clean steps); the ramdisk's boot reuses the
/// deploy's labels, as it is the same ramdisk booted the same way.
pub mod cleaning {
    /// The first message of every cleaning: the console and reports start a cleaning run here.
    pub const DO_NODE_CLEAN: &str = "do_node_clean()";
    pub const ATTACH_CLEANING: &str = "Attach cleaning network to port(s)";
    pub const DETACH_CLEANING: &str = "Detach cleaning network from port(s)";
    pub const MARK_AVAILABLE: &str = "Mark node as AVAILABLE";
    pub const MARK_MANAGEABLE: &str = "Mark node as MANAGEABLE";

    /// The conductor asks the agent to run one clean step.
    pub fn execute(interface: &str, step: &str) -> String {
        format!("Execute clean step {interface}.{step}")
    }

    /// The agent reports a clean step finished.
    pub fn done(step: &str) -> String {
        format!("Clean step {step} done")
    }
}

/// The messages of the user guide's two sequence diagrams ("Example 1: PXE Boot and iSCSI Deploy
/// Process", "Example 2: PXE Boot and Direct Deploy Process"), with the diagrams' line breaks
/// turned into spaces. Deploys record these labels, so a run can be compared with the seed.
pub mod seed {
    use super::Actor::{self, *};

    /// Labels used by the deploy steps (so the recording code and the lists below agree).
    pub const SET_INSTANCE_INFO: &str = "Set instance_info (image_source, root_gb, etc.)";
    pub const VALIDATE_INTERFACES: &str = "Validate power and deploy interfaces";
    pub const PLUG_VIFS: &str = "Plug VIFs to the node";
    pub const SET_PROVISION_STATE: &str = "Set provision_state, optionally pass configdrive";
    pub const DO_NODE_DEPLOY: &str = "do_node_deploy()";
    pub const STORE_CONFIGDRIVE: &str = "Store configdrive if configdrive_use_swift option is set";
    pub const ATTACH_PROVISIONING: &str = "Attach provisioning network to port(s)";
    pub const UPDATE_DHCP: &str = "Update DHCP boot options";
    pub const PREPARE_PXE_DEPLOY: &str = "Prepare PXE environment for deployment";
    pub const SET_PXE_BOOT: &str = "Set PXE boot device through the BMC";
    pub const CACHE_ISCSI: &str = "Cache deploy kernel, ramdisk, instance images";
    pub const CACHE_DIRECT: &str = "Cache deploy and instance kernel and ramdisk";
    pub const DHCP_REQUEST: &str = "DHCP request";
    pub const NEXT_SERVER: &str = "next-server = Conductor";
    pub const RUNS_RAMDISK: &str = "Runs agent ramdisk";
    pub const LOOKUP: &str = "lookup()";
    pub const PASS_UUID: &str = "Pass UUID";
    pub const HEARTBEAT_UUID: &str = "Heartbeat (UUID)";
    pub const HEARTBEAT: &str = "Heartbeat";
    pub const EXPOSE_ISCSI: &str = "Send IPA a command to expose disks via iSCSI";
    pub const ISCSI_ATTACH: &str = "iSCSI attach";
    pub const COPY_IMAGE: &str = "Copies user image and configdrive, if present";
    pub const ISCSI_DETACH: &str = "iSCSI detach";
    pub const DELETE_CACHED_IMAGE: &str = "Delete instance image from cache";
    pub const CONTINUE_DEPLOY: &str = "Continue deploy asynchronously: Pass image, disk info";
    pub const DOWNLOADS_IMAGE: &str = "Downloads image, writes to disk, writes configdrive if present";
    pub const IS_DEPLOY_DONE: &str = "Is deploy done?";
    pub const STILL_WORKING: &str = "Still working...";
    pub const DEPLOY_IS_DONE: &str = "Deploy is done";
    pub const INSTALL_BOOTLOADER: &str = "Install boot loader, if requested";
    pub const PREPARE_PXE_INSTANCE: &str = "Prepare PXE environment for instance image";
    pub const PREPARE_PXE_INSTANCE_IF_NEEDED: &str = "Prepare PXE environment for instance image if needed";
    pub const SET_BOOT_DEVICE: &str = "Set boot device either to PXE or to disk";
    pub const COLLECT_LOGS: &str = "Collect ramdisk logs";
    pub const POWER_OFF: &str = "POWER OFF";
    pub const REBOOT: &str = "REBOOT";
    pub const POWER_ON: &str = "POWER ON";
    pub const DETACH_PROVISIONING: &str = "Detach provisioning network from port(s)";
    pub const BIND_TENANT: &str = "Bind tenant port";
    pub const MARK_ACTIVE: &str = "Mark node as ACTIVE";

    /// One message of a diagram.
    pub type Message = (Actor, Actor, &'static str);

    const HEAD: [Message; 12] = [
        (Nova, Api, SET_INSTANCE_INFO),
        (Nova, Api, VALIDATE_INTERFACES),
        (Nova, Api, PLUG_VIFS),
        (Nova, Api, SET_PROVISION_STATE),
        (Api, Conductor, DO_NODE_DEPLOY),
        (Conductor, Conductor, VALIDATE_INTERFACES),
        (Conductor, HttpStore, STORE_CONFIGDRIVE),
        (Conductor, Node, POWER_OFF),
        (Conductor, Neutron, ATTACH_PROVISIONING),
        (Conductor, Neutron, UPDATE_DHCP),
        (Conductor, Conductor, PREPARE_PXE_DEPLOY),
        (Conductor, Node, SET_PXE_BOOT),
    ];

    const BOOT: [Message; 8] = [
        (Conductor, Node, REBOOT),
        (Node, Neutron, DHCP_REQUEST),
        (Neutron, Node, NEXT_SERVER),
        (Node, Node, RUNS_RAMDISK),
        (Node, Api, LOOKUP),
        (Api, Node, PASS_UUID),
        (Node, Api, HEARTBEAT_UUID),
        (Api, Conductor, HEARTBEAT),
    ];

    /// Example 1: PXE Boot and iSCSI Deploy Process, in order.
    pub fn iscsi() -> Vec<Message> {
        let mut v = HEAD.to_vec();
        v.push((Conductor, Conductor, CACHE_ISCSI));
        v.extend(BOOT);
        v.extend([
            (Conductor, Node, EXPOSE_ISCSI),
            (Conductor, Node, ISCSI_ATTACH),
            (Conductor, Node, COPY_IMAGE),
            (Conductor, Node, ISCSI_DETACH),
            (Conductor, Conductor, DELETE_CACHED_IMAGE),
            (Conductor, Node, INSTALL_BOOTLOADER),
            (Conductor, Neutron, UPDATE_DHCP),
            (Conductor, Conductor, PREPARE_PXE_INSTANCE),
            (Conductor, Node, SET_BOOT_DEVICE),
            (Conductor, Node, COLLECT_LOGS),
            (Conductor, Node, POWER_OFF),
            (Conductor, Neutron, DETACH_PROVISIONING),
            (Conductor, Neutron, BIND_TENANT),
            (Conductor, Node, POWER_ON),
            (Conductor, Conductor, MARK_ACTIVE),
        ]);
        v
    }

    /// Example 2: PXE Boot and Direct Deploy Process, in order. The "Is deploy done?" /
    /// "Still working..." exchange repeats once per heartbeat while the image is written.
    pub fn direct() -> Vec<Message> {
        let mut v = HEAD.to_vec();
        v.push((Conductor, Conductor, CACHE_DIRECT));
        v.extend(BOOT);
        v.extend([
            (Conductor, Node, CONTINUE_DEPLOY),
            (Node, HttpStore, DOWNLOADS_IMAGE),
            (Conductor, Node, IS_DEPLOY_DONE),
            (Node, Conductor, STILL_WORKING),
            (Node, Conductor, DEPLOY_IS_DONE),
            (Conductor, Node, INSTALL_BOOTLOADER),
            (Conductor, Neutron, UPDATE_DHCP),
            (Conductor, Conductor, PREPARE_PXE_INSTANCE_IF_NEEDED),
            (Conductor, Node, SET_BOOT_DEVICE),
            (Conductor, Node, COLLECT_LOGS),
            (Conductor, Node, POWER_OFF),
            (Conductor, Neutron, DETACH_PROVISIONING),
            (Conductor, Neutron, BIND_TENANT),
            (Conductor, Node, POWER_ON),
            (Conductor, Conductor, MARK_ACTIVE),
        ]);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn another_recorders_events_merge_by_wall_clock_once() {
        let node = NodeId(uuid::Uuid::from_u128(7));
        let api = Recorder::new(100);
        api.record(node, Actor::Nova, Actor::Api, seed::SET_PROVISION_STATE);
        let own = api.node_trace(node, 0);
        // The same recorder's trace adds nothing.
        assert_eq!(api.node_events_with(node, Some(own.clone())).len(), 1);
        assert!(api.node_trace(node, api.id()).events.is_empty(), "nothing copied for its own recorder");
        // A conductor's recorder that started 1 s before the API's.
        let ev = |at_ms, label: &str| TraceEvent {
            at_ms,
            node,
            from: Actor::Conductor,
            to: Actor::Node,
            label: label.into(),
        };
        let remote = NodeTrace {
            recorder: own.recorder.wrapping_add(1),
            start_unix_ms: own.start_unix_ms - 1000,
            events: vec![ev(500, "before"), ev(1000 + 5_000, seed::REBOOT)],
        };
        let merged = api.node_events_with(node, Some(remote));
        let labels: Vec<&str> = merged.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels[2], seed::REBOOT, "{labels:?}");
        assert_eq!(merged[2].at_ms, 5_000);
        assert_eq!(merged[0].at_ms, 0, "an event before this recorder started is placed at its start");
        assert_eq!(merged.len(), 3);
    }
}
