//! Image service (the Glance role) and HTTP store with temporary URLs (the Swift role).

pub mod configdrive;
