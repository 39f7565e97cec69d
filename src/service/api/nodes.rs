//! `/v1/nodes` and everything under it.

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Query, parse_bool};
use super::microversion::{
    AVAILABLE_STATE, BIOS_INTERFACE, BUILD_CONFIGDRIVE, CHILD_NODES, CLEAN_DISABLE_RAMDISK, CONDUCTOR_GROUP,
    CONDUCTORS, CONFIGDRIVE_VENDOR_DATA, DEPLOY_STEPS, DEPLOY_WAIT_ABORT, DETAIL_QUERY, DRIVER_FILTER, ENROLL_STATE,
    FIRMWARE_INTERFACE, INITIAL_VERSION, INSPECT_WAIT_STATE, INSPECTION_ABORT, NODE_FAULT, NODE_LESSEE, NODE_NAME,
    NODE_OWNER, NODE_TRAITS, PROVISION_STATE_FILTER, REBUILD_CONFIGDRIVE, RESCUE_INTERFACE, RESET_INTERFACES,
    RESOURCE_CLASS, SHARDS, SOFT_POWER_OFF, STORAGE_INTERFACE, UNSET_CHASSIS_UUID, VIF_ATTACH_PORT, VIFS,
};
use super::paging;
use super::render::{self, NODE_LIST_FIELDS};
use super::responses::{accepted, json_response, links, no_content, ok};
use super::{ApiState, Ctx};
use crate::db::{NODE_SORT_KEYS, NodeFilter, NodeQuery};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use ferric_types::models::{BootDevice, JsonMap, Node, NodeId, PowerTarget, ProvisionState};
use ferric_types::rpc::ProvisionArgs;
use ferric_types::state_machine::{Event, Verb};
use ferric_types::trace::{Actor, seed};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/nodes", get(list).post(create))
        .route("/nodes/detail", get(list_detail))
        .route("/nodes/{node}", get(show).patch(update).delete(destroy))
        .route("/nodes/{node}/states", get(states))
        .route("/nodes/{node}/states/power", put(set_power))
        .route("/nodes/{node}/states/provision", put(set_provision))
        .route("/nodes/{node}/management/boot_device", get(get_boot_device).put(set_boot_device))
        .route("/nodes/{node}/management/boot_device/supported", get(supported_boot_devices))
        .route("/nodes/{node}/validate", get(validate))
        .route("/nodes/{node}/maintenance", put(maintenance_on).delete(maintenance_off))
        .route("/nodes/{node}/vifs", get(vif_list).post(vif_attach))
        .route("/nodes/{node}/vifs/{vif}", delete(vif_detach))
        .route("/nodes/{node}/traits", get(traits_list).put(traits_set).delete(traits_clear))
        .route("/nodes/{node}/traits/{name}", put(trait_add).delete(trait_remove))
        .route("/nodes/{node}/ports", get(super::ports::node_ports))
        .route("/nodes/{node}/ports/detail", get(super::ports::node_ports_detail))
        .route("/nodes/{node}/portgroups", get(super::ports::node_portgroups))
}

/// Loads a node by UUID or name (names need 1.5).
pub(super) fn load(state: &ApiState, ctx: &Ctx, ident: &str) -> Result<Node, ApiError> {
    if ident.parse::<NodeId>().is_err() && !ctx.allows(NODE_NAME) {
        return Err(ApiError::not_found(format!("Node {ident} could not be found.")));
    }
    let mut n = state.db.get_node(ident)?;
    n.conductor = state.rpc.conductor_for(&n);
    Ok(n)
}

/// Hands `f` the node by reference, without copying it, for handlers that read a few of its
/// fields (heartbeats and provision requests are frequent). The node is the committed one, but
/// its `reservation`, `allocation_uuid` and `conductor` are not filled in: use [`load`] for those.
pub(super) fn view<T>(state: &ApiState, ctx: &Ctx, ident: &str, f: impl FnOnce(&Node) -> T) -> Result<T, ApiError> {
    match ident.parse::<NodeId>() {
        Ok(id) => Ok(state.db.view_node(id, |n, _| f(n))?),
        Err(_) => Ok(f(&load(state, ctx, ident)?)),
    }
}

fn node_location(ctx: &Ctx, n: &Node) -> String {
    format!("{}/v1/nodes/{}", ctx.base, n.uuid)
}

fn states_location(ctx: &Ctx, node: NodeId) -> String {
    format!("{}/v1/nodes/{}/states", ctx.base, node)
}

// ---------------------------------------------------------------- listing

