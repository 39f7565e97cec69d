//! Assembles the service with hardware from ferric-sim (simulated fleets, QEMU labs). CLI level only.
//!
//! - [`sim`]: a simulated lab (machines, BMCs, the service, the in-memory network).
//! - [`machine`]: what a simulated machine does when it powers on (firmware, PXE, agent, disk boot).
//! - [`net`]: the in-memory provisioning network (HTTP hosts, DHCP segments).
//! - [`disk`]: sparse in-memory disks.
//! - [`boot`]: ferric's `pxe`/`ipxe` boot interfaces wired into a lab.
//! - [`bridge`]: file-touching routers called synchronously, for determinism.
//! - [`firmware`]: how iPXE and pxelinux read ferric's boot configs.
//! - [`serve_sim`]: `ferric serve --sim N`.
//! - [`vbmc`]: `ferric vbmc`, and the in-memory IPMI connector.

pub mod boot;
pub mod bridge;
pub mod disk;
pub mod firmware;
pub mod iscsi;
pub mod machine;
pub mod net;
pub mod qemu;
pub mod qemu_cli;
pub mod serve_sim;
pub mod sim;
pub mod vbmc;
