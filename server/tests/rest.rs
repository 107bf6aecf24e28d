//! The REST API over a real `brook-server` (embedded broker in memory): statements through
//! `/ksql`, a push query through `/query-stream` and `/query`, errors and `/info`, checked
//! against ksqlDB's response shapes. Every wait is bounded so a failure cannot hang.

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

/// Reads a streamed body to its end (the LIMIT ends it), bounded by `timeout`.
async fn read_stream(resp: reqwest::Response, timeout: Duration) -> String {
    let mut resp = resp;
    let mut body = Vec::new();
    let read = async {
        while let Some(chunk) = resp.chunk().await.expect("chunk") {
            body.extend_from_slice(&chunk);
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the push query did not end within {timeout:?}; got so far: {}",
                String::from_utf8_lossy(&body)
            )
        });
    String::from_utf8(body).expect("UTF-8 body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ksql_push_queries_errors_and_info() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path());
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    let c = client();

    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM RIDERS (ID STRING KEY, NAME STRING, SPEED DOUBLE) \
         WITH (KAFKA_TOPIC='riders', VALUE_FORMAT='JSON', PARTITIONS=1);",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["@type"], "currentStatus", "{body}");
    assert_eq!(body[0]["commandStatus"]["status"], "SUCCESS", "{body}");
    assert_eq!(
        body[0]["commandStatus"]["message"], "Stream created",
        "{body}"
    );
    assert!(body[0]["statementText"]
        .as_str()
        .is_some_and(|t| t.starts_with("CREATE STREAM RIDERS")));

    let (status, body) = ksql(&c, &api, "SHOW STREAMS;").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["@type"], "streams", "{body}");
    assert_eq!(
        body[0]["streams"],
        json!([{
            "type": "STREAM",
            "name": "RIDERS",
            "topic": "riders",
            "keyFormat": "KAFKA",
            "valueFormat": "JSON",
            "isWindowed": false,
        }])
    );

    let (status, body) = ksql(&c, &api, "DESCRIBE RIDERS;").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["@type"], "sourceDescription", "{body}");
    assert_eq!(body[0]["sourceDescription"]["fields"][0]["type"], "KEY");
    assert_eq!(
        body[0]["sourceDescription"]["fields"][2]["schema"]["type"],
        "DOUBLE"
    );

    for sql in [
        "INSERT INTO RIDERS (ID, NAME, SPEED) VALUES ('r1', 'alice', 12.5);",
        "INSERT INTO RIDERS (ID, NAME, SPEED) VALUES ('r2', 'bob', 3.0);",
    ] {
        let (status, body) = ksql(&c, &api, sql).await;
        // ksqlDB answers INSERT VALUES with no entity.
        assert_eq!((status, &body), (200, &json!([])), "{sql}");
    }

    // /query-stream, delimited: the header line, then one array per row; LIMIT ends it.
    let resp = c
        .post(format!("{api}/query-stream"))
        .header("Accept", "application/vnd.ksqlapi.delimited.v1")
        .body(
            json!({
                "sql": "SELECT ID, NAME, SPEED FROM RIDERS EMIT CHANGES LIMIT 2;",
                "properties": {"auto.offset.reset": "earliest"},
            })
            .to_string(),
        )
        .send()
        .await
        .expect("/query-stream answers");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.ksqlapi.delimited.v1"
    );
    let text = read_stream(resp, Duration::from_secs(60)).await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0]["queryId"].is_string(), "{text}");
    assert_eq!(lines[0]["columnNames"], json!(["ID", "NAME", "SPEED"]));
    assert_eq!(
        lines[0]["columnTypes"],
        json!(["STRING", "STRING", "DOUBLE"])
    );
    assert_eq!(lines[1], json!(["r1", "alice", 12.5]));
    assert_eq!(lines[2], json!(["r2", "bob", 3.0]));

    // /query: ksqlDB's older endpoint, a JSON array ending with the final message.
    let resp = c
        .post(format!("{api}/query"))
        .header("Accept", "application/vnd.ksql.v1+json")
        .body(
            json!({
                "ksql": "SELECT NAME FROM RIDERS WHERE SPEED > 10 EMIT CHANGES LIMIT 1;",
                "streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"},
            })
            .to_string(),
        )
        .send()
        .await
        .expect("/query answers");
    assert_eq!(resp.status().as_u16(), 200);
    let text = read_stream(resp, Duration::from_secs(60)).await;
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(body[0]["header"]["schema"], "`NAME` STRING", "{text}");
    assert_eq!(body[1], json!({"row": {"columns": ["alice"]}}), "{text}");
    assert_eq!(body[2], json!({"finalMessage": "Limit Reached"}), "{text}");
    // Each element's line ends as it is written, as ksqlDB's does: clients that read the
    // response line by line see a row when it arrives, not when the next one does.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.get(1),
        Some(&r#"{"row":{"columns":["alice"]}},"#),
        "{text}"
    );

    // A statement that does not plan: 400 with ksqlDB's statement error.
    let (status, body) = ksql(&c, &api, "CREATE STREAM S2 AS SELECT * FROM NOPE;").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["@type"], "statement_error", "{body}");
    assert_eq!(body["error_code"], 40001, "{body}");
    assert_eq!(
        body["statementText"],
        "CREATE STREAM S2 AS SELECT * FROM NOPE;"
    );
    // One that does not parse.
    let (status, body) = ksql(&c, &api, "CREATE STREM X;").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["@type"], "statement_error", "{body}");

    let resp = c
        .get(format!("{api}/info"))
        .send()
        .await
        .expect("/info answers");
    assert_eq!(resp.status().as_u16(), 200);
    let info: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
    assert_eq!(info["KsqlServerInfo"]["serverStatus"], "RUNNING", "{info}");
    assert!(info["KsqlServerInfo"]["version"].is_string(), "{info}");
    assert!(
        info["KsqlServerInfo"]["kafkaClusterId"].is_string(),
        "{info}"
    );
    assert_eq!(info["KsqlServerInfo"]["ksqlServiceId"], "default_");

    let resp = c
        .get(format!("{api}/healthcheck"))
        .send()
        .await
        .expect("/healthcheck answers");
    assert_eq!(resp.status().as_u16(), 200);
}
