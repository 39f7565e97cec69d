//! The iSCSI target the deploy agent runs: serves one disk as LUN 0 over any byte stream (a TCP
//! connection, or a `tokio::io::duplex` pair in simulation).
//!
//! One connection per session, ErrorRecoveryLevel 0: any PDU that breaks the protocol in a way
//! that cannot be answered in place gets a Reject and the connection is dropped, which is the
//! recovery RFC 7143 prescribes at level 0. Per connection: a reader task decodes PDUs into a
//! small queue, this task processes them in order (disk I/O included), and a writer task sends
//! responses, so network reads, disk writes and network writes overlap while memory stays bounded
//! (queue depth x MaxRecvDataSegmentLength).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

use ferric_disk::blockdev::BlockDevice;
use ferric_disk::iscsi::pdu::{self, Bhs, Framing, Opcode, Pdu, PduError, RESERVED_TAG, flags, stage};
use ferric_disk::iscsi::scsi::{self, LunInfo, Plan, Sense, status};
use ferric_disk::iscsi::text::{self, ChapCredentials, SessionParams, TargetLimits, TextPairs};

/// Reject reasons (RFC 7143 §11.17.1).
pub mod reject {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
}

/// Target configuration.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// The target's iSCSI qualified name (TargetName).
    pub iqn: String,
    /// If set, initiators must authenticate with CHAP using these credentials.
    pub chap: Option<ChapCredentials>,
    /// If set, the target answers mutual CHAP with these credentials.
    pub mutual_chap: Option<ChapCredentials>,
    pub limits: TargetLimits,
    /// Concurrent connections (each is one session: MaxConnections is 1).
    pub max_sessions: usize,
    /// CmdSN window: commands an initiator may have outstanding.
    pub max_outstanding_commands: u32,
    /// Unit serial number (VPD page 0x80).
    pub serial: String,
    /// The whole login phase must finish within this.
    pub login_timeout: Duration,
    /// An idle full-feature connection is closed after this.
    pub idle_timeout: Duration,
    pub portal_group_tag: u16,
    /// Seed for CHAP challenges in deterministic simulation; OS entropy when `None`.
    pub rng_seed: Option<u64>,
}

impl TargetConfig {
    pub fn new(iqn: impl Into<String>) -> Self {
        Self {
            iqn: iqn.into(),
            chap: None,
            mutual_chap: None,
            limits: TargetLimits::default(),
            max_sessions: 8,
            max_outstanding_commands: 64,
            serial: "ferric0".into(),
            login_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            portal_group_tag: 1,
            rng_seed: None,
        }
    }
}

/// Why a connection or the target stopped.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("PDU: {0}")]
    Pdu(#[from] PduError),
    #[error("login failed: {0}")]
    Login(String),
    #[error("login timed out")]
    LoginTimeout,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("invalid target configuration: {0}")]
    Config(String),
}

/// A target serving one disk as LUN 0.
pub struct Target {
    cfg: TargetConfig,
    disk: Arc<dyn BlockDevice>,
    info: LunInfo,
    connections: Arc<Semaphore>,
    next_tsih: AtomicU16,
    rng: parking_lot::Mutex<StdRng>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("iqn", &self.cfg.iqn).field("info", &self.info).finish()
    }
}

