//! The Kafka task hands operators thousands of records at a time, the conformance tests one
//! at a time: both must give the same output records, in the same order.

use brook_runtime::pipeline::{Output, Pipeline};
use brook_runtime::rows::Record;
use brook_runtime::session::{Action, Session};

const ORDERS: &str = "CREATE STREAM orders (id STRING KEY, customer STRING, total DOUBLE) \
    WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=2);";
const PRICES: &str = "CREATE TABLE prices (id STRING PRIMARY KEY, customer STRING, total DOUBLE) \
    WITH (KAFKA_TOPIC='prices', VALUE_FORMAT='JSON', PARTITIONS=2);";

fn plan(ddl: &str, query: &str) -> Pipeline {
    let mut session = Session::new();
    let mut spec = None;
    for ps in brook_sql::parse(&format!("{ddl}\n{query}")).expect("parse") {
        if let Action::StartQuery(s) = session.plan(&ps, &|_| Some(2)).expect("plan") {
            spec = Some(s);
        }
    }
    Pipeline::new(*spec.expect("a query"), &session.catalog).expect("pipeline")
}

/// Orders over 6 customers; some records do not decode, some have no value (deletes of the
/// table's keys), times go back and forth so windows close and sessions merge.
fn records() -> Vec<Record> {
    (0..300i64)
        .map(|i| {
            let customer = format!("c{}", (i * 7) % 6);
            let value = match i % 23 {
                5 => Some(b"{not json".to_vec()),
                11 => None,
                _ => Some(
                    format!(r#"{{"customer":"{customer}","total":{}.5}}"#, (i * 13) % 50)
                        .into_bytes(),
                ),
            };
            Record {
                key: Some(format!("o{}", i % 40).into_bytes()),
                value,
                timestamp: 1_700_000_000_000 + i * 997 - (i % 5) * 4_000,
                headers: Vec::new(),
                partition: (i % 2) as i32,
                offset: i,
            }
        })
        .collect()
}

fn run(ddl: &str, query: &str, batch: usize) -> (Vec<Output>, usize) {
    let mut p = plan(ddl, query);
    let (mut outputs, mut errors) = (Vec::new(), 0);
    for chunk in records().chunks(batch) {
        let done = p.process(chunk).expect("process");
        outputs.extend(done.outputs);
        errors += done.errors.len();
    }
    (outputs, errors)
}

fn same_either_way(ddl: &str, query: &str) {
    let (one, e1) = run(ddl, query, 1);
    let (all, e2) = run(ddl, query, 4096);
    let (some, e3) = run(ddl, query, 7);
    assert!(!one.is_empty(), "{query}: no output at all");
    assert_eq!(one, all, "{query}: one at a time vs all at once");
    assert_eq!(one, some, "{query}: one at a time vs 7 at a time");
    assert_eq!((e1, e1), (e2, e3), "{query}: undecodable records");
}

#[test]
fn group_by() {
    same_either_way(
        ORDERS,
        "CREATE TABLE t AS SELECT customer, COUNT(*) AS n, SUM(total) AS s, \
         MAX(total) + 1 AS m FROM orders GROUP BY customer EMIT CHANGES;",
    );
}

#[test]
fn having_adds_and_removes_rows() {
    same_either_way(
        ORDERS,
        "CREATE TABLE t AS SELECT customer, COUNT(*) AS n FROM orders \
         GROUP BY customer HAVING SUM(total) % 3 < 1.5 EMIT CHANGES;",
    );
}

#[test]
fn tumbling_and_hopping_windows() {
    same_either_way(
        ORDERS,
        "CREATE TABLE t AS SELECT customer, COUNT(*) AS n, SUM(total) AS s FROM orders \
         WINDOW TUMBLING (SIZE 5 SECONDS, GRACE PERIOD 2 SECONDS) GROUP BY customer EMIT CHANGES;",
    );
    same_either_way(
        ORDERS,
        "CREATE TABLE t AS SELECT customer, WINDOWSTART AS ws, COUNT(*) AS n FROM orders \
         WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 3 SECONDS) GROUP BY customer EMIT CHANGES;",
    );
}

#[test]
fn session_windows_merge() {
    same_either_way(
        ORDERS,
        "CREATE TABLE t AS SELECT customer, COUNT(*) AS n FROM orders \
         WINDOW SESSION (4 SECONDS) GROUP BY customer HAVING COUNT(*) > 1 EMIT CHANGES;",
    );
}

#[test]
fn table_aggregation_retracts() {
    same_either_way(
        PRICES,
        "CREATE TABLE t AS SELECT customer, COUNT(*) AS n, SUM(total) AS s FROM prices \
         GROUP BY customer EMIT CHANGES;",
    );
}
