//! The fleet table's data: every node's overview columns read once (columns only, no bodies),
//! then counted, filtered, sorted and cut into one page here, so the browser only ever holds a
//! page of rows however large the fleet.

use super::{PageResult, sees};
use crate::api::ApiState;
use crate::api::identity::Identity;
use crate::db::FleetRow;
use ferric_types::models::{Node, PowerState, ProvisionState};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Rows per page unless the query asks otherwise.
pub const DEFAULT_PER_PAGE: usize = 50;
/// The most rows one page shows.
pub const MAX_PER_PAGE: usize = 500;

/// The fleet page's query string. Every field is free text, read leniently: an unknown value
/// filters to nothing rather than failing the page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FleetQuery {
    /// Substring of the name or UUID (case-insensitive).
    pub q: Option<String>,
    pub state: Option<String>,
    pub power: Option<String>,
    pub driver: Option<String>,
    pub conductor: Option<String>,
    pub owner: Option<String>,
    /// `name`, `uuid`, `provision_state`, `power_state`, `driver`, `conductor`, `owner`,
    /// `maintenance` or `updated_at`.
    pub sort: Option<String>,
    /// `asc` or `desc`.
    pub dir: Option<String>,
    /// 1-based.
    pub page: Option<String>,
    pub per: Option<String>,
}

/// Sort keys the table offers, with their column titles.
pub const SORT_KEYS: &[(&str, &str)] = &[
    ("name", "Name"),
    ("provision_state", "Provision state"),
    ("power_state", "Power"),
    ("maintenance", "Maintenance"),
    ("driver", "Driver"),
    ("conductor", "Conductor"),
    ("owner", "Owner"),
    ("updated_at", "Updated"),
];

impl FleetQuery {
    fn filter(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
    pub fn sort_key(&self) -> &str {
        let k = Self::filter(&self.sort).unwrap_or("name");
        SORT_KEYS.iter().find(|(s, _)| *s == k).map(|(s, _)| *s).unwrap_or("name")
    }
    pub fn descending(&self) -> bool {
        self.dir.as_deref() == Some("desc")
    }
    pub fn per_page(&self) -> usize {
        Self::filter(&self.per).and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PER_PAGE).clamp(1, MAX_PER_PAGE)
    }
    pub fn page(&self) -> usize {
        Self::filter(&self.page).and_then(|p| p.parse().ok()).unwrap_or(1).max(1)
    }

    /// This query as a query string with some fields replaced (`None` removes one).
    pub fn with(&self, changes: &[(&str, Option<&str>)]) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let fields = [
            ("q", &self.q),
            ("state", &self.state),
            ("power", &self.power),
            ("driver", &self.driver),
            ("conductor", &self.conductor),
            ("owner", &self.owner),
            ("sort", &self.sort),
            ("dir", &self.dir),
            ("page", &self.page),
            ("per", &self.per),
        ];
        for (k, v) in fields {
            let v = match changes.iter().find(|(c, _)| *c == k) {
                Some((_, new)) => new.map(str::to_string),
                None => Self::filter(v).map(str::to_string),
            };
            if let Some(v) = v {
                pairs.push((k, v));
            }
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }
}

/// One table row: the node's columns and its conductor.
#[derive(Debug, Clone)]
pub struct Row {
    pub node: FleetRow,
    pub conductor: String,
}

/// What the fleet page shows.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    /// Nodes the caller sees (before the table's filters).
    pub fleet: usize,
    /// Counts by provision and power state over the nodes the caller sees.
    pub by_state: Vec<(ProvisionState, usize)>,
    pub by_power: Vec<(String, usize)>,
    /// Rows matching the filters.
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub rows: Vec<Row>,
    /// Values the filters offer.
    pub drivers: Vec<String>,
    pub conductors: Vec<String>,
    pub owners: Vec<String>,
}

fn power_name(p: Option<PowerState>) -> &'static str {
    p.map(|p| p.as_str()).unwrap_or("unknown")
}

