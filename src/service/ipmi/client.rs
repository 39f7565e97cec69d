//! The RMCP+ client: one [`IpmiClient`] per BMC keeps a session, serializes commands, spaces
//! them out, and retries within a bounded time. [`IpmiPool`] hands out one client per target.

use super::codec::{self, Incoming, Keys, Suite};
use super::error::IpmiError;
use super::transport::{Connector, Transport};
use ferric_types::ipmi::boot_option::device;
use ferric_types::ipmi::{app, boot_option, chassis, chassis_control, completion, netfn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Session privilege levels a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Privilege {
    Callback = 1,
    User = 2,
    Operator = 3,
    #[default]
    Administrator = 4,
}

impl Privilege {
    /// Ironic's `ipmi_priv_level` spelling (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "CALLBACK" => Some(Self::Callback),
            "USER" => Some(Self::User),
            "OPERATOR" => Some(Self::Operator),
            "ADMINISTRATOR" | "ADMIN" => Some(Self::Administrator),
            _ => None,
        }
    }
}

/// A BMC password; never printed.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Where and how to reach one BMC (Ironic's ipmi driver_info, in typed form).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub address: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
    /// Default 3 (HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128), what every IPMI 2.0 BMC must offer.
    pub cipher_suite: u8,
    pub privilege: Privilege,
}

impl Target {
    pub fn new(address: impl Into<String>, username: impl Into<String>, password: &str) -> Self {
        Self {
            address: address.into(),
            port: 623,
            username: username.into(),
            password: Secret(password.to_owned()),
            cipher_suite: 3,
            privilege: Privilege::Administrator,
        }
    }
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    pub fn with_cipher_suite(mut self, suite: u8) -> Self {
        self.cipher_suite = suite;
        self
    }
    pub fn with_privilege(mut self, p: Privilege) -> Self {
        self.privilege = p;
        self
    }
    fn label(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }
    fn validate(&self) -> Result<Suite, IpmiError> {
        if self.username.len() > 16 {
            return Err(IpmiError::InvalidTarget("user name longer than 16 bytes".into()));
        }
        if self.password.0.len() > 20 {
            return Err(IpmiError::InvalidTarget("password longer than 20 bytes".into()));
        }
        Suite::from_id(self.cipher_suite).ok_or_else(|| {
            IpmiError::InvalidTarget(format!("cipher suite {} not supported (0, 1, 2, 3, 17)", self.cipher_suite))
        })
    }
}

/// Timing policy of a client. Every wait is `tokio::time`, so all of it runs on a paused clock.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Wait for one reply before retrying.
    pub attempt_timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Pause before the first retry; doubles each retry up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Bound on one operation, retries and session setup included.
    pub command_timeout: Duration,
    /// Minimum time between two commands to the same BMC (Ironic's min_command_interval).
    pub min_interval: Duration,
    /// A session idle longer than this is replaced instead of reused (BMCs drop idle sessions,
    /// commonly after 60 s).
    pub session_max_idle: Duration,
    /// Seed for session IDs, nonces and IVs in simulation; `None` draws them from the OS.
    pub rng_seed: Option<u64>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(1),
            retries: 3,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(2),
            command_timeout: Duration::from_secs(15),
            min_interval: Duration::from_millis(100),
            session_max_idle: Duration::from_secs(30),
            rng_seed: None,
        }
    }
}

/// Chassis power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    On,
    Off,
}

/// Chassis Control actions (IPMI v2.0 table 28-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChassisControl {
    PowerDown = chassis_control::POWER_DOWN,
    PowerUp = chassis_control::POWER_UP,
    PowerCycle = chassis_control::POWER_CYCLE,
    HardReset = chassis_control::HARD_RESET,
    /// ACPI soft shutdown.
    SoftOff = chassis_control::SOFT_SHUTDOWN,
}

