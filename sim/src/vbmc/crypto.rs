//! RMCP+ cryptography on the BMC side: the RAKP key-exchange HMACs, the session keys (SIK, K1, K2),
//! the integrity trailer and AES-CBC-128 confidentiality (IPMI v2.0 sections 13.28-13.32).

use aes::Aes128;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// RAKP authentication algorithm (Open Session "authentication payload").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthAlg {
    None,
    HmacSha1,
    HmacSha256,
}

/// Integrity algorithm for session packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityAlg {
    None,
    HmacSha1_96,
    HmacSha256_128,
}

/// Confidentiality algorithm for session payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfAlg {
    None,
    AesCbc128,
}

/// A cipher suite as the BMC offers it (IPMI v2.0 table 22-20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherSuite {
    pub id: u8,
    pub auth: AuthAlg,
    pub integrity: IntegrityAlg,
    pub conf: ConfAlg,
}

impl CipherSuite {
    /// The suites this BMC knows; which are enabled is configuration.
    pub fn by_id(id: u8) -> Option<Self> {
        use AuthAlg as A;
        use ConfAlg as C;
        use IntegrityAlg as I;
        let (auth, integrity, conf) = match id {
            0 => (A::None, I::None, C::None),
            1 => (A::HmacSha1, I::None, C::None),
            2 => (A::HmacSha1, I::HmacSha1_96, C::None),
            3 => (A::HmacSha1, I::HmacSha1_96, C::AesCbc128),
            17 => (A::HmacSha256, I::HmacSha256_128, C::AesCbc128),
            _ => return None,
        };
        Some(Self { id, auth, integrity, conf })
    }
}

impl AuthAlg {
    pub fn from_wire(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::HmacSha1),
            3 => Some(Self::HmacSha256),
            _ => None,
        }
    }
    pub fn wire(self) -> u8 {
        match self {
            Self::None => 0,
            Self::HmacSha1 => 1,
            Self::HmacSha256 => 3,
        }
    }
    /// Full HMAC with the given key; empty for `None`.
    pub fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Self::None => Vec::new(),
            Self::HmacSha1 => hmac_sha1(key, parts).to_vec(),
            Self::HmacSha256 => hmac_sha256(key, parts).to_vec(),
        }
    }
    /// Length of the RAKP 4 integrity check value.
    pub fn icv_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::HmacSha1 => 12,
            Self::HmacSha256 => 16,
        }
    }
}

impl IntegrityAlg {
    pub fn from_wire(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::HmacSha1_96),
            4 => Some(Self::HmacSha256_128),
            _ => None,
        }
    }
    pub fn wire(self) -> u8 {
        match self {
            Self::None => 0,
            Self::HmacSha1_96 => 1,
            Self::HmacSha256_128 => 4,
        }
    }
    /// Length of the AuthCode field in the session trailer.
    pub fn code_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::HmacSha1_96 => 12,
            Self::HmacSha256_128 => 16,
        }
    }
    /// Truncated MAC over a packet body with K1.
    pub fn code(self, k1: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::None => Vec::new(),
            Self::HmacSha1_96 => hmac_sha1(k1, &[data])[..12].to_vec(),
            Self::HmacSha256_128 => hmac_sha256(k1, &[data])[..16].to_vec(),
        }
    }
}

impl ConfAlg {
    pub fn from_wire(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::AesCbc128),
            _ => None,
        }
    }
    pub fn wire(self) -> u8 {
        match self {
            Self::None => 0,
            Self::AesCbc128 => 1,
        }
    }
}

pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    // HMAC accepts keys of any length, so the error arm is never taken (an all-zero MAC would
    // only fail verification).
    match <Hmac<Sha1> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 20],
    }
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// Constant-time-enough comparison for MACs (length leaks, content does not).
pub fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// AES-CBC-128 payload as RMCP+ carries it: IV, then ciphertext of data + pad 1,2,.. + pad length.
pub fn encrypt_aes(k2: &[u8], iv: [u8; 16], plain: &[u8]) -> Vec<u8> {
    let pad = (16 - (plain.len() + 1) % 16) % 16;
    let mut buf = Vec::with_capacity(16 + plain.len() + pad + 1);
    buf.extend_from_slice(plain);
    for i in 0..pad {
        buf.push(i as u8 + 1);
    }
    buf.push(pad as u8);
    let len = buf.len();
    let key = &k2[..16.min(k2.len())];
    let Ok(enc) = cbc::Encryptor::<Aes128>::new_from_slices(key, &iv) else {
        return Vec::new();
    };
    if enc.encrypt_padded::<NoPadding>(&mut buf, len).is_err() {
        return Vec::new();
    }
    let mut out = iv.to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Inverse of [`encrypt_aes`]; `None` on any malformation (wrong length, bad padding).
pub fn decrypt_aes(k2: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() < 32 || payload.len() % 16 != 0 || k2.len() < 16 {
        return None;
    }
    let (iv, body) = payload.split_at(16);
    let mut buf = body.to_vec();
    let dec = cbc::Decryptor::<Aes128>::new_from_slices(&k2[..16], iv).ok()?;
    let plain = dec.decrypt_padded::<NoPadding>(&mut buf).ok()?.to_vec();
    let pad = *plain.last()? as usize;
    if pad >= 16 || pad + 1 > plain.len() {
        return None;
    }
    let data_len = plain.len() - pad - 1;
    // Pad bytes are 1, 2, 3, ...; the spec lets a receiver check them.
    if plain[data_len..data_len + pad].iter().enumerate().any(|(i, b)| *b != i as u8 + 1) {
        return None;
    }
    Some(plain[..data_len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_round_trip_all_lengths() {
        let k2 = [7u8; 20];
        for n in 0..40 {
            let data: Vec<u8> = (0..n as u8).collect();
            let c = encrypt_aes(&k2, [3; 16], &data);
            assert_eq!(c.len() % 16, 0);
            assert_eq!(decrypt_aes(&k2, &c).as_deref(), Some(&data[..]));
        }
    }

    #[test]
    fn hmac_sha1_known_vector() {
        // RFC 2202 test case 2.
        let m = hmac_sha1(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            m.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }
}
