//! The high-value-orders alert, end to end over the embedded broker: orders produced by a
//! plain rdkafka producer, a persistent query filtering them, and a plain consumer reading
//! the result topic.

use std::collections::HashMap;
use std::time::Duration;

use brook_runtime::kafka::{consumer_config, producer_config};
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use brook_server::engine::{Engine, Executed};

const ORDERS: usize = 100_000;
const KEYS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_value_orders_alert() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let engine = Engine::new(&bootstrap).expect("engine");
    // One worker per input partition, whatever this machine's cores: per-key order and
    // exactly-the-expected-records must hold across parallel workers.
    engine
        .set_config(brook_server::engine::NUM_STREAM_THREADS, "4")
        .await;
    engine
        .execute(
            "CREATE STREAM orders (orderId STRING KEY, customerId STRING, items ARRAY<STRING>, \
             total DOUBLE, createdAt BIGINT) WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', \
             PARTITIONS=4, TIMESTAMP='createdAt');",
        )
        .await
        .expect("create stream");
    let started = engine
        .execute(
            "CREATE STREAM big_orders AS SELECT orderId, customerId, total FROM orders \
             WHERE total > 1000 EMIT CHANGES;",
        )
        .await
        .expect("create stream as select");
    assert!(matches!(&started[0], Executed::QueryStarted { sink, .. } if sink == "BIG_ORDERS"));

    // Orders from a plain producer; the record timestamp differs from createdAt so the
    // test sees which one ROWTIME came from.
    let producer: FutureProducer = producer_config(&bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()
        .expect("producer");
    let mut expected: HashMap<String, Vec<(String, f64, i64)>> = HashMap::new();
    let mut pending = Vec::with_capacity(ORDERS);
    for i in 0..ORDERS {
        let order_id = format!("order-{}", i % KEYS);
        let total = ((i * 7919) % 2000) as f64 + 0.5;
        let created = 1_700_000_000_000i64 + i as i64;
        let value = serde_json::json!({
            "customerId": format!("c{}", i % 97),
            "items": ["a", "b"],
            "total": total,
            "createdAt": created,
        })
        .to_string();
        if total > 1000.0 {
            expected.entry(order_id.clone()).or_default().push((
                format!("c{}", i % 97),
                total,
                created,
            ));
        }
        let queued = producer
            .send_result(
                FutureRecord::to("orders")
                    .key(&order_id)
                    .payload(&value)
                    .timestamp(created + 5),
            )
            .map_err(|(e, _)| e)
            .expect("queued");
        pending.push(queued);
        if pending.len() >= 5_000 {
            for p in pending.drain(..) {
                p.await.expect("delivered").map_err(|(e, _)| e).expect("ok");
            }
        }
    }
    for p in pending.drain(..) {
        p.await.expect("delivered").map_err(|(e, _)| e).expect("ok");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let want: usize = expected.values().map(Vec::len).sum();

    let consumer: StreamConsumer = consumer_config(&bootstrap, "alert-reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&["BIG_ORDERS"]).expect("subscribe");
    let mut got: HashMap<String, Vec<(String, f64, i64)>> = HashMap::new();
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while count < want {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {count} of {want} alerts arrived"))
            .expect("consume");
        let key = String::from_utf8_lossy(msg.key().expect("keyed")).to_string();
        let v: serde_json::Value =
            serde_json::from_slice(msg.payload().expect("a value")).expect("JSON value");
        assert_eq!(
            v.as_object().map(|o| o.len()),
            Some(2),
            "value columns: {v}"
        );
        got.entry(key).or_default().push((
            v["CUSTOMERID"].as_str().unwrap_or_default().to_string(),
            v["TOTAL"].as_f64().unwrap_or_default(),
            msg.timestamp().to_millis().unwrap_or_default(),
        ));
        count += 1;
    }
    assert_eq!(got.len(), expected.len());
    for (k, want) in &expected {
        assert_eq!(
            got.get(k),
            Some(want),
            "alerts for {k}, in order, with createdAt as timestamp"
        );
    }
    // Nothing beyond the expected records: once the query has counted every order (it
    // counts a batch once its outputs are acknowledged), BIG_ORDERS holds all it will.
    brook_tests::wait_processed(&engine, "BIG_ORDERS", ORDERS as u64).await;
    let queries = engine.queries().await;
    assert_eq!(queries.len(), 1);
    assert_eq!(
        queries[0].stats.records_in, ORDERS as u64,
        "each order read once"
    );
    assert_eq!(
        brook_tests::record_count(&bootstrap, "BIG_ORDERS").await,
        want as i64,
        "BIG_ORDERS has records beyond the expected alerts"
    );
    engine.shutdown().await;
}
