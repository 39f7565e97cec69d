//! TFTP wire format (RFC 1350, option extension RFC 2347).
//!
//! Hand-written: the format is five tiny packet shapes and owning the codec lets the data path
//! build DATA packets in place without allocation.

use std::fmt;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// Longest request we accept; a request is one datagram and RFC 2347 keeps it under 512 bytes.
pub const MAX_REQUEST: usize = 512;
/// Most options a request may carry before it is refused.
const MAX_OPTIONS: usize = 16;

/// TFTP error codes (RFC 1350 section 5, RFC 2347 code 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTransferId = 5,
    FileExists = 6,
    NoSuchUser = 7,
    OptionRefused = 8,
}

impl ErrorCode {
    fn from_u16(v: u16) -> Self {
        match v {
            1 => Self::FileNotFound,
            2 => Self::AccessViolation,
            3 => Self::DiskFull,
            4 => Self::IllegalOperation,
            5 => Self::UnknownTransferId,
            6 => Self::FileExists,
            7 => Self::NoSuchUser,
            8 => Self::OptionRefused,
            _ => Self::NotDefined,
        }
    }
}

/// Transfer mode of a request; both are served as the file's bytes (PXE clients use octet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub write: bool,
    pub filename: String,
    pub mode: Mode,
    /// Options in request order, names lower-cased.
    pub options: Vec<(String, String)>,
}

/// A decoded TFTP packet. DATA borrows its payload from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Request(Request),
    Data { block: u16, data: &'a [u8] },
    Ack(u16),
    Error { code: ErrorCode, message: String },
    Oack(Vec<(String, String)>),
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("datagram too short")]
    Short,
    #[error("unknown opcode {0}")]
    Opcode(u16),
    #[error("malformed request: {0}")]
    Request(&'static str),
    #[error("unsupported transfer mode")]
    Mode,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Octet => "octet",
            Mode::Netascii => "netascii",
        })
    }
}

/// Splits NUL-terminated strings; the last one must be terminated.
fn cstrings(mut b: &[u8]) -> Result<Vec<&[u8]>, PacketError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let end = b.iter().position(|&c| c == 0).ok_or(PacketError::Request("unterminated string"))?;
        out.push(&b[..end]);
        b = &b[end + 1..];
        if out.len() > 2 + 2 * MAX_OPTIONS {
            return Err(PacketError::Request("too many options"));
        }
    }
    Ok(out)
}

fn utf8(b: &[u8]) -> Result<String, PacketError> {
    std::str::from_utf8(b).map(str::to_owned).map_err(|_| PacketError::Request("not UTF-8"))
}

fn options(parts: &[&[u8]]) -> Result<Vec<(String, String)>, PacketError> {
    if parts.len() % 2 != 0 {
        return Err(PacketError::Request("option without value"));
    }
    parts.chunks(2).map(|kv| Ok((utf8(kv[0])?.to_ascii_lowercase(), utf8(kv[1])?))).collect()
}

impl<'a> Packet<'a> {
    /// Decodes one datagram.
    pub fn decode(b: &'a [u8]) -> Result<Self, PacketError> {
        if b.len() < 4 {
            // An RRQ needs at least opcode + "x\0" + "octet\0"; everything else has 4 bytes.
            return Err(PacketError::Short);
        }
        let op = u16::from_be_bytes([b[0], b[1]]);
        let arg = u16::from_be_bytes([b[2], b[3]]);
        match op {
            OP_RRQ | OP_WRQ => {
                if b.len() > MAX_REQUEST {
                    return Err(PacketError::Request("request too long"));
                }
                let parts = cstrings(&b[2..])?;
                if parts.len() < 2 || parts[0].is_empty() {
                    return Err(PacketError::Request("missing filename or mode"));
                }
                let mode = match parts[1].to_ascii_lowercase().as_slice() {
                    b"octet" => Mode::Octet,
                    b"netascii" => Mode::Netascii,
                    _ => return Err(PacketError::Mode),
                };
                Ok(Packet::Request(Request {
                    write: op == OP_WRQ,
                    filename: utf8(parts[0])?,
                    mode,
                    options: options(&parts[2..])?,
                }))
            }
            OP_DATA => Ok(Packet::Data { block: arg, data: &b[4..] }),
            OP_ACK => Ok(Packet::Ack(arg)),
            OP_ERROR => {
                let msg = b[4..].split(|&c| c == 0).next().unwrap_or_default();
                Ok(Packet::Error { code: ErrorCode::from_u16(arg), message: String::from_utf8_lossy(msg).into_owned() })
            }
            OP_OACK => Ok(Packet::Oack(options(&cstrings(&b[2..])?)?)),
            other => Err(PacketError::Opcode(other)),
        }
    }
}

/// Encodes an ERROR packet.
pub fn error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + message.len());
    v.extend_from_slice(&OP_ERROR.to_be_bytes());
    v.extend_from_slice(&(code as u16).to_be_bytes());
    v.extend_from_slice(message.as_bytes());
    v.push(0);
    v
}

/// Encodes an OACK packet.
pub fn oack(opts: &[(String, String)]) -> Vec<u8> {
    let mut v = OP_OACK.to_be_bytes().to_vec();
    for (k, val) in opts {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// Encodes an ACK packet.
pub fn ack(block: u16) -> [u8; 4] {
    let [a, b] = OP_ACK.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

/// Encodes a request (used by tests and the simulation's client side).
pub fn request(req: &Request) -> Vec<u8> {
    let op = if req.write { OP_WRQ } else { OP_RRQ };
    let mut v = op.to_be_bytes().to_vec();
    v.extend_from_slice(req.filename.as_bytes());
    v.push(0);
    v.extend_from_slice(req.mode.to_string().as_bytes());
    v.push(0);
    for (k, val) in &req.options {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// Writes a DATA header into the first 4 bytes of `buf`.
#[inline]
pub fn data_header(buf: &mut [u8], block: u16) {
    buf[..2].copy_from_slice(&OP_DATA.to_be_bytes());
    buf[2..4].copy_from_slice(&block.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let req = Request {
            write: false,
            filename: "pxelinux.cfg/01-aa-bb".into(),
            mode: Mode::Octet,
            options: vec![("blksize".into(), "1468".into()), ("tsize".into(), "0".into())],
        };
        let bytes = request(&req);
        assert_eq!(Packet::decode(&bytes), Ok(Packet::Request(req)));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Packet::decode(&[0, 1]).is_err());
        assert!(Packet::decode(&[0, 9, 0, 0]).is_err());
        assert!(Packet::decode(b"\x00\x01file\x00octet").is_err());
        assert!(Packet::decode(b"\x00\x01file\x00mail\x00").is_err());
        assert!(Packet::decode(b"\x00\x01file\x00octet\x00blksize\x00").is_err());
        assert_eq!(Packet::decode(&[0, 4, 1, 2]), Ok(Packet::Ack(0x0102)));
    }
}
