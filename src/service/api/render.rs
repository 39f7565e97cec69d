//! Renders stored records as Ironic's API shows them at a given microversion: the same keys in
//! the same order, fields newer than the request's version hidden, secrets masked.

use super::Ctx;
use super::microversion::{AVAILABLE_STATE, INSPECT_WAIT_STATE, PORTGROUP_MODE_PROPERTIES};
use super::responses::links;
use ferric_types::models::{Chassis, JsonMap, Node, Port, Portgroup};
use serde_json::{Map, Value, json};

/// Node fields in Ironic's order, with the minor version that introduced each (1 = always).
/// Link fields (`links`, `ports`, `states`, `portgroups`, `volume`) are included.
pub const NODE_FIELDS: &[(&str, u32)] = &[
    ("uuid", 1),
    ("created_at", 1),
    ("updated_at", 1),
    ("automated_clean", 47),
    ("bios_interface", 40),
    ("boot_interface", 31),
    ("boot_mode", 75),
    ("clean_step", 7),
    ("conductor_group", 46),
    ("console_enabled", 1),
    ("console_interface", 31),
    ("deploy_interface", 31),
    ("deploy_step", 44),
    ("description", 51),
    ("driver", 1),
    ("driver_info", 1),
    ("driver_internal_info", 3),
    ("extra", 1),
    ("fault", 42),
    ("firmware_interface", 86),
    ("inspection_finished_at", 6),
    ("inspection_started_at", 6),
    ("inspect_interface", 31),
    ("instance_info", 1),
    ("instance_uuid", 1),
    ("last_error", 1),
    ("lessee", 65),
    ("maintenance", 1),
    ("maintenance_reason", 1),
    ("management_interface", 31),
    ("name", 5),
    ("network_data", 66),
    ("network_interface", 20),
    ("owner", 50),
    ("parent_node", 83),
    ("power_interface", 31),
    ("power_state", 1),
    ("properties", 1),
    ("protected", 48),
    ("protected_reason", 48),
    ("provision_state", 1),
    ("provision_updated_at", 1),
    ("raid_config", 12),
    ("raid_interface", 31),
    ("rescue_interface", 38),
    ("reservation", 1),
    ("resource_class", 21),
    ("retired", 61),
    ("retired_reason", 61),
    ("secure_boot", 75),
    ("service_step", 87),
    ("shard", 82),
    ("storage_interface", 33),
    ("target_power_state", 1),
    ("target_provision_state", 1),
    ("target_raid_config", 12),
    ("traits", 37),
    ("vendor_interface", 31),
    ("links", 1),
    ("conductor", 49),
    ("allocation_uuid", 52),
    ("chassis_uuid", 1),
    ("ports", 1),
    ("states", 14),
    ("portgroups", 24),
    ("volume", 32),
];

/// The fields a plain node listing shows.
pub const NODE_LIST_FIELDS: &[&str] =
    &["uuid", "instance_uuid", "maintenance", "power_state", "provision_state", "name"];

/// Minimum version of a node field, if it is one.
pub fn node_field_version(name: &str) -> Option<u32> {
    NODE_FIELDS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Key fragments whose values are hidden (oslo.utils' `mask_dict_password` list, abridged).
const SECRET_MARKERS: &[&str] =
    &["password", "passwd", "auth_token", "secret", "token", "configdrive", "passphrase", "private_key", "key_data"];

fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| k.contains(m))
}

/// `driver_internal_info` as Ironic shows it: with the agent's session (its URL, last heartbeat
/// and version; its token masked), which ferric keeps typed beside it.
fn driver_internal_info(n: &Node) -> Value {
    let mut m = n.driver_internal_info.clone();
    if let Some(s) = &n.agent {
        if s.token.is_some() {
            m.insert(ferric_types::models::AGENT_TOKEN_KEY.into(), Value::String("******".into()));
        }
        if let Some(u) = &s.url {
            m.insert("agent_url".into(), Value::String(u.clone()));
        }
        if let Some(t) = &s.last_heartbeat {
            m.insert("agent_last_heartbeat".into(), Value::String(t.to_rfc3339()));
        }
        if let Some(v) = &s.version {
            m.insert("agent_version".into(), Value::String(v.clone()));
        }
    }
    mask_secrets(&m)
}

