//! Scenario files: parse, run against a simulated fleet, check expectations and invariants.
