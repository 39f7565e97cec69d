//! Several conductors on one database, in process on a paused clock: the hash ring splits the
//! nodes, a crashed conductor's nodes are taken over within the takeover interval (its agent-
//! waiting deploys go on, its interrupted work fails naming it), a paused conductor stops acting,
//! and with no live conductor the API answers 503 and writes nothing.

mod common;

use async_trait::async_trait;
use axum::http::StatusCode;
use ferric_service::assemble::{Outside, Service};
use ferric_service::config::{Config, Role};
use ferric_service::db::{Db, Outage};
use ferric_service::drivers::{BootInterface, DriverError, Task};
use ferric_service::rpc::router::{Router, Transport};
use ferric_types::clock::Clock;
use ferric_types::models::{BootDevice, NodeId, ProvisionState};
use ferric_types::rpc::{ConductorApi, RpcError};
use ferric_types::trace::Recorder;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::waiting::WaitingDeploy;

/// A boot interface counting the ramdisk boots it prepared (per conductor).
struct CountingBoot(Arc<AtomicUsize>);

#[async_trait]
impl BootInterface for CountingBoot {
    fn validate(&self, _t: &Task) -> Result<(), DriverError> {
        Ok(())
    }
    fn ramdisk_boot_device(&self) -> BootDevice {
        BootDevice::Pxe
    }
    async fn prepare_ramdisk(&self, _t: &mut Task) -> Result<(), DriverError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn clean_up_ramdisk(&self, _t: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn prepare_instance(&self, _t: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    async fn clean_up_instance(&self, _t: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
}

fn epoch() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc)
}

struct Member {
    svc: Service,
    periodic: Option<tokio::task::JoinHandle<()>>,
    boots: Arc<AtomicUsize>,
}

struct Cluster {
    tokens: parking_lot::Mutex<HashMap<String, String>>,
    db: Db,
    members: Vec<Member>,
    api: common::Api,
    /// Each member's connection to the database (cut with `set_down`).
    links: Vec<Outage>,
}

fn config(role: Role, host: &str) -> Config {
    let mut cfg = Config { role, ..Config::default() };
    cfg.rpc.password = "secret".into();
    cfg.rpc.bind = Some(([127, 0, 0, 1], 1).into());
    cfg.conductor.host = host.into();
    cfg.conductor.heartbeat_interval = 10;
    cfg.conductor.heartbeat_timeout = 60;
    cfg.conductor.deploy_callback_timeout = 3600;
    cfg.conductor.check_timeouts_interval = 60;
    cfg.conductor.sync_power_state_interval = 60;
    cfg
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        Cluster::with_groups(&vec![""; n])
    }

    /// One conductor per entry, in that conductor group.
    fn with_groups(groups: &[&str]) -> Cluster {
        let db = Db::open_in_memory().unwrap();
        let mut members = Vec::new();
        let links: Vec<Outage> = groups.iter().map(|_| Outage::new()).collect();
        for (i, group) in groups.iter().enumerate() {
            let boots = Arc::new(AtomicUsize::new(0));
            let b = boots.clone();
            let clock = Clock::virtual_from(epoch(), 100 + i as u64);
            let mut cfg = config(Role::Conductor, &format!("c{i}"));
            cfg.conductor.conductor_group = group.to_string();
            let own = db.linked(std::slice::from_ref(&links[i]));
            let svc = Service::build(cfg, own, Outside::real(clock).unwrap(), Recorder::default(), |p| {
                p.registry.register_deploy("fake", Arc::new(WaitingDeploy));
                p.registry.register_boot("fake", Arc::new(CountingBoot(b)));
            })
            .unwrap();
            let periodic = Some(svc.conductor.start());
            members.push(Member { svc, periodic, boots });
        }
        let peers: HashMap<String, _> =
            members.iter().map(|m| (m.svc.conductor.host().to_string(), m.svc.conductor.clone())).collect();
        let clock = Clock::virtual_from(epoch(), 7);
        let mut api = Service::build(
            config(Role::Api, "api"),
            db.clone(),
            Outside::real(clock.clone()).unwrap(),
            Recorder::default(),
            |_| {},
        )
        .unwrap();
        api.api.rpc =
            Arc::new(Router::new(db.clone(), api.conductor.clone(), Transport::InMemory(Arc::new(peers)), clock));
        Cluster { tokens: Default::default(), db, members, api: common::Api::from_service(api), links }
    }

    async fn idle(&self) {
        for m in &self.members {
            m.svc.conductor.wait_idle().await;
        }
    }

    async fn provision(&self, node: &str, verb: &str) -> common::Resp {
        let r = self.api.put(&format!("/v1/nodes/{node}/states/provision"), json!({"target": verb})).await;
        self.idle().await;
        r
    }

