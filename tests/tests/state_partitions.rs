//! Stateful queries run as several state partitions (`docs/parallelism.md`): an
//! aggregation by a value column routes each record by its GROUP BY key, one by the
//! source's key routes by input partition. Each partition writes its own changelog
//! partition; after a restart every group's total must equal an uninterrupted run's (no
//! record counted twice or lost), and pull queries see every partition's rows.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use brook_runtime::kafka::{consumer_config, producer_config};
use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_server::engine::Engine;

const LOG: &str = "_brook_command_topic";
const CUSTOMERS: usize = 23;

fn order(i: usize) -> (String, String) {
    let value = format!(
        "{{\"customer\":\"c{}\",\"amount\":{}}}",
        i % CUSTOMERS,
        i % 7
    );
    (format!("o{}", i % 101), value)
}

async fn produce(producer: &FutureProducer, range: std::ops::Range<usize>) {
    for i in range {
        let (key, value) = order(i);
        producer
            .send(
                FutureRecord::to("orders").key(&key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// Group → (count, sum) after orders `0..n`: by customer, and by order key.
fn expected(n: usize) -> (BTreeMap<String, (i64, i64)>, BTreeMap<String, i64>) {
    let mut by_customer = BTreeMap::new();
    let mut by_key = BTreeMap::new();
    for i in 0..n {
        let e = by_customer
            .entry(format!("c{}", i % CUSTOMERS))
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += (i % 7) as i64;
        *by_key.entry(format!("o{}", i % 101)).or_insert(0) += 1;
    }
    (by_customer, by_key)
}

/// Reads a table's topic until every group's latest value is `want` (or fails).
async fn read_until<T: PartialEq + std::fmt::Debug>(
    consumer: &StreamConsumer,
    want: &BTreeMap<String, T>,
    parse: impl Fn(&serde_json::Value) -> T,
) {
    let mut got: BTreeMap<String, T> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while &got != want {
        let Ok(m) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            panic!("table did not converge: got {got:?}, want {want:?}");
        };
        let m = m.expect("consume");
        let key = String::from_utf8_lossy(m.key().expect("key")).to_string();
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("value")).expect("JSON");
        got.insert(key, parse(&v));
    }
}

/// Reads 400 joined orders from `topic`, checking each (its key, its value).
async fn read_joined(
    bootstrap: &brook_runtime::kafka::Kafka,
    topic: &str,
    deadline: tokio::time::Instant,
    check: impl Fn(&str, &serde_json::Value),
) {
    let consumer = reader(bootstrap, topic);
    for got in 0..400 {
        let Ok(m) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            panic!("{topic}: only {got} of 400 joined orders");
        };
        let m = m.expect("consume");
        let key = String::from_utf8_lossy(m.key().expect("key")).to_string();
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("value")).expect("JSON");
        check(&key, &v);
    }
}