fn node_filter(ctx: &Ctx, q: &Query) -> Result<NodeFilter, ApiError> {
    let gated = |k: &str, min: u32| -> Result<Option<String>, ApiError> {
        match q.get(k) {
            Some(_) if !ctx.allows(min) => Err(ApiError::not_acceptable_min(min)),
            Some(v) => Ok(Some(v.to_string())),
            None => Ok(None),
        }
    };
    let provision_state = match q.get("provision_state") {
        None => None,
        Some(_) if !ctx.allows(PROVISION_STATE_FILTER) => return Err(ApiError::not_acceptable()),
        Some(s) => Some(
            s.parse::<ProvisionState>()
                .map_err(|_| ApiError::bad_request(format!("Provision state \"{s}\" is not valid")))?,
        ),
    };
    let fault = gated("fault", NODE_FAULT)?;
    if let Some(f) = &fault {
        if !["power failure", "clean failure", "rescue abort failure", "service failure"].contains(&f.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Unrecognized fault \"{f}\" is specified, allowed faults are ('power failure', 'clean failure', 'rescue abort failure', 'service failure')"
            )));
        }
    }
    if q.get("instance_name").is_some() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            "instance_name is not acceptable in this API version",
        ));
    }
    let shards =
        gated("shard", SHARDS)?.map(|s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect());
    let sharded = match q.get("sharded") {
        Some(_) if !ctx.allows(SHARDS) => return Err(ApiError::not_acceptable_min(SHARDS)),
        _ => q.bool("sharded")?,
    };
    let parent_node = gated("parent_node", CHILD_NODES)?;
    let include_children = match q.get("include_children") {
        Some(_) if !ctx.allows(CHILD_NODES) => return Err(ApiError::not_acceptable_min(CHILD_NODES)),
        _ => q.bool("include_children")?,
    };
    let chassis_uuid = match q.get("chassis_uuid") {
        Some(c) => {
            c.parse::<uuid::Uuid>()
                .map_err(|_| ApiError::bad_request(format!("Expected UUID for chassis_uuid: {c}")))?;
            Some(c.to_string())
        }
        None => None,
    };
    let instance_uuid = match q.get("instance_uuid") {
        Some(c) => {
            c.parse::<uuid::Uuid>()
                .map_err(|_| ApiError::bad_request(format!("Expected UUID for instance_uuid: {c}")))?;
            Some(c.to_string())
        }
        None => None,
    };
    Ok(NodeFilter {
        provision_state,
        driver: gated("driver", DRIVER_FILTER)?,
        resource_class: gated("resource_class", RESOURCE_CLASS)?,
        maintenance: q.bool("maintenance")?,
        associated: q.bool("associated")?,
        fault,
        conductor_group: gated("conductor_group", CONDUCTOR_GROUP)?,
        chassis_uuid,
        instance_uuid,
        owner: gated("owner", NODE_OWNER)?,
        lessee: gated("lessee", NODE_LESSEE)?,
        shard: None,
        reserved: None,
        provision_states: None,
        retired: q.bool("retired")?,
        description_contains: q.get("description_contains").map(str::to_string),
        project: q.get("project").map(str::to_string),
        shards,
        sharded,
        parent_node,
        include_children: Some(include_children.unwrap_or(false)),
    })
}

/// Query arguments repeated in `next` links, in Ironic's order.
fn next_args(q: &NodeQuery, fields: Option<&[String]>, raw: &Query) -> Vec<(&'static str, String)> {
    let mut a = vec![
        ("sort_key", if q.sort_key.is_empty() { "id".to_string() } else { q.sort_key.clone() }),
        (
            "sort_dir",
            match q.sort_dir {
                crate::db::SortDir::Asc => "asc".into(),
                crate::db::SortDir::Desc => "desc".into(),
            },
        ),
    ];
    if let Some(f) = fields {
        a.push(("fields", f.join(",")));
    }
    for k in [
        "provision_state",
        "driver",
        "resource_class",
        "maintenance",
        "associated",
        "fault",
        "conductor_group",
        "chassis_uuid",
        "instance_uuid",
        "owner",
        "lessee",
        "shard",
        "retired",
        "description_contains",
        "project",
        "sharded",
        "include_children",
        "parent_node",
        "conductor",
    ] {
        if let Some(v) = raw.get(k) {
            a.push((k, v.to_string()));
        }
    }
    a
}