/// Boot device selector of boot option parameter 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootDevice {
    /// No override.
    None,
    Pxe,
    Disk,
    Cdrom,
    Bios,
    /// Another selector value (4-bit), as read from a BMC.
    Other(u8),
}

impl BootDevice {
    fn selector(self) -> u8 {
        match self {
            Self::None => device::NONE,
            Self::Pxe => device::PXE,
            Self::Disk => device::DISK,
            Self::Cdrom => device::CDROM,
            Self::Bios => device::BIOS_SETUP,
            Self::Other(v) => v & 0x0F,
        }
    }
    fn from_selector(v: u8) -> Self {
        match v & 0x0F {
            device::NONE => Self::None,
            device::PXE => Self::Pxe,
            device::DISK | device::DISK_SAFE_MODE => Self::Disk,
            device::CDROM => Self::Cdrom,
            device::BIOS_SETUP => Self::Bios,
            o => Self::Other(o),
        }
    }
}

/// A boot device override as the BMC holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BootSetting {
    /// The boot-flags valid bit: the override will be applied (BMCs clear it after a one-time
    /// boot; the selector itself may still show the old device, as it does in ipmitool).
    pub valid: bool,
    pub device: BootDevice,
    pub persistent: bool,
    pub efi: bool,
}

/// Get Chassis Status, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChassisStatus {
    pub power: PowerState,
    pub power_overload: bool,
    pub power_interlock: bool,
    pub power_fault: bool,
    pub power_control_fault: bool,
    /// 0 stays off, 1 restores previous state, 2 powers up, 3 unknown.
    pub restore_policy: u8,
    pub last_power_event: u8,
    pub misc: u8,
}

/// Get Device ID, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceId {
    pub device_id: u8,
    pub device_revision: u8,
    pub firmware_major: u8,
    /// BCD-decoded minor revision (0..=99).
    pub firmware_minor: u8,
    /// (major, minor), e.g. (2, 0).
    pub ipmi_version: (u8, u8),
    pub manufacturer_id: u32,
    pub product_id: u16,
    pub device_available: bool,
}

struct Session {
    bmc_id: u32,
    keys: Keys,
    seq: u32,
    last_used: Instant,
    /// Consecutive unanswered requests; two in a row end the session.
    misses: u32,
}

struct State {
    transport: Option<Box<dyn Transport>>,
    session: Option<Session>,
    rng: StdRng,
    tag: u8,
    rq_seq: u8,
    last_command: Option<Instant>,
}

/// A client for one BMC. Commands are serialized (a BMC handles one at a time anyway); the
/// session is kept between commands and rebuilt when it stops answering.
pub struct IpmiClient {
    target: Target,
    label: String,
    config: ClientConfig,
    connector: Arc<dyn Connector>,
    state: Mutex<State>,
}

impl fmt::Debug for IpmiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpmiClient").field("target", &self.label).finish()
    }
}

