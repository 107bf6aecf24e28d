//! The broker restarts under a running query: the embedded broker (file-backed) is
//! stopped while a persistent query runs and started again on the same data and port; the
//! query carries on by itself, and every input record whose produce was acknowledged —
//! before, during or after the outage — has its result in the output (at least once).

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use brook_runtime::embedded::{BrokerStorage, EmbeddedBroker, EmbeddedBrokerConfig};
use brook_runtime::kafka::{consumer_config, producer_config};
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_server::engine::Engine;

async fn start(storage: &BrokerStorage, listen: SocketAddr) -> EmbeddedBroker {
    // The port may take a moment to come free after the previous broker stopped.
    for _ in 0..100 {
        match EmbeddedBroker::start(EmbeddedBrokerConfig {
            storage: storage.clone(),
            listen,
        })
        .await
        {
            Ok(b) => return b,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the broker did not start again on {listen}");
}

async fn produce(p: &FutureProducer, from: usize, to: usize) -> Vec<String> {
    let mut acked = Vec::new();
    for i in from..to {
        let id = format!("o{i:05}");
        let value = format!(r#"{{"total":{}}}"#, 1000 + i);
        if p.send(
            FutureRecord::to("orders").key(&id).payload(&value),
            Duration::from_secs(60),
        )
        .await
        .is_ok()
        {
            acked.push(id);
        }
    }
    acked
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
    let bootstrap = broker.bootstrap_servers();
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
    let mut acked = produce(&producer, 1, 201).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The outage: records produced meanwhile wait in the producer until the broker is back.
    broker.stop();
    let during = {
        let producer = producer.clone();
        tokio::spawn(async move { produce(&producer, 201, 301).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _broker = start(&storage, listen).await;
    acked.extend(during.await.expect("producing during the outage"));
    acked.extend(produce(&producer, 301, 501).await);
    assert!(
        acked.len() >= 400,
        "only {} records were acknowledged",
        acked.len()
    );

    let consumer: StreamConsumer = consumer_config(&bootstrap, "big-reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&["BIG"]).expect("subscribe");
    let want: BTreeSet<String> = acked.into_iter().collect();
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !want.is_subset(&got) {
        let Ok(m) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            let missing: Vec<_> = want.difference(&got).take(10).collect();
            panic!(
                "{} acknowledged records have no result, e.g. {missing:?}",
                want.difference(&got).count()
            );
        };
        if let Ok(m) = m {
            got.insert(String::from_utf8_lossy(m.key().unwrap_or_default()).to_string());
        }
    }
    println!(
        "broker restart: {} acknowledged records, all {} in the output",
        want.len(),
        want.len()
    );
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
