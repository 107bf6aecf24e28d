//! A restarted server restores its streams, tables and persistent queries from the command
//! log, and the queries resume where they committed: no output lost, none repeated.

use brook_runtime::kafka::producer_config;
use brook_runtime::rdkafka::producer::FutureProducer;
use brook_server::engine::Engine;
use brook_tests::{read_expecting, ByPartition, Rec};

const LOG: &str = "_brook_command_topic";

/// Produces numbers `from..to` (key `k{n}`); returns each one's partition.
async fn produce(producer: &FutureProducer, from: i64, to: i64) -> Vec<(i32, i64)> {
    let mut out = Vec::new();
    for n in from..to {
        let (partition, _) = brook_tests::send(
            producer,
            "numbers",
            &format!("k{n}"),
            &format!("{{\"n\":{n}}}"),
        )
        .await;
        out.push((partition, n));
    }
    out
}

/// EVENS as it must be once the numbers `produced` went through the query: each even
/// number once, in its partition, in order.
fn evens(produced: &[(i32, i64)]) -> ByPartition<(String, i64)> {
    let mut out = ByPartition::new();
    for (p, n) in produced.iter().filter(|(_, n)| n % 2 == 0) {
        out.entry(*p)
            .or_insert_with(Vec::new)
            .push((format!("k{n}"), *n));
    }
    out
}

fn even(r: &Rec) -> (String, i64) {
    (r.key_text(), r.json()["N"].as_i64().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_catalog_and_queries() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
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

    let mut produced = produce(&producer, 0, 20).await;
    let want = evens(&produced);
    let got = read_expecting(&bootstrap, "EVENS", &want, even).await;
    brook_tests::assert_same(&got, &want, "EVENS before the restart");
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

    // The numbers produced after the restart are the markers: records read again would
    // come before them in their partitions.
    produced.extend(produce(&producer, 20, 40).await);
    let want = evens(&produced);
    let got = read_expecting(&bootstrap, "EVENS", &want, even).await;
    brook_tests::assert_same(
        &got,
        &want,
        "EVENS after the restart: nothing lost or repeated",
    );
    second.shutdown().await;
}
