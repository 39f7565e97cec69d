//! IPMI 2.0 LAN client (RMCP+), used by the ipmitool power and management interfaces.
