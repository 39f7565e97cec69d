//! The console's HTML (maud: escaped by default, checked at compile time). Fragments that live
//! updates replace (counts, rows, pager, node state, timeline) are functions of their own, so the
//! page and its JSON polling answer render them the same way.

use super::diagram::{Run, spans};
use super::fleet::{FleetQuery, FleetView, SORT_KEYS};
use super::{NodeView, assets};
use crate::api::identity::Identity;
use axum::http::StatusCode;
use ferric_types::models::ProvisionState;
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// A page's `<head>`: its title and how it gets its style (linked, or inline in a report).
fn head(title: &str, style: Markup) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            (style)
        }
    }
}

/// The page frame. `live` is `(kind, url)` for the script's polling.
fn layout(title: &str, live: Option<(&str, &str)>, mermaid: bool, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · ferric"), html! { link rel="stylesheet" href="/console/static/console.css"; }))
            body data-live=[live.map(|l| l.0)] data-live-url=[live.map(|l| l.1)] {
                header.top {
                    strong { "ferric" }
                    nav aria-label="Console" { a href="/" { "Fleet" } }
                }
                main { (content) }
                @if mermaid && assets::have_mermaid() {
                    script src="/console/static/mermaid.min.js" {}
                }
                script src="/console/static/console.js" {}
            }
        }
    }
}

/// An error page.
pub fn error(status: StatusCode, message: &str) -> Markup {
    layout(
        status.canonical_reason().unwrap_or("Error"),
        None,
        false,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the fleet" } }
        },
    )
}

/// Colour of a provision state's bar: failures red, settled states green, the rest blue.
fn state_colour(s: &str) -> &'static str {
    if s.contains("fail") || s == "error" {
        "#a4161a"
    } else if matches!(s, "active" | "available" | "manageable") {
        "#1a7f37"
    } else if s == "enroll" {
        "#4a5361"
    } else {
        "#0b5cad"
    }
}

/// Horizontal bars as inline SVG, one per `(label, count)`, each linking to `href(label)`.
pub fn bars(title: &str, items: &[(String, usize)], href: impl Fn(&str) -> String) -> Markup {
    let max = items.iter().map(|i| i.1).max().unwrap_or(1).max(1);
    let row_h = 22;
    let height = row_h * items.len().max(1) + 4;
    let summary: Vec<String> = items.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    html! {
        figure {
            figcaption { strong { (title) } }
            svg role="img" aria-label=(format!("{title}: {}", summary.join(", "))) width="460" height=(height)
                viewBox=(format!("0 0 460 {height}")) xmlns="http://www.w3.org/2000/svg" {
                @for (i, (label, n)) in items.iter().enumerate() {
                    @let y = i * row_h + 2;
                    @let w = (*n as f64 / max as f64 * 250.0).max(2.0);
                    a href=(href(label)) {
                        text x="0" y=(y + 15) font-size="13" fill="#1b1f24" { (label) }
                        rect x="130" y=(y + 3) width=(format!("{w:.1}")) height="15" fill=(state_colour(label)) {}
                        text x=(format!("{:.1}", 136.0 + w)) y=(y + 15) font-size="13" fill="#1b1f24" { (n) }
                    }
                }
            }
        }
    }
}

/// The counts pictures (provision and power states).
pub fn counts(v: &FleetView) -> Markup {
    let states: Vec<(String, usize)> = v.by_state.iter().map(|(s, n)| (s.as_str().to_string(), *n)).collect();
    let q = FleetQuery::default();
    html! {
        div.pictures {
            (bars("Provision states", &states, |s| format!("/?{}", q.with(&[("state", Some(s))]))))
            (bars("Power states", &v.by_power, |s| format!("/?{}", q.with(&[("power", Some(s))]))))
        }
    }
}

/// The table's body rows.
pub fn rows(v: &FleetView) -> Markup {
    html! {
        @for r in &v.rows {
            @let n = &r.node;
            @let id = n.uuid.to_string();
            tr {
                td { a href=(format!("/nodes/{id}")) { (n.name.clone().unwrap_or_else(|| id.clone())) } }
                td.state { (n.provision_state.as_str()) }
                td { (n.power_state.map(|p| p.as_str()).unwrap_or("unknown")) }
                td { @if n.maintenance { "yes" } @else { "no" } }
                td { (n.driver) }
                td { (r.conductor) }
                td { (n.owner.as_deref().unwrap_or("")) }
                td { (n.updated_at.as_deref().unwrap_or("")) }
            }
        }
        @if v.rows.is_empty() {
            tr { td colspan="8" { "No node matches." } }
        }
    }
}

