//! EMIT FINAL and window retention in the pipeline: final rows do not depend on how input is
//! batched, closed windows leave the state (and its changelog), and an idle input closes
//! windows only when the Kafka task says so (`Pipeline::on_idle`).

use std::collections::BTreeMap;

use brook_runtime::pipeline::{Output, Pipeline};
use brook_runtime::rows::Record;
use brook_runtime::session::{Action, Session};

const CLICKS: &str = "CREATE STREAM clicks (id STRING KEY, v INT) \
    WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=2);";

fn plan_with(session: &mut Session, query: &str) -> Pipeline {
    let mut spec = None;
    for ps in brook_sql::parse(&format!("{CLICKS}\n{query}")).expect("parse") {
        if let Action::StartQuery(s) = session.plan(&ps, &|_| Some(2)).expect("plan") {
            spec = Some(s);
        }
    }
    Pipeline::new(*spec.expect("a query"), &session.catalog).expect("pipeline")
}

fn plan(query: &str) -> Pipeline {
    plan_with(&mut Session::new(), query)
}

fn record(i: i64, key: &str, timestamp: i64) -> Record {
    Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(format!(r#"{{"V":{i}}}"#).into_bytes()),
        timestamp,
        headers: Vec::new(),
        partition: (i % 2) as i32,
        offset: i,
    }
}

/// Clicks of 5 keys over about 30 minutes, a second apart, times going back and forth.
fn records(n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            record(
                i,
                &format!("k{}", (i * 7) % 5),
                1_700_000_000_000 + i * 1_000 - (i % 4) * 3_000,
            )
        })
        .collect()
}

fn outputs(p: &mut Pipeline, records: &[Record], batch: usize) -> Vec<Output> {
    let mut out = Vec::new();
    for chunk in records.chunks(batch) {
        out.extend(p.process(chunk).expect("process").outputs);
    }
    out
}

const FINAL_QUERIES: [&str; 3] = [
    "CREATE TABLE t AS SELECT id, COUNT(*) AS n, SUM(v) AS s FROM clicks \
     WINDOW TUMBLING (SIZE 5 SECONDS, GRACE PERIOD 2 SECONDS) GROUP BY id EMIT FINAL;",
    "CREATE TABLE t AS SELECT id, WINDOWSTART AS ws, COUNT(*) AS n FROM clicks \
     WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 3 SECONDS, GRACE PERIOD 1 SECOND) \
     GROUP BY id EMIT FINAL;",
    "CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM clicks \
     WINDOW SESSION (4 SECONDS, GRACE PERIOD 1 SECOND) GROUP BY id EMIT FINAL;",
];

#[test]
fn final_rows_do_not_depend_on_batching() {
    let input = records(600);
    for q in FINAL_QUERIES {
        let one = outputs(&mut plan(q), &input, 1);
        assert!(!one.is_empty(), "{q}: no output at all");
        assert_eq!(one, outputs(&mut plan(q), &input, 4096), "{q}: all at once");
        assert_eq!(one, outputs(&mut plan(q), &input, 7), "{q}: 7 at a time");
    }
}

#[test]
fn each_window_is_emitted_once() {
    let input = records(600);
    for q in FINAL_QUERIES {
        let out = outputs(&mut plan(q), &input, 50);
        let mut keys: Vec<_> = out.iter().map(|o| o.key.clone()).collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "{q}: a window was emitted twice");
        assert!(out.iter().all(|o| o.value.is_some()), "{q}: a tombstone");
    }
}

/// The query's state as its compacted changelog holds it: how many aggregation groups
/// (namespace `g`) are live.
fn live_groups(p: &mut Pipeline, log: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> usize {
    for c in p.take_changes().expect("changes") {
        match c.value {
            Some(v) => log.insert(c.key, v),
            None => log.remove(&c.key),
        };
    }
    log.keys().filter(|k| k.first() == Some(&b'g')).count()
}

#[test]
fn closed_windows_leave_the_state() {
    let input = records(2_000);
    for q in FINAL_QUERIES.iter().map(|q| q.to_string()).chain(
        FINAL_QUERIES
            .iter()
            .map(|q| q.replace("EMIT FINAL", "EMIT CHANGES")),
    ) {
        let mut p = plan(&q);
        let mut log = BTreeMap::new();
        let mut most = 0;
        for chunk in input.chunks(100) {
            p.process(chunk).expect("process");
            most = most.max(live_groups(&mut p, &mut log));
        }
        // 5 keys, 2 000 seconds: without eviction thousands of windows would pile up;
        // with it only the ones still open (a few per key) remain.
        assert!(most <= 5 * 20, "{q}: {most} groups live at once");
    }
}

#[test]
fn an_idle_input_closes_windows_on_the_tasks_word() {
    let q = "CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM clicks \
             WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY id EMIT FINAL;";
    let mut p = plan(q);
    assert_eq!(
        p.idle_timeout(),
        Some(std::time::Duration::from_millis(3_000)),
        "the default idle timeout"
    );
    // Nothing seen yet: idle time moves nothing.
    assert!(p.on_idle(60_000).expect("idle").outputs.is_empty());
    let base = 1_700_000_000_000;
    let done = p
        .process(&[record(0, "a", base + 1_000), record(1, "a", base + 4_000)])
        .expect("process");
    assert!(done.outputs.is_empty(), "a row before its window closed");
    // Stream time base + 4 s + 5 s: the window [base, base + 10 s) is still open.
    assert!(p.on_idle(5_000).expect("idle").outputs.is_empty());
    let closed = p.on_idle(1_000).expect("idle").outputs;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].timestamp, base + 4_000);
    assert_eq!(closed[0].value.as_deref(), Some(&br#"{"N":2}"#[..]));
    // A record of the closed window that comes late is dropped.
    let late = p.process(&[record(2, "a", base + 5_000)]).expect("process");
    assert!(late.outputs.is_empty());
    assert!(p.on_idle(60_000).expect("idle").outputs.is_empty());
}

#[test]
fn the_idle_timeout_is_a_property() {
    let windowed = "CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM clicks \
        WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY id EMIT FINAL;";
    let mut session = Session::new();
    session.set_property("brook.emit.final.idle.timeout.ms", "250");
    assert_eq!(
        plan_with(&mut session, windowed).idle_timeout(),
        Some(std::time::Duration::from_millis(250))
    );
    let mut session = Session::new();
    session.set_property("brook.emit.final.idle.timeout.ms", "0");
    assert_eq!(plan_with(&mut session, windowed).idle_timeout(), None);
    // Only EMIT FINAL waits on time.
    let changes = windowed.replace("EMIT FINAL", "EMIT CHANGES");
    assert_eq!(plan(&changes).idle_timeout(), None);
}

#[test]
fn emit_final_needs_a_windowed_aggregation() {
    for q in [
        "CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM clicks GROUP BY id EMIT FINAL;",
        "CREATE STREAM s AS SELECT id, v FROM clicks EMIT FINAL;",
    ] {
        let mut session = Session::new();
        let mut error = None;
        for ps in brook_sql::parse(&format!("{CLICKS}\n{q}")).expect("parse") {
            if let Err(e) = session.plan(&ps, &|_| Some(2)) {
                error = Some(e.to_string());
            }
        }
        assert_eq!(
            error.as_deref(),
            Some("EMIT FINAL is only supported for windowed aggregations."),
            "{q}"
        );
    }
}
