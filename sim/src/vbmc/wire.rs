//! RMCP / IPMI LAN framing as the BMC reads and writes it (IPMI v2.0 sections 13.6-13.8).
//!
//! Decoding borrows from the datagram and never panics: every length is checked, and a packet
//! that does not parse is simply not answered (what a real BMC does with garbage).

/// RMCP header: version 6, reserved, sequence 0xFF (no RMCP ACK), class.
pub const RMCP_VERSION: u8 = 0x06;
pub const CLASS_ASF: u8 = 0x06;
pub const CLASS_IPMI: u8 = 0x07;
/// IANA enterprise number of the ASF (used by RMCP presence ping/pong).
const ASF_IANA: [u8; 4] = [0x00, 0x00, 0x11, 0xBE];

pub const AUTH_TYPE_NONE: u8 = 0x00;
pub const AUTH_TYPE_RMCP_PLUS: u8 = 0x06;

pub const PAYLOAD_IPMI: u8 = 0x00;
pub const PAYLOAD_OEM: u8 = 0x02;
pub const PAYLOAD_OPEN_SESSION_REQ: u8 = 0x10;
pub const PAYLOAD_OPEN_SESSION_RSP: u8 = 0x11;
pub const PAYLOAD_RAKP1: u8 = 0x12;
pub const PAYLOAD_RAKP2: u8 = 0x13;
pub const PAYLOAD_RAKP3: u8 = 0x14;
pub const PAYLOAD_RAKP4: u8 = 0x15;

/// BMC slave address and the software ID remote consoles use.
pub const BMC_ADDR: u8 = 0x20;

/// One decoded datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// RMCP presence ping (ASF); answered with a pong.
    AsfPing { tag: u8 },
    /// IPMI v1.5 session wrapper. Only used pre-session (auth type none) by ipmitool's lanplus
    /// interface for Get Channel Authentication Capabilities.
    V15 { auth_type: u8, seq: u32, session_id: u32, msg: &'a [u8] },
    /// IPMI v2.0 / RMCP+ session wrapper.
    V20(V20<'a>),
}

#[derive(Debug, PartialEq, Eq)]
pub struct V20<'a> {
    pub payload_type: u8,
    pub encrypted: bool,
    pub authenticated: bool,
    pub session_id: u32,
    pub seq: u32,
    pub payload: &'a [u8],
    /// Bytes after the payload: integrity pad, pad length, next header, AuthCode.
    pub trailer: &'a [u8],
    /// The span the integrity AuthCode covers: session header through the trailer (the caller
    /// strips the AuthCode, whose length only the session knows).
    pub mac_span: &'a [u8],
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes one UDP datagram. `None` for anything that is not a well-formed RMCP packet.
pub fn decode(pkt: &[u8]) -> Option<Frame<'_>> {
    if pkt.len() < 4 || pkt[0] != RMCP_VERSION {
        return None;
    }
    match pkt[3] & 0x1F {
        CLASS_ASF => {
            // IANA(4) type(1) tag(1) reserved(1) len(1)
            let b = pkt.get(4..12)?;
            if b[0..4] != ASF_IANA || b[4] != 0x80 {
                return None;
            }
            Some(Frame::AsfPing { tag: b[5] })
        }
        CLASS_IPMI => {
            let auth_type = *pkt.get(4)?;
            if auth_type == AUTH_TYPE_RMCP_PLUS {
                decode_v20(pkt)
            } else {
                let seq = u32_le(pkt.get(5..9)?);
                let session_id = u32_le(pkt.get(9..13)?);
                let mut off = 13;
                if auth_type != AUTH_TYPE_NONE {
                    off += 16;
                }
                let len = *pkt.get(off)? as usize;
                let msg = pkt.get(off + 1..off + 1 + len)?;
                Some(Frame::V15 { auth_type, seq, session_id, msg })
            }
        }
        _ => None,
    }
}

fn decode_v20(pkt: &[u8]) -> Option<Frame<'_>> {
    let pt = *pkt.get(5)?;
    let mut off = 6;
    if pt & 0x3F == PAYLOAD_OEM {
        off += 6; // OEM IANA + OEM payload ID
    }
    let session_id = u32_le(pkt.get(off..off + 4)?);
    let seq = u32_le(pkt.get(off + 4..off + 8)?);
    let lenb = pkt.get(off + 8..off + 10)?;
    let len = u16::from_le_bytes([lenb[0], lenb[1]]) as usize;
    let start = off + 10;
    let payload = pkt.get(start..start + len)?;
    let trailer = &pkt[start + len..];
    Some(Frame::V20(V20 {
        payload_type: pt & 0x3F,
        encrypted: pt & 0x80 != 0,
        authenticated: pt & 0x40 != 0,
        session_id,
        seq,
        payload,
        trailer,
        mac_span: &pkt[4..],
    }))
}

fn rmcp_header(out: &mut Vec<u8>, class: u8) {
    out.extend_from_slice(&[RMCP_VERSION, 0x00, 0xFF, class]);
}

