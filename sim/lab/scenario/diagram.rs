//! A node's recorded deploy as sequence diagram text: Mermaid, and seqdiag (the seed's format).

use ferric_types::trace::{Actor, TraceEvent};
use std::fmt::Write;

/// The seed's participants, in its order.
pub const PARTICIPANTS: [Actor; 7] =
    [Actor::Nova, Actor::Api, Actor::Conductor, Actor::Neutron, Actor::HttpStore, Actor::TftpHttpd, Actor::Node];

fn mermaid_id(a: Actor) -> &'static str {
    match a {
        Actor::TftpHttpd => "TFTP_HTTPd",
        other => other.as_str(),
    }
}

fn escape(label: &str, quote: bool) -> String {
    let l = label.replace(['\n', '\r'], " ");
    if quote { l.replace('"', "'") } else { l.replace(';', ",").replace('#', "") }
}

/// Mermaid `sequenceDiagram` text.
pub fn mermaid(title: &str, events: &[TraceEvent]) -> String {
    let mut o = String::from("sequenceDiagram\n");
    let _ = writeln!(o, "    title {}", escape(title, false));
    for a in PARTICIPANTS {
        if a == Actor::TftpHttpd {
            let _ = writeln!(o, "    participant {} as TFTP/HTTPd", mermaid_id(a));
        } else {
            let _ = writeln!(o, "    participant {}", mermaid_id(a));
        }
    }
    for e in events {
        let _ = writeln!(o, "    {}->>{}: {}", mermaid_id(e.from), mermaid_id(e.to), escape(&e.label, false));
    }
    o
}

/// seqdiag text, in the layout of the user guide's diagrams.
pub fn seqdiag(events: &[TraceEvent]) -> String {
    let mut o = String::from("diagram {\n");
    o.push_str("    Nova; API; Conductor; Neutron; HTTPStore; \"TFTP/HTTPd\"; Node;\n");
    o.push_str("    activation = none;\n    edge_length = 250;\n    span_height = 1;\n");
    o.push_str("    default_note_color = white;\n    default_fontsize = 14;\n\n");
    let name = |a: Actor| if a == Actor::TftpHttpd { "\"TFTP/HTTPd\"".to_string() } else { a.as_str().to_string() };
    for e in events {
        let _ = writeln!(o, "    {} -> {} [label = \"{}\"];", name(e.from), name(e.to), escape(&e.label, true));
    }
    o.push_str("}\n");
    o
}