    async fn node(&self, u: &str) -> Value {
        self.api.get(&format!("/v1/nodes/{u}")).await.json()
    }

    /// `count` available nodes.
    async fn available(&self, count: usize) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..count {
            let u = self.api.node(&format!("n{i}")).await;
            assert_eq!(self.provision(&u, "manage").await.status, StatusCode::ACCEPTED);
            assert_eq!(self.provision(&u, "provide").await.status, StatusCode::ACCEPTED);
            assert_eq!(self.node(&u).await["provision_state"], "available");
            out.push(u);
        }
        out
    }

    /// Crashes member `i`: its work stops where it stands and it writes no more heartbeats.
    fn crash(&mut self, i: usize) {
        self.members[i].svc.conductor.halt();
        self.pause(i);
    }

    /// Pauses member `i`: no more heartbeats, but the process (and its conductor) lives on.
    fn pause(&mut self, i: usize) {
        if let Some(p) = self.members[i].periodic.take() {
            p.abort();
        }
    }

    async fn heartbeat(&self, u: &str, status: &str) -> StatusCode {
        let known = self.tokens.lock().get(u).cloned();
        let token = match known {
            Some(t) => t,
            None => {
                let lookup = self.api.get(&format!("/v1/lookup?node_uuid={u}")).await;
                assert_eq!(lookup.status, StatusCode::OK, "{}", lookup.text());
                let t = lookup.json()["config"]["agent_token"].as_str().unwrap().to_string();
                self.tokens.lock().insert(u.to_string(), t.clone());
                t
            }
        };
        let body = json!({"callback_url": "http://192.0.2.10:9999", "agent_token": token, "agent_status": status});
        let r = self.api.post(&format!("/v1/heartbeat/{u}"), body).await;
        self.idle().await;
        r.status
    }
}

