//! Provisioning-network services: DHCP, TFTP, HTTP boot, boot configs, image cache.

pub mod dhcp;
pub mod mac;
pub mod tftp;

pub use mac::MacAddr;
