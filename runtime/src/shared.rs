//! Input topics read once for many queries (ksqlDB's "shared runtimes" in spirit).
//!
//! A consumer per persistent query costs each idle query librdkafka's threads and buffers
//! (about four threads and 1 MiB) and costs the broker a fetch per query per fetch wait,
//! even with no data. Stateless queries over the same topic therefore share one reader:
//! a consumer with the topic's partitions assigned, whose batches go to every subscribed
//! query through a bounded channel.
//!
//! Each subscriber has its own position per partition and gets only records at or past it,
//! so queries that started at different offsets share the reader: one that subscribes
//! behind the reader rewinds it, and the others skip what they have already seen. A query
//! pauses by dropping its subscription and resumes by subscribing again at its positions.
//! A subscriber whose channel is full holds the reader back: the backpressure reaches the
//! other queries on the topic, as in a shared Kafka Streams runtime.
//!
//! Positions are not committed by a consumer (that would take a client per group); they
//! are kept in [`OffsetStore`], one compacted topic keyed by query id, and copied every few
//! seconds to the consumer group named after the query (`_brook_query_<id>`) with Kafka's
//! admin call, so Kafka's group tools and lag monitors see each query.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::changelog::{marker_value, parse_marker, Positions};
use crate::error::{Result, RuntimeError};
use crate::kafka::{client_config, consumer_config, create_topic_with, Kafka};
use crate::metrics::STATISTICS_INTERVAL_MS;
use crate::rows::Record;
use crate::task::{linger_for, to_record};

/// The compacted topic where queries on shared readers keep their input positions.
pub const OFFSETS_TOPIC: &str = "_brook_query_offsets";

/// Batches a subscriber may have queued before it holds the reader back.
const QUEUED_BATCHES: usize = 2;

/// Where a subscriber starts on a partition it has no position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
}

impl Start {
    /// `auto.offset.reset` as a start.
    pub fn from_reset(reset: &str) -> Start {
        if reset.eq_ignore_ascii_case("latest") {
            Start::Latest
        } else {
            Start::Earliest
        }
    }
}

/// The high watermark of each partition, from the reader's librdkafka statistics.
type HighWatermarks = Arc<Mutex<BTreeMap<i32, i64>>>;

/// A query's place on a shared reader.
pub struct Subscription {
    /// The records of the topic from the subscriber's positions on, in batches.
    pub batches: mpsc::Receiver<Vec<Record>>,
    /// Where the subscriber starts, per partition.
    pub start: BTreeMap<i32, i64>,
    high: HighWatermarks,
}

impl Subscription {
    /// How far `positions` (the next offset per partition) are behind the topic's end, as
    /// far as the reader's statistics know it.
    pub fn lag(&self, positions: &BTreeMap<i32, i64>) -> Option<i64> {
        let high = self.high.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = None;
        for (p, h) in high.iter() {
            if let Some(pos) = positions.get(p) {
                *total.get_or_insert(0) += (h - pos).max(0);
            }
        }
        total
    }
}

struct Subscribe {
    from: BTreeMap<i32, i64>,
    start: Start,
    batches: mpsc::Sender<Vec<Record>>,
    reply: oneshot::Sender<Result<BTreeMap<i32, i64>>>,
}

/// A running reader: where subscriptions go, and the watermarks its statistics report.
#[derive(Clone)]
struct Reader {
    commands: mpsc::UnboundedSender<Subscribe>,
    high: HighWatermarks,
}

/// The shared readers of a server, one per input topic, and the store of their
/// subscribers' positions.
pub struct SharedInputs {
    bootstrap: Kafka,
    max_batch: usize,
    linger: Duration,
    readers: tokio::sync::Mutex<HashMap<String, Reader>>,
    pub offsets: OffsetStore,
}

