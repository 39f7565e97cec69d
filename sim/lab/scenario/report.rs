//! The result of a run: a summary table for people, JSON for tools.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One expectation or invariant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Check {
    pub fn new(name: String, ok: bool, detail: String) -> Check {
        Check { name, ok, detail }
    }

    /// Holds when `problems` is empty; the first few are the detail.
    pub fn list(name: &str, problems: &[String]) -> Check {
        let mut detail = problems.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
        if problems.len() > 5 {
            let _ = write!(detail, "; and {} more", problems.len() - 5);
        }
        Check { name: name.into(), ok: problems.is_empty(), detail }
    }
}

/// What one action did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ActionOutcome {
    pub kind: String,
    pub nodes: usize,
    /// Virtual time from the action's start until its machines settled.
    pub virtual_secs: f64,
    /// API calls retried after 503 (no free worker) or 409 (locked).
    pub retries: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// What a fault did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FaultOutcome {
    pub kind: String,
    pub nodes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<f64>,
    /// Final states of the affected nodes.
    pub states: BTreeMap<String, usize>,
    /// Evidence that the fault struck (packets dropped, crashes, ...).
    pub counters: BTreeMap<String, u64>,
    pub ok: bool,
}

/// A run's report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub passed: bool,
    pub trace_hash: String,
    pub trace_events: u64,
    pub virtual_secs: f64,
    pub wall_secs: f64,
    pub nodes: usize,
    pub conductor_starts: u32,
    pub states: BTreeMap<String, usize>,
    pub actions: Vec<ActionOutcome>,
    pub faults: Vec<FaultOutcome>,
    pub expectations: Vec<Check>,
    pub invariants: Vec<Check>,
}

fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

impl Report {
    /// The human summary.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "scenario: {} (seed {}, {} nodes)", self.scenario, self.seed, self.nodes);
        let _ = writeln!(
            o,
            "time: {} virtual ({:.0} s), {:.2} s wall; {} trace events; conductor started {} time(s)",
            hms(self.virtual_secs),
            self.virtual_secs,
            self.wall_secs,
            self.trace_events,
            self.conductor_starts
        );
        let _ = writeln!(o, "\n{:<20} {:>8}", "provision state", "nodes");
        for (s, n) in &self.states {
            let _ = writeln!(o, "{s:<20} {n:>8}");
        }
        if !self.actions.is_empty() {
            let _ = writeln!(o, "\n{:<10} {:>7} {:>12} {:>8}  errors", "action", "nodes", "virtual", "retries");
            for a in &self.actions {
                let _ = writeln!(
                    o,
                    "{:<10} {:>7} {:>12} {:>8}  {}",
                    a.kind,
                    a.nodes,
                    hms(a.virtual_secs),
                    a.retries,
                    a.errors.first().map(String::as_str).unwrap_or("")
                );
            }
        }
        if !self.faults.is_empty() {
            let _ = writeln!(o, "\n{:<18} {:>6}  {:<32} {:<28} result", "fault", "nodes", "final states", "evidence");
            for f in &self.faults {
                let states = f.states.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
                let mut ev = f.counters.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
                if let Some(t) = f.fired_at {
                    let _ = write!(ev, " at {t:.0}s");
                }
                let _ = writeln!(
                    o,
                    "{:<18} {:>6}  {:<32} {:<28} {}",
                    f.kind,
                    f.nodes,
                    states,
                    ev.trim(),
                    if f.ok { "ok" } else { "FAILED" }
                );
            }
        }
        for (title, checks) in [("expectations", &self.expectations), ("invariants", &self.invariants)] {
            if checks.is_empty() {
                continue;
            }
            let _ = writeln!(o, "\n{title}:");
            for c in checks {
                let mark = if c.ok { "ok  " } else { "FAIL" };
                if c.detail.is_empty() {
                    let _ = writeln!(o, "  {mark} {}", c.name);
                } else {
                    let _ = writeln!(o, "  {mark} {} ({})", c.name, c.detail);
                }
            }
        }
        let _ = writeln!(o, "\nresult: {}", if self.passed { "PASSED" } else { "FAILED" });
        let _ = writeln!(o, "trace-hash: {}", self.trace_hash);
        o
    }
}
