//! A persistent query running over Kafka: consume the input topic in the query's consumer
//! group, run the pipeline over small batches, produce the results, and commit the input
//! offsets only once every output produced from them is acknowledged (at-least-once).
//!
//! The loop is shaped so that exactly-once drops in without a rewrite: each batch is one
//! unit (consume → process → produce → commit); with a transactional producer the commit
//! becomes `send_offsets_to_transaction` + `commit_transaction` around the same unit.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::error::{Result, RuntimeError};
use crate::kafka::{consumer_config, producer_config};
use crate::pipeline::Pipeline;
use crate::rows::Record;

/// How a task batches its input.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub bootstrap_servers: String,
    /// Most records in one batch.
    pub max_batch: usize,
    /// How long a batch waits for more records after its first: short, so latency stays
    /// low at low rates, while batches still fill at high rates.
    pub linger: Duration,
    /// `auto.offset.reset` for a group without committed offsets.
    pub offset_reset: String,
}

impl TaskConfig {
    pub fn new(bootstrap_servers: &str) -> Self {
        TaskConfig {
            bootstrap_servers: bootstrap_servers.to_string(),
            max_batch: 4096,
            linger: Duration::from_millis(5),
            offset_reset: "earliest".to_string(),
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

/// Runs a query until `stop` turns true or an unrecoverable error occurs. Records that do
/// not decode are logged with topic, partition and offset and skipped.
pub async fn run(
    mut pipeline: Pipeline,
    config: TaskConfig,
    mut stop: watch::Receiver<bool>,
    stats: watch::Sender<TaskStats>,
) -> Result<()> {
    let group = format!("_brook_query_{}", pipeline.id);
    let mut cc = consumer_config(&config.bootstrap_servers, &group);
    cc.set("auto.offset.reset", &config.offset_reset);
    let consumer: StreamConsumer = cc.create()?;
    let producer: FutureProducer = producer_config(&config.bootstrap_servers).create()?;
    let input = pipeline.source.topic.clone();
    let sink = pipeline.sink.topic.clone();
    // A join also reads its table's topic; its records update state, in arrival order.
    let table_topic = pipeline.table.as_ref().map(|t| t.topic.clone());
    match &table_topic {
        Some(t) => consumer.subscribe(&[&input, t])?,
        None => consumer.subscribe(&[&input])?,
    }
    let is_table = |m: &BorrowedMessage<'_>| table_topic.as_deref() == Some(m.topic());
    let mut totals = TaskStats::default();
    loop {
        let first = tokio::select! {
            _ = stop.changed() => break,
            m = consumer.recv() => m,
        };
        let first = match first {
            Ok(m) => m,
            Err(e) => {
                warn!(query = %pipeline.id, error = %e, "consume failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut sides = vec![is_table(&first)];
        let mut batch = vec![to_record(&first)];
        drop(first);
        let deadline = tokio::time::Instant::now() + config.linger;
        while batch.len() < config.max_batch {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => {
                    sides.push(is_table(&m));
                    batch.push(to_record(&m));
                }
                Ok(Err(e)) => {
                    warn!(query = %pipeline.id, error = %e, "consume failed");
                    break;
                }
                Err(_) => break,
            }
        }
        // Runs of stream and table records, in order (there are no table records unless
        // the query is a join).
        let mut processed = crate::pipeline::Processed::default();
        let mut start = 0;
        while start < batch.len() {
            let table = sides[start];
            let mut end = start + 1;
            while end < batch.len() && sides[end] == table {
                end += 1;
            }
            let part = if table {
                pipeline.process_table(&batch[start..end])?
            } else {
                pipeline.process(&batch[start..end])?
            };
            processed
                .errors
                .extend(part.errors.into_iter().map(|(i, e)| (i + start, e)));
            processed.outputs.extend(part.outputs);
            start = end;
        }
        for (i, e) in &processed.errors {
            let r = &batch[*i];
            // The processing log: the record is skipped, the query goes on.
            warn!(
                query = %pipeline.id,
                topic = %(if sides[*i] { table_topic.as_deref().unwrap_or("") } else { input.as_str() }),
                partition = r.partition,
                offset = r.offset,
                "record skipped: {e}"
            );
        }
        // Enqueue everything, then wait for every acknowledgement before committing.
        let mut deliveries = std::collections::VecDeque::with_capacity(processed.outputs.len());
        let mut produced = 0u64;
        for o in &processed.outputs {
            loop {
                let mut rec: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&sink).timestamp(o.timestamp);
                if let Some(k) = &o.key {
                    rec = rec.key(k.as_slice());
                }
                if let Some(v) = &o.value {
                    rec = rec.payload(v.as_slice());
                }
                match producer.send_result(rec) {
                    Ok(d) => {
                        deliveries.push_back(d);
                        break;
                    }
                    // A full queue is the backpressure on the source: wait for the oldest
                    // delivery, then try again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        match deliveries.pop_front() {
                            Some(d) => {
                                delivered(d).await?;
                                produced += 1;
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
            produced += 1;
        }
        let mut next: BTreeMap<(bool, i32), i64> = BTreeMap::new();
        for (r, table) in batch.iter().zip(&sides) {
            let e = next.entry((*table, r.partition)).or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((table, p), o) in next {
            let topic = match (&table_topic, table) {
                (Some(t), true) => t.as_str(),
                _ => input.as_str(),
            };
            tpl.add_partition_offset(topic, p, Offset::Offset(o))?;
        }
        consumer.commit(&tpl, CommitMode::Async)?;
        totals.records_in += batch.len() as u64;
        totals.records_out += produced;
        totals.errors += processed.errors.len() as u64;
        let _ = stats.send(totals.clone());
        debug!(query = %pipeline.id, records = batch.len(), produced, "batch done");
    }
    // A last synchronous commit of what was acknowledged, so a restart resumes exactly.
    if let Ok(tpl) = consumer.position() {
        let _ = consumer.commit(&tpl, CommitMode::Sync);
    }
    Ok(())
}