impl std::fmt::Debug for SharedInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedInputs")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl SharedInputs {
    /// Readers over `bootstrap`, batching as a task does; positions are written through
    /// `producer`.
    pub fn new(
        bootstrap: &Kafka,
        max_batch: usize,
        linger: Duration,
        producer: FutureProducer,
    ) -> Self {
        SharedInputs {
            bootstrap: bootstrap.clone(),
            max_batch,
            linger,
            readers: tokio::sync::Mutex::new(HashMap::new()),
            offsets: OffsetStore::new(bootstrap, OFFSETS_TOPIC, producer),
        }
    }

    /// Subscribes to `topic` at `from` (the next offset per partition); partitions without
    /// a position start where `start` says. A reader the subscription starts gets the
    /// librdkafka settings `overrides` (such as the fetch wait).
    pub async fn subscribe(
        &self,
        topic: &str,
        from: BTreeMap<i32, i64>,
        start: Start,
        overrides: &[(String, String)],
    ) -> Result<Subscription> {
        let mut readers = self.readers.lock().await;
        // A reader whose task ended (its consumer failed) is replaced, once.
        for _ in 0..2 {
            let reader = match readers.get(topic) {
                Some(r) if !r.commands.is_closed() => r.clone(),
                _ => {
                    let r = self.spawn_reader(topic, overrides).await?;
                    readers.insert(topic.to_string(), r.clone());
                    r
                }
            };
            let (tx, rx) = mpsc::channel(QUEUED_BATCHES);
            let (reply, answer) = oneshot::channel();
            let sent = reader.commands.send(Subscribe {
                from: from.clone(),
                start,
                batches: tx,
                reply,
            });
            let Ok(()) = sent else {
                readers.remove(topic);
                continue;
            };
            let Ok(started) = answer.await else {
                readers.remove(topic);
                continue;
            };
            return Ok(Subscription {
                batches: rx,
                start: started?,
                high: reader.high,
            });
        }
        Err(RuntimeError::Broker(format!(
            "the reader of {topic} stopped"
        )))
    }

    async fn spawn_reader(&self, topic: &str, overrides: &[(String, String)]) -> Result<Reader> {
        let high = HighWatermarks::default();
        let mut cc = consumer_config(&self.bootstrap, "_brook_shared_reader");
        cc.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        for (k, v) in overrides {
            cc.set(k, v);
        }
        let consumer: StreamConsumer<Watermarks> = cc.create_with_context(Watermarks {
            topic: topic.to_string(),
            high: high.clone(),
        })?;
        let consumer = Arc::new(consumer);
        let partitions = {
            let c = consumer.clone();
            let t = topic.to_string();
            tokio::task::spawn_blocking(move || -> Result<Vec<i32>> {
                let md = c.fetch_metadata(None, Duration::from_secs(30))?;
                Ok(md
                    .topics()
                    .iter()
                    .find(|m| m.name() == t && m.error().is_none())
                    .map(|m| m.partitions().iter().map(|p| p.id()).collect())
                    .unwrap_or_default())
            })
            .await
            .map_err(|e| RuntimeError::Broker(format!("metadata task failed: {e}")))??
        };
        if partitions.is_empty() {
            return Err(RuntimeError::Broker(format!(
                "the input topic {topic} does not exist"
            )));
        }
        let (commands, rx) = mpsc::unbounded_channel();
        let run = ReaderTask {
            topic: topic.to_string(),
            consumer,
            partitions,
            max_batch: self.max_batch,
            linger: self.linger,
            subscribers: Vec::new(),
            position: BTreeMap::new(),
        };
        tokio::spawn(run.run(rx));
        debug!(topic, "shared reader started");
        Ok(Reader { commands, high })
    }
}

/// The reader's consumer context: keeps the topic's high watermarks for subscribers' lag.
struct Watermarks {
    topic: String,
    high: HighWatermarks,
}

impl ClientContext for Watermarks {
    fn stats(&self, statistics: Statistics) {
        let Some(t) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut high = self.high.lock().unwrap_or_else(|e| e.into_inner());
        for (p, part) in &t.partitions {
            if *p >= 0 && part.hi_offset >= 0 {
                high.insert(*p, part.hi_offset);
            }
        }
    }
}

impl ConsumerContext for Watermarks {}

struct Subscriber {
    next: BTreeMap<i32, i64>,
    batches: mpsc::Sender<Vec<Record>>,
}

