//! Text key=value data (RFC 7143 §6), operational parameter negotiation (§13) and CHAP (§12.1.3).

use md5::{Digest, Md5};

/// Largest text (login or text request, all continuation PDUs together) we accept.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// Largest number of keys in one text exchange.
pub const MAX_KEYS: usize = 256;

/// Malformed text data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    #[error("text data longer than {MAX_TEXT_LEN} bytes")]
    TooLong,
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("key=value pair without '='")]
    MissingEquals,
    #[error("key name empty or longer than 63 bytes")]
    BadKey,
    #[error("text is not UTF-8")]
    NotUtf8,
    #[error("key {0} appears twice")]
    Duplicate(String),
}

/// Ordered key=value pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextPairs(pub Vec<(String, String)>);

impl TextPairs {
    pub fn new() -> Self {
        Self::default()
    }
    /// Parses NUL-separated `key=value` pairs; trailing NUL padding is ignored.
    pub fn parse(data: &[u8]) -> Result<Self, TextError> {
        if data.len() > MAX_TEXT_LEN {
            return Err(TextError::TooLong);
        }
        let mut out = Vec::new();
        for item in data.split(|&b| b == 0) {
            if item.is_empty() {
                continue;
            }
            if out.len() >= MAX_KEYS {
                return Err(TextError::TooManyKeys);
            }
            let s = std::str::from_utf8(item).map_err(|_| TextError::NotUtf8)?;
            let (k, v) = s.split_once('=').ok_or(TextError::MissingEquals)?;
            if k.is_empty() || k.len() > 63 {
                return Err(TextError::BadKey);
            }
            if out.iter().any(|(ok, _): &(String, String)| ok == k) {
                return Err(TextError::Duplicate(k.to_string()));
            }
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Self(out))
    }
    pub fn push(&mut self, k: impl Into<String>, v: impl Into<String>) -> &mut Self {
        self.0.push((k.into(), v.into()));
        self
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
    }
    pub fn contains(&self, k: &str) -> bool {
        self.get(k).is_some()
    }
    /// `key=value\0` for every pair.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses an iSCSI numeric value (decimal, or 0x hex).
pub fn parse_number(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

/// Negotiated session and connection parameters, with RFC 7143 defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParams {
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment the *initiator* accepts (declared by the initiator).
    pub initiator_max_recv_data_segment: u32,
    /// Largest data segment the *target* accepts (declared by the target).
    pub target_max_recv_data_segment: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u32,
    pub max_connections: u32,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            header_digest: false,
            data_digest: false,
            initiator_max_recv_data_segment: 8192,
            target_max_recv_data_segment: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            immediate_data: true,
            initial_r2t: true,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            max_connections: 1,
            default_time2wait: 2,
            default_time2retain: 20,
        }
    }
}

/// What the target is willing to accept; offers are clamped to these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetLimits {
    /// Our MaxRecvDataSegmentLength (declared to the initiator; bounds our read buffers).
    pub max_recv_data_segment: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub allow_immediate_data: bool,
    /// Require InitialR2T=Yes even if the initiator offers No.
    pub require_initial_r2t: bool,
    pub allow_header_digest: bool,
    pub allow_data_digest: bool,
    pub max_outstanding_r2t: u32,
}

impl Default for TargetLimits {
    fn default() -> Self {
        Self {
            max_recv_data_segment: 256 * 1024,
            max_burst_length: (1 << 24) - 1,
            first_burst_length: (1 << 24) - 1,
            allow_immediate_data: true,
            require_initial_r2t: false,
            allow_header_digest: true,
            allow_data_digest: true,
            max_outstanding_r2t: 4,
        }
    }
}

fn num_in(v: &str, lo: u64, hi: u64) -> Option<u64> {
    parse_number(v).filter(|n| (lo..=hi).contains(n))
}

fn pick_digest(offer: &str, allowed: bool) -> Option<(&'static str, bool)> {
    for o in offer.split(',') {
        match o.trim() {
            "None" => return Some(("None", false)),
            "CRC32C" if allowed => return Some(("CRC32C", true)),
            _ => {}
        }
    }
    None
}

