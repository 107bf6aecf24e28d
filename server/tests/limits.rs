//! The server's resource limits (docs/limits.md) over a real `brook-server`: each limit
//! reached is refused with its clear message, and the server goes on serving. Raw TCP
//! clients play the misbehaving peers (half-sent requests, clients that stop reading).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use brook_runtime::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use futures::StreamExt;
use serde_json::{json, Value};

mod common;
use common::{client, free_port, ksql, Options, Server};

fn start(dir: &std::path::Path, config: &[&str]) -> Server {
    let mut args = Vec::new();
    for c in config {
        args.push("--config");
        args.push(c);
    }
    let server = Server::start_with(
        Options {
            data_dir: dir,
            broker_port: free_port(),
            broker_in_memory: true,
        },
        &args,
    );
    server.wait_for("brook-server ready");
    server
}

fn addr(server: &Server) -> String {
    server.api.trim_start_matches("http://").to_string()
}

/// A connection that sent `request` (and reads only when asked to).
fn raw(server: &Server, request: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr(server)).expect("connects");
    tcp.write_all(request.as_bytes()).expect("request sent");
    tcp
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: brook\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads until `text` has arrived (or the peer closed); everything read.
fn read_until(tcp: &mut TcpStream, text: &str) -> String {
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout set");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(text) {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading: {e}; so far: {}", String::from_utf8_lossy(&seen)),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Whether the server closes the connection within `wait` (reading what it sends).
fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout set");
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => {}
        }
    }
    false
}

/// A sample of `/metrics`.
async fn metric(c: &reqwest::Client, server: &Server, name: &str) -> f64 {
    let text = c
        .get(format!("{}/metrics", server.api))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
}

/// Waits until the metric `name` is `want`.
async fn metric_becomes(c: &reqwest::Client, server: &Server, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = metric(c, server, name).await;
        if v == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed {v}, not {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ok(c: &reqwest::Client, server: &Server, sql: &str) {
    let (status, body) = ksql(c, &server.api, sql).await;
    assert_eq!(status, 200, "{sql}: {body}");
}

/// `/inserts-stream` holds one row at a time: a 64 MiB line is answered with an error row
/// (and dropped as it arrives, memory staying flat), the rows after it go in, and a body of
/// many rows is answered row by row, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_stream_rows_are_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &[]);
    let c = client();
    ok(&c, &server, "CREATE STREAM R (ID INT KEY, V STRING) WITH (KAFKA_TOPIC='r', PARTITIONS=1, VALUE_FORMAT='JSON');").await;
    let before = server.rss_kib();
    const MIB: usize = 1 << 20;
    let chunks = futures::stream::iter(
        std::iter::once(b"{\"target\":\"R\"}\n{\"ID\":1,\"V\":\"".to_vec())
            .chain((0..64).map(|_| vec![b'x'; MIB]))
            .chain(std::iter::once(b"\"}\n{\"ID\":2,\"V\":\"ok\"}\n".to_vec()))
            .map(Ok::<_, std::io::Error>),
    );
    let resp = c
        .post(format!("{}/inserts-stream", server.api))
        .body(reqwest::Body::wrap_stream(chunks))
        .send();
    // The server's memory, sampled while the body goes in.
    let mut peak = before;
    let resp = {
        tokio::pin!(resp);
        loop {
            tokio::select! {
                r = &mut resp => break r.expect("/inserts-stream answers"),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    peak = peak.max(server.rss_kib());
                }
            }
        }
    };
    let text = resp.text().await.expect("acks");
    peak = peak.max(server.rss_kib());
    let acks: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON ack"))
        .collect();
    assert_eq!(acks.len(), 2, "{text}");
    assert_eq!(acks[0]["status"], "error", "{text}");
    assert_eq!(acks[0]["seq"], 0);
    assert_eq!(acks[0]["error_code"], 41300);
    let message = acks[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("brook.inserts.stream.max.row.bytes"),
        "{message}"
    );
    assert_eq!(acks[1], json!({"status": "ok", "seq": 1}));
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "RSS grew by {grown} KiB for a 64 MiB line"
    );

    // Many rows in one body: every one answered, in order (invalid rows cost no Kafka
    // round trip, so only the reading is measured).
    const ROWS: usize = 200_000;
    let body = format!("{{\"target\":\"R\"}}\n{}", "[]\n".repeat(ROWS));
    let started = Instant::now();
    let text = c
        .post(format!("{}/inserts-stream", server.api))
        .body(body)
        .send()
        .await
        .expect("/inserts-stream answers")
        .text()
        .await
        .expect("acks");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), ROWS);
    let last: Value = serde_json::from_str(lines[ROWS - 1]).expect("JSON");
    assert_eq!(last["seq"], ROWS as u64 - 1);
    assert_eq!(last["message"], "Invalid JSON in inserts stream");
    eprintln!("{ROWS} rows answered in {:?}", started.elapsed());
    server.stop();
}

