//! Provision and power state names, exactly as Ironic spells them on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $var),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The wire spelling.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($s => Ok($name::$var),)+ _ => Err(s.to_string()) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(|s| serde::de::Error::custom(format!("unknown value {s:?}")))
            }
        }
    };
}

wire_enum!(
    /// A node's provision state.
    ProvisionState {
        Enroll => "enroll",
        Verifying => "verifying",
        Manageable => "manageable",
        Inspecting => "inspecting",
        InspectWait => "inspect wait",
        InspectFailed => "inspect failed",
        Cleaning => "cleaning",
        CleanWait => "clean wait",
        CleanHold => "clean hold",
        CleanFailed => "clean failed",
        Available => "available",
        Deploying => "deploying",
        DeployWait => "wait call-back",
        DeployHold => "deploy hold",
        DeployFailed => "deploy failed",
        Active => "active",
        Deleting => "deleting",
        Error => "error",
        Rescuing => "rescuing",
        RescueWait => "rescue wait",
        Rescue => "rescue",
        RescueFailed => "rescue failed",
        Unrescuing => "unrescuing",
        UnrescueFailed => "unrescue failed",
        Adopting => "adopting",
        AdoptFailed => "adopt failed",
        Servicing => "servicing",
        ServiceWait => "service wait",
        ServiceHold => "service hold",
        ServiceFailed => "service failed",
    }
);

wire_enum!(
    /// A node's recorded power state.
    PowerState {
        On => "power on",
        Off => "power off",
        Error => "error",
    }
);

wire_enum!(
    /// A requested power change (`PUT /v1/nodes/{id}/states/power`).
    PowerTarget {
        On => "power on",
        Off => "power off",
        Reboot => "rebooting",
        SoftOff => "soft power off",
        SoftReboot => "soft rebooting",
    }
);

wire_enum!(
    /// Boot devices (Ironic's `boot_devices`).
    BootDevice {
        Pxe => "pxe",
        Disk => "disk",
        Cdrom => "cdrom",
        Bios => "bios",
        Safe => "safe",
        /// UEFI HTTP boot from a URL the BMC holds (Redfish `UefiHttp` with `HttpBootUri`):
        /// Ironic's `boot_devices.UEFIHTTP`. Only the `redfish-https` boot interface asks for it.
        UefiHttp => "uefihttp",
    }
);

impl PowerTarget {
    /// The power state a successful change ends in.
    pub fn end_state(self) -> PowerState {
        match self {
            PowerTarget::Off | PowerTarget::SoftOff => PowerState::Off,
            _ => PowerState::On,
        }
    }

    /// Soft variants need API 1.27.
    pub fn is_soft(self) -> bool {
        matches!(self, PowerTarget::SoftOff | PowerTarget::SoftReboot)
    }
}
