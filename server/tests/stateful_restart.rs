//! A windowed aggregation survives SIGKILL: orders per customer per one-minute tumbling
//! window (COUNT, SUM); the server is killed mid-stream and started again on the same data
//! directory (its embedded broker too). Updates may repeat (at-least-once), but every
//! window's last value must equal what an uninterrupted run computes: no input counted
//! twice, none lost, because state is restored from the query's changelog and the input
//! resumes at the offsets that state corresponds to.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
use brook_runtime::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use brook_runtime::rdkafka::Message;

mod common;
use common::{client, free_port, ksql, Options, Server};

const ORDERS: usize = 20_000;
const CUSTOMERS: usize = 40;

/// The first window's start: ten minutes ago, on a minute. Recent, because Kafka (and the
/// embedded broker) deletes records older than the topic's retention by their timestamps.
fn base_ts() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        now - now % 60_000 - 10 * 60_000
    })
}

/// (customer, window start) → (count, sum).
type Windows = BTreeMap<(String, i64), (i64, f64)>;

fn order(i: usize) -> (String, String, i64) {
    let customer = format!("c{}", i % CUSTOMERS);
    // 30 ms apart: ten one-minute windows in all, in timestamp order (nothing is late).
    let ts = base_ts() + i as i64 * 30;
    let value = format!(
        "{{\"customerId\":\"{customer}\",\"total\":{},\"createdAt\":{ts}}}",
        i % 100
    );
    (format!("o{i}"), value, ts)
}

fn produce(bootstrap: &brook_runtime::kafka::Kafka, range: std::ops::Range<usize>) {
    let producer: BaseProducer = brook_runtime::kafka::producer_config(bootstrap)
        .create()
        .expect("producer");
    for i in range {
        let (key, value, ts) = order(i);
        loop {
            match producer.send(
                BaseRecord::to("orders")
                    .key(&key)
                    .payload(&value)
                    .timestamp(ts),
            ) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(brook_runtime::rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "produce: {e}"
                    );
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flushed");
}

/// (customer, window start) → (count, sum), as an uninterrupted run ends.
fn expected() -> Windows {
    let mut out = BTreeMap::new();
    for i in 0..ORDERS {
        let ts = base_ts() + i as i64 * 30;
        let e = out
            .entry((format!("c{}", i % CUSTOMERS), ts - ts % 60_000))
            .or_insert((0, 0.0));
        e.0 += 1;
        e.1 += (i % 100) as f64;
    }
    out
}

/// Reads the sink topic from the start until every window has its final value (or the
/// deadline passes); returns each window's latest value and how many records were read.
fn read_finals(bootstrap: &brook_runtime::kafka::Kafka, want: &Windows) -> (Windows, usize) {
    let consumer: BaseConsumer = brook_runtime::kafka::consumer_config(bootstrap, "checker")
        .create()
        .expect("consumer");
    consumer.subscribe(&["PER_CUSTOMER"]).expect("subscribe");
    let mut got = BTreeMap::new();
    let mut records = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline && &got != want {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("record");
        records += 1;
        // A time-windowed KAFKA key: the customer, then the window start (8 bytes).
        let key = m.key().expect("key");
        let (name, start) = key.split_at(key.len() - 8);
        let start = i64::from_be_bytes(start.try_into().expect("8 bytes"));
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("value")).expect("JSON value");
        got.insert(
            (String::from_utf8_lossy(name).to_string(), start),
            (v["N"].as_i64().expect("N"), v["S"].as_f64().expect("S")),
        );
    }
    (got, records)
}

/// Waits until query `id`'s changelog holds state followed by a position marker in one of
/// its partitions: state that restarts restore from. (A kill right after the first result
/// can come before the first state is recorded; each partition's first marker, which only
/// says where its input started, comes before any state.)
fn changelog_marked(bootstrap: &brook_runtime::kafka::Kafka, id: &str) {
    let topic = brook_runtime::changelog::topic_name(id);
    let consumer: BaseConsumer = brook_runtime::kafka::consumer_config(bootstrap, "marked")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic.as_str()]).expect("subscribe");
    let mut state = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if m.key() != Some(brook_runtime::changelog::MARKER_KEY) {
                state.insert(m.partition());
            } else if state.contains(&m.partition()) {
                return;
            }
        }
    }
    panic!("no state and position marker in {topic} within 60 s");
}

