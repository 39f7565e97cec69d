//! Image service (the Glance role) and HTTP store with temporary URLs (the Swift role), plus the
//! disk-side code both the agent and the conductor use: block devices, partition tables, and the
//! streaming qcow2 converter.

pub mod api;
pub mod cli;
pub mod model;
pub mod store;
pub mod tempurl;

pub use api::ImageService;
pub use model::{CreateImage, DiskFormat, Image, ImageStatus};
pub use store::{ImageStore, StoreError};
