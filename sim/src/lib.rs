//! ferric-sim: the hardware side of ferric's labs. Virtual BMCs (IPMI 2.0 servers), simulated and
//! QEMU machines behind one `Machine` trait, fleets and fault knobs.
//!
//! This crate depends on no part of the service: the service's IPMI client and this crate's BMC are
//! independent implementations of the protocol that test each other (and are each tested against
//! independent peers: ipmitool against the BMC, OpenIPMI's ipmi_sim against the client).

pub mod machine;
pub mod netns;
mod process;
pub mod qemu;
pub mod simmachine;
pub mod vbmc;

pub use simmachine::{SimMachine, SimMachineConfig};