/// Waits for the first result record.
fn first_result(bootstrap: &brook_runtime::kafka::Kafka) {
    let consumer: BaseConsumer = brook_runtime::kafka::consumer_config(bootstrap, "first")
        .create()
        .expect("consumer");
    consumer.subscribe(&["PER_CUSTOMER"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            return;
        }
    }
    panic!("no result within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_aggregation_is_exact_after_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_port = free_port();
    let options = || Options {
        data_dir: dir.path(),
        broker_port,
        broker_in_memory: false,
    };
    let server = Server::start(options());
    server.wait_for("brook-server ready");
    let http = client();
    let (status, body) = ksql(
        &http,
        &server.api,
        "CREATE STREAM orders (orderId STRING KEY, customerId STRING, total DOUBLE, \
         createdAt BIGINT) WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=2, \
         TIMESTAMP='createdAt');
         CREATE TABLE per_customer AS SELECT customerId, COUNT(*) AS n, SUM(total) AS s \
         FROM orders WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY customerId EMIT CHANGES;",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body[1]["commandStatus"]["queryId"]
        .as_str()
        .expect("query id")
        .to_string();

    let bootstrap = server.bootstrap.clone();
    let half = ORDERS / 2;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&b, 0..half))
        .await
        .expect("producer thread");
    // Mid-stream: the query has started writing results but has not caught up.
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        first_result(&b);
        changelog_marked(&b, &id);
    })
    .await
    .expect("reader thread");
    server.kill();

    let server = Server::start(options());
    let seen = server.wait_for("brook-server ready");
    if !seen.iter().any(|l| l.contains("state restored from")) {
        server.wait_for("state restored from");
    }
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&b, half..ORDERS))
        .await
        .expect("producer thread");
    let want = expected();
    let b = bootstrap.clone();
    let w = want.clone();
    let (got, records) = tokio::task::spawn_blocking(move || read_finals(&b, &w))
        .await
        .expect("reader thread");
    // Past the test harness's capture, so CI's log carries the figures.
    let _ = writeln!(
        std::io::stderr(),
        "stateful restart: {ORDERS} orders, {} windows, {records} result records read",
        want.len()
    );
    let wrong: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .take(10)
        .map(|(k, v)| format!("{k:?}: want {v:?}, got {:?}", got.get(k)))
        .collect();
    assert!(
        wrong.is_empty(),
        "windows differ:\n{}\nsome of what was read: {:?}",
        wrong.join("\n"),
        got.iter().take(5).collect::<Vec<_>>()
    );
    // The restarted server answers pull queries from the restored table: every window of
    // a customer, including those finished before the kill.
    let (status, lines) = pull(
        &http,
        &server.api,
        "SELECT * FROM per_customer WHERE customerId = 'c1';",
    )
    .await;
    assert_eq!(status, 200, "{lines:?}");
    let mut windows: Vec<(i64, i64, f64)> = lines[1..]
        .iter()
        .map(|r| {
            (
                r[1].as_i64().expect("WINDOWSTART"),
                r[3].as_i64().expect("N"),
                r[4].as_f64().expect("S"),
            )
        })
        .collect();
    windows.sort_by_key(|w| w.0);
    let expect: Vec<(i64, i64, f64)> = want
        .iter()
        .filter(|((c, _), _)| c == "c1")
        .map(|((_, start), (n, s))| (*start, *n, *s))
        .collect();
    assert_eq!(windows, expect, "pull query after the restart: {lines:?}");
    server.stop();
}

async fn pull(http: &reqwest::Client, api: &str, sql: &str) -> (u16, Vec<serde_json::Value>) {
    let resp = http
        .post(format!("{api}/query-stream"))
        .body(serde_json::json!({"sql": sql, "properties": {}}).to_string())
        .send()
        .await
        .expect("/query-stream answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (status, lines)
}
