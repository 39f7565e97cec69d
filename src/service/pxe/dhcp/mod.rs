//! DHCP for the provisioning network: PXE/iPXE boot options per known MAC, leases through a
//! store trait, and an IPv6 router-advertisement responder that spares iPXE its IPv6 wait.

pub mod handler;
pub mod ra;
pub mod server;

/// The host table and lease store the handler reads and writes (their contract is
/// `ferric_types::dhcp`, so the database can serve them without depending on this module).
pub use ferric_types::dhcp::{
    HostEntry, HostTable, Lease, LeaseState, LeaseStore, Loader, MemoryHostTable, MemoryLeaseStore, StoreError,
};
pub use handler::{ClientKind, DhcpConfig, DhcpHandler, DhcpObserver, DhcpReply, ReplyDest, client_kind};
pub use ra::{RaConfig, RaResponder};
pub use server::{DhcpBind, DhcpServer};

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