fn parse_query(ctx: &Ctx, q: &Query) -> Result<NodeQuery, ApiError> {
    let marker = match q.get("marker") {
        Some(m) => {
            Some(m.parse::<NodeId>().map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {m}.")))?)
        }
        None => None,
    };
    Ok(NodeQuery {
        filter: node_filter(ctx, q)?,
        sort_key: paging::sort_key(q, NODE_SORT_KEYS)?,
        sort_dir: paging::sort_dir(q)?,
        limit: paging::limit(q)?,
        marker,
    })
}

async fn list(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    if q.bool("detail")? == Some(true) {
        if !ctx.allows(DETAIL_QUERY) {
            return Err(ApiError::not_acceptable());
        }
        if q.get("fields").is_some() {
            return Err(ApiError::bad_request("Can not specify ?detail=True and fields in the same request."));
        }
        return list_impl(&state, &ctx, &q, true, "nodes");
    }
    list_impl(&state, &ctx, &q, false, "nodes")
}

async fn list_detail(State(state): State<ApiState>, ctx: Ctx, q: Query) -> ApiResult {
    if q.get("fields").is_some() {
        return Err(ApiError::bad_request("Can not specify ?detail=True and fields in the same request."));
    }
    list_impl(&state, &ctx, &q, true, "nodes/detail")
}

fn list_impl(state: &ApiState, ctx: &Ctx, q: &Query, detail: bool, path: &str) -> ApiResult {
    let mut nq = parse_query(ctx, q)?;
    if let Some(scope) = &ctx.scope {
        // A project-scoped caller sees its project's nodes: another project asked for is nothing.
        if nq.filter.project.as_ref().is_some_and(|p| p != scope) {
            return ok(&json!({"nodes": []}));
        }
        nq.filter.project = Some(scope.clone());
    }
    if let Some(c) = q.get("conductor") {
        if !ctx.allows(CONDUCTORS) {
            return Err(ApiError::not_acceptable_min(CONDUCTORS));
        }
        // One conductor serves every node: another host's list is empty.
        if state.rpc.conductor_for(&Node::default()).as_deref() != Some(c) {
            return ok(&json!({"nodes": []}));
        }
    }
    if let Some(c) = &nq.filter.chassis_uuid {
        if let Ok(id) = c.parse() {
            state.db.get_chassis(id)?;
        }
    }
    let fields = paging::fields(ctx, q, &render::node_field_version)?;
    let limit = nq.limit.unwrap_or(paging::MAX_PAGE);
    let mut items = Vec::new();
    let mut last: Option<String> = None;
    let plain = !detail && fields.is_none();
    if plain {
        // The common listing reads only its own columns.
        let rows = state.db.list_node_summaries(&nq)?;
        for s in &rows {
            let mut m = Map::new();
            m.insert("uuid".into(), Value::String(s.uuid.to_string()));
            m.insert("instance_uuid".into(), json!(s.instance_uuid));
            m.insert("maintenance".into(), Value::Bool(s.maintenance));
            m.insert("power_state".into(), json!(s.power_state.map(|p| p.as_str())));
            let ps = match s.provision_state {
                ProvisionState::Available if !ctx.allows(AVAILABLE_STATE) => Value::Null,
                ProvisionState::InspectWait if !ctx.allows(INSPECT_WAIT_STATE) => json!("inspecting"),
                p => json!(p.as_str()),
            };
            m.insert("provision_state".into(), ps);
            if ctx.allows(NODE_NAME) {
                m.insert("name".into(), json!(s.name));
            }
            m.insert("links".into(), links(&ctx.base, &format!("nodes/{}", s.uuid)));
            items.push(Value::Object(m));
        }
        if rows.len() == limit {
            last = rows.last().map(|s| s.uuid.to_string());
        }
    } else {
        let nodes = state.db.list_nodes(&nq)?;
        for n in &nodes {
            let mut n = n.clone();
            n.conductor = state.rpc.conductor_for(&n);
            items.push(render::node(&n, ctx, fields.as_deref()));
        }
        if nodes.len() == limit {
            last = nodes.last().map(|n| n.uuid.to_string());
        }
    }
    let mut body = Map::new();
    body.insert("nodes".into(), Value::Array(items));
    if let Some(m) = last {
        let shown: Option<Vec<String>> = if plain {
            Some(
                ["instance_uuid", "maintenance", "power_state", "provision_state", "uuid", "name"]
                    .iter()
                    .filter(|f| **f != "name" || ctx.allows(NODE_NAME))
                    .map(|s| s.to_string())
                    .collect(),
            )
        } else {
            fields.clone()
        };
        let args = next_args(&nq, shown.as_deref(), q);
        body.insert("next".into(), Value::String(paging::next_link(ctx, path, &args, limit, &m)));
    }
    let _ = NODE_LIST_FIELDS;
    ok(&Value::Object(body))
}

async fn show(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>, q: Query) -> ApiResult {
    let fields = paging::fields(&ctx, &q, &render::node_field_version)?;
    let n = load(&state, &ctx, &ident)?;
    ok(&render::node(&n, &ctx, fields.as_deref()))
}

// ---------------------------------------------------------------- create / update / delete

/// Fields a client may set, with the minor version that allows each.
const WRITABLE: &[(&str, u32)] = &[
    ("uuid", 1),
    ("name", 5),
    ("driver", 1),
    ("driver_info", 1),
    ("extra", 1),
    ("instance_info", 1),
    ("instance_uuid", 1),
    ("properties", 1),
    ("chassis_uuid", 1),
    ("maintenance", 1),
    ("maintenance_reason", 1),
    ("network_interface", 20),
    ("resource_class", 21),
    ("boot_interface", 31),
    ("console_interface", 31),
    ("deploy_interface", 31),
    ("inspect_interface", 31),
    ("management_interface", 31),
    ("power_interface", 31),
    ("raid_interface", 31),
    ("vendor_interface", 31),
    ("storage_interface", 33),
    ("rescue_interface", 38),
    ("bios_interface", 40),
    ("conductor_group", 46),
    ("automated_clean", 47),
    ("protected", 48),
    ("protected_reason", 48),
    ("owner", 50),
    ("description", 51),
    ("retired", 61),
    ("retired_reason", 61),
    ("lessee", 65),
    ("network_data", 66),
    ("shard", 82),
    ("parent_node", 83),
    ("firmware_interface", 86),
];

fn writable_version(f: &str) -> Option<u32> {
    WRITABLE.iter().find(|(n, _)| *n == f).map(|(_, v)| *v)
}

fn type_error(field: &str, v: &Value, expected: &str) -> ApiError {
    ApiError::bad_request(format!("Invalid input for field/attribute {field}. Value: {v}. Expected {expected}"))
}

/// Ironic's logical-name rule (RFC 3986 unreserved characters; not a UUID).
pub(super) fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        && name.parse::<uuid::Uuid>().is_err();
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Cannot use {name:?} as a node name: it must be a logical name of RFC 3986 unreserved characters, not a UUID."
        )))
    }
}

/// Copies one client-supplied field into the node, checking its type.
fn set_field(n: &mut Node, field: &str, v: &Value) -> Result<(), ApiError> {
    let opt_str = |v: &Value| -> Result<Option<String>, ApiError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(type_error(field, v, "a string")),
        }
    };
    let map = |v: &Value| -> Result<JsonMap, ApiError> {
        match v {
            Value::Null => Ok(JsonMap::new()),
            Value::Object(m) => Ok(m.clone()),
            _ => Err(type_error(field, v, "an object")),
        }
    };
    let boolean = |v: &Value| -> Result<bool, ApiError> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::Null => Ok(false),
            Value::String(s) => parse_bool(s).ok_or_else(|| type_error(field, v, "a boolean")),
            _ => Err(type_error(field, v, "a boolean")),
        }
    };
    match field {
        "uuid" => {
            let s = opt_str(v)?.ok_or_else(|| type_error(field, v, "a UUID"))?;
            n.uuid = s.parse().map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {s}.")))?;
        }
        "name" => {
            n.name = opt_str(v)?;
            if let Some(name) = &n.name {
                check_name(name)?;
            }
        }
        "driver" => n.driver = opt_str(v)?.ok_or_else(|| type_error(field, v, "a string"))?,
        "driver_info" => n.driver_info = map(v)?,
        "extra" => n.extra = map(v)?,
        "instance_info" => n.instance_info = map(v)?,
        "properties" => n.properties = map(v)?,
        "network_data" => n.network_data = map(v)?,
        "instance_uuid" => {
            n.instance_uuid = opt_str(v)?;
            if let Some(u) = &n.instance_uuid {
                u.parse::<uuid::Uuid>()
                    .map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {u}.")))?;
            }
        }
        "chassis_uuid" => {
            n.chassis_uuid = match opt_str(v)? {
                None => None,
                Some(s) => {
                    Some(s.parse().map_err(|_| ApiError::bad_request(format!("Expected a UUID but received {s}.")))?)
                }
            }
        }
        "maintenance" => n.maintenance = boolean(v)?,
        "maintenance_reason" => n.maintenance_reason = opt_str(v)?,
        "resource_class" => {
            n.resource_class = opt_str(v)?;
            if n.resource_class.as_ref().is_some_and(|r| r.len() > 80) {
                return Err(ApiError::bad_request("resource_class is longer than 80 characters."));
            }
        }
        "conductor_group" => {
            let g = opt_str(v)?.unwrap_or_default();
            if g.len() > 255 || !g.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
                return Err(ApiError::bad_request(format!("Invalid conductor group {g:?}.")));
            }
            n.conductor_group = g;
        }
        "automated_clean" => {
            n.automated_clean = match v {
                Value::Null => None,
                other => Some(boolean(other)?),
            }
        }
        "protected" => n.protected = boolean(v)?,
        "protected_reason" => n.protected_reason = opt_str(v)?,
        "owner" => n.owner = opt_str(v)?,
        "lessee" => n.lessee = opt_str(v)?,
        "description" => n.description = opt_str(v)?,
        "retired" => n.retired = boolean(v)?,
        "retired_reason" => n.retired_reason = opt_str(v)?,
        "shard" => n.shard = opt_str(v)?,
        "parent_node" => n.parent_node = opt_str(v)?,
        f if f.ends_with("_interface") => {
            let slot = n
                .interface_mut(f.trim_end_matches("_interface"))
                .ok_or_else(|| type_error(field, v, "an interface"))?;
            *slot = opt_str(v)?.unwrap_or_default();
        }
        _ => return Err(ApiError::bad_request(format!("Unknown attribute {field}."))),
    }
    Ok(())
}

