//! ferric: bare-metal provisioning in the spirit of OpenStack Ironic, built simulation-first.
//!
//! The service core (`api`, `rpc`, `conductor`, `drivers`, `db`, `pxe`, `images`, `network`,
//! `iscsi`, `ipmi`, `agent`) never imports `ferric_sim`; only the CLI-level `lab` and `scenario`
//! modules do, to plug simulated or QEMU hardware in through the same traits real hardware uses.

pub mod agent;
pub mod api;
pub mod blocking;
pub mod clock;
pub mod conductor;
pub mod config;
pub mod db;
pub mod drivers;
pub mod images;
pub mod ipmi;
pub mod iscsi;
pub mod lab;
pub mod models;
pub mod network;
pub mod pxe;
pub mod rpc;
pub mod scenario;
pub mod service;
pub mod trace;