fn naa_from(s: &str) -> u64 {
    // FNV-1a: a stable identifier derived from the serial number.
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

impl Target {
    pub fn new(cfg: TargetConfig, disk: Arc<dyn BlockDevice>) -> Result<Arc<Self>, TargetError> {
        if cfg.iqn.is_empty() || cfg.iqn.len() > 223 {
            return Err(TargetError::Config("iqn must be 1..=223 bytes".into()));
        }
        if cfg.limits.max_recv_data_segment < 512
            || cfg.limits.max_recv_data_segment as usize > pdu::MAX_DATA_SEGMENT_LEN
        {
            return Err(TargetError::Config("MaxRecvDataSegmentLength out of range".into()));
        }
        let info = LunInfo {
            block_size: disk.block_size(),
            num_blocks: disk.num_blocks(),
            serial: cfg.serial.clone(),
            naa_id: naa_from(&format!("{}/{}", cfg.iqn, cfg.serial)),
        };
        let rng = match cfg.rng_seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => rand::make_rng::<StdRng>(),
        };
        Ok(Arc::new(Self {
            connections: Arc::new(Semaphore::new(cfg.max_sessions.max(1))),
            cfg,
            disk,
            info,
            next_tsih: AtomicU16::new(1),
            rng: parking_lot::Mutex::new(rng),
        }))
    }

    pub fn config(&self) -> &TargetConfig {
        &self.cfg
    }

    /// Accepts connections until `shutdown` fires; each connection runs as its own task and is
    /// stopped with the listener.
    pub async fn serve_listener(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                acc = listener.accept() => match acc {
                    Ok((sock, peer)) => {
                        let _ = sock.set_nodelay(true);
                        let portal = sock.local_addr().ok();
                        let t = self.clone();
                        let stop = shutdown.clone();
                        conns.spawn(async move {
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                r = t.serve_connection(sock, portal) => {
                                    if let Err(e) = r { info!(%peer, error = %e, "iSCSI connection ended"); }
                                }
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "iSCSI accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        conns.shutdown().await;
    }

    /// Serves one connection (login, then full feature phase) until logout or disconnect.
    /// `portal` is the address reported to SendTargets (omitted when `None`).
    pub async fn serve_connection<S>(self: &Arc<Self>, stream: S, portal: Option<SocketAddr>) -> Result<(), TargetError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let mut stream = Box::pin(stream);
        let permit = self.connections.clone().try_acquire_owned().ok();
        let login = {
            let fut = self.login(&mut stream, permit.is_some());
            match tokio::time::timeout(self.cfg.login_timeout, fut).await {
                Ok(r) => r?,
                Err(_) => return Err(TargetError::LoginTimeout),
            }
        };
        let Some(login) = login else { return Ok(()) };
        let (rd, wr) = tokio::io::split(stream);
        let res = self.full_feature(rd, wr, login, portal).await;
        drop(permit);
        res
    }

    fn chap_challenge(&self) -> (u8, [u8; 16]) {
        let mut r = self.rng.lock();
        let mut c = [0u8; 16];
        r.fill_bytes(&mut c);
        let mut id = [0u8; 1];
        r.fill_bytes(&mut id);
        (id[0], c)
    }
}

/// What login settled.
#[derive(Debug)]
struct LoginOutcome {
    params: SessionParams,
    discovery: bool,
    stat_sn: u32,
    exp_cmd_sn: u32,
}

enum Auth {
    /// No authentication agreed yet.
    Start,
    /// AuthMethod=CHAP agreed; waiting for CHAP_A.
    ChapWaitAlgorithm,
    /// Challenge sent; waiting for CHAP_N/CHAP_R.
    ChapWaitResponse {
        id: u8,
        challenge: [u8; 16],
    },
    Done,
}

mod login_status {
    pub const AUTH_FAILURE: (u8, u8) = (0x02, 0x01);
    pub const NOT_FOUND: (u8, u8) = (0x02, 0x03);
    pub const UNSUPPORTED_VERSION: (u8, u8) = (0x02, 0x05);
    pub const MISSING_PARAMETER: (u8, u8) = (0x02, 0x07);
    pub const SESSION_DOES_NOT_EXIST: (u8, u8) = (0x02, 0x0a);
    pub const INVALID_DURING_LOGIN: (u8, u8) = (0x02, 0x0b);
    pub const INITIATOR_ERROR: (u8, u8) = (0x02, 0x00);
    pub const OUT_OF_RESOURCES: (u8, u8) = (0x03, 0x02);
}

impl Target {
    /// Runs the login phase. `Ok(None)`: the initiator went away or was refused (already told).
    async fn login<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        have_slot: bool,
    ) -> Result<Option<LoginOutcome>, TargetError> {
        // During login both sides may send up to 8192 bytes per PDU; be lenient up to 16 KiB.
        let framing = Framing { max_recv_data_segment: 16 * 1024, ..Framing::login() };
        let mut params =
            SessionParams { target_max_recv_data_segment: self.cfg.limits.max_recv_data_segment, ..Default::default() };
        let mut auth = Auth::Start;
        let mut stat_sn: u32 = 1;
        let mut first: Option<Bhs> = None;
        let mut discovery = false;
        let mut csg_now = stage::SECURITY;
        let mut declared = false;
        let mut identity_checked = false;
        let mut pending_text: Vec<u8> = Vec::new();
        let window = self.cfg.max_outstanding_commands.max(1);
        for _round in 0..32 {
            let Some(req) = pdu::read_pdu(io, &framing).await? else {
                return Ok(None);
            };
            let b = &req.bhs;
            let exp_cmd_sn = first.as_ref().map_or(b.cmd_sn(), |f| f.cmd_sn());
            let fail = |st: (u8, u8)| {
                let mut r = Bhs::new(Opcode::LoginResponse);
                r.set_flags(0).set_isid(b.isid()).set_itt(b.itt()).set_stat_sn(stat_sn);
                r.set_exp_cmd_sn(exp_cmd_sn).set_max_cmd_sn(exp_cmd_sn.wrapping_add(window - 1));
                r.set_login_status(st.0, st.1);
                Pdu::new(r)
            };
            macro_rules! refuse {
                ($st:expr, $why:expr) => {{
                    let p = fail($st);
                    pdu::write_pdu(io, &p, &framing).await?;
                    io.flush().await?;
                    debug!(why = %$why, "iSCSI login refused");
                    return Err(TargetError::Login($why.to_string()));
                }};
            }
            if b.opcode() != Some(Opcode::LoginRequest) {
                refuse!(login_status::INVALID_DURING_LOGIN, "non-login PDU during login");
            }
            if !have_slot {
                refuse!(login_status::OUT_OF_RESOURCES, "too many sessions");
            }
            let (vmax, vmin) = (b.byte2(), b.byte3());
            if vmin > 0 || vmax < vmin {
                refuse!(login_status::UNSUPPORTED_VERSION, "unsupported version");
            }
            if let Some(f) = &first {
                if f.isid() != b.isid() || f.itt() != b.itt() {
                    refuse!(login_status::INITIATOR_ERROR, "ISID or ITT changed during login");
                }
            } else {
                if b.tsih() != 0 {
                    // Adding a connection to an existing session: MaxConnections is 1.
                    refuse!(login_status::SESSION_DOES_NOT_EXIST, "no such session");
                }
                first = Some(b.clone());
            }
            let fl = b.flags();
            let transit = fl & flags::FINAL != 0;
            let cont = fl & flags::CONTINUE != 0;
            let csg = pdu::login_csg(fl);
            let nsg = pdu::login_nsg(fl);
            if transit && cont {
                refuse!(login_status::INITIATOR_ERROR, "T and C both set");
            }
            if csg == 2 || (transit && (nsg == 2 || nsg <= csg)) || csg < csg_now {
                refuse!(login_status::INITIATOR_ERROR, "invalid login stage");
            }
            csg_now = csg;
            if pending_text.len() + req.data.len() > text::MAX_TEXT_LEN {
                refuse!(login_status::INITIATOR_ERROR, "login text too long");
            }
            pending_text.extend_from_slice(&req.data);
            let mut resp_flags = pdu::login_flags(false, false, csg, 0);
            let mut out = TextPairs::new();
            if !cont {
                let keys = match TextPairs::parse(&pending_text) {
                    Ok(k) => k,
                    Err(e) => refuse!(login_status::INITIATOR_ERROR, format!("bad login text: {e}")),
                };
                pending_text.clear();
                // Identity keys: once, in the first request.
                if let Some(t) = keys.get("SessionType") {
                    discovery = match t {
                        "Discovery" => true,
                        "Normal" => false,
                        _ => refuse!(login_status::INITIATOR_ERROR, "bad SessionType"),
                    };
                }
                let first_req = !identity_checked;
                identity_checked = true;
                if first_req {
                    if !keys.contains("InitiatorName") {
                        refuse!(login_status::MISSING_PARAMETER, "InitiatorName missing");
                    }
                    if !discovery {
                        match keys.get("TargetName") {
                            None => refuse!(login_status::MISSING_PARAMETER, "TargetName missing"),
                            Some(t) if t != self.cfg.iqn => {
                                refuse!(login_status::NOT_FOUND, "unknown TargetName")
                            }
                            Some(_) => {}
                        }
                        out.push("TargetPortalGroupTag", self.cfg.portal_group_tag.to_string());
                    }
                }
                // Security.
                if csg == stage::SECURITY {
                    if let Some(m) = keys.get("AuthMethod") {
                        let offered: Vec<&str> = m.split(',').map(str::trim).collect();
                        let pick = if self.cfg.chap.is_some() {
                            offered.contains(&"CHAP").then_some("CHAP")
                        } else {
                            offered.contains(&"None").then_some("None")
                        };
                        match pick {
                            Some("CHAP") => {
                                auth = Auth::ChapWaitAlgorithm;
                                out.push("AuthMethod", "CHAP");
                            }
                            Some(p) => {
                                auth = Auth::Done;
                                out.push("AuthMethod", p);
                            }
                            None => refuse!(login_status::AUTH_FAILURE, "no acceptable AuthMethod"),
                        }
                    }
                    match std::mem::replace(&mut auth, Auth::Start) {
                        Auth::ChapWaitAlgorithm if keys.contains("CHAP_A") => {
                            let algs = keys.get("CHAP_A").unwrap_or("");
                            if !algs.split(',').any(|a| a.trim() == "5") {
                                refuse!(login_status::AUTH_FAILURE, "no supported CHAP algorithm");
                            }
                            let (id, challenge) = self.chap_challenge();
                            out.push("CHAP_A", "5")
                                .push("CHAP_I", id.to_string())
                                .push("CHAP_C", text::encode_binary(&challenge));
                            auth = Auth::ChapWaitResponse { id, challenge };
                        }
                        Auth::ChapWaitResponse { id, challenge } if keys.contains("CHAP_R") => {
                            let Some(creds) = &self.cfg.chap else {
                                refuse!(login_status::AUTH_FAILURE, "CHAP not configured")
                            };
                            let name_ok = keys.get("CHAP_N") == Some(creds.username.as_str());
                            let got = keys.get("CHAP_R").and_then(text::decode_binary).unwrap_or_default();
                            let want = text::chap_response(id, creds.secret.as_bytes(), &challenge);
                            if !(name_ok && text::constant_time_eq(&got, &want)) {
                                refuse!(login_status::AUTH_FAILURE, "CHAP authentication failed");
                            }
                            // Mutual CHAP: the initiator challenges us back.
                            if let (Some(i), Some(c)) = (keys.get("CHAP_I"), keys.get("CHAP_C")) {
                                let Some(m) = &self.cfg.mutual_chap else {
                                    refuse!(login_status::AUTH_FAILURE, "mutual CHAP not configured")
                                };
                                let (Some(mid), Some(mc)) =
                                    (text::parse_number(i).filter(|n| *n <= 255), text::decode_binary(c))
                                else {
                                    refuse!(login_status::AUTH_FAILURE, "bad mutual CHAP challenge")
                                };
                                if mc == challenge || mc.is_empty() {
                                    refuse!(login_status::AUTH_FAILURE, "reflected CHAP challenge");
                                }
                                let r = text::chap_response(mid as u8, m.secret.as_bytes(), &mc);
                                out.push("CHAP_N", m.username.clone()).push("CHAP_R", text::encode_binary(&r));
                            }
                            auth = Auth::Done;
                        }
                        // An early T bit is fine: we simply do not transit until CHAP is done.
                        a @ (Auth::ChapWaitAlgorithm | Auth::ChapWaitResponse { .. }) => auth = a,
                        a => auth = a,
                    }
                    if matches!(auth, Auth::Start) && self.cfg.chap.is_none() {
                        auth = Auth::Done;
                    }
                } else if self.cfg.chap.is_some() && !matches!(auth, Auth::Done) {
                    refuse!(login_status::AUTH_FAILURE, "authentication required");
                } else if matches!(auth, Auth::Start) {
                    auth = Auth::Done;
                }
                // Operational keys (answered in whatever stage they arrive).
                for (k, v) in &keys.0 {
                    if let Some(ans) = text::target_answer(k, v, &mut params, &self.cfg.limits, discovery) {
                        out.push(k.clone(), ans);
                    }
                }
                if csg == stage::OPERATIONAL && !declared {
                    out.push("MaxRecvDataSegmentLength", self.cfg.limits.max_recv_data_segment.to_string());
                    declared = true;
                }
                let can_transit = transit && matches!(auth, Auth::Done);
                if can_transit {
                    if nsg == stage::FULL_FEATURE && !declared {
                        out.push("MaxRecvDataSegmentLength", self.cfg.limits.max_recv_data_segment.to_string());
                        declared = true;
                    }
                    resp_flags = pdu::login_flags(true, false, csg, nsg);
                }
            }
            let mut r = Bhs::new(Opcode::LoginResponse);
            r.set_flags(resp_flags).set_isid(b.isid()).set_itt(b.itt()).set_stat_sn(stat_sn);
            r.set_exp_cmd_sn(exp_cmd_sn).set_max_cmd_sn(exp_cmd_sn.wrapping_add(window - 1));
            let done = resp_flags & flags::FINAL != 0 && pdu::login_nsg(resp_flags) == stage::FULL_FEATURE;
            if done {
                let tsih = self.next_tsih.fetch_add(1, Ordering::Relaxed).max(1);
                r.set_tsih(tsih);
            }
            let data = out.encode();
            if data.len() > 8192 {
                refuse!((0x03, 0x00), "login response too long");
            }
            pdu::write_pdu(io, &Pdu::with_data(r, data), &framing).await?;
            io.flush().await?;
            stat_sn = stat_sn.wrapping_add(1);
            if done {
                debug!(discovery, ?params, "iSCSI login complete");
                return Ok(Some(LoginOutcome { params, discovery, stat_sn, exp_cmd_sn }));
            }
        }
        Err(TargetError::Login("too many login round trips".into()))
    }
}

/// A write command waiting for its data.
#[derive(Debug)]
struct WriteTask {
    lun: [u8; 8],
    offset: u64,
    /// Bytes the initiator sends (EDTL).
    len: u64,
    /// Bytes actually written (whole blocks of min(EDTL, SCSI transfer length)).
    write_len: u64,
    /// SCSI transfer length in bytes (residual reporting).
    tl: u64,
    received: u64,
    /// Unsolicited Data-Out PDUs may still follow (the command's F bit was clear).
    unsolicited_open: bool,
    unsolicited_next: u64,
    unsolicited_data_sn: u32,
    /// Next byte offset not yet solicited.
    solicit_next: u64,
    r2t_sn: u32,
    r2ts: VecDeque<R2tState>,
    /// When set the data is discarded and this sense is returned once it has arrived.
    failed: Option<Sense>,
    /// Bytes the command was expected to move (residual reporting).
    edtl: u64,
    /// Force Unit Access: flush before GOOD.
    fua: bool,
}

#[derive(Debug)]
struct R2tState {
    ttt: u32,
    next: u64,
    end: u64,
    data_sn: u32,
}

/// How a connection ends.
enum Next {
    Continue,
    /// Send everything queued, then close.
    Close,
}

struct Conn<'a> {
    t: &'a Target,
    p: SessionParams,
    discovery: bool,
    stat_sn: u32,
    exp_cmd_sn: u32,
    window: u32,
    tasks: HashMap<u32, WriteTask>,
    aborted: VecDeque<u32>,
    next_ttt: u32,
    out: mpsc::Sender<Pdu>,
    portal: Option<SocketAddr>,
}

const MAX_ABORTED_REMEMBERED: usize = 64;
/// Disk reads for Data-In are done in pieces of at most this size.
const READ_CHUNK: u64 = 1 << 20;

fn sn_lt(a: u32, b: u32) -> bool {
    // RFC 1982 serial number arithmetic.
    a != b && b.wrapping_sub(a) < 1 << 31
}

impl Target {
    async fn full_feature<R, W>(
        &self,
        rd: R,
        wr: W,
        login: LoginOutcome,
        portal: Option<SocketAddr>,
    ) -> Result<(), TargetError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let p = login.params.clone();
        let rx_framing = Framing {
            header_digest: p.header_digest,
            data_digest: p.data_digest,
            max_recv_data_segment: self.cfg.limits.max_recv_data_segment as usize,
        };
        let tx_framing = Framing { max_recv_data_segment: p.initiator_max_recv_data_segment as usize, ..rx_framing };
        let (in_tx, mut in_rx) = mpsc::channel::<Result<Pdu, PduError>>(8);
        let (out_tx, mut out_rx) = mpsc::channel::<Pdu>(16);
        let reader = tokio::spawn(async move {
            let mut rd = BufReader::with_capacity(64 * 1024, rd);
            loop {
                match pdu::read_pdu(&mut rd, &rx_framing).await {
                    Ok(Some(p)) => {
                        if in_tx.send(Ok(p)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = in_tx.send(Err(e)).await;
                        break;
                    }
                }
            }
        });
        let writer = tokio::spawn(async move {
            let mut wr = BufWriter::with_capacity(64 * 1024, wr);
            while let Some(p) = out_rx.recv().await {
                pdu::write_pdu(&mut wr, &p, &tx_framing).await?;
                if out_rx.is_empty() {
                    wr.flush().await?;
                }
            }
            wr.flush().await?;
            wr.shutdown().await
        });
        let mut c = Conn {
            t: self,
            p,
            discovery: login.discovery,
            stat_sn: login.stat_sn,
            exp_cmd_sn: login.exp_cmd_sn,
            window: self.cfg.max_outstanding_commands.max(1),
            tasks: HashMap::new(),
            aborted: VecDeque::new(),
            next_ttt: 1,
            out: out_tx,
            portal,
        };
        let result = loop {
            let item = match tokio::time::timeout(self.cfg.idle_timeout, in_rx.recv()).await {
                Ok(Some(i)) => i,
                Ok(None) => break Ok(()),
                Err(_) => break Err(TargetError::Protocol("idle timeout".into())),
            };
            let pdu = match item {
                Ok(p) => p,
                Err(e) => {
                    // Answer what can be answered, then drop the connection (ERL 0).
                    match &e {
                        PduError::DataDigest { bhs } => c.reject(reject::DATA_DIGEST_ERROR, bhs).await,
                        PduError::DataSegmentTooLong { bhs, .. } => c.reject(reject::PROTOCOL_ERROR, bhs).await,
                        _ => {}
                    }
                    break Err(e.into());
                }
            };
            match c.handle(pdu).await {
                Ok(Next::Continue) => {}
                Ok(Next::Close) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(c);
        reader.abort();
        match writer.await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(e)) => debug!(error = %e, "iSCSI writer ended"),
        }
        result
    }
}

impl Conn<'_> {
    fn max_cmd_sn(&self) -> u32 {
        let free = self.window.saturating_sub(self.tasks.len() as u32);
        self.exp_cmd_sn.wrapping_add(free).wrapping_sub(1)
    }

    /// Fills StatSN/ExpCmdSN/MaxCmdSN; `advance` consumes a StatSN.
    fn seal(&mut self, b: &mut Bhs, advance: bool) {
        b.set_stat_sn(self.stat_sn).set_exp_cmd_sn(self.exp_cmd_sn).set_max_cmd_sn(self.max_cmd_sn());
        if advance {
            self.stat_sn = self.stat_sn.wrapping_add(1);
        }
    }

    async fn send(&self, p: Pdu) -> Result<(), TargetError> {
        self.out.send(p).await.map_err(|_| TargetError::Protocol("connection writer gone".into()))
    }

    async fn reject(&mut self, reason: u8, bad: &Bhs) {
        let mut r = Bhs::new(Opcode::Reject);
        r.set_flags(flags::FINAL).set_byte2(reason).set_itt(RESERVED_TAG);
        self.seal(&mut r, true);
        let _ = self.send(Pdu::with_data(r, bad.0.to_vec())).await;
    }

    /// Rejects and closes: the stream can no longer be trusted.
    async fn fatal(&mut self, reason: u8, bad: &Bhs, why: &str) -> Result<Next, TargetError> {
        self.reject(reason, bad).await;
        Err(TargetError::Protocol(why.to_string()))
    }

    /// CmdSN accounting for a non-immediate command. `Ok(false)`: outside the window, ignore.
    fn accept_cmd_sn(&mut self, b: &Bhs) -> Result<bool, ()> {
        if b.immediate() {
            return Ok(true);
        }
        let sn = b.cmd_sn();
        if sn == self.exp_cmd_sn {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
            return Ok(true);
        }
        let max = self.max_cmd_sn();
        if sn_lt(self.exp_cmd_sn, sn) && !sn_lt(max, sn) {
            // Inside the window but with a gap: on one TCP connection that is an initiator bug.
            return Err(());
        }
        Ok(false)
    }

    async fn handle(&mut self, pdu: Pdu) -> Result<Next, TargetError> {
        let b = pdu.bhs.clone();
        trace!(
            op = b.raw_opcode(),
            flags = b.flags(),
            itt = b.itt(),
            ttt = b.ttt(),
            sn = b.cmd_sn(),
            data_sn = b.data_sn(),
            offset = b.buffer_offset(),
            len = pdu.data.len(),
            "PDU in"
        );
        let Some(op) = b.opcode() else {
            self.reject(reject::COMMAND_NOT_SUPPORTED, &b).await;
            return Ok(Next::Continue);
        };
        if self.discovery && !matches!(op, Opcode::TextRequest | Opcode::NopOut | Opcode::LogoutRequest) {
            return self.fatal(reject::PROTOCOL_ERROR, &b, "command in a discovery session").await;
        }
        match op {
            Opcode::ScsiCommand => self.scsi_command(pdu).await,
            Opcode::DataOut => self.data_out(pdu).await,
            Opcode::NopOut => self.nop_out(pdu).await,
            Opcode::TextRequest => self.text(pdu).await,
            Opcode::TaskMgmtRequest => self.task_mgmt(&b).await,
            Opcode::LogoutRequest => self.logout(&b).await,
            Opcode::SnackRequest => {
                // SNACK needs ErrorRecoveryLevel > 0, which we never negotiate.
                self.reject(reject::PROTOCOL_ERROR, &b).await;
                Ok(Next::Continue)
            }
            Opcode::LoginRequest => self.fatal(reject::PROTOCOL_ERROR, &b, "login in full feature phase").await,
            _ => {
                self.reject(reject::COMMAND_NOT_SUPPORTED, &b).await;
                Ok(Next::Continue)
            }
        }
    }

    async fn nop_out(&mut self, pdu: Pdu) -> Result<Next, TargetError> {
        let b = &pdu.bhs;
        if b.itt() == RESERVED_TAG {
            // A reply to a NOP-In we sent, or a ping wanting no answer.
            return Ok(Next::Continue);
        }
        match self.accept_cmd_sn(b) {
            Ok(true) => {}
            Ok(false) => return Ok(Next::Continue),
            Err(()) => return self.fatal(reject::PROTOCOL_ERROR, b, "CmdSN gap").await,
        }
        let mut r = Bhs::new(Opcode::NopIn);
        r.set_flags(flags::FINAL).set_lun(b.lun()).set_itt(b.itt()).set_ttt(RESERVED_TAG);
        self.seal(&mut r, true);
        let n = pdu.data.len().min(self.p.initiator_max_recv_data_segment as usize);
        self.send(Pdu::with_data(r, pdu.data.slice(..n))).await?;
        Ok(Next::Continue)
    }

    async fn text(&mut self, pdu: Pdu) -> Result<Next, TargetError> {
        let b = &pdu.bhs;
        if b.flags() & flags::CONTINUE != 0 || (b.ttt() != RESERVED_TAG) {
            // Multi-PDU text exchanges are never needed for one target and one LUN.
            self.reject(reject::COMMAND_NOT_SUPPORTED, b).await;
            return Ok(Next::Continue);
        }
        match self.accept_cmd_sn(b) {
            Ok(true) => {}
            Ok(false) => return Ok(Next::Continue),
            Err(()) => return self.fatal(reject::PROTOCOL_ERROR, b, "CmdSN gap").await,
        }
        let keys = match TextPairs::parse(&pdu.data) {
            Ok(k) => k,
            Err(_) => {
                self.reject(reject::PROTOCOL_ERROR, b).await;
                return Ok(Next::Continue);
            }
        };
        let mut out = TextPairs::new();
        for (k, v) in &keys.0 {
            if k == "SendTargets" {
                if v == "All" || v == &self.t.cfg.iqn || (v.is_empty() && !self.discovery) {
                    out.push("TargetName", self.t.cfg.iqn.clone());
                    if let Some(a) = self.portal {
                        let addr = match a {
                            SocketAddr::V4(v4) => v4.to_string(),
                            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
                        };
                        out.push("TargetAddress", format!("{addr},{}", self.t.cfg.portal_group_tag));
                    }
                }
            } else {
                out.push(k.clone(), "NotUnderstood");
            }
        }
        let mut r = Bhs::new(Opcode::TextResponse);
        r.set_flags(flags::FINAL).set_lun(b.lun()).set_itt(b.itt()).set_ttt(RESERVED_TAG);
        self.seal(&mut r, true);
        let data = out.encode();
        if data.len() > self.p.initiator_max_recv_data_segment as usize {
            return self.fatal(reject::PROTOCOL_ERROR, b, "text response too long").await;
        }
        self.send(Pdu::with_data(r, data)).await?;
        Ok(Next::Continue)
    }

    async fn logout(&mut self, b: &Bhs) -> Result<Next, TargetError> {
        let reason = b.flags() & 0x7f;
        let _ = self.accept_cmd_sn(b);
        let mut r = Bhs::new(Opcode::LogoutResponse);
        // 0: closed; 2: recovery not supported (ERL 0).
        let response = if reason == 2 { 2 } else { 0 };
        r.set_flags(flags::FINAL).set_byte2(response).set_itt(b.itt()).set_logout_times(0, 0);
        self.tasks.clear();
        self.seal(&mut r, true);
        self.send(Pdu::new(r)).await?;
        Ok(if response == 0 { Next::Close } else { Next::Continue })
    }

    fn forget(&mut self, itt: u32) {
        if self.tasks.remove(&itt).is_some() {
            if self.aborted.len() >= MAX_ABORTED_REMEMBERED {
                self.aborted.pop_front();
            }
            self.aborted.push_back(itt);
        }
    }

    async fn task_mgmt(&mut self, b: &Bhs) -> Result<Next, TargetError> {
        let req_cmd_sn = b.cmd_sn();
        match self.accept_cmd_sn(b) {
            Ok(true) => {}
            Ok(false) => return Ok(Next::Continue),
            Err(()) => return self.fatal(reject::PROTOCOL_ERROR, b, "CmdSN gap").await,
        }
        let function = b.flags() & 0x7f;
        let lun_ok = scsi::lun_number(&b.lun()) == Some(0);
        let mut close = false;
        let response: u8 = match function {
            // ABORT TASK
            1 => {
                let rtt = b.ttt();
                if self.tasks.contains_key(&rtt) {
                    self.forget(rtt);
                    0
                } else {
                    let ref_sn = b.max_cmd_sn();
                    // RFC 7143 §11.6.1 b/c: a task never received (RefCmdSN still inside the
                    // window, before this request) counts as aborted; otherwise it completed
                    // or never existed.
                    let in_window = !sn_lt(ref_sn, self.exp_cmd_sn) && !sn_lt(self.max_cmd_sn(), ref_sn);
                    if in_window && sn_lt(ref_sn, req_cmd_sn) { 0 } else { 1 }
                }
            }
            // ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET
            2 | 4 | 5 => {
                if lun_ok {
                    let itts: Vec<u32> = self.tasks.keys().copied().collect();
                    for i in itts {
                        self.forget(i);
                    }
                    0
                } else {
                    2
                }
            }
            // CLEAR ACA: we never establish ACA.
            3 => 0,
            // TARGET WARM RESET / TARGET COLD RESET
            6 | 7 => {
                let itts: Vec<u32> = self.tasks.keys().copied().collect();
                for i in itts {
                    self.forget(i);
                }
                close = function == 7;
                0
            }
            // TASK REASSIGN needs ERL 2.
            8 => 4,
            _ => 5,
        };
        let mut r = Bhs::new(Opcode::TaskMgmtResponse);
        r.set_flags(flags::FINAL).set_byte2(response).set_itt(b.itt());
        self.seal(&mut r, true);
        self.send(Pdu::new(r)).await?;
        Ok(if close { Next::Close } else { Next::Continue })
    }

    async fn scsi_response(
        &mut self,
        itt: u32,
        sense: Option<Sense>,
        edtl: u64,
        moved: u64,
    ) -> Result<(), TargetError> {
        let mut r = Bhs::new(Opcode::ScsiResponse);
        let mut fl = flags::FINAL;
        if edtl > moved {
            fl |= flags::UNDERFLOW;
            r.set_residual((edtl - moved).min(u64::from(u32::MAX)) as u32);
        } else if moved > edtl {
            fl |= flags::OVERFLOW;
            r.set_residual((moved - edtl).min(u64::from(u32::MAX)) as u32);
        }
        r.set_flags(fl).set_byte2(0).set_itt(itt);
        r.set_byte3(if sense.is_some() { status::CHECK_CONDITION } else { status::GOOD });
        self.seal(&mut r, true);
        let data = match sense {
            Some(s) => {
                let f = s.fixed();
                let mut d = (f.len() as u16).to_be_bytes().to_vec();
                d.extend_from_slice(&f);
                d
            }
            None => Vec::new(),
        };
        self.send(Pdu::with_data(r, data)).await
    }

    /// Sends `data` as Data-In; the last PDU carries GOOD status (phase collapse).
    async fn data_in(
        &mut self,
        itt: u32,
        lun: [u8; 8],
        data: Bytes,
        start_offset: u64,
        data_sn: &mut u32,
        last: Option<(u64, u64)>,
    ) -> Result<(), TargetError> {
        let seg = (self.p.initiator_max_recv_data_segment as usize).max(512);
        let mut pos = 0usize;
        while pos < data.len() {
            let n = seg.min(data.len() - pos);
            let end = pos + n == data.len();
            let mut h = Bhs::new(Opcode::DataIn);
            let mut fl = 0;
            h.set_lun(lun).set_itt(itt).set_ttt(RESERVED_TAG).set_data_sn(*data_sn);
            h.set_buffer_offset((start_offset + pos as u64) as u32);
            let with_status = end && last.is_some();
            if end && let Some((edtl, moved)) = last {
                fl |= flags::FINAL | flags::STATUS;
                if edtl > moved {
                    fl |= flags::UNDERFLOW;
                    h.set_residual((edtl - moved).min(u64::from(u32::MAX)) as u32);
                } else if moved > edtl {
                    fl |= flags::OVERFLOW;
                    h.set_residual((moved - edtl).min(u64::from(u32::MAX)) as u32);
                }
                h.set_byte3(status::GOOD);
            }
            h.set_flags(fl);
            self.seal(&mut h, with_status);
            self.send(Pdu::with_data(h, data.slice(pos..pos + n))).await?;
            *data_sn = data_sn.wrapping_add(1);
            pos += n;
        }
        Ok(())
    }

    async fn scsi_command(&mut self, pdu: Pdu) -> Result<Next, TargetError> {
        let b = pdu.bhs.clone();
        match self.accept_cmd_sn(&b) {
            Ok(true) => {}
            Ok(false) => return Ok(Next::Continue),
            Err(()) => return self.fatal(reject::PROTOCOL_ERROR, &b, "CmdSN gap").await,
        }
        let itt = b.itt();
        let fl = b.flags();
        let write = fl & flags::WRITE != 0;
        let edtl = u64::from(b.expected_data_len());
        let imm = pdu.data.len() as u64;
        if itt == RESERVED_TAG || self.tasks.contains_key(&itt) {
            self.reject(reject::TASK_IN_PROGRESS, &b).await;
            return Ok(Next::Continue);
        }
        if imm > 0 && (!write || !self.p.immediate_data || imm > edtl || imm > u64::from(self.p.first_burst_length)) {
            return self.fatal(reject::PROTOCOL_ERROR, &b, "unexpected immediate data").await;
        }
        if !write && fl & flags::FINAL == 0 {
            return self.fatal(reject::PROTOCOL_ERROR, &b, "unsolicited data for a non-write").await;
        }
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(b.cdb());
        let lun = b.lun();
        let plan = scsi::plan(&cdb, scsi::lun_number(&lun), &self.t.info);
        if write {
            let unsolicited_open = fl & flags::FINAL == 0 && !self.p.initial_r2t;
            if fl & flags::FINAL == 0 && self.p.initial_r2t {
                return self.fatal(reject::PROTOCOL_ERROR, &b, "unsolicited data with InitialR2T=Yes").await;
            }
            let bs = u64::from(self.t.info.block_size.max(1));
            let mut task_fua = false;
            // SCSI transfer length vs iSCSI EDTL: move min(EDTL, TL), report the rest as residual
            // (SAM-5 §5.4.2); a partial block cannot be written.
            let (offset, tl, write_len, failed) = match plan {
                Plan::Write { offset, len, fua } => {
                    task_fua = fua;
                    let w = edtl.min(len);
                    let partial = edtl < len && edtl % bs != 0;
                    (offset, len, w - w % bs, partial.then_some(Sense::INVALID_FIELD_IN_INFORMATION_UNIT))
                }
                Plan::Done { sense: Some(s), .. } => (0, 0, 0, Some(s)),
                // Data sent with a command that takes none: accept and drop it.
                _ => (0, 0, 0, None),
            };
            let mut task = WriteTask {
                lun,
                offset,
                len: edtl,
                write_len,
                tl,
                received: 0,
                unsolicited_open,
                unsolicited_next: imm,
                unsolicited_data_sn: 0,
                solicit_next: imm,
                r2t_sn: 0,
                r2ts: VecDeque::new(),
                failed,
                edtl,
                fua: task_fua,
            };
            if imm > 0 {
                self.store(&mut task, 0, pdu.data).await;
            }
            self.tasks.insert(itt, task);
            return self.progress(itt).await;
        }
        // Not a write (or a write CDB without data: a zero-length write is GOOD).
        match plan {
            Plan::Done { data, sense: None } => {
                let n = data.len() as u64;
                let send = data.len().min(edtl as usize);
                if send == 0 {
                    self.scsi_response(itt, None, edtl, n).await?;
                } else {
                    let mut sn = 0;
                    self.data_in(itt, lun, Bytes::from(data).slice(..send), 0, &mut sn, Some((edtl, n))).await?;
                }
            }
            Plan::Done { sense: Some(s), .. } => self.scsi_response(itt, Some(s), edtl, 0).await?,
            // A write CDB with EDTL 0 transfers nothing: GOOD, the whole length as overflow.
            Plan::Write { len, .. } if edtl == 0 => self.scsi_response(itt, None, 0, len).await?,
            Plan::Write { .. } => self.scsi_response(itt, Some(Sense::DATA_PHASE_ERROR), edtl, 0).await?,
            Plan::Flush => {
                let s = self.t.disk.flush().await.err().map(|e| {
                    warn!(error = %e, "disk flush failed");
                    Sense::WRITE_ERROR
                });
                self.scsi_response(itt, s, edtl, 0).await?;
            }
            Plan::Read { offset, len } => {
                let send = len.min(edtl);
                let mut pos = 0u64;
                let mut sn = 0u32;
                while pos < send {
                    let n = READ_CHUNK.min(send - pos);
                    let data = match self.t.disk.read_at(offset + pos, n as usize).await {
                        Ok(d) => d,
                        Err(e) => {
                            warn!(error = %e, "disk read failed");
                            self.scsi_response(itt, Some(Sense::UNRECOVERED_READ_ERROR), edtl, 0).await?;
                            return Ok(Next::Continue);
                        }
                    };
                    let last = (pos + n == send).then_some((edtl, len));
                    self.data_in(itt, lun, data, pos, &mut sn, last).await?;
                    pos += n;
                }
                if send == 0 {
                    self.scsi_response(itt, None, edtl, len).await?;
                }
            }
        }
        Ok(Next::Continue)
    }

    /// Writes a piece of a task's data (or discards it if the task already failed).
    async fn store(&mut self, task: &mut WriteTask, rel: u64, data: Bytes) {
        task.received += data.len() as u64;
        let end = (rel + data.len() as u64).min(task.write_len);
        if task.failed.is_some() || rel >= end {
            return;
        }
        let data = data.slice(..(end - rel) as usize);
        if let Err(e) = self.t.disk.write_at(task.offset + rel, data).await {
            warn!(error = %e, "disk write failed");
            task.failed = Some(Sense::WRITE_ERROR);
        }
    }

    /// After data arrived: finish the task, or ask for more with R2Ts.
    async fn progress(&mut self, itt: u32) -> Result<Next, TargetError> {
        let max_r2t = self.p.max_outstanding_r2t.max(1) as usize;
        let burst = u64::from(self.p.max_burst_length.max(512));
        let Some(task) = self.tasks.get_mut(&itt) else {
            return Ok(Next::Continue);
        };
        if task.unsolicited_open {
            return Ok(Next::Continue);
        }
        if task.received >= task.len || (task.failed.is_some() && task.r2ts.is_empty()) {
            let t = self.tasks.remove(&itt).map(|t| (t.failed, t.edtl, t.tl, t.fua));
            if let Some((mut failed, edtl, tl, fua)) = t {
                if fua && failed.is_none() && self.t.disk.flush().await.is_err() {
                    failed = Some(Sense::WRITE_ERROR);
                }
                self.scsi_response(itt, failed, edtl, tl).await?;
            }
            return Ok(Next::Continue);
        }
        let mut new = Vec::new();
        while task.r2ts.len() < max_r2t && task.solicit_next < task.len {
            let ttt = self.next_ttt;
            self.next_ttt = self.next_ttt.wrapping_add(1);
            if self.next_ttt == RESERVED_TAG {
                self.next_ttt = 1;
            }
            let start = task.solicit_next;
            let n = burst.min(task.len - start);
            task.solicit_next += n;
            task.r2ts.push_back(R2tState { ttt, next: start, end: start + n, data_sn: 0 });
            let mut r = Bhs::new(Opcode::ReadyToTransfer);
            r.set_flags(flags::FINAL).set_lun(task.lun).set_itt(itt).set_ttt(ttt);
            r.set_data_sn(task.r2t_sn).set_buffer_offset(start as u32).set_residual(n as u32);
            task.r2t_sn = task.r2t_sn.wrapping_add(1);
            new.push(r);
        }
        for mut r in new {
            self.seal(&mut r, false);
            self.send(Pdu::new(r)).await?;
        }
        Ok(Next::Continue)
    }

    async fn data_out(&mut self, pdu: Pdu) -> Result<Next, TargetError> {
        let b = pdu.bhs.clone();
        let itt = b.itt();
        let Some(mut task) = self.tasks.remove(&itt) else {
            if self.aborted.contains(&itt) {
                return Ok(Next::Continue);
            }
            self.reject(reject::INVALID_PDU_FIELD, &b).await;
            return Ok(Next::Continue);
        };
        let off = u64::from(b.buffer_offset());
        let n = pdu.data.len() as u64;
        let ttt = b.ttt();
        let fin = b.final_bit();
        let ok = if ttt == RESERVED_TAG {
            let limit = task.len.min(u64::from(self.p.first_burst_length));
            let good = task.unsolicited_open
                && off == task.unsolicited_next
                && off + n <= limit
                && b.data_sn() == task.unsolicited_data_sn;
            if good {
                task.unsolicited_next += n;
                task.unsolicited_data_sn = task.unsolicited_data_sn.wrapping_add(1);
                task.solicit_next = task.unsolicited_next;
                if fin || task.unsolicited_next == limit {
                    task.unsolicited_open = false;
                }
            }
            good
        } else {
            match task.r2ts.iter_mut().position(|r| r.ttt == ttt) {
                Some(i) => {
                    let r = &mut task.r2ts[i];
                    let good = off == r.next && off + n <= r.end && b.data_sn() == r.data_sn;
                    if good {
                        r.next += n;
                        r.data_sn = r.data_sn.wrapping_add(1);
                        if r.next == r.end {
                            task.r2ts.remove(i);
                        }
                    }
                    good
                }
                None => false,
            }
        };
        if !ok {
            // Reject it; the initiator fails the task on the Reject, so the task is dropped
            // without a SCSI Response and its remaining Data-Out PDUs are discarded.
            debug!(itt, "Data-Out out of sequence: task rejected");
            self.reject(reject::PROTOCOL_ERROR, &b).await;
            self.tasks.insert(itt, task);
            self.forget(itt);
            return Ok(Next::Continue);
        }
        self.store(&mut task, off, pdu.data).await;
        self.tasks.insert(itt, task);
        self.progress(itt).await
    }
}

