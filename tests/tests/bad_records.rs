//! Records that do not decode are logged, counted and skipped; the query keeps running and
//! every good record is delivered. With ksqlDB's processing-log settings each skipped
//! record is also an entry of the processing log topic, read by `KSQL_PROCESSING_LOG`.

use std::time::Duration;

use brook_runtime::kafka::{consumer_config, producer_config};
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rdkafka::Message;
use brook_server::engine::Engine;

const GOOD: usize = 2_000;
const BAD: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_skipped_and_counted() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.bootstrap_servers();
    let engine = Engine::new(&bootstrap).expect("engine");
    for k in [
        brook_server::engine::PROCESSING_TOPIC_AUTO_CREATE,
        brook_server::engine::PROCESSING_STREAM_AUTO_CREATE,
    ] {
        engine.set_config(k, "true").await;
    }
    let log_topic = engine
        .configure_processing_log()
        .await
        .expect("processing log")
        .expect("a processing log topic");
    engine
        .create_processing_log_stream()
        .await
        .expect("KSQL_PROCESSING_LOG");
    assert!(engine
        .catalog()
        .await
        .sources
        .contains_key("KSQL_PROCESSING_LOG"));
    engine
        .execute(
            "CREATE STREAM readings (id STRING KEY, v INT) WITH (KAFKA_TOPIC='readings', \
             VALUE_FORMAT='JSON', PARTITIONS=2);
             CREATE STREAM copies AS SELECT id, v FROM readings;",
        )
        .await
        .expect("statements");
    // The embedded broker has answered this test's idempotent producer with
    // OutOfOrderSequenceNumber under load (docs/embedded-broker.md), which fails the send;
    // the test is about Brook's decoding, so its own producer is not idempotent.
    let producer: FutureProducer = producer_config(&bootstrap)
        .set("enable.idempotence", "false")
        .create()
        .expect("producer");
    for i in 0..GOOD + BAD {
        let key = format!("k{}", i % 10);
        // Every third record is not JSON, or not an INT where one is due.
        let value = if i % 3 == 2 && i / 3 < BAD {
            if i % 2 == 0 {
                "{not json".to_string()
            } else {
                "{\"v\": \"not a number\"}".to_string()
            }
        } else {
            format!("{{\"v\": {i}}}")
        };
        producer
            .send(
                FutureRecord::to("readings").key(&key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
    let consumer: StreamConsumer = consumer_config(&bootstrap, "copies-reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&["COPIES"]).expect("subscribe");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut got = 0;
    while got < GOOD {
        tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {got} of {GOOD} good records came through"))
            .expect("consume");
        got += 1;
    }
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
    assert!(extra.is_err(), "a bad record produced output");
    let mut errors = 0;
    for _ in 0..100 {
        let q = engine.queries().await;
        assert_eq!(q.len(), 1);
        assert!(q[0].running, "the query stopped");
        errors = q[0].stats.errors;
        if errors == BAD as u64 && q[0].stats.records_in == (GOOD + BAD) as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(errors, BAD as u64, "each bad record is counted once");

    // One processing log entry per bad record, naming its topic, partition and offset.
    let log: StreamConsumer = consumer_config(&bootstrap, "log-reader")
        .create()
        .expect("consumer");
    log.subscribe(&[log_topic.as_str()]).expect("subscribe");
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < BAD {
        let m = tokio::time::timeout_at(deadline, log.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {BAD} log entries", seen.len()))
            .expect("consume");
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("entry")).expect("JSON");
        let e = &v["message"]["deserializationError"];
        assert_eq!(v["message"]["type"], 0, "{v}");
        assert_eq!(e["topic"], "readings", "{v}");
        assert_eq!(e["target"], "value", "{v}");
        assert!(
            v["logger"]
                .as_str()
                .is_some_and(|l| l.starts_with("processing.CSAS_COPIES")),
            "{v}"
        );
        let at = (
            e["partition"].as_i64().expect("partition"),
            e["offset"].as_i64().expect("offset"),
        );
        assert!(seen.insert(at), "{at:?} logged twice");
    }
    engine.shutdown().await;
}
