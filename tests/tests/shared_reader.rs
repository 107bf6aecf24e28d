//! Stateless queries over one topic share one reader (see `brook_runtime::shared`): a query
//! that starts behind the others rewinds the reader without the others seeing a record
//! twice; a paused query misses nothing while the others go on; a restarted server resumes
//! each query at its stored positions; a restored query whose consumer group committed
//! offsets (Brook before shared readers) resumes there.

use std::time::Duration;

use brook_runtime::kafka::{consumer_config, producer_config, Kafka};
use brook_runtime::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rdkafka::{Offset, TopicPartitionList};
use brook_server::engine::Engine;
use brook_tests::{read_all, read_expecting, ByPartition, Rec};
use serde_json::{json, Value};

const STREAM: &str = "CREATE STREAM s (id STRING KEY, v INT) \
    WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=2);";

/// What was produced to `s`, in order: partition, offset, key and `V`.
#[derive(Default)]
struct Produced(Vec<(i32, i64, String, i64)>);

impl Produced {
    /// Produces the values of `values`, each keyed `k{v % 7}`: any seven in a row cover
    /// every key, and so every partition that has records.
    async fn add(&mut self, p: &FutureProducer, values: std::ops::Range<i64>) {
        for v in values {
            let key = format!("k{}", v % 7);
            let (partition, offset) =
                brook_tests::send(p, "s", &key, &format!(r#"{{"V":{v}}}"#)).await;
            self.0.push((partition, offset, key, v));
        }
    }

    /// What a copy of `s` holds after reading the records `keep` picks: per partition (a
    /// key's records land in the same partition of a sink with as many partitions), in
    /// order, each once.
    fn copied(&self, keep: impl Fn(i32, i64, i64) -> bool) -> ByPartition<(String, Value)> {
        let mut out = ByPartition::new();
        for (partition, offset, key, v) in &self.0 {
            if keep(*partition, *offset, *v) {
                out.entry(*partition)
                    .or_insert_with(Vec::new)
                    .push((key.clone(), json!({ "V": v })));
            }
        }
        out
    }

    /// A copy of the values below `end`.
    fn below(&self, end: i64) -> ByPartition<(String, Value)> {
        self.copied(|_, _, v| v < end)
    }
}

fn record(r: &Rec) -> (String, Value) {
    (r.key_text(), r.json())
}

/// `topic` holds exactly `want`: read until each partition's last expected record is
/// there, then to the end.
async fn check(kafka: &Kafka, topic: &str, want: &ByPartition<(String, Value)>) {
    let got = read_expecting(kafka, topic, want, record).await;
    brook_tests::assert_same(&got, want, topic);
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
    let bootstrap = broker.kafka();
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("empty log");
    engine
        .execute(&format!("{STREAM} CREATE STREAM a AS SELECT id, v FROM s;"))
        .await
        .expect("statements");
    let mut input = Produced::default();
    input.add(&producer, 0..100).await;
    check(&bootstrap, "A", &input.below(100)).await;

    // B starts from the beginning, behind the reader A is on. The seven records produced
    // after B started are the markers: the reader reads them after whatever it re-reads
    // for B, so once A has them, A has been handed anything it was going to see twice.
    input.add(&producer, 100..200).await;
    engine
        .execute("CREATE STREAM b AS SELECT id, v FROM s WHERE v >= 0;")
        .await
        .expect("statement");
    input.add(&producer, 200..207).await;
    check(&bootstrap, "B", &input.below(207)).await;
    check(&bootstrap, "A", &input.below(207)).await;

    // A paused: B goes on, A catches up after the resume, nothing twice. Once B has the
    // records produced meanwhile, the reader both share has handed them out; A, had it not
    // been paused, would have had them in the same hand-out.
    let a = query_id(&engine, "A").await;
    engine.execute(&format!("PAUSE {a};")).await.expect("pause");
    input.add(&producer, 207..257).await;
    check(&bootstrap, "B", &input.below(257)).await;
    let paused = read_all(&bootstrap, "A").await;
    let paused: ByPartition<(String, Value)> = paused
        .into_iter()
        .map(|(p, records)| (p, records.iter().map(record).collect()))
        .collect();
    brook_tests::assert_same(&paused, &input.below(207), "A wrote output while paused");
    engine
        .execute(&format!("RESUME {a};"))
        .await
        .expect("resume");
    check(&bootstrap, "A", &input.below(257)).await;

    // A restart resumes each query where it was: records produced while the server was
    // down come through once, the earlier ones are not read again (they would come before
    // the new ones, the markers, in each partition).
    engine.shutdown().await;
    drop(engine);
    input.add(&producer, 257..307).await;
    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("replayed");
    check(&bootstrap, "A", &input.below(307)).await;
    check(&bootstrap, "B", &input.below(307)).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_query_resumes_at_its_groups_committed_offsets() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("empty log");
    engine.execute(STREAM).await.expect("stream");
    engine.shutdown().await;
    drop(engine);
    let mut input = Produced::default();
    input.add(&producer, 0..40).await;
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
    let mut halves = std::collections::BTreeMap::new();
    for p in 0..2 {
        let (low, high) = committer
            .fetch_watermarks("s", p, Duration::from_secs(10))
            .expect("watermarks");
        let half = low + (high - low) / 2;
        assert!(
            half > low,
            "partition {p} of s has too few records to skip any"
        );
        halves.insert(p, half);
        tpl.add_partition_offset("s", p, Offset::Offset(half))
            .expect("offset");
    }
    committer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(committer);

    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("replayed");
    assert_eq!(query_id(&engine, "C").await, "CSAS_C_0");
    // Markers, produced once the query runs: C then holds each partition's second half
    // and them, nothing of the first halves and nothing twice.
    input.add(&producer, 40..47).await;
    let want = input.copied(|p, offset, _| halves.get(&p).is_none_or(|h| offset >= *h));
    check(&bootstrap, "C", &want).await;
    engine.shutdown().await;
}

/// Kafka's tools see each query on a shared reader: its positions are copied to the
/// consumer group named after it, and TERMINATE deletes the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_on_a_shared_reader_shows_in_its_consumer_group() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let engine = Engine::with_command_log(&bootstrap, "_brook_commands").expect("engine");
    engine.recover().await.expect("empty log");
    engine
        .execute(&format!("{STREAM} CREATE STREAM g AS SELECT id, v FROM s;"))
        .await
        .expect("statements");
    let mut input = Produced::default();
    input.add(&producer, 0..60).await;
    check(&bootstrap, "G", &input.below(60)).await;
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