struct ReaderTask {
    topic: String,
    consumer: Arc<StreamConsumer<Watermarks>>,
    partitions: Vec<i32>,
    max_batch: usize,
    linger: Duration,
    subscribers: Vec<Subscriber>,
    /// The offset the consumer delivers next, per partition; empty while unassigned.
    position: BTreeMap<i32, i64>,
}

impl ReaderTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Subscribe>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let reading = !self.position.is_empty();
            tokio::select! {
                c = commands.recv() => match c {
                    Some(s) => {
                        let started = self.subscribe(s.from, s.start).await;
                        if let Ok(next) = &started {
                            self.subscribers.push(Subscriber {
                                next: next.clone(),
                                batches: s.batches,
                            });
                        }
                        let _ = s.reply.send(started);
                    }
                    None => break,
                },
                _ = tick.tick() => self.drop_gone(),
                m = self.consumer.recv(), if reading => {
                    let first = match m {
                        Ok(m) => to_record(&m),
                        Err(e) => {
                            warn!(topic = %self.topic, error = %e, "shared read failed; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let mut batch = vec![first];
                    let (max, linger) = (self.max_batch, self.linger);
                    linger_for(&self.consumer, 1, max, linger, &self.topic, |m| {
                        batch.push(to_record(m))
                    })
                    .await;
                    self.deliver(batch).await;
                }
            }
        }
        debug!(topic = %self.topic, "shared reader stopped");
        // Closing a consumer waits on the broker, which may run on this runtime: not on
        // one of its threads.
        let consumer = self.consumer;
        tokio::task::spawn_blocking(move || drop(consumer));
    }

    /// Resolves a new subscriber's start per partition and rewinds the consumer where the
    /// subscriber is behind it.
    async fn subscribe(
        &mut self,
        from: BTreeMap<i32, i64>,
        start: Start,
    ) -> Result<BTreeMap<i32, i64>> {
        let missing: Vec<i32> = self
            .partitions
            .iter()
            .copied()
            .filter(|p| !from.contains_key(p))
            .collect();
        let mut next = from;
        if !missing.is_empty() {
            let c = self.consumer.clone();
            let t = self.topic.clone();
            let marks = tokio::task::spawn_blocking(move || -> Result<Vec<(i32, i64)>> {
                missing
                    .into_iter()
                    .map(|p| {
                        let (low, high) = c.fetch_watermarks(&t, p, Duration::from_secs(30))?;
                        Ok((p, if start == Start::Latest { high } else { low }))
                    })
                    .collect()
            })
            .await
            .map_err(|e| RuntimeError::Broker(format!("watermark task failed: {e}")))??;
            next.extend(marks);
        }
        let behind = self
            .partitions
            .iter()
            .any(|p| match (self.position.get(p), next.get(p)) {
                (Some(at), Some(want)) => want < at,
                (None, _) => true,
                _ => false,
            });
        if behind {
            let mut tpl = TopicPartitionList::new();
            for p in &self.partitions {
                let want = next.get(p).copied().unwrap_or(0);
                let at = self.position.get(p).map_or(want, |at| (*at).min(want));
                tpl.add_partition_offset(&self.topic, *p, Offset::Offset(at))?;
                self.position.insert(*p, at);
            }
            self.consumer.assign(&tpl)?;
        }
        Ok(next)
    }

    /// Hands each subscriber the records of `batch` at or past its positions.
    async fn deliver(&mut self, batch: Vec<Record>) {
        for r in &batch {
            self.position.insert(r.partition, r.offset + 1);
        }
        let mut gone = false;
        for s in &mut self.subscribers {
            let share: Vec<Record> = batch
                .iter()
                .filter(|r| s.next.get(&r.partition).is_none_or(|n| r.offset >= *n))
                .cloned()
                .collect();
            for r in &share {
                s.next.insert(r.partition, r.offset + 1);
            }
            if !share.is_empty() && s.batches.send(share).await.is_err() {
                gone = true;
            }
        }
        if gone {
            self.drop_gone();
        }
    }

    /// Forgets subscribers that went away; with none left the consumer stops fetching.
    fn drop_gone(&mut self) {
        self.subscribers.retain(|s| !s.batches.is_closed());
        if self.subscribers.is_empty() && !self.position.is_empty() {
            if let Err(e) = self.consumer.unassign() {
                warn!(topic = %self.topic, error = %e, "unassigning the shared reader failed");
            }
            self.position.clear();
        }
    }
}

