//! Virtual BMC: an IPMI 2.0 server speaking RMCP+ ("lanplus") over UDP or in-memory links.
//!
//! Hand-written because no Rust crate implements the BMC (server) side of IPMI over LAN: the
//! crates that exist (ipmi-rs and friends) are clients. What is implemented is what ipmitool,
//! pyghmi, Ironic and ferric use to power-manage a node: Get Channel Authentication
//! Capabilities (also in the IPMI v1.5 framing ipmitool sends before a session), Get Channel
//! Cipher Suites, RMCP+ Open Session and RAKP 1-4, Set Session Privilege Level, Close Session,
//! Get Device ID, Get System GUID, Get Chassis Status, Chassis Control, and Set/Get System Boot
//! Options parameters 0, 3, 4 and 5. Cipher suites 1, 2, 3 and 17 (0 only when configured).
//!
//! Behind the BMC sits a [`Machine`](crate::machine::Machine); in front of it a transport
//! ([`serve_udp`], [`Bmc::link`]). Faults ([`Faults`]) and counters ([`BmcStats`]) live on the
//! BMC so they work for any machine.

mod bmc;
pub mod crypto;
mod faults;
mod transport;
pub mod wire;

pub use bmc::{
    Bmc, BmcConfig, ConfigError, PRIV_ADMIN, PRIV_CALLBACK, PRIV_OPERATOR, PRIV_USER, Password, Peer, Reply, status,
};
pub use faults::{BmcStats, FaultSettings, Faults};
pub use transport::{LINK_CAPACITY, MAX_DATAGRAM, serve_link, serve_udp, serve_udp_blocking};
