//! The iSCSI initiator the conductor uses to write an image onto a node's disk exposed by the
//! agent's target (or any RFC 7143 target, e.g. tgtd).
//!
//! One task drives one connection: it issues commands while the CmdSN window and the configured
//! queue depth allow, and otherwise reads the next PDU (R2T, Data-In, SCSI Response, NOP-In)
//! and acts on it. Writes are large and pipelined: each command carries immediate data and
//! unsolicited Data-Out up to FirstBurstLength when negotiated, the rest follows R2Ts.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, ReadHalf, WriteHalf};
use tracing::{debug, warn};

use ferric_disk::iscsi::pdu::{self, Bhs, Framing, Opcode, Pdu, PduError, RESERVED_TAG, flags, stage};
use ferric_disk::iscsi::scsi::{self, Sense, status};
use ferric_disk::iscsi::text::{self, ChapCredentials, SessionParams, TextPairs};

/// Initiator settings; the defaults favour large pipelined writes.
#[derive(Clone, Debug)]
pub struct InitiatorConfig {
    pub initiator_name: String,
    /// TargetName to log in to (ignored for discovery).
    pub target_name: String,
    pub chap: Option<ChapCredentials>,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Our MaxRecvDataSegmentLength.
    pub max_recv_data_segment: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// Commands kept outstanding while writing or verifying.
    pub queue_depth: usize,
    /// Bytes per WRITE/READ command while copying.
    pub chunk_size: u32,
    /// Longest wait for any PDU from the target.
    pub timeout: Duration,
    /// ISID; random (OS entropy) when `None`.
    pub isid: Option<[u8; 6]>,
    /// LUN to address (ferric's target: 0; tgtd puts its first disk at 1).
    pub lun: u16,
}

impl InitiatorConfig {
    pub fn new(initiator_name: impl Into<String>, target_name: impl Into<String>) -> Self {
        Self {
            initiator_name: initiator_name.into(),
            target_name: target_name.into(),
            chap: None,
            header_digest: false,
            data_digest: false,
            max_recv_data_segment: 256 * 1024,
            max_burst_length: 16 * 1024 * 1024 - 1024,
            first_burst_length: 16 * 1024 * 1024 - 1024,
            immediate_data: true,
            initial_r2t: false,
            queue_depth: 8,
            chunk_size: 1 << 20,
            timeout: Duration::from_secs(60),
            isid: None,
            lun: 0,
        }
    }
}

/// Initiator failures.
#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("PDU: {0}")]
    Pdu(#[from] PduError),
    #[error("connection closed by the target")]
    Closed,
    #[error("no PDU from the target within {0:?}")]
    Timeout(Duration),
    #[error("authentication failed (login status {0:#04x}/{1:#04x})")]
    AuthenticationFailed(u8, u8),
    #[error("login refused with status {class:#04x}/{detail:#04x}")]
    LoginRefused { class: u8, detail: u8 },
    #[error("login: {0}")]
    Login(String),
    #[error("target rejected a PDU, reason {0:#04x}")]
    Rejected(u8),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("SCSI command failed: status {status:#04x} {sense:?}")]
    Scsi { status: u8, sense: Option<Sense> },
    #[error("image of {image} bytes does not fit the disk of {capacity} bytes")]
    ImageTooLarge { image: u64, capacity: u64 },
    #[error("reading the image source: {0}")]
    Source(std::io::Error),
    #[error("verification failed: wrote crc32c {written:#010x}, read back {read:#010x}")]
    VerifyMismatch { written: u32, read: u32 },
}

type Result<T> = std::result::Result<T, InitiatorError>;

/// Geometry from READ CAPACITY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub block_size: u32,
    pub num_blocks: u64,
}

impl Capacity {
    pub fn bytes(&self) -> u64 {
        u64::from(self.block_size) * self.num_blocks
    }
}

/// A finished SCSI command.
#[derive(Clone, Debug)]
pub struct Completion {
    pub status: u8,
    pub sense: Option<Sense>,
    pub data: Vec<u8>,
}

impl Completion {
    fn ok(self) -> Result<Self> {
        if self.status == status::GOOD {
            Ok(self)
        } else {
            Err(InitiatorError::Scsi { status: self.status, sense: self.sense })
        }
    }
}

/// Called with the number of image bytes the target has acknowledged so far.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

struct Inflight {
    /// Write data (kept for R2Ts), empty for reads.
    data: Bytes,
    /// Read buffer.
    buf: Vec<u8>,
    max_in: usize,
}

