//! Client-side RMCP+ packet encoding and decoding, and the session cryptography.
//!
//! Written for the client alone (independent of ferric-sim's BMC, so the two check each other):
//! requests are built into fresh buffers, replies are parsed with bounds checks everywhere and
//! never panic on hostile input.

use aes::Aes128;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

pub(crate) const PT_IPMI: u8 = 0x00;
pub(crate) const PT_OPEN_REQ: u8 = 0x10;
pub(crate) const PT_OPEN_RSP: u8 = 0x11;
pub(crate) const PT_RAKP1: u8 = 0x12;
pub(crate) const PT_RAKP2: u8 = 0x13;
pub(crate) const PT_RAKP3: u8 = 0x14;
pub(crate) const PT_RAKP4: u8 = 0x15;

const RMCP: [u8; 4] = [0x06, 0x00, 0xFF, 0x07];
/// Remote console software ID (rqAddr) and the BMC's address (rsAddr).
const CONSOLE_SWID: u8 = 0x81;
const BMC_ADDR: u8 = 0x20;

/// The algorithms of a cipher suite, as numbers on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    pub auth: u8,
    pub integrity: u8,
    pub confidentiality: u8,
}

impl Suite {
    /// Suites the client can negotiate: 0, 1, 2, 3 (SHA-1) and 17 (SHA-256).
    pub fn from_id(id: u8) -> Option<Self> {
        let (auth, integrity, confidentiality) = match id {
            0 => (0, 0, 0),
            1 => (1, 0, 0),
            2 => (1, 1, 0),
            3 => (1, 1, 1),
            17 => (3, 4, 1),
            _ => return None,
        };
        Some(Self { auth, integrity, confidentiality })
    }

    /// Keyed hash of the RAKP exchange: HMAC-SHA1 (auth 1) or HMAC-SHA256 (auth 3).
    pub fn rakp_hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self.auth {
            1 => hmac::<Hmac<Sha1>>(key, data),
            3 => hmac::<Hmac<Sha256>>(key, data),
            _ => Vec::new(),
        }
    }

    /// Bytes of the RAKP 4 integrity check value.
    pub fn icv_len(&self) -> usize {
        match self.auth {
            1 => 12,
            3 => 16,
            _ => 0,
        }
    }

    /// Bytes of the AuthCode in a session packet's trailer.
    pub fn authcode_len(&self) -> usize {
        match self.integrity {
            1 => 12,
            4 => 16,
            _ => 0,
        }
    }

    pub fn authcode(&self, k1: &[u8], data: &[u8]) -> Vec<u8> {
        let n = self.authcode_len();
        let full = match self.integrity {
            1 => hmac::<Hmac<Sha1>>(k1, data),
            4 => hmac::<Hmac<Sha256>>(k1, data),
            _ => Vec::new(),
        };
        full.get(..n).map(<[u8]>::to_vec).unwrap_or_default()
    }
}

fn hmac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this never fails; an empty MAC would fail verification.
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Comparison whose time does not depend on where the first difference is.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).map(|(x, y)| x ^ y).fold(0, |acc, v| acc | v) == 0
}

/// Keys of an established session.
#[derive(Clone)]
pub struct Keys {
    pub suite: Suite,
    pub k1: Vec<u8>,
    pub k2: Vec<u8>,
}

fn sum(b: &[u8]) -> u8 {
    0u8.wrapping_sub(b.iter().fold(0u8, |a, x| a.wrapping_add(*x)))
}

/// A LAN IPMI request message (rsAddr .. checksum).
pub fn ipmi_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![BMC_ADDR, netfn << 2];
    m.push(sum(&m));
    m.extend_from_slice(&[CONSOLE_SWID, (rq_seq & 0x3F) << 2, cmd]);
    m.extend_from_slice(data);
    let c = sum(&m[3..]);
    m.push(c);
    m
}

/// A parsed IPMI response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiResponse {
    pub netfn: u8,
    pub rq_seq: u8,
    pub cmd: u8,
    pub completion: u8,
    pub data: Vec<u8>,
}

pub fn parse_ipmi_response(m: &[u8]) -> Option<IpmiResponse> {
    if m.len() < 8 || sum(&m[..2]) != m[2] || sum(&m[3..m.len() - 1]) != m[m.len() - 1] {
        return None;
    }
    Some(IpmiResponse {
        netfn: m[1] >> 2,
        rq_seq: m[4] >> 2,
        cmd: m[5],
        completion: m[6],
        data: m[7..m.len() - 1].to_vec(),
    })
}

/// IPMI v1.5 packet without authentication, as sent before any session exists.
pub fn v15_packet(msg: &[u8]) -> Vec<u8> {
    let mut p = RMCP.to_vec();
    p.push(0x00); // auth type none
    p.extend_from_slice(&[0; 8]); // sequence, session ID
    p.push(msg.len() as u8);
    p.extend_from_slice(msg);
    p
}

/// IPMI v2.0 packet; `keys` protects it (integrity, confidentiality) as the suite says.
pub fn v20_packet(
    payload_type: u8,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    keys: Option<&Keys>,
    iv: [u8; 16],
) -> Vec<u8> {
    let mut pt = payload_type;
    let mut body = payload.to_vec();
    if let Some(k) = keys {
        if k.suite.confidentiality == 1 {
            pt |= 0x80;
            body = aes_encrypt(&k.k2, iv, payload);
        }
        if k.suite.integrity != 0 {
            pt |= 0x40;
        }
    }
    let mut p = RMCP.to_vec();
    p.extend_from_slice(&[0x06, pt]);
    p.extend_from_slice(&session_id.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&(body.len() as u16).to_le_bytes());
    p.extend_from_slice(&body);
    if let Some(k) = keys.filter(|k| k.suite.integrity != 0) {
        let pad = (4 - (p.len() - 4 + 2) % 4) % 4;
        p.resize(p.len() + pad, 0xFF);
        p.push(pad as u8);
        p.push(0x07);
        let code = k.suite.authcode(&k.k1, &p[4..]);
        p.extend_from_slice(&code);
    }
    p
}

