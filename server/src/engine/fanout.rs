//! One Kafka consumer per source for every push query that reads it from the latest offsets.
//!
//! A consumer per push query costs librdkafka threads, buffers and a broker connection
//! each, which does not scale to the thousand subscribers of a busy stream. Here the first
//! latest-offset push query on a source starts a shared consumer; later ones join it. The
//! consumer decodes each poll's records once and hands the rows to every subscriber's own
//! queue; each subscriber then runs its own filter and projection (engine.rs). A queue
//! holds at most `buffer` rows: a subscriber that falls further behind is cut off, so one
//! slow client neither grows memory nor holds the others back. The consumer stops when its
//! last subscriber leaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arrow::array::RecordBatch;
use brook_planner::catalog::{Catalog, Source};
use brook_runtime::kafka::consumer_config;
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::{Offset, TopicPartitionList};
use brook_runtime::rows::{decode_records, Record};
use brook_runtime::RuntimeError;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::ServerError;

/// Records taken from the consumer in one go (as many as are there, up to this): decoding
/// and handing out a batch costs about the same for one row as for hundreds.
const MAX_DRAIN: usize = 256;

/// Why a subscription ended before its subscriber left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The subscriber had `buffer` rows queued and did not take them fast enough.
    Behind { buffer: usize },
    /// The shared consumer failed (the message says why).
    Failed(String),
}

/// Rows decoded once, shared by every subscriber; the permit holds their place in the
/// subscriber's bound until it has dealt with them.
pub(crate) struct Item {
    pub batch: RecordBatch,
    /// The rows delete their keys (a table's tombstones).
    pub tombstone: bool,
    _permit: OwnedSemaphorePermit,
}

/// A subscriber's end of a shared consumer. Dropping it leaves (the last one to leave
/// stops the consumer).
pub(crate) struct Subscription {
    pub rows: mpsc::UnboundedReceiver<Item>,
    /// Fires when the subscriber is cut off or the consumer failed.
    pub end: oneshot::Receiver<End>,
    _registration: Registration,
}

/// Shared consumers, by source name.
pub(crate) struct Hub {
    bootstrap: brook_runtime::kafka::Kafka,
    sources: Mutex<HashMap<String, Arc<Shared>>>,
    next_id: AtomicU64,
    cut_off: AtomicU64,
}

/// What `/metrics` shows of the fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FanoutStats {
    /// Shared consumers running now (one per source with latest-offset push queries).
    pub consumers: u64,
    /// Push queries reading through them.
    pub subscribers: u64,
    /// Subscribers cut off for falling behind, since the server started.
    pub cut_off: u64,
}

#[derive(Debug, Clone)]
enum Readiness {
    Starting,
    Ready,
    Failed(String),
}

/// One shared consumer: its source and subscribers.
struct Shared {
    /// The definition the rows are decoded with: a source dropped and created again under
    /// the same name gets a consumer of its own.
    source: Source,
    subscribers: Mutex<HashMap<u64, Slot>>,
    ready: watch::Receiver<Readiness>,
    stop: watch::Sender<bool>,
}

struct Slot {
    rows: mpsc::UnboundedSender<Item>,
    /// `buffer` permits; each queued row holds one.
    room: Arc<Semaphore>,
    buffer: usize,
    end: Option<oneshot::Sender<End>>,
}

struct Registration {
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.leave(&self.shared, self.id);
    }
}

