//! A push query delivers every newly produced record, each once, and LIMIT ends it after
//! exactly its rows: 1,000 orders produced at a modest rate (about 200 a second) to a
//! latest-offset push query.
//!
//! Each row is also timed, from just before its order is produced to the moment it reaches
//! the subscriber, and the figures are printed; they are not asserted: a debug build on a
//! shared machine measures the machine. The latency bound belongs to `brook-bench`
//! (`docs/benchmarks.md`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use brook_runtime::kafka::producer_config;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_server::engine::{Engine, OffsetReset};

const ORDERS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_query_delivers_every_new_record_once_then_ends_at_its_limit() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let engine = Engine::new(&bootstrap).expect("engine");
    engine
        .execute(
            "CREATE STREAM orders (orderId STRING KEY, total DOUBLE) \
             WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=4);",
        )
        .await
        .expect("create stream");
    let sql = format!("SELECT orderId, total FROM orders EMIT CHANGES LIMIT {ORDERS};");
    let statements = brook_sql::parse(&sql).expect("parses");
    let brook_sql::Statement::Query(q) = &statements[0].statement else {
        panic!("a query");
    };
    let mut pq = engine
        .push_query(q, OffsetReset::Latest)
        .await
        .expect("push query");
    // `push_query` returns once the query's consumer holds its partitions' ends: every
    // record produced from now on reaches it.

    // Not idempotent: see tests/tests/bad_records.rs and docs/embedded-broker.md.
    let producer: FutureProducer = producer_config(&bootstrap)
        .set("enable.idempotence", "false")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let sent: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let sending = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for i in 0..ORDERS {
                let id = format!("o{i}");
                let value = format!(r#"{{"total":{i}.5}}"#);
                sent.lock()
                    .expect("lock")
                    .insert(id.clone(), Instant::now());
                producer
                    .send(
                        FutureRecord::to("orders").key(&id).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("delivered");
                // The rate (not a wait for a result): rows arrive a few at a time.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut latencies = Vec::with_capacity(ORDERS);
    let mut delivered = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while latencies.len() < ORDERS {
        let batch = tokio::time::timeout_at(deadline, pq.rows.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} rows arrived", latencies.len()))
            .unwrap_or_else(|| panic!("the query ended after {} rows", latencies.len()))
            .expect("rows");
        let now = Instant::now();
        let ids = batch
            .column(3)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("ORDERID is a string column")
            .clone();
        for id in ids.iter().flatten() {
            let t0 = sent.lock().expect("lock").get(id).copied();
            let t0 = t0.unwrap_or_else(|| panic!("a row for {id}, which was not produced"));
            assert!(delivered.insert(id.to_string()), "{id} delivered twice");
            latencies.push(now.duration_since(t0));
        }
    }
    sending.await.expect("producer task");
    // LIMIT: the channel closes after exactly that many rows.
    let after = tokio::time::timeout(Duration::from_secs(10), pq.rows.recv())
        .await
        .expect("the query ends at its LIMIT");
    assert!(after.is_none(), "no row after the LIMIT");

    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let (p50, p99, max) = (at(0.50), at(0.99), latencies[latencies.len() - 1]);
    println!(
        "push latency over {ORDERS} records at ~200/s (not asserted; see brook-bench): \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    engine.shutdown().await;
}
