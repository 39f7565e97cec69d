//! iSCSI PDU framing (RFC 7143 §11): the 48-byte Basic Header Segment, additional header
//! segments, optional CRC32C header/data digests and the padded data segment.
//!
//! The BHS is kept as raw bytes with named accessors: every field is a fixed offset, so decoding
//! cannot fail or panic on any 48 bytes; what a field *means* is checked by the target and
//! initiator state machines, which answer malformed PDUs with a Reject or drop the connection.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// The reserved tag value (ITT/TTT "not used").
pub const RESERVED_TAG: u32 = 0xffff_ffff;
/// Largest data segment the 24-bit DataSegmentLength can express.
pub const MAX_DATA_SEGMENT_LEN: usize = (1 << 24) - 1;

/// PDU opcodes used by the target and the initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    NopOut = 0x00,
    ScsiCommand = 0x01,
    TaskMgmtRequest = 0x02,
    LoginRequest = 0x03,
    TextRequest = 0x04,
    DataOut = 0x05,
    LogoutRequest = 0x06,
    SnackRequest = 0x10,
    NopIn = 0x20,
    ScsiResponse = 0x21,
    TaskMgmtResponse = 0x22,
    LoginResponse = 0x23,
    TextResponse = 0x24,
    DataIn = 0x25,
    LogoutResponse = 0x26,
    ReadyToTransfer = 0x31,
    AsyncMessage = 0x32,
    Reject = 0x3f,
}

impl Opcode {
    /// Maps the low six bits of BHS byte 0; `None` for opcodes RFC 7143 does not define.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v & 0x3f {
            0x00 => Self::NopOut,
            0x01 => Self::ScsiCommand,
            0x02 => Self::TaskMgmtRequest,
            0x03 => Self::LoginRequest,
            0x04 => Self::TextRequest,
            0x05 => Self::DataOut,
            0x06 => Self::LogoutRequest,
            0x10 => Self::SnackRequest,
            0x20 => Self::NopIn,
            0x21 => Self::ScsiResponse,
            0x22 => Self::TaskMgmtResponse,
            0x23 => Self::LoginResponse,
            0x24 => Self::TextResponse,
            0x25 => Self::DataIn,
            0x26 => Self::LogoutResponse,
            0x31 => Self::ReadyToTransfer,
            0x32 => Self::AsyncMessage,
            0x3f => Self::Reject,
            _ => return None,
        })
    }
}

/// Flag bits of BHS byte 1 (their meaning depends on the opcode).
pub mod flags {
    /// F: final PDU of a sequence (most PDUs), T: transit (login).
    pub const FINAL: u8 = 0x80;
    /// Login/Text "continue" bit.
    pub const CONTINUE: u8 = 0x40;
    /// SCSI Command: read.
    pub const READ: u8 = 0x40;
    /// SCSI Command: write.
    pub const WRITE: u8 = 0x20;
    /// Data-In / SCSI Response: residual overflow.
    pub const OVERFLOW: u8 = 0x04;
    /// Data-In / SCSI Response: residual underflow.
    pub const UNDERFLOW: u8 = 0x02;
    /// Data-In: status is carried in this PDU.
    pub const STATUS: u8 = 0x01;
    /// Data-In: acknowledge requested.
    pub const ACK: u8 = 0x40;
}

/// The 48-byte Basic Header Segment with named field accessors.
#[derive(Clone, PartialEq, Eq)]
pub struct Bhs(pub [u8; BHS_LEN]);

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bhs{{op={:#04x} flags={:#04x} itt={:#x} dsl={}}}",
            self.raw_opcode(),
            self.flags(),
            self.itt(),
            self.data_segment_len()
        )
    }
}

impl Default for Bhs {
    fn default() -> Self {
        Self([0; BHS_LEN])
    }
}

macro_rules! u32_field {
    ($get:ident, $set:ident, $off:expr, $doc:expr) => {
        #[doc = $doc]
        pub fn $get(&self) -> u32 {
            self.get_u32($off)
        }
        #[doc = $doc]
        pub fn $set(&mut self, v: u32) -> &mut Self {
            self.set_u32($off, v);
            self
        }
    };
}

impl Bhs {
    /// A zeroed header carrying `op`.
    pub fn new(op: Opcode) -> Self {
        let mut b = Self::default();
        b.0[0] = op as u8;
        b
    }

