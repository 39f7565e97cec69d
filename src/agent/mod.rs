//! The deploy ramdisk agent (ironic-python-agent compatible), as a library; binary ferric-agent.
//!
//! - [`wire`]: lookup/heartbeat bodies, command requests and results (shared with the API and the
//!   conductor).
//! - [`run::Agent`]: lookup, heartbeat loop, and the REST router ([`server`]).
//! - [`commands::Extension`]: the command extension point (`iscsi` plugs in here).
//! - [`client::AgentClient`]: the conductor's side.
//! - [`http`]: the HTTP seam (reqwest, or tower services in-process).

pub mod api_client;
pub mod client;
pub mod commands;
pub mod context;
pub mod disks;
pub mod download;
pub mod extensions;
pub mod http;
pub mod iscsi_ext;
pub mod run;
pub mod server;
pub mod wire;

pub use client::AgentClient;
pub use commands::{Extension, Prepared};
pub use context::{AgentContext, AgentSettings, HostMode, LogRing};
pub use disks::Disk;
pub use http::{HttpClient, ReqwestHttp, TowerHttp};
pub use run::{Agent, AgentConfig};
