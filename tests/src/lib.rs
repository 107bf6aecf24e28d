//! End-to-end tests of Brook against a real Kafka-protocol broker (the embedded one).
//! The tests live in `tests/`; this library holds what they share.
//!
//! Negative checks ("nothing else arrives") never wait out a quiet period: a test reads a
//! topic until a marker it expects has arrived — a record produced after the ones that
//! must not produce output, or the query's own count of the records it has processed —
//! and then reads on to the topic's end at that moment, so whatever else the query wrote
//! is read too and compared.

use std::collections::BTreeMap;
use std::time::Duration;

use brook_runtime::embedded::{EmbeddedBroker, EmbeddedBrokerConfig};
use brook_runtime::kafka::{consumer_config, Kafka};
use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
use brook_runtime::rdkafka::message::Message;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rdkafka::{Offset, TopicPartitionList};
use brook_server::engine::Engine;

/// Starts an in-memory embedded broker on a free loopback port.
pub async fn broker() -> EmbeddedBroker {
    match EmbeddedBroker::start(EmbeddedBrokerConfig::for_tests()).await {
        Ok(b) => b,
        Err(e) => panic!("embedded broker did not start: {e}"),
    }
}

/// How long a test waits for records before it fails rather than hangs.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

impl Rec {
    /// The key as text (empty when there is none).
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }

    /// The value as JSON (`null` for a tombstone or a value that is not JSON).
    pub fn json(&self) -> serde_json::Value {
        self.value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Records by partition, each partition's in offset order.
pub type ByPartition<T> = BTreeMap<i32, Vec<T>>;

/// Produces one record and waits for its acknowledgement; returns its partition and
/// offset.
pub async fn send(p: &FutureProducer, topic: &str, key: &str, value: &str) -> (i32, i64) {
    let delivery = p
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap_or_else(|e| panic!("producing to {topic}: {e}"));
    (delivery.partition, delivery.offset)
}

/// Reads every partition of `topic` from its start until `done` holds for what was read
/// (at most [`DEADLINE`], then the test fails with what was read), then on to the
/// partitions' end offsets of that moment: whatever was written before `done` held is
/// read too.
pub async fn read_until<F>(kafka: &Kafka, topic: &str, done: F) -> ByPartition<Rec>
where
    F: Fn(&ByPartition<Rec>) -> bool + Send + 'static,
{
    read_until_within(kafka, topic, DEADLINE, done).await
}

/// [`read_until`] with a deadline of `within` rather than [`DEADLINE`].
pub async fn read_until_within<F>(
    kafka: &Kafka,
    topic: &str,
    within: Duration,
    done: F,
) -> ByPartition<Rec>
where
    F: Fn(&ByPartition<Rec>) -> bool + Send + 'static,
{
    let (kafka, topic, topic_name) = (kafka.clone(), topic.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || read_blocking(&kafka, &topic, within, &done))
        .await
        .unwrap_or_else(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("reading {topic_name}: {e}"),
        })
}

/// Every record of `topic` now: from its start to its end offsets.
pub async fn read_all(kafka: &Kafka, topic: &str) -> ByPartition<Rec> {
    read_until(kafka, topic, |_| true).await
}

/// Reads `topic` until each partition `want` lists has its last record (by `view`), then
/// to its end, and returns every record by `view`: compared with `want`, that shows
/// missing, repeated, reordered and extra records alike. The last records are the
/// markers: a partition's records are written in order, so once its last expected one is
/// there, everything before it is too.
pub async fn read_expecting<T, V>(
    kafka: &Kafka,
    topic: &str,
    want: &ByPartition<T>,
    view: V,
) -> ByPartition<T>
where
    T: PartialEq + Clone + Send + 'static,
    V: Fn(&Rec) -> T + Copy + Send + 'static,
{
    let markers: Vec<(i32, T)> = want
        .iter()
        .filter_map(|(p, records)| Some((*p, records.last()?.clone())))
        .collect();
    let got = read_until(kafka, topic, move |got| {
        markers.iter().all(|(p, last)| {
            got.get(p)
                .is_some_and(|records| records.iter().any(|r| view(r) == *last))
        })
    })
    .await;
    got.into_iter()
        .map(|(p, records)| (p, records.iter().map(view).collect()))
        .collect()
}