/// A copy of `m` with secret values replaced by `******`, recursively.
pub fn mask_secrets(m: &JsonMap) -> Value {
    let mut out = Map::with_capacity(m.len());
    for (k, v) in m {
        let v = if is_secret(k) && !v.is_null() {
            Value::String("******".into())
        } else if let Value::Object(inner) = v {
            mask_secrets(inner)
        } else {
            v.clone()
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// For callers other than admins: also masks strings that carry a credential whatever their key,
/// temporary URLs (their signature lets anyone download the image) and URLs with a password in
/// them (`http://user:pass@host/...`).
fn restrict(ctx: &Ctx, v: Value) -> Value {
    if ctx.restricted { mask_credentials(v) } else { v }
}

/// `v` with every string that carries a credential replaced by `******`, recursively.
pub fn mask_credentials(v: Value) -> Value {
    match v {
        Value::String(s) if carries_credential(&s) => Value::String("******".into()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, mask_credentials(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(mask_credentials).collect()),
        v => v,
    }
}

fn carries_credential(s: &str) -> bool {
    if s.contains("temp_url_sig=") || s.contains("X-Amz-Signature=") {
        return true;
    }
    url::Url::parse(s).is_ok_and(|u| u.password().is_some())
}

fn ts(t: &Option<chrono::DateTime<chrono::Utc>>) -> Value {
    match t {
        Some(t) => Value::String(fmt_time(t)),
        None => Value::Null,
    }
}

/// Ironic's timestamp format: `2026-11-25T13:51:24.884463+00:00`.
pub fn fmt_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

fn opt<T: Into<Value> + Clone>(v: &Option<T>) -> Value {
    v.clone().map(Into::into).unwrap_or(Value::Null)
}

/// One node field's value (links need the context).
fn node_value(n: &Node, field: &str, ctx: &Ctx) -> Value {
    let id = n.uuid.to_string();
    match field {
        "uuid" => Value::String(id),
        "created_at" => Value::String(fmt_time(&n.created_at)),
        "updated_at" => ts(&n.updated_at),
        "automated_clean" => opt(&n.automated_clean),
        "boot_mode" => opt(&n.boot_mode),
        "clean_step" => Value::Object(n.clean_step.clone()),
        "conductor_group" => Value::String(n.conductor_group.clone()),
        "console_enabled" => Value::Bool(n.console_enabled),
        "deploy_step" => Value::Object(n.deploy_step.clone()),
        "description" => opt(&n.description),
        "driver" => Value::String(n.driver.clone()),
        "driver_info" => restrict(ctx, mask_secrets(&n.driver_info)),
        "driver_internal_info" => restrict(ctx, driver_internal_info(n)),
        "extra" => Value::Object(n.extra.clone()),
        "fault" => opt(&n.fault),
        "inspection_finished_at" => ts(&n.inspection_finished_at),
        "inspection_started_at" => ts(&n.inspection_started_at),
        "instance_info" => restrict(ctx, mask_secrets(&n.instance_info)),
        "instance_uuid" => opt(&n.instance_uuid),
        "last_error" => opt(&n.last_error),
        "lessee" => opt(&n.lessee),
        "maintenance" => Value::Bool(n.maintenance),
        "maintenance_reason" => opt(&n.maintenance_reason),
        "name" => opt(&n.name),
        "network_data" => Value::Object(n.network_data.clone()),
        "owner" => opt(&n.owner),
        "parent_node" => opt(&n.parent_node),
        "power_state" => n.power_state.map(|p| Value::String(p.as_str().into())).unwrap_or(Value::Null),
        "properties" => Value::Object(n.properties.clone()),
        "protected" => Value::Bool(n.protected),
        "protected_reason" => opt(&n.protected_reason),
        "provision_state" => {
            // Before 1.2 "available" was spelled None; before 1.39 "inspect wait" was "inspecting".
            use ferric_types::models::ProvisionState as P;
            match n.provision_state {
                P::Available if !ctx.allows(AVAILABLE_STATE) => Value::Null,
                P::InspectWait if !ctx.allows(INSPECT_WAIT_STATE) => Value::String("inspecting".into()),
                s => Value::String(s.as_str().into()),
            }
        }
        "provision_updated_at" => ts(&n.provision_updated_at),
        "raid_config" => Value::Object(n.raid_config.clone()),
        "reservation" => opt(&n.reservation),
        "resource_class" => opt(&n.resource_class),
        "retired" => Value::Bool(n.retired),
        "retired_reason" => opt(&n.retired_reason),
        "secure_boot" => opt(&n.secure_boot),
        "service_step" => Value::Object(n.service_step.clone()),
        "shard" => opt(&n.shard),
        "target_power_state" => opt(&n.target_power_state),
        "target_provision_state" => {
            n.target_provision_state.map(|p| Value::String(p.as_str().into())).unwrap_or(Value::Null)
        }
        "target_raid_config" => Value::Object(n.target_raid_config.clone()),
        "traits" => json!(n.traits),
        "links" => links(&ctx.base, &format!("nodes/{id}")),
        "conductor" => opt(&n.conductor),
        "allocation_uuid" => opt(&n.allocation_uuid),
        "chassis_uuid" => n.chassis_uuid.map(|c| Value::String(c.to_string())).unwrap_or(Value::Null),
        "ports" | "states" | "portgroups" | "volume" => links(&ctx.base, &format!("nodes/{id}/{field}")),
        f if f.ends_with("_interface") => {
            Value::String(n.interface(f.trim_end_matches("_interface")).unwrap_or_default().to_string())
        }
        _ => Value::Null,
    }
}

/// A node at the request's version: all fields, or only `fields` (plus `links`).
pub fn node(n: &Node, ctx: &Ctx, fields: Option<&[String]>) -> Value {
    let mut m = Map::with_capacity(NODE_FIELDS.len());
    for (f, min) in NODE_FIELDS {
        if !ctx.allows(*min) {
            continue;
        }
        if let Some(sel) = fields {
            if *f != "links" && !sel.iter().any(|s| s == f) {
                continue;
            }
        }
        m.insert((*f).to_string(), node_value(n, f, ctx));
    }
    Value::Object(m)
}

/// Port fields in Ironic's order, with the minor version that introduced each (1 = always).
/// Fields of versions above `MAX_MINOR` are kept so the order matches Ironic's; no request
/// reaches them yet.
pub const PORT_FIELDS: &[(&str, u32)] = &[
    ("uuid", 1),
    ("created_at", 1),
    ("updated_at", 1),
    ("address", 1),
    ("extra", 1),
    ("internal_info", 18),
    ("is_smartnic", 53),
    ("local_link_connection", 19),
    ("physical_network", 34),
    ("pxe_enabled", 19),
    ("node_uuid", 1),
    ("name", 88),
    ("description", 97),
    ("vendor", 100),
    ("category", 101),
    ("available_for_dynamic_portgroup", 111),
    ("links", 1),
    ("portgroup_uuid", 24),
];

pub fn port_field_version(name: &str) -> Option<u32> {
    PORT_FIELDS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn port_value(p: &Port, field: &str, ctx: &Ctx) -> Value {
    match field {
        "uuid" => Value::String(p.uuid.to_string()),
        "created_at" => Value::String(fmt_time(&p.created_at)),
        "updated_at" => ts(&p.updated_at),
        "address" => Value::String(p.address.to_string()),
        "extra" => Value::Object(p.extra.clone()),
        "internal_info" => Value::Object(p.internal_info.clone()),
        "is_smartnic" => Value::Bool(p.is_smartnic),
        "local_link_connection" => Value::Object(p.local_link_connection.clone()),
        "physical_network" => opt(&p.physical_network),
        "pxe_enabled" => Value::Bool(p.pxe_enabled),
        "node_uuid" => Value::String(p.node_uuid.to_string()),
        "name" => opt(&p.name),
        "description" => opt(&p.description),
        "vendor" => opt(&p.vendor),
        "category" => opt(&p.category),
        "available_for_dynamic_portgroup" => Value::Bool(p.available_for_dynamic_portgroup),
        "links" => links(&ctx.base, &format!("ports/{}", p.uuid)),
        "portgroup_uuid" => p.portgroup_uuid.map(|g| Value::String(g.to_string())).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

pub fn port(p: &Port, ctx: &Ctx, fields: Option<&[String]>) -> Value {
    let mut m = Map::with_capacity(PORT_FIELDS.len());
    for (f, min) in PORT_FIELDS {
        if !ctx.allows(*min) {
            continue;
        }
        if let Some(sel) = fields {
            if *f != "links" && !sel.iter().any(|s| s == f) {
                continue;
            }
        }
        m.insert((*f).to_string(), port_value(p, f, ctx));
    }
    Value::Object(m)
}

pub fn portgroup(g: &Portgroup, ctx: &Ctx, fields: Option<&[String]>) -> Value {
    let id = g.uuid.map(|u| u.to_string()).unwrap_or_default();
    let all: Vec<(&str, Value)> = vec![
        ("uuid", Value::String(id.clone())),
        ("created_at", g.created_at.as_ref().map(|t| Value::String(fmt_time(t))).unwrap_or(Value::Null)),
        ("updated_at", ts(&g.updated_at)),
        ("name", opt(&g.name)),
        ("address", opt(&g.address)),
        ("extra", Value::Object(g.extra.clone())),
        ("internal_info", Value::Object(g.internal_info.clone())),
        ("standalone_ports_supported", Value::Bool(g.standalone_ports_supported)),
        ("node_uuid", g.node_uuid.map(|n| Value::String(n.to_string())).unwrap_or(Value::Null)),
        ("mode", opt(&g.mode)),
        ("properties", Value::Object(g.properties.clone())),
        ("links", links(&ctx.base, &format!("portgroups/{id}"))),
        ("ports", links(&ctx.base, &format!("portgroups/{id}/ports"))),
    ];
    let mut m = Map::new();
    for (k, v) in all {
        if matches!(k, "mode" | "properties") && !ctx.allows(PORTGROUP_MODE_PROPERTIES) {
            continue;
        }
        if let Some(sel) = fields {
            if k != "links" && !sel.iter().any(|s| s == k) {
                continue;
            }
        }
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

pub fn chassis(c: &Chassis, ctx: &Ctx, fields: Option<&[String]>) -> Value {
    let id = c.uuid.map(|u| u.to_string()).unwrap_or_default();
    let all: Vec<(&str, Value)> = vec![
        ("uuid", Value::String(id.clone())),
        ("created_at", c.created_at.as_ref().map(|t| Value::String(fmt_time(t))).unwrap_or(Value::Null)),
        ("updated_at", ts(&c.updated_at)),
        ("description", opt(&c.description)),
        ("extra", Value::Object(c.extra.clone())),
        ("links", links(&ctx.base, &format!("chassis/{id}"))),
        ("nodes", links(&ctx.base, &format!("chassis/{id}/nodes"))),
    ];
    let mut m = Map::new();
    for (k, v) in all {
        if let Some(sel) = fields {
            if k != "links" && !sel.iter().any(|s| s == k) {
                continue;
            }
        }
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}