/// SAM single-level LUN: peripheral addressing below 256, flat addressing above.
fn encode_lun(lun: u16) -> [u8; 8] {
    let mut l = [0u8; 8];
    if lun < 256 {
        l[1] = lun as u8;
    } else {
        l[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
        l[1] = lun as u8;
    }
    l
}

fn sn_le(a: u32, b: u32) -> bool {
    a == b || b.wrapping_sub(a) < 1 << 31
}

/// Discovery and session helpers.
pub struct Initiator;

impl Initiator {
    /// SendTargets discovery over `stream`: returns (TargetName, TargetAddresses).
    pub async fn discover<S>(stream: S, cfg: &InitiatorConfig) -> Result<Vec<(String, Vec<String>)>>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let mut s = Session::connect(stream, cfg, true).await?;
        let itt = s.alloc_itt();
        let mut b = Bhs::new(Opcode::TextRequest);
        b.set_flags(flags::FINAL).set_itt(itt).set_ttt(RESERVED_TAG);
        b.set_cmd_sn(s.cmd_sn).set_exp_stat_sn(s.exp_stat_sn);
        s.cmd_sn = s.cmd_sn.wrapping_add(1);
        s.send(&Pdu::with_data(b, TextPairs(vec![("SendTargets".into(), "All".into())]).encode())).await?;
        let mut text = Vec::new();
        loop {
            let p = s.recv().await?;
            if p.bhs.opcode() == Some(Opcode::TextResponse) && p.bhs.itt() == itt {
                text.extend_from_slice(&p.data);
                if text.len() > text::MAX_TEXT_LEN {
                    return Err(InitiatorError::Protocol("SendTargets response too long".into()));
                }
                if p.bhs.flags() & flags::CONTINUE == 0 {
                    break;
                }
                let mut b = Bhs::new(Opcode::TextRequest);
                b.set_flags(flags::FINAL).set_itt(itt).set_ttt(p.bhs.ttt());
                b.set_cmd_sn(s.cmd_sn).set_exp_stat_sn(s.exp_stat_sn);
                s.cmd_sn = s.cmd_sn.wrapping_add(1);
                s.send(&Pdu::new(b)).await?;
            } else {
                s.other(p).await?;
            }
        }
        // TargetName starts a record; TargetAddress lines belong to the last TargetName.
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for item in text.split(|&c| c == 0).filter(|i| !i.is_empty()) {
            let s = String::from_utf8_lossy(item);
            if let Some(n) = s.strip_prefix("TargetName=") {
                out.push((n.to_string(), Vec::new()));
            } else if let (Some(a), Some(last)) = (s.strip_prefix("TargetAddress="), out.last_mut()) {
                last.1.push(a.to_string());
            }
        }
        s.logout().await?;
        Ok(out)
    }
}

/// A logged-in normal session on one connection.
pub struct Session<S: AsyncRead + AsyncWrite> {
    rd: BufReader<ReadHalf<S>>,
    wr: BufWriter<WriteHalf<S>>,
    cfg: InitiatorConfig,
    params: SessionParams,
    rx: Framing,
    tx: Framing,
    cmd_sn: u32,
    exp_stat_sn: u32,
    max_cmd_sn: u32,
    next_itt: u32,
    inflight: HashMap<u32, Inflight>,
    done: HashMap<u32, Completion>,
    lun: [u8; 8],
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Session<S> {
    /// Logs in to `cfg.target_name` (normal session) over `stream`.
    pub async fn login(stream: S, cfg: &InitiatorConfig) -> Result<Self> {
        Self::connect(stream, cfg, false).await
    }

    /// Negotiated parameters.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    async fn connect(stream: S, cfg: &InitiatorConfig, discovery: bool) -> Result<Self> {
        let (r, w) = tokio::io::split(stream);
        let isid = cfg.isid.unwrap_or_else(|| random_isid(rand::rng().next_u32().to_be_bytes()));
        let mut s = Self {
            rd: BufReader::with_capacity(64 * 1024, r),
            wr: BufWriter::with_capacity(64 * 1024, w),
            cfg: cfg.clone(),
            params: SessionParams { initiator_max_recv_data_segment: cfg.max_recv_data_segment, ..Default::default() },
            rx: Framing { max_recv_data_segment: 16 * 1024, ..Framing::login() },
            tx: Framing::login(),
            cmd_sn: 1,
            exp_stat_sn: 0,
            max_cmd_sn: 1,
            next_itt: 1,
            inflight: HashMap::new(),
            done: HashMap::new(),
            lun: encode_lun(cfg.lun),
        };
        s.do_login(isid, discovery).await?;
        Ok(s)
    }

    fn alloc_itt(&mut self) -> u32 {
        let i = self.next_itt;
        self.next_itt = self.next_itt.wrapping_add(1);
        if self.next_itt == RESERVED_TAG {
            self.next_itt = 1;
        }
        i
    }