async fn create(State(state): State<ApiState>, ctx: Ctx, JsonBody(body): JsonBody<Value>) -> ApiResult {
    let Value::Object(obj) = body else {
        return Err(ApiError::bad_request("Invalid input: the node must be a JSON object."));
    };
    let mut n = Node { uuid: NodeId(state.clock.new_uuid()), ..Default::default() };
    let unexpected: Vec<&String> = obj.keys().filter(|k| writable_version(k).is_none()).collect();
    if !unexpected.is_empty() {
        let names: Vec<String> = unexpected.iter().map(|k| format!("'{k}'")).collect();
        return Err(ApiError::bad_request(format!(
            "Additional properties are not allowed ({} {} unexpected)",
            names.join(", "),
            if names.len() == 1 { "was" } else { "were" }
        )));
    }
    if !obj.contains_key("driver") {
        return Err(ApiError::bad_request("'driver' is a required property"));
    }
    for (k, v) in &obj {
        let min = writable_version(k).unwrap_or(u32::MAX);
        if !(ctx.allows(min) || k == "name" && v.is_null()) {
            return Err(ApiError::not_acceptable());
        }
        set_field(&mut n, k, v)?;
    }
    if n.maintenance_reason.is_some() && !n.maintenance {
        n.maintenance_reason = None;
    }
    if let Some(c) = n.chassis_uuid {
        state.db.get_chassis(c).map_err(|_| ApiError::bad_request(format!("Chassis {c} could not be found.")))?;
    }
    n.parent_node = resolve_parent(&state, &ctx, n.parent_node.as_deref())?;
    // Before 1.11 new nodes start as "available".
    n.provision_state = if ctx.allows(ENROLL_STATE) { ProvisionState::Enroll } else { ProvisionState::Available };
    let created = state.rpc.create_node(n).await?;
    let mut r = json_response(StatusCode::CREATED, &render::node(&created, &ctx, None));
    if let Ok(v) = axum::http::HeaderValue::from_str(&node_location(&ctx, &created)) {
        r.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    Ok(r)
}

/// A parent node by UUID or name, stored as its UUID (Ironic's `authorize_node_link`).
fn resolve_parent(state: &ApiState, ctx: &Ctx, ident: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(ident) = ident.filter(|i| !i.is_empty()) else { return Ok(None) };
    let p = load(state, ctx, ident).map_err(|_| {
        ApiError::bad_request(format!(
            "Unable to apply the requested parent_node '{ident}'. Requested value was invalid."
        ))
    })?;
    Ok(Some(p.uuid.to_string()))
}

/// Fields no patch may touch (Ironic's internal attributes).
const READ_ONLY: &[&str] = &[
    "uuid",
    "created_at",
    "updated_at",
    "console_enabled",
    "driver_internal_info",
    "inspection_finished_at",
    "inspection_started_at",
    "last_error",
    "power_state",
    "provision_state",
    "provision_updated_at",
    "reservation",
    "target_power_state",
    "target_provision_state",
    "raid_config",
    "target_raid_config",
    "clean_step",
    "deploy_step",
    "service_step",
    "fault",
    "conductor",
    "allocation_uuid",
    "boot_mode",
    "secure_boot",
    "links",
    "ports",
    "states",
    "portgroups",
    "volume",
];

/// The writable view of a node that patches apply to (unmasked, as Ironic patches `as_dict()`).
fn patch_doc(n: &Node) -> Value {
    let mut m = Map::new();
    for (f, _) in WRITABLE {
        let v = match *f {
            "uuid" => json!(n.uuid.to_string()),
            "name" => json!(n.name),
            "driver" => json!(n.driver),
            "driver_info" => Value::Object(n.driver_info.clone()),
            "extra" => Value::Object(n.extra.clone()),
            "instance_info" => Value::Object(n.instance_info.clone()),
            "instance_uuid" => json!(n.instance_uuid),
            "properties" => Value::Object(n.properties.clone()),
            "chassis_uuid" => json!(n.chassis_uuid.map(|c| c.to_string())),
            "maintenance" => json!(n.maintenance),
            "maintenance_reason" => json!(n.maintenance_reason),
            "resource_class" => json!(n.resource_class),
            "conductor_group" => json!(n.conductor_group),
            "automated_clean" => json!(n.automated_clean),
            "protected" => json!(n.protected),
            "protected_reason" => json!(n.protected_reason),
            "owner" => json!(n.owner),
            "description" => json!(n.description),
            "retired" => json!(n.retired),
            "retired_reason" => json!(n.retired_reason),
            "lessee" => json!(n.lessee),
            "network_data" => Value::Object(n.network_data.clone()),
            "shard" => json!(n.shard),
            "parent_node" => json!(n.parent_node),
            f if f.ends_with("_interface") => json!(n.interface(f.trim_end_matches("_interface"))),
            _ => Value::Null,
        };
        m.insert((*f).to_string(), v);
    }
    Value::Object(m)
}

/// Applies an RFC 6902 patch to a document, with Ironic's root-attribute rules and messages.
pub(super) fn apply_patch(
    doc: &mut Value,
    patch: Value,
    ctx: &Ctx,
    read_only: &[&str],
    writable: &dyn Fn(&str) -> Option<u32>,
) -> Result<Vec<String>, ApiError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| ApiError::bad_request(format!("Invalid patch: {e}")))?;
    if ops.0.is_empty() {
        return Err(ApiError::bad_request("Invalid patch: the patch is empty."));
    }
    let mut roots = Vec::new();
    for op in &ops.0 {
        let path = op.path().to_string();
        let root = path.trim_start_matches('/').split('/').next().unwrap_or("").to_string();
        if root.is_empty() {
            return Err(ApiError::bad_request(format!("Invalid patch path {path:?}.")));
        }
        if read_only.contains(&root.as_str()) {
            return Err(ApiError::bad_request(format!("'/{root}' is an internal attribute and can not be updated")));
        }
        match writable(&root) {
            None => {
                return Err(ApiError::bad_request(format!(
                    "Adding a new attribute (/{root}) to the root of the resource is not allowed."
                )));
            }
            Some(min) if !ctx.allows(min) => return Err(ApiError::not_acceptable()),
            Some(_) => {}
        }
        if let json_patch::PatchOperation::Remove(_) = op {
            if path.matches('/').count() == 1 && root == "driver" {
                return Err(ApiError::bad_request("'/driver' is a mandatory attribute and can not be removed"));
            }
        }
        roots.push(root);
    }
    let mut work = doc.clone();
    json_patch::patch_unsafe(&mut work, &ops.0).map_err(|e| {
        ApiError::bad_request(format!("Invalid patch: operation {} on {} failed: {}", e.operation, e.path, e.kind))
    })?;
    *doc = work;
    Ok(roots)
}

