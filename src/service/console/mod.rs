//! The web console: the fleet at a glance (`/` for browsers, [`crate::api::CONSOLE_HOME`]), each
//! node's page (`/nodes/{uuid or name}`) with its last deploy drawn as a Mermaid sequence diagram,
//! and the actions a member may take. Server-rendered HTML (maud) with a little JavaScript that
//! polls JSON fragments (with ETags) for live updates; Mermaid is bundled into the binary at build
//! time (see `build.rs`), so the browser fetches nothing from the internet.
//!
//! The routes sit in the API's router (`ApiState::console`), behind its layers, so whatever
//! authenticates API requests covers the console too. Actions go to the conductor through the
//! same rpc contract the REST API uses, after the same role rule: readers act on nothing,
//! members only on their project's nodes.

mod actions;
mod assets;
pub mod diagram;
mod fleet;
pub mod pages;

use crate::api::ApiError;
use crate::api::ApiState;
use crate::api::identity::{AuthRole, Identity};
use crate::images::ImageStore;
use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ferric_types::models::Node;
use std::sync::Arc;

/// What the console's handlers share.
#[derive(Clone)]
struct Console {
    api: ApiState,
    /// The image service's store, for the deploy action's image choice (none when this process
    /// serves no images).
    images: Option<Arc<ImageStore>>,
}

/// The console's routes, to be merged into the API's router (see [`ApiState::console`]).
pub fn router(api: ApiState, images: Option<Arc<ImageStore>>) -> Router {
    Router::new()
        .route(crate::api::CONSOLE_HOME, get(fleet_page))
        .route("/console/fleet.json", get(fleet_json))
        .route("/nodes/{ident}", get(node_page))
        .route("/console/nodes/{ident}/live.json", get(node_json))
        .route("/console/nodes/{ident}/confirm", get(actions::confirm_page))
        .route("/console/nodes/{ident}/action", post(actions::act))
        .route("/console/static/{file}", get(assets::asset))
        .with_state(Console { api, images })
}

/// A console failure, shown as an HTML page with the API's status for the same failure.
#[derive(Debug)]
struct PageError(ApiError);

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        (status, Html(pages::error(status, &self.0.message).into_string())).into_response()
    }
}

type PageResult<T> = Result<T, PageError>;

/// The caller: the authentication layer's identity (the anonymous admin under `noauth`).
fn caller(ext: Option<Extension<Identity>>) -> Identity {
    // The authentication layer always sets one (the anonymous admin under noauth); without it
    // the console shows, and lets do, as little as it can.
    ext.map(|Extension(i)| i).unwrap_or(Identity { user: "anonymous".into(), role: AuthRole::Reader, project: None })
}

/// Whether `who` sees a node with this owner and lessee: admins all; members and readers with a
/// project only their project's (as owner or lessee).
fn sees(who: &Identity, owner: Option<&str>, lessee: Option<&str>) -> bool {
    match (who.role, who.project.as_deref()) {
        (AuthRole::Admin, _) | (_, None) => true,
        (_, Some(p)) => owner == Some(p) || lessee == Some(p),
    }
}

/// Whether `who` may act on a node (power, provisioning, maintenance): never a reader.
fn may_act(who: &Identity, node: &Node) -> bool {
    who.role != AuthRole::Reader && sees(who, node.owner.as_deref(), node.lessee.as_deref())
}

/// A node by UUID or name, as `who` may see it (a hidden node is "not found", as in the API).
fn load_node(c: &Console, who: &Identity, ident: &str) -> PageResult<Node> {
    let n = c.api.db.get_node(ident)?;
    if !sees(who, n.owner.as_deref(), n.lessee.as_deref()) {
        return Err(PageError(ApiError::not_found(format!("Node {ident} could not be found."))));
    }
    Ok(n)
}

/// A JSON body with a strong ETag of its text; `304 Not Modified` when the client has it.
fn json_with_etag(req: &HeaderMap, body: String) -> Response {
    let tag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
    let matches = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == tag);
    let etag = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\""));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// FNV-1a: a stable, cheap fingerprint for ETags (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

async fn fleet_page(
    State(c): State<Console>,
    who: Option<Extension<Identity>>,
    Query(q): Query<fleet::FleetQuery>,
) -> PageResult<Html<String>> {
    let who = caller(who);
    let view = fleet::view(&c.api, &who, &q)?;
    Ok(Html(pages::fleet(&view, &q, &who).into_string()))
}