/// What a failed attempt means for the retry loop.
enum AttemptError {
    /// Nothing valid arrived in time.
    Timeout(&'static str),
    Fatal(IpmiError),
}

impl From<IpmiError> for AttemptError {
    fn from(e: IpmiError) -> Self {
        Self::Fatal(e)
    }
}

impl IpmiClient {
    pub fn new(target: Target, connector: Arc<dyn Connector>, config: ClientConfig) -> Self {
        let rng = match config.rng_seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Self {
            label: target.label(),
            target,
            config,
            connector,
            state: Mutex::new(State { transport: None, session: None, rng, tag: 0, rq_seq: 0, last_command: None }),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    // ----- operations a power/management driver calls -----

    pub async fn chassis_status(&self) -> Result<ChassisStatus, IpmiError> {
        let d = self.command("Get Chassis Status", netfn::CHASSIS, chassis::GET_CHASSIS_STATUS, &[]).await?;
        if d.len() < 3 {
            return Err(self.protocol("Get Chassis Status", "fewer than 3 data bytes"));
        }
        Ok(ChassisStatus {
            power: if d[0] & 1 != 0 { PowerState::On } else { PowerState::Off },
            power_overload: d[0] & 0x02 != 0,
            power_interlock: d[0] & 0x04 != 0,
            power_fault: d[0] & 0x08 != 0,
            power_control_fault: d[0] & 0x10 != 0,
            restore_policy: (d[0] >> 5) & 0x03,
            last_power_event: d[1],
            misc: d[2],
        })
    }

    pub async fn power_state(&self) -> Result<PowerState, IpmiError> {
        Ok(self.chassis_status().await?.power)
    }

    pub async fn chassis_control(&self, action: ChassisControl) -> Result<(), IpmiError> {
        self.command("Chassis Control", netfn::CHASSIS, chassis::CHASSIS_CONTROL, &[action as u8]).await.map(|_| ())
    }
    pub async fn power_on(&self) -> Result<(), IpmiError> {
        self.chassis_control(ChassisControl::PowerUp).await
    }
    pub async fn power_off(&self) -> Result<(), IpmiError> {
        self.chassis_control(ChassisControl::PowerDown).await
    }
    pub async fn power_cycle(&self) -> Result<(), IpmiError> {
        self.chassis_control(ChassisControl::PowerCycle).await
    }
    pub async fn power_reset(&self) -> Result<(), IpmiError> {
        self.chassis_control(ChassisControl::HardReset).await
    }
    pub async fn power_soft(&self) -> Result<(), IpmiError> {
        self.chassis_control(ChassisControl::SoftOff).await
    }

    /// Sets the boot override (parameter 5). First asks the BMC not to drop a one-time setting
    /// after its 60-second timeout (parameter 3, as Ironic does); a BMC without parameter 3 is
    /// fine.
    pub async fn set_boot_device(&self, device: BootDevice, persistent: bool, efi: bool) -> Result<(), IpmiError> {
        const WHAT: &str = "Set System Boot Options";
        let keep_valid = [boot_option::VALID_BIT_CLEARING, boot_option::KEEP_VALID_AFTER_TIMEOUT];
        match self.command(WHAT, netfn::CHASSIS, chassis::SET_SYSTEM_BOOT_OPTIONS, &keep_valid).await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.completion_code(),
                    Some(
                        completion::BOOT_PARAMETER_NOT_SUPPORTED
                            | completion::INVALID_DATA_FIELD
                            | completion::INVALID_COMMAND
                    )
                ) => {}
            Err(e) => return Err(e),
        }
        let flags = 0x80 | (u8::from(persistent) << 6) | (u8::from(efi) << 5);
        let data = [boot_option::BOOT_FLAGS, flags, device.selector() << 2, 0, 0, 0];
        self.command(WHAT, netfn::CHASSIS, chassis::SET_SYSTEM_BOOT_OPTIONS, &data).await.map(|_| ())
    }

    pub async fn get_boot_device(&self) -> Result<BootSetting, IpmiError> {
        const WHAT: &str = "Get System Boot Options";
        let d = self
            .command(WHAT, netfn::CHASSIS, chassis::GET_SYSTEM_BOOT_OPTIONS, &[boot_option::BOOT_FLAGS, 0, 0])
            .await?;
        if d.len() < 4 || d[1] & 0x7F != boot_option::BOOT_FLAGS {
            return Err(self.protocol(WHAT, "short or wrong parameter"));
        }
        let (b0, b1) = (d[2], d[3]);
        let valid = b0 & 0x80 != 0;
        Ok(BootSetting {
            valid,
            device: BootDevice::from_selector(b1 >> 2),
            persistent: b0 & 0x40 != 0,
            efi: b0 & 0x20 != 0,
        })
    }