/// Request bodies read whole are bounded, and so is their JSON nesting.
#[tokio::test]
async fn request_bodies_are_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &["brook.rest.request.max.bytes=65536"]);
    let c = client();
    for path in ["/ksql", "/query", "/query-stream", "/close-query"] {
        let big = format!(r#"{{"ksql":"{}"}}"#, " ".repeat(100_000));
        let resp = c
            .post(format!("{}{path}", server.api))
            .body(big)
            .send()
            .await
            .expect("answers");
        assert_eq!(resp.status().as_u16(), 413, "{path}");
        let body: Value = resp.json().await.expect("a JSON error");
        assert_eq!(body["@type"], "generic_error", "{path}");
        assert_eq!(body["error_code"], 41300, "{path}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("brook.rest.request.max.bytes"),
            "{message}"
        );
    }
    let deep = format!(
        r#"{{"ksql":"SHOW STREAMS;","streamsProperties":{{"a":{}{}}}}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let resp = c
        .post(format!("{}/ksql", server.api))
        .body(deep)
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("a JSON error");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("recursion limit exceeded"), "{message}");
    ok(&c, &server, "SHOW STREAMS;").await;
    server.stop();
}

/// One persistent query more than `ksql.query.persistent.active.limit`: refused with
/// ksqlDB's message, and nothing of it is created.
#[tokio::test]
async fn persistent_query_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &["ksql.query.persistent.active.limit=1"]);
    persistent_queries(&client(), &server).await;
    server.stop();
}

/// A pull query over a large stream whose client stops reading holds little memory; one
/// more than `ksql.query.pull.max.concurrent.requests` is refused until it goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_query_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &["ksql.query.pull.max.concurrent.requests=1"]);
    pull_queries(&client(), &server).await;
    server.stop();
}

/// One PRINT more than `brook.query.print.max.concurrent` is refused.
#[tokio::test]
async fn print_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &["brook.query.print.max.concurrent=1"]);
    let c = client();
    ok(&c, &server, "CREATE STREAM P (ID INT KEY, V STRING) WITH (KAFKA_TOPIC='p', PARTITIONS=1, VALUE_FORMAT='JSON');").await;
    prints(&c, &server).await;
    server.stop();
}

/// A WebSocket outliving `ksql.websocket.connection.max.timeout.ms` is closed as ksqlDB
/// closes it.
#[tokio::test]
async fn websocket_lifetime_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(
        dir.path(),
        &["ksql.websocket.connection.max.timeout.ms=1500"],
    );
    ok(&client(), &server, "CREATE STREAM P (ID INT KEY, V STRING) WITH (KAFKA_TOPIC='p', PARTITIONS=1, VALUE_FORMAT='JSON');").await;
    websocket_lifetime(&server).await;
    server.stop();
}

/// A burst of `/healthcheck`s asks Kafka once (on the server's own client).
#[tokio::test]
async fn healthcheck_burst() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &["ksql.healthcheck.interval.ms=600000"]);
    healthchecks(&client(), &server).await;
    server.stop();
}