/// Parameters of IPA's `iscsi.start_iscsi_target` command, plus where to listen.
#[derive(Clone, Debug)]
pub struct StartIscsiTargetParams {
    /// Target IQN; IPA generates `iqn.2008-10.org.openstack:<uuid>` when absent.
    pub iqn: Option<String>,
    /// Portal port (IPA's default 3260).
    pub portal_port: Option<u16>,
    /// Destroy partition tables and filesystem signatures before exposing the disk.
    pub wipe_disk_metadata: bool,
    /// Address to listen on (the agent's provisioning address).
    pub listen_ip: std::net::IpAddr,
    /// Optional CHAP credentials required from the conductor.
    pub chap: Option<ChapCredentials>,
}

/// A running target; dropping it does not stop it, `stop` does.
#[derive(Debug)]
pub struct TargetHandle {
    local_addr: SocketAddr,
    iqn: String,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TargetHandle {
    /// The portal actually listened on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    pub fn iqn(&self) -> &str {
        &self.iqn
    }
    /// Stops accepting, closes every connection and waits for them.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Listens on `addr` and serves `disk` with `cfg` until the handle is stopped.
pub async fn spawn_target(
    cfg: TargetConfig,
    disk: Arc<dyn BlockDevice>,
    addr: SocketAddr,
) -> Result<TargetHandle, TargetError> {
    let iqn = cfg.iqn.clone();
    let target = Target::new(cfg, disk)?;
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(target.serve_listener(listener, cancel.clone()));
    info!(%local_addr, %iqn, "iSCSI target listening");
    Ok(TargetHandle { local_addr, iqn, cancel, task })
}

/// IPA's `iscsi.start_iscsi_target`: optionally wipes the disk's metadata, then exposes it as
/// LUN 0 of a new target. The agent returns `{"iscsi_target_iqn": handle.iqn()}`.
pub async fn start_iscsi_target(
    disk: Arc<dyn BlockDevice>,
    params: StartIscsiTargetParams,
) -> Result<TargetHandle, TargetError> {
    let iqn = params.iqn.clone().unwrap_or_else(|| format!("iqn.2008-10.org.openstack:{}", uuid::Uuid::new_v4()));
    if params.wipe_disk_metadata {
        ferric_disk::blockdev::wipe_metadata(disk.as_ref()).await?;
    }
    let mut cfg = TargetConfig::new(iqn);
    cfg.chap = params.chap.clone();
    cfg.serial = format!("{:016x}", naa_from(&cfg.iqn));
    let addr = SocketAddr::new(params.listen_ip, params.portal_port.unwrap_or(3260));
    spawn_target(cfg, disk, addr).await
}

/// The `ferric-agent iscsi-target` subcommand.
pub mod cli {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::{TargetConfig, spawn_target};
    use ferric_disk::blockdev::FileDisk;
    use ferric_disk::iscsi::text::ChapCredentials;