    pub async fn device_id(&self) -> Result<DeviceId, IpmiError> {
        let d = self.command("Get Device ID", netfn::APP, app::GET_DEVICE_ID, &[]).await?;
        if d.len() < 11 {
            return Err(self.protocol("Get Device ID", "fewer than 11 data bytes"));
        }
        let bcd = |b: u8| (b >> 4) * 10 + (b & 0x0F);
        Ok(DeviceId {
            device_id: d[0],
            device_revision: d[1] & 0x0F,
            firmware_major: d[2] & 0x7F,
            firmware_minor: bcd(d[3]),
            ipmi_version: (d[4] & 0x0F, d[4] >> 4),
            manufacturer_id: u32::from_le_bytes([d[6], d[7], d[8] & 0x0F, 0]),
            product_id: u16::from_le_bytes([d[9], d[10]]),
            device_available: d[2] & 0x80 == 0,
        })
    }

    /// Any command; returns the response data after a zero completion code.
    pub async fn raw(&self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        self.command("raw command", netfn, cmd, data).await
    }

    /// Closes the session, if any (best effort: one attempt, errors ignored).
    pub async fn close(&self) {
        let mut st = self.state.lock().await;
        let Some(s) = st.session.as_ref() else {
            return;
        };
        let id = s.bmc_id.to_le_bytes();
        let rq = st.rq_seq;
        st.rq_seq = (rq + 1) & 0x3F;
        let until = Instant::now() + self.config.attempt_timeout;
        let _ = self.request_in_session(&mut st, netfn::APP, app::CLOSE_SESSION, rq, &id, until).await;
        st.session = None;
    }

    fn protocol(&self, command: &'static str, detail: &str) -> IpmiError {
        IpmiError::Protocol { target: self.label.clone(), command, detail: detail.into() }
    }

    /// Runs one command with retries, backoff, the minimum interval and the overall bound.
    async fn command(&self, what: &'static str, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        let started = tokio::time::Instant::now();
        let r = self.command_counted(what, netfn, cmd, data).await;
        crate::metrics::METRICS.ipmi.observe(started.elapsed(), r.is_ok());
        r
    }

    async fn command_counted(&self, what: &'static str, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        let suite = self.target.validate()?;
        let mut st = self.state.lock().await;
        if let Some(last) = st.last_command {
            let next = last + self.config.min_interval;
            // No timer when the interval has passed: a zero sleep still waits a timer tick.
            if next > Instant::now() {
                tokio::time::sleep_until(next).await;
            }
        }
        let deadline = Instant::now() + self.config.command_timeout;
        // The same rqSeq on every retry lets a BMC recognise a duplicate (IPMI v2.0 5.3).
        let rq_seq = st.rq_seq;
        st.rq_seq = (rq_seq + 1) & 0x3F;
        let mut attempts = 0u32;
        let result = loop {
            attempts += 1;
            let until = (Instant::now() + self.config.attempt_timeout).min(deadline);
            let outcome = self.attempt(&mut st, suite, netfn, cmd, rq_seq, data, until, deadline).await;
            let err = match outcome {
                Ok(rsp) if rsp.completion == completion::OK => break Ok(rsp.data),
                Ok(rsp) => IpmiError::Completion { target: self.label.clone(), command: what, code: rsp.completion },
                Err(AttemptError::Timeout(stage)) => {
                    IpmiError::Timeout { target: self.label.clone(), what: stage, attempts }
                }
                Err(AttemptError::Fatal(e)) => e,
            };
            if !err.is_transient() || attempts > self.config.retries {
                break Err(err);
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(err);
            }
            tracing::debug!(bmc = %self.label, command = what, attempt = attempts, error = %err, "retrying");
            let shift = (attempts - 1).min(16);
            let pause = self.config.backoff.saturating_mul(1 << shift).min(self.config.max_backoff).min(deadline - now);
            tokio::time::sleep(pause).await;
        };
        st.last_command = Some(Instant::now());
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        st: &mut State,
        suite: Suite,
        netfn: u8,
        cmd: u8,
        rq_seq: u8,
        data: &[u8],
        until: Instant,
        deadline: Instant,
    ) -> Result<codec::IpmiResponse, AttemptError> {
        if st.transport.is_none() {
            let t = self
                .connector
                .connect(&self.target.address, self.target.port)
                .await
                .map_err(|source| IpmiError::Unreachable { target: self.label.clone(), source })?;
            st.transport = Some(t);
        }
        let stale = st.session.as_ref().is_some_and(|s| s.last_used.elapsed() > self.config.session_max_idle);
        if stale {
            st.session = None;
        }
        if st.session.is_none() {
            self.establish(st, suite, deadline).await?;
        }
        let until = until.max((Instant::now() + self.config.attempt_timeout).min(deadline));
        self.request_in_session(st, netfn, cmd, rq_seq, data, until).await
    }