    /// Byte 0 without the immediate bit.
    pub fn raw_opcode(&self) -> u8 {
        self.0[0] & 0x3f
    }
    /// The opcode, if RFC 7143 defines it.
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.0[0])
    }
    /// The I bit: an immediate command (does not advance CmdSN).
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }
    pub fn set_immediate(&mut self, on: bool) -> &mut Self {
        if on {
            self.0[0] |= 0x40;
        } else {
            self.0[0] &= !0x40;
        }
        self
    }
    /// Byte 1 (F/T bit and opcode-specific flags).
    pub fn flags(&self) -> u8 {
        self.0[1]
    }
    pub fn set_flags(&mut self, f: u8) -> &mut Self {
        self.0[1] = f;
        self
    }
    /// The F (or, for login, T) bit.
    pub fn final_bit(&self) -> bool {
        self.0[1] & flags::FINAL != 0
    }
    /// Byte 2 (Response / reason / version-max depending on opcode).
    pub fn byte2(&self) -> u8 {
        self.0[2]
    }
    pub fn set_byte2(&mut self, v: u8) -> &mut Self {
        self.0[2] = v;
        self
    }
    /// Byte 3 (SCSI Status / version-min / version-active depending on opcode).
    pub fn byte3(&self) -> u8 {
        self.0[3]
    }
    pub fn set_byte3(&mut self, v: u8) -> &mut Self {
        self.0[3] = v;
        self
    }
    /// TotalAHSLength in bytes.
    pub fn total_ahs_len(&self) -> usize {
        self.0[4] as usize * 4
    }
    /// DataSegmentLength in bytes (without padding).
    pub fn data_segment_len(&self) -> usize {
        (self.0[5] as usize) << 16 | (self.0[6] as usize) << 8 | self.0[7] as usize
    }
    fn set_lengths(&mut self, ahs_len: usize, data_len: usize) {
        self.0[4] = (ahs_len / 4).min(255) as u8;
        let d = data_len.min(MAX_DATA_SEGMENT_LEN);
        self.0[5] = (d >> 16) as u8;
        self.0[6] = (d >> 8) as u8;
        self.0[7] = d as u8;
    }
    /// Bytes 8..16: LUN (or ISID+TSIH in login PDUs).
    pub fn lun(&self) -> [u8; 8] {
        let mut l = [0; 8];
        l.copy_from_slice(&self.0[8..16]);
        l
    }
    pub fn set_lun(&mut self, lun: [u8; 8]) -> &mut Self {
        self.0[8..16].copy_from_slice(&lun);
        self
    }

    fn get_u32(&self, off: usize) -> u32 {
        u32::from_be_bytes([self.0[off], self.0[off + 1], self.0[off + 2], self.0[off + 3]])
    }
    fn set_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn get_u16(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.0[off], self.0[off + 1]])
    }
    fn set_u16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }

    u32_field!(itt, set_itt, 16, "Initiator Task Tag.");
    u32_field!(
        ttt,
        set_ttt,
        20,
        "Target Transfer Tag (NOP, Text, Data, R2T); Referenced Task Tag (TMF); \
         Expected Data Transfer Length (SCSI Command); SNACK Tag (SCSI Response)."
    );
    u32_field!(cmd_sn, set_cmd_sn, 24, "CmdSN (initiator PDUs) or StatSN (target PDUs).");
    u32_field!(exp_stat_sn, set_exp_stat_sn, 28, "ExpStatSN (initiator PDUs) or ExpCmdSN (target PDUs).");
    u32_field!(
        max_cmd_sn,
        set_max_cmd_sn,
        32,
        "MaxCmdSN (target PDUs); RefCmdSN (TMF request); first CDB word (SCSI Command)."
    );
    u32_field!(data_sn, set_data_sn, 36, "DataSN / R2TSN / ExpDataSN; Status-Class+Detail (login response).");
    u32_field!(buffer_offset, set_buffer_offset, 40, "Buffer Offset (Data, R2T); Bidi residual (SCSI Response).");
    u32_field!(
        residual,
        set_residual,
        44,
        "Residual Count (Data-In, SCSI Response); Desired Data Transfer Length (R2T)."
    );

    /// Target-side alias of bytes 24..28.
    pub fn stat_sn(&self) -> u32 {
        self.cmd_sn()
    }
    pub fn set_stat_sn(&mut self, v: u32) -> &mut Self {
        self.set_cmd_sn(v)
    }
    /// Target-side alias of bytes 28..32.
    pub fn exp_cmd_sn(&self) -> u32 {
        self.exp_stat_sn()
    }
    pub fn set_exp_cmd_sn(&mut self, v: u32) -> &mut Self {
        self.set_exp_stat_sn(v)
    }
    /// SCSI Command: Expected Data Transfer Length.
    pub fn expected_data_len(&self) -> u32 {
        self.ttt()
    }
    /// SCSI Command: the 16-byte CDB field.
    pub fn cdb(&self) -> &[u8] {
        &self.0[32..48]
    }
    pub fn set_cdb(&mut self, cdb: &[u8]) -> &mut Self {
        let n = cdb.len().min(16);
        self.0[32..48].fill(0);
        self.0[32..32 + n].copy_from_slice(&cdb[..n]);
        self
    }
    /// Login: ISID (bytes 8..14).
    pub fn isid(&self) -> [u8; 6] {
        let mut i = [0; 6];
        i.copy_from_slice(&self.0[8..14]);
        i
    }
    pub fn set_isid(&mut self, isid: [u8; 6]) -> &mut Self {
        self.0[8..14].copy_from_slice(&isid);
        self
    }
    /// Login: TSIH.
    pub fn tsih(&self) -> u16 {
        self.get_u16(14)
    }
    pub fn set_tsih(&mut self, v: u16) -> &mut Self {
        self.set_u16(14, v);
        self
    }
    /// Login/Logout: CID.
    pub fn cid(&self) -> u16 {
        self.get_u16(20)
    }
    pub fn set_cid(&mut self, v: u16) -> &mut Self {
        self.set_u16(20, v);
        self
    }
    /// Login response: Status-Class and Status-Detail.
    pub fn login_status(&self) -> (u8, u8) {
        (self.0[36], self.0[37])
    }
    pub fn set_login_status(&mut self, class: u8, detail: u8) -> &mut Self {
        self.0[36] = class;
        self.0[37] = detail;
        self
    }
    /// Logout response: Time2Wait and Time2Retain.
    pub fn set_logout_times(&mut self, wait: u16, retain: u16) -> &mut Self {
        self.set_u16(40, wait);
        self.set_u16(42, retain);
        self
    }
}

