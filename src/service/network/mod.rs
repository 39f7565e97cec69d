//! Provisioning and tenant networks for a node's ports, and the DHCP options they need.

pub mod dhcp;
