//! A simulated machine, in one place: [`power`] is what its BMC drives (power and boot device on
//! tokio's clock), [`node`] what it does when it powers on (POST, the boot device, the deploy
//! ramdisk or the instance), [`firmware`] how its iPXE and pxelinux read ferric's boot configs,
//! and [`disk`] its sparse in-memory disk.

pub mod disk;
pub mod firmware;
pub mod node;
pub mod power;

pub use power::{MachineStats, MachineStatus, SimMachine, SimMachineConfig};
