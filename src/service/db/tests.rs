//! The store's tests that concern both backends as a whole (schema versions, locks across
//! processes, PostgreSQL going away), and what the other modules' tests use to run on both.

use super::testing::PgCluster;
use super::{Db, DbError, NodeFilter, SCHEMA_VERSION, SchemaMode, migrations, pg, upgrade};
use ferric_types::models::{Node, NodeId};

/// A database of a test's own, on one backend; [`TestStore::open`] gives handles on it, each
/// standing for a process of its own.
pub(crate) struct TestStore {
    url: String,
    backing: Backing,
}

enum Backing {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Pg(PgCluster),
}

impl TestStore {
    /// An SQLite file (WAL, a writer and readers: the production shape).
    pub(crate) fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("ferric.db").display());
        TestStore { url, backing: Backing::Sqlite(dir) }
    }

    /// A database on a PostgreSQL cluster of the test's own.
    pub(crate) fn postgres() -> TestStore {
        let pg = PgCluster::start();
        let url = pg.create_database("ferric");
        TestStore { url, backing: Backing::Pg(pg) }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn cluster(&self) -> Option<&PgCluster> {
        match &self.backing {
            Backing::Pg(pg) => Some(pg),
            Backing::Sqlite(_) => None,
        }
    }

    /// A new handle on the database, its schema brought up to date.
    pub(crate) fn open(&self) -> Db {
        Db::connect(&self.url, SchemaMode::Upgrade).expect("open the test database")
    }

    /// Runs migrations up to `version` only (an older binary's database), then `then_sql`
    /// (parameterless statements in the common SQL of both backends).
    pub(crate) fn set_up_at_version(&self, version: u32, then_sql: &str) {
        match &self.backing {
            Backing::Sqlite(_) => {
                let path = self.url.trim_start_matches("sqlite://");
                let c = rusqlite::Connection::open(path).unwrap();
                for i in 0..version {
                    let sql = migrations::render(i as usize, super::sql::Dialect::Sqlite);
                    c.execute_batch(&format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1)).unwrap();
                }
                c.execute_batch(then_sql).unwrap();
            }
            Backing::Pg(_) => {
                let store = pg::PgStore::new(&self.url).unwrap();
                store
                    .session(|s| {
                        s.batch("CREATE TABLE schema_version (version BIGINT NOT NULL); INSERT INTO schema_version VALUES (0)")?;
                        for i in 0..version {
                            s.batch(&migrations::render(i as usize, super::sql::Dialect::Postgres))?;
                        }
                        s.batch(&format!("UPDATE schema_version SET version = {version}"))?;
                        s.batch(then_sql)
                    })
                    .unwrap();
            }
        }
    }

    /// Records schema version `version` as the database's, without changing its tables.
    pub(crate) fn force_version(&self, version: u32) {
        match &self.backing {
            Backing::Sqlite(_) => {
                let path = self.url.trim_start_matches("sqlite://");
                let c = rusqlite::Connection::open(path).unwrap();
                c.pragma_update(None, "user_version", version).unwrap();
            }
            Backing::Pg(_) => {
                let store = pg::PgStore::new(&self.url).unwrap();
                store.session(|s| s.batch(&format!("UPDATE schema_version SET version = {version}"))).unwrap();
            }
        }
    }
}

/// Runs each named test `fn name(t: &TestStore)` on SQLite and on PostgreSQL, as
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&$crate::db::tests::TestStore::sqlite());
            }
            #[test]
            fn postgres() {
                super::$name(&$crate::db::tests::TestStore::postgres());
            }
        }
    )*};
}
pub(crate) use on_both_backends;

pub(crate) fn node(name: &str) -> Node {
    Node { uuid: NodeId(uuid::Uuid::new_v4()), name: Some(name.into()), driver: "ipmi".into(), ..Default::default() }
}

on_both_backends!(
    check_mode_refuses_older_and_newer_schemas,
    upgrade_builds_the_schema_from_empty,
    processes_starting_together_upgrade_once,
    locks_are_compare_and_swap_between_processes,
    concurrent_writers_all_get_through,
);

fn mismatch(r: Result<Db, DbError>) -> (u32, u32, String) {
    match r {
        Err(e @ DbError::SchemaMismatch { database, binary, .. }) => (database, binary, e.to_string()),
        Err(e) => panic!("expected a schema mismatch, got {e}"),
        Ok(_) => panic!("expected a schema mismatch, got a store"),
    }
}

