//! iSCSI (RFC 7143): PDU codec, userspace target (agent side) and initiator (conductor side).
//!
//! Hand-written on purpose: there is no maintained Rust iSCSI target or initiator crate, and the
//! machines ferric runs on have neither a kernel target (LIO) nor a kernel initiator
//! (open-iscsi), so both ends live in userspace here. The same code runs over TCP in production
//! and over `tokio::io::duplex` pairs on a paused clock in simulation.
//!
//! - [`pdu`]: BHS/AHS/digest framing, never panics on malformed input.
//! - [`text`]: key=value text, operational parameter negotiation, CHAP.
//! - [`scsi`]: the SCSI block command subset the target emulates, CDB builders.
//! - [`disk`]: the block device a target serves (file or memory).
//! - [`target`]: the target (`ferric-agent iscsi-target`, IPA's `iscsi.start_iscsi_target`).
//! - [`initiator`]: login, pipelined image writes, verification, logout (the conductor's side).

pub mod disk;
pub mod initiator;
pub mod pdu;
pub mod scsi;
pub mod target;
pub mod text;

pub use disk::{BlockDevice, FileDisk, MemDisk};
pub use initiator::{
    Capacity, CopyOptions, CopyReport, Initiator, InitiatorConfig, InitiatorError, Session, copy_image, copy_image_over,
};
pub use target::{
    StartIscsiTargetParams, Target, TargetConfig, TargetError, TargetHandle, spawn_target, start_iscsi_target,
};
pub use text::ChapCredentials;