    /// Sends one request in the current session and waits for its response.
    async fn request_in_session(
        &self,
        st: &mut State,
        netfn: u8,
        cmd: u8,
        rq_seq: u8,
        data: &[u8],
        until: Instant,
    ) -> Result<codec::IpmiResponse, AttemptError> {
        let mut iv = [0u8; 16];
        st.rng.fill_bytes(&mut iv);
        let State { transport, session, .. } = st;
        let (Some(t), Some(s)) = (transport.as_deref(), session.as_mut()) else {
            return Err(AttemptError::Timeout("a request (no session)"));
        };
        s.seq = s.seq.wrapping_add(1).max(1);
        let msg = codec::ipmi_request(netfn, cmd, rq_seq, data);
        let pkt = codec::v20_packet(codec::PT_IPMI, s.bmc_id, s.seq, &msg, Some(&s.keys), iv);
        let keys = s.keys.clone();
        let result = self
            .exchange(t, &pkt, until, "a request", |inc| match inc {
                Incoming::V20 {
                    payload_type: codec::PT_IPMI,
                    encrypted,
                    authenticated,
                    payload,
                    trailer,
                    covered,
                    ..
                } => {
                    let m = codec::open_payload(&keys, encrypted, authenticated, &payload, &trailer, &covered)?;
                    let r = codec::parse_ipmi_response(&m)?;
                    (r.rq_seq == rq_seq && r.cmd == cmd && r.netfn == (netfn | 1)).then_some(r)
                }
                _ => None,
            })
            .await;
        match &result {
            Ok(_) => {
                s.misses = 0;
                s.last_used = Instant::now();
            }
            Err(AttemptError::Timeout(_)) => {
                s.misses += 1;
                if s.misses >= 2 {
                    *session = None;
                }
            }
            Err(AttemptError::Fatal(IpmiError::Unreachable { .. })) => {
                *session = None;
                *transport = None;
            }
            Err(_) => {}
        }
        result
    }

    /// Sends `packet`, then reads datagrams until `accept` takes one or `until` passes.
    async fn exchange<T>(
        &self,
        t: &dyn Transport,
        packet: &[u8],
        until: Instant,
        stage: &'static str,
        mut accept: impl FnMut(Incoming) -> Option<T>,
    ) -> Result<T, AttemptError> {
        let unreachable = |source| AttemptError::Fatal(IpmiError::Unreachable { target: self.label.clone(), source });
        t.send(packet).await.map_err(unreachable)?;
        loop {
            let dg = match tokio::time::timeout_at(until, t.recv()).await {
                Err(_) => return Err(AttemptError::Timeout(stage)),
                Ok(Err(e)) => return Err(unreachable(e)),
                Ok(Ok(d)) => d,
            };
            // Late answers to earlier attempts and garbage are skipped, not errors.
            if let Some(v) = codec::parse_incoming(&dg).and_then(&mut accept) {
                return Ok(v);
            }
        }
    }