/// Queries' input positions in a compacted topic keyed by query id, read once and then
/// kept in memory (the server is the topic's only writer).
pub struct OffsetStore {
    bootstrap: Kafka,
    topic: String,
    producer: FutureProducer,
    loaded: tokio::sync::OnceCell<Mutex<HashMap<String, Positions>>>,
    groups: Arc<GroupMirror>,
    mirroring: std::sync::OnceLock<()>,
}

/// How often positions stored since are copied to the queries' consumer groups: one admin
/// request per moving query each time, however often its positions are stored.
const MIRROR_EVERY: Duration = Duration::from_secs(5);

/// Copies stored positions to the consumer groups named after their queries.
struct GroupMirror {
    bootstrap: Kafka,
    admin: std::sync::OnceLock<Option<Arc<AdminClient<DefaultClientContext>>>>,
    /// Positions stored and not copied yet, by query id.
    pending: Mutex<HashMap<String, Positions>>,
    /// Whether a failed copy was logged as a warning (later ones only at debug level).
    warned: std::sync::atomic::AtomicBool,
}

impl GroupMirror {
    fn admin(&self) -> Option<Arc<AdminClient<DefaultClientContext>>> {
        self.admin
            .get_or_init(|| match client_config(&self.bootstrap).create() {
                Ok(a) => Some(Arc::new(a)),
                Err(e) => {
                    warn!(error = %e, "no admin client: query positions stay out of consumer groups");
                    None
                }
            })
            .clone()
    }

    fn note(&self, id: &str, positions: &Positions) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(id.to_string(), positions.clone());
    }

    /// Copies what is pending (of query `only`, or all).
    async fn flush(&self, only: Option<&str>) {
        let due: Vec<(String, Positions)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match only {
                Some(id) => pending.remove_entry(id).into_iter().collect(),
                None => pending.drain().collect(),
            }
        };
        if due.is_empty() {
            return;
        }
        let Some(admin) = self.admin() else {
            return;
        };
        for (id, positions) in due {
            let group = crate::task::query_group(&id);
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &positions {
                if tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err() {
                    continue;
                }
            }
            let admin = admin.clone();
            let g = group.clone();
            let done = tokio::task::spawn_blocking(move || {
                crate::kafka::alter_group_offsets(&admin, &g, &tpl, Duration::from_secs(10))
            })
            .await
            .map_err(|e| RuntimeError::Broker(format!("group offsets task failed: {e}")))
            .and_then(|r| r);
            if let Err(e) = done {
                if self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    debug!(query = %id, group = %group, error = %e, "positions not copied to the consumer group");
                } else {
                    warn!(query = %id, group = %group, error = %e, "positions not copied to the consumer group (the query's own positions are kept; only Kafka's group tools miss them)");
                }
            }
        }
    }

    /// Deletes query `id`'s consumer group (a terminated query's); a group that does not
    /// exist is fine.
    async fn delete(&self, id: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let Some(admin) = self.admin() else {
            return;
        };
        let group = crate::task::query_group(id);
        let opts =
            rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        match admin.delete_groups(&[group.as_str()], &opts).await {
            Ok(results) => {
                for r in results {
                    if let Err((g, code)) = r {
                        debug!(group = %g, error = %code, "consumer group not deleted");
                    }
                }
            }
            Err(e) => debug!(group = %group, error = %e, "consumer group not deleted"),
        }
    }
}

impl OffsetStore {
    pub fn new(bootstrap: &Kafka, topic: &str, producer: FutureProducer) -> Self {
        OffsetStore {
            bootstrap: bootstrap.clone(),
            topic: topic.to_string(),
            producer,
            loaded: tokio::sync::OnceCell::new(),
            groups: Arc::new(GroupMirror {
                bootstrap: bootstrap.clone(),
                admin: std::sync::OnceLock::new(),
                pending: Mutex::new(HashMap::new()),
                warned: std::sync::atomic::AtomicBool::new(false),
            }),
            mirroring: std::sync::OnceLock::new(),
        }
    }

