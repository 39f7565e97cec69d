//! Properties of the provision state machine, driven through the API only: random verb sequences
//! only ever follow table transitions; stable states clear `target_provision_state`; no lock
//! outlives its operation; every failure state carries `last_error`; rejected verbs change nothing.

mod common;

use axum::http::StatusCode;
use common::Api;
use ferric_types::models::ProvisionState;
use ferric_types::state_machine::{self, Event, Verb};
use proptest::prelude::*;
use serde_json::{Value, json};

const INTERNAL: &[Event] = &[Event::Done, Event::Fail, Event::Wait, Event::Resume, Event::Clean, Event::Manage];

/// Can `to` be reached from `from` by `first` followed by internal events?
fn reachable(from: ProvisionState, first: Event, to: ProvisionState) -> bool {
    let Some(start) = state_machine::next(from, first) else { return false };
    let mut seen = vec![start];
    let mut i = 0;
    while i < seen.len() {
        let s = seen[i];
        if s == to {
            return true;
        }
        for e in INTERNAL {
            if let Some(n) = state_machine::next(s, *e) {
                if !seen.contains(&n) {
                    seen.push(n);
                }
            }
        }
        i += 1;
    }
    false
}

fn body_for(verb: &str) -> Value {
    match verb {
        "clean" => json!({"target": verb, "clean_steps": [{"interface": "deploy", "step": "erase_devices_metadata"}]}),
        "service" => json!({"target": verb, "service_steps": [{"interface": "deploy", "step": "noop"}]}),
        "rescue" => json!({"target": verb, "rescue_password": "pw"}),
        _ => json!({"target": verb}),
    }
}

async fn run(verbs: Vec<usize>, power: Vec<bool>) {
    let api = Api::virtual_clock(ferric_service::config::Config::default());
    let u = api.node("prop").await;
    for (i, v) in verbs.into_iter().enumerate() {
        let verb = Verb::ALL[v % Verb::ALL.len()].as_str();
        let before = api.get(&format!("/v1/nodes/{u}")).await.json();
        let from: ProvisionState = before["provision_state"].as_str().unwrap().parse().unwrap();
        let r = api.put(&format!("/v1/nodes/{u}/states/provision"), body_for(verb)).await;
        if power.get(i).copied().unwrap_or(false) {
            let _ = api.put(&format!("/v1/nodes/{u}/states/power"), json!({"target": "power on"})).await;
        }
        api.idle().await;
        let after = api.get(&format!("/v1/nodes/{u}")).await.json();
        let to: ProvisionState = after["provision_state"].as_str().unwrap().parse().unwrap();
        let event = Verb::parse(verb).unwrap().event();
        if r.status == StatusCode::ACCEPTED {
            assert!(reachable(from, event, to), "{from} --{verb}--> {to} is not in the table");
        } else {
            assert!(r.status.is_client_error(), "{verb}: {} {}", r.status, r.text());
            assert_eq!(from, to, "rejected {verb} changed the state");
            assert!(
                !state_machine::is_actionable(from, event) || r.status != StatusCode::BAD_REQUEST || verb == "abort"
            );
        }
        if state_machine::is_stable(to) {
            assert_eq!(after["target_provision_state"], Value::Null, "{to} kept a target");
        }
        if state_machine::is_failure(to) {
            assert!(after["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{to} without last_error");
        }
        assert_eq!(after["reservation"], Value::Null, "lock outlived {verb}");
    }
    assert_eq!(api.service.db.count_reserved().unwrap(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn api_verbs_follow_the_table(verbs in proptest::collection::vec(0..Verb::ALL.len(), 1..24),
                                  power in proptest::collection::vec(any::<bool>(), 0..24)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(run(verbs, power));
    }
}
