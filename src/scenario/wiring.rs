//! How the scenario runner wires the service for a simulated fleet: the interfaces ferric offers
//! for the `ipmi` hardware type, plus stand-ins for those not built yet.

use crate::drivers::fake::FakeBoot;
use crate::lab::sim::{Customize, LabWiring};
use crate::service::Parts;
use std::sync::Arc;

/// Whether ferric's `pxe`/`ipxe` boot interfaces serve boot files to simulated machines. Until
/// they do, the names are bound to the fake boot interface and machines boot the ramdisk right
/// after their DHCP exchange.
pub fn boot_interfaces_available() -> bool {
    false
}

/// Machines boot the ramdisk straight after DHCP (no boot files served).
pub fn assume_ramdisk(boot: &str) -> bool {
    boot == "fake" || !boot_interfaces_available()
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
