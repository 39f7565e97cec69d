//! The virtual BMC: RMCP+ session establishment, session checks and the IPMI commands a
//! provisioning service uses, in front of a [`Machine`].

use super::crypto::{AuthAlg, CipherSuite, ConfAlg, IntegrityAlg, mac_eq};
use super::faults::{BmcStats, Counters, FaultSettings, Faults, inc};
use super::wire::{self, Frame, Protect, Request, V20};
use crate::machine::{BootDevice, BootSelection, Machine, MachineError, PowerState};
use ferric_types::ipmi::boot_option::device;
use ferric_types::ipmi::{app, boot_option, chassis, chassis_control, completion, netfn};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Privilege levels (IPMI v2.0 table 22-28 numbering).
pub const PRIV_CALLBACK: u8 = 1;
pub const PRIV_USER: u8 = 2;
pub const PRIV_OPERATOR: u8 = 3;
pub const PRIV_ADMIN: u8 = 4;

/// RMCP+ status codes (IPMI v2.0 table 13-15) the BMC sends.
pub mod status {
    pub const INSUFFICIENT_RESOURCES: u8 = 0x01;
    pub const INVALID_SESSION_ID: u8 = 0x02;
    pub const INVALID_AUTH_ALG: u8 = 0x04;
    pub const INVALID_INTEGRITY_ALG: u8 = 0x05;
    pub const INVALID_ROLE: u8 = 0x09;
    pub const UNAUTHORIZED_ROLE: u8 = 0x0A;
    pub const INVALID_NAME_LENGTH: u8 = 0x0C;
    pub const UNAUTHORIZED_NAME: u8 = 0x0D;
    pub const INVALID_INTEGRITY_CHECK: u8 = 0x0F;
    pub const INVALID_CONF_ALG: u8 = 0x10;
    pub const NO_CIPHER_SUITE_MATCH: u8 = 0x11;
    pub const ILLEGAL_PARAMETER: u8 = 0x12;
}

/// A password that never shows up in logs or `Debug` output.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Static configuration of one BMC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BmcConfig {
    /// The one administrator account (user ID 2, as on most BMCs).
    pub username: String,
    /// At most 20 bytes (IPMI v2.0 passwords).
    pub password: Password,
    /// Enabled cipher suites, in the order Get Channel Cipher Suites lists them. Suite 0 (no
    /// authentication at all) is accepted only when listed here.
    pub cipher_suites: Vec<u8>,
    /// Concurrent sessions (including ones still in RAKP); more get "insufficient resources".
    pub max_sessions: usize,
    /// A session unused this long is dropped.
    pub session_timeout_secs: u64,
    /// How far ahead of the highest seen sequence number a packet may be (IPMI v2.0 uses 32).
    pub seq_window: u32,
    /// A one-time boot selection is cleared if no Chassis Control follows within this many
    /// seconds, unless a client disabled that via boot option parameter 3 (as Ironic does).
    /// 0 disables the timeout.
    pub boot_flag_timeout_secs: u64,
    /// Seeds session IDs, RAKP random numbers, IVs and the drop-rate RNG: a simulated BMC is
    /// deterministic. (It is a test instrument, not a security boundary.)
    pub seed: u64,
    pub manufacturer_id: u32,
    pub product_id: u16,
}

impl Default for BmcConfig {
    fn default() -> Self {
        Self {
            username: "admin".into(),
            password: Password("password".into()),
            cipher_suites: vec![1, 2, 3, 17],
            max_sessions: 8,
            session_timeout_secs: 60,
            seq_window: 32,
            boot_flag_timeout_secs: 60,
            seed: 0,
            // IANA 0xFFFF: "no enterprise"; ferric is not a vendor.
            manufacturer_id: 0x00_FFFF,
            product_id: 0xFE01,
        }
    }
}

/// Why a BMC configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("username longer than 16 bytes")]
    UsernameTooLong,
    #[error("password longer than 20 bytes")]
    PasswordTooLong,
    #[error("cipher suite {0} is not implemented (supported: 0, 1, 2, 3, 17)")]
    UnknownSuite(u8),
    #[error("no cipher suite enabled")]
    NoSuites,
    #[error("max_sessions must be between 1 and 64")]
    Sessions,
}

impl BmcConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.username.len() > 16 {
            return Err(ConfigError::UsernameTooLong);
        }
        if self.password.0.len() > 20 {
            return Err(ConfigError::PasswordTooLong);
        }
        if self.cipher_suites.is_empty() {
            return Err(ConfigError::NoSuites);
        }
        if let Some(s) = self.cipher_suites.iter().find(|s| CipherSuite::by_id(**s).is_none()) {
            return Err(ConfigError::UnknownSuite(*s));
        }
        if !(1..=64).contains(&self.max_sessions) {
            return Err(ConfigError::Sessions);
        }
        Ok(())
    }
}

/// Where a datagram came from: a UDP peer, or an in-memory link (simulation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    Udp(SocketAddr),
    Link(u64),
}

/// A datagram to send back, after `delay` (the latency knob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Open Session answered; waiting for RAKP 1.
    Opened,
    /// RAKP 2 sent; waiting for RAKP 3.
    Rakp2Sent,
    Active,
}