/// Previous/next links and the page number.
pub fn pager(v: &FleetView, q: &FleetQuery) -> Markup {
    let at = |p: usize| format!("/?{}", q.with(&[("page", Some(&p.to_string()))]));
    html! {
        @if v.page > 1 { a href=(at(v.page - 1)) rel="prev" { "← Previous" } }
        span { "Page " (v.page) " of " (v.pages) }
        @if v.page < v.pages { a href=(at(v.page + 1)) rel="next" { "Next →" } }
    }
}

fn select(name: &str, label: &str, options: &[String], current: Option<&str>) -> Markup {
    html! {
        label {
            (label)
            select name=(name) {
                option value="" { "any" }
                @for o in options {
                    option value=(o) selected[current == Some(o.as_str())] { (o) }
                }
            }
        }
    }
}

/// The fleet page.
pub fn fleet(v: &FleetView, q: &FleetQuery, who: &Identity) -> Markup {
    let states: Vec<String> = ProvisionState::ALL.iter().map(|s| s.as_str().to_string()).collect();
    let powers: Vec<String> = ["power on", "power off", "error", "unknown"].iter().map(|s| s.to_string()).collect();
    let live = format!("/console/fleet.json?{}", q.with(&[]));
    let sort = q.sort_key();
    let content = html! {
        h1 { "Fleet" }
        p.muted { (v.fleet) " nodes · signed in as " (who.user) " (" (who.role.as_str()) ")" }
        section aria-labelledby="counts-h" {
            h2 #counts-h { "By state" }
            div #counts { (counts(v)) }
        }
        section aria-labelledby="nodes-h" {
            h2 #nodes-h { "Nodes" }
            form.filters method="get" action="/" role="search" {
                label { "Search name or UUID" input type="search" name="q" value=[q.q.as_deref()]; }
                (select("state", "Provision state", &states, q.state.as_deref()))
                (select("power", "Power", &powers, q.power.as_deref()))
                (select("driver", "Driver", &v.drivers, q.driver.as_deref()))
                (select("conductor", "Conductor", &v.conductors, q.conductor.as_deref()))
                (select("owner", "Owner", &v.owners, q.owner.as_deref()))
                @if let Some(s) = &q.sort { input type="hidden" name="sort" value=(s); }
                @if let Some(d) = &q.dir { input type="hidden" name="dir" value=(d); }
                button type="submit" { "Apply" }
                a href="/" { "Clear" }
            }
            table #nodes {
                caption { span #total { (v.total) } " matching nodes" }
                thead {
                    tr {
                        @for (key, title) in SORT_KEYS {
                            @let on = *key == sort;
                            @let dir = if on && !q.descending() { "desc" } else { "asc" };
                            @let aria = if on { Some(if q.descending() { "descending" } else { "ascending" }) } else { None };
                            th scope="col" aria-sort=[aria] {
                                a href=(format!("/?{}", q.with(&[("sort", Some(key)), ("dir", Some(dir)), ("page", None)]))) {
                                    (title)
                                    @if on { @if q.descending() { " ▼" } @else { " ▲" } }
                                }
                            }
                        }
                    }
                }
                tbody #rows { (rows(v)) }
            }
            nav.pager #pager aria-label="Pages" { (pager(v, q)) }
        }
    };
    layout("Fleet", Some(("fleet", &live)), false, content)
}

fn json_block(v: &serde_json::Value) -> Markup {
    html! { pre { (serde_json::to_string_pretty(v).unwrap_or_default()) } }
}

/// The node's live state block.
pub fn node_state(v: &NodeView) -> Markup {
    let n = &v.node;
    html! {
        dl.props {
            dt { "Provision state" } dd.state { (n.provision_state.as_str())
                @if let Some(t) = n.target_provision_state { " → " (t.as_str()) } }
            dt { "Power" } dd { (n.power_state.map(|p| p.as_str()).unwrap_or("unknown")) }
            dt { "Maintenance" } dd { @if n.maintenance { "yes" @if let Some(r) = &n.maintenance_reason { " (" (r) ")" } } @else { "no" } }
            dt { "Last error" } dd { @if let Some(e) = &n.last_error { span.error { (e) } } @else { "none" } }
            dt { "Step" } dd { (n.deploy_step.get("step").and_then(|s| s.as_str()).unwrap_or("—")) }
            dt { "Updated" } dd { (n.updated_at.map(|t| t.to_rfc3339()).unwrap_or_default()) }
        }
    }
}

