//! The iSCSI codec (RFC 7143) that both ends speak: the agent's target (`ferric_agent`) and the
//! conductor's initiator (`ferric_service::iscsi`).
//!
//! Hand-written on purpose: there is no maintained Rust iSCSI target or initiator crate, and the
//! machines ferric runs on have neither a kernel target (LIO) nor a kernel initiator
//! (open-iscsi), so both ends live in userspace. The same code runs over TCP in production and
//! over `tokio::io::duplex` pairs on a paused clock in simulation.
//!
//! - [`pdu`]: BHS/AHS/digest framing, never panics on malformed input.
//! - [`text`]: key=value text, operational parameter negotiation, CHAP.
//! - [`scsi`]: the SCSI block command subset the target emulates, CDB builders.

pub mod pdu;
pub mod scsi;
pub mod text;

pub use text::ChapCredentials;
