//! ferric-lab: ferric run against simulated or QEMU hardware. It assembles the service
//! (`ferric_service`) with hardware from `ferric_sim` and the deploy agent (`ferric_agent`)
//! through the same traits real hardware uses; nothing here is production code, and nothing in
//! the service or the agent depends on it.
//!
//! - [`machine`]: a simulated machine, whole: its power behind a virtual BMC, its firmware (POST,
//!   PXE, iPXE, pxelinux), its disk, and the deploy ramdisk it boots (the agent, in-process).
//! - [`sim`]: a simulated lab (machines, BMCs, the service, the in-memory network).
//! - [`net`]: the in-memory provisioning network (HTTP hosts, DHCP segments); [`http`]: HTTP to
//!   in-process routers.
//! - [`boot`]: ferric's `pxe`/`ipxe` boot interfaces wired into a lab.
//! - [`bridge`]: file-touching routers called synchronously, for determinism.
//! - [`iscsi`]: the agents' iSCSI portals on the in-memory network.
//! - [`scenario`]: scenario files run against a simulated fleet (`ferric scenario run`).
//! - [`serve_sim`]: `ferric serve --sim N`; [`qemu`] and [`qemu_cli`]: the QEMU lab
//!   (`ferric lab`, `ferric serve --qemu N`); [`vbmc`] and [`fleet`]: `ferric vbmc`.

pub mod boot;
pub mod bridge;
pub mod fleet;
pub mod http;
pub mod iscsi;
pub mod machine;
pub mod net;
pub mod qemu;
pub mod qemu_cli;
pub mod scenario;
pub mod serve_sim;
pub mod sim;
pub mod vbmc;