#[derive(serde::Deserialize)]
struct PatchParams {
    reset_interfaces: Option<String>,
}

async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    q: Query,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult {
    let reset = match (PatchParams { reset_interfaces: q.get("reset_interfaces").map(str::to_string) }).reset_interfaces
    {
        None => false,
        Some(v) => {
            if !ctx.allows(RESET_INTERFACES) {
                return Err(ApiError::not_acceptable());
            }
            parse_bool(&v)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid boolean value for reset_interfaces: {v}")))?
        }
    };
    if reset {
        let changes_driver = patch.as_array().is_some_and(|ops| {
            ops.iter().any(|op| {
                op.get("path").and_then(|p| p.as_str()) == Some("/driver")
                    && op.get("op").and_then(|o| o.as_str()) != Some("remove")
            })
        });
        if !changes_driver {
            return Err(ApiError::bad_request(
                "The reset_interfaces parameter can only be used when changing the node's driver.",
            ));
        }
    }
    // Optimistic concurrency: the patch applies to the node as read; if the conductor finds the
    // node changed meanwhile (a deploy step finished, say), read it again and re-apply.
    let mut attempt = 0;
    loop {
        match patch_once(&state, &ctx, &ident, reset, patch.clone()).await {
            Err(e) if e.stale && attempt < 5 => attempt += 1,
            other => return other,
        }
    }
}

async fn patch_once(state: &ApiState, ctx: &Ctx, ident: &str, reset: bool, patch: Value) -> ApiResult {
    let (state, ctx, ident) = (state.clone(), ctx.clone(), ident.to_string());
    let node = load(&state, &ctx, &ident)?;
    if let Value::Array(ops) = &patch {
        if ops.iter().any(|op| {
            op.get("path").and_then(|p| p.as_str()).is_some_and(|p| p == "/traits" || p.starts_with("/traits/"))
        }) {
            return Err(ApiError::bad_request(
                "Cannot update node traits via node patch. Node traits should be updated via the node traits API.",
            ));
        }
    }
    let mut doc = patch_doc(&node);
    let roots = apply_patch(&mut doc, patch, &ctx, READ_ONLY, &writable_version)?;
    let Value::Object(obj) = doc else { return Err(ApiError::bad_request("Invalid patch result.")) };
    let mut updated = node.clone();
    for root in &roots {
        let v = obj.get(root).cloned().unwrap_or(Value::Null);
        set_field(&mut updated, root, &v)?;
    }
    if updated.driver.is_empty() {
        return Err(ApiError::bad_request("'/driver' is a mandatory attribute and can not be removed"));
    }
    if updated.uuid != node.uuid {
        return Err(ApiError::bad_request("'/uuid' is an internal attribute and can not be updated"));
    }
    if !updated.maintenance {
        updated.maintenance_reason = None;
    }
    if node.allocation_uuid.is_some()
        && node.instance_uuid.is_some()
        && updated.instance_uuid.is_none()
        && !node.maintenance
        && !matches!(
            node.provision_state,
            ProvisionState::Enroll
                | ProvisionState::Inspecting
                | ProvisionState::InspectWait
                | ProvisionState::Manageable
                | ProvisionState::Available
        )
    {
        return Err(ApiError::conflict(format!(
            "Node {} with an allocation can not have instance_uuid removed unless it is in one of allowed (enroll, inspecting, inspect wait, manageable, available) states or in maintenance mode. Current state is '{}'.",
            node.uuid, node.provision_state
        )));
    }
    if node.chassis_uuid.is_some() && updated.chassis_uuid.is_none() && !ctx.allows(UNSET_CHASSIS_UUID) {
        return Err(ApiError::not_acceptable());
    }
    if updated.parent_node != node.parent_node {
        updated.parent_node = resolve_parent(&state, &ctx, updated.parent_node.as_deref())?;
    }
    if updated.chassis_uuid != node.chassis_uuid {
        if let Some(c) = updated.chassis_uuid {
            state.db.get_chassis(c).map_err(|_| ApiError::bad_request(format!("Chassis {c} could not be found.")))?;
        }
    }
    let saved = state.rpc.update_node(node.clone(), updated, reset).await?;
    if roots.iter().any(|r| r == "instance_info") {
        state.trace.record(saved.uuid, Actor::Nova, Actor::Api, seed::SET_INSTANCE_INFO);
    }
    ok(&render::node(&saved, &ctx, None))
}

