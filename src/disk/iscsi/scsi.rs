//! The SCSI block command set the target emulates (SPC-4/SBC-3 subset) and the CDBs the
//! initiator builds. `plan` turns a CDB into what the target must do; it never touches the disk,
//! so it is a pure function of (CDB, LUN, disk geometry) and easy to test exhaustively.

/// SCSI status codes.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const BUSY: u8 = 0x08;
    pub const TASK_SET_FULL: u8 = 0x28;
}

/// Operation codes used by the target and initiator.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    /// SERVICE ACTION IN(16) service action for READ CAPACITY(16).
    pub const SA_READ_CAPACITY_16: u8 = 0x10;
}

/// Sense keys.
pub mod key {
    pub const NO_SENSE: u8 = 0x00;
    pub const MEDIUM_ERROR: u8 = 0x03;
    pub const HARDWARE_ERROR: u8 = 0x04;
    pub const ILLEGAL_REQUEST: u8 = 0x05;
    pub const ABORTED_COMMAND: u8 = 0x0b;
}

/// Sense data (key + additional sense code and qualifier), sent in fixed format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    pub const INVALID_OPCODE: Sense = Sense { key: key::ILLEGAL_REQUEST, asc: 0x20, ascq: 0x00 };
    pub const LBA_OUT_OF_RANGE: Sense = Sense { key: key::ILLEGAL_REQUEST, asc: 0x21, ascq: 0x00 };
    /// iSCSI EDTL is not a whole number of blocks for a write.
    pub const INVALID_FIELD_IN_INFORMATION_UNIT: Sense = Sense { key: key::ILLEGAL_REQUEST, asc: 0x0e, ascq: 0x03 };
    pub const INVALID_FIELD_IN_CDB: Sense = Sense { key: key::ILLEGAL_REQUEST, asc: 0x24, ascq: 0x00 };
    pub const LUN_NOT_SUPPORTED: Sense = Sense { key: key::ILLEGAL_REQUEST, asc: 0x25, ascq: 0x00 };
    pub const SAVING_PARAMS_UNSUPPORTED: Sense = Sense { key: key::ILLEGAL_REQUEST, asc: 0x39, ascq: 0x00 };
    pub const UNRECOVERED_READ_ERROR: Sense = Sense { key: key::MEDIUM_ERROR, asc: 0x11, ascq: 0x00 };
    pub const WRITE_ERROR: Sense = Sense { key: key::MEDIUM_ERROR, asc: 0x0c, ascq: 0x00 };
    pub const INTERNAL_TARGET_FAILURE: Sense = Sense { key: key::HARDWARE_ERROR, asc: 0x44, ascq: 0x00 };
    /// Data transfer length in the iSCSI header disagrees with the CDB.
    pub const DATA_PHASE_ERROR: Sense = Sense { key: key::ABORTED_COMMAND, asc: 0x4b, ascq: 0x00 };

    /// Fixed-format sense data (SPC-4 §4.5.3), 18 bytes.
    pub fn fixed(&self) -> [u8; 18] {
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = self.key & 0x0f;
        s[7] = 10;
        s[12] = self.asc;
        s[13] = self.ascq;
        s
    }
    /// Parses fixed or descriptor sense data (for the initiator's error messages).
    pub fn parse(b: &[u8]) -> Option<Sense> {
        match b.first()? & 0x7f {
            0x70 | 0x71 => Some(Sense { key: b.get(2)? & 0x0f, asc: *b.get(12)?, ascq: *b.get(13)? }),
            0x72 | 0x73 => Some(Sense { key: b.get(1)? & 0x0f, asc: *b.get(2)?, ascq: *b.get(3)? }),
            _ => None,
        }
    }
}

impl std::fmt::Display for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sense key {:#x} asc {:#04x} ascq {:#04x}", self.key, self.asc, self.ascq)
    }
}

/// Identity and geometry of the logical unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunInfo {
    pub block_size: u32,
    pub num_blocks: u64,
    /// Unit serial number (VPD 0x80), printable ASCII.
    pub serial: String,
    /// 64-bit identifier for the NAA designator (VPD 0x83).
    pub naa_id: u64,
}

/// What the target must do for one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Answer now: status, Data-In bytes (already cut to the allocation length), sense.
    Done { data: Vec<u8>, sense: Option<Sense> },
    /// Read `len` bytes at byte `offset` and return them as Data-In.
    Read { offset: u64, len: u64 },
    /// Receive `len` bytes of Data-Out and write them at byte `offset`.
    /// With `fua`, the data must be durable before GOOD is returned.
    Write { offset: u64, len: u64, fua: bool },
    /// Flush the disk.
    Flush,
}