/// A received datagram, parsed as far as is possible without session keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    V15 {
        msg: Vec<u8>,
    },
    V20 {
        payload_type: u8,
        encrypted: bool,
        authenticated: bool,
        session_id: u32,
        seq: u32,
        payload: Vec<u8>,
        /// Everything after the payload (integrity pad .. AuthCode).
        trailer: Vec<u8>,
        /// Bytes from the auth-type field to the end of the datagram.
        covered: Vec<u8>,
    },
}

fn le32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

/// Parses a BMC's datagram; `None` for anything malformed.
pub fn parse_incoming(p: &[u8]) -> Option<Incoming> {
    if p.get(..4)? != [0x06, 0x00, 0xFF, 0x07] {
        return None;
    }
    let auth_type = *p.get(4)?;
    if auth_type != 0x06 {
        let mut at = 13;
        if auth_type != 0 {
            at += 16;
        }
        let n = *p.get(at)? as usize;
        return Some(Incoming::V15 { msg: p.get(at + 1..at + 1 + n)?.to_vec() });
    }
    let pt = *p.get(5)?;
    let base = if pt & 0x3F == 0x02 { 12 } else { 6 };
    let session_id = le32(p.get(base..)?)?;
    let seq = le32(p.get(base + 4..)?)?;
    let len = u16::from_le_bytes([*p.get(base + 8)?, *p.get(base + 9)?]) as usize;
    let start = base + 10;
    let payload = p.get(start..start.checked_add(len)?)?.to_vec();
    Some(Incoming::V20 {
        payload_type: pt & 0x3F,
        encrypted: pt & 0x80 != 0,
        authenticated: pt & 0x40 != 0,
        session_id,
        seq,
        payload,
        trailer: p[start + len..].to_vec(),
        covered: p[4..].to_vec(),
    })
}

/// Verifies and strips the session protection of an incoming IPMI payload.
pub fn open_payload(
    keys: &Keys,
    encrypted: bool,
    authenticated: bool,
    payload: &[u8],
    trailer: &[u8],
    covered: &[u8],
) -> Option<Vec<u8>> {
    let n = keys.suite.authcode_len();
    if n > 0 {
        if !authenticated || trailer.len() < n + 2 || covered.len() < n {
            return None;
        }
        let body = &covered[..covered.len() - n];
        let code = &covered[covered.len() - n..];
        let pad = trailer[trailer.len() - n - 2] as usize;
        if trailer[trailer.len() - n - 1] != 0x07 || pad + 2 + n != trailer.len() {
            return None;
        }
        if !same(&keys.suite.authcode(&keys.k1, body), code) {
            return None;
        }
    } else if authenticated {
        return None;
    }
    match (keys.suite.confidentiality, encrypted) {
        (1, true) => aes_decrypt(&keys.k2, payload),
        (0, false) => Some(payload.to_vec()),
        _ => None,
    }
}

fn aes_encrypt(k2: &[u8], iv: [u8; 16], data: &[u8]) -> Vec<u8> {
    let mut buf = data.to_vec();
    let pad = 15 - data.len() % 16;
    buf.extend((1..=pad as u8).collect::<Vec<u8>>());
    buf.push(pad as u8);
    let len = buf.len();
    let Some(key) = k2.get(..16) else {
        return Vec::new();
    };
    let Ok(c) = cbc::Encryptor::<Aes128>::new_from_slices(key, &iv) else {
        return Vec::new();
    };
    if c.encrypt_padded::<NoPadding>(&mut buf, len).is_err() {
        return Vec::new();
    }
    let mut out = iv.to_vec();
    out.append(&mut buf);
    out
}

fn aes_decrypt(k2: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 32 || data.len() % 16 != 0 {
        return None;
    }
    let c = cbc::Decryptor::<Aes128>::new_from_slices(k2.get(..16)?, &data[..16]).ok()?;
    let mut buf = data[16..].to_vec();
    let plain = c.decrypt_padded::<NoPadding>(&mut buf).ok()?;
    let pad = *plain.last()? as usize;
    // Some BMCs fill the pad with other bytes than 1, 2, ...; only its length matters here.
    let keep = plain.len().checked_sub(pad + 1)?;
    Some(plain[..keep].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferric_types::ipmi::{chassis, netfn};

    #[test]
    fn protected_packet_round_trips() {
        let keys = Keys { suite: Suite::from_id(17).unwrap(), k1: vec![1; 32], k2: vec![2; 32] };
        let msg = ipmi_request(netfn::CHASSIS, chassis::GET_CHASSIS_STATUS, 5, &[]);
        let p = v20_packet(PT_IPMI, 77, 3, &msg, Some(&keys), [9; 16]);
        let Some(Incoming::V20 { encrypted, authenticated, payload, trailer, covered, session_id, .. }) =
            parse_incoming(&p)
        else {
            panic!("parse")
        };
        assert_eq!(session_id, 77);
        let plain = open_payload(&keys, encrypted, authenticated, &payload, &trailer, &covered);
        assert_eq!(plain, Some(msg));
    }
}