/// The maps stay consistent whatever a panicking holder did (single inserts and removes).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub(crate) fn new(bootstrap: &brook_runtime::kafka::Kafka) -> Hub {
        Hub {
            bootstrap: bootstrap.clone(),
            sources: Mutex::default(),
            next_id: AtomicU64::new(0),
            cut_off: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> FanoutStats {
        let sources = lock(&self.sources);
        FanoutStats {
            consumers: sources.len() as u64,
            subscribers: sources
                .values()
                .map(|s| lock(&s.subscribers).len() as u64)
                .sum(),
            cut_off: self.cut_off.load(Ordering::Relaxed),
        }
    }

    /// Joins `source`'s shared consumer, starting it if there is none. Returns once the
    /// consumer has its partitions: every record produced after that reaches the
    /// subscription.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        source: &Source,
        catalog: &Catalog,
        buffer: usize,
        stopping: watch::Receiver<bool>,
    ) -> Result<Subscription, ServerError> {
        let buffer = buffer.clamp(1, Semaphore::MAX_PERMITS);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (rows_tx, rows) = mpsc::unbounded_channel();
        let (end_tx, end) = oneshot::channel();
        let slot = Slot {
            rows: rows_tx,
            room: Arc::new(Semaphore::new(buffer)),
            buffer,
            end: Some(end_tx),
        };
        // Joining and leaving both hold `sources` first: a consumer that lost its last
        // subscriber is out of the map before anyone could join it.
        let (shared, start) = {
            let mut sources = lock(&self.sources);
            match sources.get(&source.name) {
                Some(s) if s.source == *source => {
                    lock(&s.subscribers).insert(id, slot);
                    (Arc::clone(s), None)
                }
                _ => {
                    let (ready_tx, ready) = watch::channel(Readiness::Starting);
                    let (stop, stop_rx) = watch::channel(false);
                    let s = Arc::new(Shared {
                        source: source.clone(),
                        subscribers: Mutex::new(HashMap::from([(id, slot)])),
                        ready,
                        stop,
                    });
                    sources.insert(source.name.clone(), Arc::clone(&s));
                    (s, Some((ready_tx, stop_rx)))
                }
            }
        };
        let registration = Registration {
            hub: Arc::clone(self),
            shared: Arc::clone(&shared),
            id,
        };
        if let Some((ready_tx, stop_rx)) = start {
            let run = Run {
                hub: Arc::clone(self),
                shared: Arc::clone(&shared),
                catalog: catalog.clone(),
                max_drain: buffer.min(MAX_DRAIN),
            };
            tokio::spawn(run.run(ready_tx, stop_rx, stopping));
        }
        let mut ready = shared.ready.clone();
        let state = ready
            .wait_for(|r| !matches!(r, Readiness::Starting))
            .await
            .map(|r| r.clone());
        match state {
            Ok(Readiness::Ready) => Ok(Subscription {
                rows,
                end,
                _registration: registration,
            }),
            Ok(Readiness::Failed(reason)) => Err(ServerError::SharedConsumer {
                source_name: source.name.clone(),
                reason,
            }),
            Ok(Readiness::Starting) | Err(_) => Err(ServerError::SharedConsumer {
                source_name: source.name.clone(),
                reason: "the consumer stopped while starting".into(),
            }),
        }
    }

    fn leave(&self, shared: &Arc<Shared>, id: u64) {
        let mut sources = lock(&self.sources);
        let mut subscribers = lock(&shared.subscribers);
        subscribers.remove(&id);
        if subscribers.is_empty() {
            self.retire(&mut sources, shared);
        }
    }

    /// Takes `shared` out of the map (if it is still there) and stops its consumer.
    fn retire(&self, sources: &mut HashMap<String, Arc<Shared>>, shared: &Arc<Shared>) {
        if sources
            .get(&shared.source.name)
            .is_some_and(|s| Arc::ptr_eq(s, shared))
        {
            sources.remove(&shared.source.name);
        }
        let _ = shared.stop.send(true);
    }

    /// The consumer cannot go on: every subscriber is told why.
    fn fail(&self, shared: &Arc<Shared>, reason: &str) {
        let mut sources = lock(&self.sources);
        self.retire(&mut sources, shared);
        for (_, mut slot) in lock(&shared.subscribers).drain() {
            if let Some(end) = slot.end.take() {
                let _ = end.send(End::Failed(reason.to_string()));
            }
        }
    }

    /// Queues `batch` for every subscriber; one with no room left is cut off.
    fn hand_out(&self, shared: &Shared, batch: &RecordBatch, tombstone: bool) {
        let rows = u32::try_from(batch.num_rows()).unwrap_or(u32::MAX);
        let mut cut = 0;
        lock(&shared.subscribers).retain(|_, slot| {
            if slot.rows.is_closed() {
                return false;
            }
            match Arc::clone(&slot.room).try_acquire_many_owned(rows) {
                Ok(permit) => slot
                    .rows
                    .send(Item {
                        batch: batch.clone(),
                        tombstone,
                        _permit: permit,
                    })
                    .is_ok(),
                Err(_) => {
                    if let Some(end) = slot.end.take() {
                        let _ = end.send(End::Behind {
                            buffer: slot.buffer,
                        });
                    }
                    cut += 1;
                    false
                }
            }
        });
        if cut > 0 {
            self.cut_off.fetch_add(cut, Ordering::Relaxed);
            warn!(source = %shared.source.name, subscribers = cut, "push query subscribers fell behind and were cut off");
        }
    }
}

