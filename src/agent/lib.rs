//! ferric-agent: the deploy ramdisk agent (ironic-python-agent compatible), as a library; the
//! `ferric-agent` binary runs it.
//!
//! - [`run::Agent`]: lookup, heartbeat loop, and the REST router ([`server`]).
//! - [`commands::Extension`]: the command extension point; [`extensions`] holds the built-in
//!   ones (`standby`, `deploy`, `clean`, `log`), [`iscsi_ext`] the `iscsi` one.
//! - [`iscsi_target`]: the userspace iSCSI target that `iscsi.start_iscsi_target` starts
//!   (also `ferric-agent iscsi-target`).
//! - [`api_client`]: the agent's calls to ferric's (or Ironic's) API.
//!
//! Its wire formats are `ferric_types::agent`; images are written by `ferric_disk::writer`,
//! which the conductor's `iscsi` deploy shares.

pub mod api_client;
pub mod cli;
pub mod commands;
pub mod context;
pub mod extensions;
pub mod iscsi_ext;
pub mod iscsi_target;
pub mod run;
pub mod server;
pub mod tls;

pub use commands::{Extension, Prepared};
pub use context::{AgentContext, AgentSettings, HostMode, LogRing};
pub use run::{Agent, AgentConfig};