impl Plan {
    fn data(mut v: Vec<u8>, alloc: usize) -> Plan {
        v.truncate(alloc);
        Plan::Done { data: v, sense: None }
    }
    fn fail(s: Sense) -> Plan {
        Plan::Done { data: Vec::new(), sense: Some(s) }
    }
    fn good() -> Plan {
        Plan::Done { data: Vec::new(), sense: None }
    }
}

fn be16(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_be_bytes([b[o], b[o + 1]]))
}
fn be32(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
}
fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_be_bytes(a)
}

/// Single-level LUN number from the 8-byte iSCSI LUN field (peripheral or flat addressing).
pub fn lun_number(lun: &[u8; 8]) -> Option<u16> {
    match lun[0] >> 6 {
        0 | 1 if lun[2..].iter().all(|&b| b == 0) => Some(u16::from(lun[0] & 0x3f) << 8 | u16::from(lun[1])),
        _ => None,
    }
}

const VENDOR: &[u8; 8] = b"FERRIC  ";
const PRODUCT: &[u8; 16] = b"ferric-disk     ";
const REVISION: &[u8; 4] = b"0001";

fn inquiry(cdb: &[u8], lun_ok: bool, info: &LunInfo) -> Plan {
    let evpd = cdb[1] & 1 != 0;
    let page = cdb[2];
    let alloc = be16(cdb, 3) as usize;
    // Peripheral qualifier 3 / device type 0x1f: no logical unit at this LUN.
    let pq = if lun_ok { 0x00 } else { 0x7f };
    if !evpd {
        if page != 0 {
            return Plan::fail(Sense::INVALID_FIELD_IN_CDB);
        }
        let mut d = vec![0u8; 96];
        d[0] = pq;
        d[2] = 0x06; // SPC-4
        d[3] = 0x12; // HiSup, response data format 2
        d[4] = 91; // additional length
        d[7] = 0x02; // CmdQue
        d[8..16].copy_from_slice(VENDOR);
        d[16..32].copy_from_slice(PRODUCT);
        d[32..36].copy_from_slice(REVISION);
        // Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
        for (i, v) in [0x00a0u16, 0x0960, 0x0460, 0x04c0].iter().enumerate() {
            d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
        }
        return Plan::data(d, alloc);
    }
    if !lun_ok {
        return Plan::fail(Sense::LUN_NOT_SUPPORTED);
    }
    let body: Vec<u8> = match page {
        0x00 => vec![0x00, 0x80, 0x83, 0xb0, 0xb1],
        0xb0 => {
            // Block limits: no transfer-length limits, no UNMAP, optimal granularity 8 blocks.
            let mut b = vec![0u8; 0x3c];
            b[3] = 8;
            b
        }
        0xb1 => {
            // Block device characteristics: non-rotating medium.
            let mut b = vec![0u8; 0x3c];
            b[1] = 1;
            b
        }
        0x80 => info.serial.bytes().filter(|b| b.is_ascii_graphic() || *b == b' ').take(252).collect(),
        0x83 => {
            let mut b = Vec::new();
            // NAA IEEE Registered Extended would need an OUI; use NAA 3 (locally assigned).
            let naa = (0x3u64 << 60) | (info.naa_id & 0x0fff_ffff_ffff_ffff);
            b.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]); // binary, LU, NAA, len 8
            b.extend_from_slice(&naa.to_be_bytes());
            let mut t10: Vec<u8> = VENDOR.to_vec();
            t10.extend(info.serial.bytes().filter(|b| b.is_ascii_graphic()).take(64));
            b.extend_from_slice(&[0x02, 0x01, 0x00, t10.len() as u8]); // ASCII, LU, T10 vendor id
            b.extend_from_slice(&t10);
            b
        }
        _ => return Plan::fail(Sense::INVALID_FIELD_IN_CDB),
    };
    let mut d = vec![pq, page];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(&body);
    Plan::data(d, alloc)
}

/// Mode pages we report: caching (0x08, write cache enabled) and control (0x0a).
fn mode_pages(page: u8) -> Option<Vec<u8>> {
    let caching = {
        let mut p = vec![0u8; 20];
        p[0] = 0x08;
        p[1] = 0x12;
        p[2] = 0x04; // WCE
        p
    };
    let control = {
        let mut p = vec![0u8; 12];
        p[0] = 0x0a;
        p[1] = 0x0a;
        p[2] = 0x02; // GLTSD
        p
    };
    match page {
        0x08 => Some(caching),
        0x0a => Some(control),
        0x3f => Some([caching, control].concat()),
        _ => None,
    }
}

