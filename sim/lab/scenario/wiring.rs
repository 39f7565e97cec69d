//! How the scenario runner wires the service for a simulated fleet. `sim.boot_interface = "pxe"`
//! or `"ipxe"` (the default) runs ferric's own boot interfaces (see [`crate::boot`]): DHCP
//! options, configs and the deploy kernel/ramdisk are written by them and read by the simulated
//! firmware. `"fake"` binds the node's `ipxe` name to the fake boot interface instead, and the
//! machines boot the ramdisk straight after DHCP (cheaper, for runs that study something else).

use crate::sim::{Customize, LabWiring};
use ferric_service::assemble::Parts;
use ferric_service::drivers::fake::FakeBoot;
use std::sync::Arc;

/// Whether ferric's `pxe`/`ipxe` boot interfaces serve the machines (every value but `fake`).
pub fn real_boot(boot: &str) -> bool {
    boot != "fake"
}

/// Machines boot the ramdisk straight after DHCP (no boot files served).
pub fn assume_ramdisk(boot: &str) -> bool {
    !real_boot(boot)
}

/// The node's `boot_interface` for a scenario's `sim.boot_interface`.
pub fn boot_interface_name(boot: &str) -> &str {
    if boot == "fake" { "ipxe" } else { boot }
}

/// The default wiring for `sim.boot_interface = boot`.
pub fn default_customize(boot: &str) -> Customize {
    let fake_boot = assume_ramdisk(boot);
    Arc::new(move |p: &mut Parts, _w: &LabWiring| {
        if fake_boot {
            p.registry.register_boot("ipxe", Arc::new(FakeBoot));
            p.registry.register_boot("pxe", Arc::new(FakeBoot));
        }
    })
}