/// Login stage numbers (CSG/NSG).
pub mod stage {
    pub const SECURITY: u8 = 0;
    pub const OPERATIONAL: u8 = 1;
    pub const FULL_FEATURE: u8 = 3;
}

/// Login flags helpers: byte 1 = T | C | CSG<<2 | NSG.
pub fn login_flags(transit: bool, cont: bool, csg: u8, nsg: u8) -> u8 {
    (if transit { 0x80 } else { 0 })
        | (if cont { 0x40 } else { 0 })
        | ((csg & 3) << 2)
        | if transit { nsg & 3 } else { 0 }
}
/// Current stage of a login PDU.
pub fn login_csg(f: u8) -> u8 {
    (f >> 2) & 3
}
/// Next stage of a login PDU.
pub fn login_nsg(f: u8) -> u8 {
    f & 3
}

/// A whole PDU: header, additional header segments and data segment (unpadded).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pdu {
    pub bhs: Bhs,
    /// Raw AHS bytes (a multiple of 4).
    pub ahs: Vec<u8>,
    pub data: Bytes,
}

impl Pdu {
    pub fn new(bhs: Bhs) -> Self {
        Self { bhs, ahs: Vec::new(), data: Bytes::new() }
    }
    pub fn with_data(bhs: Bhs, data: impl Into<Bytes>) -> Self {
        Self { bhs, ahs: Vec::new(), data: data.into() }
    }
    pub fn opcode(&self) -> Option<Opcode> {
        self.bhs.opcode()
    }
}

/// How PDUs are framed on one connection (after login: the negotiated digests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment accepted when reading (our MaxRecvDataSegmentLength, or a login
    /// bound); larger ones are a protocol error.
    pub max_recv_data_segment: usize,
}

impl Framing {
    /// Framing during login: no digests, 8192-byte segments unless declared otherwise.
    pub fn login() -> Self {
        Self { header_digest: false, data_digest: false, max_recv_data_segment: 8192 }
    }
}

/// Why a PDU could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed in the middle of a PDU")]
    Truncated,
    #[error("data segment of {len} bytes exceeds the limit of {max}")]
    DataSegmentTooLong { len: usize, max: usize, bhs: Box<Bhs> },
    #[error("header digest mismatch")]
    HeaderDigest { bhs: Box<Bhs> },
    #[error("data digest mismatch")]
    DataDigest { bhs: Box<Bhs> },
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// CRC32C as iSCSI sends it: little-endian bytes on the wire (RFC 7143 §13.1 / RFC 3720 B.4).
pub fn crc32c_bytes(parts: &[&[u8]]) -> [u8; 4] {
    let mut c = 0u32;
    for p in parts {
        c = crc32c::crc32c_append(c, p);
    }
    c.to_le_bytes()
}