    /// `ferric-agent iscsi-target --disk PATH --listen ADDR:PORT --iqn IQN`
    #[derive(Debug, clap::Args)]
    pub struct IscsiTargetArgs {
        /// Disk to serve as LUN 0: a regular file or a block device.
        #[arg(long)]
        pub disk: PathBuf,
        /// Portal address to listen on.
        #[arg(long)]
        pub listen: SocketAddr,
        /// Target IQN.
        #[arg(long)]
        pub iqn: String,
        /// Logical block size (default: the device's, 512 for files).
        #[arg(long)]
        pub block_size: Option<u32>,
        /// Require CHAP with this user name (with --chap-secret or FERRIC_CHAP_SECRET).
        #[arg(long, requires = "chap_secret")]
        pub chap_user: Option<String>,
        #[arg(long, env = "FERRIC_CHAP_SECRET", hide_env_values = true)]
        pub chap_secret: Option<String>,
    }

    /// Runs the target until the process is killed (or interrupted).
    pub fn run(args: IscsiTargetArgs) -> anyhow::Result<()> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .with_writer(std::io::stderr)
            .try_init();
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async move {
            let disk = FileDisk::open(&args.disk)?;
            let block_size = args.block_size.unwrap_or(ferric_disk::blockdev::BlockDevice::block_size(&disk));
            let disk = Arc::new(disk.with_block_size(block_size)?.with_early_writeback());
            let mut cfg = TargetConfig::new(args.iqn);
            if let (Some(u), Some(s)) = (args.chap_user, args.chap_secret) {
                cfg.chap = Some(ChapCredentials { username: u, secret: s });
            }
            let handle = spawn_target(cfg, disk, args.listen).await?;
            // Tests wait for this line to know the portal is up.
            println!("listening on {}", handle.local_addr());
            tokio::signal::ctrl_c().await?;
            handle.stop().await;
            Ok(())
        })
    }
}