/// ASF presence pong: says IPMI is supported.
pub fn encode_pong(tag: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    rmcp_header(&mut out, CLASS_ASF);
    out.extend_from_slice(&ASF_IANA);
    out.extend_from_slice(&[0x40, tag, 0x00, 0x10]);
    out.extend_from_slice(&[0x00, 0x00, 0x11, 0xBE]); // IANA
    out.extend_from_slice(&[0, 0, 0, 0]); // OEM defined
    out.extend_from_slice(&[0x81, 0x00]); // entities: IPMI supported, ASF 1.0; interactions
    out.extend_from_slice(&[0; 6]);
    out
}

/// IPMI v1.5 packet without authentication (pre-session answers).
pub fn encode_v15(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + msg.len());
    rmcp_header(&mut out, CLASS_IPMI);
    out.push(AUTH_TYPE_NONE);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(msg.len() as u8);
    out.extend_from_slice(msg);
    out
}

/// How a v2.0 packet is protected on the way out.
pub struct Protect<'a> {
    pub integrity: super::crypto::IntegrityAlg,
    pub k1: &'a [u8],
    pub conf: super::crypto::ConfAlg,
    pub k2: &'a [u8],
    pub iv: [u8; 16],
}

/// IPMI v2.0 packet; `protect` None sends it in the clear (session setup, pre-session).
pub fn encode_v20(
    payload_type: u8,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    protect: Option<&Protect<'_>>,
) -> Vec<u8> {
    use super::crypto::{ConfAlg, IntegrityAlg, encrypt_aes};
    let mut pt = payload_type;
    let body;
    let payload = match protect {
        Some(p) if p.conf == ConfAlg::AesCbc128 => {
            pt |= 0x80;
            body = encrypt_aes(p.k2, p.iv, payload);
            &body[..]
        }
        _ => payload,
    };
    let auth = matches!(protect, Some(p) if p.integrity != IntegrityAlg::None);
    if auth {
        pt |= 0x40;
    }
    let mut out = Vec::with_capacity(16 + payload.len() + 24);
    rmcp_header(&mut out, CLASS_IPMI);
    out.push(AUTH_TYPE_RMCP_PLUS);
    out.push(pt);
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    out.extend_from_slice(payload);
    if let Some(p) = protect.filter(|_| auth) {
        // Pad so that session header .. next header is a multiple of 4 bytes.
        let covered = out.len() - 4 + 2;
        let pad = (4 - covered % 4) % 4;
        out.extend(std::iter::repeat_n(0xFF, pad));
        out.push(pad as u8);
        out.push(0x07);
        let code = p.integrity.code(p.k1, &out[4..]);
        out.extend_from_slice(&code);
    }
    out
}

/// IPMI checksum: two's complement of the byte sum.
pub fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x)).wrapping_neg()
}

/// An IPMI request as carried in a LAN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub rs_addr: u8,
    pub netfn: u8,
    pub rs_lun: u8,
    pub rq_addr: u8,
    pub rq_seq: u8,
    pub rq_lun: u8,
    pub cmd: u8,
    pub data: &'a [u8],
}

/// Parses a LAN IPMI request message; `None` if too short or a checksum is wrong.
pub fn parse_request(msg: &[u8]) -> Option<Request<'_>> {
    if msg.len() < 7 {
        return None;
    }
    if checksum(&msg[0..2]) != msg[2] || checksum(&msg[3..msg.len() - 1]) != msg[msg.len() - 1] {
        return None;
    }
    Some(Request {
        rs_addr: msg[0],
        netfn: msg[1] >> 2,
        rs_lun: msg[1] & 3,
        rq_addr: msg[3],
        rq_seq: msg[4] >> 2,
        rq_lun: msg[4] & 3,
        cmd: msg[5],
        data: &msg[6..msg.len() - 1],
    })
}

/// Builds the response message to `rq` with completion code `cc` and `data`.
pub fn build_response(rq: &Request<'_>, cc: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + data.len());
    m.push(rq.rq_addr);
    m.push(((rq.netfn | 1) << 2) | rq.rq_lun);
    m.push(checksum(&m[0..2]));
    m.push(rq.rs_addr);
    m.push((rq.rq_seq << 2) | rq.rs_lun);
    m.push(rq.cmd);
    m.push(cc);
    m.extend_from_slice(data);
    let c = checksum(&m[3..]);
    m.push(c);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferric_types::ipmi::{app, netfn};

    #[test]
    fn request_round_trip() {
        // Get Device ID from ipmitool: rsAddr 20, netfn App, rqAddr 81, seq 1.
        let msg = [0x20, 0x18, 0xC8, 0x81, 0x04, 0x01, 0x7A];
        let rq = parse_request(&msg).expect("parses");
        assert_eq!((rq.netfn, rq.cmd, rq.rq_seq), (netfn::APP, app::GET_DEVICE_ID, 1));
        let rsp = build_response(&rq, 0, &[1, 2]);
        assert_eq!(rsp[0], 0x81);
        assert_eq!(rsp[1] >> 2, netfn::APP | 1);
        assert_eq!(checksum(&rsp[..3]), 0);
        assert_eq!(checksum(&rsp[3..]), 0);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(decode(&[]).is_none());
        assert!(decode(&[6, 0, 0xff, 7, 6, 0]).is_none());
        assert!(parse_request(&[0x20, 0x18, 0x00, 0x81, 0x04, 0x01, 0x7A]).is_none());
    }
}
