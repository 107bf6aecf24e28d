//! A persistent query that fails for good is visible, as in ksqlDB: SHOW QUERIES and
//! DESCRIBE of its sink show it in state ERROR, with the error in `queryErrors` (ksqlDB's
//! `QueryError`: timestamp, errorMessage, type), `/metrics` has it as failed, and the
//! failed query does not spin. The failure: a result larger than the producer's
//! `message.max.bytes` (librdkafka refuses it; ksqlDB's RecordTooLarge, a USER error).
//! A healthy query beside it keeps running.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{client, free_port, ksql, Options, Server};

/// The query writing `sink`, from SHOW QUERIES.
async fn query_of(c: &reqwest::Client, api: &str, sink: &str) -> Value {
    let (status, body) = ksql(c, api, "SHOW QUERIES;").await;
    assert_eq!(status, 200, "{body}");
    body[0]["queries"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["sinks"] == json!([sink])))
        .cloned()
        .unwrap_or_else(|| panic!("no query writes {sink}: {body}"))
}

/// SHOW QUERIES until the query writing `sink` is in `state` (a minute at most).
async fn wait_for_state(c: &reqwest::Client, api: &str, sink: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = query_of(c, api, sink).await;
        if q["state"] == state {
            return q;
        }
        assert!(Instant::now() < deadline, "{sink} never {state}: {q}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metrics(c: &reqwest::Client, api: &str) -> String {
    let resp = c
        .get(format!("{api}/metrics"))
        .send()
        .await
        .expect("/metrics");
    resp.text().await.expect("body")
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// The query error ksqlDB would report: a record too large, classified as the user's.
fn assert_too_large(q: &Value) {
    let errors = q["queryErrors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{q}");
    let e = &errors[0];
    assert_eq!(e["type"], "USER", "{q}");
    assert!(e["timestamp"].as_i64().is_some_and(|t| t > 0), "{q}");
    let message = e["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("BIG") && message.contains("MessageSizeTooLarge"),
        "{q}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_fails_for_good_shows_as_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(Options {
        data_dir: dir.path(),
        broker_port: free_port(),
        broker_in_memory: true,
    });
    server.wait_for("brook-server ready");
    let c = client();
    let api = server.api.clone();
    // BIG's one result is 1.2 MB: more than the producer's 1,000,000 bytes (in two
    // columns: one function's result is limited to 1 MiB).
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM SRC (ID INT KEY, V STRING) \
           WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON', PARTITIONS=1);
         CREATE STREAM BIG AS SELECT ID, LPAD(V, 600000, 'x') AS A, LPAD(V, 600000, 'y') AS B \
           FROM SRC;
         CREATE STREAM SMALL AS SELECT ID, V FROM SRC;",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let big = body[1]["commandStatus"]["queryId"]
        .as_str()
        .expect("query id")
        .to_string();
    let (status, body) = ksql(&c, &api, "INSERT INTO SRC (ID, V) VALUES (1, 'a');").await;
    assert_eq!((status, &body), (200, &json!([])));

    let q = wait_for_state(&c, &api, "BIG", "ERROR").await;
    assert_eq!(q["statusCount"], json!({"ERROR": 1}), "{q}");
    assert_too_large(&q);
    let small = wait_for_state(&c, &api, "SMALL", "RUNNING").await;
    assert!(small.get("queryErrors").is_none(), "{small}");

    for describe in ["DESCRIBE BIG;", "DESCRIBE BIG EXTENDED;"] {
        let (status, body) = ksql(&c, &api, describe).await;
        assert_eq!(status, 200, "{body}");
        let writer = &body[0]["sourceDescription"]["writeQueries"][0];
        assert_eq!(writer["id"], big.as_str(), "{describe}: {body}");
        assert_eq!(writer["state"], "ERROR", "{describe}: {body}");
        assert_too_large(writer);
    }

    let failed = format!("brook_query_failed{{query_id=\"{big}\",sink=\"BIG\"}}");
    let text = metrics(&c, &api).await;
    assert_eq!(sample(&text, &failed), Some(1.0), "{text}");
    let healthy = text
        .lines()
        .find(|l| l.starts_with("brook_query_failed{") && l.contains("sink=\"SMALL\""));
    assert!(healthy.is_some_and(|l| l.ends_with(" 0")), "{text}");

    // The failed query does not spin: over two seconds the whole server uses well under
    // a second of CPU, and nothing more came out of it.
    let cpu = |t: &str| sample(t, "process_cpu_seconds_total").expect("process CPU");
    let before = cpu(&text);
    let out = format!("brook_query_records_out_total{{query_id=\"{big}\",sink=\"BIG\"}}");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = metrics(&c, &api).await;
    let used = cpu(&text) - before;
    assert!(
        used < 0.5 * started.elapsed().as_secs_f64(),
        "{used} s of CPU in {:?}",
        started.elapsed()
    );
    assert_eq!(sample(&text, &out), Some(0.0), "{text}");
    assert_eq!(query_of(&c, &api, "BIG").await["state"], "ERROR");
    server.stop();
}
