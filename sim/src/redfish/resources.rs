//! The Redfish resource tree: URI parsing, allowed methods, and each resource's JSON (DMTF schema
//! names and versions in one table, [`TYPES`], which `$metadata` is built from).

use super::{RedfishBmc, RedfishConfig, RfError, Task, TaskState};
use crate::machine::PowerState;
use serde_json::{Value, json};
use tokio::time::Instant;

pub(crate) const R: &str = "/redfish/v1";

pub(crate) const T_ROOT: &str = "#ServiceRoot.v1_16_0.ServiceRoot";
const T_SYSTEMS: &str = "#ComputerSystemCollection.ComputerSystemCollection";
const T_SYSTEM: &str = "#ComputerSystem.v1_20_0.ComputerSystem";
const T_PROCESSORS: &str = "#ProcessorCollection.ProcessorCollection";
const T_PROCESSOR: &str = "#Processor.v1_10_0.Processor";
const T_MEMORIES: &str = "#MemoryCollection.MemoryCollection";
const T_MEMORY: &str = "#Memory.v1_10_0.Memory";
const T_NICS: &str = "#EthernetInterfaceCollection.EthernetInterfaceCollection";
const T_NIC: &str = "#EthernetInterface.v1_6_0.EthernetInterface";
const T_SIMPLE_STORAGES: &str = "#SimpleStorageCollection.SimpleStorageCollection";
const T_SIMPLE_STORAGE: &str = "#SimpleStorage.v1_3_0.SimpleStorage";
const T_STORAGES: &str = "#StorageCollection.StorageCollection";
const T_STORAGE: &str = "#Storage.v1_9_0.Storage";
const T_DRIVE: &str = "#Drive.v1_9_0.Drive";
const T_BIOS: &str = "#Bios.v1_2_0.Bios";
const T_SETTINGS: &str = "#Settings.v1_3_5.Settings";
const T_VMEDIAS: &str = "#VirtualMediaCollection.VirtualMediaCollection";
const T_VMEDIA: &str = "#VirtualMedia.v1_6_0.VirtualMedia";
const T_MANAGERS: &str = "#ManagerCollection.ManagerCollection";
const T_MANAGER: &str = "#Manager.v1_10_0.Manager";
const T_CHASSIS_COLL: &str = "#ChassisCollection.ChassisCollection";
const T_CHASSIS: &str = "#Chassis.v1_14_0.Chassis";
const T_POWER: &str = "#Power.v1_7_1.Power";
const T_THERMAL: &str = "#Thermal.v1_7_1.Thermal";
const T_SESSION_SERVICE: &str = "#SessionService.v1_1_8.SessionService";
const T_SESSIONS: &str = "#SessionCollection.SessionCollection";
const T_SESSION: &str = "#Session.v1_5_0.Session";
const T_ACCOUNT_SERVICE: &str = "#AccountService.v1_12_0.AccountService";
const T_ACCOUNTS: &str = "#ManagerAccountCollection.ManagerAccountCollection";
const T_ACCOUNT: &str = "#ManagerAccount.v1_10_0.ManagerAccount";
const T_ROLES: &str = "#RoleCollection.RoleCollection";
const T_ROLE: &str = "#Role.v1_3_1.Role";
const T_TASK_SERVICE: &str = "#TaskService.v1_2_0.TaskService";
const T_TASKS: &str = "#TaskCollection.TaskCollection";
const T_TASK: &str = "#Task.v1_7_0.Task";
const T_UPDATE_SERVICE: &str = "#UpdateService.v1_11_0.UpdateService";
const T_FIRMWARES: &str = "#SoftwareInventoryCollection.SoftwareInventoryCollection";
const T_FIRMWARE: &str = "#SoftwareInventory.v1_9_0.SoftwareInventory";
const T_MESSAGE: &str = "#Message.v1_1_1.Message";

/// Every type the service uses; `$metadata` references each schema.
const TYPES: &[&str] = &[
    T_ROOT,
    T_SYSTEMS,
    T_SYSTEM,
    T_PROCESSORS,
    T_PROCESSOR,
    T_MEMORIES,
    T_MEMORY,
    T_NICS,
    T_NIC,
    T_SIMPLE_STORAGES,
    T_SIMPLE_STORAGE,
    T_STORAGES,
    T_STORAGE,
    T_DRIVE,
    T_BIOS,
    T_SETTINGS,
    T_VMEDIAS,
    T_VMEDIA,
    T_MANAGERS,
    T_MANAGER,
    T_CHASSIS_COLL,
    T_CHASSIS,
    T_POWER,
    T_THERMAL,
    T_SESSION_SERVICE,
    T_SESSIONS,
    T_SESSION,
    T_ACCOUNT_SERVICE,
    T_ACCOUNTS,
    T_ACCOUNT,
    T_ROLES,
    T_ROLE,
    T_TASK_SERVICE,
    T_TASKS,
    T_TASK,
    T_UPDATE_SERVICE,
    T_FIRMWARES,
    T_FIRMWARE,
    T_MESSAGE,
];