fn mode_sense(cdb: &[u8], ten: bool, info: &LunInfo) -> Plan {
    let dbd = cdb[1] & 0x08 != 0;
    let pc = cdb[2] >> 6;
    let page = cdb[2] & 0x3f;
    let subpage = cdb[3];
    if pc == 3 {
        return Plan::fail(Sense::SAVING_PARAMS_UNSUPPORTED);
    }
    if subpage != 0 && subpage != 0xff {
        return Plan::fail(Sense::INVALID_FIELD_IN_CDB);
    }
    let Some(mut pages) = mode_pages(page) else {
        return Plan::fail(Sense::INVALID_FIELD_IN_CDB);
    };
    if pc == 1 {
        // Changeable values: nothing is changeable.
        for p in pages.iter_mut().skip(2) {
            *p = 0;
        }
    }
    let blocks = if info.num_blocks > 0xff_ffff { 0 } else { info.num_blocks };
    let mut desc = Vec::new();
    if !dbd {
        desc.extend_from_slice(&(blocks as u32).to_be_bytes());
        desc[0] = 0; // density code
        desc.extend_from_slice(&info.block_size.to_be_bytes());
        desc[4] = 0;
    }
    let (mut d, alloc) = if ten {
        let mut h = vec![0u8; 8];
        h[7] = desc.len() as u8;
        (h, be16(cdb, 7) as usize)
    } else {
        let h = vec![0u8, 0, 0, desc.len() as u8];
        (h, cdb[4] as usize)
    };
    // Device-specific parameter: DPOFUA (FUA writes are flushed), not write protected.
    let dsp = if ten { 3 } else { 2 };
    d[dsp] = 0x10;
    d.extend_from_slice(&desc);
    d.extend_from_slice(&pages);
    if ten {
        let len = (d.len() - 2) as u16;
        d[0..2].copy_from_slice(&len.to_be_bytes());
    } else {
        d[0] = (d.len() - 1) as u8;
    }
    Plan::data(d, alloc)
}

fn rw(cdb: &[u8], lba: u64, blocks: u64, info: &LunInfo, write: bool) -> Plan {
    // RDPROTECT/WRPROTECT: we format without protection information.
    if cdb[1] >> 5 != 0 {
        return Plan::fail(Sense::INVALID_FIELD_IN_CDB);
    }
    match lba.checked_add(blocks) {
        Some(end) if end <= info.num_blocks => {
            let bs = u64::from(info.block_size);
            let (offset, len) = (lba * bs, blocks * bs);
            if write { Plan::Write { offset, len, fua: cdb[1] & 0x08 != 0 } } else { Plan::Read { offset, len } }
        }
        _ => Plan::fail(Sense::LBA_OUT_OF_RANGE),
    }
}

/// Expected CDB length for an operation code (SPC-4 §4.2.5.1 groups).
pub fn cdb_len(opcode: u8) -> usize {
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 16,
    }
}

/// Decides what to do for `cdb` addressed to `lun`; only LUN 0 exists.
pub fn plan(cdb: &[u8; 16], lun: Option<u16>, info: &LunInfo) -> Plan {
    let lun_ok = lun == Some(0);
    let opcode = cdb[0];
    match opcode {
        op::INQUIRY => return inquiry(cdb, lun_ok, info),
        op::REPORT_LUNS => {
            let alloc = be32(cdb, 6) as usize;
            if alloc < 16 {
                return Plan::fail(Sense::INVALID_FIELD_IN_CDB);
            }
            let mut d = vec![0u8; 16];
            d[3] = 8; // one LUN entry; LUN 0 is all zeroes
            return Plan::data(d, alloc);
        }
        op::REQUEST_SENSE => {
            // Sense is always delivered with the status (autosense), so nothing is pending.
            let alloc = cdb[4] as usize;
            return Plan::data(Sense { key: key::NO_SENSE, asc: 0, ascq: 0 }.fixed().to_vec(), alloc);
        }
        _ => {}
    }
    if !lun_ok {
        return Plan::fail(Sense::LUN_NOT_SUPPORTED);
    }
    match opcode {
        op::TEST_UNIT_READY => Plan::good(),
        op::READ_CAPACITY_10 => {
            let last = info.num_blocks.saturating_sub(1).min(0xffff_ffff) as u32;
            let mut d = last.to_be_bytes().to_vec();
            d.extend_from_slice(&info.block_size.to_be_bytes());
            Plan::data(d, 8)
        }
        op::SERVICE_ACTION_IN_16 if cdb[1] & 0x1f == op::SA_READ_CAPACITY_16 => {
            let alloc = be32(cdb, 10) as usize;
            let mut d = vec![0u8; 32];
            d[0..8].copy_from_slice(&info.num_blocks.saturating_sub(1).to_be_bytes());
            d[8..12].copy_from_slice(&info.block_size.to_be_bytes());
            Plan::data(d, alloc)
        }
        op::READ_10 => rw(cdb, be32(cdb, 2), be16(cdb, 7), info, false),
        op::READ_16 => rw(cdb, be64(cdb, 2), be32(cdb, 10), info, false),
        op::WRITE_10 => rw(cdb, be32(cdb, 2), be16(cdb, 7), info, true),
        op::WRITE_16 => rw(cdb, be64(cdb, 2), be32(cdb, 10), info, true),
        op::MODE_SENSE_6 => mode_sense(cdb, false, info),
        op::MODE_SENSE_10 => mode_sense(cdb, true, info),
        op::SYNCHRONIZE_CACHE_10 => {
            let (lba, n) = (be32(cdb, 2), be16(cdb, 7));
            if lba.saturating_add(n) > info.num_blocks { Plan::fail(Sense::LBA_OUT_OF_RANGE) } else { Plan::Flush }
        }
        op::SYNCHRONIZE_CACHE_16 => {
            let (lba, n) = (be64(cdb, 2), be32(cdb, 10));
            if lba.saturating_add(n) > info.num_blocks { Plan::fail(Sense::LBA_OUT_OF_RANGE) } else { Plan::Flush }
        }
        _ => Plan::fail(Sense::INVALID_OPCODE),
    }
}