struct Session {
    console_id: u32,
    suite: CipherSuite,
    max_priv: u8,
    privilege: u8,
    phase: Phase,
    rm: [u8; 16],
    rc: [u8; 16],
    role: u8,
    username: Vec<u8>,
    /// Requests and answers of the setup steps, so a retransmitted Open Session or RAKP 1 (its
    /// answer was lost) gets the same answer instead of a second session or fresh nonces.
    open_req: Vec<u8>,
    open_rsp: Vec<u8>,
    rakp1_req: Vec<u8>,
    rakp2: Vec<u8>,
    rakp3_code: Vec<u8>,
    rakp4: Vec<u8>,
    k1: Vec<u8>,
    k2: Vec<u8>,
    last_used: Instant,
    seq_high: u32,
    seq_seen: u64,
    out_seq: u32,
    /// Last answered state-changing request (rqSeq, netfn, cmd, data), when, and its response
    /// message: a client's retransmission of a Chassis Control whose reply was lost is answered
    /// again rather than executed twice (the spec's use of rqSeq for duplicate detection).
    last: Option<LastRequest>,
}

struct LastRequest {
    key: (u8, u8, u8, Vec<u8>),
    at: Instant,
    response: Vec<u8>,
}

/// How long an unfinished RMCP+ handshake keeps its session slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a state-changing request is remembered for duplicate detection.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10);

fn is_state_changing(netfn: u8, cmd: u8) -> bool {
    netfn == netfn::CHASSIS && matches!(cmd, chassis::CHASSIS_CONTROL | chassis::SET_SYSTEM_BOOT_OPTIONS)
}

#[derive(Debug, Clone, Copy, Default)]
struct BootExtra {
    set_in_progress: u8,
    info_ack: [u8; 2],
    /// Parameter 3: which events do not clear the boot-flags valid bit.
    flag_clearing: u8,
    /// Parameter 5 bytes 2 (non-device bits) and 3..5, kept as set.
    other: [u8; 4],
    one_time_set_at: Option<Instant>,
}

struct State {
    sessions: HashMap<u32, Session>,
    rng: StdRng,
    boot: BootExtra,
}

struct Inner {
    name: String,
    config: BmcConfig,
    guid: [u8; 16],
    machine: Arc<dyn Machine>,
    faults: Arc<Faults>,
    counters: Counters,
    state: Mutex<State>,
}

/// One virtual BMC. Cheap to clone (shared state); serve it on UDP ([`super::serve_udp`]) or
/// over in-memory links ([`Bmc::link`]), or feed it datagrams directly ([`Bmc::on_datagram`]).
#[derive(Clone)]
pub struct Bmc {
    inner: Arc<Inner>,
}

impl fmt::Debug for Bmc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bmc").field("name", &self.inner.name).finish()
    }
}

/// What a command handler wants done after its reply is encoded.
enum After {
    Nothing,
    CloseSession(u32),
}

enum Ctx {
    PreSession,
    Session { id: u32, privilege: u8 },
}