/// `BootSourceOverrideTarget@Redfish.AllowableValues`.
pub(crate) const BOOT_TARGETS: &[&str] = &["None", "Pxe", "Hdd", "Cd", "BiosSetup", "UefiHttp"];
/// The same, of a BMC configured without UEFI HTTP boot.
const BOOT_TARGETS_NO_HTTP: &[&str] = &["None", "Pxe", "Hdd", "Cd", "BiosSetup"];
const RESET_TYPES: &[&str] =
    &["On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "Nmi", "PowerCycle"];
/// Transfer protocols of virtual media and firmware images.
pub(crate) const TRANSFER_PROTOCOLS: &[&str] = &["HTTP", "HTTPS"];
/// System properties a PATCH cannot change (PropertyNotWritable rather than PropertyUnknown).
pub(crate) const SYSTEM_READ_ONLY: &[&str] = &[
    "@odata.id",
    "@odata.type",
    "Id",
    "Name",
    "UUID",
    "PowerState",
    "Status",
    "SystemType",
    "Manufacturer",
    "Model",
    "SerialNumber",
    "HostName",
    "BiosVersion",
    "ProcessorSummary",
    "MemorySummary",
    "Links",
    "Actions",
    "Processors",
    "Memory",
    "EthernetInterfaces",
    "SimpleStorage",
    "Storage",
    "Bios",
    "VirtualMedia",
];
pub(crate) const VMEDIA_READ_ONLY: &[&str] =
    &["@odata.id", "@odata.type", "Id", "Name", "MediaTypes", "ConnectedVia", "ImageName", "Actions"];

/// Where a virtual media collection hangs: the same two slots appear under both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    System,
    Manager,
}

/// One addressable resource (or action) of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Res {
    Versions,
    Root,
    Metadata,
    OData,
    Systems,
    System,
    SystemReset,
    Processors,
    Processor,
    Memories,
    Memory,
    Nics,
    Nic(usize),
    SimpleStorages,
    SimpleStorage,
    Storages,
    Storage,
    Drive(usize),
    Bios,
    BiosSettings,
    BiosReset,
    VMedias(Owner),
    VMedia(Owner, usize),
    VMediaInsert(Owner, usize),
    VMediaEject(Owner, usize),
    Managers,
    Manager,
    ChassisColl,
    Chassis,
    Power,
    Thermal,
    SessionService,
    Sessions,
    Session(u64),
    AccountService,
    Accounts,
    Account(u64),
    Roles,
    Role(usize),
    TaskService,
    Tasks,
    Task(u64),
    TaskMonitor(u64),
    UpdateService,
    Firmwares,
    Firmware(usize),
    SimpleUpdate,
}

pub(crate) const ROLES: &[(&str, &[&str])] = &[
    ("Administrator", &["Login", "ConfigureManager", "ConfigureUsers", "ConfigureSelf", "ConfigureComponents"]),
    ("Operator", &["Login", "ConfigureSelf", "ConfigureComponents"]),
    ("ReadOnly", &["Login", "ConfigureSelf"]),
];
const SLOTS: &[&str] = &["Cd", "Usb"];
const FIRMWARE: &[&str] = &["BMC", "BIOS"];

fn nic_id(i: usize) -> String {
    format!("NIC{}", i + 1)
}

impl Res {
    /// The resource at `path` (a trailing slash is accepted), if any.
    pub(crate) fn parse(path: &str, cfg: &RedfishConfig) -> Option<Res> {
        let trimmed = path.trim_end_matches('/');
        let segs: Vec<&str> = trimmed.split('/').skip(1).collect();
        let s: Vec<&str> = match segs.as_slice() {
            ["redfish"] => return Some(Res::Versions),
            ["redfish", "v1", rest @ ..] => rest.to_vec(),
            _ => return None,
        };
        let slot = |id: &str| SLOTS.iter().position(|s| *s == id);
        let sys = cfg.system_id.as_str();
        let mgr = cfg.manager_id.as_str();
        let ch = cfg.chassis_id.as_str();
        Some(match s.as_slice() {
            [] => Res::Root,
            ["$metadata"] => Res::Metadata,
            ["odata"] => Res::OData,
            ["Systems"] => Res::Systems,
            ["Systems", id, rest @ ..] if *id == sys => match rest {
                [] => Res::System,
                ["Actions", "ComputerSystem.Reset"] => Res::SystemReset,
                ["Processors"] => Res::Processors,
                ["Processors", "CPU1"] => Res::Processor,
                ["Memory"] => Res::Memories,
                ["Memory", "DIMM1"] => Res::Memory,
                ["EthernetInterfaces"] => Res::Nics,
                ["EthernetInterfaces", n] => Res::Nic(n.strip_prefix("NIC")?.parse::<usize>().ok()?.checked_sub(1)?),
                ["SimpleStorage"] => Res::SimpleStorages,
                ["SimpleStorage", "1"] => Res::SimpleStorage,
                ["Storage"] => Res::Storages,
                ["Storage", "1"] => Res::Storage,
                ["Storage", "1", "Drives", n] => Res::Drive(n.strip_prefix("Disk")?.parse().ok()?),
                ["Bios"] => Res::Bios,
                ["Bios", "Settings"] => Res::BiosSettings,
                ["Bios", "Actions", "Bios.ResetBios"] => Res::BiosReset,
                ["VirtualMedia", rest @ ..] => vmedia(Owner::System, rest, slot)?,
                _ => return None,
            },
            ["Managers"] => Res::Managers,
            ["Managers", id, rest @ ..] if *id == mgr => match rest {
                [] => Res::Manager,
                ["VirtualMedia", rest @ ..] => vmedia(Owner::Manager, rest, slot)?,
                _ => return None,
            },
            ["Chassis"] => Res::ChassisColl,
            ["Chassis", id] if *id == ch => Res::Chassis,
            ["Chassis", id, "Power"] if *id == ch => Res::Power,
            ["Chassis", id, "Thermal"] if *id == ch => Res::Thermal,
            ["SessionService"] => Res::SessionService,
            // A POST to a collection's `Members` creates a member, as a POST to it does.
            ["SessionService", "Sessions"] | ["SessionService", "Sessions", "Members"] => Res::Sessions,
            ["SessionService", "Sessions", id] => Res::Session(id.parse().ok()?),
            ["AccountService"] => Res::AccountService,
            ["AccountService", "Accounts"] | ["AccountService", "Accounts", "Members"] => Res::Accounts,
            ["AccountService", "Accounts", id] => Res::Account(id.parse().ok()?),
            ["AccountService", "Roles"] => Res::Roles,
            ["AccountService", "Roles", id] => Res::Role(ROLES.iter().position(|(r, _)| r == id)?),
            ["TaskService"] => Res::TaskService,
            ["TaskService", "Tasks"] => Res::Tasks,
            ["TaskService", "Tasks", id] => Res::Task(id.parse().ok()?),
            ["TaskService", "TaskMonitors", id] => Res::TaskMonitor(id.parse().ok()?),
            ["UpdateService"] => Res::UpdateService,
            ["UpdateService", "FirmwareInventory"] => Res::Firmwares,
            ["UpdateService", "FirmwareInventory", id] => Res::Firmware(FIRMWARE.iter().position(|f| f == id)?),
            ["UpdateService", "Actions", "UpdateService.SimpleUpdate"] => Res::SimpleUpdate,
            _ => return None,
        })
    }