/// CDB builders for the initiator.
pub mod cdb {
    use super::op;

    pub fn read_capacity_16() -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = op::SERVICE_ACTION_IN_16;
        c[1] = op::SA_READ_CAPACITY_16;
        c[10..14].copy_from_slice(&32u32.to_be_bytes());
        c
    }
    pub fn read_capacity_10() -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = op::READ_CAPACITY_10;
        c
    }
    /// READ/WRITE (10) when it fits, else (16).
    pub fn rw(write: bool, lba: u64, blocks: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        if lba <= u64::from(u32::MAX) && blocks <= u32::from(u16::MAX) {
            c[0] = if write { op::WRITE_10 } else { op::READ_10 };
            c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
            c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
        } else {
            c[0] = if write { op::WRITE_16 } else { op::READ_16 };
            c[2..10].copy_from_slice(&lba.to_be_bytes());
            c[10..14].copy_from_slice(&blocks.to_be_bytes());
        }
        c
    }
    pub fn synchronize_cache_10() -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = op::SYNCHRONIZE_CACHE_10;
        c
    }
    pub fn test_unit_ready() -> [u8; 16] {
        [0u8; 16]
    }
    pub fn inquiry(evpd_page: Option<u8>, alloc: u16) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = op::INQUIRY;
        if let Some(p) = evpd_page {
            c[1] = 1;
            c[2] = p;
        }
        c[3..5].copy_from_slice(&alloc.to_be_bytes());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> LunInfo {
        LunInfo { block_size: 512, num_blocks: 2048, serial: "abc123".into(), naa_id: 42 }
    }
    fn c(bytes: &[u8]) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..bytes.len()].copy_from_slice(bytes);
        a
    }

    #[test]
    fn reads_and_writes_check_range() {
        assert_eq!(plan(&cdb::rw(false, 2047, 1), Some(0), &info()), Plan::Read { offset: 2047 * 512, len: 512 });
        assert_eq!(plan(&cdb::rw(true, 2047, 2), Some(0), &info()), Plan::fail(Sense::LBA_OUT_OF_RANGE));
        assert_eq!(plan(&cdb::rw(true, u64::MAX, 1), Some(0), &info()), Plan::fail(Sense::LBA_OUT_OF_RANGE));
        assert_eq!(plan(&c(&[0xff]), Some(0), &info()), Plan::fail(Sense::INVALID_OPCODE));
        assert_eq!(plan(&c(&[0x00]), Some(1), &info()), Plan::fail(Sense::LUN_NOT_SUPPORTED));
    }

    #[test]
    fn capacity_and_inquiry() {
        let Plan::Done { data, .. } = plan(&cdb::read_capacity_16(), Some(0), &info()) else { panic!() };
        assert_eq!(be64(&data, 0), 2047);
        assert_eq!(be32(&data, 8), 512);
        let Plan::Done { data, .. } = plan(&cdb::inquiry(Some(0x83), 255), Some(0), &info()) else { panic!() };
        assert_eq!(data[1], 0x83);
        assert_eq!(be16(&data, 2) as usize, data.len() - 4);
        let Plan::Done { data, .. } = plan(&cdb::inquiry(None, 5), Some(0), &info()) else { panic!() };
        assert_eq!(data.len(), 5);
        let Plan::Done { data, .. } = plan(&c(&[0x1a, 0, 0x3f, 0, 255]), Some(0), &info()) else { panic!() };
        assert_eq!(data[0] as usize, data.len() - 1);
        assert_eq!(Sense::parse(&Sense::LBA_OUT_OF_RANGE.fixed()), Some(Sense::LBA_OUT_OF_RANGE));
    }
}
