//! Statements built to exhaust the server (issue 20), each well under the 2 MiB request
//! limit, sent to `/ksql` of a real `brook-server`: each is answered 400 with a
//! `statement_error` naming the limit, and the server keeps serving. A statement at the
//! limits runs, on the server's worker threads, to a result. Every wait is bounded.

use std::time::Duration;

use serde_json::{json, Value};

mod common;
use common::{client, free_port, ksql, Options, Server};

fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

/// Asserts a 400 `statement_error` whose message contains `want`.
fn assert_refused(what: &str, status: u16, body: &Value, want: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["@type"], "statement_error", "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(want), "{what}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_statements_are_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(Options {
        data_dir: dir.path(),
        broker_port: free_port(),
        broker_in_memory: true,
    });
    server.wait_for("brook-server ready");
    let api = server.api.clone();
    let c = client();

    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM S (ID STRING KEY, A INT, X STRUCT<X INT>) \
         WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let n = 100_000;
    let too_deep = "nested too deeply: more than 128 levels";
    let hostile = [
        (
            "100k nested ARRAY<",
            format!(
                "CREATE STREAM T (A {}) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON', PARTITIONS=1);",
                nested("ARRAY<", "INT", ">", n)
            ),
            too_deep,
        ),
        (
            "200k-term a+a+…",
            format!("SELECT {} FROM S EMIT CHANGES;", vec!["A"; 2 * n].join("+")),
            too_deep,
        ),
        (
            "100k ->",
            format!("SELECT X{} FROM S EMIT CHANGES;", "->X".repeat(n)),
            too_deep,
        ),
        (
            "100k [1]",
            format!("SELECT A{} FROM S EMIT CHANGES;", "[1]".repeat(n)),
            too_deep,
        ),
        (
            "100k nested ::ARRAY<",
            format!(
                "SELECT A::{} FROM S EMIT CHANGES;",
                nested("ARRAY<", "INT", ">", n)
            ),
            too_deep,
        ),
        (
            "40 nested STRUCT<",
            format!(
                "CREATE TYPE DEEP AS {};",
                nested("STRUCT<A ", "INT", ">", 40)
            ),
            "The type is nested too deeply: more than 32 levels",
        ),
        (
            "60 parentheses",
            format!("SELECT {} FROM S EMIT CHANGES;", nested("(", "A", ")", 60)),
            "more than 50 levels of parentheses",
        ),
    ];
    for (what, sql, want) in &hostile {
        assert!(sql.len() < 2 << 20, "{what}: {} bytes", sql.len());
        let (status, body) = ksql(&c, &api, sql).await;
        assert_refused(what, status, &body, want);
    }

    // Types made of types double with each: the one past the limit is refused.
    let (status, body) = ksql(&c, &api, "CREATE TYPE T0 AS STRUCT<A INT, B INT>;").await;
    assert_eq!(status, 200, "{body}");
    let mut refused = None;
    for k in 1..20 {
        let sql = format!("CREATE TYPE T{k} AS STRUCT<A T{p}, B T{p}>;", p = k - 1);
        let (status, body) = ksql(&c, &api, &sql).await;
        if status != 200 {
            refused = Some((k, status, body));
            break;
        }
    }
    let Some((k, status, body)) = refused else {
        panic!("no CREATE TYPE refused")
    };
    assert_eq!(k, 12, "{body}");
    assert_refused(
        "CREATE TYPE chain",
        status,
        &body,
        "more than the limit of 10000",
    );
    // T11 has 8191 parts: a statement naming it 40 times resolves more than its budget.
    let columns: Vec<String> = (0..40).map(|i| format!("ADD COLUMN C{i} T11")).collect();
    let casts: Vec<String> = (0..40)
        .map(|i| format!("CAST(NULL AS T11) AS C{i}"))
        .collect();
    for (what, sql) in [
        ("ALTER", format!("ALTER STREAM S {};", columns.join(", "))),
        (
            "CASTs",
            format!("CREATE STREAM CASTS AS SELECT {} FROM S;", casts.join(", ")),
        ),
    ] {
        let (status, body) = ksql(&c, &api, &sql).await;
        assert_refused(what, status, &body, "more than 250000 parts");
    }

    // The server still serves, and a statement at the limits runs on its workers.
    let (status, body) = ksql(&c, &api, "SHOW STREAMS;").await;
    assert_eq!(status, 200, "{body}");
    let deepest = vec!["A"; 100].join(" + ");
    let (status, body) = ksql(
        &c,
        &api,
        &format!("CREATE STREAM DEEP AS SELECT ID, {deepest} AS V FROM S;"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ksql(
        &c,
        &api,
        "INSERT INTO S (ID, A, X) VALUES ('k', 2, STRUCT(X := 1));",
    )
    .await;
    assert_eq!((status, &body), (200, &json!([])));
    let resp = c
        .post(format!("{api}/query-stream"))
        .header("Accept", "application/vnd.ksqlapi.delimited.v1")
        .body(
            json!({
                "sql": "SELECT ID, V FROM DEEP EMIT CHANGES LIMIT 1;",
                "properties": {"auto.offset.reset": "earliest"},
            })
            .to_string(),
        )
        .send()
        .await
        .expect("/query-stream answers");
    assert_eq!(resp.status().as_u16(), 200);
    let text = tokio::time::timeout(Duration::from_secs(60), resp.text())
        .await
        .expect("the query ends within a minute")
        .expect("body");
    let last = text.lines().last().unwrap_or_default();
    assert_eq!(last, r#"["k",200]"#, "{text}");
}