    /// The `Allow` header: the methods this resource answers.
    pub(crate) fn allow(&self) -> &'static str {
        match self {
            Res::SystemReset | Res::BiosReset | Res::VMediaInsert(..) | Res::VMediaEject(..) | Res::SimpleUpdate => {
                "POST"
            }
            Res::Account(1) => "GET, HEAD, PATCH",
            Res::Account(_) => "GET, HEAD, PATCH, DELETE",
            Res::Accounts => "GET, HEAD, POST",
            Res::System | Res::BiosSettings | Res::VMedia(..) | Res::SessionService => "GET, HEAD, PATCH",
            Res::Sessions => "GET, HEAD, POST",
            Res::Session(_) => "GET, HEAD, DELETE",
            _ => "GET, HEAD",
        }
    }
}

fn vmedia(owner: Owner, rest: &[&str], slot: impl Fn(&str) -> Option<usize>) -> Option<Res> {
    Some(match rest {
        [] => Res::VMedias(owner),
        [id] => Res::VMedia(owner, slot(id)?),
        [id, "Actions", "VirtualMedia.InsertMedia"] => Res::VMediaInsert(owner, slot(id)?),
        [id, "Actions", "VirtualMedia.EjectMedia"] => Res::VMediaEject(owner, slot(id)?),
        _ => return None,
    })
}

pub(crate) fn account_uri(id: u64) -> String {
    format!("{R}/AccountService/Accounts/{id}")
}

pub(crate) fn session_uri(id: u64) -> String {
    format!("{R}/SessionService/Sessions/{id}")
}

pub(crate) fn task_monitor_uri(id: u64) -> String {
    format!("{R}/TaskService/TaskMonitors/{id}")
}

fn task_uri(id: u64) -> String {
    format!("{R}/TaskService/Tasks/{id}")
}

/// Whether a `SimpleUpdate` target names the BMC (`Some(true)`), the BIOS (`Some(false)`), or
/// nothing this service has (`None`).
pub(crate) fn firmware_target(uri: &str, cfg: &RedfishConfig) -> Option<bool> {
    let uri = uri.trim_end_matches('/');
    let fw = format!("{R}/UpdateService/FirmwareInventory");
    if uri == format!("{fw}/BMC") || uri == format!("{R}/Managers/{}", cfg.manager_id) {
        Some(true)
    } else if uri == format!("{fw}/BIOS")
        || uri == format!("{R}/Systems/{}", cfg.system_id)
        || uri == format!("{R}/Systems/{}/Bios", cfg.system_id)
    {
        Some(false)
    } else {
        None
    }
}

fn id(uri: &str) -> Value {
    json!({ "@odata.id": uri })
}

fn status() -> Value {
    json!({ "State": "Enabled", "Health": "OK" })
}

fn collection(ty: &str, uri: &str, name: &str, members: Vec<String>) -> Value {
    json!({
        "@odata.type": ty,
        "@odata.id": uri,
        "Name": name,
        "Members@odata.count": members.len(),
        "Members": members.iter().map(|m| id(m)).collect::<Vec<_>>(),
    })
}

/// `Link` header value for a resource of type `ty` (the DMTF JSON schema describing it).
pub(crate) fn schema_link(ty: &str) -> Option<String> {
    let ty = ty.strip_prefix('#')?;
    let (file, _) = ty.rsplit_once('.')?;
    Some(format!("<https://redfish.dmtf.org/schemas/v1/{file}.json>; rel=describedby"))
}

