//! Typed UUIDs: a node UUID can never be passed where a port UUID is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! typed_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("UUID of a ", $what, ".")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($what, ":{}"), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                $name(u)
            }
        }
    };
}

typed_id!(NodeId, "node");
typed_id!(PortId, "port");
typed_id!(PortgroupId, "portgroup");
typed_id!(ChassisId, "chassis");
typed_id!(VolumeConnectorId, "volume connector");
typed_id!(VolumeTargetId, "volume target");
typed_id!(AllocationId, "allocation");
typed_id!(DeployTemplateId, "deploy template");
typed_id!(HistoryId, "node history event");
