//! ferric-service: bare-metal provisioning in the spirit of OpenStack Ironic. One folder per box
//! of the user guide's diagram:
//!
//! - [`api`]: the REST API, wire-compatible with Ironic v1.
//! - [`conductor`]: node locks, the worker pool, periodic tasks, and the provision state machine
//!   applied (its table is `ferric_types::state_machine`); it answers the rpc contract
//!   (`ferric_types::rpc`) in process.
//! - [`drivers`]: hardware types and their interfaces (power, management, boot, deploy, network).
//! - [`db`]: the database.
//! - [`pxe`]: DHCP, TFTP and HTTP boot, boot configs, the image cache.
//! - [`images`]: the image service (Glance's role) and temporary URLs (Swift's).
//! - [`network`]: ports on the provisioning network, DHCP host entries.
//! - [`ipmi`]: the IPMI 2.0 client; [`redfish`]: the Redfish client; [`iscsi`]: the iSCSI initiator.
//! - [`console`]: the web console (fleet and node pages, actions) beside the API.
//! - [`config`] and [`assemble`]: settings, and the service built from them.
//! - [`http_server`] and [`tls`]: the HTTP(S) server under the API, HTTP boot and RPC endpoints;
//!   [`audit`] and [`metrics`]: the audit log and `/metrics`.
//!
//! Which folder may use which is the table in the README's "Architecture" section, checked by
//! `tests/architecture.rs`. Nothing here knows the simulator: simulated hardware plugs in through
//! the same traits as real hardware (`ferric_lab`).

pub mod api;
pub mod assemble;
pub mod audit;
pub mod conductor;
pub mod config;
pub mod console;
pub mod db;
pub mod drivers;
pub mod http_server;
pub mod images;
pub mod ipmi;
pub mod iscsi;
pub mod metrics;
pub mod network;
pub mod pxe;
pub mod redfish;
pub mod rpc;
pub mod tls;

pub use assemble::{Service, ServiceError, shutdown_signal};
