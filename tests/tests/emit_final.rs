//! EMIT FINAL over the embedded broker: a tumbling window's row leaves once, when stream
//! time passes its end — moved on by a record of a later window, or, when the input goes
//! quiet, by the idle timeout (`brook.emit.final.idle.timeout.ms`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brook_runtime::kafka::{consumer_config, producer_config};
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::message::{BorrowedMessage, Message};
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_server::engine::Engine;

const WINDOW_MS: i64 = 10_000;

/// A window boundary a minute back: recent enough for the broker's time retention.
fn base() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    now - now % WINDOW_MS - 6 * WINDOW_MS
}

async fn produce(producer: &FutureProducer, key: &str, timestamp: i64) {
    producer
        .send(
            FutureRecord::to("clicks")
                .key(key)
                .payload("{\"V\":1}")
                .timestamp(timestamp),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
}

/// A final row: key, window start (the key's last 8 bytes), count, record timestamp.
fn row(m: &BorrowedMessage<'_>) -> (String, i64, i64, i64) {
    let key = m.key().expect("keyed");
    let (k, start) = key.split_at(key.len() - 8);
    let start = i64::from_be_bytes(start.try_into().expect("8 bytes"));
    let v: serde_json::Value = serde_json::from_slice(m.payload().expect("value")).expect("JSON");
    (
        String::from_utf8_lossy(k).to_string(),
        start,
        v["N"].as_i64().expect("N"),
        m.timestamp().to_millis().expect("timestamp"),
    )
}

/// [`row`] of a record read back by `brook_tests`.
fn final_row(r: &brook_tests::Rec) -> (String, i64, i64, i64) {
    let key = r.key.as_deref().unwrap_or_default();
    let (k, start) = key.split_at(key.len().saturating_sub(8));
    let start = i64::from_be_bytes(start.try_into().unwrap_or_default());
    (
        String::from_utf8_lossy(k).to_string(),
        start,
        r.json()["N"].as_i64().unwrap_or(-1),
        r.timestamp,
    )
}

async fn next_row(consumer: &StreamConsumer, within: Duration) -> Option<(String, i64, i64, i64)> {
    match tokio::time::timeout(within, consumer.recv()).await {
        Ok(m) => Some(row(&m.expect("consume"))),
        Err(_) => None,
    }
}

/// An engine with the stream, and the EMIT FINAL table over it (idle timeout `idle_ms`).
async fn setup(
    bootstrap: &brook_runtime::kafka::Kafka,
    idle_ms: u64,
) -> (std::sync::Arc<Engine>, StreamConsumer) {
    let engine = Engine::new(bootstrap).expect("engine");
    engine
        .execute(&format!(
            "SET 'brook.emit.final.idle.timeout.ms'='{idle_ms}';
             CREATE STREAM clicks (id STRING KEY, v INT) WITH (KAFKA_TOPIC='clicks', \
             VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE TABLE counts AS SELECT id, COUNT(*) AS n FROM clicks \
             WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY id EMIT FINAL;"
        ))
        .await
        .expect("statements");
    let consumer: StreamConsumer = consumer_config(bootstrap, "counts-reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&["COUNTS"]).expect("subscribe");
    (engine, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_window_record_closes_the_window() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    // Idle closing off: only a record can move stream time on.
    let (engine, consumer) = setup(&bootstrap, 0).await;
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let base = base();
    for t in [1_000, 2_000, 3_000] {
        produce(&producer, "a", base + t).await;
    }
    produce(&producer, "a", base + WINDOW_MS + 500).await;
    // The first row is the closed window's, with all three records: a row that had left
    // before its window closed would be read first.
    let got = next_row(&consumer, brook_tests::DEADLINE).await;
    assert_eq!(got, Some(("a".to_string(), base, 3, base + 3_000)));
    // The second window stays open: nothing moves stream time past its end. Once the
    // query has counted the four records, every output they caused is in COUNTS.
    brook_tests::wait_processed(&engine, "COUNTS", 4).await;
    assert_eq!(
        brook_tests::record_count(&bootstrap, "COUNTS").await,
        1,
        "COUNTS has a row besides the first window's"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_input_closes_the_last_window() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let idle = Duration::from_millis(1_500);
    let (engine, consumer) = setup(&bootstrap, idle.as_millis() as u64).await;
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let base = base();
    produce(&producer, "a", base + 1_000).await;
    produce(&producer, "b", base + 2_000).await;
    // The next window's record, a second before that window ends.
    produce(&producer, "a", base + 2 * WINDOW_MS - 1_000).await;
    let produced = Instant::now();
    let mut first = vec![
        next_row(&consumer, brook_tests::DEADLINE).await,
        next_row(&consumer, brook_tests::DEADLINE).await,
    ];
    first.sort();
    assert_eq!(
        first,
        vec![
            Some(("a".to_string(), base, 1, base + 1_000)),
            Some(("b".to_string(), base, 1, base + 2_000)),
        ]
    );
    // Nothing more arrives, yet the second window closes once the input has been quiet
    // for the idle timeout (stream time moves on by the idle time, past its end).
    let last = next_row(&consumer, brook_tests::DEADLINE).await;
    let waited = produced.elapsed();
    assert_eq!(
        last,
        Some((
            "a".to_string(),
            base + WINDOW_MS,
            1,
            base + 2 * WINDOW_MS - 1_000
        ))
    );
    assert!(
        waited >= idle - Duration::from_millis(100),
        "the last window closed after {waited:?}, before the idle timeout"
    );
    // Each window leaves once. The marker: a record a second before the end of a later
    // window, which the idle timeout closes in turn; once its row is there, COUNTS holds
    // every row the idle closing wrote before it.
    let marker_at = base + 4 * WINDOW_MS - 1_000;
    produce(&producer, "z", marker_at).await;
    let marker = ("z".to_string(), base + 3 * WINDOW_MS, 1, marker_at);
    let wanted = marker.clone();
    let all = brook_tests::read_until(&bootstrap, "COUNTS", move |got| {
        got.values().flatten().any(|r| final_row(r) == wanted)
    })
    .await;
    let mut rows: Vec<_> = all.values().flatten().map(final_row).collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("a".to_string(), base, 1, base + 1_000),
            (
                "a".to_string(),
                base + WINDOW_MS,
                1,
                base + 2 * WINDOW_MS - 1_000
            ),
            ("b".to_string(), base, 1, base + 2_000),
            marker,
        ]
    );
    engine.shutdown().await;
}
