//! What each role may do: every request is classified once by method and path into an
//! [`Action`], and one table ([`RULES`]) says which roles may take it. Node visibility (a
//! project-scoped caller sees the nodes its project owns or leases) is applied by the
//! authentication layer for single nodes and by the listings for many.

use super::identity::{AuthRole, Identity};
use axum::http::Method;

/// A class of request, named after the Ironic policy rule that guards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Version discovery (`/`, `/v1`) and temp-URL image downloads (their signature is the
    /// credential): open to anyone.
    Public,
    /// The ramdisk's calls (`/v1/lookup`, `/v1/heartbeat/{node}`, `/v1/continue_inspection`):
    /// open; the conductor checks the node's state and agent token.
    Agent,
    NodeList,
    NodeGet,
    NodeCreate,
    NodeUpdate,
    NodeDelete,
    NodePower,
    NodeProvision,
    NodeMaintenance,
    NodeBootDevice,
    NodeVif,
    /// Any other write under a node (traits, BIOS, firmware, vendor passthru, console, ...).
    NodeOtherWrite,
    PortList,
    PortGet,
    PortWrite,
    DriverGet,
    /// Reading what is not a node's: chassis, conductors, allocations, templates, volumes,
    /// portgroups, ferric's diagnostics.
    SystemGet,
    /// Writing what is not a node's.
    SystemWrite,
    ImageGet,
    /// Image create, upload, update, delete.
    ImageWrite,
    /// The web console's pages and actions (`/console/...`, `/nodes/{ident}`, a browser's `/`):
    /// any authenticated caller; the console scopes what it shows to the caller's project and
    /// checks each action by the same rules (readers none, members their project's nodes).
    Console,
}

impl Action {
    /// The Ironic policy name, quoted in refusals ("... is disallowed by policy").
    pub fn policy_name(self) -> &'static str {
        match self {
            Action::Public => "public",
            Action::Agent => "baremetal:driver:ipa_lookup",
            Action::NodeList => "baremetal:node:list",
            Action::NodeGet => "baremetal:node:get",
            Action::NodeCreate => "baremetal:node:create",
            Action::NodeUpdate => "baremetal:node:update",
            Action::NodeDelete => "baremetal:node:delete",
            Action::NodePower => "baremetal:node:set_power_state",
            Action::NodeProvision => "baremetal:node:set_provision_state",
            Action::NodeMaintenance => "baremetal:node:set_maintenance",
            Action::NodeBootDevice => "baremetal:node:set_boot_device",
            Action::NodeVif => "baremetal:node:vif:attach",
            Action::NodeOtherWrite => "baremetal:node:update",
            Action::PortList => "baremetal:port:list",
            Action::PortGet => "baremetal:port:get",
            Action::PortWrite => "baremetal:port:update",
            Action::DriverGet => "baremetal:driver:get",
            Action::SystemGet => "baremetal:system:get",
            Action::SystemWrite => "baremetal:system:update",
            Action::ImageGet => "image:get",
            Action::ImageWrite => "image:update",
            Action::Console => "console",
        }
    }
}

/// What a role may do with an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Allow,
    Deny,
    /// Allowed to callers without a project (system-wide); a project-scoped caller is refused.
    Unscoped,
    /// A node patch whose every path is one of these fields.
    Fields(&'static [&'static str]),
}

use Rule::{Allow, Deny, Fields, Unscoped};

/// Node fields a member may patch (Ironic lets project members change these, not the BMC's
/// credentials, interfaces, owner or lessee).
pub const MEMBER_PATCH_FIELDS: &[&str] =
    &["extra", "instance_info", "instance_uuid", "description", "maintenance", "maintenance_reason"];