/// Bytes that follow the BHS for this header under `f` (AHS, digests, padded data).
fn rest_len(bhs: &Bhs, f: &Framing) -> usize {
    let dsl = bhs.data_segment_len();
    bhs.total_ahs_len()
        + if f.header_digest { 4 } else { 0 }
        + dsl
        + pad4(dsl)
        + if f.data_digest && dsl > 0 { 4 } else { 0 }
}

fn check_len(bhs: &Bhs, f: &Framing) -> Result<(), PduError> {
    let len = bhs.data_segment_len();
    if len > f.max_recv_data_segment {
        return Err(PduError::DataSegmentTooLong { len, max: f.max_recv_data_segment, bhs: Box::new(bhs.clone()) });
    }
    Ok(())
}

/// Splits and checks the bytes after the BHS (`rest` is exactly `rest_len` long).
fn parse_rest(bhs: Bhs, mut rest: Vec<u8>, f: &Framing) -> Result<Pdu, PduError> {
    let ahs_len = bhs.total_ahs_len();
    let dsl = bhs.data_segment_len();
    let mut pos = ahs_len;
    if f.header_digest {
        let got = rest.get(pos..pos + 4).ok_or(PduError::Truncated)?;
        let want = crc32c_bytes(&[&bhs.0, &rest[..ahs_len]]);
        if got != want {
            return Err(PduError::HeaderDigest { bhs: Box::new(bhs) });
        }
        pos += 4;
    }
    let padded = dsl + pad4(dsl);
    if f.data_digest && dsl > 0 {
        let got = rest.get(pos + padded..pos + padded + 4).ok_or(PduError::Truncated)?;
        let want = crc32c_bytes(&[&rest[pos..pos + padded]]);
        if got != want {
            return Err(PduError::DataDigest { bhs: Box::new(bhs) });
        }
    }
    let ahs = rest[..ahs_len].to_vec();
    // Keep only the data segment: drain the front, truncate the padding and digest.
    rest.truncate(pos + dsl);
    let data = if pos == 0 { rest } else { rest.split_off(pos) };
    Ok(Pdu { bhs, ahs, data: Bytes::from(data) })
}

/// Reads one PDU. `Ok(None)` on a clean end of stream before the first byte.
pub async fn read_pdu<R: AsyncRead + Unpin>(r: &mut R, f: &Framing) -> Result<Option<Pdu>, PduError> {
    let mut h = [0u8; BHS_LEN];
    let mut got = 0;
    while got < BHS_LEN {
        let n = r.read(&mut h[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(PduError::Truncated) };
        }
        got += n;
    }
    let bhs = Bhs(h);
    check_len(&bhs, f)?;
    let mut rest = vec![0u8; rest_len(&bhs, f)];
    match r.read_exact(&mut rest).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(PduError::Truncated),
        Err(e) => return Err(e.into()),
    }
    parse_rest(bhs, rest, f).map(Some)
}

/// Decodes one PDU from the front of `buf`; returns it and the bytes consumed.
/// `Ok(None)` when `buf` does not hold a whole PDU yet.
pub fn decode_pdu(buf: &[u8], f: &Framing) -> Result<Option<(Pdu, usize)>, PduError> {
    let Some(h) = buf.get(..BHS_LEN) else {
        return Ok(None);
    };
    let mut a = [0u8; BHS_LEN];
    a.copy_from_slice(h);
    let bhs = Bhs(a);
    check_len(&bhs, f)?;
    let total = BHS_LEN + rest_len(&bhs, f);
    let Some(rest) = buf.get(BHS_LEN..total) else {
        return Ok(None);
    };
    parse_rest(bhs, rest.to_vec(), f).map(|p| Some((p, total)))
}

/// Header bytes (BHS with lengths filled in, AHS, header digest) for `pdu`.
pub fn encode_header(pdu: &Pdu, f: &Framing) -> Vec<u8> {
    let mut bhs = pdu.bhs.clone();
    let ahs_len = pdu.ahs.len() - pdu.ahs.len() % 4;
    bhs.set_lengths(ahs_len, pdu.data.len());
    let mut out = Vec::with_capacity(BHS_LEN + ahs_len + 4);
    out.extend_from_slice(&bhs.0);
    out.extend_from_slice(&pdu.ahs[..ahs_len]);
    if f.header_digest {
        let d = crc32c_bytes(&[&out]);
        out.extend_from_slice(&d);
    }
    out
}