async fn persistent_queries(c: &reqwest::Client, server: &Server) {
    ok(c, server, "CREATE STREAM P (ID INT KEY, V STRING) WITH (KAFKA_TOPIC='p', PARTITIONS=1, VALUE_FORMAT='JSON');").await;
    ok(c, server, "CREATE STREAM P1 AS SELECT * FROM P;").await;
    let (status, body) = ksql(c, &server.api, "CREATE STREAM P2 AS SELECT * FROM P;").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], 40001, "{body}");
    assert_eq!(
        body["message"],
        "Not executing statement(s) as it would cause the number of active, persistent \
         queries to exceed the configured limit. Use the TERMINATE command to terminate \
         existing queries, or increase the 'ksql.query.persistent.active.limit' setting via \
         the 'ksql-server.properties' file. Current persistent query count: 2. Configured \
         limit: 1."
    );
    let (_, streams) = ksql(c, &server.api, "SHOW STREAMS;").await;
    assert!(
        !streams.to_string().contains("\"P2\""),
        "P2 was not created"
    );
}

/// Sends a pull query over stream B on a raw connection and reads only its header.
fn stalled_pull(server: &Server) -> TcpStream {
    let body = json!({"sql": "SELECT * FROM B;", "properties": {}}).to_string();
    let mut tcp = raw(server, &post("/query-stream", &body));
    let head = read_until(&mut tcp, "queryId");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp
}

async fn pull_queries(c: &reqwest::Client, server: &Server) {
    ok(
        c,
        server,
        "CREATE STREAM B (V STRING) WITH (KAFKA_TOPIC='b', PARTITIONS=2, VALUE_FORMAT='KAFKA');",
    )
    .await;
    // 48 MiB of records, far more than a stalled client's socket buffers take.
    let producer: BaseProducer = brook_runtime::kafka::producer_config(&server.bootstrap)
        .create()
        .expect("producer");
    let value = "v".repeat(512 * 1024);
    for _ in 0..96 {
        producer
            .send(BaseRecord::<(), _>::to("b").payload(&value))
            .map_err(|(e, _)| e)
            .expect("queued");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flushed");
    let before = server.rss_kib();
    let first = stalled_pull(server);
    // The server reads as far as the client's socket takes rows, then waits.
    let mut peak = before;
    let window = Instant::now() + Duration::from_secs(3);
    while Instant::now() < window {
        peak = peak.max(server.rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grown = peak.saturating_sub(before);
    eprintln!("RSS grew by {grown} KiB with a stalled pull query over 48 MiB");
    assert!(
        grown < 40 * 1024,
        "RSS grew by {grown} KiB for a 48 MiB stream"
    );

    let resp = c
        .post(format!("{}/query-stream", server.api))
        .body(json!({"sql": "SELECT * FROM B LIMIT 1;", "properties": {}}).to_string())
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 429);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"@type": "generic_error", "error_code": 42900, "message":
            "Host is at concurrency limit for pull queries. Currently set to 1 maximum concurrent operations."})
    );
    // The client going away ends its query and frees its place.
    first.shutdown(std::net::Shutdown::Both).expect("closed");
    drop(first);
    metric_becomes(c, server, "brook_pull_queries_active", 0.0).await;
    let resp = c
        .post(format!("{}/query-stream", server.api))
        .body(json!({"sql": "SELECT * FROM B LIMIT 2;", "properties": {}}).to_string())
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("rows");
    assert_eq!(text.lines().count(), 3, "a header and 2 rows");
}

async fn prints(c: &reqwest::Client, server: &Server) {
    let body = json!({"sql": "PRINT 'p';", "properties": {}}).to_string();
    let mut first = raw(server, &post("/query-stream", &body));
    let head = read_until(&mut first, "\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let resp = c
        .post(format!("{}/query-stream", server.api))
        .body(body)
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 429);
    let error: Value = resp.json().await.expect("JSON");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("'brook.query.print.max.concurrent'")
            && message.contains("Current PRINT count: 1. Configured limit: 1."),
        "{message}"
    );
    drop(first);
    metric_becomes(c, server, "brook_print_active", 0.0).await;
}