/// The run's messages as a timeline (inline SVG): one bar per message, from when it was sent to
/// the next message.
pub fn timeline(run: &Run) -> Markup {
    let spans = spans(run);
    let total = spans.last().map(|s| s.start_ms + s.len_ms).unwrap_or(0).max(1);
    let row_h = 18;
    let height = row_h * spans.len() + 24;
    let x0 = 330.0;
    let width = 420.0;
    html! {
        @if spans.is_empty() {
            p.muted { "No deploy or cleaning recorded for this node yet." }
        } @else {
            svg role="img" aria-label=(format!("Timeline of {} messages over {:.1} s", spans.len(), total as f64 / 1000.0))
                width="780" height=(height) viewBox=(format!("0 0 780 {height}")) xmlns="http://www.w3.org/2000/svg" {
                @for (i, s) in spans.iter().enumerate() {
                    @let y = i * row_h;
                    @let x = x0 + s.start_ms as f64 / total as f64 * width;
                    @let w = (s.len_ms as f64 / total as f64 * width).max(1.5);
                    g {
                        title { (s.from) " → " (s.to) ": " (s.label) " at " (s.start_ms) " ms, " (s.len_ms) " ms" }
                        text x="0" y=(y + 13) font-size="11" fill="#1b1f24" { (truncate(&s.label, 52)) }
                        rect x=(format!("{x:.1}")) y=(y + 3) width=(format!("{w:.1}")) height="12" fill="#0b5cad" {}
                    }
                }
                text x=(x0) y=(height - 6) font-size="11" fill="#4a5361" { "0 s" }
                text x=(x0 + width - 40.0) y=(height - 6) font-size="11" fill="#4a5361" { (format!("{:.1} s", total as f64 / 1000.0)) }
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

/// Which run the diagram shows: a deploy or a cleaning, its number, its size so far.
pub fn run_info(run: &Run) -> Markup {
    html! {
        @if run.events.is_empty() {
            "No deploy or cleaning recorded for this node yet."
        } @else {
            (run.kind.as_str()) " · run " (run.number) " of " (run.of) " recorded · " span #event-count { (run.events.len()) } " messages"
        }
    }
}

/// The diagram block: Mermaid draws the text when the build bundled it; the text stays below.
pub fn diagram(run: &Run) -> Markup {
    html! {
        p.muted #run-info { (run_info(run)) }
        div #diagram aria-live="polite" {}
        @if !assets::have_mermaid() {
            p.muted { "This build has no Mermaid bundle (npm was missing): the diagram's text follows." }
        }
        details open[!assets::have_mermaid()] {
            summary { "Mermaid text" }
            pre #diagram-source { (run.mermaid) }
        }
    }
}

/// Buttons for the actions, each going to a confirmation page (those the node's state allows;
/// the live update redraws them as it changes).
pub fn actions(v: &NodeView) -> Markup {
    let id = v.node.uuid.to_string();
    let confirm = format!("/console/nodes/{id}/confirm");
    let button = |action: &str, label: &str| {
        html! {
            form method="get" action=(confirm) {
                input type="hidden" name="action" value=(action);
                button type="submit" data-action=(action) { (label) }
            }
        }
    };
    let s = v.node.provision_state;
    html! {
        div.actions {
            (button("power_on", "Power on"))
            (button("power_off", "Power off"))
            (button("reboot", "Reboot"))
            @if matches!(s, ProvisionState::Enroll | ProvisionState::Available | ProvisionState::CleanFailed) {
                (button("manage", "Manage"))
            }
            @if s == ProvisionState::Manageable { (button("provide", "Provide")) }
            @if s == ProvisionState::Available {
                form method="get" action=(confirm) {
                    input type="hidden" name="action" value="deploy";
                    label { "Image "
                        select name="image" required {
                            @for (iid, name) in &v.images { option value=(iid) { (name) } }
                        }
                    }
                    button type="submit" data-action="deploy" disabled[v.images.is_empty()] { "Deploy" }
                }
            }
            @if matches!(s, ProvisionState::Active | ProvisionState::DeployFailed | ProvisionState::DeployWait) {
                (button("undeploy", "Undeploy"))
            }
            @if v.node.maintenance { (button("maintenance_off", "Maintenance off")) }
            @else { (button("maintenance_on", "Maintenance on")) }
        }
    }
}

/// The node page.
pub fn node(v: &NodeView) -> Markup {
    let n = &v.node;
    let id = n.uuid.to_string();
    let title = n.name.clone().unwrap_or_else(|| id.clone());
    let live = format!("/console/nodes/{id}/live.json");
    let content = html! {
        h1 { "Node " (title) }
        p.muted { "UUID " code { (id) } " · driver " (n.driver) " · conductor " (v.conductor.as_deref().unwrap_or("none")) }
        section aria-labelledby="state-h" {
            h2 #state-h { "State" }
            div #node-state { (node_state(v)) }
        }
        @if v.may_act {
            section aria-labelledby="actions-h" #actions {
                h2 #actions-h { "Actions" }
                div #action-buttons { (actions(v)) }
            }
        }
        section aria-labelledby="deploy-h" {
            h2 #deploy-h { "Last deploy or cleaning" }
            (diagram(&v.run))
            h3 { "Timeline" }
            div #timeline { (timeline(&v.run)) }
        }
        section aria-labelledby="props-h" {
            h2 #props-h { "Properties" }
            dl.props {
                dt { "Owner" } dd { (n.owner.as_deref().unwrap_or("")) }
                dt { "Lessee" } dd { (n.lessee.as_deref().unwrap_or("")) }
                dt { "Resource class" } dd { (n.resource_class.as_deref().unwrap_or("")) }
                dt { "Instance" } dd { (n.instance_uuid.as_deref().unwrap_or("")) }
                dt { "Created" } dd { (n.created_at.to_rfc3339()) }
            }
            h3 { "properties" } (json_block(&serde_json::Value::Object(n.properties.clone())))
            h3 { "driver_info (secrets masked)" } (json_block(&crate::api::render::mask_secrets(&n.driver_info)))
            h3 { "instance_info (secrets masked)" } (json_block(&crate::api::render::mask_secrets(&n.instance_info)))
        }
        section aria-labelledby="ports-h" {
            h2 #ports-h { "Ports" }
            table {
                thead { tr { th scope="col" { "MAC" } th scope="col" { "UUID" } th scope="col" { "PXE" } } }
                tbody {
                    @for p in &v.ports {
                        tr { td { code { (p.address.to_string()) } } td { (p.uuid.to_string()) } td { (p.pxe_enabled) } }
                    }
                    @if v.ports.is_empty() { tr { td colspan="3" { "No ports." } } }
                }
            }
        }
        section aria-labelledby="history-h" {
            h2 #history-h { "History" }
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Severity" } th scope="col" { "Event" } } }
                tbody {
                    @for h in &v.history {
                        tr { td { (h.created_at.to_rfc3339()) } td { (h.severity) } td { (h.event) } }
                    }
                    @if v.history.is_empty() { tr { td colspan="3" { "No history." } } }
                }
            }
        }
    };
    layout(&format!("Node {title}"), Some(("node", &live)), true, content)
}

/// The confirmation page of an action.
pub fn confirm(node: &ferric_types::models::Node, action: &str, what: &str, image: Option<&str>) -> Markup {
    let id = node.uuid.to_string();
    let title = node.name.clone().unwrap_or_else(|| id.clone());
    layout(
        "Confirm",
        None,
        false,
        html! {
            h1 { "Confirm: " (what) }
            p { "Node " strong { (title) } " (" code { (id) } ") is " (node.provision_state.as_str()) "." }
            @if let Some(i) = image { p { "Image " code { (i) } } }
            form method="post" action=(format!("/console/nodes/{id}/action")) {
                input type="hidden" name="action" value=(action);
                @if let Some(i) = image { input type="hidden" name="image" value=(i); }
                button.danger #confirm type="submit" { (what) }
                " "
                a href=(format!("/nodes/{id}")) { "Cancel" }
            }
        },
    )
}

/// Inline `<script>` text: `</script` (any case) becomes `<\/script`, the same text in a JS
/// string or regular expression, so the script cannot end its element early.
pub fn inline_script(js: &str) -> PreEscaped<String> {
    let lower = js.to_ascii_lowercase();
    let mut out = String::with_capacity(js.len());
    let mut last = 0;
    for (i, _) in lower.match_indices("</script") {
        out.push_str(&js[last..i]);
        out.push_str("<\\/");
        last = i + 2;
    }
    out.push_str(&js[last..]);
    PreEscaped(out)
}

/// A self-contained page (style, Mermaid and the drawing script inline; nothing fetched): the
/// scenario runner's `--html` report. Every `pre.mermaid-src` is drawn into the element before it.
pub fn standalone(title: &str, content: Markup) -> Markup {
    let mermaid = assets::mermaid_js();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, html! { style { (PreEscaped(assets::STYLE)) } }))
            body {
                main { (content) }
                @if let Some(js) = &mermaid {
                    script { (inline_script(js)) }
                    script { (PreEscaped(DRAW_ALL)) }
                } @else {
                    p.muted { "This build has no Mermaid bundle: the diagrams' text is shown instead." }
                }
            }
        }
    }
}

/// Draws each `pre.mermaid-src` into the `div.diagram` before it (the report's script).
const DRAW_ALL: &str = r#"
mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
(async function () {
  var srcs = document.querySelectorAll("pre.mermaid-src");
  for (var i = 0; i < srcs.length; i++) {
    var box = srcs[i].closest("section").querySelector("div.diagram");
    try { box.innerHTML = (await mermaid.render("d" + i, srcs[i].textContent)).svg; }
    catch (e) { box.textContent = "The diagram could not be drawn: " + e; }
  }
  document.body.dataset.drawn = String(srcs.length);
})();
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn inline_scripts_cannot_close_their_element() {
        let js = r#"var a = "</SCRIPT>"; var b = /</g;"#;
        assert_eq!(super::inline_script(js).0, r#"var a = "<\/SCRIPT>"; var b = /</g;"#);
    }
}