fn check_mode_refuses_older_and_newer_schemas(t: &TestStore) {
    let hint = format!("run `ferric db upgrade --database {}`", t.url());
    // Empty: older than anything.
    let (found, binary, msg) = mismatch(Db::connect(t.url(), SchemaMode::Check));
    assert_eq!((found, binary), (0, SCHEMA_VERSION));
    assert!(msg.contains(&hint), "{msg}");

    t.set_up_at_version(3, "SELECT 1");
    let (found, _, msg) = mismatch(Db::connect(t.url(), SchemaMode::Check));
    assert_eq!(found, 3);
    assert!(msg.contains("schema version 3 is older than this ferric's schema version"), "{msg}");
    assert!(msg.contains(&SCHEMA_VERSION.to_string()) && msg.contains(&hint), "{msg}");

    assert_eq!(upgrade(t.url()).unwrap(), (3, SCHEMA_VERSION));
    let db = Db::connect(t.url(), SchemaMode::Check).unwrap();
    db.create_node(&node("n")).unwrap();
    drop(db);

    let newer = SCHEMA_VERSION + 1;
    t.force_version(newer);
    let (found, binary, msg) = mismatch(Db::connect(t.url(), SchemaMode::Check));
    assert_eq!((found, binary), (newer, SCHEMA_VERSION));
    assert!(
        msg.contains(&format!("schema version {newer} is newer than this ferric's schema version {SCHEMA_VERSION}")),
        "{msg}"
    );
    assert!(msg.contains("ferric db upgrade --database"), "{msg}");
    // Nor will an upgrade run on it.
    let (found, _, _) = mismatch(Db::connect(t.url(), SchemaMode::Upgrade));
    assert_eq!(found, newer);
}

fn upgrade_builds_the_schema_from_empty(t: &TestStore) {
    assert_eq!(upgrade(t.url()).unwrap(), (0, SCHEMA_VERSION));
    assert_eq!(upgrade(t.url()).unwrap(), (SCHEMA_VERSION, SCHEMA_VERSION));
    let db = Db::connect(t.url(), SchemaMode::Check).unwrap();
    let n = node("fresh");
    db.create_node(&n).unwrap();
    assert_eq!(db.get_node("fresh").unwrap().uuid, n.uuid);
}

/// Several processes starting at once on an empty database: each sees the whole schema, and
/// each migration ran once.
fn processes_starting_together_upgrade_once(t: &TestStore) {
    let got: Vec<(u32, u32)> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..3).map(|_| s.spawn(|| upgrade(t.url()).unwrap())).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(got.iter().all(|&(from, to)| from <= to && to == SCHEMA_VERSION), "{got:?}");
    let db = Db::connect(t.url(), SchemaMode::Check).unwrap();
    db.create_node(&node("n")).unwrap();
}

