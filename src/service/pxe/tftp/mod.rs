//! Read-only TFTP server (RFC 1350 with RFC 2347/2348/2349/7440 options).

pub mod packet;
pub mod path;
pub mod server;
pub mod transfer;

pub use path::{PathError, resolve};
pub use server::{TftpConfig, TftpServer};
pub use transfer::{Limits, Negotiated, ReadTransfer, Step, negotiate};

/// Errors of the TFTP service.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    #[error("cannot bind TFTP on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("TFTP I/O: {0}")]
    Io(std::io::Error),
    #[error("TFTP protocol: {0}")]
    Protocol(&'static str),
}
