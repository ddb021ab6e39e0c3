use std::{os::unix::fs::PermissionsExt, time::Duration};

use serde_json::json;

use super::{
    AuditError, Query, Store,
    lifecycle::EndKind,
    test_events::{actor, at, base, event, task_life, with},
};

const HOUR: Duration = Duration::from_secs(3600);

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("sub/audit.db"), HOUR).expect("open store");
    (dir, store)
}

fn ids(events: &[serde_json::Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["event_id"].as_str()).collect()
}

#[test]
fn round_trip_keeps_events_whole_and_in_time_order() {
    let (dir, mut store) = store();
    let mut events = task_life();
    events.reverse();
    assert_eq!(store.insert_batch(&events).expect("insert"), 8);
    let back = store.query(&Query::default()).expect("query");
    events.reverse();
    assert_eq!(back, events);
    let mode = std::fs::metadata(dir.path().join("sub/audit.db")).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A reader sees what the writer stored.
    let reader = Store::open_read_only(&dir.path().join("sub/audit.db")).expect("read-only");
    assert_eq!(reader.query(&Query::default()).expect("query").len(), 8);
}

#[test]
fn a_duplicate_event_id_is_stored_once() {
    let (_dir, mut store) = store();
    store.insert_batch(&task_life()).expect("insert");
    assert_eq!(store.insert_batch(&task_life()[..3]).expect("insert again"), 0);
    let mut changed = task_life()[0].clone();
    changed["reason"] = json!("a resend differs only in transit");
    assert_eq!(store.insert_batch(&[changed, event("new", "guard.start", 1, None)]).expect("mixed"), 1);
    assert_eq!(store.query(&Query::default()).expect("query").len(), 9);
}

