//! Stateless queries over one topic share one reader (see `brook_runtime::shared`): a query
//! that starts behind the others rewinds the reader without the others seeing a record
//! twice; a paused query misses nothing while the others go on; a restarted server resumes
//! each query at its stored positions; a restored query whose consumer group committed
//! offsets (Brook before shared readers) resumes there.

use std::collections::BTreeMap;
use std::time::Duration;

use brook_runtime::kafka::{consumer_config, producer_config};
use brook_runtime::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rdkafka::{Offset, TopicPartitionList};
use brook_server::engine::Engine;

const STREAM: &str = "CREATE STREAM s (id STRING KEY, v INT) \
    WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=2);";

async fn produce(p: &FutureProducer, values: std::ops::Range<i64>) {
    for v in values {
        let key = format!("k{}", v % 7);
        let value = format!(r#"{{"V":{v}}}"#);
        p.send(
            FutureRecord::to("s").key(&key).payload(&value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
    }
}

/// How often each value of `V` is in `topic` (read from its start): waits until `n`
/// records are there, then a moment more for any extra.
async fn counts(bootstrap: &str, topic: &str, n: usize) -> BTreeMap<i64, usize> {
    let group = format!("check-{topic}-{n}-{}", std::process::id());
    let consumer: StreamConsumer = consumer_config(bootstrap, &group)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = BTreeMap::new();
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + brook_tests::DEADLINE;
    loop {
        let wait = if got >= n {
            tokio::time::Instant::now() + Duration::from_millis(1500)
        } else {
            deadline
        };
        let Ok(m) = tokio::time::timeout_at(wait, consumer.recv()).await else {
            assert!(got >= n, "{topic}: only {got} of {n} records: {seen:?}");
            return seen;
        };
        let m = m.expect("consume");
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("a value")).expect("JSON");
        *seen.entry(v["V"].as_i64().expect("V")).or_insert(0) += 1;
        got += 1;
    }
}

/// Every value of `range` once.
fn once(range: std::ops::Range<i64>) -> BTreeMap<i64, usize> {
    range.map(|v| (v, 1)).collect()
}

async fn query_id(engine: &Engine, sink: &str) -> String {
    engine
        .queries()
        .await
        .into_iter()
        .find(|q| q.sink == sink)
        .map(|q| q.id)
        .unwrap_or_else(|| panic!("no query writes {sink}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_one_topic_share_a_reader() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.bootstrap_servers();
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("empty log");
    engine
        .execute(&format!("{STREAM} CREATE STREAM a AS SELECT id, v FROM s;"))
        .await
        .expect("statements");
    produce(&producer, 0..100).await;
    assert_eq!(counts(&bootstrap, "A", 100).await, once(0..100));

    // B starts from the beginning, behind the reader A is on.
    produce(&producer, 100..200).await;
    engine
        .execute("CREATE STREAM b AS SELECT id, v FROM s WHERE v >= 0;")
        .await
        .expect("statement");
    assert_eq!(counts(&bootstrap, "B", 200).await, once(0..200));
    assert_eq!(counts(&bootstrap, "A", 200).await, once(0..200));

    // A paused: B goes on, A catches up after the resume, nothing twice.
    let a = query_id(&engine, "A").await;
    engine.execute(&format!("PAUSE {a};")).await.expect("pause");
    produce(&producer, 200..250).await;
    assert_eq!(counts(&bootstrap, "B", 250).await, once(0..250));
    assert_eq!(counts(&bootstrap, "A", 200).await, once(0..200));
    engine
        .execute(&format!("RESUME {a};"))
        .await
        .expect("resume");
    assert_eq!(counts(&bootstrap, "A", 250).await, once(0..250));

    // A restart resumes each query where it was: records produced while the server was
    // down come through once, the earlier ones are not read again.
    engine.shutdown().await;
    drop(engine);
    produce(&producer, 250..300).await;
    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("replayed");
    assert_eq!(counts(&bootstrap, "A", 300).await, once(0..300));
    assert_eq!(counts(&bootstrap, "B", 300).await, once(0..300));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_query_resumes_at_its_groups_committed_offsets() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.bootstrap_servers();
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("empty log");
    engine.execute(STREAM).await.expect("stream");
    engine.shutdown().await;
    drop(engine);
    produce(&producer, 0..40).await;
    // What Brook before shared readers left behind: a query in the command log (the first,
    // so number 0) and the offsets it committed in its group, here half of each partition.
    producer
        .send(
            FutureRecord::<(), str>::to("_brook_commands")
                .payload("CREATE STREAM c AS SELECT id, v FROM s;"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("command recorded");
    let committer: BaseConsumer = consumer_config(&bootstrap, "_brook_query_CSAS_C_0")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut skipped = 0;
    for p in 0..2 {
        let (low, high) = committer
            .fetch_watermarks("s", p, Duration::from_secs(10))
            .expect("watermarks");
        let half = low + (high - low) / 2;
        skipped += half - low;
        tpl.add_partition_offset("s", p, Offset::Offset(half))
            .expect("offset");
    }
    committer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(committer);
    assert!(skipped > 0);

    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("replayed");
    assert_eq!(query_id(&engine, "C").await, "CSAS_C_0");
    let rest = 40 - skipped as usize;
    let got = counts(&bootstrap, "C", rest).await;
    assert_eq!(got.values().sum::<usize>(), rest, "{got:?}");
    assert!(got.values().all(|n| *n == 1), "{got:?}");
    engine.shutdown().await;
}

/// Kafka's tools see each query on a shared reader: its positions are copied to the
/// consumer group named after it, and TERMINATE deletes the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_on_a_shared_reader_shows_in_its_consumer_group() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.bootstrap_servers();
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("empty log");
    engine
        .execute(&format!("{STREAM} CREATE STREAM g AS SELECT id, v FROM s;"))
        .await
        .expect("statements");
    produce(&producer, 0..60).await;
    assert_eq!(counts(&bootstrap, "G", 60).await, once(0..60));
    let id = query_id(&engine, "G").await;
    let group = brook_runtime::task::query_group(&id);

    // The topic's end, as the group must come to show it.
    let watermarks: BaseConsumer = consumer_config(&bootstrap, "watermarks")
        .create()
        .expect("consumer");
    let mut end = brook_runtime::changelog::Positions::new();
    for p in 0..2 {
        let (_, high) = watermarks
            .fetch_watermarks("s", p, Duration::from_secs(10))
            .expect("watermarks");
        end.insert(("s".to_string(), p), high);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = brook_runtime::shared::group_offsets(&bootstrap, &group, "s")
            .await
            .expect("group offsets");
        if got == end {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {group} shows {got:?}, not {end:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    assert!(engine.terminate(&id).await);
    let gone = brook_runtime::shared::group_offsets(&bootstrap, &group, "s")
        .await
        .expect("group offsets");
    assert!(gone.is_empty(), "{group} still has {gone:?}");
    engine.shutdown().await;
}