/// The shared consumer's task.
struct Run {
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    catalog: Catalog,
    max_drain: usize,
}

impl Run {
    async fn run(
        self,
        ready: watch::Sender<Readiness>,
        mut stop: watch::Receiver<bool>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let source = &self.shared.source;
        let consumer = match open(&self.hub.bootstrap, source).await {
            Ok(c) => c,
            Err(e) => {
                warn!(source = %source.name, error = %e, "cannot start the shared push-query consumer");
                let _ = ready.send(Readiness::Failed(e.to_string()));
                self.hub.fail(&self.shared, &e.to_string());
                return;
            }
        };
        let _ = ready.send(Readiness::Ready);
        info!(source = %source.name, topic = %source.topic, "shared push-query consumer started");
        loop {
            if *stop.borrow() || *stopping.borrow() {
                break;
            }
            let first = tokio::select! {
                // A closed channel (its owner gone) stops the consumer as a signal would.
                r = stop.changed() => if r.is_err() { break } else { continue },
                r = stopping.changed() => if r.is_err() { break } else { continue },
                m = consumer.recv() => m,
            };
            let mut records: Vec<Record> = Vec::new();
            match first {
                Ok(m) => records.push(brook_runtime::task::to_record(&m)),
                Err(e) => {
                    warn!(source = %source.name, error = %e, "consume failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            // Whatever else has arrived already goes in the same batch.
            while records.len() < self.max_drain {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => records.push(brook_runtime::task::to_record(&m)),
                    Some(Err(e)) => {
                        warn!(source = %source.name, error = %e, "consume failed");
                        break;
                    }
                    None => break,
                }
            }
            // A stream record without a value carries no row to show; a table's is the
            // deletion of its key (and a table row needs a key).
            let table = source.kind == brook_sql::SourceKind::Table;
            records.retain(|r| {
                if table {
                    r.key.is_some()
                } else {
                    r.value.is_some()
                }
            });
            let mut failed = false;
            let mut start = 0;
            while start < records.len() {
                let gone = records[start].value.is_none();
                let mut end = start + 1;
                while end < records.len() && records[end].value.is_none() == gone {
                    end += 1;
                }
                let decoded = match decode_records(source, &records[start..end], &self.catalog) {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(source = %source.name, error = %e, "shared push-query consumer failed");
                        self.hub.fail(&self.shared, &e.to_string());
                        failed = true;
                        break;
                    }
                };
                for (_, e) in &decoded.errors {
                    warn!(source = %source.name, topic = %source.topic, "record skipped: {e}");
                }
                if let Some(batch) = decoded.batch {
                    self.hub.hand_out(&self.shared, &batch, gone);
                }
                start = end;
            }
            if failed {
                break;
            }
        }
        info!(source = %source.name, "shared push-query consumer stopped");
        // Closing a consumer can block (librdkafka's teardown): off the worker threads.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }
}

/// A consumer of every partition of `source`'s topic from its current end, assigned directly: no
/// group to join, and no record produced from now on is missed while one is joined.
async fn open(
    bootstrap: &brook_runtime::kafka::Kafka,
    source: &Source,
) -> Result<StreamConsumer, ServerError> {
    let topic = &source.topic;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    // Never committed to: the group only names the client in the broker's logs.
    // A push subscriber waits on every fetch: fetches return after at most 10 ms even on
    // a broker that answers a waiting fetch only at its deadline (the embedded one; Apache
    // Kafka answers as soon as data arrives), not after librdkafka's default 500 ms.
    let consumer: StreamConsumer =
        consumer_config(bootstrap, &format!("_brook_shared_{topic}_{nanos}"))
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(RuntimeError::from)?;
    let topic = topic.to_string();
    let topic_name = source.name.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<StreamConsumer, String> {
        let timeout = Duration::from_secs(30);
        let metadata = consumer
            .fetch_metadata(Some(&topic), timeout)
            .map_err(|e| e.to_string())?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(format!("topic {topic} has no partitions (does it exist?)"));
        }
        let mut assignment = TopicPartitionList::new();
        for p in partitions {
            let (_, high) = consumer
                .fetch_watermarks(&topic, p, timeout)
                .map_err(|e| e.to_string())?;
            assignment
                .add_partition_offset(&topic, p, Offset::Offset(high))
                .map_err(|e| e.to_string())?;
        }
        consumer.assign(&assignment).map_err(|e| e.to_string())?;
        Ok(consumer)
    })
    .await;
    match opened {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(reason)) => Err(ServerError::SharedConsumer {
            source_name: topic_name,
            reason,
        }),
        Err(e) => Err(ServerError::SharedConsumer {
            source_name: topic_name,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use brook_runtime::session::{Action, Session};

    fn source() -> Source {
        let mut session = Session::new();
        let ps = brook_sql::parse(
            "CREATE STREAM S (ID INT KEY, V STRING) \
             WITH (KAFKA_TOPIC='s', PARTITIONS=1, VALUE_FORMAT='JSON');",
        )
        .expect("parses")
        .remove(0);
        match session.plan(&ps, &|_| None).expect("plans") {
            Action::CreateSource { source, .. } => source,
            _ => panic!("not a CREATE STREAM"),
        }
    }

    fn batch(rows: i32) -> RecordBatch {
        RecordBatch::try_from_iter([(
            "N",
            Arc::new(Int32Array::from_iter_values(0..rows)) as arrow::array::ArrayRef,
        )])
        .expect("a batch")
    }

    /// Joins `shared` as `subscribe` does, without a consumer behind it.
    fn join(hub: &Arc<Hub>, shared: &Arc<Shared>, buffer: usize) -> Subscription {
        let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
        let (rows_tx, rows) = mpsc::unbounded_channel();
        let (end_tx, end) = oneshot::channel();
        lock(&shared.subscribers).insert(
            id,
            Slot {
                rows: rows_tx,
                room: Arc::new(Semaphore::new(buffer)),
                buffer,
                end: Some(end_tx),
            },
        );
        Subscription {
            rows,
            end,
            _registration: Registration {
                hub: Arc::clone(hub),
                shared: Arc::clone(shared),
                id,
            },
        }
    }

    #[test]
    fn a_subscriber_without_room_is_cut_off_and_the_last_to_leave_stops_the_consumer() {
        let hub = Arc::new(Hub::new(&brook_runtime::kafka::Kafka::plaintext(
            "127.0.0.1:1",
        )));
        let (_ready, ready) = watch::channel(Readiness::Ready);
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            source: source(),
            subscribers: Mutex::default(),
            ready,
            stop,
        });
        lock(&hub.sources).insert("S".into(), Arc::clone(&shared));
        let mut reading = join(&hub, &shared, 3);
        let mut stalled = join(&hub, &shared, 3);

        hub.hand_out(&shared, &batch(2), false);
        let first = reading.rows.try_recv().expect("rows");
        assert_eq!(first.batch.num_rows(), 2);
        drop(first);
        // The stalled one still holds 2 of its 3 rows: 2 more do not fit.
        hub.hand_out(&shared, &batch(2), false);
        assert_eq!(reading.rows.try_recv().expect("rows").batch.num_rows(), 2);
        assert_eq!(
            stalled.end.try_recv(),
            Ok(End::Behind { buffer: 3 }),
            "cut off"
        );
        assert!(stalled.rows.try_recv().is_ok(), "what it was handed stays");
        assert!(stalled.rows.try_recv().is_err(), "and nothing more comes");
        let stats = hub.stats();
        assert_eq!(
            (stats.consumers, stats.subscribers, stats.cut_off),
            (1, 1, 1)
        );

        drop(stalled);
        assert!(!*stop_rx.borrow(), "one subscriber is left");
        drop(reading);
        assert!(
            *stop_rx.borrow(),
            "the last one to leave stops the consumer"
        );
        assert_eq!(
            hub.stats(),
            FanoutStats {
                consumers: 0,
                subscribers: 0,
                cut_off: 1
            }
        );
    }
}
