//! Push queries at scale over a real `brook-server`: a thousand `/query-stream` subscribers
//! of one stream share one consumer and each gets every row (through its own WHERE,
//! projection and LIMIT) in order; `--max-push-queries` refuses one too many with ksqlDB's
//! error; a subscriber that stops reading is cut off (`--push-query-buffer`) while the
//! others go on. Prints the server's RSS, which the shared consumer keeps flat.

use std::time::{Duration, Instant};

use brook_runtime::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use futures::StreamExt;
use serde_json::{json, Value};

mod common;
use common::{client, free_port, ksql, Options, Server};

const DELIMITED: &str = "application/vnd.ksqlapi.delimited.v1";

/// A streamed response read line by line.
struct Lines {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    /// The next line, or None at the end of the body.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            match self.resp.chunk().await.expect("a body chunk") {
                Some(c) => self.buf.extend_from_slice(&c),
                None if self.buf.is_empty() => return None,
                None => {
                    let rest = std::mem::take(&mut self.buf);
                    return Some(String::from_utf8_lossy(&rest).into_owned());
                }
            }
        }
    }

    /// The next line within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.next())
            .await
            .expect("a line in time")
    }
}

async fn post_query(
    c: &reqwest::Client,
    api: &str,
    sql: &str,
    properties: Value,
) -> reqwest::Response {
    c.post(format!("{api}/query-stream"))
        .header("Content-Type", "application/json")
        .header("Accept", DELIMITED)
        .body(json!({"sql": sql, "properties": properties}).to_string())
        .send()
        .await
        .expect("/query-stream answers")
}

/// Starts a push query; returns its body after the header line, and its column names.
async fn open(c: &reqwest::Client, api: &str, sql: &str) -> (Lines, Vec<String>) {
    let resp = post_query(c, api, sql, json!({})).await;
    assert_eq!(resp.status().as_u16(), 200, "{sql}");
    let mut lines = Lines {
        resp,
        buf: Vec::new(),
    };
    let head = lines
        .next_within(Duration::from_secs(60))
        .await
        .expect("a header line");
    let head: Value = serde_json::from_str(&head).expect("a JSON header");
    let names = head["columnNames"]
        .as_array()
        .expect("columnNames")
        .iter()
        .map(|n| n.as_str().expect("a name").to_string())
        .collect();
    (lines, names)
}

