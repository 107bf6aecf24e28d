//! A transient production failure does not end a query: the broker goes away while a
//! query is writing its results, the query's producer gives up on the records in flight
//! (`message.timeout.ms` is one second here, so the deliveries fail with
//! MessageTimedOut), and the query sends them again, with growing waits, until the broker
//! is back. Every input record then has its result (at least once), and the query is
//! still running, with its retries counted and no failure.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use brook_runtime::embedded::{BrokerStorage, EmbeddedBroker, EmbeddedBrokerConfig};
use brook_runtime::kafka::{create_topic, producer_config, Kafka};
use brook_runtime::metrics::QueryMetrics;
use brook_runtime::pipeline::Pipeline;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::session::{Action, Session};
use brook_runtime::task::{run_with, Control, TaskConfig, TaskStats};
use brook_tests::{read_until, read_until_within, ByPartition, Rec};
use tokio::sync::watch;

const RECORDS: usize = 3_000;

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

/// A stateless query: every order copied to OUT.
const COPY: &str = "CREATE STREAM out AS SELECT id, v FROM orders;";
/// A stateful one: its changelog is written during the outage too.
const COUNT: &str = "CREATE TABLE out AS SELECT id, COUNT(*) AS n FROM orders GROUP BY id;";

/// The query's pipeline, over the orders stream.
fn pipeline(query: &str) -> Pipeline {
    let mut session = Session::new();
    let sql = format!(
        "CREATE STREAM orders (id STRING KEY, v INT) \
         WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=1); {query}"
    );
    let mut spec = None;
    for ps in brook_sql::parse(&sql).expect("parses") {
        if let Action::StartQuery(s) = session.plan(&ps, &|_| Some(1)).expect("plans") {
            spec = Some(s);
        }
    }
    Pipeline::new(*spec.expect("a query"), &session.catalog).expect("pipeline")
}

fn keys(got: &ByPartition<Rec>) -> BTreeSet<String> {
    got.values().flatten().map(Rec::key_text).collect()
}

/// A producer that fails deliveries after a second without the broker.
fn impatient(kafka: &Kafka) -> FutureProducer {
    // Not idempotent: see tests/tests/bad_records.rs and docs/embedded-broker.md.
    producer_config(kafka)
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "1000")
        .create()
        .expect("producer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_whose_delivery_timed_out_are_sent_again() {
    outage(COPY, "copy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_querys_results_and_changelog_are_sent_again() {
    outage(COUNT, "count").await;
}

/// Runs `query` over the orders while the broker goes away for three seconds.
async fn outage(query: &str, name: &str) {
    let dir = std::env::temp_dir().join(format!("brook-transient-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let storage = BrokerStorage::Sqlite(dir.join("broker.db"));
    let listen = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let broker = start(&storage, listen).await;
    let kafka = broker.kafka();
    for topic in ["orders", "OUT"] {
        create_topic(&kafka, topic, 1, 1).await.expect("topic");
    }
    let input = impatient(&kafka);
    let want: BTreeSet<String> = (0..RECORDS).map(|i| format!("o{i:05}")).collect();
    let sends = want.iter().enumerate().map(|(i, id)| {
        let value = format!(r#"{{"v":{i}}}"#);
        let input = &input;
        async move {
            let record = FutureRecord::to("orders").key(id).payload(&value);
            input.send(record, Duration::from_secs(30)).await
        }
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e).expect("input delivered");
    }

    // Small batches: each waits for its results' acknowledgements, so the query is still
    // writing when the broker goes away.
    let mut config = TaskConfig::new(&kafka);
    config.max_batch = 20;
    config.producer = Some(impatient(&kafka));
    let (stop_tx, stop) = watch::channel(false);
    let (_pause_tx, paused) = watch::channel(false);
    let (stats, _stats_rx) = watch::channel(TaskStats::default());
    let metrics = Arc::new(QueryMetrics::new());
    let control = Control {
        stop,
        paused,
        stats,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(run_with(pipeline(query), config, control));

    // The outage begins once the query has written some of its results.
    read_until(&kafka, "OUT", |got| {
        got.values().map(Vec::len).sum::<usize>() >= 100
    })
    .await;
    broker.stop();
    // How long the broker stays down (the scenario, not a wait for a result): longer
    // than the deliveries' one-second timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _broker = start(&storage, listen).await;

    let wanted = want.clone();
    let got = read_until_within(&kafka, "OUT", Duration::from_secs(120), move |got| {
        keys(got).is_superset(&wanted)
    })
    .await;
    assert_eq!(keys(&got), want, "the results are the inputs'");
    assert!(
        !task.is_finished(),
        "the query stopped: {:?}",
        metrics.failure()
    );
    let snapshot = metrics.snapshot();
    assert!(
        snapshot.production_retries > 0,
        "no delivery failed during the outage: {snapshot:?}"
    );
    assert!(!snapshot.failed, "{:?}", metrics.failure());
    println!(
        "transient production: {} results of {RECORDS} inputs, {} deliveries sent again",
        got.values().map(Vec::len).sum::<usize>(),
        snapshot.production_retries
    );
    let _ = stop_tx.send(true);
    let ended = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the query stops when told to")
        .expect("the task did not panic");
    assert!(ended.is_ok(), "{ended:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
