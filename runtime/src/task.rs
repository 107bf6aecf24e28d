//! A persistent query running over Kafka: consume the input topic in the query's consumer
//! group, run the pipeline over small batches, produce the results, and commit the input
//! offsets only once every output produced from them is acknowledged (at-least-once).
//!
//! The loop is shaped so that exactly-once drops in without a rewrite: each batch is one
//! unit (consume → process → produce → commit); with a transactional producer the commit
//! becomes `send_offsets_to_transaction` + `commit_transaction` around the same unit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::changelog::Positions;
use crate::error::{Result, RuntimeError};
use crate::kafka::{consumer_config, create_topic_with, producer_config, topic_partitions, Kafka};
use crate::metrics::{LagContext, QueryMetrics, STATISTICS_INTERVAL_MS};
use crate::pipeline::Pipeline;
use crate::rows::Record;

/// How a task batches its input.
#[derive(Clone)]
pub struct TaskConfig {
    /// The cluster, with the security settings every client gets.
    pub kafka: Kafka,
    /// Most records in one batch.
    pub max_batch: usize,
    /// How long a batch waits for more records after its first: short, so latency stays
    /// low at low rates, while batches still fill at high rates.
    pub linger: Duration,
    /// `auto.offset.reset` for a group without committed offsets.
    pub offset_reset: String,
    /// librdkafka consumer settings over the defaults (such as `fetch.wait.max.ms`).
    pub consumer_overrides: Vec<(String, String)>,
    /// The producer outputs and changelogs go through. A server shares one among all its
    /// queries, which saves each query a client and its threads; without one a task
    /// creates its own. (Exactly-once will need a transactional producer per task.)
    pub producer: Option<FutureProducer>,
    /// Readers shared among the server's stateless queries (see [`crate::shared`]);
    /// without them each query has its own consumer.
    pub shared: Option<Arc<crate::shared::SharedInputs>>,
    /// ksqlDB's processing log as a topic, when the server writes one
    /// (`ksql.logging.processing.topic.auto.create`); skipped records are logged as
    /// warnings either way.
    pub processing_log: Option<Arc<crate::processing_log::ProcessingLog>>,
    /// On a shared reader, a query without stored positions looks for offsets committed
    /// in its consumer group (where Brook kept them before shared readers). Only a query
    /// that ran before can have any, so the engine asks for it only when it restores
    /// queries: the lookup costs a client per query.
    pub group_offsets: bool,
}

impl std::fmt::Debug for TaskConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskConfig")
            .field("kafka", &self.kafka)
            .field("max_batch", &self.max_batch)
            .field("linger", &self.linger)
            .field("offset_reset", &self.offset_reset)
            .field("consumer_overrides", &self.consumer_overrides)
            .field("shared_producer", &self.producer.is_some())
            .field("shared_inputs", &self.shared.is_some())
            .field("processing_log", &self.processing_log)
            .field("group_offsets", &self.group_offsets)
            .finish()
    }
}

impl TaskConfig {
    pub fn new(kafka: &Kafka) -> Self {
        TaskConfig {
            kafka: kafka.clone(),
            max_batch: 4096,
            linger: Duration::from_millis(5),
            offset_reset: "earliest".to_string(),
            consumer_overrides: Vec::new(),
            producer: None,
            shared: None,
            processing_log: None,
            group_offsets: false,
        }
    }

    fn producer(&self) -> Result<FutureProducer> {
        match &self.producer {
            Some(p) => Ok(p.clone()),
            None => Ok(producer_config(&self.kafka).create()?),
        }
    }
}

/// Counters a running task exposes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskStats {
    pub records_in: u64,
    pub records_out: u64,
    pub errors: u64,
}

/// A consumed Kafka message as a record of the runtime.
pub fn to_record(m: &BorrowedMessage<'_>) -> Record {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                .collect()
        })
        .unwrap_or_default();
    Record {
        key: m.key().map(|k| k.to_vec()),
        value: m.payload().map(|v| v.to_vec()),
        timestamp: m.timestamp().to_millis().unwrap_or(0),
        headers,
        partition: m.partition(),
        offset: m.offset(),
    }
}

async fn delivered(d: rdkafka::producer::DeliveryFuture) -> Result<()> {
    match d.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e.into()),
        Err(_) => Err(RuntimeError::Broker("the producer was dropped".into())),
    }
}

/// A record to produce: key, value, timestamp.
type ToSend<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, Option<i64>);

mod delivery;
pub use delivery::transient;
use delivery::{Retry, Sink};

