//! The REST endpoints beyond statements and push queries, over a real `brook-server`:
//! PRINT (`/query` and `/query-stream`), `/close-query`, `/inserts-stream`, `/status` and
//! `/is_valid_property`, checked against ksqlDB's wire formats. Every wait is bounded.

use std::time::Duration;

use serde_json::{json, Value};

mod common;
use common::{client, free_port, ksql, Options, Server};

fn start(data_dir: &std::path::Path) -> Server {
    Server::start(Options {
        data_dir,
        broker_port: free_port(),
        broker_in_memory: true,
    })
}

/// Reads a streamed body to its end, bounded by `timeout`.
async fn read_to_end(mut resp: reqwest::Response, timeout: Duration) -> String {
    let mut body = Vec::new();
    let read = async {
        while let Some(chunk) = resp.chunk().await.expect("chunk") {
            body.extend_from_slice(&chunk);
        }
    };
    if tokio::time::timeout(timeout, read).await.is_err() {
        panic!(
            "the response did not end within {timeout:?}; got so far: {}",
            String::from_utf8_lossy(&body)
        );
    }
    String::from_utf8(body).expect("UTF-8 body")
}

/// Reads a streamed body until it holds `n` non-empty lines.
async fn read_lines(resp: &mut reqwest::Response, n: usize, timeout: Duration) -> Vec<String> {
    let mut body = Vec::new();
    let lines = |b: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(b)
            .split('\n')
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    let read = async {
        while lines(&body).len() < n || !body.ends_with(b"\n") {
            match resp.chunk().await.expect("chunk") {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
    };
    if tokio::time::timeout(timeout, read).await.is_err() {
        panic!(
            "no {n} lines within {timeout:?}; got: {}",
            String::from_utf8_lossy(&body)
        );
    }
    lines(&body)
}

async fn post(c: &reqwest::Client, url: String, accept: &str, body: String) -> reqwest::Response {
    c.post(url)
        .header("Accept", accept)
        .body(body)
        .send()
        .await
        .expect("the server answers")
}

const DELIMITED: &str = "application/vnd.ksqlapi.delimited.v1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_close_query_inserts_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path());
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    let c = client();

    // --- PRINT -----------------------------------------------------------------------
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM PAGES (ID STRING KEY, A INT) \
         WITH (KAFKA_TOPIC='print_me', VALUE_FORMAT='JSON', PARTITIONS=1);",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for i in 1..=4 {
        let sql = format!(
            "INSERT INTO PAGES (ROWTIME, ID, A) VALUES ({}, '{i}', {i});",
            1_589_278_505_123i64 + i
        );
        let (status, body) = ksql(&c, &api, &sql).await;
        assert_eq!(status, 200, "{sql}: {body}");
    }

    // /query: ksqlDB's format lines, then the records; LIMIT ends the response.
    let resp = post(
        &c,
        format!("{api}/query"),
        "application/vnd.ksql.v1+json",
        json!({"ksql": "PRINT 'print_me' FROM BEGINNING LIMIT 3;", "streamsProperties": {}})
            .to_string(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let text = read_to_end(resp, Duration::from_secs(60)).await;
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines,
        vec![
            "Key format: JSON or KAFKA_STRING",
            "Value format: JSON or KAFKA_STRING",
            r#"rowtime: 2020/05/12 10:15:05.124 Z, key: 1, value: {"A":1}, partition: 0"#,
            r#"rowtime: 2020/05/12 10:15:05.125 Z, key: 2, value: {"A":2}, partition: 0"#,
            r#"rowtime: 2020/05/12 10:15:05.126 Z, key: 3, value: {"A":3}, partition: 0"#,
        ],
        "{text}"
    );

    // /query-stream: only the records; INTERVAL 2 prints every other one.
    let resp = post(
        &c,
        format!("{api}/query-stream"),
        DELIMITED,
        json!({"sql": "PRINT 'print_me' FROM BEGINNING INTERVAL 2 LIMIT 2;"}).to_string(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], DELIMITED);
    let text = read_to_end(resp, Duration::from_secs(60)).await;
    assert_eq!(
        text,
        "rowtime: 2020/05/12 10:15:05.124 Z, key: 1, value: {\"A\":1}, partition: 0\n\
         rowtime: 2020/05/12 10:15:05.126 Z, key: 3, value: {\"A\":3}, partition: 0\n"
    );

    // A topic that does not exist, with the case-insensitive match suggested.
    let resp = post(
        &c,
        format!("{api}/query"),
        "application/vnd.ksql.v1+json",
        json!({"ksql": "PRINT PRINT_ME;"}).to_string(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
    assert_eq!(body["error_code"], 40000, "{body}");
    assert_eq!(
        body["message"],
        "Could not find topic 'PRINT_ME', or the KSQL user does not have permissions to list \
         the topic. Topic names are case-sensitive.\nDid you mean:\n\tprint print_me;",
    );

    // --- /close-query ------------------------------------------------------------------
    let mut resp = post(
        &c,
        format!("{api}/query-stream"),
        DELIMITED,
        json!({"sql": "SELECT * FROM PAGES EMIT CHANGES;"}).to_string(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let head = read_lines(&mut resp, 1, Duration::from_secs(30)).await;
    let head: Value = serde_json::from_str(&head[0]).expect("header");
    let id = head["queryId"].as_str().expect("queryId").to_string();
    let closed = post(
        &c,
        format!("{api}/close-query"),
        "application/json",
        json!({ "queryId": id }).to_string(),
    )
    .await;
    assert_eq!(closed.status().as_u16(), 200);
    // Closing ends the response: the body completes instead of streaming forever.
    read_to_end(resp, Duration::from_secs(10)).await;
    let again = post(
        &c,
        format!("{api}/close-query"),
        "application/json",
        json!({ "queryId": id }).to_string(),
    )
    .await;
    assert_eq!(again.status().as_u16(), 400);
    let body: Value = serde_json::from_str(&again.text().await.expect("body")).expect("JSON");
    assert_eq!(body["message"], format!("No query with id {id}"), "{body}");

    // --- /inserts-stream -----------------------------------------------------------------
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM RIDES (ID INT KEY, NAME STRING, SPEED DOUBLE) \
         WITH (KAFKA_TOPIC='rides', VALUE_FORMAT='JSON', PARTITIONS=1);",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rows = [
        json!({"target": "rides", "properties": {}}).to_string(),
        json!({"id": 1, "name": "a", "speed": 1.5}).to_string(),
        json!({"ID": 2, "NAME": "b", "SPEED": 2}).to_string(),
        // An INT column given a string: refused, with its sequence number.
        json!({"id": "x", "name": "c"}).to_string(),
        json!({"name": "no key"}).to_string(),
        "not json".to_string(),
        json!({"id": 3, "`NAME`": "d", "ignored": true}).to_string(),
    ];
    let resp = post(
        &c,
        format!("{api}/inserts-stream"),
        DELIMITED,
        format!("{}\n", rows.join("\n")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let text = read_to_end(resp, Duration::from_secs(60)).await;
    let acks: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        acks,
        vec![
            json!({"status": "ok", "seq": 0}),
            json!({"status": "ok", "seq": 1}),
            json!({"status": "error", "seq": 2, "error_code": 40000,
                   "message": "Can't coerce a field of type class java.lang.String (x) into type INTEGER"}),
            json!({"status": "error", "seq": 3, "error_code": 40000,
                   "message": "Key field must be specified: ID"}),
            json!({"status": "error", "seq": 4, "error_code": 40000,
                   "message": "Invalid JSON in inserts stream"}),
            json!({"status": "ok", "seq": 5}),
        ],
        "{text}"
    );
    let resp = post(
        &c,
        format!("{api}/query-stream"),
        DELIMITED,
        json!({
            "sql": "SELECT ID, NAME, SPEED FROM RIDES EMIT CHANGES LIMIT 3;",
            "properties": {"auto.offset.reset": "earliest"},
        })
        .to_string(),
    )
    .await;
    let text = read_to_end(resp, Duration::from_secs(60)).await;
    let rows: Vec<Value> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        rows,
        vec![
            json!([1, "a", 1.5]),
            json!([2, "b", 2.0]),
            json!([3, "d", null])
        ],
        "{text}"
    );

    // Only existing streams take inserts.
    let resp = post(
        &c,
        format!("{api}/inserts-stream"),
        DELIMITED,
        format!("{}\n", json!({"target": "nowhere"})),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
    assert_eq!(
        body["message"], "Cannot insert values into an unknown stream: NOWHERE",
        "{body}"
    );

    // --- /status and /is_valid_property -----------------------------------------------------
    let body: Value = c
        .get(format!("{api}/status"))
        .send()
        .await
        .expect("/status answers")
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).expect("JSON"))
        .expect("body");
    assert_eq!(
        body["commandStatuses"]["stream/`RIDES`/create"], "SUCCESS",
        "{body}"
    );
    assert_eq!(
        body["commandStatuses"]["stream/`PAGES`/create"], "SUCCESS",
        "{body}"
    );

    let resp = c
        .get(format!("{api}/status/stream/%60RIDES%60/create"))
        .send()
        .await
        .expect("/status/{id} answers");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
    assert_eq!(body["status"], "SUCCESS", "{body}");
    assert_eq!(body["message"], "Stream created", "{body}");

    let resp = c
        .get(format!("{api}/status/stream/%60NOPE%60/create"))
        .send()
        .await
        .expect("/status/{id} answers");
    assert_eq!(resp.status().as_u16(), 404);

    let resp = c
        .get(format!(
            "{api}/is_valid_property/ksql.streams.auto.offset.reset"
        ))
        .send()
        .await
        .expect("/is_valid_property answers");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.expect("body"), "true");
    let resp = c
        .get(format!("{api}/is_valid_property/ksql.service.id"))
        .send()
        .await
        .expect("/is_valid_property answers");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
    assert_eq!(
        body["message"],
        "One or more properties overrides set locally are prohibited by the KSQL server \
         (use UNSET to reset their default value): [ksql.service.id]",
    );

    server.stop();
}