    /// Starts copying positions to consumer groups every [`MIRROR_EVERY`], for as long as
    /// the store lives.
    fn mirror(&self) {
        self.mirroring.get_or_init(|| {
            let groups = Arc::downgrade(&self.groups);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(MIRROR_EVERY).await;
                    let Some(groups) = groups.upgrade() else {
                        break;
                    };
                    groups.flush(None).await;
                }
            });
        });
    }

    async fn all(&self) -> Result<&Mutex<HashMap<String, Positions>>> {
        self.loaded
            .get_or_try_init(|| async {
                create_topic_with(
                    &self.bootstrap,
                    &self.topic,
                    1,
                    1,
                    &[("cleanup.policy", "compact")],
                )
                .await?;
                let (b, t) = (self.bootstrap.clone(), self.topic.clone());
                let records = tokio::task::spawn_blocking(move || {
                    crate::changelog::read_records(&b, &t, Duration::from_secs(120))
                })
                .await
                .map_err(|e| RuntimeError::State(format!("reading {}: {e}", self.topic)))??;
                let mut all = HashMap::new();
                for (k, v) in records {
                    let id = String::from_utf8_lossy(&k).into_owned();
                    match v {
                        Some(v) => all.insert(id, parse_marker(&v)?),
                        None => all.remove(&id),
                    };
                }
                Ok::<_, RuntimeError>(Mutex::new(all))
            })
            .await
    }

    /// The positions query `id` last stored, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Positions>> {
        let all = self.all().await?;
        let all = all.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all.get(id).cloned())
    }

    /// Stores the positions of query `id`; with `wait`, returns once Kafka has them.
    /// Without, a lost write only means a restart reads some input again (at-least-once).
    pub async fn put(&self, id: &str, positions: &Positions, wait: bool) -> Result<()> {
        {
            let all = self.all().await?;
            let mut all = all.lock().unwrap_or_else(|e| e.into_inner());
            all.insert(id.to_string(), positions.clone());
        }
        let value = marker_value(positions);
        self.write(id, Some(&value), wait).await?;
        self.groups.note(id, positions);
        if wait {
            // A pause or a stop: the group shows where the query stands right away.
            self.groups.flush(Some(id)).await;
        } else {
            self.mirror();
        }
        Ok(())
    }

    /// Forgets query `id` (a terminated query), so a query that reuses its id starts anew.
    pub async fn forget(&self, id: &str) -> Result<()> {
        self.groups.delete(id).await;
        {
            let all = self.all().await?;
            let mut all = all.lock().unwrap_or_else(|e| e.into_inner());
            if all.remove(id).is_none() {
                return Ok(());
            }
        }
        self.write(id, None, true).await
    }

    async fn write(&self, id: &str, value: Option<&[u8]>, wait: bool) -> Result<()> {
        let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(id);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        let delivery = self
            .producer
            .send_result(rec)
            .map_err(|(e, _)| RuntimeError::from(e))?;
        if wait {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(e.into()),
                Err(_) => return Err(RuntimeError::Broker("the producer was dropped".into())),
            }
        }
        Ok(())
    }
}

/// The offsets group `group` committed for `topic` (Brook before shared readers committed
/// stateless queries' positions there); empty when there are none.
pub async fn group_offsets(bootstrap: &Kafka, group: &str, topic: &str) -> Result<Positions> {
    let cc = consumer_config(bootstrap, group);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || -> Result<Positions> {
        let c: BaseConsumer = cc.create()?;
        let md = c.fetch_metadata(None, Duration::from_secs(30))?;
        let mut tpl = TopicPartitionList::new();
        for t in md.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                tpl.add_partition(&topic, p.id());
            }
        }
        if tpl.count() == 0 {
            return Ok(Positions::new());
        }
        let committed = c.committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect())
    })
    .await
    .map_err(|e| RuntimeError::Broker(format!("offsets task failed: {e}")))?
}
