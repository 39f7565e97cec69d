//! ferric-types: the vocabulary every part of ferric shares, and nothing that does I/O on its own.
//!
//! - [`models`]: Ironic's objects (node, port, portgroup, chassis, ...) with typed IDs.
//! - [`state_machine`]: the provision state machine as a table.
//! - [`rpc`]: what the API asks of a conductor, and the errors that cross that boundary.
//! - [`agent`]: the deploy agent's wire formats (lookup, heartbeat, commands).
//! - [`dhcp`]: what the DHCP server asks of its host table and lease store.
//! - [`trace`]: the actors and messages of the user guide's sequence diagrams.
//! - [`ipmi`]: IPMI network functions and commands by name (the client and the virtual BMC).
//! - [`clock`], [`blocking`], [`http`]: the seams to the outside (time, identifiers and
//!   randomness; blocking work; HTTP), replaceable so a simulation is deterministic.

pub mod agent;
pub mod blocking;
pub mod clock;
pub mod dhcp;
pub mod http;
pub mod ipmi;
pub mod models;
pub mod py_json;
pub mod rpc;
pub mod state_machine;
pub mod tls;
pub mod trace;
