//! ferric-disk: a node's disk as ferric's two writers see it. The deploy agent writes images on
//! the node; the conductor's `iscsi` deploy writes them over an iSCSI LUN. Both use this crate,
//! so an image is written by one implementation whichever flow runs.
//!
//! - [`blockdev`]: the one block-device trait, with file, memory and slice devices.
//! - [`writer`]: the image writer (download, checksum, qcow2 conversion, partitions, config
//!   drive), over [`download`], [`qcow2`] and [`partition`].
//! - [`disks`]: a machine's disks and the root device hints that choose among them.
//! - [`iscsi`]: the iSCSI codec (PDUs, text negotiation, SCSI commands) that the agent's target
//!   and the conductor's initiator speak.
//! - [`http`]: the real network behind `ferric_types::http::HttpClient`.

pub mod blockdev;
pub mod disks;
pub mod download;
pub mod http;
pub mod iscsi;
pub mod partition;
pub mod qcow2;
pub mod writer;

/// Lower-case hex of `bytes` (checksums, temp URL signatures).
pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}
