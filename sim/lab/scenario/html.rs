//! `ferric scenario run FILE --html OUT`: the run as one self-contained HTML page (the console's
//! style, bars and timeline; Mermaid inline), readable offline: per-state counts, what each
//! fault and action did, the expectations and invariants, the diagram node's deploy as a
//! timeline and a sequence diagram, and the diagram of each failed node.

use super::diagram;
use super::report::Check;
use super::run::Outcome;
use ferric_service::console::diagram::{Run, last_run};
use ferric_service::console::pages;
use ferric_types::trace::TraceEvent;
use maud::{Markup, html};

fn ok(b: bool) -> &'static str {
    if b { "✔ held" } else { "✘ failed" }
}

fn checks(title: &str, list: &[Check]) -> Markup {
    html! {
        table {
            caption { (title) }
            thead { tr { th scope="col" { "Check" } th scope="col" { "Result" } th scope="col" { "Detail" } } }
            tbody {
                @for c in list {
                    tr { td { (c.name) } td class=(if c.ok { "" } else { "error" }) { (ok(c.ok)) } td { (c.detail) } }
                }
                @if list.is_empty() { tr { td colspan="3" { "None." } } }
            }
        }
    }
}

fn sequence(title: &str, events: &[TraceEvent]) -> Markup {
    html! {
        div.diagram {}
        details {
            summary { "Mermaid text" }
            pre.mermaid-src { (diagram::mermaid(title, events)) }
        }
    }
}

/// The report page.
pub fn page(scenario: &str, out: &Outcome) -> String {
    let r = &out.report;
    let states: Vec<(String, usize)> = r.states.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let content = html! {
        h1 { "Scenario " (r.scenario) }
        p class=(if r.passed { "" } else { "error" }) {
            strong { @if r.passed { "Passed" } @else { "Failed" } }
            " · seed " (r.seed) " · " (r.nodes) " nodes · " (format!("{:.0}", r.virtual_secs)) " s virtual, "
            (format!("{:.1}", r.wall_secs)) " s wall · trace hash " code { (r.trace_hash) } " (" (r.trace_events) " messages)"
        }
        section aria-labelledby="states-h" {
            h2 #states-h { "Final states" }
            (pages::bars("Provision states", &states, |_| "#states-h".to_string()))
        }
        section aria-labelledby="faults-h" {
            h2 #faults-h { "Faults" }
            table {
                thead { tr { th scope="col" { "Fault" } th scope="col" { "Nodes" } th scope="col" { "Expected" }
                    th scope="col" { "Struck at" } th scope="col" { "Final states" } th scope="col" { "Evidence" } th scope="col" { "Result" } } }
                tbody {
                    @for f in &r.faults {
                        tr {
                            td { (f.kind) } td { (f.nodes) } td { (f.expect.as_deref().unwrap_or("")) }
                            td { @if let Some(t) = f.fired_at { (format!("{t:.1} s")) } }
                            td { (f.states.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")) }
                            td { (f.counters.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")) }
                            td class=(if f.ok { "" } else { "error" }) { (ok(f.ok)) }
                        }
                    }
                    @if r.faults.is_empty() { tr { td colspan="7" { "No faults." } } }
                }
            }
        }
        section aria-labelledby="actions-h" {
            h2 #actions-h { "Actions" }
            table {
                thead { tr { th scope="col" { "Action" } th scope="col" { "Nodes" } th scope="col" { "Virtual time" } th scope="col" { "Retries" } th scope="col" { "Errors" } } }
                tbody {
                    @for a in &r.actions {
                        tr { td { (a.kind) } td { (a.nodes) } td { (format!("{:.1} s", a.virtual_secs)) } td { (a.retries) } td { (a.errors.join("; ")) } }
                    }
                }
            }
        }
        section aria-labelledby="checks-h" {
            h2 #checks-h { "Expectations and invariants" }
            (checks("Expectations", &r.expectations))
            (checks("Invariants", &r.invariants))
        }
        @if let Some((name, events)) = &out.deploy {
            section aria-labelledby="deploy-h" {
                h2 #deploy-h { "Deploy of " (name) }
                h3 { "Timeline" }
                (pages::timeline(&Run { events: events.clone(), number: 1, of: 1, ..Run::default() }))
                h3 { "Sequence diagram" }
                (sequence(&format!("{scenario}: deploy of {name}"), events))
            }
        }
        @for f in &out.failed {
            section aria-label=(format!("Failed node {}", f.name)) {
                h2 { "Failed: " (f.name) " (" (f.state) ")" }
                @if let Some(e) = &f.last_error { p.error { (e) } }
                @let run = last_run(&f.events);
                @if run.events.is_empty() {
                    p.muted { "No messages kept for this node (the trace keeps only some nodes at scale)." }
                } @else {
                    (sequence(&format!("{}: last {}", f.name, run.kind.as_str().to_lowercase()), &run.events))
                }
            }
        }
    };
    pages::standalone(&format!("Scenario {scenario}"), content).into_string()
}
