//! DHCP for the provisioning network: PXE/iPXE boot options per known MAC, leases through a
//! store trait, and an IPv6 router-advertisement responder that spares iPXE its IPv6 wait.

pub mod handler;
pub mod ra;
pub mod server;
pub mod store;

pub use handler::{ClientKind, DhcpConfig, DhcpHandler, DhcpObserver, DhcpReply, ReplyDest, client_kind};
pub use ra::{RaConfig, RaResponder};
pub use server::{DhcpBind, DhcpServer};
pub use store::{
    HostEntry, HostTable, Lease, LeaseState, LeaseStore, Loader, MemoryHostTable, MemoryLeaseStore, StoreError,
};

/// Errors of the DHCP and RA services.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("cannot bind DHCP on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("interface {0}: {1}")]
    Interface(String, std::io::Error),
    #[error("DHCP I/O: {0}")]
    Io(std::io::Error),
}
