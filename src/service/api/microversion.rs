//! Ironic's API microversions by name: the minor number `N` of version `1.N` that added each
//! behaviour the API gates, so a check reads `ctx.allows(NODE_TRAITS)` rather than
//! `ctx.allows(37)`. Names follow Ironic's `api/controllers/v1/versions.py` and its REST API
//! version history. The lowest and highest versions served are [`super::MIN_MINOR`] and
//! [`super::MAX_MINOR`].
//!
//! Tables that map a field to the version that introduced it (`render::NODE_FIELDS`,
//! `render::PORT_FIELDS`, the writable-field lists) keep plain numbers: they are data, read
//! beside Ironic's own field lists.

/// 1.1: Ironic's first versioned API, so what "always" means for a field, interface or patch
/// path; also what a request without a version header gets, which the in-band inspection
/// callback answers in ironic-inspector's form.
pub const INITIAL_VERSION: u32 = 1;
/// 1.2: a node's provision state `available` (earlier versions show it as `null`).
pub const AVAILABLE_STATE: u32 = 2;
/// 1.5: logical node names, usable wherever a node UUID is.
pub const NODE_NAME: u32 = 5;
/// 1.8: `?fields=` returns a subset of a resource's fields.
pub const FIELDS_SELECTOR: u32 = 8;
/// 1.9: node listings filter by `provision_state`.
pub const PROVISION_STATE_FILTER: u32 = 9;
/// 1.11: new nodes start in `enroll` (before, in `available`).
pub const ENROLL_STATE: u32 = 11;
/// 1.12: a node's target RAID configuration and a driver's logical disk properties.
pub const RAID_CONFIG: u32 = 12;
/// 1.14: links to `/nodes/{node}/states` and `/drivers/{name}/properties`.
pub const STATES_PROPERTIES_LINKS: u32 = 14;
/// 1.16: node listings filter by `driver`.
pub const DRIVER_FILTER: u32 = 16;
/// 1.21: a node's `resource_class`, and listings filtered by it.
pub const RESOURCE_CLASS: u32 = 21;
/// 1.22: the ramdisk's endpoints, `/v1/lookup` and `/v1/heartbeat/{node}`.
pub const RAMDISK_ENDPOINTS: u32 = 22;
/// 1.23: `/v1/portgroups`.
pub const PORTGROUPS: u32 = 23;
/// 1.24: `/nodes/{node}/portgroups`, `/portgroups/{portgroup}/ports` and `port.portgroup_uuid`.
pub const PORTGROUP_SUBRESOURCES: u32 = 24;
/// 1.25: a node's `chassis_uuid` can be removed.
pub const UNSET_CHASSIS_UUID: u32 = 25;
/// 1.26: a portgroup's `mode` and `properties`.
pub const PORTGROUP_MODE_PROPERTIES: u32 = 26;
/// 1.27: soft reboot and soft power off, and a timeout for power changes.
pub const SOFT_POWER_OFF: u32 = 27;
/// 1.28: `/nodes/{node}/vifs`.
pub const VIFS: u32 = 28;
/// 1.29: `PUT /nodes/{node}/management/inject_nmi`.
pub const INJECT_NMI: u32 = 29;
/// 1.30: hardware types ("dynamic drivers") and the driver listing's `type` and `detail`.
pub const DYNAMIC_DRIVERS: u32 = 30;
/// 1.32: `/v1/volume` (volume connectors and targets).
pub const VOLUME: u32 = 32;
/// 1.33: the storage interface.
pub const STORAGE_INTERFACE: u32 = 33;
/// 1.35: a config drive with `rebuild`.
pub const REBUILD_CONFIGDRIVE: u32 = 35;
/// 1.36: `agent_version` in heartbeats.
pub const AGENT_VERSION_HEARTBEAT: u32 = 36;
/// 1.37: `/nodes/{node}/traits`.
pub const NODE_TRAITS: u32 = 37;
/// 1.38: the rescue interface and the `rescue`/`unrescue` verbs.
pub const RESCUE_INTERFACE: u32 = 38;
/// 1.39: the provision state `inspect wait` (earlier versions show `inspecting`).
pub const INSPECT_WAIT_STATE: u32 = 39;
/// 1.40: the BIOS interface and `/nodes/{node}/bios`.
pub const BIOS_INTERFACE: u32 = 40;
/// 1.41: `abort` in `inspect wait`.
pub const INSPECTION_ABORT: u32 = 41;
/// 1.42: a node's `fault`, and listings filtered by it.
pub const NODE_FAULT: u32 = 42;
/// 1.43: `?detail=` on listings.
pub const DETAIL_QUERY: u32 = 43;
/// 1.45: `?reset_interfaces=` when a node's driver changes.
pub const RESET_INTERFACES: u32 = 45;
/// 1.46: a node's `conductor_group`, and listings filtered by it.
pub const CONDUCTOR_GROUP: u32 = 46;
/// 1.49: `/v1/conductors`, a node's `conductor`, and listings filtered by it.
pub const CONDUCTORS: u32 = 49;
/// 1.50: a node's `owner`, and listings filtered by it.
pub const NODE_OWNER: u32 = 50;
/// 1.52: `/v1/allocations`.
pub const ALLOCATIONS: u32 = 52;
/// 1.54: `/v1/events`.
pub const EVENTS: u32 = 54;
/// 1.55: `/v1/deploy_templates`.
pub const DEPLOY_TEMPLATES: u32 = 55;
/// 1.56: a config drive given as JSON, built by the service.
pub const BUILD_CONFIGDRIVE: u32 = 56;
/// 1.57: `PATCH /v1/allocations/{allocation}`.
pub const ALLOCATION_UPDATE: u32 = 57;
/// 1.58: an allocation created for an already deployed node (backfill).
pub const ALLOCATION_BACKFILL: u32 = 58;
/// 1.59: `vendor_data` in a JSON config drive.
pub const CONFIGDRIVE_VENDOR_DATA: u32 = 59;
/// 1.60: an allocation's `owner`.
pub const ALLOCATION_OWNER: u32 = 60;
/// 1.64: `network_type` in a port's `local_link_connection`.
pub const LOCAL_LINK_NETWORK_TYPE: u32 = 64;
/// 1.65: a node's `lessee`, and listings filtered by it.
pub const NODE_LESSEE: u32 = 65;
/// 1.67: a VIF attached to a given port or portgroup.
pub const VIF_ATTACH_PORT: u32 = 67;
/// 1.68: `agent_verify_ca` in heartbeats.
pub const HEARTBEAT_VERIFY_CA: u32 = 68;
/// 1.69: `deploy_steps` with a deploy or rebuild.
pub const DEPLOY_STEPS: u32 = 69;
/// 1.70: `disable_ramdisk` with manual cleaning.
pub const CLEAN_DISABLE_RAMDISK: u32 = 70;
/// 1.72: `agent_status` and `agent_status_message` in heartbeats.
pub const HEARTBEAT_STATUS: u32 = 72;
/// 1.74: BIOS registry fields, and `?detail=`/`?fields=` on BIOS settings.
pub const BIOS_REGISTRY: u32 = 74;
/// 1.76: `PUT /nodes/{node}/states/boot_mode` and `.../secure_boot`.
pub const CHANGE_BOOT_MODE: u32 = 76;
/// 1.77: `?fields=` on drivers.
pub const DRIVER_FIELDS_SELECTOR: u32 = 77;
/// 1.78: `/nodes/{node}/history`.
pub const NODE_HISTORY: u32 = 78;
/// 1.81: `/nodes/{node}/inventory`.
pub const NODE_INVENTORY: u32 = 81;
/// 1.82: node shards: a node's `shard`, `/v1/shards`, and listings filtered by shard.
pub const SHARDS: u32 = 82;
/// 1.83: child nodes: a node's `parent_node` and `/nodes/{node}/children`.
pub const CHILD_NODES: u32 = 83;
/// 1.84: `/v1/continue_inspection`, the in-band inspection callback.
pub const CONTINUE_INSPECTION: u32 = 84;
/// 1.86: the firmware interface and `/nodes/{node}/firmware`.
pub const FIRMWARE_INTERFACE: u32 = 86;
/// 1.110: `abort` in `wait call-back` (deploy wait). Above [`super::MAX_MINOR`], so no request
/// is allowed it yet: such an abort is refused as Ironic before 1.110 refuses it.
pub const DEPLOY_WAIT_ABORT: u32 = 110;