fn read_blocking(
    kafka: &Kafka,
    topic: &str,
    within: Duration,
    done: &dyn Fn(&ByPartition<Rec>) -> bool,
) -> ByPartition<Rec> {
    let consumer = assigned_from_start(kafka, topic);
    let deadline = std::time::Instant::now() + within;
    let mut got = ByPartition::new();
    while !done(&got) {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: the expected records did not arrive within {within:?}; read: {}",
            describe(&got)
        );
        poll_into(&consumer, topic, &mut got);
    }
    // On to the end offsets of this moment.
    let ends: BTreeMap<i32, i64> = partitions(&consumer, topic)
        .into_iter()
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{topic} [{p}]: end offset: {e}"));
            (p, high)
        })
        .collect();
    let at_end = |got: &ByPartition<Rec>| {
        ends.iter().all(|(p, high)| {
            *high == 0
                || got
                    .get(p)
                    .and_then(|r| r.last())
                    .is_some_and(|r| r.offset + 1 >= *high)
        })
    };
    while !at_end(&got) {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: could not read to the end offsets {ends:?}; read: {}",
            describe(&got)
        );
        poll_into(&consumer, topic, &mut got);
    }
    got
}

/// A consumer assigned every partition of `topic` (waiting for the topic to exist) from
/// its start: no group to join, nothing committed.
fn assigned_from_start(kafka: &Kafka, topic: &str) -> BaseConsumer {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let consumer: BaseConsumer = consumer_config(kafka, &format!("check-{topic}-{nanos}"))
        .create()
        .unwrap_or_else(|e| panic!("a consumer of {topic}: {e}"));
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut ids = partitions(&consumer, topic);
    while ids.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "topic {topic} does not exist"
        );
        std::thread::sleep(Duration::from_millis(100));
        ids = partitions(&consumer, topic);
    }
    let mut tpl = TopicPartitionList::new();
    for p in ids {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap_or_else(|e| panic!("{topic} [{p}]: {e}"));
    }
    consumer
        .assign(&tpl)
        .unwrap_or_else(|e| panic!("assigning {topic}: {e}"));
    consumer
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map(|md| {
            md.topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect()
        })
        .unwrap_or_default()
}

fn poll_into(consumer: &BaseConsumer, topic: &str, got: &mut ByPartition<Rec>) {
    let Some(m) = consumer.poll(Duration::from_millis(100)) else {
        return;
    };
    let m = m.unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
    got.entry(m.partition()).or_default().push(Rec {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        timestamp: m.timestamp().to_millis().unwrap_or_default(),
    });
}

fn describe(got: &ByPartition<Rec>) -> String {
    let shown: BTreeMap<i32, Vec<String>> = got
        .iter()
        .map(|(p, records)| {
            let list = records
                .iter()
                .map(|r| format!("{}={}", r.key_text(), r.json()))
                .collect();
            (*p, list)
        })
        .collect();
    format!("{shown:?}")
}

/// Waits until the persistent query writing `sink` has processed `n` input records. A
/// query counts a batch once every output of it is acknowledged, so from then on its
/// outputs for those records are all in the sink.
pub async fn wait_processed(engine: &Engine, sink: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let query = engine.queries().await.into_iter().find(|q| q.sink == sink);
        let seen = query.as_ref().map_or(0, |q| q.stats.records_in);
        if seen >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the query writing {sink} processed {seen} of {n} records: {query:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails, naming each partition's first difference, unless `got` is `want`: the same
/// records in the same partitions in the same order, none missing, repeated or extra.
#[track_caller]
pub fn assert_same<T: PartialEq + std::fmt::Debug>(
    got: &ByPartition<T>,
    want: &ByPartition<T>,
    what: &str,
) {
    if got == want {
        return;
    }
    let mut differences = Vec::new();
    let partitions: std::collections::BTreeSet<&i32> = got.keys().chain(want.keys()).collect();
    for p in partitions {
        let (g, w) = (
            got.get(p).map_or(&[][..], Vec::as_slice),
            want.get(p).map_or(&[][..], Vec::as_slice),
        );
        if g == w {
            continue;
        }
        let at = g.iter().zip(w).take_while(|(a, b)| a == b).count();
        differences.push(format!(
            "partition {p}: {} records, {} expected; first difference at {at}: got {:?}, expected {:?}",
            g.len(),
            w.len(),
            g.get(at),
            w.get(at)
        ));
    }
    panic!("{what}:\n{}", differences.join("\n"));
}

/// How many records `topic` holds now, over all its partitions.
pub async fn record_count(kafka: &Kafka, topic: &str) -> i64 {
    let (kafka, topic) = (kafka.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer = assigned_from_start(&kafka, &topic);
        partitions(&consumer, &topic)
            .into_iter()
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{topic} [{p}]: offsets: {e}"));
                high - low
            })
            .sum()
    })
    .await
    .unwrap_or_else(|e| panic!("counting records: {e}"))
}
