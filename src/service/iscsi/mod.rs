//! The conductor's iSCSI initiator (RFC 7143, userspace): login, pipelined image writes,
//! verification, logout. The `iscsi` deploy uses it to write an image into the disk that the
//! node's agent exposes; the codec it speaks is `ferric_disk::iscsi`, the target it talks to is
//! the agent's (`ferric_agent::iscsi_target`).

pub mod initiator;

pub use initiator::{
    Capacity, CopyOptions, CopyReport, Initiator, InitiatorConfig, InitiatorError, Session, copy_image, copy_image_over,
};
