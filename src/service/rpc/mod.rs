//! API and conductors in separate processes: JSON-RPC 2.0 over HTTP between them (the shape of
//! Ironic's json-rpc), and the router that sends each call to the conductor owning its node.

pub mod jsonrpc;
pub mod router;

pub use jsonrpc::{RpcClient, RpcCredentials, serve_rpc};
pub use router::Router;
