//! Errors of the IPMI client, with the BMC's own codes kept so a caller (and `last_error`) can
//! say exactly what went wrong.

use ferric_types::ipmi::completion;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    /// Nothing (valid) came back in time: the BMC is down, unreachable or dropping packets.
    #[error("BMC {target} did not answer {what} after {attempts} attempt(s)")]
    Timeout { target: String, what: &'static str, attempts: u32 },
    /// The transport itself failed (no route, name resolution, closed in-memory link).
    #[error("cannot reach BMC {target}: {source}")]
    Unreachable {
        target: String,
        #[source]
        source: io::Error,
    },
    /// RAKP failed: wrong user name or password, or a privilege the user does not have.
    /// `status` is the RMCP+ status code (from the BMC, or 0x0F when the BMC's RAKP 2/4 proof
    /// did not verify here, which is what a wrong password looks like from the client).
    #[error("authentication with BMC {target} failed at {stage}: {} (RMCP+ status 0x{status:02x})", rmcp_status_text(*status))]
    AuthFailed { target: String, stage: &'static str, status: u8 },
    /// The BMC refused to open a session (no matching cipher suite, no free session slot...).
    #[error("BMC {target} refused the session: {} (RMCP+ status 0x{status:02x})", rmcp_status_text(*status))]
    SessionRefused { target: String, status: u8 },
    /// The command ran and the BMC answered with a non-zero completion code.
    #[error("BMC {target} answered {command} with completion code 0x{code:02x} ({})", completion_text(*code))]
    Completion { target: String, command: &'static str, code: u8 },
    /// The BMC's answer did not make sense (too short, unexpected values).
    #[error("unexpected answer from BMC {target} to {command}: {detail}")]
    Protocol { target: String, command: &'static str, detail: String },
    /// The target cannot be used as given (unsupported cipher suite, over-long credentials).
    #[error("invalid IPMI target: {0}")]
    InvalidTarget(String),
}

impl IpmiError {
    /// Worth another attempt: silence, a busy BMC, or a full session table.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Unreachable { .. } => true,
            Self::Completion { code, .. } => {
                matches!(*code, completion::NODE_BUSY | completion::TIMEOUT | completion::RESPONSE_UNAVAILABLE)
            }
            Self::SessionRefused { status, .. } => *status == 0x01,
            _ => false,
        }
    }
    /// The completion code, if the BMC answered with one.
    pub fn completion_code(&self) -> Option<u8> {
        match self {
            Self::Completion { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// IPMI v2.0 table 13-15.
pub fn rmcp_status_text(s: u8) -> &'static str {
    match s {
        0x00 => "no errors",
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0A => "unauthorized role or privilege level requested",
        0x0B => "insufficient resources to create a session at the requested role",
        0x0C => "invalid name length",
        0x0D => "unauthorized name",
        0x0E => "unauthorized GUID",
        0x0F => "invalid integrity check value (wrong password?)",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown status",
    }
}

/// IPMI v2.0 table 5-2 (generic completion codes) plus the common command-specific ones.
pub fn completion_text(c: u8) -> &'static str {
    match c {
        0x00 => "success",
        0x80 => "command-specific: parameter not supported",
        0x81 => "command-specific error",
        0xC0 => "node busy",
        0xC1 => "invalid command",
        0xC2 => "command invalid for given LUN",
        0xC3 => "timeout while processing command",
        0xC4 => "out of space",
        0xC5 => "reservation canceled or invalid",
        0xC6 => "request data truncated",
        0xC7 => "request data length invalid",
        0xC8 => "request data field length limit exceeded",
        0xC9 => "parameter out of range",
        0xCA => "cannot return number of requested data bytes",
        0xCB => "requested sensor, data, or record not present",
        0xCC => "invalid data field in request",
        0xCD => "command illegal for specified sensor or record type",
        0xCE => "command response could not be provided",
        0xCF => "cannot execute duplicated request",
        0xD0 => "SDR repository in update mode",
        0xD1 => "device in firmware update mode",
        0xD2 => "BMC initialization in progress",
        0xD3 => "destination unavailable",
        0xD4 => "insufficient privilege level",
        0xD5 => "command not supported in present state",
        0xD6 => "command sub-function disabled or unavailable",
        0xFF => "unspecified error",
        _ => "unknown completion code",
    }
}
