//! IPMI 2.0 LAN client (RMCP+, "lanplus"), used by the ipmitool power and management interfaces.
//!
//! Hand-written rather than built on the ipmi-rs crate: ipmi-rs is blocking and hard-wired to
//! `std::net::UdpSocket`, so it can neither run on tokio's paused clock nor over the in-memory
//! datagram links a simulation uses (DESIGN.md, "the one rule"), and its RMCP+ code panics
//! (`todo!()`) if cipher suite 17 is negotiated. This client is async, takes any [`Transport`]
//! (UDP socket or tokio channels of raw packets), keeps one session per BMC, and bounds every
//! operation in time.
//!
//! It shares no code with ferric-sim's virtual BMC, only the numbers' names
//! ([`ferric_types::ipmi`]): each side is checked against independent peers (this client against
//! OpenIPMI's `ipmi_sim`, the BMC against ipmitool).
//!
//! Typical use by a driver:
//! ```no_run
//! # async fn f() -> Result<(), ferric_service::ipmi::IpmiError> {
//! use ferric_service::ipmi::{BootDevice, ClientConfig, IpmiPool, Target, UdpConnector};
//! use std::sync::Arc;
//! let pool = IpmiPool::new(Arc::new(UdpConnector), ClientConfig::default(), 1024);
//! let bmc = pool.client(&Target::new("192.0.2.10", "admin", "password").with_port(623));
//! bmc.set_boot_device(BootDevice::Pxe, false, true).await?;
//! bmc.power_on().await?;
//! # Ok(()) }
//! ```

mod client;
pub mod codec;
mod error;
mod transport;

pub use client::{
    BootDevice, BootSetting, ChassisControl, ChassisStatus, ClientConfig, DeviceId, IpmiClient, IpmiPool, PowerState,
    Privilege, Secret, Target,
};
pub use error::{IpmiError, completion_text, rmcp_status_text};
pub use transport::{ChannelConnector, ChannelTransport, Connector, LinkFn, Transport, UdpConnector, UdpTransport};