fn reader(bootstrap: &brook_runtime::kafka::Kafka, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = consumer_config(bootstrap, &format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// How many records each partition of `topic` holds.
fn partition_sizes(bootstrap: &brook_runtime::kafka::Kafka, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = consumer_config(bootstrap, "sizes").create().expect("c");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = md.topics()[0].partitions().len() as i32;
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .collect()
}

async fn pull_all(engine: &Engine, sql: &str) -> BTreeMap<String, i64> {
    let brook_sql::Statement::Query(q) = brook_sql::parse_one(sql).expect("parses") else {
        panic!("not a query: {sql}");
    };
    let mut pull = engine.pull_query(&q).await.expect("pull query");
    let mut out = BTreeMap::new();
    while let Some(batch) = pull.rows.recv().await {
        let batch = batch.expect("rows");
        // ROWTIME, ROWPARTITION, ROWOFFSET, then the selected columns.
        let keys = batch.column(3).as_string::<i32>();
        let counts = batch
            .column(4)
            .as_primitive::<arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            assert!(!counts.is_null(row));
            out.insert(keys.value(row).to_string(), counts.value(row));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_split_into_state_partitions_survive_a_restart() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");

    let first = Engine::with_command_log(&bootstrap, LOG).expect("engine");
    first.recover().await.expect("empty log");
    first
        .execute(
            "SET 'ksql.streams.num.stream.threads'='2';
             CREATE STREAM orders (id STRING KEY, customer STRING, amount INT) \
             WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=4);
             CREATE TABLE per_customer AS SELECT customer, COUNT(*) AS n, SUM(amount) AS s \
             FROM orders GROUP BY customer EMIT CHANGES;
             CREATE TABLE per_order AS SELECT id, COUNT(*) AS n FROM orders GROUP BY id \
             EMIT CHANGES;",
        )
        .await
        .expect("statements");
    let ids: BTreeMap<String, String> = first
        .queries()
        .await
        .into_iter()
        .map(|q| (q.sink, q.id))
        .collect();

    let customers = reader(&bootstrap, "PER_CUSTOMER");
    let orders = reader(&bootstrap, "PER_ORDER");
    let pair = |v: &serde_json::Value| (v["N"].as_i64().expect("N"), v["S"].as_i64().expect("S"));
    let count = |v: &serde_json::Value| v["N"].as_i64().expect("N");
    produce(&producer, 0..1500).await;
    let (want_customers, want_orders) = expected(1500);
    read_until(&customers, &want_customers, pair).await;
    read_until(&orders, &want_orders, count).await;

    // Two state partitions each, and both hold state: the work was split.
    for sink in ["PER_CUSTOMER", "PER_ORDER"] {
        let changelog = brook_runtime::changelog::topic_name(&ids[sink]);
        let sizes = partition_sizes(&bootstrap, &changelog);
        assert_eq!(sizes.len(), 2, "{sink}: {sizes:?}");
        assert!(sizes.iter().all(|s| *s > 0), "{sink}: {sizes:?}");
    }
    // A pull query reads every state partition's rows.
    let pulled = pull_all(&first, "SELECT customer, n FROM per_customer;").await;
    let want: BTreeMap<String, i64> = want_customers
        .iter()
        .map(|(k, (n, _))| (k.clone(), *n))
        .collect();
    assert_eq!(pulled, want);
    let one = pull_all(&first, "SELECT id, n FROM per_order WHERE id = 'o7';").await;
    assert_eq!(one.get("o7"), want_orders.get("o7"));

    first.shutdown().await;
    drop(first);
    // Input arriving while no server runs, then a restart: state comes back per state
    // partition and the input resumes where each partition left off.
    produce(&producer, 1500..2500).await;
    let second = Engine::with_command_log(&bootstrap, LOG).expect("engine");
    second.recover().await.expect("replay");
    produce(&producer, 2500..3000).await;
    let (want_customers, want_orders) = expected(3000);
    read_until(&customers, &want_customers, pair).await;
    read_until(&orders, &want_orders, count).await;
    let pulled = pull_all(&second, "SELECT customer, n FROM per_customer;").await;
    let want: BTreeMap<String, i64> = want_customers
        .iter()
        .map(|(k, (n, _))| (k.clone(), *n))
        .collect();
    assert_eq!(pulled, want);
    second.shutdown().await;
}

/// Stream–table joins run as state partitions: on both sides' keys (co-partitioned
/// topics) routed by input partition, on a column of the stream routed by that column's
/// value and the table's key; either way each order meets its table row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_split_into_state_partitions() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let engine = Engine::with_command_log(&bootstrap, LOG).expect("engine");
    engine.recover().await.expect("empty log");
    engine
        .execute(
            "SET 'ksql.streams.num.stream.threads'='2';
             CREATE STREAM orders (id STRING KEY, customer STRING, amount INT) \
             WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=4);
             CREATE TABLE notes (id STRING PRIMARY KEY, note STRING) \
             WITH (KAFKA_TOPIC='notes', VALUE_FORMAT='JSON', PARTITIONS=4);
             CREATE TABLE customers (id STRING PRIMARY KEY, name STRING) \
             WITH (KAFKA_TOPIC='customers', VALUE_FORMAT='JSON', PARTITIONS=3);",
        )
        .await
        .expect("sources");
    engine
        .execute(
            "CREATE STREAM noted AS SELECT o.id AS id, n.note AS note, o.amount AS amount \
             FROM orders o JOIN notes n ON o.id = n.id EMIT CHANGES;
             CREATE STREAM named AS SELECT c.id AS cid, o.id AS oid, c.name AS name \
             FROM orders o JOIN customers c ON o.customer = c.id EMIT CHANGES;",
        )
        .await
        .expect("join");
    for i in 0..101 {
        let (key, value) = (format!("o{i}"), format!("{{\"note\":\"n{i}\"}}"));
        producer
            .send(
                FutureRecord::to("notes").key(&key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
    for i in 0..CUSTOMERS {
        let (key, value) = (format!("c{i}"), format!("{{\"name\":\"name-c{i}\"}}"));
        producer
            .send(
                FutureRecord::to("customers").key(&key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
    // The orders must find the table rows: they go in once each query has read its table.
    brook_tests::wait_processed(&engine, "NOTED", 101).await;
    brook_tests::wait_processed(&engine, "NAMED", CUSTOMERS as u64).await;
    let id = engine
        .queries()
        .await
        .into_iter()
        .find(|q| q.sink == "NOTED")
        .map(|q| q.id)
        .expect("query");
    produce(&producer, 0..400).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    // Every order met its own note.
    read_joined(&bootstrap, "NOTED", deadline, |key, v| {
        assert_eq!(
            v["NOTE"].as_str(),
            Some(format!("n{}", &key[1..]).as_str()),
            "{v}"
        );
    })
    .await;
    let changelog = brook_runtime::changelog::topic_name(&id);
    assert_eq!(partition_sizes(&bootstrap, &changelog).len(), 2);

    // Joined on the stream's customer column: the table (3 partitions) need not be
    // co-partitioned with the stream (4).
    read_joined(&bootstrap, "NAMED", deadline, |key, v| {
        assert_eq!(
            v["NAME"].as_str(),
            Some(format!("name-{key}").as_str()),
            "{v}"
        );
    })
    .await;
    let named = engine
        .queries()
        .await
        .into_iter()
        .find(|q| q.sink == "NAMED")
        .map(|q| q.id)
        .expect("query");
    let changelog = brook_runtime::changelog::topic_name(&named);
    assert_eq!(partition_sizes(&bootstrap, &changelog).len(), 2);
    engine.shutdown().await;
}
