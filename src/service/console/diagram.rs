//! A node's last deploy or cleaning out of its recorded trace: the messages since the last one
//! that started either, as Mermaid text (the seed's participants and labels) and as timed steps.

use ferric_types::trace::{Actor, TraceEvent, cleaning, mermaid};

/// What a run of messages is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Deploy,
    Cleaning,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deploy => "Deploy",
            Kind::Cleaning => "Cleaning",
        }
    }
}

/// One deploy's or cleaning's messages.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub events: Vec<TraceEvent>,
    pub kind: Kind,
    /// Which run this is (1-based) of how many were recorded (deploys and cleanings).
    pub number: usize,
    pub of: usize,
    pub mermaid: String,
}

/// Whether `e` starts a cleaning (the conductor's `do_node_clean()`, automated or manual).
fn starts_cleaning(e: &TraceEvent) -> bool {
    e.from == Actor::Conductor && e.to == Actor::Conductor && e.label == cleaning::DO_NODE_CLEAN
}

/// Whether `e` starts a deploy: the client's first message to the API (instance_info, then the
/// provision state), or the API's `do_node_deploy()` when the client sent none.
fn starts_run(prev: Option<&TraceEvent>, e: &TraceEvent) -> bool {
    let from_client = |x: &TraceEvent| x.from == Actor::Nova;
    match prev {
        None => true,
        Some(p) => {
            (from_client(e) && !from_client(p))
                || (e.from == Actor::Api && e.to == Actor::Conductor && !from_client(p) && p.to != Actor::Api)
        }
    }
}

/// The last run of `events` (one node's, in order).
pub fn last_run(events: &[TraceEvent]) -> Run {
    let starts: Vec<usize> = (0..events.len())
        .filter(|&i| {
            starts_cleaning(&events[i]) || starts_run(if i == 0 { None } else { events.get(i - 1) }, &events[i])
        })
        .collect();
    let Some(&from) = starts.last() else { return Run { mermaid: mermaid(&[]), ..Run::default() } };
    let kind = if starts_cleaning(&events[from]) { Kind::Cleaning } else { Kind::Deploy };
    let events = events[from..].to_vec();
    Run { mermaid: mermaid(&events), kind, number: starts.len(), of: starts.len(), events }
}

/// One message on the timeline: when it was sent (ms after the run began) and how long until
/// the next message.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start_ms: u64,
    pub len_ms: u64,
    pub label: String,
    pub from: &'static str,
    pub to: &'static str,
}

/// The run's messages as spans (the last one has no length yet).
pub fn spans(run: &Run) -> Vec<Span> {
    let Some(first) = run.events.first() else { return Vec::new() };
    run.events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let next = run.events.get(i + 1).map(|n| n.at_ms).unwrap_or(e.at_ms);
            Span {
                start_ms: e.at_ms.saturating_sub(first.at_ms),
                len_ms: next.saturating_sub(e.at_ms),
                label: e.label.clone(),
                from: e.from.as_str(),
                to: e.to.as_str(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferric_types::models::NodeId;
    use ferric_types::trace::seed;

    fn ev(at_ms: u64, from: Actor, to: Actor, label: &str) -> TraceEvent {
        TraceEvent { at_ms, node: NodeId(uuid::Uuid::nil()), from, to, label: label.into() }
    }

    #[test]
    fn the_last_deploy_is_the_messages_after_the_clients_last_request() {
        let evs = vec![
            ev(0, Actor::Nova, Actor::Api, seed::SET_INSTANCE_INFO),
            ev(1, Actor::Nova, Actor::Api, seed::SET_PROVISION_STATE),
            ev(2, Actor::Api, Actor::Conductor, seed::DO_NODE_DEPLOY),
            ev(5, Actor::Conductor, Actor::Node, seed::POWER_OFF),
            ev(100, Actor::Nova, Actor::Api, seed::SET_PROVISION_STATE),
            ev(101, Actor::Api, Actor::Conductor, seed::DO_NODE_DEPLOY),
            ev(110, Actor::Conductor, Actor::Node, seed::REBOOT),
        ];
        let run = last_run(&evs);
        assert_eq!((run.number, run.of, run.events.len()), (2, 2, 3));
        assert!(run.mermaid.contains("Conductor->>Node: REBOOT"), "{}", run.mermaid);
        let s = spans(&run);
        assert_eq!((s[0].start_ms, s[0].len_ms), (0, 1));
        assert_eq!((s[2].start_ms, s[2].len_ms), (10, 0));
        assert_eq!(last_run(&[]).events.len(), 0);
    }

    #[test]
    fn a_cleaning_after_the_deploy_is_the_last_run() {
        let evs = vec![
            ev(0, Actor::Nova, Actor::Api, seed::SET_PROVISION_STATE),
            ev(1, Actor::Api, Actor::Conductor, seed::DO_NODE_DEPLOY),
            ev(5, Actor::Conductor, Actor::Conductor, seed::MARK_ACTIVE),
            ev(100, Actor::Conductor, Actor::Conductor, cleaning::DO_NODE_CLEAN),
            ev(101, Actor::Conductor, Actor::Neutron, cleaning::ATTACH_CLEANING),
            ev(102, Actor::Conductor, Actor::Node, seed::REBOOT),
            ev(110, Actor::Node, Actor::Api, seed::HEARTBEAT_UUID),
            ev(111, Actor::Api, Actor::Conductor, seed::HEARTBEAT),
            ev(112, Actor::Conductor, Actor::Node, &cleaning::execute("deploy", "erase_devices_metadata")),
        ];
        let run = last_run(&evs);
        assert_eq!((run.kind, run.number, run.of, run.events.len()), (Kind::Cleaning, 2, 2, 6));
        assert!(run.mermaid.contains("Conductor->>Node: Execute clean step deploy.erase_devices_metadata"));
        // The deploy alone is a deploy run.
        assert_eq!(last_run(&evs[..3]).kind, Kind::Deploy);
    }
}
