//! ferric-sim: the hardware side of ferric's labs. Virtual BMCs (IPMI 2.0 and Redfish servers) and their fault
//! knobs, the `Machine` trait a BMC drives, QEMU machines, network namespaces. The simulated
//! machine (power, firmware, disk) lives in `ferric_lab::machine`, next to the lab that runs it.
//!
//! This crate depends on no part of the service: the service's IPMI client and this crate's BMC are
//! independent implementations of the protocol that test each other (and are each tested against
//! independent peers: ipmitool against the BMC, OpenIPMI's ipmi_sim against the client).

pub mod machine;
pub mod netns;
mod process;
pub mod qemu;
pub mod redfish;
pub mod vbmc;
