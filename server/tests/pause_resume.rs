//! PAUSE / RESUME of a persistent query over a real `brook-server`: a paused CSAS writes
//! nothing for what arrives meanwhile, stays paused across a restart (the command log
//! replays the PAUSE, as ksqlDB's command topic does), and RESUME then delivers exactly
//! the records produced while paused: none lost, none twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
use brook_runtime::rdkafka::Message;
use serde_json::{json, Value};

mod common;
use common::{client, free_port, ksql, Options, Server};

/// Reads `topic` from its start with a fresh group: waits (up to a minute) for `want`
/// values, then `quiet` longer for any extra one. Returns each record's `V`.
fn read_sink(bootstrap: &str, topic: &str, want: usize, quiet: Duration) -> Vec<String> {
    let group = format!("pause-check-{}", common::free_port());
    let consumer: BaseConsumer = brook_runtime::kafka::consumer_config(bootstrap, &group)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match quiet_until {
            Some(q) if now >= q => break,
            None if now >= deadline => break,
            None if got.len() >= want => quiet_until = Some(now + quiet),
            _ => {}
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("record");
        let v: Value = serde_json::from_slice(m.payload().expect("value")).expect("JSON value");
        got.push(v["V"].as_str().expect("V").to_string());
    }
    // Two partitions: the sink's order across them is not defined, only within each.
    got.sort();
    got
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

/// The only query's state in SHOW QUERIES.
async fn state(c: &reqwest::Client, api: &str) -> Value {
    let (status, body) = ksql(c, api, "SHOW QUERIES;").await;
    assert_eq!(status, 200, "{body}");
    let queries = body[0]["queries"].as_array().expect("queries");
    assert_eq!(queries.len(), 1, "{body}");
    json!({"state": queries[0]["state"], "statusCount": queries[0]["statusCount"]})
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
        // Two partitions and two workers: the pause holds both workers' shares.
        "SET 'ksql.streams.num.stream.threads'='2';
         CREATE STREAM SRC (ID INT KEY, V STRING) \
           WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON', PARTITIONS=2);
         CREATE STREAM OUT AS SELECT ID, UCASE(V) AS V FROM SRC EMIT CHANGES;",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|e| e["commandStatus"]["queryId"].as_str())
        .expect("query id")
        .to_string();

    insert(&c, &api, 1..=3).await;
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_sink(&b, "OUT", 3, Duration::ZERO))
        .await
        .expect("reader");
    assert_eq!(got, values(1..=3));

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
        state(&c, &api).await,
        json!({"state": "PAUSED", "statusCount": {"PAUSED": 1}})
    );

    insert(&c, &api, 4..=6).await;
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_sink(&b, "OUT", 3, Duration::from_secs(4)))
        .await
        .expect("reader");
    assert_eq!(got, values(1..=3), "a paused query wrote output");

    // The pause is in the command log: the restarted server brings the query back paused.
    server.stop();
    let server = Server::start(options());
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    assert_eq!(
        state(&c, &api).await,
        json!({"state": "PAUSED", "statusCount": {"PAUSED": 1}})
    );
    insert(&c, &api, 7..=9).await;
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_sink(&b, "OUT", 3, Duration::from_secs(4)))
        .await
        .expect("reader");
    assert_eq!(
        got,
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
        state(&c, &api).await,
        json!({"state": "RUNNING", "statusCount": {"RUNNING": 1}})
    );
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_sink(&b, "OUT", 9, Duration::from_secs(3)))
        .await
        .expect("reader");
    assert_eq!(got, values(1..=9), "resume lost or repeated records");

    // The query runs on after the resume.
    insert(&c, &api, 10..=10).await;
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_sink(&b, "OUT", 10, Duration::ZERO))
        .await
        .expect("reader");
    assert_eq!(got, values(1..=10));

    let (status, body) = ksql(&c, &api, "PAUSE NO_SUCH_QUERY;").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], 40001, "{body}");
    assert_eq!(body["message"], "Unknown queryId: NO_SUCH_QUERY", "{body}");
    server.stop();
}

/// Reads a COUNT table's topic from its start with a fresh group until every key's latest
/// count is `want` (a minute at most), then `quiet` longer. Returns the latest counts and how
/// many records were read.
fn read_counts(
    bootstrap: &str,
    topic: &str,
    want: &BTreeMap<i32, i64>,
    quiet: Duration,
) -> (BTreeMap<i32, i64>, usize) {
    let group = format!("pause-counts-{}", common::free_port());
    let consumer: BaseConsumer = brook_runtime::kafka::consumer_config(bootstrap, &group)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut got = BTreeMap::new();
    let mut records = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match quiet_until {
            Some(q) if now >= q => break,
            None if now >= deadline => break,
            None if &got == want => quiet_until = Some(now + quiet),
            _ => {}
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("record");
        records += 1;
        let key = i32::from_be_bytes(m.key().expect("key").try_into().expect("INT key"));
        let v: Value = serde_json::from_slice(m.payload().expect("value")).expect("JSON value");
        got.insert(key, v["N"].as_i64().expect("N"));
    }
    (got, records)
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
        "CREATE STREAM SRC (ID INT KEY, V STRING) \
           WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON', PARTITIONS=2);
         CREATE TABLE COUNTS AS SELECT ID, COUNT(*) AS N FROM SRC GROUP BY ID EMIT CHANGES;",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body[1]["commandStatus"]["queryId"]
        .as_str()
        .expect("query id")
        .to_string();
    let read = |want: BTreeMap<i32, i64>, quiet: Duration| {
        let b = bootstrap.clone();
        tokio::task::spawn_blocking(move || read_counts(&b, "COUNTS", &want, quiet))
    };

    insert_ids(&c, &api, &[1, 1, 2]).await;
    let before = BTreeMap::from([(1, 2), (2, 1)]);
    let (got, records) = read(before.clone(), Duration::from_secs(1))
        .await
        .expect("reader");
    assert_eq!(got, before);

    let (status, body) = ksql(&c, &api, &format!("PAUSE {id};")).await;
    assert_eq!(status, 200, "{body}");
    insert_ids(&c, &api, &[1, 2, 2]).await;
    let (got, paused_records) = read(before.clone(), Duration::from_secs(4))
        .await
        .expect("reader");
    assert_eq!((got, paused_records), (before.clone(), records));

    server.stop();
    let server = Server::start(options());
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    assert_eq!(
        state(&c, &api).await,
        json!({"state": "PAUSED", "statusCount": {"PAUSED": 1}})
    );
    insert_ids(&c, &api, &[3]).await;
    let (got, paused_records) = read(before.clone(), Duration::from_secs(4))
        .await
        .expect("reader");
    assert_eq!((got, paused_records), (before.clone(), records));

    let (status, body) = ksql(&c, &api, &format!("RESUME {id};")).await;
    assert_eq!(status, 200, "{body}");
    let after = BTreeMap::from([(1, 3), (2, 3), (3, 1)]);
    let (got, _) = read(after.clone(), Duration::from_secs(2))
        .await
        .expect("reader");
    assert_eq!(
        got, after,
        "a count lost or repeated an input across the pause"
    );
    server.stop();
}
