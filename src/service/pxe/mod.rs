//! Provisioning-network services: DHCP, TFTP, HTTP boot, boot configs, image cache.

pub mod cache;
pub mod config;
pub mod dhcp;
pub mod http;
pub mod iso;
pub mod service;
pub mod settings;
pub mod tftp;

pub use ferric_types::models::{MacAddr, MacParseError};
pub use service::{PxeServiceConfig, PxeServices, start, start_observed};