async fn scrape(c: &reqwest::Client, api: &str) -> String {
    c.get(format!("{api}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("body")
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Scrapes until `series` is `want` (a minute at most).
async fn wait_metric(c: &reqwest::Client, api: &str, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(c, api).await;
        if sample(&text, series) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The four kinds of subscriber: (query, rows it must see as (ID, V) pairs, whether its
/// response ends by itself at a LIMIT).
fn kind(i: usize, rows: usize) -> (&'static str, Vec<(i64, String)>, bool) {
    let all: Vec<(i64, String)> = (0..rows as i64).map(|n| (n, format!("v{n}"))).collect();
    match i % 4 {
        0 => ("SELECT * FROM S EMIT CHANGES;", all, false),
        1 => (
            "SELECT ID, V FROM S WHERE ID >= 10 EMIT CHANGES;",
            all.into_iter().filter(|(id, _)| *id >= 10).collect(),
            false,
        ),
        2 => ("SELECT ID, V FROM S EMIT CHANGES LIMIT 20;", all, true),
        _ => ("SELECT V, ID * 2 AS D FROM S EMIT CHANGES;", all, false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_share_one_consumer() {
    const SUBSCRIBERS: usize = 1000;
    const ROWS: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(
        Options {
            data_dir: dir.path(),
            broker_port: free_port(),
            broker_in_memory: true,
        },
        &["--max-push-queries", "1000"],
    );
    server.wait_for("brook-server ready");
    // One client for every subscriber: HTTP/1.1, one connection per open response.
    let c = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(SUBSCRIBERS)
        .build()
        .expect("http client");
    let api = server.api.clone();
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM S (ID INT KEY, V STRING) \
         WITH (KAFKA_TOPIC='s', PARTITIONS=1, VALUE_FORMAT='JSON');",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (rss_idle, threads_idle) = (server.rss_kib(), server.threads());

    let started = Instant::now();
    let opened: Vec<(usize, Lines, Vec<String>)> = futures::stream::iter(0..SUBSCRIBERS)
        .map(|i| {
            let (c, api) = (c.clone(), api.clone());
            async move {
                let (lines, names) = open(&c, &api, kind(i, ROWS).0).await;
                (i, lines, names)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let open_time = started.elapsed();
    let text = scrape(&c, &api).await;
    assert_eq!(
        sample(&text, "brook_push_queries_active"),
        Some(SUBSCRIBERS as f64)
    );
    assert_eq!(sample(&text, "brook_push_shared_consumers"), Some(1.0));
    assert_eq!(
        sample(&text, "brook_push_shared_subscribers"),
        Some(SUBSCRIBERS as f64)
    );
    let (rss_subscribed, threads_subscribed) = (server.rss_kib(), server.threads());

    // Every subscriber reads on its own task, as a client would.
    let mut readers = Vec::new();
    for (i, mut lines, names) in opened {
        readers.push(tokio::spawn(async move {
            let (_, want, ends) = kind(i, ROWS);
            let id_at = names.iter().position(|n| n == "ID");
            let d_at = names.iter().position(|n| n == "D");
            let v_at = names.iter().position(|n| n == "V").expect("a V column");
            let mut got = Vec::new();
            while got.len() < want.len() {
                let line = lines
                    .next_within(Duration::from_secs(120))
                    .await
                    .unwrap_or_else(|| panic!("subscriber {i} ended after {got:?}"));
                let row: Vec<Value> = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("subscriber {i}: not a row ({e}): {line}"));
                let id = match (id_at, d_at) {
                    (Some(at), _) => row[at].as_i64().expect("ID"),
                    (None, Some(at)) => row[at].as_i64().expect("D") / 2,
                    (None, None) => panic!("no ID column"),
                };
                got.push((id, row[v_at].as_str().expect("V").to_string()));
            }
            assert_eq!(got, want, "subscriber {i} ({})", kind(i, ROWS).0);
            if ends {
                // LIMIT reached: the response ends at once.
                assert_eq!(lines.next_within(Duration::from_secs(30)).await, None);
            }
            lines
        }));
    }
    let inserts: String = (0..ROWS)
        .map(|n| format!("INSERT INTO S (ID, V) VALUES ({n}, 'v{n}');"))
        .collect();
    let sent = Instant::now();
    let (status, body) = ksql(&c, &api, &inserts).await;
    assert_eq!(status, 200, "{body}");
    let inserted = sent.elapsed();
    let mut open_bodies = Vec::new();
    for r in readers {
        open_bodies.push(r.await.expect("every subscriber got every row"));
    }
    let delivery = sent.elapsed();
    let rss_delivered = server.rss_kib();
    // The LIMIT subscribers are gone; the others still run.
    wait_metric(
        &c,
        &api,
        "brook_push_queries_active",
        (SUBSCRIBERS - SUBSCRIBERS / 4) as f64,
    )
    .await;

    // Closing the responses ends the queries, and the last one stops the consumer.
    drop(open_bodies);
    wait_metric(&c, &api, "brook_push_queries_active", 0.0).await;
    wait_metric(&c, &api, "brook_push_shared_consumers", 0.0).await;
    server.wait_for("shared push-query consumer stopped");
    let rss_closed = server.rss_kib();
    eprintln!(
        "push fan-out: {SUBSCRIBERS} subscribers opened in {open_time:?}; {ROWS} rows to every \
         one {delivery:?} after the first INSERT ({:?} after the last INSERT returned; the \
         INSERTs took {inserted:?}); server RSS: {:.1} MiB idle, {:.1} MiB \
         with {SUBSCRIBERS} subscribers ({:.1} KiB each), {:.1} MiB after delivery, {:.1} MiB \
         after all closed; server threads: {threads_idle} idle, {threads_subscribed} with \
         {SUBSCRIBERS} subscribers",
        delivery.saturating_sub(inserted),
        mib(rss_idle),
        mib(rss_subscribed),
        (rss_subscribed.saturating_sub(rss_idle)) as f64 / SUBSCRIBERS as f64,
        mib(rss_delivered),
        mib(rss_closed),
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_query_too_many_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(
        Options {
            data_dir: dir.path(),
            broker_port: free_port(),
            broker_in_memory: true,
        },
        &["--max-push-queries", "3"],
    );
    server.wait_for("brook-server ready");
    let c = client();
    let api = server.api.clone();
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM S (ID INT KEY, V STRING) \
         WITH (KAFKA_TOPIC='s', PARTITIONS=1, VALUE_FORMAT='JSON');",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (first, _) = open(&c, &api, "SELECT * FROM S EMIT CHANGES;").await;
    let (_second, _) = open(&c, &api, "SELECT V FROM S EMIT CHANGES;").await;
    // An earliest-offset query (a consumer of its own) counts as well.
    let resp = post_query(
        &c,
        &api,
        "SELECT * FROM S EMIT CHANGES;",
        json!({"auto.offset.reset": "earliest"}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let _third = resp;

    let resp = post_query(&c, &api, "SELECT * FROM S EMIT CHANGES;", json!({})).await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
    assert_eq!(
        body,
        json!({
            "@type": "generic_error",
            "error_code": 40003,
            "message": "Maximum number of push queries exceeded",
        })
    );
    // `/query` answers with ksqlDB's statement error, naming the setting and the numbers.
    let resp = c
        .post(format!("{api}/query"))
        .header("Content-Type", "application/vnd.ksql.v1+json")
        .body(json!({"ksql": "SELECT * FROM S EMIT CHANGES;", "streamsProperties": {}}).to_string())
        .send()
        .await
        .expect("/query answers");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
    assert_eq!(body["error_code"], 40001, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("'ksql.max.push.queries'")
            && message.contains("Current push query count: 3. Configured limit: 3."),
        "{message}"
    );

    // One ends; there is room again.
    drop(first);
    wait_metric(&c, &api, "brook_push_queries_active", 2.0).await;
    let (_fourth, names) = open(&c, &api, "SELECT * FROM S EMIT CHANGES;").await;
    assert_eq!(names, ["ID", "V"]);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_cut_off_and_the_others_go_on() {
    const ROWS: usize = 1000;
    const CHUNK: usize = 10;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(
        Options {
            data_dir: dir.path(),
            broker_port: free_port(),
            broker_in_memory: true,
        },
        &["--push-query-buffer", "50"],
    );
    server.wait_for("brook-server ready");
    let c = client();
    let api = server.api.clone();
    let (status, body) = ksql(
        &c,
        &api,
        "CREATE STREAM BIG (N INT, V STRING) \
         WITH (KAFKA_TOPIC='big', PARTITIONS=1, VALUE_FORMAT='JSON');",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (mut reader, _) = open(&c, &api, "SELECT N, V FROM BIG EMIT CHANGES;").await;
    let (mut stalled, _) = open(&c, &api, "SELECT N, V FROM BIG EMIT CHANGES;").await;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut next = 0;
        while next < ROWS {
            let line = reader
                .next_within(Duration::from_secs(120))
                .await
                .unwrap_or_else(|| panic!("the reader ended after {next} rows"));
            let row: Vec<Value> = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("the reader got {line:.200} after {next} rows ({e})"));
            assert_eq!(row[0], json!(next), "rows in order");
            next += 1;
            let _ = progress_tx.send(next);
        }
        reader
    });
    // Rows of 32 KiB, written a chunk at a time once the reader has the chunk before: it
    // is never more than two chunks behind, while what the stalled client leaves unread
    // fills the socket buffers between it and the server, and then its queue.
    let filler = "x".repeat(32 * 1024);
    let producer: BaseProducer = brook_runtime::kafka::producer_config(&server.bootstrap)
        .create()
        .expect("producer");
    for chunk in 0..ROWS / CHUNK {
        for n in chunk * CHUNK..(chunk + 1) * CHUNK {
            let value = json!({"N": n, "V": filler}).to_string();
            producer
                .send(BaseRecord::<(), _>::to("big").payload(&value))
                .map_err(|(e, _)| e)
                .expect("queued");
        }
        producer.flush(Duration::from_secs(30)).expect("flushed");
        tokio::time::timeout(
            Duration::from_secs(120),
            progress.wait_for(|n| *n >= chunk * CHUNK),
        )
        .await
        .expect("the reader keeps up")
        .expect("the reader is running");
    }
    let _reader = reading.await.expect("the reading subscriber got every row");
    wait_metric(&c, &api, "brook_push_queries_cut_off_total", 1.0).await;
    // The cut-off query no longer counts as running; the reader still does.
    wait_metric(&c, &api, "brook_push_queries_active", 1.0).await;

    // Reading again, the stalled client finds the rows it had not read (in order, from
    // the first) and then why it was disconnected, and its response ends.
    let mut next = 0;
    let error = loop {
        let line = stalled
            .next_within(Duration::from_secs(60))
            .await
            .expect("a row or the error");
        match serde_json::from_str::<Value>(&line).expect("JSON") {
            Value::Array(row) => {
                assert_eq!(row[0], json!(next), "rows in order");
                next += 1;
            }
            error => break error,
        }
    };
    assert!(next < ROWS, "the stalled client got every row");
    assert_eq!(error["@type"], "generic_error", "{error}");
    let message = error["message"].as_str().expect("message");
    assert!(
        message.starts_with("Dropped rows: ") && message.contains("50 rows behind BIG"),
        "{message}"
    );
    assert_eq!(stalled.next_within(Duration::from_secs(30)).await, None);
    eprintln!("stalled subscriber: cut off after {next} of {ROWS} rows: {message}");
    server.stop();
}
