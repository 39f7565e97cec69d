//! The steps of a deploy, an undeploy and a cleaning, by name, and the agent a node's ramdisk
//! runs: what a node record keeps about work in progress, typed, instead of strings in
//! `driver_internal_info`.
//!
//! The conductor runs a deploy interface's plan of steps in order (`ferric_service::drivers::steps`
//! holds the plans, `ferric_service::conductor::steps` runs them). A node that waits for its agent
//! records the step it waits at ([`super::Node::step`]), so its next heartbeat goes on from there.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One step. Most map one-to-one onto a message of the user guide's sequence diagrams; some are
/// there only for that (ferric has nothing separate to do), and say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum Step {
    // Deploy, first half: from `deploying` to the deploy ramdisk running.
    /// The deploy interface checks what the deploy needs (the image can be described to the
    /// agent) before any power action.
    ValidateInterfaces,
    /// Nothing to store: ferric hands config drives to the agent inline.
    StoreConfigDrive,
    /// Power off through the power interface (confirmed by polling).
    PowerOff,
    /// The network interface puts the node's ports on the provisioning network.
    AddProvisioningNetwork,
    /// Nothing more to do: the provisioning network's DHCP host entries carry the boot options.
    UpdateDhcp,
    /// The boot interface prepares the ramdisk's boot (configs, cached kernel and ramdisk).
    PrepareRamdiskBoot,
    /// The management interface boots the node from the network once.
    BootFromNetworkOnce,
    /// Nothing more to do: the boot interface cached the images in [`Step::PrepareRamdiskBoot`].
    CacheImages,
    /// Power off, then on: the node boots the ramdisk.
    Reboot,
    /// The ramdisk boots; the plan goes on at the agent's first heartbeat.
    AwaitAgent,

    // Writing the image, `direct`: the agent downloads and writes it.
    /// The agent is asked to write the image (`standby.prepare_image`).
    PassImage,
    /// The agent is asked, at each heartbeat, whether the image is written.
    AwaitImageWritten,
    /// The agent reports the partition UUIDs of the written image.
    ReadRootUuid,

    // Writing the image, `iscsi`: the agent exposes the disk, the conductor writes.
    /// The agent is asked to expose its disk over iSCSI (`iscsi.start_iscsi_target`).
    ExposeDisk,
    /// The conductor logs in to the agent's target.
    AttachDisk,
    /// The conductor writes the image (and config drive) over iSCSI.
    CopyImage,
    /// The conductor logs out.
    DetachDisk,
    /// Nothing to delete: the image was streamed, not cached on the conductor.
    DeleteCachedImage,

    /// A deploy interface writes the image its own way (test stand-ins).
    WriteImage,

    // Deploy, second half: from the image on disk to `active`.
    /// Nothing to do: a whole-disk image carries its boot loader, and partition images boot
    /// over the network or through the loader the image's kernel package installed.
    InstallBootloader,
    /// The boot interface prepares the instance's boot (network boot config, or none).
    PrepareInstanceBoot,
    /// The management interface sets the instance's boot device for good (disk, or PXE for a
    /// network-booted instance).
    SetInstanceBootDevice,
    /// The ramdisk's logs are collected, if configured so.
    CollectLogs,
    /// The agent flushes the image to disk (`standby.sync`) before any power off.
    SyncImage,
    /// The agent powers the node off; after a timeout the power interface does.
    PowerOffThroughRamdisk,
    /// The network interface takes the ports off the provisioning network.
    RemoveProvisioningNetwork,
    /// The boot interface removes the ramdisk's boot configuration.
    CleanUpRamdiskBoot,
    /// The network interface binds the tenant ports.
    ConfigureTenantNetworks,
    /// Power on: the instance boots.
    PowerOn,
    /// Nothing more to do: the conductor's `done` event makes the node `active`.
    MarkActive,

    // Undeploy.
    /// The boot interface removes the instance's boot configuration.
    CleanUpInstanceBoot,
    /// The network interface unbinds the tenant ports.
    UnconfigureTenantNetworks,

    // Cleaning.
    /// The deploy interface decides whether there is anything to clean.
    CheckCleanSteps,
    /// The network interface puts the ports on the cleaning network.
    AddCleaningNetwork,
    /// The network interface takes the ports off the cleaning network.
    RemoveCleaningNetwork,
    /// Clean step `index` of the node's list runs on the agent; `started` once the agent took
    /// it (the next heartbeats ask whether it is finished).
    CleanStep { index: u32, started: bool },

    // fake-hardware.
    /// `fake-hardware`'s deploy: a configurable delay, no hardware.
    FakeDeploy,
    /// `fake-hardware`'s undeploy.
    FakeTearDown,
}

impl Step {
    /// Whether `self` is the same step as `other`, whatever progress it carries (a plan holds
    /// [`Step::CleanStep`] at index 0; a waiting node records how far it got).
    pub fn same_kind(&self, other: &Step) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// The deploy ramdisk's agent, while one runs for a node: its token (issued once at lookup,
/// checked on every heartbeat, forgotten when the ramdisk goes away) and where it listens.
/// Ironic keeps these in `driver_internal_info`; ferric's API shows them there, the token masked.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentSession {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The token never reaches a log through `{:?}`.
impl std::fmt::Debug for AgentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSession")
            .field("token", &self.token.as_ref().map(|_| "******"))
            .field("url", &self.url)
            .field("last_heartbeat", &self.last_heartbeat)
            .field("version", &self.version)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_persist_by_name_with_their_progress() {
        let s = Step::CleanStep { index: 2, started: true };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"step":"clean_step","index":2,"started":true}"#);
        assert_eq!(serde_json::from_str::<Step>(&json).unwrap(), s);
        assert_eq!(serde_json::to_string(&Step::AwaitImageWritten).unwrap(), r#"{"step":"await_image_written"}"#);
        assert!(s.same_kind(&Step::CleanStep { index: 0, started: false }));
        assert!(!s.same_kind(&Step::PassImage));
    }

    #[test]
    fn a_session_never_prints_its_token() {
        let s = AgentSession {
            token: Some("s3cret".into()),
            url: Some("http://192.0.2.5:9999".into()),
            ..Default::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret") && shown.contains("192.0.2.5"), "{shown}");
    }
}
