//! Stream time per input partition: a windowed aggregation or a stream–stream join judges
//! a record's lateness, and closes windows, by the stream time of the record's own
//! partition, so a partition that lags behind another loses nothing; records late for their
//! own partition are dropped and counted. Each case also runs with the query restarted
//! from its changelog after every record.

use brook_runtime::driver::Driver;

const S: &str = "CREATE STREAM s (id STRING KEY, v INT) \
    WITH (kafka_topic='s', value_format='JSON', partitions=2);";

fn driver(restart: bool, sql: &str) -> Driver {
    let mut d = Driver::new();
    d.restart_every_record = restart;
    d.execute(sql).expect("statements");
    d
}

/// A record of `key` with value `{"V":v}` at `ts` in `partition` of `topic`.
fn produce(d: &mut Driver, topic: &str, key: &str, v: i64, ts: i64, partition: i32) {
    d.produce(
        topic,
        Some(key.as_bytes().to_vec()),
        Some(format!(r#"{{"V":{v},"W":{v}}}"#).into_bytes()),
        ts,
        Vec::new(),
        Some(partition),
    );
}

/// The sink's records as (key, value); a windowed key's window bytes are left off (its
/// first byte is the key: keys here are one letter).
fn rows(d: &Driver, topic: &str) -> Vec<(String, String)> {
    assert!(d.processing_log.is_empty(), "{:?}", d.processing_log);
    d.topic(topic)
        .map(|t| {
            t.records
                .iter()
                .map(|r| {
                    let key = r.key.as_deref().unwrap_or_default();
                    (
                        String::from_utf8_lossy(&key[..key.len().min(1)]).to_string(),
                        String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_lagging_partition_keeps_its_records_and_late_ones_are_counted() {
    for window in [
        "TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 1 SECOND)",
        "HOPPING (SIZE 10 SECONDS, ADVANCE BY 10 SECONDS, GRACE PERIOD 1 SECOND)",
        "SESSION (5 SECONDS, GRACE PERIOD 1 SECOND)",
    ] {
        for restart in [false, true] {
            let mut d = driver(
                restart,
                &format!(
                    "{S} CREATE TABLE out AS SELECT id, COUNT(*) AS n FROM s \
                     WINDOW {window} GROUP BY id;"
                ),
            );
            // Partition 0 runs far ahead of partition 1.
            produce(&mut d, "s", "a", 1, 100_000, 0);
            // Not late for partition 1, whose stream time is its own.
            produce(&mut d, "s", "b", 2, 5_000, 1);
            // Late for partition 0: its window closed a grace period before 100 s.
            produce(&mut d, "s", "a", 3, 5_000, 0);
            produce(&mut d, "s", "b", 4, 20_000, 1);
            // Late for partition 1 now (stream time 20 s).
            produce(&mut d, "s", "b", 5, 3_000, 1);
            let what = format!("{window}, restart: {restart}");
            assert_eq!(
                rows(&d, "OUT"),
                pairs(&[
                    ("a", r#"{"N":1}"#),
                    ("b", r#"{"N":1}"#),
                    ("b", r#"{"N":1}"#)
                ]),
                "{what}"
            );
            assert_eq!(d.late, 2, "{what}");
        }
    }
}

#[test]
fn emit_final_closes_each_partitions_windows_by_its_own_stream_time() {
    for restart in [false, true] {
        let mut d = driver(
            restart,
            &format!(
                "{S} CREATE TABLE out AS SELECT id, COUNT(*) AS n FROM s \
                 WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY id \
                 EMIT FINAL;"
            ),
        );
        produce(&mut d, "s", "a", 1, 1_000, 0);
        produce(&mut d, "s", "b", 2, 2_000, 1);
        // Partition 0 moves to 15 s: its window [0, 10 s) closes; partition 1's does not.
        produce(&mut d, "s", "a", 3, 15_000, 0);
        assert_eq!(
            rows(&d, "OUT"),
            pairs(&[("a", r#"{"N":1}"#)]),
            "restart: {restart}"
        );
        // Still open in partition 1.
        produce(&mut d, "s", "b", 4, 4_000, 1);
        // Partition 1 reaches 10 s: b's window closes with both records.
        produce(&mut d, "s", "b", 5, 10_000, 1);
        assert_eq!(
            rows(&d, "OUT"),
            pairs(&[("a", r#"{"N":1}"#), ("b", r#"{"N":2}"#)]),
            "restart: {restart}"
        );
        assert_eq!(d.late, 0, "restart: {restart}");
        // Now late for partition 1: dropped and counted, never emitted.
        produce(&mut d, "s", "b", 6, 5_000, 1);
        assert_eq!(d.late, 1, "restart: {restart}");
        // Partition 1 reaches 25 s: b's window [10 s, 20 s) closes, without the late one.
        produce(&mut d, "s", "b", 7, 25_000, 1);
        assert_eq!(
            rows(&d, "OUT"),
            pairs(&[
                ("a", r#"{"N":1}"#),
                ("b", r#"{"N":2}"#),
                ("b", r#"{"N":1}"#)
            ]),
            "restart: {restart}"
        );
    }
}

#[test]
fn an_idle_input_closes_every_partitions_windows() {
    use brook_runtime::pipeline::Pipeline;
    use brook_runtime::rows::Record;
    use brook_runtime::session::{Action, Session};
    let mut session = Session::new();
    let mut spec = None;
    let sql = format!(
        "{S} CREATE TABLE out AS SELECT id, COUNT(*) AS n FROM s \
         WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY id EMIT FINAL;"
    );
    for ps in brook_sql::parse(&sql).expect("parse") {
        if let Action::StartQuery(s) = session.plan(&ps, &|_| Some(2)).expect("plan") {
            spec = Some(s);
        }
    }
    let mut p = Pipeline::new(*spec.expect("a query"), &session.catalog).expect("pipeline");
    let record = |key: &str, ts: i64, partition: i32| Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(br#"{"V":1}"#.to_vec()),
        timestamp: ts,
        headers: Vec::new(),
        partition,
        offset: 0,
    };
    let done = p
        .process(&[record("a", 1_000, 0), record("b", 7_000, 1)])
        .expect("process");
    assert!(done.outputs.is_empty());
    // Partition 0 reaches 10 s, partition 1 16 s: both windows close.
    let closed = p.on_idle(9_000).expect("idle").outputs;
    assert_eq!(closed.len(), 2, "{closed:?}");
}

const JOIN: &str = "CREATE STREAM l (id STRING KEY, v INT) \
        WITH (kafka_topic='l', value_format='JSON', partitions=2); \
    CREATE STREAM r (id STRING KEY, w INT) \
        WITH (kafka_topic='r', value_format='JSON', partitions=2); \
    CREATE STREAM j AS SELECT l.id AS id, v, w FROM l \
        LEFT JOIN r WITHIN 10 SECONDS GRACE PERIOD 1 SECOND ON l.id = r.id;";

#[test]
fn a_stream_stream_join_keeps_stream_time_per_partition() {
    for restart in [false, true] {
        let mut d = driver(restart, JOIN);
        // b waits for a match (or for its window to close in partition 1).
        produce(&mut d, "l", "b", 1, 5_000, 1);
        // Partition 0 runs ahead; b's window is still open in partition 1.
        produce(&mut d, "l", "a", 2, 100_000, 0);
        assert_eq!(rows(&d, "J"), pairs(&[]), "restart: {restart}");
        // Within b's window, and not past retention in partition 1: b joins.
        produce(&mut d, "r", "b", 3, 6_000, 1);
        // Past the join's retention in partition 0 (100 s - 10 s - 10 s - 1 s): dropped
        // from the window store, and counted.
        produce(&mut d, "r", "a", 4, 1_000, 0);
        assert_eq!(d.late, 1, "restart: {restart}");
        // Partition 1 moves on: nothing of it waits any more.
        produce(&mut d, "l", "c", 5, 30_000, 1);
        // Partition 0 moves on: a's window closes unmatched.
        produce(&mut d, "l", "d", 6, 200_000, 0);
        assert_eq!(
            rows(&d, "J"),
            pairs(&[("b", r#"{"V":1,"W":3}"#), ("a", r#"{"V":2,"W":null}"#)]),
            "restart: {restart}"
        );
    }
}

/// The aggregation's state as a compacted changelog holds it.
fn changelog(
    p: &mut brook_runtime::pipeline::Pipeline,
    log: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
) {
    for c in p.take_changes().expect("changes") {
        match c.value {
            Some(v) => log.insert(c.key, v),
            None => log.remove(&c.key),
        };
    }
}

#[test]
fn a_changelog_from_before_per_partition_time_still_restores() {
    use brook_runtime::pipeline::Pipeline;
    use brook_runtime::rows::Record;
    use brook_runtime::session::{Action, Session};
    let mut session = Session::new();
    let mut spec = None;
    let sql = format!(
        "{S} CREATE TABLE out AS SELECT id, COUNT(*) AS n FROM s \
         WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 1 SECOND) GROUP BY id;"
    );
    for ps in brook_sql::parse(&sql).expect("parse") {
        if let Action::StartQuery(s) = session.plan(&ps, &|_| Some(2)).expect("plan") {
            spec = Some(*s);
        }
    }
    let spec = spec.expect("a query");
    let record = |key: &str, ts: i64, partition: i32| Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(br#"{"V":1}"#.to_vec()),
        timestamp: ts,
        headers: Vec::new(),
        partition,
        offset: 0,
    };
    let mut p = Pipeline::new(spec.clone(), &session.catalog).expect("pipeline");
    p.process(&[record("a", 100_000, 0)]).expect("process");
    let mut log = std::collections::BTreeMap::new();
    changelog(&mut p, &mut log);
    let restored = |log: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>| {
        let mut p = Pipeline::new(spec.clone(), &session.catalog).expect("pipeline");
        for (k, v) in log {
            p.restore(k, v).expect("restore");
        }
        p
    };
    // Per-partition times restore: partition 1 has seen nothing, so 5 s is not late.
    let mut p = restored(&log);
    let done = p.process(&[record("b", 5_000, 1)]).expect("process");
    assert_eq!((done.outputs.len(), done.late), (1, 0));
    // The entry an earlier version wrote, one stream time for the query (8 bytes): it is
    // where every partition starts, so 5 s is late in partition 1 too.
    let time_key = log
        .keys()
        .find(|k| k.first() == Some(&b't'))
        .cloned()
        .expect("a stream time entry");
    log.insert(time_key, 100_000i64.to_le_bytes().to_vec());
    let mut p = restored(&log);
    let done = p.process(&[record("b", 5_000, 1)]).expect("process");
    assert_eq!((done.outputs.len(), done.late), (0, 1));
    let done = p.process(&[record("b", 95_000, 1)]).expect("process");
    assert_eq!((done.outputs.len(), done.late), (1, 0));
}

#[test]
fn a_join_changelog_from_before_per_partition_time_still_restores() {
    use brook_runtime::pipeline::Pipeline;
    use brook_runtime::rows::Record;
    use brook_runtime::session::{Action, Session};
    let mut session = Session::new();
    let mut spec = None;
    for ps in brook_sql::parse(JOIN).expect("parse") {
        if let Action::StartQuery(s) = session.plan(&ps, &|_| Some(2)).expect("plan") {
            spec = Some(*s);
        }
    }
    let spec = spec.expect("a query");
    let record = |key: &str, ts: i64, partition: i32| Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(br#"{"V":1,"W":1}"#.to_vec()),
        timestamp: ts,
        headers: Vec::new(),
        partition,
        offset: 0,
    };
    let mut p = Pipeline::new(spec.clone(), &session.catalog).expect("pipeline");
    p.process(&[record("a", 100_000, 0)]).expect("process");
    let mut log = std::collections::BTreeMap::new();
    changelog(&mut p, &mut log);
    let restored = |log: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>| {
        let mut p = Pipeline::new(spec.clone(), &session.catalog).expect("pipeline");
        for (k, v) in log {
            p.restore(k, v).expect("restore");
        }
        p
    };
    // Partition 1 has seen nothing: a right row at 5 s is within retention.
    let done = restored(&log)
        .process_input(1, &[record("b", 5_000, 1)])
        .expect("process");
    assert_eq!(done.late, 0);
    // The step's time entry as an earlier version wrote it: one stream time, the sequence.
    let time_key = log
        .iter()
        .find(|(_, v)| v.len() > 16 && v[..8] == i64::MIN.to_le_bytes())
        .map(|(k, _)| k.clone())
        .expect("the join step's time entry");
    let mut old = 100_000i64.to_le_bytes().to_vec();
    old.extend_from_slice(&1i64.to_le_bytes());
    log.insert(time_key, old);
    let done = restored(&log)
        .process_input(1, &[record("b", 5_000, 1)])
        .expect("process");
    assert_eq!(done.late, 1);
}