async fn destroy(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    state.rpc.destroy_node(n.uuid).await?;
    no_content()
}

// ---------------------------------------------------------------- states

async fn states(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let full = render::node(&n, &ctx, None);
    let mut m = Map::new();
    // Each field with the minor version that introduced it (1 = always).
    for (f, min) in [
        ("console_enabled", 1),
        ("last_error", 1),
        ("power_state", 1),
        ("provision_state", 1),
        ("target_power_state", 1),
        ("target_provision_state", 1),
        ("provision_updated_at", 1),
        ("raid_config", 12),
        ("target_raid_config", 12),
        ("boot_mode", 75),
        ("secure_boot", 75),
    ] {
        if ctx.allows(min) {
            m.insert(f.into(), full.get(f).cloned().unwrap_or(Value::Null));
        }
    }
    ok(&Value::Object(m))
}

#[derive(serde::Deserialize)]
struct PowerBody {
    target: Value,
    #[serde(default)]
    timeout: Option<Value>,
}

async fn set_power(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody<PowerBody>,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let target_s = body.target.as_str().unwrap_or_default().to_string();
    let target: PowerTarget = target_s.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "The requested action \"{target_s}\" can not be performed on node \"{}\" while it is in state \"{}\".",
            n.uuid,
            n.power_state.map(|p| p.as_str()).unwrap_or("None")
        ))
    })?;
    if target.is_soft() && !ctx.allows(SOFT_POWER_OFF) {
        return Err(ApiError::not_acceptable());
    }
    let timeout = match body.timeout {
        None | Some(Value::Null) => None,
        Some(_) if !ctx.allows(SOFT_POWER_OFF) => return Err(ApiError::not_acceptable()),
        Some(Value::Number(t)) if t.as_u64().is_some_and(|t| t > 0) => t.as_u64(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid timeout value {other}. Timeout must be a positive integer."
            )));
        }
    };
    state.rpc.change_power_state(n.uuid, target, timeout).await?;
    accepted(states_location(&ctx, n.uuid))
}

#[derive(serde::Deserialize)]
struct ProvisionBody {
    target: Value,
    configdrive: Option<Value>,
    clean_steps: Option<Vec<Value>>,
    deploy_steps: Option<Vec<Value>>,
    service_steps: Option<Vec<Value>>,
    rescue_password: Option<String>,
    disable_ramdisk: Option<bool>,
    runbook: Option<String>,
}

fn check_steps(steps: &[Value], what: &str) -> Result<(), ApiError> {
    for s in steps {
        let ok =
            s.get("interface").and_then(|i| i.as_str()).is_some() && s.get("step").and_then(|i| i.as_str()).is_some();
        if !ok {
            return Err(ApiError::bad_request(format!(
                "Invalid {what}: each step needs \"interface\" and \"step\" (got {s})."
            )));
        }
    }
    Ok(())
}

/// What a provision request reads of its node.
struct Brief {
    uuid: NodeId,
    name: Option<String>,
    provision_state: ProvisionState,
}

/// Ironic's `check_allow_configdrive`, then a JSON configdrive (1.56; `vendor_data` 1.59) is
/// built into the gzipped, base64-encoded ISO image the node's `instance_info` keeps.
fn check_configdrive(ctx: &Ctx, n: &Brief, verb: &str, cd: Option<Value>) -> Result<Option<Value>, ApiError> {
    let empty = match &cd {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    };
    if empty {
        return Ok(cd);
    }
    let allowed = matches!(verb, "active" | "deploy") || (verb == "rebuild" && ctx.allows(REBUILD_CONFIGDRIVE));
    if !allowed {
        let targets = if ctx.allows(REBUILD_CONFIGDRIVE) { "active, rebuild" } else { "active" };
        return Err(ApiError::bad_request(format!(
            "Adding a config drive is only supported when setting provision state to {targets}"
        )));
    }
    let Some(cd) = cd else { return Ok(None) };
    let schema = json!({"anyOf": [
        {"type": "object", "properties": {
            "meta_data": {"type": "object"}, "network_data": {"type": "object"},
            "user_data": {"type": ["object", "array", "string", "null"]}, "vendor_data": {"type": "object"}},
         "additionalProperties": false},
        {"type": ["string", "null"]}]});
    if let Some(e) = ferric_types::models::schema::validate(&schema, &cd, ferric_types::models::schema::PATTERNS) {
        let detail = e.cause.unwrap_or(e.message);
        return Err(ApiError::bad_request(format!("Invalid configdrive format: {detail}")));
    }
    match cd {
        Value::Object(m) => {
            if !ctx.allows(BUILD_CONFIGDRIVE) {
                return Err(ApiError::bad_request(
                    "Providing a JSON object for configdrive is only supported starting with API version 1.56",
                ));
            }
            if m.contains_key("vendor_data") && !ctx.allows(CONFIGDRIVE_VENDOR_DATA) {
                return Err(ApiError::bad_request(
                    "Providing vendor_data in configdrive is only supported starting with API version 1.59",
                ));
            }
            let drive = super::configdrive::ConfigDrive::from_request(&m, &n.uuid.to_string(), n.name.as_deref());
            let encoded =
                drive.encoded().map_err(|e| ApiError::bad_request(format!("Invalid configdrive format: {e}")))?;
            Ok(Some(Value::String(encoded)))
        }
        Value::String(s) => {
            let b64 = |c: char| c.is_ascii_alphanumeric() || "+/=\n\r\t ".contains(c);
            if !s.contains("://") && !s.chars().all(b64) {
                return Err(ApiError::bad_request(
                    "Invalid configdrive format: it is neither a JSON, nor a URL, nor a base64 string",
                ));
            }
            Ok(Some(Value::String(s)))
        }
        other => Ok(Some(other)),
    }
}