/// Two handles (two conductors) race for one node's lock, round after round: each round exactly
/// one takes it, and the other is told who holds it.
fn locks_are_compare_and_swap_between_processes(t: &TestStore) {
    let (a, b) = (t.open(), t.open());
    let n = node("contended");
    a.create_node(&n).unwrap();
    let barrier = std::sync::Barrier::new(2);
    const ROUNDS: usize = 30;
    let race = |db: &Db, host: &str| {
        let mut won = 0;
        for _ in 0..ROUNDS {
            barrier.wait();
            let got = db.reserve_node(n.uuid, host);
            barrier.wait();
            match got {
                Ok(locked) => {
                    assert_eq!(locked.reservation.as_deref(), Some(host));
                    assert_eq!(db.count_reserved().unwrap(), 1);
                    won += 1;
                    barrier.wait();
                    db.release_node(n.uuid, host).unwrap();
                }
                Err(DbError::Locked { host: holder, .. }) => {
                    assert_ne!(holder, host);
                    barrier.wait();
                }
                Err(e) => panic!("reserve: {e}"),
            }
            barrier.wait();
        }
        won
    };
    let (wa, wb) = std::thread::scope(|s| {
        let ta = s.spawn(|| race(&a, "conductor-a"));
        let tb = s.spawn(|| race(&b, "conductor-b"));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert_eq!(wa + wb, ROUNDS, "each round exactly one handle takes the lock");
    assert_eq!(a.count_reserved().unwrap(), 0);
}

/// Writers in two processes, two threads each, on nodes of their own and on one shared node:
/// every write goes through (PostgreSQL's serialization failures are retried), and the shared
/// counter in the node's description counts every increment.
fn concurrent_writers_all_get_through(t: &TestStore) {
    use super::LockUse;
    let (a, b) = (t.open(), t.open());
    let shared = node("shared");
    a.create_node(&shared).unwrap();
    const CYCLES: usize = 15;
    let work = |db: &Db, who: &str| {
        let mut own = node(who);
        db.create_node(&own).unwrap();
        for i in 0..CYCLES {
            let mut task = db.reserve_node(own.uuid, who).unwrap();
            task.description = Some(format!("{i}"));
            db.update_node_recording(&task, &[], || unreachable!(), 5, LockUse::Held(who)).unwrap();
            db.update_node_recording(&task, &[], || unreachable!(), 5, LockUse::Release(who)).unwrap();
            own = task;
            // The shared node: take its lock in turn (retrying while another holds it), bump.
            let mut task = loop {
                match db.reserve_node(shared.uuid, who) {
                    Ok(n) => break n,
                    Err(DbError::Locked { .. }) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            };
            let count: usize = task.description.as_deref().unwrap_or("0").parse().unwrap();
            task.description = Some((count + 1).to_string());
            db.update_node_recording(&task, &[], || unreachable!(), 5, LockUse::Release(who)).unwrap();
        }
    };
    std::thread::scope(|s| {
        for (db, who) in [(&a, "a1"), (&a, "a2"), (&b, "b1"), (&b, "b2")] {
            s.spawn(move || work(db, who));
        }
    });
    let got = b.get_node_by_uuid(shared.uuid).unwrap();
    assert_eq!(got.description, Some((4 * CYCLES).to_string()));
    assert_eq!(a.count_reserved().unwrap(), 0);
}

/// PostgreSQL stopped under a running store: calls fail as unavailable, within the pool's bound,
/// and the same handle works again once the server is back.
#[test]
fn postgres_restart_is_survived_by_the_same_handle() {
    let t = TestStore::postgres();
    let pg = t.cluster().unwrap();
    let db = t.open();
    let mut n = node("survivor");
    db.create_node(&n).unwrap();
    db.get_node_by_uuid(n.uuid).unwrap();

    pg.stop();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        match db.list_node_summaries(&Default::default()) {
            Err(DbError::Unavailable(_)) => {}
            other => panic!("expected Unavailable while PostgreSQL is down, got {other:?}"),
        }
        n.description = Some("while down".into());
        assert!(matches!(db.update_node(&n), Err(DbError::Unavailable(_))));
        assert!(started.elapsed() < std::time::Duration::from_secs(12), "{:?}", started.elapsed());
    }

    pg.start_again();
    n.description = Some("after restart".into());
    db.update_node(&n).unwrap();
    let got = db.get_node_by_uuid(n.uuid).unwrap();
    assert_eq!(got.description.as_deref(), Some("after restart"));
    db.reserve_node(n.uuid, "c").unwrap();
    assert_eq!(db.count_reserved().unwrap(), 1);
}

/// The synchronous API on PostgreSQL from inside tokio runtimes of both flavours.
#[test]
fn postgres_calls_work_from_async_code() {
    let t = TestStore::postgres();
    let db = t.open();
    let n = node("async");
    db.create_node(&n).unwrap();
    for multi in [false, true] {
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
        } else {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
        };
        let db = db.clone();
        rt.block_on(async move {
            let task = tokio::spawn(async move {
                let locked = db.reserve_node(n.uuid, "async-host").unwrap();
                tokio::task::yield_now().await;
                db.release_node(n.uuid, "async-host").unwrap();
                locked.name
            });
            assert_eq!(task.await.unwrap().as_deref(), Some("async"));
        });
    }
    // The last handle may be dropped inside async code.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move { drop(db) });
}

#[test]
#[should_panic(expected = "apt-get install postgresql")]
fn postgres_tests_fail_loudly_without_postgres() {
    PgCluster::start_with_binaries(std::path::Path::new("/nonexistent/postgresql/bin"));
}

#[test]
fn connect_refuses_an_unknown_scheme_and_hides_passwords() {
    match Db::connect("mysql://u:secret@h/db", SchemaMode::Upgrade) {
        Err(e @ DbError::Open { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("unsupported database URL") && !msg.contains("secret"), "{msg}");
        }
        other => panic!("expected Open, got {:?}", other.err()),
    }
    assert_eq!(
        super::redact("postgres://u:pw@h:5/db?password=x&host=/s"),
        "postgres://u:***@h:5/db?password=***&host=/s"
    );
    assert_eq!(super::redact("postgresql://u@/db?host=/tmp/s"), "postgresql://u@/db?host=/tmp/s");
}

/// PostgreSQL down when connecting: unavailable, not a hang.
#[test]
fn postgres_down_at_connect_is_unavailable() {
    let t = TestStore::postgres();
    t.cluster().unwrap().stop();
    let started = std::time::Instant::now();
    match Db::connect(t.url(), SchemaMode::Upgrade) {
        Err(DbError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {:?}", other.err()),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(12));
}

on_both_backends!(constraint_violations_map_alike, allocations_edit_bodies_alike);

/// UNIQUE and foreign-key violations give the same errors, worded the same, on both backends.
fn constraint_violations_map_alike(t: &TestStore) {
    use ferric_types::models::{Port, PortId, VolumeConnector, VolumeConnectorId};
    let db = t.open();
    let n = node("n");
    db.create_node(&n).unwrap();
    let dup = |r: Result<(), DbError>| match r {
        Err(DbError::Duplicate(m)) => m,
        other => panic!("expected Duplicate, got {other:?}"),
    };
    assert_eq!(dup(db.create_node(&node("n"))), "A node with name n already exists.");
    let again = Node { name: Some("other".into()), ..n.clone() };
    assert_eq!(dup(db.create_node(&again)), format!("A node with UUID {} already exists.", n.uuid));

    let port = |mac: &str| Port {
        uuid: PortId(uuid::Uuid::new_v4()),
        address: mac.parse().unwrap(),
        node_uuid: n.uuid,
        ..Default::default()
    };
    db.create_port(&port("52:54:00:00:00:01")).unwrap();
    assert_eq!(
        dup(db.create_port(&port("52:54:00:00:00:01"))),
        "A port with MAC address 52:54:00:00:00:01 already exists."
    );

    let vc = |node_uuid, id: &str| VolumeConnector {
        uuid: VolumeConnectorId(uuid::Uuid::new_v4()),
        node_uuid,
        connector_type: "iqn".into(),
        connector_id: id.into(),
        extra: Default::default(),
        created_at: chrono::Utc::now(),
        updated_at: None,
    };
    db.create_volume_connector(&vc(n.uuid, "iqn.1")).unwrap();
    assert_eq!(
        dup(db.create_volume_connector(&vc(n.uuid, "iqn.1"))),
        "A volume connector with type iqn and connector ID iqn.1 already exists."
    );
    let gone = NodeId(uuid::Uuid::new_v4());
    match db.create_volume_connector(&vc(gone, "iqn.2")) {
        Err(DbError::NotFound { kind: "Node", ident }) => assert_eq!(ident, gone.to_string()),
        other => panic!("expected the node's NotFound, got {other:?}"),
    }
    match db.put_bios_settings(gone, &[Default::default()]) {
        Err(DbError::NotFound { kind: "Node", .. }) => {}
        other => panic!("expected the node's NotFound, got {other:?}"),
    }
    // A failed write leaves the store usable (PostgreSQL's aborted transaction is gone).
    assert_eq!(db.node_ports(n.uuid).unwrap().len(), 1);
}

/// The statements that edit JSON bodies in SQL (allocations) give the same records.
fn allocations_edit_bodies_alike(t: &TestStore) {
    use ferric_types::models::{Allocation, AllocationId};
    let db = t.open();
    let mut n = node("n");
    db.create_node(&n).unwrap();
    let mut a = Allocation {
        uuid: AllocationId(uuid::Uuid::new_v4()),
        name: Some("alloc".into()),
        node_uuid: None,
        state: "allocating".into(),
        last_error: None,
        resource_class: Some("rc".into()),
        traits: vec![],
        candidate_nodes: vec![],
        extra: Default::default(),
        owner: None,
        created_at: chrono::Utc::now(),
        updated_at: None,
    };
    db.create_allocation(&a).unwrap();
    a.state = "active".into();
    a.node_uuid = Some(n.uuid);
    n.instance_uuid = Some(a.uuid.to_string());
    db.allocate_node(&a, &n).unwrap();
    assert_eq!(db.get_node("n").unwrap().allocation_uuid, Some(a.uuid.to_string()));

    // A save of the allocation's own fields keeps the stored node link.
    let mut stale = a.clone();
    stale.node_uuid = None;
    stale.last_error = Some("x".into());
    db.update_allocation(&stale).unwrap();
    let got = db.get_allocation("alloc").unwrap();
    assert_eq!((got.node_uuid, got.last_error.as_deref()), (Some(n.uuid), Some("x")));

    let mut extra = ferric_types::models::JsonMap::new();
    extra.insert("k".into(), serde_json::json!({"deep": [1, 2]}));
    let at = chrono::Utc::now();
    db.patch_allocation(a.uuid, Some("renamed"), &extra, at).unwrap();
    let got = db.get_allocation(&a.uuid.to_string()).unwrap();
    assert_eq!(
        (got.name.as_deref(), &got.extra, got.updated_at, got.node_uuid),
        (Some("renamed"), &extra, Some(at), Some(n.uuid))
    );

    db.destroy_allocation(a.uuid).unwrap();
    let freed = db.get_node_by_uuid(n.uuid).unwrap();
    assert_eq!((freed.instance_uuid, freed.allocation_uuid), (None, None));

    // The trigger: releasing a node's instance removes its allocation.
    let b = Allocation { uuid: AllocationId(uuid::Uuid::new_v4()), name: None, ..a.clone() };
    db.create_allocation(&b).unwrap();
    n.instance_uuid = Some(b.uuid.to_string());
    db.allocate_node(&b, &n).unwrap();
    n.instance_uuid = None;
    db.update_node(&n).unwrap();
    assert!(matches!(db.get_allocation(&b.uuid.to_string()), Err(DbError::NotFound { .. })));
}

on_both_backends!(keyed_scans_keep_what_the_ring_test_keeps);

fn keyed_scans_keep_what_the_ring_test_keeps(t: &TestStore) {
    let db = t.open();
    let (a, mut b) = (node("a"), node("b"));
    b.conductor_group = "g".into();
    db.create_node(&a).unwrap();
    db.create_node(&b).unwrap();
    db.reserve_node(a.uuid, "c").unwrap();
    let mut seen = Vec::new();
    let kept = db
        .node_ids_keyed(&NodeFilter::default(), |id, driver, group| {
            seen.push((id, driver.to_string(), group.to_string()));
            group == "g"
        })
        .unwrap();
    assert_eq!(kept, vec![b.uuid]);
    seen.sort_by_key(|k| k.0 != a.uuid);
    assert_eq!(seen, vec![(a.uuid, "ipmi".into(), String::new()), (b.uuid, "ipmi".into(), "g".into())]);
    let unlocked = NodeFilter { reserved: Some(false), ..Default::default() };
    assert_eq!(db.node_ids_keyed(&unlocked, |_, _, _| true).unwrap(), vec![b.uuid]);
}

#[test]
fn a_cut_link_fails_its_handles_calls_only() {
    let db = Db::open_in_memory().unwrap();
    let (whole, own) = (super::Outage::new(), super::Outage::new());
    let conductor = db.linked(&[whole.clone(), own.clone()]);
    let api = db.linked(std::slice::from_ref(&whole));
    let n = node("a");
    conductor.create_node(&n).unwrap();
    own.set_down(true);
    assert!(matches!(conductor.get_node_by_uuid(n.uuid), Err(DbError::Unavailable(_))));
    assert!(matches!(conductor.reserve_node(n.uuid, "c0"), Err(DbError::Unavailable(_))));
    assert_eq!(api.get_node_by_uuid(n.uuid).unwrap().uuid, n.uuid);
    whole.set_down(true);
    assert!(matches!(api.list_conductors(), Err(DbError::Unavailable(_))));
    // The observer's handle is on no link; nothing was written meanwhile.
    assert_eq!(db.get_node_by_uuid(n.uuid).unwrap().reservation, None);
    whole.set_down(false);
    own.set_down(false);
    assert!(conductor.reserve_node(n.uuid, "c0").is_ok());
}