impl Bmc {
    pub fn new(
        name: impl Into<String>,
        config: BmcConfig,
        machine: Arc<dyn Machine>,
        faults: Arc<Faults>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut guid = [0u8; 16];
        rng.fill_bytes(&mut guid);
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.into(),
                guid,
                machine,
                faults,
                counters: Counters::default(),
                state: Mutex::new(State {
                    sessions: HashMap::new(),
                    rng,
                    boot: BootExtra { flag_clearing: 0, ..Default::default() },
                }),
                config,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }
    pub fn config(&self) -> &BmcConfig {
        &self.inner.config
    }
    pub fn machine(&self) -> &Arc<dyn Machine> {
        &self.inner.machine
    }
    /// The live fault knobs (shared handle).
    pub fn faults(&self) -> &Arc<Faults> {
        &self.inner.faults
    }
    pub fn set_faults(&self, s: FaultSettings) {
        self.inner.faults.apply(s)
    }
    pub fn stats(&self) -> BmcStats {
        self.inner.counters.snapshot()
    }
    /// Sessions currently held (any phase), after expiring idle ones.
    pub fn session_count(&self) -> usize {
        let mut st = self.lock();
        self.expire(&mut st);
        st.sessions.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this module; keep serving anyway.
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expire(&self, st: &mut State) {
        let timeout = Duration::from_secs(self.inner.config.session_timeout_secs);
        // A handshake the console abandoned (ipmitool does after a RAKP 2 it cannot verify,
        // i.e. a wrong password) should not hold a session slot for the full idle timeout.
        let pending = timeout.min(HANDSHAKE_TIMEOUT);
        let now = Instant::now();
        let before = st.sessions.len();
        st.sessions.retain(|_, s| {
            let limit = if s.phase == Phase::Active { timeout } else { pending };
            now.saturating_duration_since(s.last_used) < limit
        });
        for _ in st.sessions.len()..before {
            inc(&self.inner.counters.sessions_expired);
        }
    }

    /// The faults' coin: true means "lose this datagram".
    fn lose(&self) -> bool {
        let ppm = self.inner.faults.drop_ppm();
        if ppm == 0 {
            return false;
        }
        let hit = self.lock().rng.random_range(0..1_000_000u32) < ppm;
        if hit {
            inc(&self.inner.counters.packets_dropped);
        }
        hit
    }

    /// Handles one datagram from `peer`, applying the fault knobs: the single entry point every
    /// transport uses, so UDP and in-memory links behave identically.
    pub async fn on_datagram(&self, peer: Peer, packet: &[u8]) -> Option<Reply> {
        let c = &self.inner.counters;
        inc(&c.packets_in);
        if self.inner.faults.unresponsive() {
            inc(&c.packets_ignored);
            return None;
        }
        if self.lose() {
            return None;
        }
        let bytes = self.handle(peer, packet).await;
        let Some(bytes) = bytes else {
            inc(&c.packets_rejected);
            return None;
        };
        if self.lose() {
            return None;
        }
        inc(&c.packets_out);
        Some(Reply { bytes, delay: self.inner.faults.latency() })
    }

    /// Protocol handling without faults: the reply datagram, or `None` to stay silent.
    async fn handle(&self, peer: Peer, packet: &[u8]) -> Option<Vec<u8>> {
        match wire::decode(packet)? {
            Frame::AsfPing { tag } => Some(wire::encode_pong(tag)),
            Frame::V15 { auth_type, session_id, msg, .. } => {
                if auth_type != wire::AUTH_TYPE_NONE || session_id != 0 {
                    return None; // IPMI v1.5 sessions are not offered.
                }
                let rq = wire::parse_request(msg)?;
                let (code, data, _) = self.command(Ctx::PreSession, &rq).await;
                Some(wire::encode_v15(&wire::build_response(&rq, code, &data)))
            }
            Frame::V20(f) => self.handle_v20(peer, f).await,
        }
    }

    async fn handle_v20(&self, _peer: Peer, f: V20<'_>) -> Option<Vec<u8>> {
        if f.session_id == 0 {
            if f.encrypted || f.authenticated {
                return None;
            }
            return match f.payload_type {
                wire::PAYLOAD_OPEN_SESSION_REQ => self.open_session(f.payload),
                wire::PAYLOAD_RAKP1 => self.rakp1(f.payload),
                wire::PAYLOAD_RAKP3 => self.rakp3(f.payload),
                wire::PAYLOAD_IPMI => {
                    let rq = wire::parse_request(f.payload)?;
                    let (code, data, _) = self.command(Ctx::PreSession, &rq).await;
                    let msg = wire::build_response(&rq, code, &data);
                    Some(wire::encode_v20(wire::PAYLOAD_IPMI, 0, 0, &msg, None))
                }
                _ => None,
            };
        }
        if f.payload_type != wire::PAYLOAD_IPMI {
            return None;
        }
        // Authenticate, decrypt and sequence-check under the lock; run the command without it.
        let (plain, id, privilege) = {
            let mut st = self.lock();
            self.expire(&mut st);
            let window = self.inner.config.seq_window;
            let s = st.sessions.get_mut(&f.session_id)?;
            if s.phase != Phase::Active {
                return None;
            }
            let plain = unprotect(s, &f)?;
            if !accept_seq(s, f.seq, window) {
                return None;
            }
            s.last_used = Instant::now();
            (plain, f.session_id, s.privilege)
        };
        let rq = wire::parse_request(&plain)?;
        // Duplicate request (same rqSeq and bytes as the last answered one): replay the answer.
        let key = (rq.rq_seq, rq.netfn, rq.cmd, rq.data.to_vec());
        let cached = if is_state_changing(rq.netfn, rq.cmd) {
            let st = self.lock();
            st.sessions.get(&id).and_then(|s| match &s.last {
                Some(l) if l.key == key && l.at.elapsed() < DUPLICATE_WINDOW => Some(l.response.clone()),
                _ => None,
            })
        } else {
            None
        };
        let (msg, after) = if let Some(rsp) = cached {
            inc(&self.inner.counters.duplicates);
            (rsp, After::Nothing)
        } else {
            inc(&self.inner.counters.commands);
            let (code, data, after) = self.command(Ctx::Session { id, privilege }, &rq).await;
            (wire::build_response(&rq, code, &data), after)
        };
        let mut st = self.lock();
        let mut iv = [0u8; 16];
        st.rng.fill_bytes(&mut iv);
        let s = st.sessions.get_mut(&id)?;
        if is_state_changing(rq.netfn, rq.cmd) {
            s.last = Some(LastRequest { key, at: Instant::now(), response: msg.clone() });
        }
        s.out_seq = s.out_seq.wrapping_add(1).max(1);
        let protect = Protect { integrity: s.suite.integrity, k1: &s.k1, conf: s.suite.conf, k2: &s.k2, iv };
        let out = wire::encode_v20(wire::PAYLOAD_IPMI, s.console_id, s.out_seq, &msg, Some(&protect));
        if let After::CloseSession(target) = after {
            if st.sessions.remove(&target).is_some() {
                inc(&self.inner.counters.sessions_closed);
            }
        }
        Some(out)
    }

    fn open_session(&self, p: &[u8]) -> Option<Vec<u8>> {
        if p.len() < 8 {
            return None;
        }
        let tag = p[0];
        let console_id = [p[4], p[5], p[6], p[7]];
        let fail = |code: u8| {
            let body = [tag, code, 0, 0, console_id[0], console_id[1], console_id[2], console_id[3]];
            Some(wire::encode_v20(wire::PAYLOAD_OPEN_SESSION_RSP, 0, 0, &body, None))
        };
        if p.len() < 32 {
            return fail(status::ILLEGAL_PARAMETER);
        }
        let requested = p[1] & 0x0F;
        let algs = (&p[8..16], &p[16..24], &p[24..32]);
        if algs.0[0] != 0 || algs.1[0] != 1 || algs.2[0] != 2 {
            return fail(status::ILLEGAL_PARAMETER);
        }
        // A zero payload length means "any": take the first enabled suite's choice.
        let enabled: Vec<CipherSuite> =
            self.inner.config.cipher_suites.iter().filter_map(|id| CipherSuite::by_id(*id)).collect();
        let want = |b: &[u8]| if b[3] == 0 { None } else { Some(b[4] & 0x3F) };
        let (wa, wi, wc) = (want(algs.0), want(algs.1), want(algs.2));
        if let Some(a) = wa
            && AuthAlg::from_wire(a).is_none()
        {
            return fail(status::INVALID_AUTH_ALG);
        }
        if let Some(i) = wi
            && IntegrityAlg::from_wire(i).is_none()
        {
            return fail(status::INVALID_INTEGRITY_ALG);
        }
        if let Some(c) = wc
            && ConfAlg::from_wire(c).is_none()
        {
            return fail(status::INVALID_CONF_ALG);
        }
        let Some(suite) = enabled.into_iter().find(|s| {
            wa.is_none_or(|a| a == s.auth.wire())
                && wi.is_none_or(|i| i == s.integrity.wire())
                && wc.is_none_or(|c| c == s.conf.wire())
        }) else {
            return fail(status::NO_CIPHER_SUITE_MATCH);
        };
        let max_priv = match requested {
            0 => PRIV_ADMIN,
            1..=4 => requested,
            _ => return fail(status::INVALID_ROLE),
        };
        let mut st = self.lock();
        self.expire(&mut st);
        if let Some(s) = st.sessions.values().find(|s| s.phase == Phase::Opened && s.open_req == p) {
            return Some(s.open_rsp.clone());
        }
        if st.sessions.len() >= self.inner.config.max_sessions {
            inc(&self.inner.counters.sessions_refused);
            return fail(status::INSUFFICIENT_RESOURCES);
        }
        let id = loop {
            let id = st.rng.next_u32();
            if id != 0 && !st.sessions.contains_key(&id) {
                break id;
            }
        };
        st.sessions.insert(
            id,
            Session {
                console_id: u32::from_le_bytes(console_id),
                suite,
                max_priv,
                privilege: PRIV_USER,
                phase: Phase::Opened,
                rm: [0; 16],
                rc: [0; 16],
                role: 0,
                username: Vec::new(),
                open_req: p.to_vec(),
                open_rsp: Vec::new(),
                rakp1_req: Vec::new(),
                rakp2: Vec::new(),
                rakp3_code: Vec::new(),
                rakp4: Vec::new(),
                k1: Vec::new(),
                k2: Vec::new(),
                last_used: Instant::now(),
                seq_high: 0,
                seq_seen: 0,
                out_seq: 0,
                last: None,
            },
        );
        let mut body = vec![tag, 0, max_priv, 0];
        body.extend_from_slice(&console_id);
        body.extend_from_slice(&id.to_le_bytes());
        body.extend_from_slice(&[0, 0, 0, 8, suite.auth.wire(), 0, 0, 0]);
        body.extend_from_slice(&[1, 0, 0, 8, suite.integrity.wire(), 0, 0, 0]);
        body.extend_from_slice(&[2, 0, 0, 8, suite.conf.wire(), 0, 0, 0]);
        let out = wire::encode_v20(wire::PAYLOAD_OPEN_SESSION_RSP, 0, 0, &body, None);
        if let Some(s) = st.sessions.get_mut(&id) {
            s.open_rsp = out.clone();
        }
        Some(out)
    }

    fn rakp1(&self, p: &[u8]) -> Option<Vec<u8>> {
        if p.len() < 28 {
            return None;
        }
        let tag = p[0];
        let bmc_id = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
        let reply = |code: u8, console: u32| {
            let mut body = vec![tag, code, 0, 0];
            body.extend_from_slice(&console.to_le_bytes());
            Some(wire::encode_v20(wire::PAYLOAD_RAKP2, 0, 0, &body, None))
        };
        let mut st = self.lock();
        self.expire(&mut st);
        let mut rc = [0u8; 16];
        st.rng.fill_bytes(&mut rc);
        let cfg = &self.inner.config;
        let Some(s) = st.sessions.get_mut(&bmc_id) else {
            return reply(status::INVALID_SESSION_ID, 0);
        };
        if s.phase == Phase::Active {
            return reply(status::INVALID_SESSION_ID, 0);
        }
        if s.phase == Phase::Rakp2Sent && s.rakp1_req == p {
            return Some(s.rakp2.clone());
        }
        let console = s.console_id;
        let role = p[24];
        let ulen = p[27] as usize;
        let fail = |st: &mut State, code: u8| {
            st.sessions.remove(&bmc_id);
            inc(&self.inner.counters.auth_failures);
            reply(code, console)
        };
        if ulen > 16 || p.len() < 28 + ulen {
            return fail(&mut st, status::INVALID_NAME_LENGTH);
        }
        let name = &p[28..28 + ulen];
        let priv_req = role & 0x0F;
        if !(1..=4).contains(&priv_req) {
            return fail(&mut st, status::INVALID_ROLE);
        }
        if priv_req > s.max_priv {
            return fail(&mut st, status::UNAUTHORIZED_ROLE);
        }
        if name != cfg.username.as_bytes() {
            tracing::debug!(bmc = %self.inner.name, "RAKP 1 for an unknown user");
            return fail(&mut st, status::UNAUTHORIZED_NAME);
        }
        s.rm.copy_from_slice(&p[8..24]);
        s.rc = rc;
        s.role = role;
        s.username = name.to_vec();
        s.phase = Phase::Rakp2Sent;
        s.last_used = Instant::now();
        let kuid = cfg.password.0.as_bytes();
        let code = s.suite.auth.mac(
            kuid,
            &[
                &console.to_le_bytes(),
                &bmc_id.to_le_bytes(),
                &s.rm,
                &s.rc,
                &self.inner.guid,
                &[s.role, ulen as u8],
                &s.username,
            ],
        );
        let mut body = vec![tag, 0, 0, 0];
        body.extend_from_slice(&console.to_le_bytes());
        body.extend_from_slice(&s.rc);
        body.extend_from_slice(&self.inner.guid);
        body.extend_from_slice(&code);
        let out = wire::encode_v20(wire::PAYLOAD_RAKP2, 0, 0, &body, None);
        s.rakp1_req = p.to_vec();
        s.rakp2 = out.clone();
        Some(out)
    }

    fn rakp3(&self, p: &[u8]) -> Option<Vec<u8>> {
        if p.len() < 8 {
            return None;
        }
        let tag = p[0];
        let client_status = p[1];
        let bmc_id = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
        let reply = |code: u8, console: u32| {
            let mut body = vec![tag, code, 0, 0];
            body.extend_from_slice(&console.to_le_bytes());
            Some(wire::encode_v20(wire::PAYLOAD_RAKP4, 0, 0, &body, None))
        };
        let mut st = self.lock();
        let Some(s) = st.sessions.get_mut(&bmc_id) else {
            return reply(status::INVALID_SESSION_ID, 0);
        };
        let console = s.console_id;
        let got = &p[8..];
        if s.phase == Phase::Active {
            // Retransmitted RAKP 3 (our RAKP 4 was lost): answer the same again.
            if client_status == 0 && mac_eq(got, &s.rakp3_code) {
                return Some(s.rakp4.clone());
            }
            return None;
        }
        if s.phase != Phase::Rakp2Sent {
            return reply(status::INVALID_SESSION_ID, console);
        }
        if client_status != 0 {
            // The console rejected our RAKP 2 (typically: it has another password).
            st.sessions.remove(&bmc_id);
            inc(&self.inner.counters.auth_failures);
            return reply(client_status, console);
        }
        let kuid = self.inner.config.password.0.as_bytes();
        let ulen = [s.role, s.username.len() as u8];
        let expect = s.suite.auth.mac(kuid, &[&s.rc, &console.to_le_bytes(), &ulen, &s.username]);
        if !mac_eq(got, &expect) {
            tracing::debug!(bmc = %self.inner.name, "RAKP 3 with a wrong key exchange code");
            st.sessions.remove(&bmc_id);
            inc(&self.inner.counters.auth_failures);
            return reply(status::INVALID_INTEGRITY_CHECK, console);
        }
        let auth = s.suite.auth;
        let sik = auth.mac(kuid, &[&s.rm, &s.rc, &ulen, &s.username]);
        if auth != AuthAlg::None {
            s.k1 = auth.mac(&sik, &[&[1u8; 20]]);
            s.k2 = auth.mac(&sik, &[&[2u8; 20]]);
        }
        let icv = auth.mac(&sik, &[&s.rm, &bmc_id.to_le_bytes(), &self.inner.guid]);
        let mut body = vec![tag, 0, 0, 0];
        body.extend_from_slice(&console.to_le_bytes());
        body.extend_from_slice(&icv[..auth.icv_len().min(icv.len())]);
        let out = wire::encode_v20(wire::PAYLOAD_RAKP4, 0, 0, &body, None);
        s.phase = Phase::Active;
        s.privilege = (s.role & 0x0F).min(s.max_priv);
        s.rakp3_code = got.to_vec();
        s.rakp4 = out.clone();
        s.last_used = Instant::now();
        inc(&self.inner.counters.sessions_opened);
        Some(out)
    }

    /// Runs one IPMI command: (completion code, response data, follow-up).
    async fn command(&self, ctx: Ctx, rq: &Request<'_>) -> (u8, Vec<u8>, After) {
        let c = &self.inner.counters;
        let pre = matches!(ctx, Ctx::PreSession);
        let privilege = match ctx {
            Ctx::Session { privilege, .. } => privilege,
            Ctx::PreSession => 0,
        };
        let need = |level: u8| -> Option<(u8, Vec<u8>, After)> {
            (privilege < level).then(|| (completion::INSUFFICIENT_PRIVILEGE, Vec::new(), After::Nothing))
        };
        let done = |code: u8, data: Vec<u8>| (code, data, After::Nothing);
        let d = rq.data;
        if !pre && self.inner.faults.busy() && !(rq.netfn == netfn::APP && rq.cmd == app::CLOSE_SESSION) {
            inc(&c.busy_replies);
            return done(completion::NODE_BUSY, Vec::new());
        }
        match (rq.netfn, rq.cmd) {
            // --- App ---
            (netfn::APP, app::GET_CHANNEL_AUTH_CAPABILITIES) => {
                done(completion::OK, self.channel_auth_caps(d).unwrap_or_default()).check_len(d.len() == 2)
            }
            (netfn::APP, app::GET_CHANNEL_CIPHER_SUITES) => self.channel_cipher_suites(d),
            (netfn::APP, app::GET_SYSTEM_GUID) => done(completion::OK, self.inner.guid.to_vec()),
            _ if pre => {
                let known = matches!(
                    (rq.netfn, rq.cmd),
                    (netfn::APP, app::GET_DEVICE_ID | app::SET_SESSION_PRIVILEGE_LEVEL | app::CLOSE_SESSION)
                        | (
                            netfn::CHASSIS,
                            chassis::GET_CHASSIS_STATUS
                                | chassis::CHASSIS_CONTROL
                                | chassis::SET_SYSTEM_BOOT_OPTIONS
                                | chassis::GET_SYSTEM_BOOT_OPTIONS
                        )
                );
                if !known {
                    inc(&c.unknown_commands);
                }
                done(if known { completion::INSUFFICIENT_PRIVILEGE } else { completion::INVALID_COMMAND }, Vec::new())
            }
            (netfn::APP, app::GET_DEVICE_ID) => {
                inc(&c.get_device_id);
                let cfg = &self.inner.config;
                let m = cfg.manufacturer_id.to_le_bytes();
                let p = cfg.product_id.to_le_bytes();
                let mut data = vec![
                    0x20, // device ID
                    0x01, // device revision
                    0x01, // firmware 1 (device available)
                    0x00, // firmware .00 (BCD)
                    0x02, // IPMI 2.0
                    0x80, // chassis device
                    m[0], m[1], m[2], p[0], p[1],
                ];
                data.extend_from_slice(&[0, 0, 0, 0]); // aux firmware revision
                done(completion::OK, data)
            }
            (netfn::APP, app::SET_SESSION_PRIVILEGE_LEVEL) => {
                let Ctx::Session { id, .. } = ctx else {
                    return done(completion::INSUFFICIENT_PRIVILEGE, Vec::new());
                };
                if d.len() != 1 {
                    return done(completion::REQUEST_DATA_LENGTH_INVALID, Vec::new());
                }
                let want = d[0] & 0x0F;
                let mut st = self.lock();
                let Some(s) = st.sessions.get_mut(&id) else {
                    return done(completion::INVALID_SESSION_ID, Vec::new());
                };
                match want {
                    0 => done(completion::OK, vec![s.privilege]),
                    1 => done(completion::INVALID_DATA_FIELD, Vec::new()),
                    2..=4 if want <= s.max_priv => {
                        s.privilege = want;
                        done(completion::OK, vec![want])
                    }
                    2..=4 => done(completion::PRIVILEGE_EXCEEDS_LIMIT, Vec::new()),
                    _ => done(completion::INVALID_DATA_FIELD, Vec::new()),
                }
            }
            (netfn::APP, app::CLOSE_SESSION) => {
                if d.len() != 4 && d.len() != 5 {
                    return done(completion::REQUEST_DATA_LENGTH_INVALID, Vec::new());
                }
                let target = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                let Ctx::Session { id, .. } = ctx else {
                    return done(completion::INSUFFICIENT_PRIVILEGE, Vec::new());
                };
                let target = if target == 0 { id } else { target };
                if target != id && privilege < PRIV_ADMIN {
                    return done(completion::INSUFFICIENT_PRIVILEGE, Vec::new());
                }
                if !self.lock().sessions.contains_key(&target) {
                    return done(completion::INVALID_SESSION_ID, Vec::new());
                }
                (completion::OK, Vec::new(), After::CloseSession(target))
            }
            // --- Chassis ---
            (netfn::CHASSIS, chassis::GET_CHASSIS_STATUS) => {
                if let Some(r) = need(PRIV_USER) {
                    return r;
                }
                inc(&c.get_chassis_status);
                match self.inner.machine.power_state().await {
                    Ok(p) => {
                        let on = u8::from(p == PowerState::On);
                        // Power restore policy "previous state" (01b), last power event by
                        // IPMI command, no chassis faults.
                        done(completion::OK, vec![on | 0x20, 0x10, 0x00])
                    }
                    Err(e) => done(machine_cc(&e), Vec::new()),
                }
            }
            (netfn::CHASSIS, chassis::CHASSIS_CONTROL) => {
                if let Some(r) = need(PRIV_OPERATOR) {
                    return r;
                }
                if d.len() != 1 {
                    return done(completion::REQUEST_DATA_LENGTH_INVALID, Vec::new());
                }
                done(self.chassis_control(d[0] & 0x0F).await, Vec::new())
            }
            (netfn::CHASSIS, chassis::SET_SYSTEM_BOOT_OPTIONS) => {
                if let Some(r) = need(PRIV_OPERATOR) {
                    return r;
                }
                done(self.set_boot_option(d).await, Vec::new())
            }
            (netfn::CHASSIS, chassis::GET_SYSTEM_BOOT_OPTIONS) => {
                if let Some(r) = need(PRIV_USER) {
                    return r;
                }
                match self.get_boot_option(d).await {
                    Ok(data) => done(completion::OK, data),
                    Err(code) => done(code, Vec::new()),
                }
            }
            _ => {
                inc(&c.unknown_commands);
                done(completion::INVALID_COMMAND, Vec::new())
            }
        }
    }

    fn channel_auth_caps(&self, d: &[u8]) -> Option<Vec<u8>> {
        let ch = *d.first()?;
        let v2 = ch & 0x80 != 0;
        let suite0 = self.inner.config.cipher_suites.contains(&0);
        // Byte 1: IPMI v1.5 auth types (only "none" when suite 0 is on) plus the v2.0 flag.
        let types = (u8::from(v2) << 7) | u8::from(suite0);
        // Byte 2: non-null usernames enabled.
        let status = 0x04 | if suite0 { 0x01 } else { 0 };
        // Byte 3: IPMI v2.0 connections supported (v1.5 sessions are not).
        let ext = if v2 { 0x02 } else { 0x00 };
        Some(vec![0x01, types, status, ext, 0, 0, 0, 0])
    }

    fn channel_cipher_suites(&self, d: &[u8]) -> (u8, Vec<u8>, After) {
        if d.len() != 3 {
            return (completion::REQUEST_DATA_LENGTH_INVALID, Vec::new(), After::Nothing);
        }
        if d[1] != 0 {
            // Only the IPMI payload type is described.
            return (completion::INVALID_DATA_FIELD, Vec::new(), After::Nothing);
        }
        let by_suite = d[2] & 0x80 != 0;
        let index = (d[2] & 0x3F) as usize;
        let suites: Vec<CipherSuite> =
            self.inner.config.cipher_suites.iter().filter_map(|i| CipherSuite::by_id(*i)).collect();
        let mut records = Vec::new();
        if by_suite {
            for s in &suites {
                records.extend_from_slice(&[
                    0xC0,
                    s.id,
                    s.auth.wire(),
                    0x40 | s.integrity.wire(),
                    0x80 | s.conf.wire(),
                ]);
            }
        } else {
            let mut seen = Vec::new();
            for s in &suites {
                for b in [s.auth.wire(), 0x40 | s.integrity.wire(), 0x80 | s.conf.wire()] {
                    if !seen.contains(&b) {
                        seen.push(b);
                    }
                }
            }
            records.extend_from_slice(&seen);
        }
        let start = (index * 16).min(records.len());
        let end = (start + 16).min(records.len());
        let mut data = vec![0x01];
        data.extend_from_slice(&records[start..end]);
        (completion::OK, data, After::Nothing)
    }

    async fn chassis_control(&self, action: u8) -> u8 {
        let c = &self.inner.counters;
        let m = &self.inner.machine;
        let counter = match action {
            chassis_control::POWER_DOWN => &c.power_off,
            chassis_control::POWER_UP => &c.power_on,
            chassis_control::POWER_CYCLE => &c.power_cycle,
            chassis_control::HARD_RESET => &c.hard_reset,
            // Nothing to do on a simulated machine.
            chassis_control::DIAGNOSTIC_INTERRUPT => return completion::OK,
            chassis_control::SOFT_SHUTDOWN => &c.soft_off,
            _ => return completion::INVALID_DATA_FIELD,
        };
        inc(counter);
        self.clear_stale_boot_flags().await;
        self.lock().boot.one_time_set_at = None;
        if self.inner.faults.ignore_power() {
            inc(&c.power_ignored);
            return completion::OK;
        }
        let state = match m.power_state().await {
            Ok(s) => s,
            Err(e) => return machine_cc(&e),
        };
        let result = match (action, state) {
            (chassis_control::POWER_DOWN, _) => m.power_off().await,
            (chassis_control::POWER_UP, PowerState::Off) => m.power_on().await,
            (chassis_control::POWER_UP, PowerState::On) => Ok(()),
            // The spec recommends D5h for cycle (and we extend it to reset) while off.
            (chassis_control::POWER_CYCLE | chassis_control::HARD_RESET, PowerState::Off) => {
                return completion::NOT_IN_PRESENT_STATE;
            }
            (chassis_control::POWER_CYCLE, PowerState::On) => m.power_cycle().await,
            (chassis_control::HARD_RESET, PowerState::On) => m.reset().await,
            (chassis_control::SOFT_SHUTDOWN, PowerState::On) => m.soft_off().await,
            (chassis_control::SOFT_SHUTDOWN, PowerState::Off) => Ok(()),
            _ => return completion::INVALID_DATA_FIELD,
        };
        match result {
            Ok(()) => completion::OK,
            Err(e) => machine_cc(&e),
        }
    }

    /// Applies the 60-second rule: a one-time boot selection not followed by Chassis Control
    /// expires, unless parameter 3 bit 3 says otherwise.
    async fn clear_stale_boot_flags(&self) {
        let secs = self.inner.config.boot_flag_timeout_secs;
        if secs == 0 {
            return;
        }
        let expired = {
            let mut st = self.lock();
            let b = &mut st.boot;
            match b.one_time_set_at {
                Some(t)
                    if b.flag_clearing & boot_option::KEEP_VALID_AFTER_TIMEOUT == 0
                        && Instant::now().saturating_duration_since(t) >= Duration::from_secs(secs) =>
                {
                    b.one_time_set_at = None;
                    true
                }
                _ => false,
            }
        };
        if expired {
            let _ = self.inner.machine.set_boot(BootSelection::default()).await;
        }
    }

    async fn set_boot_option(&self, d: &[u8]) -> u8 {
        let Some((&sel, data)) = d.split_first() else {
            return completion::REQUEST_DATA_LENGTH_INVALID;
        };
        let param = sel & 0x7F;
        let len_ok = |n: usize| data.len() == n;
        match param {
            boot_option::SET_IN_PROGRESS => {
                if !len_ok(1) {
                    return completion::REQUEST_DATA_LENGTH_INVALID;
                }
                let mut st = self.lock();
                match data[0] & 0x03 {
                    // Set in progress while another set is in progress: 81h per spec.
                    1 if st.boot.set_in_progress == 1 => completion::BOOT_SET_IN_PROGRESS,
                    v @ (0 | 1) => {
                        st.boot.set_in_progress = v;
                        completion::OK
                    }
                    2 => completion::OK, // commit write: writes are immediate here
                    _ => completion::INVALID_DATA_FIELD,
                }
            }
            boot_option::VALID_BIT_CLEARING => {
                if !len_ok(1) {
                    return completion::REQUEST_DATA_LENGTH_INVALID;
                }
                self.lock().boot.flag_clearing = data[0] & 0x1F;
                completion::OK
            }
            boot_option::BOOT_INFO_ACKNOWLEDGE => {
                if !len_ok(2) {
                    return completion::REQUEST_DATA_LENGTH_INVALID;
                }
                let mut st = self.lock();
                let mask = data[0];
                let ack = &mut st.boot.info_ack;
                ack[1] = (ack[1] & !mask) | (data[1] & mask);
                ack[0] = 0;
                completion::OK
            }
            boot_option::BOOT_FLAGS => {
                if !len_ok(5) {
                    return completion::REQUEST_DATA_LENGTH_INVALID;
                }
                inc(&self.inner.counters.set_boot);
                let valid = data[0] & 0x80 != 0;
                let device = match (data[1] >> 2) & 0x0F {
                    device::NONE => BootDevice::None,
                    device::PXE => BootDevice::Pxe,
                    device::DISK | device::DISK_SAFE_MODE => BootDevice::Disk,
                    device::CDROM => BootDevice::Cdrom,
                    device::BIOS_SETUP => BootDevice::Bios,
                    _ => return completion::INVALID_DATA_FIELD,
                };
                let selection = if valid {
                    BootSelection { device, persistent: data[0] & 0x40 != 0, efi: data[0] & 0x20 != 0 }
                } else {
                    BootSelection::default()
                };
                if let Err(e) = self.inner.machine.set_boot(selection).await {
                    return machine_cc(&e);
                }
                let mut st = self.lock();
                st.boot.other = [data[1] & 0xC3, data[2], data[3], data[4]];
                st.boot.one_time_set_at = (valid && !selection.persistent).then(Instant::now);
                completion::OK
            }
            _ => completion::BOOT_PARAMETER_NOT_SUPPORTED,
        }
    }

    async fn get_boot_option(&self, d: &[u8]) -> Result<Vec<u8>, u8> {
        if d.len() != 3 {
            return Err(completion::REQUEST_DATA_LENGTH_INVALID);
        }
        let param = d[0] & 0x7F;
        let mut out = vec![0x01, param];
        match param {
            boot_option::SET_IN_PROGRESS => out.push(self.lock().boot.set_in_progress),
            boot_option::VALID_BIT_CLEARING => out.push(self.lock().boot.flag_clearing),
            boot_option::BOOT_INFO_ACKNOWLEDGE => out.extend_from_slice(&self.lock().boot.info_ack),
            boot_option::BOOT_FLAGS => {
                inc(&self.inner.counters.get_boot);
                self.clear_stale_boot_flags().await;
                let sel = self.inner.machine.boot().await.map_err(|e| machine_cc(&e))?;
                let other = self.lock().boot.other;
                let dev = match sel.device {
                    BootDevice::None => device::NONE,
                    BootDevice::Pxe => device::PXE,
                    BootDevice::Disk => device::DISK,
                    BootDevice::Cdrom => device::CDROM,
                    BootDevice::Bios => device::BIOS_SETUP,
                };
                let valid = sel.device != BootDevice::None;
                let b0 = (u8::from(valid) << 7) | (u8::from(sel.persistent) << 6) | (u8::from(sel.efi) << 5);
                out.extend_from_slice(&[b0, (dev << 2) | other[0], other[1], other[2], other[3]]);
            }
            _ => return Err(completion::BOOT_PARAMETER_NOT_SUPPORTED),
        }
        Ok(out)
    }
}

trait CheckLen {
    fn check_len(self, ok: bool) -> Self;
}
impl CheckLen for (u8, Vec<u8>, After) {
    fn check_len(self, ok: bool) -> Self {
        if ok { self } else { (completion::REQUEST_DATA_LENGTH_INVALID, Vec::new(), After::Nothing) }
    }
}

fn machine_cc(e: &MachineError) -> u8 {
    match e {
        MachineError::Unresponsive => completion::NODE_BUSY,
        MachineError::Failed(_) | MachineError::Unsupported(_) => completion::UNSPECIFIED,
    }
}

/// Checks the integrity trailer and decrypts: the IPMI message in the clear, or `None`.
fn unprotect(s: &Session, f: &V20<'_>) -> Option<Vec<u8>> {
    let integ = s.suite.integrity;
    if integ != IntegrityAlg::None {
        if !f.authenticated {
            return None;
        }
        let n = integ.code_len();
        let t = f.trailer;
        if t.len() < n + 2 {
            return None;
        }
        let (covered_trailer, code) = t.split_at(t.len() - n);
        let pad_len = covered_trailer[covered_trailer.len() - 2] as usize;
        let next = covered_trailer[covered_trailer.len() - 1];
        if next != 0x07 || pad_len + 2 != covered_trailer.len() {
            return None;
        }
        let span = &f.mac_span[..f.mac_span.len() - n];
        if span.len() % 4 != 0 || !mac_eq(&integ.code(&s.k1, span), code) {
            return None;
        }
    } else if f.authenticated {
        return None;
    }
    match s.suite.conf {
        ConfAlg::AesCbc128 if f.encrypted => super::crypto::decrypt_aes(&s.k2, f.payload),
        ConfAlg::None if !f.encrypted => Some(f.payload.to_vec()),
        _ => None,
    }
}

/// Sliding-window replay check on the console's session sequence numbers.
fn accept_seq(s: &mut Session, seq: u32, window: u32) -> bool {
    if seq == 0 {
        return false;
    }
    if seq > s.seq_high {
        let ahead = seq - s.seq_high;
        if s.seq_high != 0 && ahead > window {
            return false;
        }
        s.seq_seen = if ahead >= 64 { 0 } else { s.seq_seen << ahead };
        s.seq_seen |= 1;
        s.seq_high = seq;
        true
    } else {
        let behind = s.seq_high - seq;
        if behind >= 16 || s.seq_seen & (1 << behind) != 0 {
            return false;
        }
        s.seq_seen |= 1 << behind;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            console_id: 1,
            suite: CipherSuite::by_id(3).unwrap(),
            max_priv: PRIV_ADMIN,
            privilege: PRIV_ADMIN,
            phase: Phase::Active,
            rm: [0; 16],
            rc: [0; 16],
            role: 4,
            username: Vec::new(),
            open_req: Vec::new(),
            open_rsp: Vec::new(),
            rakp1_req: Vec::new(),
            rakp2: Vec::new(),
            rakp3_code: Vec::new(),
            rakp4: Vec::new(),
            k1: Vec::new(),
            k2: Vec::new(),
            last_used: Instant::now(),
            seq_high: 0,
            seq_seen: 0,
            out_seq: 0,
            last: None,
        }
    }

    #[test]
    fn sequence_window() {
        let mut s = session();
        assert!(!accept_seq(&mut s, 0, 32), "0 is never valid in a session");
        assert!(accept_seq(&mut s, 1, 32));
        assert!(!accept_seq(&mut s, 1, 32), "duplicate");
        assert!(accept_seq(&mut s, 3, 32));
        assert!(accept_seq(&mut s, 2, 32), "late but unseen");
        assert!(!accept_seq(&mut s, 2, 32));
        assert!(!accept_seq(&mut s, 3 + 33, 32), "too far ahead");
        assert!(accept_seq(&mut s, 3 + 32, 32));
        assert!(!accept_seq(&mut s, 35 - 16, 32), "too far behind");
        assert!(accept_seq(&mut s, 35 - 15, 32));
    }
}