    /// [`Self::exchange`] with retransmissions: each try waits `attempt_timeout`, up to
    /// `retries` more tries, never past `deadline`. Used for the session-setup steps, which the
    /// BMC answers idempotently.
    async fn exchange_retry<T>(
        &self,
        t: &dyn Transport,
        packet: &[u8],
        deadline: Instant,
        stage: &'static str,
        mut accept: impl FnMut(Incoming) -> Option<T>,
    ) -> Result<T, AttemptError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let until = (Instant::now() + self.config.attempt_timeout).min(deadline);
            match self.exchange(t, packet, until, stage, &mut accept).await {
                Err(AttemptError::Timeout(_)) if tries <= self.config.retries && Instant::now() < deadline => {
                    tracing::debug!(bmc = %self.label, stage, "retransmitting");
                }
                r => return r,
            }
        }
    }

    /// RMCP+ session establishment: channel auth capabilities, Open Session, RAKP 1-4, then the
    /// session privilege level.
    async fn establish(&self, st: &mut State, suite: Suite, deadline: Instant) -> Result<(), AttemptError> {
        let target = &self.target;
        let label = || self.label.clone();
        let privilege = target.privilege as u8;
        let mut rnd = [0u8; 36];
        st.rng.fill_bytes(&mut rnd);
        let console_id = u32::from_le_bytes([rnd[0], rnd[1], rnd[2], rnd[3]]).max(1);
        let rm: [u8; 16] = rnd[4..20].try_into().unwrap_or([7; 16]);
        let iv: [u8; 16] = rnd[20..36].try_into().unwrap_or([0; 16]);
        st.tag = st.tag.wrapping_add(1);
        let tag = st.tag;
        let Some(t) = st.transport.as_deref() else {
            return Err(AttemptError::Timeout("session setup"));
        };

        // 1. Get Channel Authentication Capabilities, IPMI v1.5 framing (as ipmitool sends it).
        // Asked first with the "IPMI v2.0 data" bit; some older BMCs refuse that bit with a
        // completion code, so ask once more without it (as ipmitool does).
        let mut caps = None;
        for channel in [0x8E, 0x0E] {
            let msg = codec::ipmi_request(netfn::APP, app::GET_CHANNEL_AUTH_CAPABILITIES, 0, &[channel, privilege]);
            let r = self
                .exchange_retry(
                    t,
                    &codec::v15_packet(&msg),
                    deadline,
                    "Get Channel Authentication Capabilities",
                    |inc| match inc {
                        Incoming::V15 { msg } => {
                            codec::parse_ipmi_response(&msg).filter(|r| r.cmd == app::GET_CHANNEL_AUTH_CAPABILITIES)
                        }
                        _ => None,
                    },
                )
                .await?;
            let done = r.completion == completion::OK;
            caps = Some(r);
            if done {
                break;
            }
        }
        let Some(caps) = caps else {
            return Err(AttemptError::Timeout("Get Channel Authentication Capabilities"));
        };
        if caps.completion != completion::OK {
            return Err(IpmiError::Completion {
                target: label(),
                command: "Get Channel Authentication Capabilities",
                code: caps.completion,
            }
            .into());
        }
        if caps.data.len() >= 4 && caps.data[1] & 0x80 != 0 && caps.data[3] & 0x02 == 0 {
            return Err(self
                .protocol("Get Channel Authentication Capabilities", "BMC does not support IPMI v2.0 (RMCP+)")
                .into());
        }

        // 2. Open Session.
        let mut p = vec![tag, privilege, 0, 0];
        p.extend_from_slice(&console_id.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0, 8, suite.auth, 0, 0, 0]);
        p.extend_from_slice(&[1, 0, 0, 8, suite.integrity, 0, 0, 0]);
        p.extend_from_slice(&[2, 0, 0, 8, suite.confidentiality, 0, 0, 0]);
        let pkt = codec::v20_packet(codec::PT_OPEN_REQ, 0, 0, &p, None, iv);
        let rsp = self
            .exchange_retry(t, &pkt, deadline, "Open Session", |inc| match inc {
                Incoming::V20 { payload_type: codec::PT_OPEN_RSP, payload, .. }
                    if payload.len() >= 2 && payload[0] == tag =>
                {
                    Some(payload)
                }
                _ => None,
            })
            .await?;
        if rsp[1] != 0 {
            return Err(IpmiError::SessionRefused { target: label(), status: rsp[1] }.into());
        }
        if rsp.len() < 36 || rsp[4..8] != console_id.to_le_bytes() {
            return Err(self.protocol("Open Session", "short response or wrong console session ID").into());
        }
        if rsp[16] & 0x3F != suite.auth || rsp[24] & 0x3F != suite.integrity || rsp[32] & 0x3F != suite.confidentiality
        {
            return Err(self.protocol("Open Session", "BMC chose other algorithms than proposed").into());
        }
        let bmc_id = u32::from_le_bytes([rsp[8], rsp[9], rsp[10], rsp[11]]);

        // 3. RAKP 1 / RAKP 2.
        let role = 0x10 | privilege; // name-only lookup
        let user = target.username.as_bytes();
        let mut p = vec![tag, 0, 0, 0];
        p.extend_from_slice(&bmc_id.to_le_bytes());
        p.extend_from_slice(&rm);
        p.extend_from_slice(&[role, 0, 0, user.len() as u8]);
        p.extend_from_slice(user);
        let pkt = codec::v20_packet(codec::PT_RAKP1, 0, 0, &p, None, iv);
        let r2 = self
            .exchange_retry(t, &pkt, deadline, "RAKP 1", |inc| match inc {
                Incoming::V20 { payload_type: codec::PT_RAKP2, payload, .. }
                    if payload.len() >= 2 && payload[0] == tag =>
                {
                    Some(payload)
                }
                _ => None,
            })
            .await?;
        let auth_failed = |stage, status| AttemptError::Fatal(IpmiError::AuthFailed { target: label(), stage, status });
        if r2[1] != 0 {
            return Err(auth_failed("RAKP 2", r2[1]));
        }
        if r2.len() < 40 || r2[4..8] != console_id.to_le_bytes() {
            return Err(self.protocol("RAKP 1", "short RAKP 2 or wrong console session ID").into());
        }
        let rc = &r2[8..24];
        let guid = &r2[24..40];
        let kuid = target.password.0.as_bytes();
        let ulen = [role, user.len() as u8];
        let mut m = Vec::with_capacity(80);
        m.extend_from_slice(&console_id.to_le_bytes());
        m.extend_from_slice(&bmc_id.to_le_bytes());
        m.extend_from_slice(&rm);
        m.extend_from_slice(rc);
        m.extend_from_slice(guid);
        m.extend_from_slice(&ulen);
        m.extend_from_slice(user);
        if !codec::same(&suite.rakp_hmac(kuid, &m), &r2[40..]) {
            // Tell the BMC (RAKP 3 with an error status) so it frees the session at once.
            let mut p = vec![tag, 0x0F, 0, 0];
            p.extend_from_slice(&bmc_id.to_le_bytes());
            let _ = t.send(&codec::v20_packet(codec::PT_RAKP3, 0, 0, &p, None, iv)).await;
            return Err(auth_failed("RAKP 2", 0x0F));
        }

        // 4. RAKP 3 / RAKP 4.
        let mut m = rc.to_vec();
        m.extend_from_slice(&console_id.to_le_bytes());
        m.extend_from_slice(&ulen);
        m.extend_from_slice(user);
        let mut p = vec![tag, 0, 0, 0];
        p.extend_from_slice(&bmc_id.to_le_bytes());
        p.extend_from_slice(&suite.rakp_hmac(kuid, &m));
        let mut sik_input = rm.to_vec();
        sik_input.extend_from_slice(rc);
        sik_input.extend_from_slice(&ulen);
        sik_input.extend_from_slice(user);
        let sik = suite.rakp_hmac(kuid, &sik_input);
        let mut icv_input = rm.to_vec();
        icv_input.extend_from_slice(&bmc_id.to_le_bytes());
        icv_input.extend_from_slice(guid);
        let icv = suite.rakp_hmac(&sik, &icv_input);
        let pkt = codec::v20_packet(codec::PT_RAKP3, 0, 0, &p, None, iv);
        let r4 = self
            .exchange_retry(t, &pkt, deadline, "RAKP 3", |inc| match inc {
                Incoming::V20 { payload_type: codec::PT_RAKP4, payload, .. }
                    if payload.len() >= 2 && payload[0] == tag =>
                {
                    Some(payload)
                }
                _ => None,
            })
            .await?;
        if r4[1] != 0 {
            return Err(auth_failed("RAKP 4", r4[1]));
        }
        let n = suite.icv_len();
        if r4.len() < 8 + n || r4[4..8] != console_id.to_le_bytes() {
            return Err(self.protocol("RAKP 3", "short RAKP 4 or wrong console session ID").into());
        }
        if !codec::same(icv.get(..n).unwrap_or_default(), &r4[8..8 + n]) {
            return Err(auth_failed("RAKP 4", 0x0F));
        }
        let keys = Keys { suite, k1: suite.rakp_hmac(&sik, &[1u8; 20]), k2: suite.rakp_hmac(&sik, &[2u8; 20]) };
        st.session = Some(Session { bmc_id, keys, seq: 0, last_used: Instant::now(), misses: 0 });

        // 5. Sessions start below the requested maximum on many BMCs: ask for it.
        if target.privilege > Privilege::User {
            let rq = st.rq_seq;
            st.rq_seq = (rq + 1) & 0x3F;
            let mut tries = 0;
            let r = loop {
                tries += 1;
                let until = (Instant::now() + self.config.attempt_timeout).min(deadline);
                match self
                    .request_in_session(st, netfn::APP, app::SET_SESSION_PRIVILEGE_LEVEL, rq, &[privilege], until)
                    .await
                {
                    Ok(r) => break r,
                    Err(AttemptError::Timeout(_))
                        if tries <= self.config.retries && st.session.is_some() && Instant::now() < deadline => {}
                    Err(e) => {
                        st.session = None;
                        return Err(e);
                    }
                }
            };
            if r.completion != completion::OK {
                st.session = None;
                return Err(IpmiError::Completion {
                    target: label(),
                    command: "Set Session Privilege Level",
                    code: r.completion,
                }
                .into());
            }
        }
        tracing::debug!(bmc = %self.label, suite = target.cipher_suite, "RMCP+ session established");
        Ok(())
    }
}