async fn set_provision(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody<ProvisionBody>,
) -> ApiResult {
    let n = view(&state, &ctx, &ident, |n| Brief {
        uuid: n.uuid,
        name: n.name.clone(),
        provision_state: n.provision_state,
    })?;
    let target = body.target.as_str().unwrap_or_default();
    let Some(verb) = Verb::parse(target) else {
        return Err(ApiError::bad_request(format!("The requested action \"{target}\" could not be understood.")));
    };
    if !ctx.allows(verb.since()) {
        return Err(ApiError::not_acceptable());
    }
    let event = Some(verb.event());
    if body.runbook.is_some() {
        return Err(ApiError::not_acceptable());
    }
    if event == Some(Event::Abort) && n.provision_state == ProvisionState::InspectWait && !ctx.allows(INSPECTION_ABORT)
    {
        return Err(ApiError::not_acceptable());
    }
    // Abort from "wait call-back" arrived in 1.110.
    if event == Some(Event::Abort) && n.provision_state == ProvisionState::DeployWait && !ctx.allows(DEPLOY_WAIT_ABORT)
    {
        return Err(ApiError::bad_request(format!(
            "The requested action \"abort\" can not be performed on node \"{}\" while it is in state \"{}\".",
            n.uuid, n.provision_state
        )));
    }
    let configdrive = check_configdrive(&ctx, &n, verb.as_str(), body.configdrive)?;
    if body.clean_steps.is_some() && verb != Verb::Clean {
        return Err(ApiError::bad_request(
            "\"clean_steps\" is only valid when setting target provision state to clean",
        ));
    }
    if body.service_steps.is_some() && verb != Verb::Service {
        return Err(ApiError::bad_request(
            "\"service_steps\" is only valid when setting target provision state to service",
        ));
    }
    if body.deploy_steps.is_some() && !ctx.allows(DEPLOY_STEPS) {
        return Err(ApiError::not_acceptable());
    }
    if body.disable_ramdisk.is_some() && (verb != Verb::Clean || !ctx.allows(CLEAN_DISABLE_RAMDISK)) {
        if !ctx.allows(CLEAN_DISABLE_RAMDISK) {
            return Err(ApiError::not_acceptable());
        }
        return Err(ApiError::bad_request(
            "\"disable_ramdisk\" is only valid when setting target provision state to clean",
        ));
    }
    match verb.as_str() {
        "clean" => {
            let steps = body.clean_steps.as_deref().unwrap_or_default();
            if steps.is_empty() {
                return Err(ApiError::bad_request(
                    "\"clean_steps\" is required when setting target provision state to clean",
                ));
            }
            check_steps(steps, "clean_steps")?;
        }
        "service" => {
            let steps = body.service_steps.as_deref().unwrap_or_default();
            if steps.is_empty() {
                return Err(ApiError::bad_request(
                    "\"service_steps\" is required when setting target provision state to service",
                ));
            }
            check_steps(steps, "service_steps")?;
        }
        "rescue" if body.rescue_password.as_deref().is_none_or(|p| p.trim().is_empty()) => {
            return Err(ApiError::bad_request(
                "A non-empty \"rescue_password\" is required when setting target provision state to rescue",
            ));
        }
        _ => {}
    }
    if let Some(steps) = &body.deploy_steps {
        check_steps(steps, "deploy_steps")?;
    }
    let args = ProvisionArgs {
        configdrive,
        clean_steps: body.clean_steps,
        deploy_steps: body.deploy_steps,
        service_steps: body.service_steps,
        rescue_password: body.rescue_password,
        disable_ramdisk: body.disable_ramdisk,
    };
    let deploying = matches!(event, Some(Event::Deploy | Event::Rebuild));
    if deploying {
        state.trace.record(n.uuid, Actor::Nova, Actor::Api, seed::SET_PROVISION_STATE);
    }
    if deploying {
        state.trace.record(n.uuid, Actor::Api, Actor::Conductor, seed::DO_NODE_DEPLOY);
    }
    state.rpc.do_provisioning_action(n.uuid, verb, args).await?;
    accepted(states_location(&ctx, n.uuid))
}

// ---------------------------------------------------------------- management

async fn get_boot_device(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let (d, p) = state.rpc.get_boot_device(n.uuid).await?;
    ok(&json!({"boot_device": d.map(|d| d.as_str()), "persistent": p}))
}

#[derive(serde::Deserialize)]
struct BootDeviceBody {
    boot_device: String,
    #[serde(default)]
    persistent: bool,
}

async fn set_boot_device(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody<BootDeviceBody>,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let dev: BootDevice = body
        .boot_device
        .parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid boot device {} specified.", body.boot_device)))?;
    state.rpc.set_boot_device(n.uuid, dev, body.persistent).await?;
    no_content()
}

async fn supported_boot_devices(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let devs = state.rpc.supported_boot_devices(n.uuid).await?;
    ok(&json!({"supported_boot_devices": devs.iter().map(|d| d.as_str()).collect::<Vec<_>>()}))
}

