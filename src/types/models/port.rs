//! Ports: a node's NICs, identified by MAC address.

use super::{JsonMap, NodeId, PortId, PortgroupId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A MAC address, shown lower-case with colons as Ironic normalises it; also the key of the DHCP
/// host table and of per-MAC boot files.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// A MAC string that is not six hex pairs separated by `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct MacParseError(pub String);

impl MacAddr {
    /// Lower-case, dash-separated (`52-54-00-12-34-56`), as iPXE's `${mac:hexhyp}`.
    pub fn hexhyp(&self) -> String {
        self.join('-')
    }

    /// pxelinux's per-client config name: `01-` (Ethernet ARP type) plus [`Self::hexhyp`].
    pub fn pxelinux_name(&self) -> String {
        format!("01-{}", self.hexhyp())
    }

    fn join(&self, sep: char) -> String {
        let mut s = String::with_capacity(17);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(sep);
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(':'))
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;
    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case.
    fn from_str(s: &str) -> Result<Self, MacParseError> {
        let err = || MacParseError(s.to_owned());
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(err());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A node's network port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Port {
    pub uuid: PortId,
    pub address: MacAddr,
    pub node_uuid: NodeId,
    pub portgroup_uuid: Option<PortgroupId>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub vendor: Option<String>,
    pub category: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub extra: JsonMap,
    pub internal_info: JsonMap,
    pub local_link_connection: JsonMap,
    pub physical_network: Option<String>,
    pub pxe_enabled: bool,
    pub is_smartnic: bool,
    pub available_for_dynamic_portgroup: bool,
}

impl Default for Port {
    fn default() -> Self {
        Port {
            uuid: PortId(uuid::Uuid::nil()),
            address: MacAddr::default(),
            node_uuid: NodeId(uuid::Uuid::nil()),
            portgroup_uuid: None,
            name: None,
            description: None,
            vendor: None,
            category: None,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: None,
            extra: JsonMap::new(),
            internal_info: JsonMap::new(),
            local_link_connection: JsonMap::new(),
            physical_network: None,
            pxe_enabled: true,
            is_smartnic: false,
            available_for_dynamic_portgroup: true,
        }
    }
}

impl Port {
    /// The tenant VIF attached to this port, if any (Ironic keeps it in `internal_info`).
    pub fn vif(&self) -> Option<&str> {
        self.internal_info.get("tenant_vif_port_id").and_then(|v| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spellings() {
        let m: MacAddr = "52:54:00:AB:cd:0e".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0e");
        assert_eq!(m.hexhyp(), "52-54-00-ab-cd-0e");
        assert_eq!(m.pxelinux_name(), "01-52-54-00-ab-cd-0e");
        assert_eq!("52-54-00-ab-cd-0e".parse::<MacAddr>(), Ok(m));
        assert!("52:54:00:ab:cd".parse::<MacAddr>().is_err());
        assert!("52:54:00:ab:cd:0g".parse::<MacAddr>().is_err());
        assert!("5:254:00:ab:cd:0e".parse::<MacAddr>().is_err());
    }

    use super::*;

    #[test]
    fn mac_parse_normalises() {
        let m: MacAddr = "52-54-00-AB-cd-0F".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
        assert!("52:54:00:ab:cd".parse::<MacAddr>().is_err());
        assert!("52:54:00:ab:cd:0g".parse::<MacAddr>().is_err());
        assert!("52:54:00:ab:cd:012".parse::<MacAddr>().is_err());
    }
}
