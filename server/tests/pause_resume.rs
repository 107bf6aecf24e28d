//! PAUSE / RESUME of a persistent query over a real `brook-server`: a paused CSAS writes
//! nothing for what arrives meanwhile, stays paused across a restart (the command log
//! replays the PAUSE, as ksqlDB's command topic does), and RESUME then delivers exactly
//! the records produced while paused: none lost, none twice.
//!
//! "Writes nothing while paused" is checked against a witness: a second, running query
//! over the same input, doing the same work. Once the witness has written its results for
//! the records produced during the pause, the paused query, had it been running, would
//! have had them too; its sink is then read to its end and must be unchanged.

use std::collections::BTreeMap;

use brook_runtime::kafka::Kafka;
use serde_json::{json, Value};

mod common;
use common::{client, free_port, ksql, read_until, Options, Read, Server};

/// The `V`s of a sink's records, sorted (two partitions: the order across them is not
/// defined, only within each), every record once.
fn vs(records: &[Read]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| r.json()["V"].as_str().unwrap_or("?").to_string())
        .collect();
    v.sort();
    v
}

/// Reads `topic` until its records have every `V` of `want`, then to its end; returns the
/// `V`s read.
async fn read_sink(kafka: &Kafka, topic: &str, want: Vec<String>) -> Vec<String> {
    let (kafka, topic) = (kafka.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let got = read_until(&kafka, &topic, |got| {
            let have = vs(got);
            want.iter().all(|w| have.contains(w))
        });
        vs(&got)
    })
    .await
    .expect("reader")
}

fn values(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("V{i}")).collect();
    v.sort();
    v
}

async fn insert(c: &reqwest::Client, api: &str, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        let sql = format!("INSERT INTO SRC (ID, V) VALUES ({i}, 'v{i}');");
        let (status, body) = ksql(c, api, &sql).await;
        assert_eq!((status, &body), (200, &json!([])), "{sql}");
    }
}

/// Query `id`'s state in SHOW QUERIES.
async fn state(c: &reqwest::Client, api: &str, id: &str) -> Value {
    let (status, body) = ksql(c, api, "SHOW QUERIES;").await;
    assert_eq!(status, 200, "{body}");
    let queries = body[0]["queries"].as_array().expect("queries");
    let query = queries
        .iter()
        .find(|q| q["id"] == id)
        .unwrap_or_else(|| panic!("no query {id}: {body}"));
    json!({"state": query["state"], "statusCount": query["statusCount"]})
}

/// The query ids of a `/ksql` response's statements, in order.
fn query_ids(body: &Value) -> Vec<String> {
    body.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["commandStatus"]["queryId"].as_str())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_query_consumes_nothing_survives_restart_and_resumes_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_port = free_port();
    let options = || Options {
        data_dir: dir.path(),
        broker_port,
        broker_in_memory: false,
    };
    let server = Server::start(options());
    server.wait_for("brook-server ready");
    let c = client();
    let api = server.api.clone();
    let bootstrap = server.bootstrap.clone();

    let (status, body) = ksql(
        &c,
        &api,
        // Two partitions and two workers: the pause holds both workers' shares. SEEN is
        // the witness, on the same shared reader as OUT.
        "SET 'ksql.streams.num.stream.threads'='2';
         CREATE STREAM SRC (ID INT KEY, V STRING) \
           WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON', PARTITIONS=2);
         CREATE STREAM OUT AS SELECT ID, UCASE(V) AS V FROM SRC EMIT CHANGES;
         CREATE STREAM SEEN AS SELECT ID, UCASE(V) AS V FROM SRC EMIT CHANGES;",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = query_ids(&body).first().cloned().expect("OUT's query id");

    insert(&c, &api, 1..=3).await;
    assert_eq!(
        read_sink(&bootstrap, "OUT", values(1..=3)).await,
        values(1..=3)
    );

    // A bare id is upper-cased by the parser, as ksqlDB's ids are.
    let (status, body) = ksql(&c, &api, &format!("PAUSE {};", id.to_lowercase())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["@type"], "currentStatus", "{body}");
    assert_eq!(
        body[0]["commandId"],
        format!("pause/{id}/execute"),
        "{body}"
    );
    assert_eq!(
        body[0]["commandStatus"],
        json!({"status": "SUCCESS", "message": "Query paused.", "queryId": null}),
        "{body}"
    );
    assert_eq!(
        state(&c, &api, &id).await,
        json!({"state": "PAUSED", "statusCount": {"PAUSED": 1}})
    );

    insert(&c, &api, 4..=6).await;
    read_sink(&bootstrap, "SEEN", values(1..=6)).await;
    assert_eq!(
        read_sink(&bootstrap, "OUT", Vec::new()).await,
        values(1..=3),
        "a paused query wrote output"
    );

    // The pause is in the command log: the restarted server brings the query back paused.
    server.stop();
    let server = Server::start(options());
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    assert_eq!(
        state(&c, &api, &id).await,
        json!({"state": "PAUSED", "statusCount": {"PAUSED": 1}})
    );
    insert(&c, &api, 7..=9).await;
    read_sink(&bootstrap, "SEEN", values(1..=9)).await;
    assert_eq!(
        read_sink(&bootstrap, "OUT", Vec::new()).await,
        values(1..=3),
        "a query paused before the restart wrote output"
    );

    let (status, body) = ksql(&c, &api, "RESUME ALL;").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["commandId"], "resume/ALL/execute", "{body}");
    assert_eq!(
        body[0]["commandStatus"]["message"], "Query resumed.",
        "{body}"
    );
    assert_eq!(
        state(&c, &api, &id).await,
        json!({"state": "RUNNING", "statusCount": {"RUNNING": 1}})
    );
    assert_eq!(
        read_sink(&bootstrap, "OUT", values(1..=9)).await,
        values(1..=9),
        "resume lost or repeated records"
    );

    // The query runs on after the resume.
    insert(&c, &api, 10..=10).await;
    assert_eq!(
        read_sink(&bootstrap, "OUT", values(1..=10)).await,
        values(1..=10)
    );

    let (status, body) = ksql(&c, &api, "PAUSE NO_SUCH_QUERY;").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], 40001, "{body}");
    assert_eq!(body["message"], "Unknown queryId: NO_SUCH_QUERY", "{body}");
    server.stop();
}

