//! `/ws/query` over a real `brook-server` with a tungstenite client, checked against
//! ksqlDB's WebSocket protocol: the request in the `request` URL parameter, a schema frame,
//! one `{"row":{"columns":[…]}}` frame per row, a normal close (`done`) at the LIMIT, a
//! 1003 close for a refused request; and a client closing the socket ends the push query.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{client, free_port, ksql, Options, Server};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(api: &str, request: &Value) -> Ws {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("request", &request.to_string())
        .append_pair("version", "1")
        .finish();
    let url = format!("{}/ws/query?{query}", api.replacen("http://", "ws://", 1));
    let (ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket handshake");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// The next frame that is not a ping or pong, within 60 s.
async fn next(ws: &mut Ws) -> Message {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a frame within 60 s")
            .expect("the socket is open")
            .expect("a frame");
        if !matches!(m, Message::Ping(_) | Message::Pong(_)) {
            return m;
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Message::Text(t) => serde_json::from_str(t.as_str()).expect("a JSON text frame"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn expect_close(ws: &mut Ws) -> (u16, String) {
    match next(ws).await {
        Message::Close(Some(f)) => (u16::from(f.code), f.reason.to_string()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

async fn insert(c: &reqwest::Client, api: &str, sql: &str) {
    let (status, body) = ksql(c, api, sql).await;
    assert_eq!((status, &body), (200, &json!([])), "{sql}");
}

async fn push_queries_active(c: &reqwest::Client, api: &str) -> String {
    let text = c
        .get(format!("{api}/metrics"))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix("brook_push_queries_active "))
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_query_streams_rows_and_closing_ends_the_query() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(Options {
        data_dir: dir.path(),
        broker_port: free_port(),
        broker_in_memory: true,
    });
    server.wait_for("brook-server ready");
    let c = client();
    let api = server.api.clone();
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM RIDERS (ID STRING KEY, NAME STRING, SPEED DOUBLE) \
         WITH (KAFKA_TOPIC='riders', VALUE_FORMAT='JSON', PARTITIONS=1);",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    insert(
        &c,
        &api,
        "INSERT INTO RIDERS (ID, NAME, SPEED) VALUES ('r1', 'alice', 12.5);",
    )
    .await;
    insert(
        &c,
        &api,
        "INSERT INTO RIDERS (ID, NAME, SPEED) VALUES ('r2', 'bob', 3.0);",
    )
    .await;

    // Schema, then a frame per row; the LIMIT closes the socket normally.
    let mut ws = connect(
        &api,
        &json!({
            "ksql": "SELECT ID, NAME, SPEED FROM RIDERS EMIT CHANGES LIMIT 3;",
            "streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"},
        }),
    )
    .await;
    let field = |name: &str, ty: &str| json!({"name": name, "schema": {"type": ty, "fields": null, "memberSchema": null}});
    assert_eq!(
        next_json(&mut ws).await,
        json!([
            field("ID", "STRING"),
            field("NAME", "STRING"),
            field("SPEED", "DOUBLE")
        ])
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"row": {"columns": ["r1", "alice", 12.5]}})
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"row": {"columns": ["r2", "bob", 3.0]}})
    );
    insert(
        &c,
        &api,
        "INSERT INTO RIDERS (ID, NAME, SPEED) VALUES ('r3', 'carol', 7.0);",
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"row": {"columns": ["r3", "carol", 7.0]}})
    );
    assert_eq!(expect_close(&mut ws).await, (1000, "done".to_string()));
    drop(ws);

    // Without a LIMIT the query runs until the client closes the socket.
    let deadline = Instant::now() + Duration::from_secs(30);
    while push_queries_active(&c, &api).await != "0" {
        assert!(Instant::now() < deadline, "the LIMIT query never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ws = connect(
        &api,
        &json!({
            "ksql": "SELECT NAME FROM RIDERS WHERE SPEED > 5 EMIT CHANGES;",
            "streamsProperties": {"auto.offset.reset": "earliest"},
        }),
    )
    .await;
    assert_eq!(next_json(&mut ws).await, json!([field("NAME", "STRING")]));
    for name in ["alice", "carol"] {
        assert_eq!(
            next_json(&mut ws).await,
            json!({"row": {"columns": [name]}})
        );
    }
    insert(
        &c,
        &api,
        "INSERT INTO RIDERS (ID, NAME, SPEED) VALUES ('r4', 'dave', 9.0);",
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"row": {"columns": ["dave"]}})
    );
    assert_eq!(push_queries_active(&c, &api).await, "1");
    ws.close(None).await.expect("close");
    let deadline = Instant::now() + Duration::from_secs(30);
    while push_queries_active(&c, &api).await != "0" {
        assert!(
            Instant::now() < deadline,
            "closing the socket did not end the push query"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Refusals close the socket with 1003 (INVALID_MESSAGE_TYPE) and the reason.
    let mut ws = connect(
        &api,
        &json!({"ksql": "SELECT * FROM NOPE EMIT CHANGES;", "streamsProperties": {}}),
    )
    .await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, u16::from(CloseCode::Unsupported), "{reason}");
    assert!(reason.contains("NOPE"), "{reason}");
    let mut ws = connect(&api, &json!({"streamsProperties": {}})).await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1003);
    assert!(reason.starts_with("Error parsing request"), "{reason}");
    server.stop();
}