#[test]
fn a_batch_longer_than_one_statement_keeps_every_row_and_skips_duplicates_in_it() {
    let (_dir, mut store) = store();
    // 16 rows per statement and 7 one by one; ids 3 and 20 come twice (once in each part).
    let mut events: Vec<_> = (0..37).map(|i| event(&format!("e{i:02}"), "guard.start", i, None)).collect();
    events.insert(10, event("e03", "guard.start", 3, None));
    events.push(event("e20", "guard.start", 20, None));
    assert_eq!(events.len(), 39);
    assert_eq!(store.insert_batch(&events).expect("insert"), 37);
    let back = store.query(&Query::default()).expect("query");
    let expected: Vec<String> = (0..37).map(|i| format!("e{i:02}")).collect();
    assert_eq!(ids(&back), expected.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_batch_with_a_bad_event_stores_nothing() {
    let (_dir, mut store) = store();
    let bad = json!({"event_id": "x", "time": "yesterday", "kind": "file.open"});
    let err = store.insert_batch(&[event("a", "guard.start", 0, None), bad]).expect_err("bad time");
    assert!(matches!(err, AuditError::BadEvent { ref event, .. } if event == "x"), "{err}");
    assert!(store.query(&Query::default()).expect("query").is_empty());
}

#[test]
fn prune_removes_events_older_than_the_retention() {
    let (_dir, mut store) = store();
    let events = [event("old", "guard.start", 0, None), event("new", "guard.stop", 7200, None)];
    store.insert_batch(&events).expect("insert");
    assert_eq!(store.prune(base() + Duration::from_secs(3599)).expect("prune"), 0);
    assert_eq!(store.prune(base() + Duration::from_secs(7200)).expect("prune"), 1);
    assert_eq!(ids(&store.query(&Query::default()).expect("query")), ["new"]);
}

#[test]
fn query_filters_combine() {
    let (_dir, mut store) = store();
    store.insert_batch(&task_life()).expect("insert");
    store.insert_batch(&[event("other", "task.open", 5, Some(8))]).expect("insert");
    let q =
        |query: Query| ids(&store.query(&query).expect("query")).into_iter().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(q(Query { task: Some(8), ..Query::default() }), ["other"]);
    assert_eq!(q(Query { decision: Some("denied".into()), ..Query::default() }), ["e03"]);
    assert_eq!(q(Query { kind: Some("task.intent".into()), ..Query::default() }), ["e02", "e07"]);
    assert_eq!(q(Query { since: Some(base() + Duration::from_secs(45)), ..Query::default() }), ["e06", "e07", "e08"]);
    assert_eq!(q(Query { task: Some(7), limit: Some(2), ..Query::default() }), ["e07", "e08"]);
    assert!(
        q(Query { task: Some(7), decision: Some("held".into()), kind: Some("file.open".into()), ..Query::default() })
            .is_empty()
    );
}

#[test]
fn tasks_tell_how_each_ended() {
    let (_dir, mut store) = store();
    let open = |id: &str, task: u32, secs: u64, ttl: &str| {
        with(
            event(id, "task.open", secs, Some(task)),
            json!({"reason": format!("ttl {ttl}, mode enforce, grant from x")}),
        )
    };
    let mut events = task_life();
    events.extend([
        open("s1", 8, 100, "15m"),
        with(event("s2", "task.stop", 110, Some(8)), json!({"actor": actor(), "reason": "stopped by alice"})),
        event("s3", "task.close", 111, Some(8)),
        open("r1", 9, 100, "15m"),
        with(event("r2", "grant.revoke", 120, Some(9)), json!({"actor": actor()})),
        with(event("r3", "file.open", 121, Some(9)), json!({"decision": "denied", "rule": "task.stopped"})),
        event("r4", "task.close", 130, Some(9)),
        open("x1", 10, 100, "1m"),
        with(event("x2", "network.connect", 170, Some(10)), json!({"decision": "denied", "rule": "grant.ttl"})),
        event("x3", "task.close", 200, Some(10)),
        open("o1", 11, 100, "15m"),
        open("o2", 12, 100, "1m"),
    ]);
    store.insert_batch(&events).expect("insert");
    let tasks = store.tasks_at(base() + Duration::from_secs(300)).expect("tasks");
    let how: Vec<(u32, Option<EndKind>)> = tasks.iter().map(|t| (t.id, t.ended.as_ref().map(|e| e.how))).collect();
    assert_eq!(
        how,
        [
            (7, Some(EndKind::Closed)),
            (8, Some(EndKind::Stopped)),
            (9, Some(EndKind::Revoked)),
            (10, Some(EndKind::Expired)),
            (11, None),
            (12, Some(EndKind::Expired)),
        ]
    );
    let seven = &tasks[0];
    assert_eq!((seven.denied, seven.flagged), (1, 3), "the aggregated connect counts 3 times");
    assert_eq!(seven.opened.as_deref(), Some(at(0).as_str()));
    assert_eq!(seven.ended.as_ref().map(|e| e.time.clone()), Some(at(60)));
    assert_eq!((seven.agent.as_str(), seven.grant.as_str()), ("support-bot", "triage"));
    let stopped = tasks[1].ended.as_ref().expect("ended");
    assert_eq!(stopped.actor.as_ref().and_then(|a| a.user.as_deref()), Some("alice"));
    assert_eq!(tasks[2].ended.as_ref().map(|e| e.time.clone()), Some(at(120)));
    assert_eq!(tasks[2].closed.as_deref(), Some(at(130).as_str()));
    assert_eq!(tasks[3].ended.as_ref().map(|e| e.time.as_str()), Some("2026-03-01T10:02:40.000Z"));
}

#[test]
fn a_reused_task_id_is_two_tasks() {
    let (_dir, mut store) = store();
    store.insert_batch(&task_life()).expect("insert");
    // The daemon restarted: ids count from 1 again.
    let again = [event("n1", "task.open", 1000, Some(7)), event("n2", "task.intent", 1001, Some(7))];
    store.insert_batch(&again).expect("insert");
    let tasks = store.tasks().expect("tasks");
    let opens: Vec<Option<&str>> = tasks.iter().map(|t| t.open_event_id.as_deref()).collect();
    assert_eq!(opens, [Some("e01"), Some("n1")]);
    assert_eq!(ids(&store.task_events(7, None).expect("newest")), ["n1", "n2"]);
    assert_eq!(store.task_events(7, Some("e01")).expect("first").len(), 8);
    assert!(store.task_events(7, Some("nope")).expect("none").is_empty());
    assert!(store.task_events(99, None).expect("none").is_empty());
}

#[test]
fn read_only_open_of_a_missing_store_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.db");
    let err = Store::open_read_only(&path).err().expect("missing");
    assert!(matches!(err, AuditError::Missing { .. }));
    assert!(err.to_string().contains("absent.db"), "{err}");
    assert!(!path.exists(), "a reader never creates the store");
}

#[test]
fn the_log_is_copied_back_into_the_database_by_the_checkpointer() {
    let (dir, mut store) = store();
    let db = dir.path().join("sub/audit.db");
    let checkpointer = store.checkpoint_in_background().expect("checkpointer");
    let before = std::fs::metadata(&db).expect("stat").len();
    let events: Vec<_> = (0..2_000).map(|i| event(&format!("e{i}"), "file.open", i, Some(1))).collect();
    assert_eq!(store.insert_batch(&events).expect("insert"), 2_000);
    // The writer's own checkpoint waits for 64 MiB of log: only the thread moves these pages.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&db).expect("stat").len() < before + 100_000 {
        assert!(std::time::Instant::now() < deadline, "the database file never grew: no checkpoint ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(checkpointer);
    assert_eq!(store.query(&Query::default()).expect("query").len(), 2_000);
}