/// Keys that are declarative or handled elsewhere (login identity, security), not answered here.
const LOGIN_IDENTITY_KEYS: &[&str] = &[
    "InitiatorName",
    "InitiatorAlias",
    "TargetName",
    "SessionType",
    "AuthMethod",
    "TargetAlias",
    "TargetPortalGroupTag",
    "TargetAddress",
];

/// Target side: answers one operational key offered by the initiator, updating `p`.
/// Returns the value to send back, or `None` for keys that need no answer.
pub fn target_answer(
    key: &str,
    value: &str,
    p: &mut SessionParams,
    lim: &TargetLimits,
    discovery: bool,
) -> Option<String> {
    const MAX24: u64 = (1 << 24) - 1;
    if LOGIN_IDENTITY_KEYS.contains(&key) || key.starts_with("CHAP_") {
        return None;
    }
    let reject = || Some("Reject".to_string());
    let normal_only = matches!(
        key,
        "MaxBurstLength"
            | "FirstBurstLength"
            | "ImmediateData"
            | "InitialR2T"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "MaxConnections"
            | "DefaultTime2Wait"
            | "DefaultTime2Retain"
            | "ErrorRecoveryLevel"
    );
    if discovery
        && normal_only
        && key != "ErrorRecoveryLevel"
        && key != "DefaultTime2Wait"
        && key != "DefaultTime2Retain"
    {
        return Some("Irrelevant".to_string());
    }
    Some(match key {
        "HeaderDigest" => match pick_digest(value, lim.allow_header_digest) {
            Some((s, on)) => {
                p.header_digest = on;
                s.to_string()
            }
            None => return reject(),
        },
        "DataDigest" => match pick_digest(value, lim.allow_data_digest) {
            Some((s, on)) => {
                p.data_digest = on;
                s.to_string()
            }
            None => return reject(),
        },
        "MaxRecvDataSegmentLength" => {
            // Declarative: the initiator tells us what it can receive; no answer needed.
            let n = num_in(value, 512, MAX24)?;
            p.initiator_max_recv_data_segment = n as u32;
            return None;
        }
        "MaxBurstLength" => match num_in(value, 512, MAX24) {
            Some(n) => {
                p.max_burst_length = (n as u32).min(lim.max_burst_length);
                p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
                p.max_burst_length.to_string()
            }
            None => return reject(),
        },
        "FirstBurstLength" => match num_in(value, 512, MAX24) {
            Some(n) => {
                p.first_burst_length = (n as u32).min(lim.first_burst_length).min(p.max_burst_length);
                p.first_burst_length.to_string()
            }
            None => return reject(),
        },
        "ImmediateData" => match parse_bool(value) {
            Some(b) => {
                p.immediate_data = b && lim.allow_immediate_data;
                yes_no(p.immediate_data).to_string()
            }
            None => return reject(),
        },
        "InitialR2T" => match parse_bool(value) {
            Some(b) => {
                p.initial_r2t = b || lim.require_initial_r2t;
                yes_no(p.initial_r2t).to_string()
            }
            None => return reject(),
        },
        "MaxOutstandingR2T" => match num_in(value, 1, 65535) {
            Some(n) => {
                p.max_outstanding_r2t = (n as u32).min(lim.max_outstanding_r2t).max(1);
                p.max_outstanding_r2t.to_string()
            }
            None => return reject(),
        },
        "DataPDUInOrder" => match parse_bool(value) {
            // OR function; we only implement in-order data.
            Some(_) => {
                p.data_pdu_in_order = true;
                "Yes".to_string()
            }
            None => return reject(),
        },
        "DataSequenceInOrder" => match parse_bool(value) {
            Some(_) => {
                p.data_sequence_in_order = true;
                "Yes".to_string()
            }
            None => return reject(),
        },
        "ErrorRecoveryLevel" => match num_in(value, 0, 2) {
            Some(_) => {
                p.error_recovery_level = 0;
                "0".to_string()
            }
            None => return reject(),
        },
        "MaxConnections" => match num_in(value, 1, 65535) {
            Some(_) => {
                p.max_connections = 1;
                "1".to_string()
            }
            None => return reject(),
        },
        "DefaultTime2Wait" => match num_in(value, 0, 3600) {
            Some(n) => {
                p.default_time2wait = (n as u32).max(p.default_time2wait.min(n as u32));
                p.default_time2wait.to_string()
            }
            None => return reject(),
        },
        "DefaultTime2Retain" => match num_in(value, 0, 3600) {
            Some(_) => {
                // ERL 0: nothing is retained after a connection drops.
                p.default_time2retain = 0;
                "0".to_string()
            }
            None => return reject(),
        },
        // Markers were removed by RFC 7143; initiators following RFC 3720 still offer them.
        "OFMarker" | "IFMarker" => "No".to_string(),
        "OFMarkInt" | "IFMarkInt" => "Reject".to_string(),
        _ => "NotUnderstood".to_string(),
    })
}