/// Padding and data digest that follow the data segment.
fn encode_trailer(data: &[u8], f: &Framing) -> ([u8; 8], usize) {
    let mut t = [0u8; 8];
    let pad = pad4(data.len());
    let mut n = pad;
    if f.data_digest && !data.is_empty() {
        let d = crc32c_bytes(&[data, &[0u8; 3][..pad]]);
        t[pad..pad + 4].copy_from_slice(&d);
        n += 4;
    }
    (t, n)
}

/// The whole PDU as bytes (tests, fuzzing, small PDUs).
pub fn encode_pdu(pdu: &Pdu, f: &Framing) -> Vec<u8> {
    let mut out = encode_header(pdu, f);
    out.extend_from_slice(&pdu.data);
    let (t, n) = encode_trailer(&pdu.data, f);
    out.extend_from_slice(&t[..n]);
    out
}

/// Writes one PDU (not flushed: callers flush when their queue runs dry).
pub async fn write_pdu<W: AsyncWrite + Unpin>(w: &mut W, pdu: &Pdu, f: &Framing) -> std::io::Result<()> {
    let data_len = pdu.data.len().min(MAX_DATA_SEGMENT_LEN);
    let data = &pdu.data[..data_len];
    let mut head = encode_header(pdu, f);
    let (t, n) = encode_trailer(data, f);
    if data.len() <= 4096 {
        head.extend_from_slice(data);
        head.extend_from_slice(&t[..n]);
        w.write_all(&head).await
    } else {
        w.write_all(&head).await?;
        w.write_all(data).await?;
        w.write_all(&t[..n]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_rfc3720_example() {
        // RFC 3720 B.4: 32 bytes of zeroes -> CRC aa 36 91 8a on the wire.
        assert_eq!(crc32c_bytes(&[&[0u8; 32]]), [0xaa, 0x36, 0x91, 0x8a]);
    }

    #[test]
    fn roundtrip_with_digests_and_padding() {
        for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
            let f = Framing { header_digest: hd, data_digest: dd, max_recv_data_segment: 1024 };
            let mut bhs = Bhs::new(Opcode::TextRequest);
            bhs.set_flags(flags::FINAL).set_itt(7).set_ttt(RESERVED_TAG).set_cmd_sn(3);
            let pdu = Pdu { bhs, ahs: vec![1, 2, 3, 4], data: Bytes::from_static(b"SendTargets=All\0") };
            let mut wire = encode_pdu(&pdu, &f);
            wire.extend_from_slice(b"xx");
            let (back, used) = decode_pdu(&wire, &f).unwrap().unwrap();
            assert_eq!(used, wire.len() - 2);
            assert_eq!(back.data, pdu.data);
            assert_eq!(back.ahs, pdu.ahs);
            assert_eq!(back.bhs.itt(), 7);
            assert_eq!(back.bhs.data_segment_len(), 16);
            let odd = Pdu::with_data(Bhs::new(Opcode::DataOut), vec![9u8; 5]);
            let wire = encode_pdu(&odd, &f);
            let (back, _) = decode_pdu(&wire, &f).unwrap().unwrap();
            assert_eq!(&back.data[..], &[9u8; 5]);
        }
    }

    #[test]
    fn digest_errors_are_detected() {
        let f = Framing { header_digest: true, data_digest: true, max_recv_data_segment: 1024 };
        let pdu = Pdu::with_data(Bhs::new(Opcode::NopOut), vec![1u8; 8]);
        let mut wire = encode_pdu(&pdu, &f);
        wire[60] ^= 1;
        assert!(matches!(decode_pdu(&wire, &f), Err(PduError::DataDigest { .. })));
        let mut wire = encode_pdu(&pdu, &f);
        wire[20] ^= 1;
        assert!(matches!(decode_pdu(&wire, &f), Err(PduError::HeaderDigest { .. })));
    }

    #[tokio::test]
    async fn async_read_matches_decode() {
        let f = Framing::login();
        let pdu = Pdu::with_data(Bhs::new(Opcode::LoginRequest), b"InitiatorName=x\0".to_vec());
        let wire = encode_pdu(&pdu, &f);
        let mut r = &wire[..];
        let got = read_pdu(&mut r, &f).await.unwrap().unwrap();
        assert_eq!(got.data, pdu.data);
        assert!(read_pdu(&mut r, &f).await.unwrap().is_none());
        let mut short = &wire[..50];
        assert!(matches!(read_pdu(&mut short, &f).await, Err(PduError::Truncated)));
    }
}
