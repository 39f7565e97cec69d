//! The node actions: a confirmation page (GET), then the action itself (POST), through the same
//! rpc contract as the REST API, after the console's role rule (readers never act; members only
//! on their project's nodes). The POST is refused from other sites (Fetch Metadata and Origin).

use super::{Console, PageError, PageResult, caller, load_node, may_act, pages};
use crate::api::ApiError;
use crate::api::identity::Identity;
use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use ferric_types::models::PowerTarget;
use ferric_types::rpc::ProvisionArgs;
use ferric_types::state_machine::Verb;
use ferric_types::trace::{Actor, seed};
use serde::Deserialize;

/// What an action form sends.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub action: String,
    #[serde(default)]
    pub image: Option<String>,
}

/// The actions, as the forms name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Power(PowerTarget),
    Provision(Verb),
    Maintenance(bool),
}

impl Action {
    fn parse(s: &str) -> Option<(Action, &'static str)> {
        Some(match s {
            "power_on" => (Action::Power(PowerTarget::On), "Power on"),
            "power_off" => (Action::Power(PowerTarget::Off), "Power off"),
            "reboot" => (Action::Power(PowerTarget::Reboot), "Reboot"),
            "manage" => (Action::Provision(Verb::Manage), "Manage"),
            "provide" => (Action::Provision(Verb::Provide), "Provide"),
            "deploy" => (Action::Provision(Verb::Active), "Deploy"),
            "undeploy" => (Action::Provision(Verb::Deleted), "Undeploy"),
            "maintenance_on" => (Action::Maintenance(true), "Maintenance on"),
            "maintenance_off" => (Action::Maintenance(false), "Maintenance off"),
            _ => return None,
        })
    }
}

fn forbidden() -> PageError {
    PageError(ApiError::new(
        StatusCode::FORBIDDEN,
        "Access was denied to this resource: your role may not act on this node.",
    ))
}

fn parse(form: &ActionForm) -> PageResult<(Action, &'static str)> {
    Action::parse(&form.action)
        .ok_or_else(|| PageError(ApiError::bad_request(format!("Unknown action {:?}.", form.action))))
}

/// `GET /console/nodes/{ident}/confirm?action=...`: asks before acting.
pub async fn confirm_page(
    State(c): State<Console>,
    who: Option<Extension<Identity>>,
    Path(ident): Path<String>,
    Query(form): Query<ActionForm>,
) -> PageResult<Html<String>> {
    let who = caller(who);
    let n = load_node(&c, &who, &ident)?;
    if !may_act(&who, &n) {
        return Err(forbidden());
    }
    let (action, what) = parse(&form)?;
    let image = form.image.as_deref().filter(|_| action == Action::Provision(Verb::Active));
    if action == Action::Provision(Verb::Active) && image.is_none_or(str::is_empty) {
        return Err(PageError(ApiError::bad_request("Choose an image to deploy.")));
    }
    Ok(Html(pages::confirm(&n, &form.action, what, image).into_string()))
}

/// Refuses a cross-site POST: browsers say where a request comes from in `Sec-Fetch-Site` or,
/// failing that, `Origin`, which must name the host the request was sent to.
fn same_origin(h: &HeaderMap) -> bool {
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    match (h.get(header::ORIGIN).and_then(|v| v.to_str().ok()), h.get(header::HOST).and_then(|v| v.to_str().ok())) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
    }
}

/// `POST /console/nodes/{ident}/action`: acts, then goes back to the node page.
pub async fn act(
    State(c): State<Console>,
    who: Option<Extension<Identity>>,
    Path(ident): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> PageResult<Response> {
    let who = caller(who);
    if !same_origin(&headers) {
        return Err(PageError(ApiError::new(StatusCode::FORBIDDEN, "Cross-site request refused.")));
    }
    let n = load_node(&c, &who, &ident)?;
    if !may_act(&who, &n) {
        return Err(forbidden());
    }
    let (action, _) = parse(&form)?;
    let rpc = &c.api.rpc;
    match action {
        Action::Power(t) => rpc.change_power_state(n.uuid, t, None).await?,
        Action::Maintenance(on) => {
            let reason = on.then(|| format!("set from the console by {}", who.user));
            rpc.set_maintenance(n.uuid, on, reason).await?
        }
        Action::Provision(Verb::Active) => {
            let image = form.image.as_deref().map(str::trim).filter(|i| !i.is_empty());
            let Some(image) = image else { return Err(PageError(ApiError::bad_request("Choose an image to deploy."))) };
            let known = c.images.as_ref().is_some_and(|s| s.get(image).is_ok());
            if !known {
                return Err(PageError(ApiError::bad_request(format!("Image {image} is not in the image service."))));
            }
            // As a client would: instance_info first, then the provision state (the same trace
            // messages the REST handlers record).
            let mut updated = n.clone();
            updated.instance_info.insert("image_source".into(), serde_json::Value::String(image.to_string()));
            let saved = rpc.update_node(n.clone(), updated, false).await?;
            c.api.trace.record(saved.uuid, Actor::Nova, Actor::Api, seed::SET_INSTANCE_INFO);
            c.api.trace.record(saved.uuid, Actor::Nova, Actor::Api, seed::SET_PROVISION_STATE);
            c.api.trace.record(saved.uuid, Actor::Api, Actor::Conductor, seed::DO_NODE_DEPLOY);
            rpc.do_provisioning_action(saved.uuid, Verb::Active, ProvisionArgs::default()).await?
        }
        Action::Provision(verb) => rpc.do_provisioning_action(n.uuid, verb, ProvisionArgs::default()).await?,
    }
    Ok(Redirect::to(&format!("/nodes/{}", n.uuid)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cross_site_posts_are_refused() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:6385"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:6385"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
    }

    #[test]
    fn every_offered_action_parses() {
        for a in [
            "power_on",
            "power_off",
            "reboot",
            "manage",
            "provide",
            "deploy",
            "undeploy",
            "maintenance_on",
            "maintenance_off",
        ] {
            assert!(Action::parse(a).is_some(), "{a}");
        }
        assert!(Action::parse("delete").is_none());
    }
}