/// The policy: per action, the rule for admin, member and reader.
pub const RULES: &[(Action, [Rule; 3])] = &[
    //                          admin  member                      reader
    (Action::NodeList, [Allow, Allow, Allow]),
    (Action::NodeGet, [Allow, Allow, Allow]),
    (Action::NodeCreate, [Allow, Deny, Deny]),
    (Action::NodeUpdate, [Allow, Fields(MEMBER_PATCH_FIELDS), Deny]),
    (Action::NodeDelete, [Allow, Deny, Deny]),
    (Action::NodePower, [Allow, Allow, Deny]),
    (Action::NodeProvision, [Allow, Allow, Deny]),
    (Action::NodeMaintenance, [Allow, Allow, Deny]),
    (Action::NodeBootDevice, [Allow, Allow, Deny]),
    (Action::NodeVif, [Allow, Allow, Deny]),
    (Action::NodeOtherWrite, [Allow, Deny, Deny]),
    (Action::PortList, [Allow, Allow, Allow]),
    (Action::PortGet, [Allow, Allow, Allow]),
    (Action::PortWrite, [Allow, Deny, Deny]),
    (Action::DriverGet, [Allow, Allow, Allow]),
    (Action::SystemGet, [Allow, Unscoped, Unscoped]),
    (Action::SystemWrite, [Allow, Deny, Deny]),
    (Action::ImageGet, [Allow, Allow, Allow]),
    (Action::ImageWrite, [Allow, Deny, Deny]),
    (Action::Public, [Allow, Allow, Allow]),
    (Action::Agent, [Allow, Allow, Allow]),
    (Action::Console, [Allow, Allow, Allow]),
];

/// The rule for `role` taking `action`.
pub fn rule(role: AuthRole, action: Action) -> Rule {
    let col = match role {
        AuthRole::Admin => 0,
        AuthRole::Member => 1,
        AuthRole::Reader => 2,
    };
    RULES.iter().find(|(a, _)| *a == action).map_or(Deny, |(_, r)| r[col])
}

/// What the rule leaves to check once the request is known in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// Allowed if every path of the JSON patch is one of these fields.
    PatchFields(&'static [&'static str]),
}

/// Whether `who` may take `action` (node visibility aside).
pub fn decide(who: &Identity, action: Action) -> Decision {
    match rule(who.role, action) {
        Allow => Decision::Allow,
        Deny => Decision::Deny,
        Unscoped if who.project.is_none() => Decision::Allow,
        Unscoped => Decision::Deny,
        Fields(f) => Decision::PatchFields(f),
    }
}

/// Whether a caller scoped to `project` sees a node with this owner and lessee.
pub fn node_visible(project: &str, owner: Option<&str>, lessee: Option<&str>) -> bool {
    owner == Some(project) || lessee == Some(project)
}

/// Whether every operation of a JSON patch touches only `fields` (by its path's first segment).
/// `None` when the body is not a patch (the handler refuses it then).
pub fn patch_within(patch: &serde_json::Value, fields: &[&str]) -> Option<bool> {
    let ops = patch.as_array()?;
    Some(ops.iter().all(|op| {
        let first = |p: &str| p.trim_start_matches('/').split('/').next().unwrap_or("").to_string();
        let paths = [op.get("path"), op.get("from")];
        paths.iter().flatten().all(|p| p.as_str().is_some_and(|p| fields.contains(&first(p).as_str())))
    }))
}

/// A request's class, and the node or port it names (by UUID or name), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub action: Action,
    pub node: Option<String>,
    pub port: Option<String>,
}

