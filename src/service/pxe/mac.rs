//! Ethernet MAC addresses as PXE, pxelinux and iPXE spell them.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address (the key of the DHCP host table and of per-MAC boot files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
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

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
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

impl TryFrom<String> for MacAddr {
    type Error = MacParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
