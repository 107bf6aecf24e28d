//! A stream–table join over Kafka: orders enriched with their customer's current row.

use std::collections::HashMap;
use std::time::Duration;

use brook_runtime::kafka::{consumer_config, producer_config};
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_server::engine::Engine;

async fn send(p: &FutureProducer, topic: &str, key: &str, value: &str) {
    p.send(
        FutureRecord::to(topic).key(key).payload(value),
        Duration::from_secs(30),
    )
    .await
    .map_err(|(e, _)| e)
    .expect("delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_join_customers() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let engine = Engine::new(&bootstrap).expect("engine");
    engine
        .execute(
            "CREATE TABLE customers (id STRING PRIMARY KEY, name STRING) \
               WITH (KAFKA_TOPIC='customers', VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE STREAM orders (orderId STRING KEY, customerId STRING, total DOUBLE) \
               WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE STREAM enriched AS SELECT o.customerId AS cid, o.orderId, c.name, o.total \
               FROM orders o LEFT JOIN customers c ON o.customerId = c.id;",
        )
        .await
        .expect("statements");
    let p: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    send(&p, "customers", "c1", r#"{"name":"Alice"}"#).await;
    send(&p, "customers", "c2", r#"{"name":"Bob"}"#).await;
    // The orders must find the customers: they go in once the query has read both rows.
    brook_tests::wait_processed(&engine, "ENRICHED", 2).await;
    send(&p, "orders", "o1", r#"{"customerId":"c1","total":10.0}"#).await;
    send(&p, "orders", "o2", r#"{"customerId":"c2","total":20.0}"#).await;
    send(&p, "orders", "o3", r#"{"customerId":"c9","total":30.0}"#).await;

    let consumer: StreamConsumer = consumer_config(&bootstrap, "enriched-reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&["ENRICHED"]).expect("subscribe");
    let mut got = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < 3 {
        let m = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} joined rows: {got:?}", got.len()))
            .expect("consume");
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("value")).expect("JSON");
        got.insert(
            v["ORDERID"].as_str().unwrap_or_default().to_string(),
            (key, v["NAME"].clone()),
        );
    }
    assert_eq!(got["o1"], ("c1".to_string(), serde_json::json!("Alice")));
    assert_eq!(got["o2"], ("c2".to_string(), serde_json::json!("Bob")));
    assert_eq!(
        got["o3"],
        ("c9".to_string(), serde_json::Value::Null),
        "LEFT JOIN pads"
    );
    // One row per order and nothing else: once the query has counted all five records,
    // their outputs are all in ENRICHED.
    brook_tests::wait_processed(&engine, "ENRICHED", 5).await;
    assert_eq!(
        brook_tests::record_count(&bootstrap, "ENRICHED").await,
        3,
        "table changes emit nothing"
    );
    engine.shutdown().await;
}

async fn send_at(p: &FutureProducer, topic: &str, key: &str, value: &str, ts: i64) {
    p.send(
        FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .timestamp(ts),
        Duration::from_secs(30),
    )
    .await
    .map_err(|(e, _)| e)
    .expect("delivered");
}

/// A stream–stream join over Kafka: each shipment joins the orders of its key placed at
/// most an hour before it; an order shipped too late, and one never shipped, join nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_join_shipments_within_window() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let engine = Engine::new(&bootstrap).expect("engine");
    engine
        .execute(
            "CREATE STREAM orders (id STRING KEY, total DOUBLE) \
               WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE STREAM shipments (id STRING KEY, carrier STRING) \
               WITH (KAFKA_TOPIC='shipments', VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE STREAM shipped AS SELECT o.id AS id, o.total, s.carrier \
               FROM orders o JOIN shipments s WITHIN (0 SECONDS, 1 HOUR) ON o.id = s.id;",
        )
        .await
        .expect("statements");
    let p: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let hour = 3_600_000;
    let t0 = 1_700_000_000_000;
    send_at(&p, "orders", "o1", r#"{"total":10.0}"#, t0).await;
    send_at(&p, "orders", "o2", r#"{"total":20.0}"#, t0 + 1).await;
    send_at(&p, "orders", "o3", r#"{"total":30.0}"#, t0 + 2).await;
    send_at(&p, "shipments", "o1", r#"{"carrier":"ups"}"#, t0 + hour / 2).await;
    // Two hours after the order: outside the window.
    send_at(&p, "shipments", "o2", r#"{"carrier":"dhl"}"#, t0 + 2 * hour).await;
    // A shipment before its order does not count either (the window opens at the order).
    send_at(
        &p,
        "shipments",
        "o4",
        r#"{"carrier":"fedex"}"#,
        t0 + 3 * hour,
    )
    .await;
    send_at(&p, "orders", "o4", r#"{"total":40.0}"#, t0 + 3 * hour + 1).await;
    // A marker pair that does join, produced last: once it arrives, everything before
    // it has been processed.
    send_at(&p, "orders", "end", r#"{"total":0.0}"#, t0 + 4 * hour).await;
    send_at(
        &p,
        "shipments",
        "end",
        r#"{"carrier":"none"}"#,
        t0 + 4 * hour,
    )
    .await;

    let consumer: StreamConsumer = consumer_config(&bootstrap, "shipped-reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&["SHIPPED"]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("joined rows so far: {got:?}"))
            .expect("consume");
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("value")).expect("JSON");
        let ts = m.timestamp().to_millis().unwrap_or_default();
        if key == "end" {
            break;
        }
        got.push((key, v["CARRIER"].clone(), ts));
    }
    assert_eq!(
        got,
        vec![("o1".to_string(), serde_json::json!("ups"), t0 + hour / 2)],
        "only o1 shipped within the hour; the result has the later timestamp"
    );
    engine.shutdown().await;
}