/// CHAP algorithm number for MD5 (the only one RFC 7143 requires).
pub const CHAP_MD5: u8 = 5;

/// CHAP response: MD5(identifier || secret || challenge) (RFC 1994).
pub fn chap_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Encodes binary CHAP values the way initiators commonly expect (`0x` + hex).
pub fn encode_binary(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Decodes a binary value in hex (`0x`) or base64 (`0b`) form (RFC 7143 §6.1).
pub fn decode_binary(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    if s.len() > 2048 {
        return None;
    }
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        let h = if h.len() % 2 == 1 { format!("0{h}") } else { h.to_string() };
        (0..h.len()).step_by(2).map(|i| h.get(i..i + 2).and_then(|x| u8::from_str_radix(x, 16).ok())).collect()
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        base64::engine::general_purpose::STANDARD.decode(b).ok()
    } else {
        None
    }
}

/// Compares secrets-derived values without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// CHAP credentials (one direction). The secret is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapCredentials").field("username", &self.username).field("secret", &"<redacted>").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode() {
        let t = TextPairs::parse(b"A=1\0B=x=y\0\0\0").unwrap();
        assert_eq!(t.get("A"), Some("1"));
        assert_eq!(t.get("B"), Some("x=y"));
        assert_eq!(TextPairs::parse(&t.encode()).unwrap(), t);
        assert_eq!(TextPairs::parse(b"A\0"), Err(TextError::MissingEquals));
        assert_eq!(TextPairs::parse(b"A=1\0A=2\0"), Err(TextError::Duplicate("A".into())));
        assert_eq!(TextPairs::parse(&[0xff, b'=', 0]), Err(TextError::NotUtf8));
    }

    #[test]
    fn negotiation_clamps() {
        let mut p = SessionParams::default();
        let lim = TargetLimits { max_burst_length: 1 << 20, require_initial_r2t: false, ..Default::default() };
        assert_eq!(target_answer("MaxBurstLength", "16776192", &mut p, &lim, false).unwrap(), "1048576");
        assert_eq!(target_answer("FirstBurstLength", "16776192", &mut p, &lim, false).unwrap(), "1048576");
        assert_eq!(target_answer("InitialR2T", "No", &mut p, &lim, false).unwrap(), "No");
        assert_eq!(target_answer("HeaderDigest", "CRC32C,None", &mut p, &lim, false).unwrap(), "CRC32C");
        assert!(p.header_digest);
        assert_eq!(target_answer("MaxRecvDataSegmentLength", "65536", &mut p, &lim, false), None);
        assert_eq!(p.initiator_max_recv_data_segment, 65536);
        assert_eq!(target_answer("MaxBurstLength", "12", &mut p, &lim, false).unwrap(), "Reject");
        assert_eq!(target_answer("X-foo", "1", &mut p, &lim, false).unwrap(), "NotUnderstood");
        assert_eq!(target_answer("InitialR2T", "No", &mut p, &lim, true).unwrap(), "Irrelevant");
    }

    #[test]
    fn chap_known_answer() {
        // MD5(0x01 || "secret" || 0x00..0x0f), computed independently with python hashlib.
        let r = chap_response(1, b"secret", &(0u8..16).collect::<Vec<_>>());
        assert_eq!(encode_binary(&r), "0x740e86463bda3a4d7017d6e0fba0699d");
        assert_eq!(decode_binary(&encode_binary(&r)).unwrap(), r);
        assert_eq!(decode_binary("0bAAEC").unwrap(), vec![0, 1, 2]);
        assert_eq!(decode_binary("0xabc").unwrap(), vec![0x0a, 0xbc]);
        assert!(decode_binary("zz").is_none());
    }
}