/// Produces records to one partition (a state partition's changelog), or by key when
/// `None`, and waits for every acknowledgement; a full producer queue waits for the oldest
/// delivery first. Returns how many were acknowledged. Query results go through a
/// [`Sink`] instead, which rides out transient failures.
async fn send_to(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    records: Vec<ToSend<'_>>,
) -> Result<u64> {
    let mut deliveries = std::collections::VecDeque::new();
    let mut acked = 0u64;
    for (key, value, timestamp) in records {
        loop {
            let rec = delivery::record(topic, partition, key, value, timestamp);
            match producer.send_result(rec) {
                Ok(d) => {
                    deliveries.push_back(d);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match deliveries.pop_front() {
                        Some(d) => {
                            delivered(d).await?;
                            acked += 1;
                        }
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    for d in deliveries {
        delivered(d).await?;
        acked += 1;
    }
    Ok(acked)
}

/// A state partition's changelog partition: where its changes and markers go, and the
/// slot bookkeeping of [`crate::changelog`] the next batch needs.
struct ChangelogWriter {
    topic: String,
    partition: i32,
    slots: crate::changelog::Slots,
}

impl ChangelogWriter {
    /// Records the state changed since the last call (each entry in the slot not holding
    /// its committed value), then the marker that commits it: the input positions the
    /// state corresponds to. Each step is acknowledged before the next, and sent again in
    /// order after a transient failure. False when the query was stopped meanwhile: the
    /// batch's state is then not committed.
    async fn write(
        &mut self,
        pipeline: &mut Pipeline,
        producer: &FutureProducer,
        positions: &Positions,
        retry: &mut Retry,
    ) -> Result<bool> {
        let changes = pipeline.take_changes()?;
        let batch = self.slots.batch(&changes, positions);
        for step in [
            &batch.clear_old,
            &batch.records,
            &vec![batch.marker.clone()],
        ] {
            if step.is_empty() {
                continue;
            }
            let records = step
                .iter()
                .map(|(k, v)| (Some(k.as_slice()), v.as_deref(), None))
                .collect();
            let sent =
                delivery::send_in_order(producer, &self.topic, self.partition, records, retry);
            if !sent.await? {
                return Ok(false);
            }
        }
        self.slots.committed(changes, batch);
        Ok(true)
    }
}

/// Restores a state partition from its partition of the query's changelog; returns the
/// input positions the state corresponds to and the partition's writer. Slots holding a
/// dead batch's values are cleared first (see [`crate::changelog`]).
async fn restore(
    pipeline: &mut Pipeline,
    config: &TaskConfig,
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
) -> Result<(Positions, ChangelogWriter)> {
    let bootstrap = config.kafka.clone();
    let t = topic.to_string();
    let restored = tokio::task::spawn_blocking(move || {
        crate::changelog::read(&bootstrap, &t, partition, Duration::from_secs(120))
    })
    .await
    .map_err(|e| RuntimeError::State(format!("restoring {topic}: {e}")))??;
    for (k, v) in &restored.entries {
        pipeline.restore(k, v)?;
    }
    if !restored.rewrite.is_empty() {
        send_to(
            producer,
            topic,
            Some(partition),
            restored
                .rewrite
                .iter()
                .map(|(k, v)| (Some(k.as_slice()), v.as_deref(), None))
                .collect(),
        )
        .await?;
    }
    if !restored.entries.is_empty() {
        info!(query = %pipeline.id, entries = restored.entries.len(), rewritten = restored.rewrite.len(), "state restored from {topic} partition {partition}");
    }
    let writer = ChangelogWriter {
        topic: topic.to_string(),
        partition,
        slots: crate::changelog::Slots::restored(&restored),
    };
    Ok((restored.positions, writer))
}

/// Assigns every partition of `topics`, each at its restored position, else at the group's
/// committed offset, else where `auto.offset.reset` says; returns where each starts.
async fn assign(
    consumer: &Arc<QueryConsumer>,
    config: &TaskConfig,
    topics: &[String],
    positions: &Positions,
) -> Result<Positions> {
    let counts = topic_partitions(&config.kafka, Duration::from_secs(30)).await?;
    let mut all = TopicPartitionList::new();
    for t in topics {
        let n = counts
            .get(t)
            .copied()
            .ok_or_else(|| RuntimeError::Broker(format!("the input topic {t} does not exist")))?;
        for p in 0..n {
            all.add_partition(t, p);
        }
    }
    // Offsets committed by an earlier run (or a version without changelogs); none is fine.
    let wanted = all.clone();
    let committed = blocking(consumer, move |c| {
        c.committed_offsets(wanted, Duration::from_secs(10))
    })
    .await?
    .unwrap_or_else(|_| all.clone());
    let latest = config.offset_reset == "latest";
    let mut tpl = TopicPartitionList::new();
    let mut start = Positions::new();
    let wanted: Vec<(String, i32)> = all
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect();
    let committed: Vec<((String, i32), Option<i64>)> = wanted
        .into_iter()
        .map(|(t, p)| {
            let o = match committed.find_partition(&t, p).map(|c| c.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            ((t, p), o)
        })
        .collect();
    for ((topic, partition), group) in committed {
        let offset = match positions.get(&(topic.clone(), partition)) {
            Some(o) => *o,
            None => match group {
                Some(o) => o,
                // `auto.offset.reset` resolved here, so the state partitions can record
                // where the input started (see `run_stateful`).
                _ => {
                    let t = topic.clone();
                    let (low, high) = blocking(consumer, move |c| {
                        c.fetch_watermarks(&t, partition, Duration::from_secs(10))
                    })
                    .await??;
                    if latest {
                        high
                    } else {
                        low
                    }
                }
            },
        };
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
        start.insert((topic, partition), offset);
    }
    consumer.assign(&tpl)?;
    Ok(start)
}

/// The consumer of a persistent query: its context turns librdkafka's statistics into the
/// query's consumer lag.
type QueryConsumer = StreamConsumer<LagContext>;

/// How the engine steers a running task and what the task reports back.
pub struct Control {
    /// Turns true to stop the task (after its last commit).
    pub stop: watch::Receiver<bool>,
    /// While true the task consumes nothing; its state and offsets stay as they are, so
    /// turning it false again continues exactly where it left off.
    pub paused: watch::Receiver<bool>,
    pub stats: watch::Sender<TaskStats>,
    pub metrics: Arc<QueryMetrics>,
}

/// Runs a query until `stop` turns true or an unrecoverable error occurs. Records that do
/// not decode are logged with topic, partition and offset and skipped.
pub async fn run(
    pipeline: Pipeline,
    config: TaskConfig,
    stop: watch::Receiver<bool>,
    stats: watch::Sender<TaskStats>,
) -> Result<()> {
    // Never paused: the sender lives as long as the task.
    let (_never_paused, paused) = watch::channel(false);
    run_with(
        pipeline,
        config,
        Control {
            stop,
            paused,
            stats,
            metrics: Arc::new(QueryMetrics::new()),
        },
    )
    .await
}

/// The next value of a watch; never resolves once its sender is gone (the last value
/// stands), so a `select!` over it does not spin.
async fn next_value(rx: &mut watch::Receiver<bool>) -> bool {
    match rx.changed().await {
        Ok(()) => *rx.borrow_and_update(),
        Err(_) => std::future::pending().await,
    }
}

/// The partitions a pause holds, so a resume releases exactly them. librdkafka keeps an
/// application pause on a partition across rebalances, so the set outlives assignments.
#[derive(Default)]
struct Held {
    partitions: TopicPartitionList,
}

impl Held {
    fn pause(&mut self, consumer: &QueryConsumer, tpl: &TopicPartitionList) -> Result<()> {
        if tpl.count() == 0 {
            return Ok(());
        }
        consumer.pause(tpl)?;
        for e in tpl.elements() {
            if self
                .partitions
                .find_partition(e.topic(), e.partition())
                .is_none()
            {
                self.partitions.add_partition(e.topic(), e.partition());
            }
        }
        Ok(())
    }

    fn resume(&mut self, consumer: &QueryConsumer) -> Result<()> {
        if self.partitions.count() > 0 {
            consumer.resume(&self.partitions)?;
        }
        self.partitions = TopicPartitionList::new();
        Ok(())
    }
}

/// While paused: the consumer keeps polling (so it stays in its group and its statistics
/// keep coming) with every assigned partition paused, until it is resumed (`Ok(true)`) or
/// stopped (`Ok(false)`). A record that still arrives (a partition assigned after the
/// pause) is not processed: its partition is rewound to it and paused too.
async fn wait_paused(
    consumer: &Arc<QueryConsumer>,
    control: &mut Worker,
    id: &str,
) -> Result<bool> {
    let mut held = Held::default();
    // What was consumed is all processed: commit it, so even a group rebalance during the
    // pause resumes exactly here.
    if let Ok(tpl) = consumer.position() {
        if tpl.count() > 0 {
            let _ = blocking(consumer, move |c| c.commit(&tpl, CommitMode::Sync)).await;
        }
    }
    held.pause(consumer, &consumer.assignment()?)?;
    control.metrics.set_paused(true);
    info!(query = %id, "query paused");
    let resumed = loop {
        tokio::select! {
            _ = control.stop.changed() => break false,
            p = next_value(&mut control.paused) => if !p { break true },
            m = consumer.recv() => {
                let Ok(m) = m else { continue };
                let (topic, partition, offset) = (m.topic().to_string(), m.partition(), m.offset());
                drop(m);
                let at = topic.clone();
                blocking(consumer, move |c| {
                    c.seek(&at, partition, Offset::Offset(offset), Duration::from_secs(10))
                })
                .await??;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&topic, partition);
                held.pause(consumer, &tpl)?;
            }
        }
    };
    if resumed {
        held.resume(consumer)?;
        control.metrics.set_paused(false);
        info!(query = %id, "query resumed");
    }
    Ok(resumed)
}

/// When a query whose output waits on stream time (EMIT FINAL) has had no input for its
/// idle timeout, and how much wall-clock time passed since: that much is added to stream
/// time, once per timeout while the input stays quiet.
struct IdleClock {
    timeout: Option<Duration>,
    /// When the last input was processed. Unset until this run processes its first
    /// record, so a restarted query never moves time on ahead of a backlog it has not
    /// read yet.
    since: Option<tokio::time::Instant>,
    /// The idle time already handed to the pipeline since then.
    applied: Duration,
}

impl IdleClock {
    fn new(timeout: Option<Duration>) -> Self {
        IdleClock {
            timeout,
            since: None,
            applied: Duration::ZERO,
        }
    }

    fn input_seen(&mut self) {
        if self.timeout.is_some() {
            self.since = Some(tokio::time::Instant::now());
            self.applied = Duration::ZERO;
        }
    }

    /// A pause is not idleness: records produced meanwhile are on their way, so the
    /// clock starts over (if it was running).
    fn resumed(&mut self) {
        if self.since.is_some() {
            self.input_seen();
        }
    }

    /// Resolves when the next idle step is due, with the milliseconds of idle time not
    /// yet applied; never resolves for a query without an idle timeout.
    async fn due(&mut self) -> i64 {
        let (Some(timeout), Some(since)) = (self.timeout, self.since) else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(since + self.applied + timeout).await;
        let elapsed = since.elapsed();
        let step = elapsed.saturating_sub(self.applied);
        self.applied = elapsed;
        i64::try_from(step.as_millis()).unwrap_or(i64::MAX)
    }
}

/// One of a query's parallel workers: worker `index` of `count` takes the input partitions
/// `p` with `p % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub index: usize,
    pub count: usize,
}

impl Slot {
    #[cfg(test)]
    fn owns(&self, partition: i32) -> bool {
        usize::try_from(partition).is_ok_and(|p| p % self.count.max(1) == self.index)
    }

    /// The worker of `partition` among `count`.
    fn of(partition: i32, count: usize) -> usize {
        usize::try_from(partition).map_or(0, |p| p % count.max(1))
    }
}

/// What the consumer loop runs under: the query's [`Control`], with the counters behind
/// an `Arc` so parallel workers add to the same ones.
struct Worker {
    stop: watch::Receiver<bool>,
    paused: watch::Receiver<bool>,
    stats: Arc<watch::Sender<TaskStats>>,
    metrics: Arc<QueryMetrics>,
}

fn count(
    stats: &watch::Sender<TaskStats>,
    metrics: &QueryMetrics,
    records_in: u64,
    records_out: u64,
    errors: u64,
) {
    metrics.add_batch(records_in, records_out, errors);
    stats.send_modify(|s| {
        s.records_in += records_in;
        s.records_out += records_out;
        s.errors += errors;
    });
}

/// A batch's outputs as records to produce.
fn to_send(processed: &crate::pipeline::Processed) -> Vec<ToSend<'_>> {
    processed
        .outputs
        .iter()
        .map(|o| (o.key.as_deref(), o.value.as_deref(), Some(o.timestamp)))
        .collect()
}

/// The processing log: each record that did not decode or evaluate is named by topic,
/// partition and offset; it is skipped and the query goes on.
fn log_skipped(
    log: Option<&crate::processing_log::ProcessingLog>,
    id: &str,
    topic_of: impl Fn(usize) -> String,
    batch: &[Record],
    errors: &[(usize, String)],
) {
    for (i, e) in errors {
        let Some(r) = batch.get(*i) else { continue };
        let topic = topic_of(*i);
        warn!(
            query = %id,
            topic = %topic,
            partition = r.partition,
            offset = r.offset,
            "record skipped: {e}"
        );
        if let Some(log) = log {
            log.skipped(id, &topic, r, e);
        }
    }
}

/// The processing log's entries for rows an expression failed on (they went on with NULL).
fn log_row_errors(
    log: Option<&crate::processing_log::ProcessingLog>,
    id: &str,
    errors: &[crate::eval::RowError],
) {
    for e in errors {
        warn!(
            query = %id,
            topic = %e.topic,
            partition = e.partition,
            offset = e.offset,
            "{}: {}", e.message, e.cause
        );
        if let Some(log) = log {
            log.row_error(id, e);
        }
    }
}

/// What a batch adds to the processing log's count: records skipped, and failed rows.
fn logged(processed: &crate::pipeline::Processed) -> u64 {
    (processed.errors.len() + processed.row_errors.len()) as u64
}

/// The next offset to consume of each partition a batch holds.
fn next_offsets(batch: &[Record]) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for r in batch {
        let e = next.entry(r.partition).or_insert(r.offset + 1);
        *e = (*e).max(r.offset + 1);
    }
    next
}

/// Runs a query under `control` (stop, pause and resume; counters and metrics).
pub async fn run_with(pipeline: Pipeline, config: TaskConfig, control: Control) -> Result<()> {
    run_parallel(vec![pipeline], config, control).await
}

/// Runs a stateless query over parallel workers, one per pipeline (all built from the same
/// plan). One source reads the input — the query's own consumer, or a reader shared with
/// the server's other queries on the topic (see [`crate::shared`]) — and hands each batch's
/// records to the workers by partition (see [`Slot`]), so a partition's records are
/// processed in order by one worker; a worker decodes, evaluates and produces its share
/// and reports the offsets it covered, which are committed only then (at-least-once as
/// before). More workers cost no Kafka clients: they share the source and the producer.
/// Stateful queries go to [`run_stateful`]: their state is keyed by group, not by input
/// partition, and their positions live in their changelog.
///
/// An error that ends the query is also kept in its metrics ([`QueryMetrics::failure`]):
/// the query is then in ksqlDB's ERROR state, and says why.
pub async fn run_parallel(
    pipelines: Vec<Pipeline>,
    config: TaskConfig,
    control: Control,
) -> Result<()> {
    let metrics = control.metrics.clone();
    let outcome = run_workers(pipelines, config, control).await;
    if let Err(e) = &outcome {
        metrics.set_failed(e);
    }
    outcome
}

/// [`run_parallel`], until the query stops or fails.
async fn run_workers(pipelines: Vec<Pipeline>, config: TaskConfig, control: Control) -> Result<()> {
    let count = pipelines.len();
    if pipelines
        .iter()
        .any(|p| p.stateful() || p.input_topics().len() != 1)
    {
        return run_stateful(pipelines, config, control).await;
    }
    if count == 0 {
        return Ok(());
    }
    let id = pipelines[0].id.clone();
    let topic = pipelines[0].source.topic.clone();
    let mut feed = match config.shared.clone() {
        Some(inputs) => Feed::shared(inputs, &id, &topic, &config).await?,
        None => {
            let consumer = Arc::new(query_consumer(&config, &id, &control.metrics)?);
            consumer.subscribe(&[topic.as_str()])?;
            Feed::Own {
                consumer,
                topic: topic.clone(),
                acked: BTreeMap::new(),
            }
        }
    };
    let producer = config.producer()?;
    let mut control = Worker {
        stop: control.stop,
        paused: control.paused,
        stats: Arc::new(control.stats),
        metrics: control.metrics,
    };
    let (ack_tx, mut acks) = tokio::sync::mpsc::unbounded_channel::<BTreeMap<i32, i64>>();
    let mut feeds = Vec::with_capacity(count);
    let mut workers = tokio::task::JoinSet::new();
    // Turns true once the reader stops (told to, or a worker failed): a worker waiting to
    // send outputs again then gives up instead of holding the query's end back.
    let (halt, halted) = watch::channel(false);
    for pipeline in pipelines {
        // Two batches queued per worker: enough to keep it busy, and a slow worker holds
        // the source back (the backpressure) instead of buffering without bound.
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Record>>(2);
        feeds.push(tx);
        let retry = Retry::new(halted.clone(), control.metrics.clone(), &id);
        let sink = Sink::new(producer.clone(), &pipeline.sink.topic, retry);
        workers.spawn(process_share(
            pipeline,
            sink,
            rx,
            ack_tx.clone(),
            control.stats.clone(),
            control.metrics.clone(),
            config.processing_log.clone(),
        ));
    }
    drop(ack_tx);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut in_flight = 0usize;
    let outcome: Result<()> = loop {
        if *control.paused.borrow_and_update() {
            // Everything handed out is processed and committed first, so the pause holds
            // exactly what was consumed.
            while in_flight > 0 {
                match acks.recv().await {
                    Some(a) => {
                        in_flight -= 1;
                        feed.acked(a).await?;
                    }
                    None => break,
                }
            }
            if !feed.pause(&mut control, &id).await? {
                break Ok(());
            }
        }
        tokio::select! {
            _ = control.stop.changed() => break Ok(()),
            _ = next_value(&mut control.paused) => continue,
            a = acks.recv() => match a {
                Some(a) => {
                    in_flight = in_flight.saturating_sub(1);
                    feed.acked(a).await?;
                }
                // Every worker ended: one failed (its error is collected below).
                None => break Ok(()),
            },
            Some(done) = workers.join_next() => {
                if let Some(e) = failed(done, &format!("a worker of query {id}")) {
                    break Err(e);
                }
            }
            _ = tick.tick() => feed.tick(&control.metrics).await,
            first = feed.first() => {
                let mut batch = match first {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(query = %id, error = %e, "consume failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                feed.fill(&mut batch, config.max_batch, config.linger, &id).await;
                let mut shares: Vec<Vec<Record>> = vec![Vec::new(); count];
                for r in batch {
                    shares[Slot::of(r.partition, count)].push(r);
                }
                let mut gone = false;
                for (feed, share) in feeds.iter().zip(shares) {
                    if share.is_empty() {
                        continue;
                    }
                    if feed.send(share).await.is_err() {
                        gone = true;
                        break;
                    }
                    in_flight += 1;
                }
                if gone {
                    break Ok(());
                }
            }
        }
    };
    let _ = halt.send(true);
    // The workers finish what they were handed; their acknowledgements are committed.
    drop(feeds);
    while let Some(a) = acks.recv().await {
        feed.acked(a).await?;
    }
    let mut first_error = outcome.err();
    join_workers(
        &mut workers,
        &mut first_error,
        &format!("a worker of query {id}"),
    )
    .await;
    feed.finish().await;
    first_error.map_or(Ok(()), Err)
}

/// The error of a worker that ended, if it failed (or panicked, as `who`): the query stops
/// at once rather than when its reader next hands that worker records.
fn failed(
    done: std::result::Result<Result<()>, tokio::task::JoinError>,
    who: &str,
) -> Option<RuntimeError> {
    match done {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(RuntimeError::State(format!("{who} failed: {e}"))),
    }
}

/// Waits for every worker to end; the first error (or panic, as `who` failed) is kept.
async fn join_workers(
    workers: &mut tokio::task::JoinSet<Result<()>>,
    first_error: &mut Option<RuntimeError>,
    who: &str,
) {
    while let Some(done) = workers.join_next().await {
        if let Some(e) = failed(done, who) {
            first_error.get_or_insert(e);
        }
    }
}

/// Where a stateless query's input comes from and where its acknowledged positions go.
enum Feed {
    /// The query's own consumer; positions are committed to its group.
    Own {
        consumer: Arc<QueryConsumer>,
        topic: String,
        /// What the workers acknowledged, for the last (synchronous) commit.
        acked: BTreeMap<i32, i64>,
    },
    /// A reader shared with the server's other queries on the topic; positions go to the
    /// server's offset store.
    Shared(Box<SharedFeed>),
}

struct SharedFeed {
    inputs: Arc<crate::shared::SharedInputs>,
    id: String,
    topic: String,
    start: crate::shared::Start,
    overrides: Vec<(String, String)>,
    /// The next offset to read per partition: acknowledged, or where reading starts.
    positions: BTreeMap<i32, i64>,
    /// None while paused, or after the reader went away (subscribed again on the next read).
    subscription: Option<crate::shared::Subscription>,
    /// Positions acknowledged since they were last stored.
    dirty: bool,
    stored_at: tokio::time::Instant,
}

/// How often acknowledged positions of a shared feed are stored while records flow; a
/// restart reads at most this much input again.
const STORE_EVERY: Duration = Duration::from_millis(200);

impl SharedFeed {
    fn stored(&self) -> Positions {
        self.positions
            .iter()
            .map(|(p, o)| ((self.topic.clone(), *p), *o))
            .collect()
    }

    async fn store(&mut self, wait: bool) -> Result<()> {
        self.dirty = false;
        self.stored_at = tokio::time::Instant::now();
        let positions = self.stored();
        self.inputs.offsets.put(&self.id, &positions, wait).await
    }

    async fn subscribe(&mut self) -> Result<()> {
        let sub = self
            .inputs
            .subscribe(
                &self.topic,
                self.positions.clone(),
                self.start,
                &self.overrides,
            )
            .await?;
        let mut added = false;
        for (p, o) in &sub.start {
            if !self.positions.contains_key(p) {
                self.positions.insert(*p, *o);
                added = true;
            }
        }
        self.subscription = Some(sub);
        // Where a new query starts is stored at once: a restart continues from there
        // instead of looking for the topic's end again.
        if added {
            self.store(false).await?;
        }
        Ok(())
    }
}

impl Feed {
    /// Query `id`'s place on the shared reader of `topic`: its stored positions, else (when
    /// the config says so) the offsets its group committed before shared readers, else
    /// `auto.offset.reset`.
    async fn shared(
        inputs: Arc<crate::shared::SharedInputs>,
        id: &str,
        topic: &str,
        config: &TaskConfig,
    ) -> Result<Feed> {
        let stored = match inputs.offsets.get(id).await? {
            Some(p) => p,
            None if !config.group_offsets => Positions::new(),
            None => crate::shared::group_offsets(&config.kafka, &query_group(id), topic).await?,
        };
        let positions = stored
            .into_iter()
            .filter(|((t, _), _)| t == topic)
            .map(|((_, p), o)| (p, o))
            .collect();
        let mut feed = SharedFeed {
            inputs,
            id: id.to_string(),
            topic: topic.to_string(),
            start: crate::shared::Start::from_reset(&config.offset_reset),
            overrides: config.consumer_overrides.clone(),
            positions,
            subscription: None,
            dirty: false,
            stored_at: tokio::time::Instant::now(),
        };
        feed.subscribe().await?;
        Ok(Feed::Shared(Box::new(feed)))
    }

    /// The next records (cancel-safe: nothing is taken unless this completes).
    async fn first(&mut self) -> Result<Vec<Record>> {
        match self {
            Feed::Own { consumer, .. } => Ok(vec![to_record(&consumer.recv().await?)]),
            Feed::Shared(f) => loop {
                if f.subscription.is_none() {
                    f.subscribe().await?;
                }
                let Some(sub) = f.subscription.as_mut() else {
                    continue;
                };
                match sub.batches.recv().await {
                    Some(b) => return Ok(b),
                    // The reader went away: subscribe again where the query is.
                    None => f.subscription = None,
                }
            },
        }
    }

    /// Adds what is ready to `batch`, up to `max` records: an own consumer waits up to
    /// `linger` for more; a shared reader has already waited.
    async fn fill(&mut self, batch: &mut Vec<Record>, max: usize, linger: Duration, id: &str) {
        match self {
            Feed::Own { consumer, .. } => {
                let have = batch.len();
                linger_for(consumer, have, max, linger, id, |m| {
                    batch.push(to_record(m))
                })
                .await;
            }
            Feed::Shared(f) => {
                let Some(sub) = f.subscription.as_mut() else {
                    return;
                };
                while batch.len() < max {
                    match sub.batches.try_recv() {
                        Ok(b) => batch.extend(b),
                        Err(_) => break,
                    }
                }
            }
        }
    }

    /// Offsets the workers acknowledged (every output from the records before them is in
    /// Kafka): committed, or stored.
    async fn acked(&mut self, offsets: BTreeMap<i32, i64>) -> Result<()> {
        match self {
            Feed::Own {
                consumer,
                topic,
                acked,
            } => {
                let mut tpl = TopicPartitionList::new();
                for (p, o) in offsets {
                    let e = acked.entry(p).or_insert(o);
                    *e = (*e).max(o);
                    tpl.add_partition_offset(topic, p, Offset::Offset(o))?;
                }
                consumer.commit(&tpl, CommitMode::Async)?;
            }
            Feed::Shared(f) => {
                for (p, o) in offsets {
                    let e = f.positions.entry(p).or_insert(o);
                    *e = (*e).max(o);
                }
                f.dirty = true;
                if f.stored_at.elapsed() >= STORE_EVERY {
                    f.store(false).await?;
                }
            }
        }
        Ok(())
    }

    /// Once a second: a shared feed reports its lag (an own consumer's statistics do that)
    /// and stores positions acknowledged since the last store.
    async fn tick(&mut self, metrics: &QueryMetrics) {
        if let Feed::Shared(f) = self {
            if let Some(sub) = &f.subscription {
                metrics.set_consumer_lag(sub.lag(&f.positions));
            }
            if f.dirty {
                if let Err(e) = f.store(false).await {
                    warn!(query = %f.id, error = %e, "storing input positions failed");
                }
            }
        }
    }

    /// Holds the query paused until it is resumed (`Ok(true)`) or stopped (`Ok(false)`).
    async fn pause(&mut self, control: &mut Worker, id: &str) -> Result<bool> {
        match self {
            Feed::Own { consumer, .. } => wait_paused(consumer, control, id).await,
            Feed::Shared(f) => {
                f.store(true).await?;
                // Dropping the subscription lets the reader go on without this query;
                // whatever it had queued is read again after the resume.
                f.subscription = None;
                control.metrics.set_paused(true);
                info!(query = %id, "query paused");
                loop {
                    tokio::select! {
                        _ = control.stop.changed() => return Ok(false),
                        p = next_value(&mut control.paused) => if !p { break },
                    }
                }
                f.subscribe().await?;
                control.metrics.set_paused(false);
                info!(query = %id, "query resumed");
                Ok(true)
            }
        }
    }

    /// The last commit or store, synchronous, so a restart resumes exactly here.
    async fn finish(self) {
        match self {
            Feed::Own {
                consumer,
                topic,
                acked,
            } => {
                let mut tpl = TopicPartitionList::new();
                for (p, o) in &acked {
                    let _ = tpl.add_partition_offset(&topic, *p, Offset::Offset(*o));
                }
                if tpl.count() > 0 {
                    let _ = blocking(&consumer, move |c| c.commit(&tpl, CommitMode::Sync)).await;
                }
            }
            Feed::Shared(mut f) => {
                if let Err(e) = f.store(true).await {
                    warn!(query = %f.id, error = %e, "storing input positions failed");
                }
            }
        }
    }
}

/// One parallel worker: processes the batches it is handed, in order, produces their
/// outputs, waits for every acknowledgement, then reports the offsets they covered.
async fn process_share(
    mut pipeline: Pipeline,
    mut sink: Sink,
    mut batches: tokio::sync::mpsc::Receiver<Vec<Record>>,
    acks: tokio::sync::mpsc::UnboundedSender<BTreeMap<i32, i64>>,
    stats: Arc<watch::Sender<TaskStats>>,
    metrics: Arc<QueryMetrics>,
    log: Option<Arc<crate::processing_log::ProcessingLog>>,
) -> Result<()> {
    let topic = pipeline.source.topic.clone();
    while let Some(batch) = batches.recv().await {
        let processed = pipeline.process_input(0, &batch)?;
        log_skipped(
            log.as_deref(),
            &pipeline.id,
            |_| topic.clone(),
            &batch,
            &processed.errors,
        );
        log_row_errors(log.as_deref(), &pipeline.id, &processed.row_errors);
        // Stopped while waiting to send again: the batch is not acknowledged, so its
        // input is read again after a restart.
        let Some(produced) = sink.send(to_send(&processed)).await? else {
            break;
        };
        count(
            &stats,
            &metrics,
            batch.len() as u64,
            produced,
            logged(&processed),
        );
        if acks.send(next_offsets(&batch)).is_err() {
            break;
        }
    }
    Ok(())
}

/// The consumer group named after query `id`: its consumer's, or where a query on a
/// shared reader mirrors its positions (see [`crate::shared::OffsetStore`]).
pub fn query_group(id: &str) -> String {
    format!("_brook_query_{id}")
}

/// The consumer of query `id`: its group, the task's settings, its lag into `metrics`.
fn query_consumer(
    config: &TaskConfig,
    id: &str,
    metrics: &Arc<QueryMetrics>,
) -> Result<QueryConsumer> {
    let group = query_group(id);
    let mut cc = consumer_config(&config.kafka, &group);
    cc.set("auto.offset.reset", &config.offset_reset);
    cc.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    for (k, v) in &config.consumer_overrides {
        cc.set(k, v);
    }
    Ok(cc.create_with_context(LagContext::new(metrics.clone()))?)
}

/// What a stateful query's reader hands one of its state partitions.
enum ToState {
    /// The batch's records routed to this partition (maybe none), with their inputs
    /// (`sides`: a join reads several topics), and the input positions after the whole
    /// batch: the partition has then seen everything before them.
    Batch {
        seq: u64,
        records: Vec<Record>,
        sides: Vec<usize>,
        covered: Positions,
    },
    /// The input has been quiet this long (EMIT FINAL closes windows by it).
    Idle(i64),
}

/// Runs a stateful query: one reader consumes the inputs in the query's group and routes
/// each record to one of the query's state partitions (see [`crate::pipeline::Route`]),
/// each a pipeline with its own state and its own partition of the changelog, on its own
/// worker. Every batch reaches every partition (its share may be empty) in order, and the
/// group's offsets move only once all of them have acknowledged it; a partition's
/// changelog marker says which input it has applied, so a restart starts the input where
/// the partition furthest behind is, and each partition skips what it had applied.
async fn run_stateful(
    mut pipelines: Vec<Pipeline>,
    config: TaskConfig,
    control: Control,
) -> Result<()> {
    let n = pipelines.len();
    let Some(first) = pipelines.first() else {
        return Ok(());
    };
    let id = first.id.clone();
    let topics = first.input_topics();
    let route = first.route();
    let idle_timeout = first.idle_timeout();
    let changelog = crate::changelog::topic_name(&id);
    let producer = config.producer()?;
    let count = i32::try_from(n).map_err(|_| RuntimeError::State("too many workers".into()))?;
    create_topic_with(
        &config.kafka,
        &changelog,
        count,
        1,
        &[("cleanup.policy", "compact")],
    )
    .await?;
    let mut restored = Vec::with_capacity(n);
    let mut writers = Vec::with_capacity(n);
    for (i, p) in (0..count).zip(pipelines.iter_mut()) {
        let (positions, writer) = restore(p, &config, &producer, &changelog, i).await?;
        restored.push(positions);
        writers.push(writer);
    }
    // Where every partition has a marker the input resumes at the lowest; elsewhere (a
    // first start) at the group's offsets or the reset.
    let mut start = Positions::new();
    if let Some(first) = restored.first() {
        for at in first.keys() {
            if let Some(o) = restored.iter().map(|r| r.get(at).copied()).min().flatten() {
                start.insert(at.clone(), o);
            }
        }
    }
    let consumer = Arc::new(query_consumer(&config, &id, &control.metrics)?);
    let resolved = assign(&consumer, &config, &topics, &start).await?;
    debug!(query = %id, ?start, ?resolved, "state partitions' input positions");
    let mut control = Worker {
        stop: control.stop,
        paused: control.paused,
        stats: Arc::new(control.stats),
        metrics: control.metrics,
    };
    let (ack_tx, mut acks) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut feeds = Vec::with_capacity(n);
    let mut workers = tokio::task::JoinSet::new();
    // Turns true once the reader stops (told to, or a worker failed): a worker waiting to
    // send outputs again then gives up instead of holding the query's end back.
    let (halt, halted) = watch::channel(false);
    for ((mut pipeline, mut changelog), own) in pipelines.into_iter().zip(writers).zip(restored) {
        let mut positions = own;
        let fresh = positions.is_empty();
        for (at, o) in &resolved {
            positions.entry(at.clone()).or_insert(*o);
        }
        // A partition without a marker records where its input starts, so a restart
        // before its first records still knows what it has seen.
        let retry = Retry::new(halted.clone(), control.metrics.clone(), &id);
        let mut changelog_retry = retry.clone();
        if fresh
            && !changelog
                .write(&mut pipeline, &producer, &positions, &mut changelog_retry)
                .await?
        {
            return Ok(());
        }
        // Two batches queued per partition: a slow one holds the reader back.
        let (tx, rx) = tokio::sync::mpsc::channel::<ToState>(2);
        feeds.push(tx);
        let sink = Sink::new(producer.clone(), &pipeline.sink.topic, retry);
        workers.spawn(run_state_partition(
            StatePartition {
                pipeline,
                changelog,
                producer: producer.clone(),
                topics: topics.clone(),
                positions,
                stats: control.stats.clone(),
                metrics: control.metrics.clone(),
                log: config.processing_log.clone(),
                sink,
                changelog_retry,
            },
            rx,
            ack_tx.clone(),
        ));
    }
    drop(ack_tx);
    info!(query = %id, state_partitions = n, "stateful query running");
    let mut acked = Acknowledged::new(n, topics.clone());
    let mut seq = 0u64;
    let mut idle = IdleClock::new(idle_timeout);
    let side_of = |m: &BorrowedMessage<'_>| -> usize {
        topics.iter().position(|t| t == m.topic()).unwrap_or(0)
    };
    let outcome: Result<()> = loop {
        // Pauses take effect between batches: everything handed out is processed and
        // committed first, so a resume continues with the next record.
        if *control.paused.borrow_and_update() {
            while acked.in_flight() {
                match acks.recv().await {
                    Some(s) => acked.ack(s, &consumer)?,
                    None => break,
                }
            }
            if !wait_paused(&consumer, &mut control, &id).await? {
                break Ok(());
            }
            idle.resumed();
        }
        let first = tokio::select! {
            _ = control.stop.changed() => break Ok(()),
            _ = next_value(&mut control.paused) => continue,
            a = acks.recv() => match a {
                Some(s) => {
                    acked.ack(s, &consumer)?;
                    continue;
                }
                // Every partition ended: one failed (its error is collected below).
                None => break Ok(()),
            },
            Some(done) = workers.join_next() => {
                if let Some(e) = failed(done, &format!("a state partition of query {id}")) {
                    break Err(e);
                }
                continue;
            }
            elapsed = idle.due() => {
                let mut gone = false;
                for feed in &feeds {
                    gone |= feed.send(ToState::Idle(elapsed)).await.is_err();
                }
                if gone {
                    break Ok(());
                }
                continue;
            }
            m = consumer.recv() => m,
        };
        let first = match first {
            Ok(m) => m,
            Err(e) => {
                warn!(query = %id, error = %e, "consume failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut sides = vec![side_of(&first)];
        let mut batch = vec![to_record(&first)];
        drop(first);
        linger_for(&consumer, 1, config.max_batch, config.linger, &id, |m| {
            sides.push(side_of(m));
            batch.push(to_record(m));
        })
        .await;
        let mut next: BTreeMap<(usize, i32), i64> = BTreeMap::new();
        for (r, side) in batch.iter().zip(&sides) {
            let e = next.entry((*side, r.partition)).or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        let covered: Positions = next
            .iter()
            .map(|((side, p), o)| ((topics[*side].clone(), *p), *o))
            .collect();
        let slots = route.assign(&batch, &sides, n);
        let mut shares: Vec<(Vec<Record>, Vec<usize>)> = vec![(Vec::new(), Vec::new()); n];
        for ((r, side), slot) in batch.into_iter().zip(sides).zip(slots) {
            if let Some(share) = shares.get_mut(slot) {
                share.0.push(r);
                share.1.push(side);
            }
        }
        acked.handed(seq, next);
        let mut gone = false;
        for (feed, (records, sides)) in feeds.iter().zip(shares) {
            let batch = ToState::Batch {
                seq,
                records,
                sides,
                covered: covered.clone(),
            };
            if feed.send(batch).await.is_err() {
                gone = true;
                break;
            }
        }
        if gone {
            break Ok(());
        }
        seq += 1;
        idle.input_seen();
    };
    let _ = halt.send(true);
    // The partitions finish what they were handed; their acknowledgements are committed.
    drop(feeds);
    let mut first_error = outcome.err();
    while let Some(s) = acks.recv().await {
        if let Err(e) = acked.ack(s, &consumer) {
            first_error.get_or_insert(e);
        }
    }
    join_workers(
        &mut workers,
        &mut first_error,
        &format!("a state partition of query {id}"),
    )
    .await;
    // A last synchronous commit of what was acknowledged, so a restart resumes exactly.
    let tpl = acked.committed()?;
    if tpl.count() > 0 {
        let _ = blocking(&consumer, move |c| c.commit(&tpl, CommitMode::Sync)).await;
    }
    first_error.map_or(Ok(()), Err)
}

/// A batch handed to every state partition: its sequence number, the next offset per
/// (input, partition) after it, and how many partitions have yet to acknowledge it.
type Handed = (u64, BTreeMap<(usize, i32), i64>, usize);

/// The batches a stateful query's reader handed out and not every state partition has
/// acknowledged yet, and the offsets committed so far.
struct Acknowledged {
    partitions: usize,
    topics: Vec<String>,
    pending: std::collections::VecDeque<Handed>,
    committed: BTreeMap<(usize, i32), i64>,
}

impl Acknowledged {
    fn new(partitions: usize, topics: Vec<String>) -> Self {
        Acknowledged {
            partitions,
            topics,
            pending: Default::default(),
            committed: BTreeMap::new(),
        }
    }

    fn in_flight(&self) -> bool {
        !self.pending.is_empty()
    }

    fn handed(&mut self, seq: u64, next: BTreeMap<(usize, i32), i64>) {
        self.pending.push_back((seq, next, self.partitions));
    }

    /// One partition acknowledged batch `seq` (each does so in order); batches every
    /// partition has acknowledged are committed.
    fn ack(&mut self, seq: u64, consumer: &QueryConsumer) -> Result<()> {
        let front = self.pending.front().map_or(seq, |p| p.0);
        let Some(entry) = seq
            .checked_sub(front)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.pending.get_mut(i))
        else {
            return Ok(());
        };
        entry.2 = entry.2.saturating_sub(1);
        let mut tpl = TopicPartitionList::new();
        while self.pending.front().is_some_and(|p| p.2 == 0) {
            if let Some((_, next, _)) = self.pending.pop_front() {
                for ((side, p), o) in next {
                    let e = self.committed.entry((side, p)).or_insert(o);
                    *e = (*e).max(o);
                    tpl.add_partition_offset(&self.topics[side], p, Offset::Offset(*e))?;
                }
            }
        }
        if tpl.count() > 0 {
            consumer.commit(&tpl, CommitMode::Async)?;
        }
        Ok(())
    }

    fn committed(&self) -> Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for ((side, p), o) in &self.committed {
            tpl.add_partition_offset(&self.topics[*side], *p, Offset::Offset(*o))?;
        }
        Ok(tpl)
    }
}

/// One state partition of a stateful query: its pipeline (and state), its changelog
/// partition, and the input positions it has seen.
struct StatePartition {
    pipeline: Pipeline,
    changelog: ChangelogWriter,
    producer: FutureProducer,
    topics: Vec<String>,
    positions: Positions,
    stats: Arc<watch::Sender<TaskStats>>,
    metrics: Arc<QueryMetrics>,
    log: Option<Arc<crate::processing_log::ProcessingLog>>,
    /// Where its results go (`producer` writes its changelog).
    sink: Sink,
    /// How its changelog writes ride out transient failures.
    changelog_retry: Retry,
}

/// Processes what the reader hands one state partition, in order: the outputs are
/// acknowledged before the state they came from is recorded, and the state before the
/// batch is acknowledged to the reader (which commits the input offsets only then).
/// Stopped while waiting to send outputs again, it ends there: neither the state nor the
/// input positions move past outputs Kafka does not have.
async fn run_state_partition(
    mut s: StatePartition,
    mut batches: tokio::sync::mpsc::Receiver<ToState>,
    acks: tokio::sync::mpsc::UnboundedSender<u64>,
) -> Result<()> {
    while let Some(msg) = batches.recv().await {
        let (seq, records, sides, covered) = match msg {
            ToState::Idle(elapsed) => {
                let processed = s.pipeline.on_idle(elapsed)?;
                log_row_errors(s.log.as_deref(), &s.pipeline.id, &processed.row_errors);
                let Some(produced) = s.sink.send(to_send(&processed)).await? else {
                    break;
                };
                if !s
                    .changelog
                    .write(
                        &mut s.pipeline,
                        &s.producer,
                        &s.positions,
                        &mut s.changelog_retry,
                    )
                    .await?
                {
                    break;
                }
                if produced > 0 || !processed.row_errors.is_empty() {
                    count(&s.stats, &s.metrics, 0, produced, logged(&processed));
                    debug!(query = %s.pipeline.id, produced, "idle input: windows closed");
                }
                continue;
            }
            ToState::Batch {
                seq,
                records,
                sides,
                covered,
            } => (seq, records, sides, covered),
        };
        // After a restart the input starts where the partition furthest behind was: what
        // this one has applied already is skipped.
        let applied: BTreeMap<(usize, i32), i64> = s
            .positions
            .iter()
            .filter_map(|((t, p), o)| Some(((s.topics.iter().position(|x| x == t)?, *p), *o)))
            .collect();
        let (records, sides): (Vec<Record>, Vec<usize>) = records
            .into_iter()
            .zip(sides)
            .filter(|(r, side)| {
                applied
                    .get(&(*side, r.partition))
                    .is_none_or(|o| r.offset >= *o)
            })
            .unzip();
        let processed = process_sides(&mut s.pipeline, &records, &sides)?;
        let topics = &s.topics;
        let topic_of = |i: usize| {
            sides
                .get(i)
                .and_then(|side| topics.get(*side))
                .cloned()
                .unwrap_or_default()
        };
        log_skipped(
            s.log.as_deref(),
            &s.pipeline.id,
            topic_of,
            &records,
            &processed.errors,
        );
        log_row_errors(s.log.as_deref(), &s.pipeline.id, &processed.row_errors);
        let Some(produced) = s.sink.send(to_send(&processed)).await? else {
            break;
        };
        for (at, o) in covered {
            let e = s.positions.entry(at).or_insert(o);
            *e = (*e).max(o);
        }
        if !records.is_empty()
            && !s
                .changelog
                .write(
                    &mut s.pipeline,
                    &s.producer,
                    &s.positions,
                    &mut s.changelog_retry,
                )
                .await?
        {
            break;
        }
        count(
            &s.stats,
            &s.metrics,
            records.len() as u64,
            produced,
            logged(&processed),
        );
        if processed.late > 0 {
            s.metrics.add_late(processed.late);
        }
        if acks.send(seq).is_err() {
            break;
        }
    }
    Ok(())
}

/// Processes runs of records from one input at a time, in order (there are runs of a
/// second input only in a join, whose table records update its state).
fn process_sides(
    pipeline: &mut Pipeline,
    batch: &[Record],
    sides: &[usize],
) -> Result<crate::pipeline::Processed> {
    let mut processed = crate::pipeline::Processed::default();
    let mut start = 0;
    while start < batch.len() {
        let side = sides.get(start).copied().unwrap_or(0);
        let mut end = start + 1;
        while end < batch.len() && sides.get(end).copied().unwrap_or(0) == side {
            end += 1;
        }
        let part = pipeline.process_input(side, &batch[start..end])?;
        processed
            .errors
            .extend(part.errors.into_iter().map(|(i, e)| (i + start, e)));
        processed.row_errors.extend(part.row_errors);
        processed.outputs.extend(part.outputs);
        processed.late += part.late;
        start = end;
    }
    Ok(processed)
}

/// Hands `take` further messages of `consumer` until a batch of `have` holds `max` or
/// `linger` has passed: short, so latency stays low at low rates, while batches still fill
/// at high rates. A consume error ends the batch (`name` says whose, in the log).
pub(crate) async fn linger_for<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    have: usize,
    max: usize,
    linger: Duration,
    name: &str,
    mut take: impl FnMut(&BorrowedMessage<'_>),
) {
    let deadline = tokio::time::Instant::now() + linger;
    let mut n = have;
    while n < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => {
                take(&m);
                n += 1;
            }
            Ok(Err(e)) => {
                warn!(source = %name, error = %e, "consume failed");
                break;
            }
            Err(_) => break,
        }
    }
}

/// Runs one of librdkafka's blocking calls (a synchronous commit, a committed-offsets
/// lookup, a seek) off the runtime's threads: the embedded broker may run on the same
/// runtime, and with every runtime thread blocked waiting for its answer it could never
/// answer (two parallel workers committing at once did exactly that).
async fn blocking<T: Send + 'static>(
    consumer: &Arc<QueryConsumer>,
    f: impl FnOnce(&QueryConsumer) -> T + Send + 'static,
) -> Result<T> {
    let c = consumer.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .map_err(|e| RuntimeError::State(format!("a blocking Kafka call failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::Slot;

    #[test]
    fn workers_split_partitions_without_overlap() {
        let slots: Vec<Slot> = (0..3).map(|index| Slot { index, count: 3 }).collect();
        for p in 0..10 {
            let owners = slots.iter().filter(|s| s.owns(p)).count();
            assert_eq!(owners, 1, "partition {p}");
        }
        assert!(slots[1].owns(4));
        assert!(!Slot { index: 0, count: 2 }.owns(-1));
    }
}
