//! Assembles the service with hardware from ferric-sim (simulated fleets, QEMU labs). CLI level only.

pub mod vbmc;