/// Reads, counts, filters, sorts and pages the fleet for `who`.
pub fn view(api: &ApiState, who: &Identity, q: &FleetQuery) -> PageResult<FleetView> {
    let all = api.db.fleet_rows()?;
    let mut seen: Vec<Row> = all
        .into_iter()
        .filter(|r| sees(who, r.owner.as_deref(), r.lessee.as_deref()))
        .map(|node| {
            // The ring needs only these three fields of a node.
            let probe = Node {
                uuid: node.uuid,
                driver: node.driver.clone(),
                conductor_group: node.conductor_group.clone(),
                ..Node::default()
            };
            let conductor = api.rpc.conductor_for(&probe).unwrap_or_default();
            Row { node, conductor }
        })
        .collect();
    let mut v = FleetView { fleet: seen.len(), ..FleetView::default() };
    let mut states: BTreeMap<ProvisionState, usize> = BTreeMap::new();
    let mut power: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut drivers, mut conductors, mut owners) =
        (std::collections::BTreeSet::new(), std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for r in &seen {
        *states.entry(r.node.provision_state).or_default() += 1;
        *power.entry(power_name(r.node.power_state)).or_default() += 1;
        drivers.insert(r.node.driver.clone());
        conductors.insert(r.conductor.clone());
        if let Some(o) = &r.node.owner {
            owners.insert(o.clone());
        }
    }
    // States in the state machine's order (enroll first), not alphabetically.
    v.by_state = ProvisionState::ALL.iter().filter_map(|s| states.get(s).map(|n| (*s, *n))).collect();
    v.by_power = power.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    v.drivers = drivers.into_iter().collect();
    v.conductors = conductors.into_iter().filter(|c| !c.is_empty()).collect();
    v.owners = owners.into_iter().collect();

    let needle = FleetQuery::filter(&q.q).map(str::to_lowercase);
    let eq = |want: Option<&str>, have: &str| want.is_none_or(|w| w == have);
    seen.retain(|r| {
        let n = &r.node;
        needle.as_deref().is_none_or(|s| {
            n.uuid.to_string().contains(s) || n.name.as_deref().is_some_and(|name| name.to_lowercase().contains(s))
        }) && eq(FleetQuery::filter(&q.state), n.provision_state.as_str())
            && eq(FleetQuery::filter(&q.power), power_name(n.power_state))
            && eq(FleetQuery::filter(&q.driver), &n.driver)
            && eq(FleetQuery::filter(&q.conductor), &r.conductor)
            && eq(FleetQuery::filter(&q.owner), n.owner.as_deref().unwrap_or(""))
    });
    sort(&mut seen, q.sort_key(), q.descending());
    v.total = seen.len();
    let per = q.per_page();
    v.pages = v.total.div_ceil(per).max(1);
    v.page = q.page().min(v.pages);
    v.rows = seen.into_iter().skip((v.page - 1) * per).take(per).collect();
    Ok(v)
}

fn sort(rows: &mut [Row], key: &str, desc: bool) {
    // Ties (and unnamed nodes) fall back to the UUID so the order is stable between polls.
    let name = |r: &Row| r.node.name.clone().unwrap_or_default();
    match key {
        "provision_state" => rows.sort_by(|a, b| {
            a.node.provision_state.as_str().cmp(b.node.provision_state.as_str()).then(name(a).cmp(&name(b)))
        }),
        "power_state" => rows.sort_by(|a, b| power_name(a.node.power_state).cmp(power_name(b.node.power_state))),
        "maintenance" => rows.sort_by_key(|r| r.node.maintenance),
        "driver" => rows.sort_by(|a, b| a.node.driver.cmp(&b.node.driver)),
        "conductor" => rows.sort_by(|a, b| a.conductor.cmp(&b.conductor)),
        "owner" => rows.sort_by(|a, b| a.node.owner.cmp(&b.node.owner)),
        "updated_at" => rows.sort_by(|a, b| a.node.updated_at.cmp(&b.node.updated_at)),
        _ => rows.sort_by(|a, b| {
            (a.node.name.is_none(), name(a), a.node.uuid.to_string()).cmp(&(
                b.node.name.is_none(),
                name(b),
                b.node.uuid.to_string(),
            ))
        }),
    }
    if desc {
        rows.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_string_keeps_filters_and_replaces_some() {
        let q = FleetQuery { state: Some("active".into()), page: Some("3".into()), ..FleetQuery::default() };
        assert_eq!(q.with(&[("page", None)]), "state=active");
        assert_eq!(q.with(&[("sort", Some("driver"))]), "state=active&sort=driver&page=3");
        assert_eq!(q.per_page(), DEFAULT_PER_PAGE);
        let big = FleetQuery { per: Some("100000".into()), ..FleetQuery::default() };
        assert_eq!(big.per_page(), MAX_PER_PAGE);
        assert_eq!(FleetQuery { sort: Some("nonsense".into()), ..FleetQuery::default() }.sort_key(), "name");
    }
}
