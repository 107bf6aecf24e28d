//! The broker restarts under a running query: the embedded broker (file-backed) is
//! stopped while a persistent query runs and started again on the same data and port; the
//! query carries on by itself. Every produce — before, during or after the outage — is
//! acknowledged, and every input record has its result in the output, once: exactly the
//! acknowledged orders, each as often as it is in the input.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use brook_runtime::embedded::{BrokerStorage, EmbeddedBroker, EmbeddedBrokerConfig};
use brook_runtime::kafka::producer_config;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_server::engine::Engine;
use brook_tests::{read_all, read_until, read_until_within, ByPartition, Rec};
use serde_json::json;

async fn start(storage: &BrokerStorage, listen: SocketAddr) -> EmbeddedBroker {
    // The port may take a moment to come free after the previous broker stopped.
    for _ in 0..100 {
        match EmbeddedBroker::start(EmbeddedBrokerConfig {
            storage: storage.clone(),
            listen,
            ..EmbeddedBrokerConfig::for_tests()
        })
        .await
        {
            Ok(b) => return b,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the broker did not start again on {listen}");
}

/// Produces orders `from..to` (id `o{i:05}`, total 1000 + i); returns the ids the broker
/// acknowledged, and the failures of the others.
async fn produce(p: &FutureProducer, from: usize, to: usize) -> (Vec<String>, Vec<String>) {
    let (mut acked, mut failed) = (Vec::new(), Vec::new());
    for i in from..to {
        let id = format!("o{i:05}");
        let value = format!(r#"{{"total":{}}}"#, 1000 + i);
        let sent = p
            .send(
                FutureRecord::to("orders").key(&id).payload(&value),
                Duration::from_secs(60),
            )
            .await;
        match sent {
            Ok(_) => acked.push(id),
            Err((e, _)) => failed.push(format!("{id}: {e}")),
        }
    }
    (acked, failed)
}

/// How many times each key is in `records`.
fn copies(records: &ByPartition<Rec>) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for r in records.values().flatten() {
        *n.entry(r.key_text()).or_insert(0) += 1;
    }
    n
}

fn has_all(records: &ByPartition<Rec>, ids: &BTreeSet<String>) -> bool {
    let seen: BTreeSet<String> = records.values().flatten().map(Rec::key_text).collect();
    ids.is_subset(&seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_survives_a_broker_restart() {
    let dir = std::env::temp_dir().join(format!("brook-broker-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let storage = BrokerStorage::Sqlite(dir.join("broker.db"));
    let listen = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let broker = start(&storage, listen).await;
    let bootstrap = broker.kafka();
    let engine = Engine::new(&bootstrap).expect("engine");
    engine
        .execute(
            "CREATE STREAM orders (id STRING KEY, total BIGINT) \
               WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=2);
             CREATE STREAM big AS SELECT id, total FROM orders WHERE total > 1000;",
        )
        .await
        .expect("statements");
    // Not idempotent: see tests/tests/bad_records.rs and docs/embedded-broker.md.
    let producer: FutureProducer = producer_config(&bootstrap)
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let (mut acked, mut failed) = produce(&producer, 1, 201).await;
    // The query has the first records' results before the outage begins.
    let before: BTreeSet<String> = acked.iter().cloned().collect();
    read_until(&bootstrap, "BIG", move |got| has_all(got, &before)).await;

    // The outage: records produced meanwhile wait in the producer until the broker is back.
    broker.stop();
    let during = {
        let producer = producer.clone();
        tokio::spawn(async move { produce(&producer, 201, 301).await })
    };
    // How long the broker stays down (the scenario, not a wait for a result): long enough
    // for the producers and consumers to find it gone and retry.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _broker = start(&storage, listen).await;
    for (ok, err) in [
        during.await.expect("producing during the outage"),
        produce(&producer, 301, 501).await,
    ] {
        acked.extend(ok);
        failed.extend(err);
    }
    // The producer retries for a minute: a three-second outage loses no produce.
    assert!(
        failed.is_empty(),
        "{} of 500 produces failed: {failed:?}",
        failed.len()
    );

    let want: BTreeSet<String> = acked.into_iter().collect();
    let wanted = want.clone();
    read_until_within(&bootstrap, "BIG", Duration::from_secs(120), move |got| {
        has_all(got, &wanted)
    })
    .await;
    // Every produce is acknowledged, so the input is complete. Once the query has counted
    // all of it, every result it will write is in BIG.
    let input = copies(&read_all(&bootstrap, "orders").await);
    let inputs: usize = input.values().sum();
    brook_tests::wait_processed(&engine, "BIG", inputs as u64).await;
    let output = read_all(&bootstrap, "BIG").await;
    // Exactly the acknowledged orders' results, each with its order's value.
    for r in output.values().flatten() {
        let i: i64 = r.key_text()[1..].parse().unwrap_or(-1);
        assert_eq!(r.json(), json!({ "TOTAL": 1000 + i }), "{}", r.key_text());
    }
    let out = copies(&output);
    let distinct: BTreeSet<String> = out.keys().cloned().collect();
    let missing: Vec<&String> = want.difference(&distinct).collect();
    let unknown: Vec<&String> = distinct.difference(&want).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "the results must be those of the acknowledged orders: none for {missing:?}, \
         results of orders never acknowledged: {unknown:?}"
    );
    // At least once, and no more: each input record has one result. An order is in the
    // input twice only if the test's producer (not idempotent) retried a produce the
    // broker had written; the query itself repeats nothing, since the outage falls
    // between records (it has finished the earlier ones, the later ones reach the broker
    // only once it is back).
    let differ: Vec<String> = input
        .iter()
        .filter(|(id, n)| out.get(*id) != Some(*n))
        .map(|(id, n)| format!("{id}: {n} in the input, {:?} results", out.get(id)))
        .collect();
    println!(
        "broker restart: {} orders acknowledged, {inputs} input records, {} results",
        want.len(),
        out.values().sum::<usize>()
    );
    assert!(
        differ.is_empty(),
        "results lost or repeated across the broker restart: {differ:?}"
    );
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