async fn websocket_lifetime(server: &Server) {
    let request = json!({"ksql": "SELECT * FROM P EMIT CHANGES;", "streamsProperties": {}});
    let url = format!(
        "ws://{}/ws/query?request={}",
        addr(server),
        url::form_urlencoded::byte_serialize(request.to_string().as_bytes()).collect::<String>()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket opens");
    let close = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(m) = ws.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) = m {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed by the server in time")
    .expect("a close frame");
    assert_eq!(u16::from(close.code), 1011);
    assert_eq!(close.reason.as_str(), "The request token has expired.");
}

async fn healthchecks(c: &reqwest::Client, server: &Server) {
    let checks = (0..50).map(|_| async {
        let resp = c
            .get(format!("{}/healthcheck", server.api))
            .send()
            .await
            .expect("answers");
        assert_eq!(resp.status().as_u16(), 200);
    });
    futures::future::join_all(checks).await;
    assert_eq!(
        metric(c, server, "brook_healthcheck_kafka_probes_total").await,
        1.0,
        "50 health checks, one question to Kafka"
    );
}

/// Half-sent requests and connections that say nothing are closed after
/// `brook.http.header.read.timeout.ms`; a push query that sends nothing for
/// `ksql.idle.connection.timeout.seconds` is closed and its query ended.
#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(
        dir.path(),
        &[
            "brook.http.header.read.timeout.ms=1000",
            "ksql.idle.connection.timeout.seconds=3",
        ],
    );
    // A pooled connection would be closed by the header read timeout while it waits.
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .expect("a client");
    let mut half = raw(&server, "GET /info HTTP/1.1\r\nHost: brook\r\n");
    let mut silent = raw(&server, "");
    let mut preface = raw(&server, "PRI * HTTP/2.0\r\n");
    for (name, tcp) in [
        ("half a request", &mut half),
        ("nothing", &mut silent),
        ("part of the HTTP/2 preface", &mut preface),
    ] {
        assert!(
            closed_within(tcp, Duration::from_secs(20)),
            "a connection that sent {name} stays open"
        );
    }
    assert!(metric(&c, &server, "brook_http_header_timeouts_total").await >= 3.0);

    ok(
        &c,
        &server,
        "CREATE STREAM I (V STRING) WITH (KAFKA_TOPIC='i', PARTITIONS=1, VALUE_FORMAT='KAFKA');",
    )
    .await;
    let body = json!({"sql": "SELECT * FROM I EMIT CHANGES;", "properties": {}}).to_string();
    let mut push = raw(&server, &post("/query-stream", &body));
    read_until(&mut push, "queryId");
    assert!(
        closed_within(&mut push, Duration::from_secs(30)),
        "an idle push query's connection stays open"
    );
    assert!(metric(&c, &server, "brook_http_idle_closed_total").await >= 1.0);
    metric_becomes(&c, &server, "brook_push_queries_active", 0.0).await;
    ok(&c, &server, "SHOW STREAMS;").await;
    server.stop();
}

/// One connection more than `brook.http.max.connections` is answered 429; HTTP/2 tells its
/// clients `brook.http2.max.concurrent.streams`.
#[tokio::test]
async fn connections_are_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(
        dir.path(),
        &[
            "brook.http.max.connections=3",
            "brook.http2.max.concurrent.streams=2",
        ],
    );
    let held: Vec<TcpStream> = (0..3).map(|_| raw(&server, "")).collect();
    let mut extra = raw(&server, "GET /info HTTP/1.1\r\nHost: brook\r\n\r\n");
    let answer = read_until(&mut extra, "}");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("brook.http.max.connections"), "{answer}");
    drop(held);
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get(format!("{}/info", server.api)).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server serves again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // HTTP/2's first frame from the server is its SETTINGS.
    let mut h2 = raw(
        &server,
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
    );
    h2.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout set");
    let mut head = [0u8; 9];
    h2.read_exact(&mut head).expect("a frame header");
    assert_eq!(head[3], 4, "a SETTINGS frame");
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    h2.read_exact(&mut payload).expect("its payload");
    let max_streams = payload
        .chunks(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(max_streams, Some(2));
    server.stop();
}