fn owners(nodes: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in nodes {
        *m.entry(n["conductor"].as_str().unwrap_or("").to_string()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(start_paused = true)]
async fn a_crashed_conductors_nodes_are_taken_over_and_its_waiting_deploys_finish() {
    let mut c = Cluster::new(3);
    let nodes = c.available(24).await;
    let mut docs = Vec::new();
    for u in &nodes {
        docs.push(c.node(u).await);
    }
    let split = owners(&docs);
    assert!(split.len() >= 2 && !split.contains_key(""), "the ring splits the nodes: {split:?}");
    for u in &nodes {
        assert_eq!(c.provision(u, "active").await.status, StatusCode::ACCEPTED);
        assert_eq!(c.node(u).await["provision_state"], "wait call-back");
    }
    // The victim: the conductor with the most nodes. One of its nodes is mid-operation (its lock
    // held, "deploying"), as when a process dies between two steps.
    let (victim, _) = split.iter().max_by_key(|(_, n)| **n).unwrap();
    let vi: usize = victim[1..].parse().unwrap();
    let theirs: Vec<String> =
        nodes.iter().zip(&docs).filter(|(_, d)| d["conductor"] == victim.as_str()).map(|(u, _)| u.clone()).collect();
    let working = theirs[0].clone();
    let mut n = c.db.get_node(&working).unwrap();
    n.provision_state = ProvisionState::Deploying;
    c.db.update_node(&n).unwrap();
    c.db.reserve_node(n.uuid, victim).unwrap();
    let boots_before: usize = c.members.iter().map(|m| m.boots.load(Ordering::SeqCst)).sum();

    c.crash(vi);
    // heartbeat_timeout (60 s) plus one takeover interval (10 s), and a little slack.
    tokio::time::sleep(Duration::from_secs(75)).await;
    c.idle().await;

    let conductors = c.api.get("/v1/conductors").await.json();
    let alive: BTreeMap<String, bool> = conductors["conductors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["hostname"].as_str().unwrap().to_string(), x["alive"].as_bool().unwrap()))
        .collect();
    assert_eq!(alive.get(victim.as_str()), Some(&false), "{alive:?}");
    assert_eq!(c.db.count_reserved().unwrap(), 0, "no lock survives the takeover");
    let failed = c.node(&working).await;
    assert_eq!(failed["provision_state"], "deploy failed");
    assert!(failed["last_error"].as_str().unwrap().contains(&format!("Conductor {victim} went offline")), "{failed}");
    // Every waiting node of the lost conductor is owned again and had its boot prepared again.
    let waiting: Vec<&String> = theirs.iter().filter(|u| **u != working).collect();
    for u in &waiting {
        let d = c.node(u).await;
        assert_eq!(d["provision_state"], "wait call-back", "{d}");
        assert_ne!(d["conductor"], victim.as_str());
    }
    let boots_after: usize = c.members.iter().map(|m| m.boots.load(Ordering::SeqCst)).sum();
    assert_eq!(boots_after - boots_before, waiting.len(), "each taken-over waiting node's boot is prepared again");
    // Their agents heartbeat: the deploys finish on the new owners.
    for u in &nodes {
        if *u == working {
            continue;
        }
        assert_eq!(c.heartbeat(u, "start").await, StatusCode::ACCEPTED);
        assert_eq!(c.heartbeat(u, "end").await, StatusCode::ACCEPTED);
        assert_eq!(c.node(u).await["provision_state"], "active", "{u}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_paused_conductor_acts_on_nothing() {
    let mut c = Cluster::new(2);
    let nodes = c.available(10).await;
    c.pause(1);
    tokio::time::sleep(Duration::from_secs(75)).await;
    c.idle().await;
    for u in &nodes {
        assert_eq!(c.node(u).await["conductor"], "c0", "the live conductor owns every node");
    }
    // The paused one (its process alive) refuses to act: it has not written its heartbeat for
    // longer than the timeout, so its nodes may be another's.
    let paused = &c.members[1].svc.conductor;
    assert!(paused.fenced());
    let id: NodeId = nodes[0].parse().unwrap();
    let r = ConductorApi::set_maintenance(paused, id, true, None).await;
    assert!(matches!(r, Err(RpcError::Unavailable(_))), "{r:?}");
    assert_eq!(c.node(&nodes[0]).await["maintenance"], false);
    // Once it heartbeats again it is a member again, and acts on the nodes it owns.
    paused.beat().await;
    assert!(!paused.fenced());
}

#[tokio::test(start_paused = true)]
async fn a_conductor_cut_off_from_the_database_is_fenced_taken_over_and_rejoins() {
    let c = Cluster::new(2);
    let nodes = c.available(10).await;
    c.links[1].set_down(true);
    // Fenced one heartbeat interval before its peers may call it offline.
    tokio::time::sleep(Duration::from_secs(55)).await;
    assert!(c.members[1].svc.conductor.fenced());
    tokio::time::sleep(Duration::from_secs(20)).await;
    c.idle().await;
    for u in &nodes {
        assert_eq!(c.node(u).await["conductor"], "c0", "the connected conductor owns every node");
    }
    let id: NodeId = nodes[0].parse().unwrap();
    let r = ConductorApi::set_maintenance(&c.members[1].svc.conductor, id, true, None).await;
    assert!(matches!(r, Err(RpcError::Unavailable(_))), "{r:?}");
    // Reconnected, it heartbeats, is a member again and gets its share of the ring back.
    c.links[1].set_down(false);
    tokio::time::sleep(Duration::from_secs(15)).await;
    c.idle().await;
    assert!(!c.members[1].svc.conductor.fenced());
    let mut docs = Vec::new();
    for u in &nodes {
        docs.push(c.node(u).await);
    }
    assert!(owners(&docs).contains_key("c1"), "{:?}", owners(&docs));
    assert_eq!(c.db.count_reserved().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_live_conductor_the_api_answers_503_and_writes_nothing() {
    let mut c = Cluster::new(1);
    let nodes = c.available(1).await;
    c.crash(0);
    tokio::time::sleep(Duration::from_secs(75)).await;
    let r = c.api.post("/v1/nodes", json!({"driver": "fake-hardware", "name": "late"})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.fault().contains("No valid host was found"), "{}", r.fault());
    assert_eq!(c.api.get("/v1/nodes").await.json()["nodes"].as_array().unwrap().len(), 1);
    let r = c.api.put(&format!("/v1/nodes/{}/states/provision", nodes[0]), json!({"target": "manage"})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(c.node(&nodes[0]).await["provision_state"], "available");
}

#[tokio::test(start_paused = true)]
async fn conductor_groups_pick_the_ring() {
    let c = Cluster::with_groups(&["", "rack1", "rack1"]);
    for i in 0..6 {
        let r = c
            .api
            .post("/v1/nodes", json!({"driver": "fake-hardware", "name": format!("g{i}"), "conductor_group": "rack1"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let owner = c.node(r.json()["uuid"].as_str().unwrap()).await["conductor"].clone();
        assert!(owner == "c1" || owner == "c2", "{owner}");
    }
    let u = c.api.node("plain").await;
    assert_eq!(c.node(&u).await["conductor"], "c0");
    let r = c.api.post("/v1/nodes", json!({"driver": "fake-hardware", "conductor_group": "rack9"})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.fault().contains("conductor group \"rack9\""), "{}", r.fault());
}