async fn fleet_json(
    State(c): State<Console>,
    who: Option<Extension<Identity>>,
    headers: HeaderMap,
    Query(q): Query<fleet::FleetQuery>,
) -> PageResult<Response> {
    let who = caller(who);
    let view = fleet::view(&c.api, &who, &q)?;
    let body = serde_json::json!({
        "total": view.total,
        "counts": pages::counts(&view).into_string(),
        "rows": pages::rows(&view).into_string(),
        "pager": pages::pager(&view, &q).into_string(),
    });
    Ok(json_with_etag(&headers, body.to_string()))
}

async fn node_page(
    State(c): State<Console>,
    who: Option<Extension<Identity>>,
    Path(ident): Path<String>,
) -> PageResult<Html<String>> {
    let who = caller(who);
    let n = load_node(&c, &who, &ident)?;
    let view = node_view(&c, &who, n).await?;
    Ok(Html(pages::node(&view).into_string()))
}

async fn node_json(
    State(c): State<Console>,
    who: Option<Extension<Identity>>,
    headers: HeaderMap,
    Path(ident): Path<String>,
) -> PageResult<Response> {
    let who = caller(who);
    let n = load_node(&c, &who, &ident)?;
    let view = node_view(&c, &who, n).await?;
    let body = serde_json::json!({
        "events": view.run.events.len(),
        "mermaid": view.run.mermaid,
        "state": pages::node_state(&view).into_string(),
        "timeline": pages::timeline(&view.run).into_string(),
        "run": pages::run_info(&view.run).into_string(),
        "actions": if view.may_act { pages::actions(&view).into_string() } else { String::new() },
    });
    Ok(json_with_etag(&headers, body.to_string()))
}

/// Everything the node page shows.
pub struct NodeView {
    pub node: Node,
    pub conductor: Option<String>,
    pub ports: Vec<ferric_types::models::Port>,
    pub history: Vec<ferric_types::models::HistoryEvent>,
    pub run: diagram::Run,
    /// Whether the caller may act on this node (no buttons otherwise).
    pub may_act: bool,
    /// Image choices for a deploy: (id, name).
    pub images: Vec<(String, String)>,
}

async fn node_view(c: &Console, who: &Identity, node: Node) -> PageResult<NodeView> {
    let ports = c.api.db.node_ports(node.uuid)?;
    let page = crate::db::Page {
        sort_key: "created_at".into(),
        sort_dir: crate::db::SortDir::Desc,
        limit: Some(50),
        marker: None,
    };
    let history = c.api.db.list_history(node.uuid, &page)?;
    let run = diagram::last_run(&crate::api::node_events(&c.api, node.uuid).await);
    let may_act = may_act(who, &node);
    let images = if may_act { image_choices(c) } else { Vec::new() };
    Ok(NodeView { conductor: c.api.rpc.conductor_for(&node), node, ports, history, run, may_act, images })
}

/// Active images of the image service, (id, name), by name.
fn image_choices(c: &Console) -> Vec<(String, String)> {
    let Some(store) = &c.images else { return Vec::new() };
    let mut v: Vec<(String, String)> = store
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.status == crate::images::model::ImageStatus::Active)
        .map(|i| {
            let name = i.name.clone().unwrap_or_else(|| i.id.clone());
            (i.id, name)
        })
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: AuthRole, project: Option<&str>) -> Identity {
        Identity { user: "u".into(), role, project: project.map(str::to_string) }
    }

    #[test]
    fn readers_never_act_members_only_on_their_project() {
        let mut n = Node { owner: Some("p1".into()), ..Node::default() };
        assert!(may_act(&who(AuthRole::Admin, Some("other")), &n));
        assert!(may_act(&who(AuthRole::Member, Some("p1")), &n));
        assert!(may_act(&who(AuthRole::Member, None), &n));
        assert!(!may_act(&who(AuthRole::Member, Some("p2")), &n));
        assert!(!may_act(&who(AuthRole::Reader, Some("p1")), &n));
        n.owner = None;
        n.lessee = Some("p2".into());
        assert!(may_act(&who(AuthRole::Member, Some("p2")), &n));
    }

    #[test]
    fn etag_answers_not_modified() {
        let r = json_with_etag(&HeaderMap::new(), "{}".into());
        let tag = r.headers().get(header::ETAG).cloned().unwrap_or(HeaderValue::from_static(""));
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(json_with_etag(&h, "{}".into()).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(json_with_etag(&h, "{\"a\":1}".into()).status(), StatusCode::OK);
    }
}
