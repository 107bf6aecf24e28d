//! A restarted server restores its streams, tables and persistent queries from the command
//! log, and the queries resume where they committed: no output lost, none repeated.

use std::time::Duration;

use brook_runtime::kafka::{consumer_config, producer_config};
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_server::engine::Engine;

const LOG: &str = "_brook_command_topic";

async fn produce(producer: &FutureProducer, from: usize, to: usize) {
    for i in from..to {
        let key = format!("k{i}");
        let value = format!("{{\"n\":{i}}}");
        producer
            .send(
                FutureRecord::to("numbers").key(&key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

async fn read(consumer: &StreamConsumer, want: usize) -> Vec<i64> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < want {
        let m = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} outputs", got.len()))
            .expect("consume");
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("value")).expect("JSON");
        got.push(v["N"].as_i64().expect("N"));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_catalog_and_queries() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.bootstrap_servers();
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");

    let first = Engine::with_command_log(&bootstrap, LOG).expect("engine");
    assert_eq!(first.recover().await.expect("empty log"), 0);
    first
        .execute(
            "SET 'brook.emit.final.idle.timeout.ms'='1234';
             CREATE STREAM numbers (k STRING KEY, n INT) WITH (KAFKA_TOPIC='numbers', \
             VALUE_FORMAT='JSON', PARTITIONS=2);
             CREATE STREAM evens AS SELECT k, n FROM numbers WHERE n % 2 = 0;
             CREATE STREAM odds AS SELECT k, n FROM numbers WHERE n % 2 = 1;",
        )
        .await
        .expect("statements");
    // A bad statement is refused and never recorded.
    assert!(first
        .execute("CREATE STREAM broken AS SELECT nope FROM numbers;")
        .await
        .is_err());
    let odds = first
        .queries()
        .await
        .into_iter()
        .find(|q| q.sink == "ODDS")
        .expect("odds");
    assert!(first.terminate(&odds.id).await);

    let consumer: StreamConsumer = consumer_config(&bootstrap, "evens-reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&["EVENS"]).expect("subscribe");
    produce(&producer, 0, 20).await;
    let mut got = read(&consumer, 10).await;
    first.shutdown().await;
    drop(first);

    // The restarted engine: same streams, the EVENS query back (ODDS stays terminated).
    let second = Engine::with_command_log(&bootstrap, LOG).expect("engine");
    let replayed = second.recover().await.expect("replay");
    assert_eq!(replayed, 5, "a SET, three statements and one TERMINATE");
    // SET shapes the statements after it: the replay applies it where it came.
    assert_eq!(
        second
            .property("brook.emit.final.idle.timeout.ms")
            .await
            .as_deref(),
        Some("1234")
    );
    let catalog = second.catalog().await;
    assert!(catalog.sources.contains_key("NUMBERS"));
    assert!(catalog.sources.contains_key("EVENS"));
    let queries = second.queries().await;
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert_eq!(queries[0].sink, "EVENS");

    produce(&producer, 20, 40).await;
    got.extend(read(&consumer, 10).await);
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
    assert!(extra.is_err(), "an output was repeated after the restart");
    got.sort();
    let want: Vec<i64> = (0..40).filter(|n| n % 2 == 0).collect();
    assert_eq!(got, want);
    second.shutdown().await;
}