/// Each key's latest count in a COUNT table's records. Any input counted changes one, so
/// these show whether a paused query counted; the number of records would not (the
/// embedded broker compacts the table's topic when it starts, as Kafka may at any time).
fn latest_counts(records: &[Read]) -> BTreeMap<i32, i64> {
    let mut got = BTreeMap::new();
    for r in records {
        let key = r
            .key
            .as_deref()
            .and_then(|k| <[u8; 4]>::try_from(k).ok())
            .map(i32::from_be_bytes)
            .unwrap_or(i32::MIN);
        got.insert(key, r.json()["N"].as_i64().unwrap_or(-1));
    }
    got
}

/// Reads a COUNT table's topic until every key's latest count is `want` (an empty `want`:
/// at once), then to its end. Returns the latest counts.
async fn read_counts(kafka: &Kafka, topic: &str, want: BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
    let (kafka, topic) = (kafka.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let got = read_until(&kafka, &topic, |got| {
            want.is_empty() || latest_counts(got) == want
        });
        latest_counts(&got)
    })
    .await
    .expect("reader")
}

async fn insert_ids(c: &reqwest::Client, api: &str, ids: &[i32]) {
    for i in ids {
        let sql = format!("INSERT INTO SRC (ID, V) VALUES ({i}, 'x');");
        let (status, body) = ksql(c, api, &sql).await;
        assert_eq!((status, &body), (200, &json!([])), "{sql}");
    }
}

/// A stateful query (its partitions assigned, its state in a changelog) pauses and resumes
/// the same way: nothing counted while paused, across a restart, and every count exact after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_aggregation_keeps_its_state_and_counts_exactly_after_resume() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_port = free_port();
    let options = || Options {
        data_dir: dir.path(),
        broker_port,
        broker_in_memory: false,
    };
    let server = Server::start(options());
    server.wait_for("brook-server ready");
    let c = client();
    let api = server.api.clone();
    let bootstrap = server.bootstrap.clone();
    let (status, body) = ksql(
        &c,
        &api,
        // SEEN is the witness: the same count, never paused.
        "CREATE STREAM SRC (ID INT KEY, V STRING) \
           WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON', PARTITIONS=2);
         CREATE TABLE COUNTS AS SELECT ID, COUNT(*) AS N FROM SRC GROUP BY ID EMIT CHANGES;
         CREATE TABLE SEEN AS SELECT ID, COUNT(*) AS N FROM SRC GROUP BY ID EMIT CHANGES;",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = query_ids(&body)
        .first()
        .cloned()
        .expect("COUNTS's query id");

    insert_ids(&c, &api, &[1, 1, 2]).await;
    let before = BTreeMap::from([(1, 2), (2, 1)]);
    let got = read_counts(&bootstrap, "COUNTS", before.clone()).await;
    assert_eq!(got, before);

    let (status, body) = ksql(&c, &api, &format!("PAUSE {id};")).await;
    assert_eq!(status, 200, "{body}");
    insert_ids(&c, &api, &[1, 2, 2]).await;
    let after_pause = BTreeMap::from([(1, 3), (2, 3)]);
    read_counts(&bootstrap, "SEEN", after_pause).await;
    assert_eq!(
        read_counts(&bootstrap, "COUNTS", BTreeMap::new()).await,
        before,
        "a paused aggregation counted"
    );

    server.stop();
    let server = Server::start(options());
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    assert_eq!(
        state(&c, &api, &id).await,
        json!({"state": "PAUSED", "statusCount": {"PAUSED": 1}})
    );
    insert_ids(&c, &api, &[3]).await;
    let after = BTreeMap::from([(1, 3), (2, 3), (3, 1)]);
    read_counts(&bootstrap, "SEEN", after.clone()).await;
    assert_eq!(
        read_counts(&bootstrap, "COUNTS", BTreeMap::new()).await,
        before,
        "an aggregation paused before the restart counted"
    );

    let (status, body) = ksql(&c, &api, &format!("RESUME {id};")).await;
    assert_eq!(status, 200, "{body}");
    let got = read_counts(&bootstrap, "COUNTS", after.clone()).await;
    assert_eq!(
        got, after,
        "a count lost or repeated an input across the pause"
    );
    server.stop();
}