/// The CSDL document at `/redfish/v1/$metadata`: a reference to every schema in [`TYPES`].
pub(crate) fn metadata() -> String {
    let mut refs: Vec<(String, Vec<String>)> = Vec::new();
    for ty in TYPES {
        let t = ty.trim_start_matches('#');
        let ns = t.split('.').next().unwrap_or(t).to_string();
        let versioned = t.rsplit_once('.').map(|(v, _)| v.to_string()).filter(|v| *v != ns);
        let entry = match refs.iter_mut().find(|(n, _)| *n == ns) {
            Some(e) => e,
            None => {
                refs.push((ns.clone(), vec![ns.clone()]));
                refs.last_mut().expect("just pushed")
            }
        };
        if let Some(v) = versioned
            && !entry.1.contains(&v)
        {
            entry.1.push(v);
        }
    }
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<edmx:Edmx xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\" Version=\"4.0\">\n",
    );
    for (ns, includes) in &refs {
        x.push_str(&format!("  <edmx:Reference Uri=\"http://redfish.dmtf.org/schemas/v1/{ns}_v1.xml\">\n"));
        for i in includes {
            x.push_str(&format!("    <edmx:Include Namespace=\"{i}\"/>\n"));
        }
        x.push_str("  </edmx:Reference>\n");
    }
    x.push_str(concat!(
        "  <edmx:Reference Uri=\"http://redfish.dmtf.org/schemas/v1/RedfishExtensions_v1.xml\">\n",
        "    <edmx:Include Namespace=\"RedfishExtensions.v1_0_0\" Alias=\"Redfish\"/>\n",
        "  </edmx:Reference>\n",
        "  <edmx:DataServices>\n",
        "    <Schema xmlns=\"http://docs.oasis-open.org/odata/ns/edm\" Namespace=\"Service\">\n",
        "      <EntityContainer Name=\"Service\" Extends=\"ServiceRoot.v1_16_0.ServiceContainer\"/>\n",
        "    </Schema>\n",
        "  </edmx:DataServices>\n",
        "</edmx:Edmx>\n",
    ));
    x
}

/// A UUID-shaped string derived from `seed` (the service root's, from the System's).
fn derived_uuid(seed: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("ferric-redfish-service:{seed}").as_bytes());
    let h: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn power_str(p: PowerState) -> &'static str {
    match p {
        PowerState::On => "On",
        PowerState::Off => "Off",
    }
}