    async fn send(&mut self, p: &Pdu) -> Result<()> {
        pdu::write_pdu(&mut self.wr, p, &self.tx).await?;
        self.wr.flush().await?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Pdu> {
        match tokio::time::timeout(self.cfg.timeout, pdu::read_pdu(&mut self.rd, &self.rx)).await {
            Err(_) => Err(InitiatorError::Timeout(self.cfg.timeout)),
            Ok(Ok(Some(p))) => {
                self.note_sns(&p.bhs);
                Ok(p)
            }
            Ok(Ok(None)) => Err(InitiatorError::Closed),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// Tracks ExpStatSN and the command window from a target PDU.
    fn note_sns(&mut self, b: &Bhs) {
        let carries_status = match b.opcode() {
            Some(
                Opcode::ScsiResponse
                | Opcode::TaskMgmtResponse
                | Opcode::TextResponse
                | Opcode::LogoutResponse
                | Opcode::Reject
                | Opcode::AsyncMessage,
            ) => true,
            Some(Opcode::DataIn) => b.flags() & flags::STATUS != 0,
            Some(Opcode::NopIn) => b.itt() != RESERVED_TAG,
            _ => false,
        };
        if carries_status {
            self.exp_stat_sn = b.stat_sn().wrapping_add(1);
        }
        if !matches!(b.opcode(), Some(Opcode::LoginResponse)) {
            let (exp, max) = (b.exp_cmd_sn(), b.max_cmd_sn());
            // Ignore windows that are "negative" (RFC 7143 §4.2.2.1) or stale.
            if sn_le(exp, max.wrapping_add(1)) && sn_le(self.max_cmd_sn, max) {
                self.max_cmd_sn = max;
            }
        }
    }

    async fn login_exchange(&mut self, isid: [u8; 6], fl: u8, keys: &TextPairs) -> Result<(Bhs, TextPairs)> {
        let mut b = Bhs::new(Opcode::LoginRequest);
        b.set_immediate(true).set_flags(fl).set_isid(isid).set_itt(0).set_cid(1);
        b.set_cmd_sn(self.cmd_sn).set_exp_stat_sn(self.exp_stat_sn);
        self.send(&Pdu::with_data(b, keys.encode())).await?;
        let mut text = Vec::new();
        loop {
            let r = self.recv().await?;
            if r.bhs.opcode() != Some(Opcode::LoginResponse) {
                return Err(InitiatorError::Login(format!("unexpected PDU {:?} during login", r.bhs)));
            }
            self.exp_stat_sn = r.bhs.stat_sn().wrapping_add(1);
            self.max_cmd_sn = r.bhs.max_cmd_sn();
            let (class, detail) = r.bhs.login_status();
            match class {
                0 => {}
                2 if detail == 1 || detail == 2 => {
                    return Err(InitiatorError::AuthenticationFailed(class, detail));
                }
                _ => return Err(InitiatorError::LoginRefused { class, detail }),
            }
            text.extend_from_slice(&r.data);
            if text.len() > text::MAX_TEXT_LEN {
                return Err(InitiatorError::Login("login response too long".into()));
            }
            if r.bhs.flags() & flags::CONTINUE == 0 {
                let keys =
                    TextPairs::parse(&text).map_err(|e| InitiatorError::Login(format!("bad login text: {e}")))?;
                return Ok((r.bhs, keys));
            }
            // The target has more text: ask for it with an empty request.
            let mut b = Bhs::new(Opcode::LoginRequest);
            b.set_immediate(true).set_flags(fl & !flags::FINAL & !0x03).set_isid(isid).set_itt(0).set_cid(1);
            b.set_cmd_sn(self.cmd_sn).set_exp_stat_sn(self.exp_stat_sn);
            self.send(&Pdu::new(b)).await?;
        }
    }

    fn apply_answers(&mut self, keys: &TextPairs, offered: &TextPairs) -> TextPairs {
        let mut reply = TextPairs::new();
        for (k, v) in &keys.0 {
            let num = text::parse_number(v).and_then(|n| u32::try_from(n).ok());
            let yes = v == "Yes";
            let was_offered = offered.contains(k);
            match k.as_str() {
                "HeaderDigest" => self.params.header_digest = v == "CRC32C",
                "DataDigest" => self.params.data_digest = v == "CRC32C",
                "MaxRecvDataSegmentLength" => {
                    if let Some(n) = num.filter(|n| *n >= 512) {
                        self.params.target_max_recv_data_segment = n.min(pdu::MAX_DATA_SEGMENT_LEN as u32);
                    }
                }
                "MaxBurstLength" => {
                    if let Some(n) = num.filter(|n| *n >= 512) {
                        self.params.max_burst_length = n.min(self.cfg.max_burst_length);
                    }
                }
                "FirstBurstLength" => {
                    if let Some(n) = num.filter(|n| *n >= 512) {
                        self.params.first_burst_length = n.min(self.cfg.first_burst_length);
                    }
                }
                "ImmediateData" if v != "Irrelevant" && v != "NotUnderstood" && v != "Reject" => {
                    self.params.immediate_data = yes && self.cfg.immediate_data;
                }
                "InitialR2T" if v != "Irrelevant" && v != "NotUnderstood" && v != "Reject" => {
                    self.params.initial_r2t = yes || self.cfg.initial_r2t;
                }
                "MaxOutstandingR2T" => {
                    if let Some(n) = num.filter(|n| *n >= 1) {
                        self.params.max_outstanding_r2t = n;
                    }
                }
                "ErrorRecoveryLevel" if num.is_some_and(|n| n != 0) => {
                    warn!("target insists on ErrorRecoveryLevel {v}; we run level 0");
                }
                _ => {}
            }
            if !was_offered
                && !matches!(
                    k.as_str(),
                    "MaxRecvDataSegmentLength" | "TargetPortalGroupTag" | "TargetAlias" | "TargetAddress"
                )
            {
                // The target offered a key we did not: accept its value when we understand it.
                let known = matches!(
                    k.as_str(),
                    "MaxBurstLength"
                        | "FirstBurstLength"
                        | "ImmediateData"
                        | "InitialR2T"
                        | "MaxOutstandingR2T"
                        | "DataPDUInOrder"
                        | "DataSequenceInOrder"
                        | "ErrorRecoveryLevel"
                        | "MaxConnections"
                        | "DefaultTime2Wait"
                        | "DefaultTime2Retain"
                        | "HeaderDigest"
                        | "DataDigest"
                );
                reply.push(k.clone(), if known { v.clone() } else { "NotUnderstood".into() });
            }
        }
        reply
    }

    async fn do_login(&mut self, isid: [u8; 6], discovery: bool) -> Result<()> {
        let cfg = self.cfg.clone();
        // Security stage.
        let mut keys = TextPairs::new();
        keys.push("InitiatorName", cfg.initiator_name.clone());
        keys.push("SessionType", if discovery { "Discovery" } else { "Normal" });
        if !discovery {
            keys.push("TargetName", cfg.target_name.clone());
        }
        keys.push("AuthMethod", if cfg.chap.is_some() { "CHAP,None" } else { "None" });
        let transit_now = cfg.chap.is_none();
        let (mut rb, mut rk) = self
            .login_exchange(isid, pdu::login_flags(transit_now, false, stage::SECURITY, stage::OPERATIONAL), &keys)
            .await?;
        if rk.get("AuthMethod") == Some("CHAP") {
            let Some(creds) = cfg.chap.clone() else {
                return Err(InitiatorError::Login("target demands CHAP but no credentials are configured".into()));
            };
            let mut k = TextPairs::new();
            k.push("CHAP_A", "5");
            let (_, ck) = self.login_exchange(isid, pdu::login_flags(false, false, stage::SECURITY, 0), &k).await?;
            if ck.get("CHAP_A") != Some("5") {
                return Err(InitiatorError::Login("target did not choose CHAP MD5".into()));
            }
            let id = ck.get("CHAP_I").and_then(text::parse_number).filter(|n| *n <= 255);
            let ch = ck.get("CHAP_C").and_then(text::decode_binary);
            let (Some(id), Some(ch)) = (id, ch) else {
                return Err(InitiatorError::Login("bad CHAP challenge".into()));
            };
            let r = text::chap_response(id as u8, creds.secret.as_bytes(), &ch);
            let mut k = TextPairs::new();
            k.push("CHAP_N", creds.username.clone()).push("CHAP_R", text::encode_binary(&r));
            (rb, rk) = self
                .login_exchange(isid, pdu::login_flags(true, false, stage::SECURITY, stage::OPERATIONAL), &k)
                .await?;
        }
        let _ = self.apply_answers(&rk, &keys);
        let mut rounds = 0;
        while !(rb.final_bit() && pdu::login_nsg(rb.flags()) >= stage::OPERATIONAL) {
            rounds += 1;
            if rounds > 8 {
                return Err(InitiatorError::Login("target never left the security stage".into()));
            }
            (rb, rk) = self
                .login_exchange(
                    isid,
                    pdu::login_flags(true, false, stage::SECURITY, stage::OPERATIONAL),
                    &TextPairs::new(),
                )
                .await?;
            let _ = self.apply_answers(&rk, &TextPairs::new());
        }
        if pdu::login_nsg(rb.flags()) == stage::OPERATIONAL {
            // Operational stage.
            let mut k = TextPairs::new();
            let digest = |on: bool| if on { "CRC32C,None" } else { "None" };
            k.push("HeaderDigest", digest(cfg.header_digest));
            k.push("DataDigest", digest(cfg.data_digest));
            k.push("MaxRecvDataSegmentLength", cfg.max_recv_data_segment.to_string());
            if !discovery {
                k.push("DefaultTime2Wait", "0").push("DefaultTime2Retain", "0");
                k.push("MaxConnections", "1");
                k.push("InitialR2T", if cfg.initial_r2t { "Yes" } else { "No" });
                k.push("ImmediateData", if cfg.immediate_data { "Yes" } else { "No" });
                k.push("MaxBurstLength", cfg.max_burst_length.to_string());
                k.push("FirstBurstLength", cfg.first_burst_length.to_string());
                k.push("MaxOutstandingR2T", "1");
                k.push("DataPDUInOrder", "Yes").push("DataSequenceInOrder", "Yes");
                k.push("ErrorRecoveryLevel", "0");
            }
            // Defaults hold unless the target answers.
            self.params.initial_r2t = true;
            self.params.immediate_data = cfg.immediate_data;
            (rb, rk) = self
                .login_exchange(isid, pdu::login_flags(true, false, stage::OPERATIONAL, stage::FULL_FEATURE), &k)
                .await?;
            let mut reply = self.apply_answers(&rk, &k);
            let mut rounds = 0;
            while !(rb.final_bit() && pdu::login_nsg(rb.flags()) == stage::FULL_FEATURE) {
                rounds += 1;
                if rounds > 8 {
                    return Err(InitiatorError::Login("operational negotiation did not converge".into()));
                }
                (rb, rk) = self
                    .login_exchange(
                        isid,
                        pdu::login_flags(true, false, stage::OPERATIONAL, stage::FULL_FEATURE),
                        &reply,
                    )
                    .await?;
                reply = self.apply_answers(&rk, &k);
            }
        }
        self.params.first_burst_length = self.params.first_burst_length.min(self.params.max_burst_length);
        self.rx = Framing {
            header_digest: self.params.header_digest,
            data_digest: self.params.data_digest,
            max_recv_data_segment: cfg.max_recv_data_segment as usize,
        };
        self.tx = Framing { max_recv_data_segment: self.params.target_max_recv_data_segment as usize, ..self.rx };
        debug!(tsih = rb.tsih(), params = ?self.params, "iSCSI login complete");
        Ok(())
    }

    /// Room in the CmdSN window for one more command?
    fn window_open(&self) -> bool {
        sn_le(self.cmd_sn, self.max_cmd_sn)
    }

    /// Sends a SCSI command; write data goes as immediate/unsolicited data as negotiated, the
    /// rest when R2Ts arrive. Returns the ITT.
    async fn issue(&mut self, cdb: &[u8; 16], read_len: u32, data: Bytes) -> Result<u32> {
        let itt = self.alloc_itt();
        let write = !data.is_empty();
        let len = data.len();
        let seg = (self.params.target_max_recv_data_segment as usize).max(512);
        let unsolicited_total =
            if write && !self.params.initial_r2t { len.min(self.params.first_burst_length as usize) } else { 0 };
        let imm = if write && self.params.immediate_data {
            len.min(self.params.first_burst_length as usize).min(seg)
        } else {
            0
        };
        let more_unsolicited = unsolicited_total > imm;
        let mut b = Bhs::new(Opcode::ScsiCommand);
        let mut fl = if more_unsolicited { 0 } else { flags::FINAL };
        fl |= 0x01; // SIMPLE task attribute
        if write {
            fl |= flags::WRITE;
        }
        if read_len > 0 {
            fl |= flags::READ;
        }
        b.set_flags(fl).set_lun(self.lun).set_itt(itt);
        b.set_ttt(if write { len as u32 } else { read_len });
        b.set_cmd_sn(self.cmd_sn).set_exp_stat_sn(self.exp_stat_sn);
        b.set_cdb(cdb);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.inflight.insert(itt, Inflight { data: data.clone(), buf: Vec::new(), max_in: read_len as usize });
        pdu::write_pdu(&mut self.wr, &Pdu::with_data(b, data.slice(..imm)), &self.tx).await?;
        if more_unsolicited {
            self.send_data_out(itt, RESERVED_TAG, imm, unsolicited_total, &data).await?;
        }
        self.wr.flush().await?;
        Ok(itt)
    }

    async fn send_data_out(&mut self, itt: u32, ttt: u32, start: usize, end: usize, data: &Bytes) -> Result<()> {
        let seg = (self.params.target_max_recv_data_segment as usize).max(512);
        let mut pos = start;
        let mut sn = 0u32;
        while pos < end {
            let n = seg.min(end - pos);
            let mut b = Bhs::new(Opcode::DataOut);
            b.set_flags(if pos + n == end { flags::FINAL } else { 0 }).set_lun(self.lun).set_itt(itt).set_ttt(ttt);
            b.set_exp_stat_sn(self.exp_stat_sn).set_data_sn(sn).set_buffer_offset(pos as u32);
            pdu::write_pdu(&mut self.wr, &Pdu::with_data(b, data.slice(pos..pos + n)), &self.tx).await?;
            sn = sn.wrapping_add(1);
            pos += n;
        }
        Ok(())
    }

    /// Handles PDUs that are not part of a command's data flow.
    async fn other(&mut self, p: Pdu) -> Result<()> {
        match p.bhs.opcode() {
            Some(Opcode::NopIn) => {
                if p.bhs.ttt() != RESERVED_TAG {
                    let mut b = Bhs::new(Opcode::NopOut);
                    b.set_immediate(true)
                        .set_flags(flags::FINAL)
                        .set_lun(p.bhs.lun())
                        .set_itt(RESERVED_TAG)
                        .set_ttt(p.bhs.ttt());
                    b.set_cmd_sn(self.cmd_sn).set_exp_stat_sn(self.exp_stat_sn);
                    self.send(&Pdu::with_data(b, p.data)).await?;
                }
                Ok(())
            }
            Some(Opcode::Reject) => Err(InitiatorError::Rejected(p.bhs.byte2())),
            Some(Opcode::AsyncMessage) => {
                let event = p.data.len();
                debug!(event, "iSCSI async message");
                // Events 1-4 ask us to log out or announce that the connection is going away.
                match p.bhs.0.get(36).copied() {
                    Some(1..=4) => Err(InitiatorError::Closed),
                    _ => Ok(()),
                }
            }
            _ => Err(InitiatorError::Protocol(format!("unexpected PDU {:?}", p.bhs))),
        }
    }

    /// Reads and handles one PDU; returns the ITT of a command that completed, if any.
    async fn pump(&mut self) -> Result<Option<u32>> {
        let p = self.recv().await?;
        let b = &p.bhs;
        let itt = b.itt();
        match b.opcode() {
            Some(Opcode::ReadyToTransfer) => {
                let Some(inf) = self.inflight.get(&itt) else {
                    return Err(InitiatorError::Protocol("R2T for an unknown task".into()));
                };
                let data = inf.data.clone();
                let (off, len) = (b.buffer_offset() as usize, b.residual() as usize);
                let end = off.checked_add(len).filter(|e| *e <= data.len() && len > 0);
                let Some(end) = end else {
                    return Err(InitiatorError::Protocol("R2T outside the command's data".into()));
                };
                self.send_data_out(itt, b.ttt(), off, end, &data).await?;
                self.wr.flush().await?;
                Ok(None)
            }
            Some(Opcode::DataIn) => {
                let Some(inf) = self.inflight.get_mut(&itt) else {
                    return Err(InitiatorError::Protocol("Data-In for an unknown task".into()));
                };
                if b.buffer_offset() as usize != inf.buf.len() || inf.buf.len() + p.data.len() > inf.max_in {
                    return Err(InitiatorError::Protocol("Data-In out of order or too long".into()));
                }
                inf.buf.extend_from_slice(&p.data);
                if b.flags() & flags::STATUS != 0 {
                    let inf = self.inflight.remove(&itt).map(|i| i.buf).unwrap_or_default();
                    self.done.insert(itt, Completion { status: b.byte3(), sense: None, data: inf });
                    return Ok(Some(itt));
                }
                Ok(None)
            }
            Some(Opcode::ScsiResponse) => {
                let Some(inf) = self.inflight.remove(&itt) else {
                    return Err(InitiatorError::Protocol("SCSI Response for an unknown task".into()));
                };
                let sense = if p.data.len() >= 2 {
                    let n = u16::from_be_bytes([p.data[0], p.data[1]]) as usize;
                    p.data.get(2..2 + n).and_then(Sense::parse)
                } else {
                    None
                };
                let st = if b.byte2() != 0 { 0xff } else { b.byte3() };
                self.done.insert(itt, Completion { status: st, sense, data: inf.buf });
                Ok(Some(itt))
            }
            _ => {
                self.other(p).await?;
                Ok(None)
            }
        }
    }

    /// Runs one command to completion.
    pub async fn command(&mut self, cdb: &[u8; 16], read_len: u32, data: Bytes) -> Result<Completion> {
        while !self.window_open() {
            self.pump().await?;
        }
        let itt = self.issue(cdb, read_len, data).await?;
        loop {
            if let Some(c) = self.done.remove(&itt) {
                return Ok(c);
            }
            self.pump().await?;
        }
    }

    /// READ CAPACITY (16), falling back to (10).
    pub async fn read_capacity(&mut self) -> Result<Capacity> {
        let c = self.command(&scsi::cdb::read_capacity_16(), 32, Bytes::new()).await?;
        if c.status == status::GOOD && c.data.len() >= 12 {
            let mut a = [0u8; 8];
            a.copy_from_slice(&c.data[..8]);
            let bs = u32::from_be_bytes([c.data[8], c.data[9], c.data[10], c.data[11]]);
            return Ok(Capacity { block_size: bs, num_blocks: u64::from_be_bytes(a).saturating_add(1) });
        }
        let c = self.command(&scsi::cdb::read_capacity_10(), 8, Bytes::new()).await?.ok()?;
        if c.data.len() < 8 {
            return Err(InitiatorError::Protocol("short READ CAPACITY data".into()));
        }
        let last = u32::from_be_bytes([c.data[0], c.data[1], c.data[2], c.data[3]]);
        let bs = u32::from_be_bytes([c.data[4], c.data[5], c.data[6], c.data[7]]);
        Ok(Capacity { block_size: bs, num_blocks: u64::from(last) + 1 })
    }

    /// Reads `blocks` blocks at `lba`.
    pub async fn read(&mut self, cap: Capacity, lba: u64, blocks: u32) -> Result<Vec<u8>> {
        let len = u64::from(blocks) * u64::from(cap.block_size);
        let len = u32::try_from(len).map_err(|_| InitiatorError::Protocol("read too large".into()))?;
        Ok(self.command(&scsi::cdb::rw(false, lba, blocks), len, Bytes::new()).await?.ok()?.data)
    }

    /// Writes whole blocks at `lba`.
    pub async fn write(&mut self, lba: u64, block_size: u32, data: Bytes) -> Result<()> {
        let blocks = (data.len() / block_size.max(1) as usize) as u32;
        self.command(&scsi::cdb::rw(true, lba, blocks), 0, data).await?.ok()?;
        Ok(())
    }

    /// SYNCHRONIZE CACHE (10) over the whole disk.
    pub async fn synchronize_cache(&mut self) -> Result<()> {
        self.command(&scsi::cdb::synchronize_cache_10(), 0, Bytes::new()).await?.ok()?;
        Ok(())
    }

    /// Writes everything `src` yields from byte 0 with `queue_depth` WRITEs outstanding. The last
    /// block is zero-padded. Returns (image bytes, crc32c of the image).
    pub async fn write_image<R>(&mut self, cap: Capacity, src: R, progress: Option<ProgressFn>) -> Result<(u64, u32)>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let bs = cap.block_size.max(1) as usize;
        let chunk = (self.cfg.chunk_size as usize / bs).max(1) * bs;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
        // Read ahead of the network in a separate task so disk/HTTP reads overlap sends.
        let reader = tokio::spawn(async move {
            let mut src = src;
            loop {
                let mut buf = BytesMut::zeroed(chunk);
                let mut n = 0;
                while n < chunk {
                    match src.read(&mut buf[n..]).await {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                if n == 0 {
                    return;
                }
                buf.truncate(n);
                if tx.send(Ok(buf.freeze())).await.is_err() || n < chunk {
                    return;
                }
            }
        });
        let res = self.write_loop(cap, &mut rx, progress).await;
        reader.abort();
        res
    }

    async fn write_loop(
        &mut self,
        cap: Capacity,
        rx: &mut tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
        progress: Option<ProgressFn>,
    ) -> Result<(u64, u32)> {
        let bs = cap.block_size.max(1) as usize;
        let depth = self.cfg.queue_depth.max(1);
        let capacity = cap.bytes();
        let mut lba = 0u64;
        let mut image = 0u64;
        let mut crc = 0u32;
        let mut eof = false;
        let mut acked = 0u64;
        let mut sizes: HashMap<u32, u64> = HashMap::new();
        loop {
            while !eof && sizes.len() < depth && self.window_open() {
                let Some(next) = rx.recv().await else {
                    eof = true;
                    break;
                };
                let mut data = next.map_err(InitiatorError::Source)?;
                crc = crc32c::crc32c_append(crc, &data);
                image += data.len() as u64;
                if image > capacity {
                    return Err(InitiatorError::ImageTooLarge { image, capacity });
                }
                let n = data.len() as u64;
                if data.len() % bs != 0 {
                    let mut padded = BytesMut::from(&data[..]);
                    padded.resize(data.len().div_ceil(bs) * bs, 0);
                    data = padded.freeze();
                }
                let blocks = (data.len() / bs) as u32;
                let itt = self.issue(&scsi::cdb::rw(true, lba, blocks), 0, data).await?;
                sizes.insert(itt, n);
                lba += u64::from(blocks);
            }
            if sizes.is_empty() && eof {
                return Ok((image, crc));
            }
            if let Some(itt) = self.pump().await? {
                let c = self.done.remove(&itt);
                let Some(n) = sizes.remove(&itt) else {
                    continue;
                };
                if let Some(c) = c {
                    c.ok()?;
                }
                acked += n;
                if let Some(p) = &progress {
                    p(acked);
                }
            }
        }
    }

    /// Reads back the first `len` bytes with `queue_depth` READs outstanding; returns their crc32c.
    pub async fn checksum(&mut self, cap: Capacity, len: u64) -> Result<u32> {
        let bs = u64::from(cap.block_size.max(1));
        let chunk = (u64::from(self.cfg.chunk_size) / bs).max(1) * bs;
        let depth = self.cfg.queue_depth.max(1);
        let mut next_off = 0u64;
        let mut fold_off = 0u64;
        let mut crc = 0u32;
        let mut pending: HashMap<u32, u64> = HashMap::new();
        let mut ready: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        while fold_off < len {
            while next_off < len && pending.len() + ready.len() < depth && self.window_open() {
                let want = chunk.min(len - next_off);
                let blocks = want.div_ceil(bs);
                let itt = self
                    .issue(&scsi::cdb::rw(false, next_off / bs, blocks as u32), (blocks * bs) as u32, Bytes::new())
                    .await?;
                pending.insert(itt, next_off);
                next_off += want;
            }
            if let Some(itt) = self.pump().await? {
                let Some(off) = pending.remove(&itt) else {
                    continue;
                };
                let c =
                    self.done.remove(&itt).ok_or_else(|| InitiatorError::Protocol("lost completion".into()))?.ok()?;
                ready.insert(off, c.data);
            }
            while let Some(d) = ready.remove(&fold_off) {
                let want = chunk.min(len - fold_off) as usize;
                crc = crc32c::crc32c_append(crc, &d[..want.min(d.len())]);
                fold_off += want as u64;
            }
        }
        Ok(crc)
    }

    /// Logs out (close the session) and shuts the connection down.
    pub async fn logout(mut self) -> Result<()> {
        let itt = self.alloc_itt();
        let mut b = Bhs::new(Opcode::LogoutRequest);
        b.set_immediate(true).set_flags(flags::FINAL).set_itt(itt).set_cid(1);
        b.set_cmd_sn(self.cmd_sn).set_exp_stat_sn(self.exp_stat_sn);
        self.send(&Pdu::new(b)).await?;
        loop {
            let p = self.recv().await?;
            if p.bhs.opcode() == Some(Opcode::LogoutResponse) {
                if p.bhs.byte2() != 0 {
                    return Err(InitiatorError::Protocol(format!("logout response {}", p.bhs.byte2())));
                }
                break;
            }
            if let Err(e) = self.other(p).await {
                debug!(error = %e, "ignoring PDU during logout");
            }
        }
        let _ = self.wr.shutdown().await;
        Ok(())
    }
}

/// What `copy_image` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// Image bytes written (before block padding).
    pub bytes: u64,
    /// CRC32C of the image bytes.
    pub crc32c: u32,
    /// True when the data was read back and matched.
    pub verified: bool,
    pub capacity: Capacity,
}

/// Options for `copy_image`.
#[derive(Clone, Default)]
pub struct CopyOptions {
    /// Read the image back and compare checksums.
    pub verify: bool,
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOptions").field("verify", &self.verify).finish()
    }
}

/// The conductor's whole copy over an already-connected stream: login, READ CAPACITY, pipelined
/// write, SYNCHRONIZE CACHE, optional read-back verification, logout.
pub async fn copy_image_over<S, R>(stream: S, cfg: &InitiatorConfig, src: R, opts: CopyOptions) -> Result<CopyReport>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut s = Session::login(stream, cfg).await?;
    let cap = s.read_capacity().await?;
    let (bytes, crc) = s.write_image(cap, src, opts.progress.clone()).await?;
    s.synchronize_cache().await?;
    let verified = if opts.verify {
        let read = s.checksum(cap, bytes).await?;
        if read != crc {
            return Err(InitiatorError::VerifyMismatch { written: crc, read });
        }
        true
    } else {
        false
    };
    s.logout().await?;
    Ok(CopyReport { bytes, crc32c: crc, verified, capacity: cap })
}

/// `copy_image_over` a new TCP connection to `portal`.
pub async fn copy_image<R>(portal: SocketAddr, cfg: &InitiatorConfig, src: R, opts: CopyOptions) -> Result<CopyReport>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let sock = tokio::time::timeout(cfg.timeout, tokio::net::TcpStream::connect(portal))
        .await
        .map_err(|_| InitiatorError::Timeout(cfg.timeout))??;
    sock.set_nodelay(true)?;
    copy_image_over(sock, cfg, src, opts).await
}

/// An ISID of the "random" format (RFC 7143 10.12.5, type 0x80) with these four random bytes.
pub fn random_isid(random: [u8; 4]) -> [u8; 6] {
    [0x80, 0, random[0], random[1], random[2], random[3]]
}
