//! An expression that fails on some records does not stop a query over Kafka, as in
//! ksqlDB: those records' results carry NULL where it failed, every other result is
//! exact, the query keeps running, and each failing row is one entry of the processing
//! log topic (type 1, RECORD_PROCESSING_ERROR, naming the record's topic, partition and
//! offset), counted in the query's errors. The failing expression is FROM_BYTES with an
//! encoding read from the record; `'bogus'` is none (ksqlDB's FROM_BYTES throws on it).
//! The records arrive in batches of many, so the failing rows share batches with good ones.

use std::collections::BTreeSet;

use brook_runtime::kafka::producer_config;
use brook_runtime::rdkafka::producer::FutureProducer;
use brook_server::engine::Engine;
use brook_tests::{read_expecting, read_until, ByPartition, Rec};
use serde_json::{json, Value};

const RECORDS: usize = 2_000;

/// Every seventh record's encoding is not one.
fn failing(i: usize) -> bool {
    i % 7 == 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_rows_are_null_and_logged_and_the_query_goes_on() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let engine = Engine::new(&bootstrap).expect("engine");
    engine
        .set_config(brook_server::engine::PROCESSING_TOPIC_AUTO_CREATE, "true")
        .await;
    let log_topic = engine
        .configure_processing_log()
        .await
        .expect("processing log")
        .expect("a processing log topic");
    engine
        .execute(
            "CREATE STREAM readings (id STRING KEY, s STRING, enc STRING, v INT) \
               WITH (KAFKA_TOPIC='readings', VALUE_FORMAT='JSON', PARTITIONS=2);
             CREATE STREAM decoded AS SELECT id, FROM_BYTES(TO_BYTES(s, 'utf8'), enc) AS b, v \
               FROM readings;",
        )
        .await
        .expect("statements");
    // Not idempotent: see tests/tests/bad_records.rs and docs/embedded-broker.md.
    let producer: FutureProducer = producer_config(&bootstrap)
        .set("enable.idempotence", "false")
        .create()
        .expect("producer");
    let mut want: ByPartition<(i64, String, Value)> = ByPartition::new();
    let mut bad = BTreeSet::new();
    let sends = (0..RECORDS).map(|i| {
        let key = format!("k{}", i % 10);
        let enc = if failing(i) { "bogus" } else { "hex" };
        let value = json!({"s": "ab", "enc": enc, "v": i}).to_string();
        let producer = &producer;
        async move {
            let (partition, offset) = brook_tests::send(producer, "readings", &key, &value).await;
            (i, key, partition, offset)
        }
    });
    // Sent together, so the query reads them in batches of many.
    for (i, key, partition, offset) in futures::future::join_all(sends).await {
        let b = if failing(i) {
            bad.insert((partition, offset));
            Value::Null
        } else {
            json!("6162")
        };
        want.entry(partition)
            .or_default()
            .push((offset, key, json!({ "B": b, "V": i })));
    }
    let want: ByPartition<(String, Value)> = want
        .into_iter()
        .map(|(p, mut rows)| {
            rows.sort_by_key(|r| r.0);
            (p, rows.into_iter().map(|(_, k, v)| (k, v)).collect())
        })
        .collect();
    brook_tests::wait_processed(&engine, "DECODED", RECORDS as u64).await;
    let got = read_expecting(&bootstrap, "DECODED", &want, |r| (r.key_text(), r.json())).await;
    brook_tests::assert_same(
        &got,
        &want,
        "DECODED: every record's result, NULL where FROM_BYTES failed",
    );
    let q = engine.queries().await;
    assert!(
        q[0].running && q[0].error.is_none(),
        "the query stopped: {q:?}"
    );
    assert_eq!(
        (
            q[0].stats.records_in,
            q[0].stats.records_out,
            q[0].stats.errors
        ),
        (RECORDS as u64, RECORDS as u64, bad.len() as u64),
        "every record has its result; each failing row is counted once"
    );

    // One processing log entry per failing row, naming its record.
    let entries = bad.len();
    let log = read_until(&bootstrap, &log_topic, move |got| {
        got.values().map(Vec::len).sum::<usize>() >= entries
    })
    .await;
    let mut logged = BTreeSet::new();
    for v in log.values().flatten().map(Rec::json) {
        let e = &v["message"]["recordProcessingError"];
        assert_eq!(v["message"]["type"], 1, "{v}");
        assert_eq!(v["logger"], format!("processing.{}", q[0].id), "{v}");
        assert_eq!(e["topic"], "readings", "{v}");
        let message = e["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains("for column B with index 1"), "{v}");
        assert!(
            e["cause"][0].as_str().is_some_and(|c| c.contains("bogus")),
            "{v}"
        );
        let at = (
            e["partition"].as_i64().and_then(|p| i32::try_from(p).ok()),
            e["offset"].as_i64(),
        );
        let (Some(partition), Some(offset)) = at else {
            panic!("an entry without partition and offset: {v}");
        };
        assert!(logged.insert((partition, offset)), "{at:?} logged twice");
    }
    assert!(logged == bad, "the log names exactly the failing rows");
    engine.shutdown().await;
}