impl RedfishBmc {
    /// The override targets this BMC allows.
    pub(crate) fn boot_targets(&self) -> &'static [&'static str] {
        if self.config().uefi_http { BOOT_TARGETS } else { BOOT_TARGETS_NO_HTTP }
    }

    /// The JSON of a GET on `res`.
    pub(super) async fn get_json(&self, res: &Res) -> Result<Value, RfError> {
        let cfg = &self.inner.config;
        let sys = format!("{R}/Systems/{}", cfg.system_id);
        let mgr = format!("{R}/Managers/{}", cfg.manager_id);
        let ch = format!("{R}/Chassis/{}", cfg.chassis_id);
        let inv = self.inner.machine.inventory();
        Ok(match res {
            Res::Versions => json!({ "v1": "/redfish/v1/" }),
            Res::Root => json!({
                "@odata.type": T_ROOT,
                "@odata.id": "/redfish/v1/",
                "Id": "RootService",
                "Name": "Root Service",
                "RedfishVersion": "1.17.0",
                "UUID": derived_uuid(&cfg.uuid),
                "Vendor": "ferric",
                "Product": "ferric virtual BMC",
                "Systems": id(&format!("{R}/Systems")),
                "Managers": id(&format!("{R}/Managers")),
                "Chassis": id(&format!("{R}/Chassis")),
                "SessionService": id(&format!("{R}/SessionService")),
                "AccountService": id(&format!("{R}/AccountService")),
                "Tasks": id(&format!("{R}/TaskService")),
                "UpdateService": id(&format!("{R}/UpdateService")),
                "Links": { "Sessions": id(&format!("{R}/SessionService/Sessions")) },
                "ProtocolFeaturesSupported": {
                    "ExpandQuery": { "ExpandAll": false, "Levels": false, "Links": false, "NoLinks": false },
                    "FilterQuery": false,
                    "SelectQuery": false,
                    "OnlyMemberQuery": false,
                    "ExcerptQuery": false,
                },
            }),
            Res::OData => {
                let entries = [
                    ("Service", "/redfish/v1/".to_string()),
                    ("Systems", format!("{R}/Systems")),
                    ("Managers", format!("{R}/Managers")),
                    ("Chassis", format!("{R}/Chassis")),
                    ("SessionService", format!("{R}/SessionService")),
                    ("Sessions", format!("{R}/SessionService/Sessions")),
                    ("AccountService", format!("{R}/AccountService")),
                    ("TaskService", format!("{R}/TaskService")),
                    ("UpdateService", format!("{R}/UpdateService")),
                ];
                json!({
                    "@odata.context": "/redfish/v1/$metadata",
                    "value": entries.iter().map(|(n, u)| json!({ "name": n, "kind": "Singleton", "url": u })).collect::<Vec<_>>(),
                })
            }
            Res::Metadata | Res::TaskMonitor(_) => return Err(RfError::internal("not a JSON resource")),
            Res::Systems => {
                collection(T_SYSTEMS, &format!("{R}/Systems"), "Computer System Collection", vec![sys.clone()])
            }
            Res::System => {
                let power = self.power().await?;
                let (target, enabled, mode) = self.boot_view().await;
                let st = self.inner.state.lock();
                let mut system = json!({
                    "@odata.type": T_SYSTEM,
                    "@odata.id": sys,
                    "Id": cfg.system_id,
                    "Name": cfg.name,
                    "UUID": cfg.uuid,
                    "SystemType": "Physical",
                    "Manufacturer": "ferric",
                    "Model": "ferric virtual machine",
                    "SerialNumber": format!("FRC-{}", &cfg.uuid.chars().filter(char::is_ascii_hexdigit).take(8).collect::<String>()),
                    "HostName": self.inner.machine.name(),
                    "AssetTag": st.asset_tag,
                    "Status": status(),
                    "PowerState": power_str(power),
                    "IndicatorLED": st.indicator_led,
                    "LocationIndicatorActive": st.indicator_led != "Off",
                    "BiosVersion": st.bios_version,
                    "Boot": {
                        "BootSourceOverrideTarget": target,
                        "BootSourceOverrideEnabled": enabled,
                        "BootSourceOverrideMode": mode,
                        "BootSourceOverrideTarget@Redfish.AllowableValues": self.boot_targets(),
                        "BootSourceOverrideMode@Redfish.AllowableValues": ["UEFI", "Legacy"],
                        "HttpBootUri": st.http_boot_uri,
                    },
                    "ProcessorSummary": { "Count": inv.cpus, "LogicalProcessorCount": inv.cpus, "Model": format!("ferric virtual CPU ({})", inv.cpu_arch), "Status": status() },
                    "MemorySummary": { "TotalSystemMemoryGiB": inv.memory_mib as f64 / 1024.0, "Status": status() },
                    "Processors": id(&format!("{sys}/Processors")),
                    "Memory": id(&format!("{sys}/Memory")),
                    "EthernetInterfaces": id(&format!("{sys}/EthernetInterfaces")),
                    "SimpleStorage": id(&format!("{sys}/SimpleStorage")),
                    "Storage": id(&format!("{sys}/Storage")),
                    "Bios": id(&format!("{sys}/Bios")),
                    "VirtualMedia": id(&format!("{sys}/VirtualMedia")),
                    "Links": { "Chassis": [id(&ch)], "ManagedBy": [id(&mgr)] },
                    "Actions": {
                        "#ComputerSystem.Reset": {
                            "target": format!("{sys}/Actions/ComputerSystem.Reset"),
                            "ResetType@Redfish.AllowableValues": RESET_TYPES,
                        }
                    },
                });
                if !cfg.uefi_http
                    && let Some(b) = system.get_mut("Boot").and_then(Value::as_object_mut)
                {
                    b.remove("HttpBootUri");
                }
                system
            }
            Res::Processors => collection(
                T_PROCESSORS,
                &format!("{sys}/Processors"),
                "Processors Collection",
                vec![format!("{sys}/Processors/CPU1")],
            ),
            Res::Processor => {
                let (arch, isa) = match inv.cpu_arch.as_str() {
                    "aarch64" | "arm64" | "ARM-A64" => ("ARM", "ARM-A64"),
                    "ppc64le" | "PowerISA" => ("Power", "PowerISA"),
                    _ => ("x86", "x86-64"),
                };
                json!({
                    "@odata.type": T_PROCESSOR,
                    "@odata.id": format!("{sys}/Processors/CPU1"),
                    "Id": "CPU1",
                    "Name": "Processor",
                    "Socket": "CPU 1",
                    "ProcessorType": "CPU",
                    "ProcessorArchitecture": arch,
                    "InstructionSet": isa,
                    "Manufacturer": "ferric",
                    "Model": format!("ferric virtual CPU ({})", inv.cpu_arch),
                    "TotalCores": inv.cpus,
                    "TotalThreads": inv.cpus,
                    "Status": status(),
                })
            }
            Res::Memories => collection(
                T_MEMORIES,
                &format!("{sys}/Memory"),
                "Memory Collection",
                vec![format!("{sys}/Memory/DIMM1")],
            ),
            Res::Memory => json!({
                "@odata.type": T_MEMORY,
                "@odata.id": format!("{sys}/Memory/DIMM1"),
                "Id": "DIMM1",
                "Name": "DIMM 1",
                "MemoryType": "DRAM",
                "CapacityMiB": inv.memory_mib,
                "Status": status(),
            }),
            Res::Nics => {
                let n = self.inner.machine.macs().len();
                collection(
                    T_NICS,
                    &format!("{sys}/EthernetInterfaces"),
                    "Ethernet Interface Collection",
                    (0..n).map(|i| format!("{sys}/EthernetInterfaces/{}", nic_id(i))).collect(),
                )
            }
            Res::Nic(i) => {
                let macs = self.inner.machine.macs();
                let m = macs
                    .get(*i)
                    .ok_or_else(|| RfError::not_found(&format!("{sys}/EthernetInterfaces/{}", nic_id(*i))))?;
                json!({
                    "@odata.type": T_NIC,
                    "@odata.id": format!("{sys}/EthernetInterfaces/{}", nic_id(*i)),
                    "Id": nic_id(*i),
                    "Name": format!("Ethernet Interface {}", i + 1),
                    "MACAddress": mac(m),
                    "PermanentMACAddress": mac(m),
                    "SpeedMbps": 1000,
                    "LinkStatus": "LinkUp",
                    "InterfaceEnabled": true,
                    "Status": status(),
                })
            }
            Res::SimpleStorages => collection(
                T_SIMPLE_STORAGES,
                &format!("{sys}/SimpleStorage"),
                "Simple Storage Collection",
                vec![format!("{sys}/SimpleStorage/1")],
            ),
            Res::SimpleStorage => json!({
                "@odata.type": T_SIMPLE_STORAGE,
                "@odata.id": format!("{sys}/SimpleStorage/1"),
                "Id": "1",
                "Name": "Simple Storage Controller",
                "Status": status(),
                "Devices": inv.disks.iter().enumerate().map(|(i, size)| json!({
                    "Name": format!("Disk {i}"),
                    "CapacityBytes": size,
                    "Status": status(),
                })).collect::<Vec<_>>(),
            }),
            Res::Storages => collection(
                T_STORAGES,
                &format!("{sys}/Storage"),
                "Storage Collection",
                vec![format!("{sys}/Storage/1")],
            ),
            Res::Storage => json!({
                "@odata.type": T_STORAGE,
                "@odata.id": format!("{sys}/Storage/1"),
                "Id": "1",
                "Name": "Storage Controller",
                "Status": status(),
                "Drives@odata.count": inv.disks.len(),
                "Drives": (0..inv.disks.len()).map(|i| id(&format!("{sys}/Storage/1/Drives/Disk{i}"))).collect::<Vec<_>>(),
            }),
            Res::Drive(i) => {
                let size =
                    inv.disks.get(*i).ok_or_else(|| RfError::not_found(&format!("{sys}/Storage/1/Drives/Disk{i}")))?;
                json!({
                    "@odata.type": T_DRIVE,
                    "@odata.id": format!("{sys}/Storage/1/Drives/Disk{i}"),
                    "Id": format!("Disk{i}"),
                    "Name": format!("Disk {i}"),
                    "CapacityBytes": size,
                    "MediaType": "HDD",
                    "Protocol": "SATA",
                    "Status": status(),
                })
            }
            Res::Bios => {
                let st = self.inner.state.lock();
                json!({
                    "@odata.type": T_BIOS,
                    "@odata.id": format!("{sys}/Bios"),
                    "Id": "BIOS",
                    "Name": "BIOS Configuration Current Settings",
                    "Attributes": st.bios,
                    "@Redfish.Settings": {
                        "@odata.type": T_SETTINGS,
                        "SettingsObject": id(&format!("{sys}/Bios/Settings")),
                        "SupportedApplyTimes": ["OnReset"],
                    },
                    "Actions": { "#Bios.ResetBios": { "target": format!("{sys}/Bios/Actions/Bios.ResetBios") } },
                })
            }
            Res::BiosSettings => {
                let st = self.inner.state.lock();
                json!({
                    "@odata.type": T_BIOS,
                    "@odata.id": format!("{sys}/Bios/Settings"),
                    "Id": "Settings",
                    "Name": "BIOS Configuration Pending Settings",
                    "Attributes": st.bios_pending,
                })
            }
            Res::VMedias(owner) => {
                let base =
                    if *owner == Owner::System { format!("{sys}/VirtualMedia") } else { format!("{mgr}/VirtualMedia") };
                collection(
                    T_VMEDIAS,
                    &base,
                    "Virtual Media Collection",
                    SLOTS.iter().map(|s| format!("{base}/{s}")).collect(),
                )
            }
            Res::VMedia(owner, slot) => {
                let base =
                    if *owner == Owner::System { format!("{sys}/VirtualMedia") } else { format!("{mgr}/VirtualMedia") };
                let st = self.inner.state.lock();
                let s = st.vmedia.get(*slot).cloned().unwrap_or_default();
                let name = SLOTS.get(*slot).copied().unwrap_or("Cd");
                let uri = format!("{base}/{name}");
                let types: &[&str] = if *slot == 0 { &["CD", "DVD"] } else { &["USBStick"] };
                json!({
                    "@odata.type": T_VMEDIA,
                    "@odata.id": uri,
                    "Id": name,
                    "Name": if *slot == 0 { "Virtual CD" } else { "Virtual USB" },
                    "MediaTypes": types,
                    "Image": s.image,
                    "ImageName": s.image.as_deref().map(|i| i.rsplit('/').next().unwrap_or(i)),
                    "Inserted": s.inserted,
                    "WriteProtected": s.write_protected,
                    "ConnectedVia": if s.inserted { "URI" } else { "NotConnected" },
                    "TransferProtocolType": s.transfer_protocol,
                    "Actions": {
                        "#VirtualMedia.InsertMedia": { "target": format!("{uri}/Actions/VirtualMedia.InsertMedia") },
                        "#VirtualMedia.EjectMedia": { "target": format!("{uri}/Actions/VirtualMedia.EjectMedia") },
                    },
                })
            }
            Res::Managers => collection(T_MANAGERS, &format!("{R}/Managers"), "Manager Collection", vec![mgr.clone()]),
            Res::Manager => {
                let st = self.inner.state.lock();
                json!({
                    "@odata.type": T_MANAGER,
                    "@odata.id": mgr,
                    "Id": cfg.manager_id,
                    "Name": "ferric virtual BMC",
                    "ManagerType": "BMC",
                    "UUID": derived_uuid(&format!("manager:{}", cfg.uuid)),
                    "Model": "ferric virtual Redfish BMC",
                    "FirmwareVersion": st.bmc_version,
                    "PowerState": "On",
                    "Status": status(),
                    "VirtualMedia": id(&format!("{mgr}/VirtualMedia")),
                    "Links": { "ManagerForServers": [id(&sys)], "ManagerForChassis": [id(&ch)] },
                })
            }
            Res::ChassisColl => {
                collection(T_CHASSIS_COLL, &format!("{R}/Chassis"), "Chassis Collection", vec![ch.clone()])
            }
            Res::Chassis => {
                let power = self.power().await?;
                json!({
                    "@odata.type": T_CHASSIS,
                    "@odata.id": ch,
                    "Id": cfg.chassis_id,
                    "Name": "Chassis",
                    "ChassisType": "RackMount",
                    "Manufacturer": "ferric",
                    "PowerState": power_str(power),
                    "Status": status(),
                    "Power": id(&format!("{ch}/Power")),
                    "Thermal": id(&format!("{ch}/Thermal")),
                    "Links": { "ComputerSystems": [id(&sys)], "ManagedBy": [id(&mgr)] },
                })
            }
            Res::Power => {
                let on = self.power().await? == PowerState::On;
                json!({
                    "@odata.type": T_POWER,
                    "@odata.id": format!("{ch}/Power"),
                    "Id": "Power",
                    "Name": "Power",
                    "PowerControl": [{
                        "@odata.id": format!("{ch}/Power#/PowerControl/0"),
                        "MemberId": "0",
                        "Name": "System Power Control",
                        "PowerConsumedWatts": if on { 180 } else { 8 },
                        "PowerCapacityWatts": 750,
                        "Status": status(),
                    }],
                })
            }
            Res::Thermal => {
                let on = self.power().await? == PowerState::On;
                json!({
                    "@odata.type": T_THERMAL,
                    "@odata.id": format!("{ch}/Thermal"),
                    "Id": "Thermal",
                    "Name": "Thermal",
                    "Temperatures": [{
                        "@odata.id": format!("{ch}/Thermal#/Temperatures/0"),
                        "MemberId": "0",
                        "Name": "CPU1 Temp",
                        "ReadingCelsius": if on { 48 } else { 24 },
                        "PhysicalContext": "CPU",
                        "Status": status(),
                    }],
                    "Fans": [{
                        "@odata.id": format!("{ch}/Thermal#/Fans/0"),
                        "MemberId": "0",
                        "Name": "Fan 1",
                        "Reading": if on { 5400 } else { 0 },
                        "ReadingUnits": "RPM",
                        "Status": status(),
                    }],
                })
            }
            Res::SessionService => json!({
                "@odata.type": T_SESSION_SERVICE,
                "@odata.id": format!("{R}/SessionService"),
                "Id": "SessionService",
                "Name": "Session Service",
                "ServiceEnabled": true,
                "SessionTimeout": self.session_timeout().as_secs(),
                "Status": status(),
                "Sessions": id(&format!("{R}/SessionService/Sessions")),
            }),
            Res::Sessions => {
                let now = Instant::now();
                let timeout = self.session_timeout();
                let mut st = self.inner.state.lock();
                self.expire_sessions(&mut st, now, timeout);
                let ids: Vec<String> = st.sessions.keys().map(|i| session_uri(*i)).collect();
                collection(T_SESSIONS, &format!("{R}/SessionService/Sessions"), "Session Collection", ids)
            }
            Res::Session(sid) => self.session_json(*sid).ok_or_else(|| RfError::not_found(&session_uri(*sid)))?,
            Res::AccountService => json!({
                "@odata.type": T_ACCOUNT_SERVICE,
                "@odata.id": format!("{R}/AccountService"),
                "Id": "AccountService",
                "Name": "Account Service",
                "ServiceEnabled": true,
                "LocalAccountAuth": "Enabled",
                "MinPasswordLength": 1,
                "MaxPasswordLength": 64,
                "AuthFailureLoggingThreshold": 0,
                "AccountLockoutThreshold": 0,
                "Status": status(),
                "Accounts": id(&format!("{R}/AccountService/Accounts")),
                "Roles": id(&format!("{R}/AccountService/Roles")),
            }),
            Res::Accounts => {
                let ids: Vec<String> = self.inner.state.lock().accounts.keys().map(|i| account_uri(*i)).collect();
                collection(T_ACCOUNTS, &format!("{R}/AccountService/Accounts"), "Accounts Collection", ids)
            }
            Res::Account(aid) => {
                let st = self.inner.state.lock();
                let a = st.accounts.get(aid).ok_or_else(|| RfError::not_found(&account_uri(*aid)))?;
                json!({
                    "@odata.type": T_ACCOUNT,
                    "@odata.id": account_uri(*aid),
                    "Id": aid.to_string(),
                    "Name": "User Account",
                    "UserName": a.user,
                    "Password": null,
                    "RoleId": a.role.name(),
                    "Enabled": a.enabled,
                    "Locked": false,
                    "AccountTypes": ["Redfish"],
                    "Links": { "Role": id(&format!("{R}/AccountService/Roles/{}", a.role.name())) },
                })
            }
            Res::Roles => collection(
                T_ROLES,
                &format!("{R}/AccountService/Roles"),
                "Roles Collection",
                ROLES.iter().map(|(r, _)| format!("{R}/AccountService/Roles/{r}")).collect(),
            ),
            Res::Role(i) => {
                let (role, privs) = ROLES.get(*i).copied().unwrap_or(ROLES[0]);
                json!({
                    "@odata.type": T_ROLE,
                    "@odata.id": format!("{R}/AccountService/Roles/{role}"),
                    "Id": role,
                    "Name": format!("{role} Role"),
                    "RoleId": role,
                    "IsPredefined": true,
                    "AssignedPrivileges": privs,
                })
            }
            Res::TaskService => json!({
                "@odata.type": T_TASK_SERVICE,
                "@odata.id": format!("{R}/TaskService"),
                "Id": "TaskService",
                "Name": "Task Service",
                "ServiceEnabled": true,
                "CompletedTaskOverWritePolicy": "Oldest",
                "LifeCycleEventOnTaskStateChange": false,
                "DateTime": self.timestamp(Instant::now()),
                "Status": status(),
                "Tasks": id(&format!("{R}/TaskService/Tasks")),
            }),
            Res::Tasks => {
                let ids: Vec<String> = self.inner.state.lock().tasks.iter().map(|t| task_uri(t.id)).collect();
                collection(T_TASKS, &format!("{R}/TaskService/Tasks"), "Task Collection", ids)
            }
            Res::Task(tid) => {
                let task = self.inner.state.lock().tasks.iter().find(|t| t.id == *tid).cloned();
                let task = task.ok_or_else(|| RfError::not_found(&task_uri(*tid)))?;
                self.task_json(&task)
            }
            Res::UpdateService => json!({
                "@odata.type": T_UPDATE_SERVICE,
                "@odata.id": format!("{R}/UpdateService"),
                "Id": "UpdateService",
                "Name": "Update Service",
                "ServiceEnabled": true,
                "Status": status(),
                "FirmwareInventory": id(&format!("{R}/UpdateService/FirmwareInventory")),
                "Actions": {
                    "#UpdateService.SimpleUpdate": {
                        "target": format!("{R}/UpdateService/Actions/UpdateService.SimpleUpdate"),
                        "TransferProtocol@Redfish.AllowableValues": TRANSFER_PROTOCOLS,
                    }
                },
            }),
            Res::Firmwares => collection(
                T_FIRMWARES,
                &format!("{R}/UpdateService/FirmwareInventory"),
                "Firmware Inventory Collection",
                FIRMWARE.iter().map(|f| format!("{R}/UpdateService/FirmwareInventory/{f}")).collect(),
            ),
            Res::Firmware(i) => {
                let st = self.inner.state.lock();
                let (name, version, related) = if *i == 0 {
                    ("BMC", st.bmc_version.clone(), mgr.clone())
                } else {
                    ("BIOS", st.bios_version.clone(), format!("{sys}/Bios"))
                };
                json!({
                    "@odata.type": T_FIRMWARE,
                    "@odata.id": format!("{R}/UpdateService/FirmwareInventory/{name}"),
                    "Id": name,
                    "Name": format!("{name} Firmware"),
                    "Version": version,
                    "Updateable": true,
                    "Status": status(),
                    "RelatedItem": [id(&related)],
                })
            }
            Res::SystemReset | Res::BiosReset | Res::VMediaInsert(..) | Res::VMediaEject(..) | Res::SimpleUpdate => {
                return Err(RfError::internal("an action has no representation"));
            }
        })
    }

    pub(super) fn session_json(&self, sid: u64) -> Option<Value> {
        let st = self.inner.state.lock();
        let s = st.sessions.get(&sid)?;
        Some(json!({
            "@odata.type": T_SESSION,
            "@odata.id": session_uri(sid),
            "Id": sid.to_string(),
            "Name": "User Session",
            "UserName": s.user,
            "CreatedTime": self.timestamp(s.created),
            "Password": null,
        }))
    }

    pub(super) fn task_json(&self, t: &Task) -> Value {
        let (state, pct) = t.state(Instant::now());
        let (status, messages) = match state {
            TaskState::Completed => (
                "OK",
                vec![json!({
                    "@odata.type": T_MESSAGE,
                    "MessageId": "TaskEvent.1.0.TaskCompletedOK",
                    "Message": format!("The task with Id '{}' has completed.", t.id),
                    "MessageArgs": [t.id.to_string()],
                    "Severity": "OK",
                    "MessageSeverity": "OK",
                })],
            ),
            TaskState::Exception => (
                "Critical",
                vec![json!({
                    "@odata.type": T_MESSAGE,
                    "MessageId": "TaskEvent.1.0.TaskAborted",
                    "Message": format!("The task with Id '{}' has been aborted: the image {} could not be applied.", t.id, t.image),
                    "MessageArgs": [t.id.to_string()],
                    "Severity": "Critical",
                    "MessageSeverity": "Critical",
                })],
            ),
            TaskState::New | TaskState::Running => (
                "OK",
                vec![json!({
                    "@odata.type": T_MESSAGE,
                    "MessageId": "TaskEvent.1.0.TaskStarted",
                    "Message": format!("The task with Id '{}' has started.", t.id),
                    "MessageArgs": [t.id.to_string()],
                    "Severity": "OK",
                    "MessageSeverity": "OK",
                })],
            ),
        };
        let mut v = json!({
            "@odata.type": T_TASK,
            "@odata.id": task_uri(t.id),
            "Id": t.id.to_string(),
            "Name": format!("Firmware update from {}", t.image),
            "TaskState": state.as_str(),
            "TaskStatus": status,
            "PercentComplete": pct,
            "StartTime": self.timestamp(t.started),
            "TaskMonitor": task_monitor_uri(t.id),
            "Messages": messages,
        });
        if matches!(state, TaskState::Completed | TaskState::Exception) {
            v["EndTime"] = json!(self.timestamp(t.started + t.duration));
        }
        v
    }
}
