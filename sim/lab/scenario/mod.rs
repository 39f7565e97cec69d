//! Scenario files: parse, run against a simulated fleet, check expectations and invariants.
//!
//! `ferric scenario run FILE [--seed N] [--json OUT] [--diagram OUT]` runs one (see [`model`] for
//! the file format): same file and seed, same trace hash, on every run and machine.

pub mod cli;
pub mod diagram;
pub mod html;
pub mod invariants;
pub mod model;
pub mod report;
pub mod run;
pub mod seed;
pub mod wiring;

pub use model::Scenario;
pub use report::Report;
pub use run::{RunOptions, run};