/// One client per target, so sessions are reused across driver calls; bounded, least recently
/// used targets are evicted (their sessions simply time out on the BMC).
pub struct IpmiPool {
    connector: Arc<dyn Connector>,
    config: ClientConfig,
    capacity: usize,
    clients: std::sync::Mutex<HashMap<Target, (Arc<IpmiClient>, u64)>>,
    clock: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for IpmiPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpmiPool").field("capacity", &self.capacity).finish()
    }
}

impl IpmiPool {
    pub fn new(connector: Arc<dyn Connector>, config: ClientConfig, capacity: usize) -> Self {
        Self {
            connector,
            config,
            capacity: capacity.max(1),
            clients: std::sync::Mutex::new(HashMap::new()),
            clock: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The client for `target` (same address, port, credentials, suite and privilege share one).
    pub fn client(&self, target: &Target) -> Arc<IpmiClient> {
        let tick = self.clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((c, used)) = map.get_mut(target) {
            *used = tick;
            return c.clone();
        }
        if map.len() >= self.capacity
            && let Some(oldest) = map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        let mut config = self.config.clone();
        // Distinct seeds per client keep a seeded simulation's clients from colliding.
        config.rng_seed = config.rng_seed.map(|s| s.wrapping_add(tick));
        let c = Arc::new(IpmiClient::new(target.clone(), self.connector.clone(), config));
        map.insert(target.clone(), (c.clone(), tick));
        c
    }
}
