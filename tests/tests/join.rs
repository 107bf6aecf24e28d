//! A stream–table join over Kafka: orders enriched with their customer's current row.

use std::collections::HashMap;
use std::time::Duration;

use brook_runtime::kafka::{consumer_config, partition_for_key, producer_config};
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

/// One joined row as read back: its key's bytes as text (`None`: no key) and its value.
type Keyed = (Option<String>, serde_json::Value);

/// The records of `rows` (key, value) where Kafka's default partitioner puts them in a
/// topic of `partitions`: murmur2 of the serialized key, as ksqlDB's producer does.
fn by_key_partition(
    rows: &[(&str, serde_json::Value)],
    partitions: i32,
) -> brook_tests::ByPartition<Keyed> {
    let mut out = brook_tests::ByPartition::new();
    for (key, value) in rows {
        let partition = partition_for_key(key.as_bytes(), partitions);
        out.entry(partition)
            .or_insert_with(Vec::new)
            .push((Some(key.to_string()), value.clone()));
    }
    out
}

/// PARTITION BY after a join (issue 17): each result is keyed by the PARTITION BY values
/// and written to the partition Kafka's default partitioner picks for that key, whichever
/// input's record completed the join — in a stream–stream join that may be either side's.
/// ksqlDB writes a multi-column key of all NULLs in an object format as an object of
/// NULLs (partition-by.json's "multiple columns" cases), not as no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_by_after_a_join_keys_and_partitions_every_result() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let engine = Engine::new(&bootstrap).expect("engine");
    engine
        .execute(
            "CREATE TABLE customers (id STRING PRIMARY KEY, name STRING) \
               WITH (KAFKA_TOPIC='customers', VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE STREAM orders (id STRING KEY, customer STRING, region STRING, tier STRING) \
               WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE STREAM shipments (id STRING KEY, carrier STRING) \
               WITH (KAFKA_TOPIC='shipments', VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE STREAM by_name WITH (PARTITIONS=4) AS \
               SELECT o.id, o.customer, c.name FROM orders o JOIN customers c \
               ON o.customer = c.id PARTITION BY c.name;
             CREATE STREAM by_region WITH (KEY_FORMAT='JSON', PARTITIONS=4) AS \
               SELECT o.region AS region, o.tier AS tier, o.id AS id, s.carrier \
               FROM orders o JOIN shipments s WITHIN 1 HOUR ON o.id = s.id \
               PARTITION BY o.region, o.tier;",
        )
        .await
        .expect("statements");
    let p: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let t0 = 1_700_000_000_000;
    let names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank"];
    for (i, name) in names.iter().enumerate() {
        let value = format!(r#"{{"name":"{name}"}}"#);
        send_at(&p, "customers", &format!("c{}", i + 1), &value, t0).await;
    }
    brook_tests::wait_processed(&engine, "BY_NAME", 6).await;
    // o5's and o6's shipments come first, so their orders complete the join (the left
    // input); o1–o4's shipments come last and complete theirs (the right input).
    send_at(&p, "shipments", "o5", r#"{"carrier":"ups"}"#, t0).await;
    send_at(&p, "shipments", "o6", r#"{"carrier":"dhl"}"#, t0).await;
    brook_tests::wait_processed(&engine, "BY_REGION", 2).await;
    let orders = [
        ("o1", r#"{"customer":"c1","region":"eu","tier":"gold"}"#),
        ("o2", r#"{"customer":"c2","region":"us","tier":"silver"}"#),
        ("o3", r#"{"customer":"c3"}"#),
        ("o4", r#"{"customer":"c4","tier":"bronze"}"#),
        ("o5", r#"{"customer":"c5","region":"apac","tier":"gold"}"#),
        ("o6", r#"{"customer":"c6"}"#),
    ];
    for (id, value) in orders {
        send_at(&p, "orders", id, value, t0 + 1).await;
    }
    brook_tests::wait_processed(&engine, "BY_REGION", 8).await;
    for (id, carrier) in [("o1", "ups"), ("o2", "dhl"), ("o3", "ups"), ("o4", "dhl")] {
        let value = format!(r#"{{"carrier":"{carrier}"}}"#);
        send_at(&p, "shipments", id, &value, t0 + 2).await;
    }
    // Every input record counted: all their results are in the sinks.
    brook_tests::wait_processed(&engine, "BY_NAME", 12).await;
    brook_tests::wait_processed(&engine, "BY_REGION", 12).await;

    let view = |r: &brook_tests::Rec| -> Keyed {
        let key = r
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        (key, r.json())
    };
    let read = |topic: &'static str| {
        let bootstrap = bootstrap.clone();
        async move {
            brook_tests::read_all(&bootstrap, topic)
                .await
                .into_iter()
                .map(|(p, records)| (p, records.iter().map(view).collect()))
                .collect::<brook_tests::ByPartition<Keyed>>()
        }
    };

    let (got_by_name, got_by_region) = (read("BY_NAME").await, read("BY_REGION").await);
    // Stopped before comparing: a test that panics with the engine running does not end.
    engine.shutdown().await;

    // A stream–table join: the key is the customer's name, the rest the value (`o.id`
    // is O_ID: both inputs have an ID, as joins.json's "rekey" cases name them).
    let by_name: Vec<(&str, serde_json::Value)> = names
        .iter()
        .zip(1..)
        .map(|(name, i)| {
            let value = serde_json::json!({"O_ID": format!("o{i}"), "CUSTOMER": format!("c{i}")});
            (*name, value)
        })
        .collect();
    brook_tests::assert_same(
        &got_by_name,
        &by_key_partition(&by_name, 4),
        "BY_NAME: keyed by NAME, in murmur2's partition",
    );

    // A stream–stream join, in the order its results were completed: o5 and o6 by their
    // orders, the others by their shipments. Each key is (REGION, TIER), NULLs included.
    let by_region = [
        (r#"{"REGION":"apac","TIER":"gold"}"#, "o5", "ups"),
        (r#"{"REGION":null,"TIER":null}"#, "o6", "dhl"),
        (r#"{"REGION":"eu","TIER":"gold"}"#, "o1", "ups"),
        (r#"{"REGION":"us","TIER":"silver"}"#, "o2", "dhl"),
        (r#"{"REGION":null,"TIER":null}"#, "o3", "ups"),
        (r#"{"REGION":null,"TIER":"bronze"}"#, "o4", "dhl"),
    ];
    let by_region: Vec<(&str, serde_json::Value)> = by_region
        .iter()
        .map(|(key, id, carrier)| (*key, serde_json::json!({"ID": id, "CARRIER": carrier})))
        .collect();
    brook_tests::assert_same(
        &got_by_region,
        &by_key_partition(&by_region, 4),
        "BY_REGION: keyed by (REGION, TIER), in murmur2's partition",
    );
}