/// Classifies a request by method and (trailing-slash-trimmed) path.
pub fn classify(method: &Method, path: &str) -> Classified {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let read = method == Method::GET || method == Method::HEAD;
    let plain = |action| Classified { action, node: None, port: None };
    match segs.as_slice() {
        [] | ["v1"] => plain(Action::Public),
        ["v1", "lookup"] | ["v1", "heartbeat", _] | ["v1", "continue_inspection"] => plain(Action::Agent),
        ["v1", "nodes"] | ["v1", "nodes", "detail"] if read => plain(Action::NodeList),
        ["v1", "nodes"] if method == Method::POST => plain(Action::NodeCreate),
        ["v1", "nodes", node, rest @ ..] if *node != "detail" => {
            let action = match (rest, method) {
                (["vendor_passthru", ..], _) => Action::NodeOtherWrite,
                (_, m) if m == Method::GET || m == Method::HEAD => Action::NodeGet,
                ([], &Method::PATCH) => Action::NodeUpdate,
                ([], &Method::DELETE) => Action::NodeDelete,
                (["states", "power"], _) => Action::NodePower,
                (["states", "provision"], _) => Action::NodeProvision,
                (["maintenance"], _) => Action::NodeMaintenance,
                (["management", "boot_device"], _) => Action::NodeBootDevice,
                (["vifs", ..], _) => Action::NodeVif,
                _ => Action::NodeOtherWrite,
            };
            Classified { action, node: Some((*node).to_string()), port: None }
        }
        ["v1", "ports"] | ["v1", "ports", "detail"] if read => plain(Action::PortList),
        ["v1", "ports", port, ..] if read => {
            Classified { action: Action::PortGet, node: None, port: Some((*port).to_string()) }
        }
        ["v1", "ports", ..] => plain(Action::PortWrite),
        ["v1", "drivers", _, "vendor_passthru", ..] => plain(Action::SystemWrite),
        ["v1", "drivers", ..] if read => plain(Action::DriverGet),
        ["swift", "v1", "images", _] if read => plain(Action::Public),
        ["v2", "images", ..] if read => plain(Action::ImageGet),
        ["v2", "images", ..] => plain(Action::ImageWrite),
        ["console", ..] | ["nodes", _] => plain(Action::Console),
        _ if read => plain(Action::SystemGet),
        _ => plain(Action::SystemWrite),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn who(role: AuthRole, project: Option<&str>) -> Identity {
        Identity { user: "u".into(), role, project: project.map(String::from) }
    }

    #[test]
    fn requests_are_classified_by_method_and_path() {
        let c = |m: Method, p: &str| classify(&m, p);
        assert_eq!(c(Method::GET, "/").action, Action::Public);
        assert_eq!(c(Method::GET, "/v1").action, Action::Public);
        assert_eq!(c(Method::GET, "/v1/lookup").action, Action::Agent);
        assert_eq!(c(Method::POST, "/v1/heartbeat/abc").action, Action::Agent);
        assert_eq!(c(Method::GET, "/v1/nodes").action, Action::NodeList);
        assert_eq!(c(Method::GET, "/v1/nodes/detail").action, Action::NodeList);
        assert_eq!(c(Method::POST, "/v1/nodes").action, Action::NodeCreate);
        let n = c(Method::PATCH, "/v1/nodes/n1");
        assert_eq!((n.action, n.node.as_deref()), (Action::NodeUpdate, Some("n1")));
        assert_eq!(c(Method::DELETE, "/v1/nodes/n1").action, Action::NodeDelete);
        assert_eq!(c(Method::GET, "/v1/nodes/n1/ports").action, Action::NodeGet);
        assert_eq!(c(Method::PUT, "/v1/nodes/n1/states/power").action, Action::NodePower);
        assert_eq!(c(Method::PUT, "/v1/nodes/n1/states/provision").action, Action::NodeProvision);
        assert_eq!(c(Method::DELETE, "/v1/nodes/n1/maintenance").action, Action::NodeMaintenance);
        assert_eq!(c(Method::PUT, "/v1/nodes/n1/management/boot_device").action, Action::NodeBootDevice);
        assert_eq!(c(Method::DELETE, "/v1/nodes/n1/vifs/v").action, Action::NodeVif);
        assert_eq!(c(Method::PUT, "/v1/nodes/n1/traits").action, Action::NodeOtherWrite);
        assert_eq!(c(Method::GET, "/v1/nodes/n1/vendor_passthru").action, Action::NodeOtherWrite);
        assert_eq!(c(Method::GET, "/v1/ports/p1").port.as_deref(), Some("p1"));
        assert_eq!(c(Method::DELETE, "/v1/ports/p1").action, Action::PortWrite);
        assert_eq!(c(Method::GET, "/v1/drivers/ipmi").action, Action::DriverGet);
        assert_eq!(c(Method::GET, "/v1/chassis").action, Action::SystemGet);
        assert_eq!(c(Method::POST, "/v1/allocations").action, Action::SystemWrite);
        assert_eq!(c(Method::GET, "/ferric/trace/x").action, Action::SystemGet);
        assert_eq!(c(Method::GET, "/v2/images").action, Action::ImageGet);
        assert_eq!(c(Method::PUT, "/v2/images/i/file").action, Action::ImageWrite);
        assert_eq!(c(Method::DELETE, "/v2/images/i").action, Action::ImageWrite);
        assert_eq!(c(Method::HEAD, "/swift/v1/images/i").action, Action::Public);
        assert_eq!(c(Method::GET, "/console/fleet").action, Action::Console);
        assert_eq!(c(Method::POST, "/console/nodes/n1/action").action, Action::Console);
        assert_eq!(c(Method::GET, "/nodes/n1").action, Action::Console);
    }

    #[test]
    fn the_table_gives_each_role_its_rights() {
        let admin = who(AuthRole::Admin, None);
        let member = who(AuthRole::Member, Some("p"));
        let reader = who(AuthRole::Reader, None);
        let scoped_reader = who(AuthRole::Reader, Some("p"));
        use Decision::{Allow as A, Deny as D};
        for (action, want) in [
            (Action::NodeCreate, [A, D, D, D]),
            (Action::NodeDelete, [A, D, D, D]),
            (Action::NodePower, [A, A, D, D]),
            (Action::NodeProvision, [A, A, D, D]),
            (Action::NodeMaintenance, [A, A, D, D]),
            (Action::NodeGet, [A, A, A, A]),
            (Action::PortWrite, [A, D, D, D]),
            (Action::SystemGet, [A, D, A, D]),
            (Action::ImageWrite, [A, D, D, D]),
            (Action::ImageGet, [A, A, A, A]),
        ] {
            let got = [&admin, &member, &reader, &scoped_reader].map(|w| decide(w, action));
            assert_eq!(got, want, "{action:?}");
        }
        assert_eq!(decide(&member, Action::NodeUpdate), Decision::PatchFields(MEMBER_PATCH_FIELDS));
        // Every action has a row.
        for (a, _) in RULES {
            assert_eq!(RULES.iter().filter(|(b, _)| b == a).count(), 1, "{a:?}");
        }
    }

    #[test]
    fn member_patches_are_limited_to_their_fields() {
        let ok = json!([{"op": "add", "path": "/extra/foo", "value": 1}, {"op": "remove", "path": "/instance_info"}]);
        assert_eq!(patch_within(&ok, MEMBER_PATCH_FIELDS), Some(true));
        let bmc = json!([{"op": "replace", "path": "/driver_info/ipmi_password", "value": "x"}]);
        assert_eq!(patch_within(&bmc, MEMBER_PATCH_FIELDS), Some(false));
        let moved = json!([{"op": "move", "from": "/owner", "path": "/extra/o"}]);
        assert_eq!(patch_within(&moved, MEMBER_PATCH_FIELDS), Some(false));
        assert_eq!(patch_within(&json!({"not": "a patch"}), MEMBER_PATCH_FIELDS), None);
    }

    #[test]
    fn visibility_is_owner_or_lessee() {
        assert!(node_visible("p", Some("p"), None));
        assert!(node_visible("p", Some("q"), Some("p")));
        assert!(!node_visible("p", Some("q"), None));
        assert!(!node_visible("p", None, None));
    }
}