async fn validate(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let res = state.rpc.validate(n.uuid).await?;
    state.trace.record(n.uuid, Actor::Nova, Actor::Api, seed::VALIDATE_INTERFACES);
    let mut m = Map::new();
    // Ironic's order.
    for k in [
        "boot",
        "deploy",
        "management",
        "network",
        "power",
        "bios",
        "console",
        "firmware",
        "inspect",
        "raid",
        "rescue",
        "storage",
    ] {
        let min = match k {
            "bios" => BIOS_INTERFACE,
            "rescue" => RESCUE_INTERFACE,
            "storage" => STORAGE_INTERFACE,
            "firmware" => FIRMWARE_INTERFACE,
            _ => INITIAL_VERSION,
        };
        if !ctx.allows(min) {
            continue;
        }
        if let Some(r) = res.get(k) {
            let v = match &r.reason {
                None => json!({"result": r.result}),
                Some(reason) => json!({"result": r.result, "reason": reason}),
            };
            m.insert(k.into(), v);
        }
    }
    ok(&Value::Object(m))
}

async fn maintenance_on(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    let reason = if body.is_empty() {
        None
    } else {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON in request body: {e}")))?;
        v.get("reason").and_then(|r| r.as_str()).map(str::to_string)
    };
    state.rpc.set_maintenance(n.uuid, true, reason).await?;
    accepted(node_location(&ctx, &n))
}

async fn maintenance_off(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    let n = load(&state, &ctx, &ident)?;
    state.rpc.set_maintenance(n.uuid, false, None).await?;
    accepted(node_location(&ctx, &n))
}

// ---------------------------------------------------------------- VIFs and traits

async fn vif_list(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    if !ctx.allows(VIFS) {
        return Err(ApiError::not_acceptable());
    }
    let n = load(&state, &ctx, &ident)?;
    let vifs = state.rpc.vif_list(n.uuid).await?;
    ok(&json!({"vifs": vifs.iter().map(|v| json!({"id": v})).collect::<Vec<_>>()}))
}

async fn vif_attach(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    if !ctx.allows(VIFS) {
        return Err(ApiError::not_acceptable());
    }
    let n = load(&state, &ctx, &ident)?;
    let id =
        body.get("id").and_then(|v| v.as_str()).ok_or_else(|| ApiError::bad_request("'id' is a required property"))?;
    let port =
        body.get("port_uuid").or_else(|| body.get("portgroup_uuid")).and_then(|v| v.as_str()).map(str::to_string);
    if port.is_some() && !ctx.allows(VIF_ATTACH_PORT) {
        return Err(ApiError::not_acceptable());
    }
    state.rpc.vif_attach(n.uuid, id.to_string(), port).await?;
    state.trace.record(n.uuid, Actor::Nova, Actor::Api, seed::PLUG_VIFS);
    no_content()
}

async fn vif_detach(State(state): State<ApiState>, ctx: Ctx, Path((ident, vif)): Path<(String, String)>) -> ApiResult {
    if !ctx.allows(VIFS) {
        return Err(ApiError::not_acceptable());
    }
    let n = load(&state, &ctx, &ident)?;
    state.rpc.vif_detach(n.uuid, vif).await?;
    no_content()
}

/// Standard traits are upper-case identifiers; custom ones start with `CUSTOM_`.
fn check_trait(t: &str) -> Result<(), ApiError> {
    let ok =
        !t.is_empty() && t.len() <= 255 && t.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid trait {t:?}: a trait must be a standard trait or match ^CUSTOM_[A-Z0-9_]+$."
        )))
    }
}

const MAX_TRAITS: usize = 50;

async fn traits_list(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    if !ctx.allows(NODE_TRAITS) {
        return Err(ApiError::not_acceptable());
    }
    let n = load(&state, &ctx, &ident)?;
    ok(&json!({"traits": n.traits}))
}

async fn traits_set(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    if !ctx.allows(NODE_TRAITS) {
        return Err(ApiError::not_acceptable());
    }
    let n = load(&state, &ctx, &ident)?;
    let list = body
        .get("traits")
        .and_then(|t| t.as_array())
        .ok_or_else(|| ApiError::bad_request("'traits' is a required property"))?;
    let mut traits = Vec::new();
    for t in list {
        let s = t.as_str().ok_or_else(|| ApiError::bad_request(format!("Invalid trait {t}.")))?;
        check_trait(s)?;
        if !traits.iter().any(|x: &String| x == s) {
            traits.push(s.to_string());
        }
    }
    if traits.len() > MAX_TRAITS {
        return Err(ApiError::bad_request(format!("Too many traits: a node may have at most {MAX_TRAITS}.")));
    }
    state.rpc.set_traits(n.uuid, traits).await?;
    no_content()
}

async fn traits_clear(State(state): State<ApiState>, ctx: Ctx, Path(ident): Path<String>) -> ApiResult {
    if !ctx.allows(NODE_TRAITS) {
        return Err(ApiError::not_acceptable());
    }
    let n = load(&state, &ctx, &ident)?;
    state.rpc.set_traits(n.uuid, Vec::new()).await?;
    no_content()
}

async fn trait_add(State(state): State<ApiState>, ctx: Ctx, Path((ident, name)): Path<(String, String)>) -> ApiResult {
    if !ctx.allows(NODE_TRAITS) {
        return Err(ApiError::not_acceptable());
    }
    check_trait(&name)?;
    let n = load(&state, &ctx, &ident)?;
    let mut traits = n.traits.clone();
    if !traits.contains(&name) {
        traits.push(name);
    }
    if traits.len() > MAX_TRAITS {
        return Err(ApiError::bad_request(format!("Too many traits: a node may have at most {MAX_TRAITS}.")));
    }
    state.rpc.set_traits(n.uuid, traits).await?;
    no_content()
}

async fn trait_remove(
    State(state): State<ApiState>,
    ctx: Ctx,
    Path((ident, name)): Path<(String, String)>,
) -> ApiResult {
    if !ctx.allows(NODE_TRAITS) {
        return Err(ApiError::not_acceptable());
    }
    let n = load(&state, &ctx, &ident)?;
    if !n.traits.contains(&name) {
        return Err(ApiError::not_found(format!("Node {} doesn't have a trait '{name}'", n.uuid)));
    }
    let traits = n.traits.iter().filter(|t| **t != name).cloned().collect();
    state.rpc.set_traits(n.uuid, traits).await?;
    no_content()
}
